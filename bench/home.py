"""The "my work" home page with 6 view counts over 1M labour entries vs the same COUNT queries run raw.

Schemas: the shipped ones plus four more `home: true` views on LabourEntry (below), so a Manager's home page counts
six views (awaiting_my_approval, these four, my_open_tickets on an empty Ticket table) and the overdue highlight.
Anchor: the same seven COUNT statements, hand-written SQL on the raw DB-API connection (no ORM, no Flask), one
after the other. Measured: GET / through the FAB test client as a signed-in Manager (no row scope on these
entities), interleaved with the anchor, median of RUNS runs with the spread (min–max). Goal: page / raw <= 1.5.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

from app import create_app

from .common import interleaved, median, pg_schema, release, row, spread
from .reports import ROWS, fill

RUNS = 7
ROOT = Path(__file__).resolve().parent.parent
EXTRA_VIEWS = """
  approved_entries: {entity: LabourEntry, filter: {approved: true}, roles: [Manager], home: true}
  half_days: {entity: LabourEntry, filter: {days: 0.5}, roles: [Manager], home: true}
  short_entries: {entity: LabourEntry, filter: {hours: {lt: 8}, amount: {gt: 100}}, roles: [Manager], home: true}
  recent_entries: {entity: LabourEntry, filter: {work_date: {gte: $today-900d}}, roles: [Manager], home: true}
"""


def _schemas() -> Path:
    target = Path(tempfile.mkdtemp(prefix="bench-home-schemas-"))
    for path in (ROOT / "schemas").glob("*.yaml"):
        shutil.copy(path, target / path.name)
    labour = target / "labour.yaml"
    labour.write_text(labour.read_text(encoding="utf-8") + EXTRA_VIEWS, encoding="utf-8")
    return target


def _app(url: str):
    logging.getLogger("flask_appbuilder").setLevel(logging.ERROR)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench", "WTF_CSRF_ENABLED": False,
                      "PORTAL_SCHEMA_DIR": str(_schemas())})
    with app.app_context():
        sm = app.appbuilder.sm
        sm.add_user("bench", "Bench", "Manager", "bench@example.com", [sm.find_role("Manager")], "bench-pass")
    return app


def _raw_counts(app):
    """The home page's counts as a developer would write them by hand (the same conditions)."""
    with app.app_context():
        engine = app.appbuilder.session.get_bind()
        user_id = app.appbuilder.sm.find_user(username="bench").id
    true = "true" if engine.dialect.name == "postgresql" else "1"
    statements = [
        "SELECT count(*) FROM labour_entry WHERE state = 'submitted'",
        f"SELECT count(*) FROM labour_entry WHERE approved = {true}",
        "SELECT count(*) FROM labour_entry WHERE days = 0.5",
        "SELECT count(*) FROM labour_entry WHERE hours < 8 AND amount > 100",
        "SELECT count(*) FROM labour_entry WHERE work_date >= CURRENT_DATE - 900" if engine.dialect.name == "postgresql"
        else "SELECT count(*) FROM labour_entry WHERE work_date >= date('now', 'localtime', '-900 days')",
        f"SELECT count(*) FROM ticket WHERE assignee_id = {user_id} AND status IN ('open', 'in_progress') "
        "AND due_date < CURRENT_DATE + 3" if engine.dialect.name == "postgresql" else
        f"SELECT count(*) FROM ticket WHERE assignee_id = {user_id} AND status IN ('open', 'in_progress') "
        "AND due_date < date('now', 'localtime', '+3 days')",
        "SELECT count(*) FROM ticket WHERE due_date < CURRENT_DATE AND status IN ('open', 'in_progress')",
    ]

    def run():
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            for sql in statements:
                cursor.execute(sql)
                cursor.fetchall()
        finally:
            raw.close()
    return run


def measure(app, label: str) -> list[str]:
    client = app.test_client()
    client.post("/login/", data={"username": "bench", "password": "bench-pass"})
    page = client.get("/")
    assert page.status_code == 200 and page.data.count(b"portal-home-card") == 6, page.data[:300]
    calls = {"raw COUNT queries": _raw_counts(app), "home page": lambda: client.get("/")}
    times = interleaved(calls, repeat=RUNS)
    ratios = [p / r for p, r in zip(times["home page"], times["raw COUNT queries"])]
    return [f"### Home page with 6 view counts over {ROWS:,} labour entries ({label})", "",
            row("what", "ms, median (min–max)"), row("---", "---"),
            row("raw COUNT queries (anchor: 6 views + the overdue highlight)", spread(times["raw COUNT queries"], 1000, 1)),
            row("home page GET /", spread(times["home page"], 1000, 1)),
            row("home / raw (per run)", f"{median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})"), ""]


def run(pg: str | None = None) -> list[str]:
    work = Path(tempfile.mkdtemp(prefix="bench-home-"))
    app = _app(f"sqlite:///{work / 'home.db'}")
    started = time.perf_counter()
    fill(app)
    lines = measure(app, "SQLite")
    lines.append(f"SQLite fill and measure: {time.perf_counter() - started:.0f} s.\n")
    if pg:
        with pg_schema(pg) as url:
            app = _app(url)
            fill(app)
            lines += measure(app, "PostgreSQL")
            release(app)
    shutil.rmtree(work, ignore_errors=True)
    return lines


if __name__ == "__main__":
    print("\n".join(run()))
