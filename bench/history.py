"""Record history (issue 13): what `history: true` costs, and a timeline's first page at 10 vs 10,000 events.

(a) API update: `PUT /api/v1/customer/<id>` (one changed field) with the shipped schemas vs the same schemas with
    every `history: true` taken out; batches of API_BATCH updates, interleaved. Goal: with / without <= 1.3.
(b) Import of 100k labour entries (bench/imports.py's file and seed) with vs without history. Goal <= 1.5.
(c) The detail page of a customer with 10,000 history events vs one with 10 (the timeline's first page is on it).
    Goal: about 1.
Median of interleaved runs with (min–max); ratios are within one run.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
from pathlib import Path

from sqlalchemy import delete

from app import create_app
from app.portal import portal_of

from . import imports
from .common import interleaved, median, pg_schema, row, spread
from .reports import ROOT

REPEAT = 11
IMPORT_REPEAT = 3
API_BATCH = 100
PAGE_BATCH = 20
EVENTS = 10_000


def _portal(url: str, work: Path, history: bool):
    """The shipped schemas, or a copy with every `history: true` taken out; no rate limit (a bench is a flood)."""
    folder = ROOT / "schemas"
    if not history:
        folder = work / "no-history-schemas"
        folder.mkdir(exist_ok=True)
        for source in (ROOT / "schemas").glob("*.yaml"):
            text = source.read_text(encoding="utf-8").replace("\n    history: true", "")
            (folder / source.name).write_text(text, encoding="utf-8")
    logging.getLogger("flask_appbuilder").setLevel(logging.ERROR)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench" * 8, "WTF_CSRF_ENABLED": False,
                      "PORTAL_SCHEMA_DIR": str(folder), "RATELIMIT_ENABLED": False})
    assert any(e.history for e in portal_of(app).spec.entities) == history
    with app.app_context():
        sm = app.appbuilder.sm
        sm.add_user("bench", "Bench", "Admin", "bench@example.com", sm.find_role("Admin"), "bench-pass")
    return app


def _client(app):
    client = app.test_client()
    token = client.post("/api/v1/security/login", json={"username": "bench", "password": "bench-pass", "provider": "db"})
    return client, {"Authorization": f"Bearer {token.json['access_token']}"}


def updater(app):
    """call() -> API_BATCH updates of one customer, each changing its address."""
    client, headers = _client(app)
    pk = client.post("/api/v1/customer/", json={"name": "Bench Co"}, headers=headers).json["id"]
    counter = iter(range(10**9))

    def call():
        for _ in range(API_BATCH):
            response = client.put(f"/api/v1/customer/{pk}", json={"address": f"Street {next(counter)}"}, headers=headers)
            assert response.status_code == 200, response.json
    return call


def api_updates(on, off, label: str) -> list[str]:
    times = interleaved({"on": updater(on), "off": updater(off)}, REPEAT)
    ms = 1000 / API_BATCH
    return [row(f"{label}: PUT, ms per update", spread(times["off"], ms), spread(times["on"], ms),
                f"{median(times['on']) / median(times['off']):.2f}", "≤ 1.3")]


def import_runs(on, off, label: str) -> list[str]:
    data = imports.without_columns(imports.make_csv(), 5, 6, 7)  # rate from the worker, amount and approved formulas
    for app in (on, off):
        imports.seed(app)
    seconds = {"on": [], "off": []}

    def run(key, app):
        def call():
            taken, report = imports.portal_import(app, data)
            assert report.written and report.created == imports.ROWS, report.errors[:5]
            seconds[key].append(taken)
            imports.clear(app)
            with app.app_context(), app.appbuilder.session.get_bind().begin() as conn:
                conn.execute(delete(portal_of(app).metadata.tables["portal_history"]))
        return call

    interleaved({"on": run("on", on), "off": run("off", off)}, IMPORT_REPEAT)
    return [row(f"{label}: import of {imports.ROWS:,} rows, s", spread(seconds["off"]), spread(seconds["on"]),
                f"{median(seconds['on']) / median(seconds['off']):.2f}", "≤ 1.5")]


def _customer_with_events(app, name: str, events: int) -> int:
    client, headers = _client(app)
    pk = client.post("/api/v1/customer/", json={"name": name}, headers=headers).json["id"]
    table = portal_of(app).metadata.tables["portal_history"]
    at = dt.datetime.now().replace(microsecond=0) - dt.timedelta(days=1)
    rows = [{"entity": "Customer", "record_id": pk, "at": at + dt.timedelta(seconds=n), "user_id": None,
             "username": "bench", "path": "api", "action": "update", "transition": None,
             "changes": json.dumps({"address": [f"Street {n}", f"Street {n + 1}"], "level": ["normal", "vip"]})}
            for n in range(events - 1)]
    with app.app_context(), app.appbuilder.session.get_bind().begin() as conn:
        for start in range(0, len(rows), 5000):
            conn.execute(table.insert(), rows[start:start + 5000])
    return pk


def timeline_pages(app, label: str) -> list[str]:
    small, big = _customer_with_events(app, "Ten", 10), _customer_with_events(app, "Many", EVENTS)
    client = app.test_client()
    client.post("/login/", data={"username": "bench", "password": "bench-pass"})

    def show(pk):
        def call():
            for _ in range(PAGE_BATCH):
                response = client.get(f"/customer/show/{pk}")
                assert response.status_code == 200 and "portal-timeline-entry" in response.text
        return call

    times = interleaved({"10": show(small), "10k": show(big)}, REPEAT)
    ms = 1000 / PAGE_BATCH
    return [row(label, spread(times["10"], ms), spread(times["10k"], ms),
                f"{median(times['10k']) / median(times['10']):.2f}", "≈ 1")]


def measure(url_on: str, url_off: str, work: Path, label: str) -> tuple[list[str], list[str]]:
    on, off = _portal(url_on, work, history=True), _portal(url_off, work, history=False)
    return api_updates(on, off, label) + import_runs(on, off, label), timeline_pages(on, label)


def run(pg: str | None = None) -> list[str]:
    work = Path(tempfile.mkdtemp(prefix="bench-history-"))
    costs, pages = measure(f"sqlite:///{work / 'on.db'}", f"sqlite:///{work / 'off.db'}", work, "SQLite")
    if pg:
        with pg_schema(pg) as url_on, pg_schema(pg) as url_off:
            more_costs, more_pages = measure(url_on, url_off, work, "PostgreSQL")
            costs, pages = costs + more_costs, pages + more_pages
    return (["### History: with vs without `history: true` (median of interleaved runs, min–max)", "",
             row("measure", "without history", "with history", "ratio", "goal"), row("---", "---", "---", "---", "---")]
            + costs + ["", f"### Detail page with its timeline: 10 vs {EVENTS:,} events, ms per page (median, min–max)", "",
                       row("database", "10 events", f"{EVENTS:,} events", "ratio", "goal"),
                       row("---", "---", "---", "---", "---")] + pages)
