"""Prometheus metrics at /metrics (prometheus-flask-exporter).

- requests: `flask_http_request_duration_seconds{method,endpoint,status}` (its `_count` is the
  request count by endpoint and status) and `flask_http_request_total{method,status}`;
- database pool: `portal_db_pool_checked_out` and `portal_db_pool_size`, kept by pool events;
- jobs: `portal_job_duration_seconds{kind,outcome}` for imports, reports, exports: wrap the work in
  `with timed("import"): ...`.

Under gunicorn set PROMETHEUS_MULTIPROC_DIR (an empty directory): every worker writes its figures
there and /metrics adds them up, whichever worker answers (gunicorn.conf.py's child_exit hook drops
the figures of workers that exited). Without it each process keeps its own registry.
/metrics is not public: see `metrics_guard`.
"""
from __future__ import annotations

import functools
import hmac
from contextlib import contextmanager
from time import perf_counter

from flask import current_app, has_app_context, jsonify, request
from flask_babel import gettext
from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_flask_exporter import PrometheusMetrics
from sqlalchemy import event

from app.portal import current_portal, portal_of

LOCAL_ADDRESSES = {"127.0.0.1", "::1"}
JOB_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class PortalMetrics:
    """The app's own registry and metrics (one per app, so several apps in a process don't clash)."""

    def __init__(self, app, engine):
        self.registry = CollectorRegistry()
        before = app.before_request_funcs.setdefault(None, [])
        existing = len(before)
        self.exporter = PrometheusMetrics(app, registry=self.registry, group_by="endpoint", metrics_decorator=metrics_guard)
        # start the exporter's clock before the other before_request hooks: the rate limiter's
        # 429s (raised from its own hook) would otherwise go untimed and uncounted by endpoint
        before[:] = before[existing:] + before[:existing]
        self.jobs = Histogram("portal_job_duration_seconds", "Imports, reports and exports, seconds",
                              ("kind", "outcome"), buckets=JOB_BUCKETS, registry=self.registry)
        # livesum: the total over live workers; livemax: each worker has the same pool size
        self.checked_out = Gauge("portal_db_pool_checked_out", "Database connections in use",
                                 registry=self.registry, multiprocess_mode="livesum")
        self.pool_size = Gauge("portal_db_pool_size", "Database pool size (per process)",
                               registry=self.registry, multiprocess_mode="livemax")
        self.pool_size.set(_pool_figure(engine, "size", 1))
        # a forked gunicorn worker starts its figures from zero: set the size again once it connects
        event.listen(engine, "connect", lambda *args: self.pool_size.set(_pool_figure(engine, "size", 1)))
        self.checked_out.set(_pool_figure(engine, "checkedout", 0))  # FAB's set-up session may hold one now
        event.listen(engine, "checkout", lambda *args: self.checked_out.inc())
        event.listen(engine, "checkin", lambda *args: self.checked_out.dec())


def install_metrics(app, engine) -> None:
    portal_of(app).metrics = PortalMetrics(app, engine)


@contextmanager
def timed(kind: str):
    """Observe how long the block takes in portal_job_duration_seconds{kind=...,outcome=ok|error}."""
    metrics = current_portal().metrics if has_app_context() else None
    start, outcome = perf_counter(), "error"
    try:
        yield
        outcome = "ok"
    finally:
        if metrics is not None:
            metrics.jobs.labels(kind=kind, outcome=outcome).observe(perf_counter() - start)


def timed_chunks(kind: str, chunks):
    """timed() for a streamed response: the clock runs until the last chunk is sent."""
    with timed(kind):
        yield from chunks


def metrics_guard(view):
    """With PORTAL_METRICS_TOKEN: `Authorization: Bearer <token>` (401 without, 403 wrong); else localhost only."""
    @functools.wraps(view)
    def guarded(*args, **kwargs):
        token = current_app.config.get("PORTAL_METRICS_TOKEN")
        if token:
            sent = request.headers.get("Authorization", "")
            if not sent.startswith("Bearer "):
                response = jsonify(message=gettext("A bearer token is required."))
                response.status_code, response.headers["WWW-Authenticate"] = 401, "Bearer"
                return response
            if not hmac.compare_digest(sent[7:].encode(), token.encode()):
                return jsonify(message=gettext("This token is not allowed to read the metrics.")), 403
        elif request.remote_addr not in LOCAL_ADDRESSES:
            return jsonify(message=gettext("Metrics are only served to localhost unless PORTAL_METRICS_TOKEN is set.")), 403
        return view(*args, **kwargs)
    return guarded


def _pool_figure(engine, name: str, default: int) -> int:
    figure = getattr(engine.pool, name, None)  # QueuePool has them; SQLite memory databases use other pools
    return figure() if callable(figure) else default
