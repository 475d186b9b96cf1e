"""gunicorn settings the portal relies on; gunicorn reads ./gunicorn.conf.py by default, so the README's
`gunicorn --preload -w 2 -b 0.0.0.0:8080 run:app` uses them. Command-line flags still win over these.

Access log lines end with the request id the portal sends back in X-Request-ID. With
PROMETHEUS_MULTIPROC_DIR set, the workers' metrics are added up in /metrics (see docs/operations.md).
"""
import glob
import os

worker_class = "sync"  # sync workers = cores; the app is not written for gevent/eventlet monkey-patching
workers = int(os.environ.get("WEB_CONCURRENCY", os.cpu_count() or 2))
bind = os.environ.get("PORTAL_BIND", "127.0.0.1:8080")
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)sms pid=%(p)s rid=%({x-request-id}o)s'


def on_starting(server):
    """Drop figures that a previous run left in PROMETHEUS_MULTIPROC_DIR (this master's own stay)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        for path in glob.glob(os.path.join(directory, "*.db")):
            if not path.endswith(f"_{os.getpid()}.db"):
                os.remove(path)


def when_ready(server):
    """With --preload, load what the schema's field types need (the address parser) once, in the master, before the
    workers are forked: they share it instead of each loading it on its first address."""
    portal = getattr(getattr(server.app, "callable", None), "extensions", {}).get("portal")
    if portal is not None:
        from app.fieldtypes.registry import warm_up_types

        warm_up_types(portal.spec)


def post_fork(server, worker):
    """With --preload the app (and its engine) was built in the master: make sure the worker starts with
    an empty connection pool. create_app already disposed it; this covers anything opened after that."""
    app = getattr(server.app, "callable", None)  # None without --preload: the worker builds its own app
    database = getattr(app, "extensions", {}).get("sqlalchemy")  # None for an app that is not the portal
    if database is None:
        return
    from app.runtime.database import forget_connections

    with app.app_context():
        for engine in database.engines.values():
            forget_connections(engine, close=False)


def post_worker_init(worker):
    """Let long streamed downloads tell the arbiter this worker is alive (see app/runtime/serving.py)."""
    from app.runtime.serving import attach_worker

    attach_worker(worker.wsgi, worker)


def child_exit(server, worker):
    """A worker is gone: its live gauges must no longer count in the sums."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(worker.pid)
