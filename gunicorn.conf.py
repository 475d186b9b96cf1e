"""gunicorn settings the portal relies on; gunicorn reads ./gunicorn.conf.py by default.

Command-line flags (-w, -b, --preload, ...) still win over what is set here.
"""
import os

worker_class = "sync"  # sync workers = cores; the app is not written for gevent/eventlet monkey-patching
workers = int(os.environ.get("WEB_CONCURRENCY", os.cpu_count() or 2))
bind = os.environ.get("PORTAL_BIND", "127.0.0.1:8080")


def post_fork(server, worker):
    """With --preload the app (and its engine) was built in the master: make sure the worker starts with
    an empty connection pool. create_app already disposed it; this covers anything opened after that."""
    app = getattr(server.app, "callable", None)  # None without --preload: the worker builds its own app
    if app is None:
        return
    from app.database import forget_connections

    with app.app_context():
        for engine in app.extensions["sqlalchemy"].engines.values():
            forget_connections(engine, close=False)
