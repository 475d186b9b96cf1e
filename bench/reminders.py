"""Reminders (issue 14): the date reminder scan over 1M follow-ups, and what an event reminder adds to a create.

(a) The worker's scan of `follow_up_due` (FollowUp.next_contact_on, offset -1d, when done = false) over 1,000,000
    follow-ups (dates spread over ten years: ~550 due), in its steady state (every due key already fired: the
    pass that runs every few seconds), vs a hand-written indexed SELECT of the due rows. Goal: ≤ 1.5.
(b) `POST /api/v1/ticket/` assigning someone else (ticket_assigned fires: one notification row) with the shipped
    schemas vs the same schemas without `reminders:`; batches of API_BATCH, interleaved. Goal: ≤ 1.1.
Median of interleaved runs with (min–max); ratios are within one run.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import tempfile
from pathlib import Path

from sqlalchemy import text

from app import create_app
from app.portal import portal_of
from app.rules.notification_passes import due_rows, scan

from .common import interleaved, median, pg_schema, release, row, spread
from .reports import ROOT

ROWS = 1_000_000
REPEAT = 11
API_BATCH = 50
API_REPEAT = 9


def _app(url: str, folder: Path):
    logging.getLogger("flask_appbuilder").setLevel(logging.ERROR)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench" * 8, "WTF_CSRF_ENABLED": False,
                      "PORTAL_SCHEMA_DIR": str(folder), "RATELIMIT_ENABLED": False})
    with app.app_context():
        sm = app.appbuilder.sm
        sm.add_user("bench", "Bench", "Admin", "bench@example.com", sm.find_role("Admin"), "bench-pass")
        sm.add_user("agent", "Agent", "One", "agent@example.com", sm.find_role("SupportAgent"), "bench-pass")
    return app


def _seed_follow_ups(app) -> None:
    """ROWS follow-ups of one customer, next_contact_on over ten years around today, a tenth done."""
    portal = portal_of(app)
    with app.app_context():
        engine = app.appbuilder.session.get_bind()
        bench_user = app.appbuilder.sm.find_user(username="bench").id
        customers = portal.models["Customer"].__table__
        table = portal.models["FollowUp"].__table__
        now = dt.datetime.now().replace(microsecond=0)
        start = dt.date.today() - dt.timedelta(days=1825)
        with engine.begin() as conn:
            customer = conn.execute(customers.insert().values(name="Bench customer", created_on=now, changed_on=now,
                                                              row_version=1)).inserted_primary_key[0]
            for chunk in range(0, ROWS, 50_000):
                conn.execute(table.insert(), [
                    {"customer_id": customer, "summary": "call", "method": "phone", "at": now,
                     "next_contact_on": start + dt.timedelta(days=(i * 7919) % 3650), "done": i % 10 == 0, "by_id": bench_user,
                     "created_on": now, "changed_on": now, "row_version": 1}
                    for i in range(chunk, min(ROWS, chunk + 50_000))])
            if conn.dialect.name == "postgresql":
                conn.execute(text(f"ANALYZE {table.name}"))
            else:
                conn.execute(text("ANALYZE"))


def scan_runs(url: str, label: str) -> list[str]:
    app = _app(url, ROOT / "schemas")
    try:
        _seed_follow_ups(app)
        portal = portal_of(app)
        reminder = next(r for r in portal.spec.reminders if r.name == "follow_up_due")
        with app.app_context():
            first = scan(app)  # fires the due keys once; later scans find them taken
            engine = app.appbuilder.session.get_bind()
            today, tomorrow = dt.date.today(), dt.date.today() + dt.timedelta(days=1)
            hand = text("SELECT id, next_contact_on FROM follow_up WHERE next_contact_on >= :a "
                        "AND next_contact_on <= :b AND done = :f ORDER BY id")
            with engine.connect() as conn:
                due = len(due_rows(conn, portal, [reminder], dt.datetime.now()))  # without the fired keys
                plan = " ".join(str(r[-1]) for r in conn.execute(text(
                    ("EXPLAIN QUERY PLAN " if conn.dialect.name == "sqlite" else "EXPLAIN ") +
                    "SELECT id FROM follow_up WHERE next_contact_on >= :a AND next_contact_on <= :b AND done = :f"),
                    {"a": today, "b": tomorrow, "f": False}))

            def handwritten():
                with engine.connect() as conn:
                    conn.execute(hand, {"a": today, "b": tomorrow, "f": False}).all()

            def steady_scan():
                assert scan(app) == 0

            times = interleaved({"select": handwritten, "scan": steady_scan}, REPEAT)
        uses_index = "ix_follow_up_next_contact_on" in plan
        return [row(f"{label}: scan of 1M follow-ups ({due} due, {first} notifications on the first scan), ms",
                    spread(times["select"], 1000), spread(times["scan"], 1000),
                    f"{median(times['scan']) / median(times['select']):.2f}", "≤ 1.5",
                    "index" if uses_index else "NO INDEX")]
    finally:
        release(app)


def _creator(app):
    client = app.test_client()
    token = client.post("/api/v1/security/login", json={"username": "bench", "password": "bench-pass", "provider": "db"})
    headers = {"Authorization": f"Bearer {token.json['access_token']}"}
    customer = client.post("/api/v1/customer/", json={"name": "Bench Co"}, headers=headers).json["id"]
    with app.app_context():
        agent = app.appbuilder.sm.find_user(username="agent").id

    def call():
        for _ in range(API_BATCH):
            response = client.post("/api/v1/ticket/", json={"subject": "Bench", "customer": customer, "assignee": agent},
                                   headers=headers)
            assert response.status_code == 201, response.json
    return call


def create_runs(url_on: str, url_off: str, work: Path, label: str) -> list[str]:
    folder = work / "no-reminders"
    folder.mkdir(exist_ok=True)
    for source in (ROOT / "schemas").glob("*.yaml"):
        (folder / source.name).write_text(re.sub(r"\nreminders:\n(?:  .*\n|\n)*", "\n", source.read_text("utf-8")),
                                          encoding="utf-8")
    on, off = _app(url_on, ROOT / "schemas"), _app(url_off, folder)
    try:
        assert portal_of(on).spec.reminders and not portal_of(off).spec.reminders
        times = interleaved({"off": _creator(off), "on": _creator(on)}, API_REPEAT)
        with on.app_context():
            written = on.appbuilder.session.execute(text("SELECT count(*) FROM portal_notifications")).scalar()
        assert written == API_BATCH * API_REPEAT, written
        ms = 1000 / API_BATCH
        return [row(f"{label}: POST ticket (ticket_assigned fires), ms per create", spread(times["off"], ms),
                    spread(times["on"], ms), f"{median(times['on']) / median(times['off']):.2f}", "≤ 1.1", "")]
    finally:
        release(on)
        release(off)


def run(pg_url: str | None = None) -> list[str]:
    out = ["| bench | anchor | reminders | ratio | goal | plan |", "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        out += create_runs(f"sqlite:///{work / 'on.db'}", f"sqlite:///{work / 'off.db'}", work, "SQLite")
        out += scan_runs(f"sqlite:///{work / 'scan.db'}", "SQLite")
        if pg_url:
            with pg_schema(pg_url) as on, pg_schema(pg_url) as off:
                out += create_runs(on, off, work, "PostgreSQL")
            with pg_schema(pg_url) as url:
                out += scan_runs(url, "PostgreSQL")
    return out
