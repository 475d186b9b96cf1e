"""The background worker: `flask --app run portal worker [--once]`.

Features register passes on the app (`add_worker_pass`); the loop runs every pass in order and sleeps
PORTAL_WORKER_POLL_SECONDS when none of them did any work. `--once` runs passes until all are idle, then exits
(tests, cron). SIGTERM / SIGINT ask the loop to stop; a pass that works through many units checks `stopping(app)`
between them, so the worker stops after the current message.

The worker is its own process (`flask … portal worker`, or started by `python run.py` beside the server): its
database connections are opened by that process, never inherited across a fork.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Callable

from flask import Flask

log = logging.getLogger(__name__)
EXTENSION = "portal_worker"


class _Worker:
    def __init__(self) -> None:
        self.passes: dict[str, Callable[[Flask], int]] = {}  # in registration order
        self.stop = threading.Event()


def _worker(app: Flask) -> _Worker:
    return app.extensions.setdefault(EXTENSION, _Worker())


def add_worker_pass(app: Flask, name: str, run: Callable[[Flask], int]) -> None:
    """Run `run(app)` on every turn of the worker loop; it returns the units of work done (0 = idle).
    A name registered again replaces the earlier pass."""
    _worker(app).passes[name] = run


def worker_passes(app: Flask) -> list[str]:
    return list(_worker(app).passes)


def stopping(app: Flask) -> bool:
    """True once the worker was asked to stop: a pass finishes its current unit and returns."""
    return _worker(app).stop.is_set()


def request_stop(app: Flask) -> None:
    _worker(app).stop.set()


def run_once(app: Flask) -> int:
    """Every pass once, in order; the units of work they did. A failing pass is logged, the others still run."""
    done = 0
    for name, run in list(_worker(app).passes.items()):
        if stopping(app):
            break
        try:
            with app.app_context():
                done += run(app) or 0
        except Exception:
            log.exception("worker pass %s failed", name)
    return done


def run_worker(app: Flask, once: bool = False) -> None:
    """The loop: every pass in order, sleep when all were idle. `once`: stop at the first idle turn."""
    worker = _worker(app)
    worker.stop.clear()
    _stop_on_signals(app)
    poll = float(app.config.get("PORTAL_WORKER_POLL_SECONDS", 2))
    log.info("worker started: passes %s", ", ".join(worker.passes) or "(none)")
    parent = os.environ.get("PORTAL_WORKER_PARENT")  # set by `python run.py` / `make run` for the worker it starts
    while not worker.stop.is_set():
        if parent and os.getppid() != int(parent):
            log.info("worker: the process that started it is gone, stopping")
            break
        if run_once(app) == 0:
            if once:
                break
            worker.stop.wait(poll)
    log.info("worker stopped")


def _stop_on_signals(app: Flask) -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set in the main thread (a test running the loop in a thread)

    def stop(signum, frame):
        log.info("worker: signal %s, stopping after the current message", signum)
        request_stop(app)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
