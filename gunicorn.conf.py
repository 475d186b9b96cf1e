"""gunicorn settings, read from ./gunicorn.conf.py by default: `gunicorn --preload -w 2 -b 0.0.0.0:8080 run:app`.

Access log lines end with the request id the portal sends back in X-Request-ID. With
PROMETHEUS_MULTIPROC_DIR set, the workers' metrics are added up in /metrics (see docs/operations.md).
"""
import glob
import os

accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)sms pid=%(p)s rid=%({x-request-id}o)s'


def on_starting(server):
    """Drop figures that a previous run left in PROMETHEUS_MULTIPROC_DIR (this master's own stay)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        for path in glob.glob(os.path.join(directory, "*.db")):
            if not path.endswith(f"_{os.getpid()}.db"):
                os.remove(path)


def post_fork(server, worker):
    """--preload built the app in the master: a worker must not reuse the master's pooled connections
    (two processes on one PostgreSQL socket hang). The lead's start-up work has the full version of this."""
    app = getattr(server.app, "callable", None)  # None without --preload
    if app is not None:
        with app.app_context():
            for engine in app.extensions["sqlalchemy"].engines.values():
                engine.dispose(close=False)


def child_exit(server, worker):
    """A worker is gone: its live gauges must no longer count in the sums."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(worker.pid)
