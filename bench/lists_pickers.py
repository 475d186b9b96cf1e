"""List page and add form cost with few vs many linked records (`python -m bench pickers`).

Anchor: the same page on a portal with 20 workers, measured in the same run, interleaved. Measured:
`/labour_entry/list/` and `/labour_entry/add` with 2,000 workers (50 projects, 200 labour entries in both),
through the FAB test client as a logged-in admin: SQL statements per request (SQLAlchemy
`before_cursor_execute` counter) and median time of interleaved runs with min-max spread.
A page whose cost does not depend on the linked tables has a ratio near 1.00.
"""
from __future__ import annotations

import datetime as dt
import logging
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from sqlalchemy import event

from app import create_app
from app.portal import portal_of

from .common import pg_schema, release, row

ROOT = Path(__file__).resolve().parent.parent
WORKERS = (20, 2000)
PAGES = ("/labour_entry/list/", "/labour_entry/add")
REPEAT = 15


def _app(url: str, workers: int):
    logging.getLogger("flask_appbuilder").setLevel(logging.ERROR)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench", "WTF_CSRF_ENABLED": False,
                      "PORTAL_SCHEMA_DIR": str(ROOT / "schemas")})
    models, now = portal_of(app).models, dt.datetime.now()
    with app.app_context():
        sm = app.appbuilder.sm
        sm.add_user("bench", "Bench", "Admin", "bench@example.com", sm.find_role("Admin"), "bench-pass")
        with app.appbuilder.session.get_bind().begin() as conn:
            conn.execute(models["Project"].__table__.insert(), [
                {"code": f"P{i:04d}", "name": f"项目{i}", "status": "active", "created_on": now, "changed_on": now}
                for i in range(1, 51)])
            conn.execute(models["Worker"].__table__.insert(), [
                {"name": f"工人{i:04d}", "trade": "general", "day_rate": 300, "active": True, "created_on": now,
                 "changed_on": now} for i in range(1, workers + 1)])
            conn.execute(models["LabourEntry"].__table__.insert(), [
                {"work_date": dt.date(2026, 1, 1) + dt.timedelta(days=i // 10), "worker_id": i % 20 + 1,  # the same workers on both: only the table size differs
                 "project_id": i % 50 + 1, "hours": 8, "days": 1, "rate": 300, "amount": 300, "approved": False,
                 "created_on": now, "changed_on": now} for i in range(200)])
    client = app.test_client()
    assert client.post("/login/", data={"username": "bench", "password": "bench-pass"}).status_code == 302
    return app, client


def _statements(app, client, url: str) -> int:
    count = [0]

    def on_execute(*_args):
        count[0] += 1

    with app.app_context():
        engine = app.appbuilder.session.get_bind()
    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        assert client.get(url).status_code == 200, url
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
    return count[0]


def _ms(client, url: str) -> float:
    start = time.perf_counter()
    response = client.get(url)
    elapsed = (time.perf_counter() - start) * 1000
    assert response.status_code == 200, url
    return elapsed


def measure(portals: dict, database: str) -> list[str]:
    lines = [f"\n{database}: median of {REPEAT} interleaved requests (min-max)\n",
             row("page", "workers", "SQL statements", "ms", "ratio to 20 workers"), row(*["---"] * 5)]
    for url in PAGES:
        for app, client in portals.values():
            _ms(client, url)  # warm up: templates, permission cache
        times = {n: [] for n in portals}
        for _ in range(REPEAT):
            for n, (app, client) in portals.items():
                times[n].append(_ms(client, url))
        anchor = statistics.median(times[WORKERS[0]])
        for n, (app, client) in portals.items():
            median = statistics.median(times[n])
            lines.append(row(url, f"{n:,}", _statements(app, client, url),
                             f"{median:.1f} ({min(times[n]):.1f}-{max(times[n]):.1f})", f"{median / anchor:.2f}"))
    return lines


def run(pg: str | None = None) -> list[str]:
    work = Path(tempfile.mkdtemp(prefix="bench-pickers-"))
    portals = {n: _app(f"sqlite:///{work / f'w{n}.db'}", n) for n in WORKERS}
    lines = measure(portals, "SQLite")
    if pg:
        with ExitStack() as stack:
            portals = {n: _app(stack.enter_context(pg_schema(pg)), n) for n in WORKERS}
            lines += measure(portals, "PostgreSQL")
            for app, _client in portals.values():
                release(app)
    return lines


if __name__ == "__main__":
    print("\n".join(run()))
