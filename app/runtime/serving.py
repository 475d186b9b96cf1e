"""What the web server process lends the app: gunicorn's worker, so long streamed downloads stay alive.

A sync worker that does not check in with the arbiter for `--timeout` seconds (30 by default) is
killed, even while it is busily streaming a 1M-row export. Streams call `keep_alive` between chunks:
a worker that makes progress checks in; a hung one still gets killed.
"""
from __future__ import annotations

import time
from typing import Callable, Iterator

from flask import Flask, current_app

EXTENSION = "portal.gunicorn_worker"


def attach_worker(app: Flask, worker) -> None:
    """gunicorn's post_worker_init hook: remember the worker serving this app."""
    if isinstance(app, Flask):
        app.extensions[EXTENSION] = worker


def keep_alive(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The chunks, checking in with gunicorn's arbiter before each (no-op outside gunicorn)."""
    worker = current_app.extensions.get(EXTENSION)
    if worker is None:
        yield from chunks
        return
    for chunk in chunks:
        worker.notify()
        yield chunk


def heartbeat(every: float = 0.5) -> Callable[[], None]:
    """A function to call often during one long blocking step (e.g. a COPY); it checks in at most every `every` s."""
    worker = current_app.extensions.get(EXTENSION)
    if worker is None:
        return lambda: None
    last = [0.0]

    def beat() -> None:
        now = time.monotonic()
        if now - last[0] >= every:
            last[0] = now
            worker.notify()
    return beat
