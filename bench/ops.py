"""Per-request cost of the operations layer (metrics, request ids, rate limits, outage hooks, pool_pre_ping).

Anchor: the same portal built in the same process without `install_operations` and without
`pool_pre_ping`. Measured: an API list (JWT) and a list page (session) on each, interleaved,
median and interquartile range of 40 requests each.
"""
from __future__ import annotations

import logging
import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import app.factory as portal  # create_app looks install_operations up here
from app import create_app

from .common import pg_schema, row

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 40


def _app(url: str, operations: bool):
    logging.getLogger("flask_appbuilder").setLevel(logging.ERROR)
    config = {"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench-secret-key-long-enough-for-hs256",
              "WTF_CSRF_ENABLED": False, "PORTAL_SCHEMA_DIR": str(ROOT / "schemas")}
    real = portal.install_operations
    if not operations:
        config["SQLALCHEMY_ENGINE_OPTIONS"] = {}
        portal.install_operations = lambda app, appbuilder: None
    try:
        app = create_app(config)
    finally:
        portal.install_operations = real
    with app.app_context():
        sm = app.appbuilder.sm
        sm.add_user("bench", "Bench", "Admin", "bench@example.com", sm.find_role("Admin"), "bench-pass")
    api, browser = app.test_client(), app.test_client()
    token = api.post("/api/v1/security/login", json={"username": "bench", "password": "bench-pass", "provider": "db"}).json
    browser.post("/login/", data={"username": "bench", "password": "bench-pass"})
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    return {"API list /api/v1/customer/": lambda: api.get("/api/v1/customer/", headers=headers),
            "page /customer/list/": lambda: browser.get("/customer/list/")}


def _ms(fn) -> float:
    start = time.perf_counter()
    assert fn().status_code == 200
    return (time.perf_counter() - start) * 1000


def _spread(values) -> str:
    q1, median, q3 = statistics.quantiles(values, n=4)
    return f"{median:.2f} ({q1:.2f}–{q3:.2f})"


def run(pg_url: str | None) -> list[str]:
    lines = ["| database | request | without ops ms, median (IQR) | with ops ms | ratio |", "| --- | --- | --- | --- | --- |"]
    targets = [("SQLite", None)] + ([("PostgreSQL", pg_url)] if pg_url else [])
    for name, base in targets:
        with tempfile.TemporaryDirectory() as tmp, \
                (pg_schema(base) if base else nullcontext(f"sqlite:///{tmp}/a.db")) as url_a, \
                (pg_schema(base) if base else nullcontext(f"sqlite:///{tmp}/b.db")) as url_b:
            bare, full = _app(url_a, operations=False), _app(url_b, operations=True)
            for request_name in bare:
                without, with_ops = [], []
                for _ in range(5):  # warm up
                    bare[request_name](), full[request_name]()
                for i in range(ROUNDS):  # interleaved, alternating which goes first
                    pair = [(without, bare[request_name]), (with_ops, full[request_name])]
                    for values, fn in (pair if i % 2 else pair[::-1]):
                        values.append(_ms(fn))
                ratio = statistics.median(with_ops) / statistics.median(without)
                lines.append(row(name, request_name, _spread(without), _spread(with_ops), f"{ratio:.3f}"))
    return lines
