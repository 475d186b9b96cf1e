"""Scale-out of delivery with rq (PORTAL_QUEUE=rq, REDIS_URL): the worker's deliver pass claims due messages and
hands their ids to the rq queue `portal-outbox`; `flask --app run portal rq-worker` processes (as many as needed, on
any machine that reaches the database and Redis) deliver them.

The outbox table stays the source of truth: a message is written in the same database transaction as the change
that caused it, which Redis cannot join. An rq job carries only ids and the claim token: it sends only the rows still
held by that claim (outbox.claimed), so a job that runs late, twice, or after its lease was taken over sends nothing
twice; a job lost with Redis leaves its rows to become due again when the lease ends.

Redis is trusted by rq: by default a job's data is a pickle (unpickling runs code) naming any function to call.
Whoever can write to Redis must not get to run code in the portal, so jobs are JSON (rq's JSONSerializer: the
token, the lease's end and the ids are all JSON) and the worker runs one function only (`OutboxJob`): a job
naming another fails without running anything, and callbacks and webhooks a job carries are ignored.
"""
from __future__ import annotations

import datetime as dt
import functools
import logging

from flask import Flask, current_app

from app.data import outbox

log = logging.getLogger(__name__)
QUEUE_NAME = "portal-outbox"
DELIVER_JOB = f"{__name__}.deliver_job"


@functools.cache  # one class, made when rq is first used (rq is imported only then, as below)
def _job_class():
    from rq.job import Job

    class OutboxJob(Job):
        """A job this portal enqueued: `deliver_job`; no callbacks (their names are imported and called too), no
        webhooks (the worker would post to whatever address a job names)."""

        def perform(self):
            if self.func_name != DELIVER_JOB:
                raise PermissionError(f"refused rq job {self.id}: it calls {self.func_name!r}, not {DELIVER_JOB}")
            return super().perform()

        success_callback = failure_callback = stopped_callback = None

        def send_webhooks(self, *args, **kwargs) -> None:
            return None

    return OutboxJob


def _redis(app: Flask):
    from redis import Redis

    url = app.config.get("REDIS_URL")
    if not url:
        raise RuntimeError("PORTAL_QUEUE=rq needs REDIS_URL")
    return Redis.from_url(url)


def queue(app: Flask):
    from rq import Queue
    from rq.serializers import JSONSerializer

    return Queue(QUEUE_NAME, connection=_redis(app), serializer=JSONSerializer, job_class=_job_class())


def dispatch(app: Flask) -> int:
    """The deliver pass under PORTAL_QUEUE=rq: claim a batch, enqueue one rq job for it."""
    from app.data.delivery import DeliverySettings, engine_of, waiting_channels

    settings = DeliverySettings.of(app.config)
    engine = engine_of(app)
    claim = outbox.claim(engine, settings.batch, settings.lease_seconds, waiting_channels(app, engine))
    if not claim.messages:
        return 0
    ids = [m.id for m in claim.messages]
    try:
        queue(app).enqueue(deliver_job, claim.token, claim.until.isoformat(), ids,
                           job_timeout=int(settings.lease_seconds) + 60, result_ttl=0, failure_ttl=86400)
    except Exception as error:  # Redis unreachable: the messages are due again at once, nothing is lost
        log.warning("outbox: could not hand %d messages to rq: %s", len(ids), error)
        with engine.begin() as conn:
            outbox.release(conn, claim.token, ids)
        raise
    return len(ids)


def deliver_job(token: str, until: str, ids: list[int]) -> int:
    """Run by an rq worker (inside the app's context): send the messages still held by claim `token`."""
    from app.data.delivery import DeliverySettings, deliver_claim, engine_of

    app = current_app._get_current_object()
    engine = engine_of(app)
    with engine.connect() as conn:
        messages = outbox.claimed(conn, token, ids)
    deliver_claim(app, engine, outbox.Claim(token, dt.datetime.fromisoformat(until), messages),
                  DeliverySettings.of(app.config))
    return len(messages)


def run_rq_worker(app: Flask, burst: bool = False) -> None:
    """An rq worker for the outbox queue, in this process (SimpleWorker: no fork per job, so the app and its
    connections are made once, by this process)."""
    from rq import SimpleWorker
    from rq.serializers import JSONSerializer

    with app.app_context():
        SimpleWorker([queue(app)], connection=_redis(app), serializer=JSONSerializer,
                     job_class=_job_class()).work(burst=burst, with_scheduler=False)
