"""app/runtime/serving.py with a real gunicorn sync worker object (its heartbeat file is what the arbiter watches):
streams and long steps check in; outside gunicorn they are no-ops. The end-to-end case (a download outliving
--timeout) runs through a real gunicorn in tests/test_gunicorn.py."""
from __future__ import annotations

import os
import time

import pytest
from flask import Flask
from gunicorn.config import Config
from gunicorn.workers.sync import SyncWorker

from app.runtime.serving import EXTENSION, attach_worker, heartbeat, keep_alive


@pytest.fixture()
def worker():
    worker = SyncWorker(0, os.getpid(), [], None, 30, Config(), None)
    yield worker
    worker.tmp.close()


@pytest.fixture()
def app():
    return Flask("serving_test")


def test_attach_worker_only_to_a_flask_app(app, worker):
    attach_worker(object(), worker)  # gunicorn may load something that is not our app: ignored
    attach_worker(app, worker)
    assert app.extensions[EXTENSION] is worker


def test_keep_alive_checks_in_before_every_chunk(app, worker):
    attach_worker(app, worker)
    with app.app_context():
        seen = []
        for chunk in keep_alive(iter([b"a", b"b", b"c"])):
            seen.append((chunk, worker.tmp.last_update()))
            time.sleep(0.002)
    assert [chunk for chunk, _ in seen] == [b"a", b"b", b"c"]
    stamps = [stamp for _, stamp in seen]
    assert stamps == sorted(set(stamps))  # a fresh check-in per chunk
    assert abs(stamps[-1] - time.monotonic()) < 5  # gunicorn stamps the heartbeat file with the monotonic clock


def test_heartbeat_checks_in_at_most_every_interval(app, worker):
    attach_worker(app, worker)
    with app.app_context():
        beat = heartbeat(every=3600)
        beat()
        first = worker.tmp.last_update()
        time.sleep(0.002)
        beat()  # within the interval: no new check-in
        assert worker.tmp.last_update() == first
        often = heartbeat(every=0)
        often()
        assert worker.tmp.last_update() > first


def test_outside_gunicorn_nothing_happens(app):
    with app.app_context():
        assert list(keep_alive(iter([b"x", b"y"]))) == [b"x", b"y"]
        assert heartbeat()() is None
