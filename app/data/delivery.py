"""The worker's "deliver" pass: claim due outbox messages, send each through its channel, mark it.

Local (default): the worker process delivers what it claims. With PORTAL_QUEUE=rq the pass only claims and hands
the claimed ids to an rq queue; `flask --app run portal rq-worker` processes deliver them (app/data/rq_queue.py).
Either way a message is sent only by the holder of its claim (outbox.claim), and marked right after it is sent.
"""
from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
from dataclasses import dataclass
from itertools import groupby

from flask import Flask

from app.data import outbox
from app.data.channels import DeliveryFailed, NotReady, open_channel
from app.data.channels import delivery_timeout
from app.data.channels.email import NOT_CONFIGURED, mail_configured
from app.data.worker import add_worker_pass, stopping

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliverySettings:
    batch: int               # messages claimed at once
    lease_seconds: float     # a claim's lifetime: unmarked messages of a dead worker are due again after it
    retry_base_seconds: float
    retry_max: int
    timeout_seconds: float   # one network wait of a channel (SMTP connect or reply, webhook response)

    @classmethod
    def of(cls, config) -> "DeliverySettings":
        return cls(int(config.get("PORTAL_OUTBOX_BATCH", 100)), float(config.get("PORTAL_OUTBOX_LEASE_SECONDS", 300)),
                   float(config.get("PORTAL_RETRY_BASE_SECONDS", 60)), int(config.get("PORTAL_RETRY_MAX", 8)),
                   delivery_timeout(config))

    @property
    def send_margin(self) -> dt.timedelta:
        """Time one send may take at most (connecting, then sending): no send starts closer than this to the end
        of its claim's lease, so a lease never runs out while its holder is still sending."""
        return dt.timedelta(seconds=2 * self.timeout_seconds)


def install(app: Flask) -> None:
    add_worker_pass(app, "deliver", deliver_pass)


def engine_of(app: Flask):
    return app.appbuilder.session.get_bind()


def deliver_pass(app: Flask) -> int:
    """Messages handled this turn (sent, failed or handed to rq); 0 when none was due."""
    if app.config.get("PORTAL_QUEUE") == "rq":
        from app.data.rq_queue import dispatch
        return dispatch(app)
    settings = DeliverySettings.of(app.config)
    engine = engine_of(app)
    excluded = waiting_channels(app, engine)
    claim = outbox.claim(engine, settings.batch, settings.lease_seconds, excluded)
    deliver_claim(app, engine, claim, settings)
    return len(claim.messages)


def waiting_channels(app: Flask, engine) -> tuple[str, ...]:
    """Channels this worker cannot send yet: not claimed, marked with the reason (not counted as an attempt)."""
    if mail_configured(app.config):
        return ()
    with engine.begin() as conn:
        conn.execute(outbox.OUTBOX.update()
                     .where(outbox.OUTBOX.c.status == outbox.PENDING, outbox.OUTBOX.c.channel == "email",
                            outbox.OUTBOX.c.last_error.is_distinct_from(NOT_CONFIGURED))
                     .values(last_error=NOT_CONFIGURED))
    return ("email",)


def deliver_claim(app: Flask, engine, claim: outbox.Claim, settings: DeliverySettings) -> None:
    """Send the claimed messages, channel by channel (one SMTP connection for a run of e-mails)."""
    messages = sorted(claim.messages, key=lambda m: (m.channel, m.id))
    left = [m.id for m in messages]
    marks = Marks(engine, claim.token, settings)
    try:
        for channel, run in groupby(messages, key=lambda m: m.channel):
            with open_channel(app, channel) as send:
                for message in run:
                    # stop early: asked to stop, or the lease could end during this send (then another worker
                    # could claim it too) -- the rest is given back
                    if stopping(app) or outbox.now() + settings.send_margin >= claim.until:
                        return
                    _deliver_one(marks, message, send)
                    left.remove(message.id)
    finally:
        marks.close()
        if left:
            with engine.begin() as conn:
                outbox.release(conn, claim.token, left)


def _deliver_one(marks: "Marks", message: outbox.Message, send) -> None:
    try:
        send(message)
    except NotReady as reason:
        marks.add("release", message, str(reason))
    except DeliveryFailed as failure:
        log.info("outbox: message %s (%s) not delivered: %s", message.id, message.channel, failure)
        marks.add("failed", message, str(failure))
    except Exception as error:  # a bug in a channel must not kill the worker: count it as a failed attempt
        log.exception("outbox: message %s (%s) failed", message.id, message.channel)
        marks.add("failed", message, f"{error.__class__.__name__}: {error}")
    else:
        marks.add("sent", message)


class Marks:
    """Records each send's outcome right after it, from a thread of its own (group commit).

    The sending loop never waits for a commit: while one commit runs (a few ms: an fsync), the messages sent
    meanwhile queue up and go in the next one. So a worker killed after sending loses the marks of the messages
    of at most one commit interval -- usually one or two messages -- and those are sent again when its lease ends.
    """

    def __init__(self, engine, token: str, settings: DeliverySettings) -> None:
        self.engine, self.token, self.settings = engine, token, settings
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="outbox-marks", daemon=True)
        self.thread.start()

    def add(self, kind: str, message: outbox.Message, error: str | None = None) -> None:
        self.queue.put((kind, message, error))

    def close(self) -> None:
        """Wait until every outcome is written."""
        self.queue.put(None)
        self.thread.join()

    def _run(self) -> None:
        while True:
            items = [self.queue.get()]
            while True:
                try:
                    items.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            last = None in items
            items = [item for item in items if item is not None]
            if items:
                self._write(items)
            if last:
                return

    def _write(self, items: list) -> None:
        settings = self.settings
        try:
            with self.engine.begin() as conn:
                outbox.mark_sent(conn, self.token, [m.id for kind, m, _ in items if kind == "sent"])
                for kind, message, error in items:
                    if kind == "failed":
                        outbox.mark_failed(conn, self.token, message, error, settings.retry_base_seconds,
                                           settings.retry_max)
                    elif kind == "release":
                        outbox.release(conn, self.token, [message.id], error)
        except Exception:  # the database went away: these messages are claimed until the lease ends, then resent
            log.exception("outbox: could not record the outcome of %d messages", len(items))
