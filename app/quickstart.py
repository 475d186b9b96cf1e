"""`python run.py`: make sure an admin exists, load demo data into an empty portal, serve locally."""
from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from flask import Flask

from app.demo import load_demo


def quiet_missing_admin_warning() -> None:
    """Flask-AppBuilder warns "No user yet created, use flask fab command to do it." while the app starts on an
    empty database; `python run.py` creates the admin a moment later (`ensure_admin`) and prints its password, so
    on a first `make run` the warning only misleads. Other entry points (gunicorn, `flask`) keep it."""
    from flask_appbuilder.const import LOGMSG_WAR_SEC_NO_USER

    logging.getLogger("flask_appbuilder.security.manager").addFilter(
        lambda record: record.msg != LOGMSG_WAR_SEC_NO_USER)


def ensure_admin(app: Flask) -> tuple[str, str] | None:
    """Create the admin named by PORTAL_ADMIN_USER/PORTAL_ADMIN_PASSWORD (default admin + random password).

    Returns the credentials when a user was created, None when it already existed.
    """
    sm = app.appbuilder.sm
    username = os.environ.get("PORTAL_ADMIN_USER", "admin")
    if sm.find_user(username=username):
        return None
    password = os.environ.get("PORTAL_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    role = sm.find_role(app.config["AUTH_ROLE_ADMIN"])
    if not sm.add_user(username, "Portal", "Admin", f"{username}@localhost", role, password):
        raise RuntimeError(f"could not create admin user {username}")
    return username, password


def serve(app: Flask) -> None:
    host = os.environ.get("PORTAL_HOST", "127.0.0.1")
    port = int(os.environ.get("PORTAL_PORT", "8080"))
    with app.app_context():
        created = ensure_admin(app)
        if os.environ.get("PORTAL_DEMO", "1") == "1":
            summary = load_demo(app)
            if summary:
                print(f"Loaded demo data: {summary}")
    if created:
        print(f"Created admin user '{created[0]}' with password '{created[1]}' (set PORTAL_ADMIN_PASSWORD to choose it).")
    print(f"Portal running at http://{host}:{port}/  (Ctrl+C to stop)")
    worker = start_worker(app) if os.environ.get("PORTAL_RUN_WORKER", "1") == "1" else None
    # SIGTERM (a service manager, `kill`) ends the server like Ctrl+C does, so the worker is stopped with it
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        app.run(host=host, port=port, debug=False)
    finally:
        if worker is not None:
            stop_worker(worker)


def start_worker(app: Flask) -> subprocess.Popen:
    """One `flask --app run portal worker` process beside the local server (notifications: app/data/worker.py).

    A process of its own, started fresh (not forked from this one): it opens its own database connections.
    """
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
           "PORTAL_SCHEMA_DIR": str(app.config["PORTAL_SCHEMA_DIR"]),
           "PORTAL_WORKER_PARENT": str(os.getpid())}  # the worker stops if this process dies, even by SIGKILL
    worker = subprocess.Popen([sys.executable, "-m", "flask", "--app", "run", "portal", "worker"], cwd=root, env=env)
    print(f"Notification worker running (pid {worker.pid}).")
    return worker


def stop_worker(worker: subprocess.Popen) -> None:
    """SIGTERM: the worker finishes the message it is sending, then exits."""
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
