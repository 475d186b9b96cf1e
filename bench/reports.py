"""Report page time over 1M labour entries vs the same SQL GROUP BY run raw, in the same run.

Anchor: the report's own SQL statement, compiled with its parameters and executed on the raw
DB-API connection (no ORM, no Flask). Measured: the HTML report page and the JSON API, through
the FAB test client as a logged-in admin. Goal: page / raw <= 1.2. On SQLite the page / raw ratio is also
given in the request thread's CPU time (the query runs in that thread; other jobs on a loaded machine add
nothing to it, while they stretch wall times by 2-3x).
"""
from __future__ import annotations

import datetime as dt
import io
import logging
import random
import tempfile
import time
from pathlib import Path

from app import create_app
from app.rules.access import Viewer
from app.data.reports.query import ReportQuery
from app.portal import portal_of

from .common import interleaved, median, pg_schema, row, spread

ROWS = 1_000_000
REPORTS = ("labour_cost_by_month", "labour_by_project", "labour_by_worker")
ROOT = Path(__file__).resolve().parent.parent


def _app(url: str):
    logging.getLogger("flask_appbuilder").setLevel(logging.ERROR)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench", "WTF_CSRF_ENABLED": False,
                      "PORTAL_SCHEMA_DIR": str(ROOT / "schemas"),
                      # page/raw measures building the report, not the cache in front of it (a hit is ~free)
                      "PORTAL_REPORT_CACHE_SECONDS": 0})
    with app.app_context():
        sm = app.appbuilder.sm
        sm.add_user("bench", "Bench", "Admin", "bench@example.com", sm.find_role("Admin"), "bench-pass")
    return app


def fill(app, rows: int = ROWS) -> float:
    """Projects, workers and `rows` labour entries, inserted in bulk; returns seconds taken."""
    models = portal_of(app).models
    rng = random.Random(1)
    start = time.perf_counter()
    with app.app_context():
        engine = app.appbuilder.session.get_bind()
        with engine.begin() as conn:
            conn.execute(models["Project"].__table__.insert(), [
                {"code": f"P{i:04d}", "name": f"项目{i}", "status": "active", "created_on": dt.datetime.now(),
                 "changed_on": dt.datetime.now()} for i in range(1, 51)])
            conn.execute(models["Worker"].__table__.insert(), [
                {"name": f"工人{i}", "trade": "general", "day_rate": 300 + i % 200, "active": True,
                 "created_on": dt.datetime.now(), "changed_on": dt.datetime.now()} for i in range(1, 2001)])
        table = models["LabourEntry"].__table__
        day0 = dt.date(2024, 1, 1)
        now = dt.datetime.now().isoformat(sep=" ")
        if engine.dialect.name == "postgresql":
            raw = engine.raw_connection()
            try:
                cursor = raw.cursor()
                buffer = io.StringIO()
                for n in range(rows):
                    days = rng.choice((1, 1, 1, 0.5))
                    # (work_date, worker, project, hours, days, rate, amount, approved) are unique per row
                    buffer.write(f"{day0 + dt.timedelta(days=n // 1500)}\t{n % 2000 + 1}\t{(n // 2000) % 50 + 1}\t{days * 8}\t{days}\t400\t{days * 400}\t{'t' if n % 10 else 'f'}\t{now}\t{now}\n")
                buffer.seek(0)
                cursor.copy_expert(
                    f"COPY {table.name} (work_date, worker_id, project_id, hours, days, rate, amount, approved, created_on, changed_on) FROM STDIN",
                    buffer)
                raw.commit()
                raw.set_isolation_level(0)  # VACUUM cannot run in a transaction
                raw.cursor().execute(f"VACUUM ANALYZE {table.name}")  # what autovacuum does after a bulk load
                raw.set_isolation_level(1)  # back to transactions before the connection returns to the pool
            finally:
                raw.close()
        else:
            chunk = []
            with engine.begin() as conn:
                for n in range(rows):
                    days = rng.choice((1, 1, 1, 0.5))
                    chunk.append((str(day0 + dt.timedelta(days=n // 1500)), n % 2000 + 1, (n // 2000) % 50 + 1, days * 8, days,
                                  400, days * 400, 1 if n % 10 else 0, now, now))
                    if len(chunk) == 50_000:
                        conn.exec_driver_sql(f"INSERT INTO {table.name} (work_date, worker_id, project_id, hours, days, rate, amount, approved, created_on, changed_on) VALUES (?,?,?,?,?,?,?,?,?,?)", chunk)
                        chunk = []
                if chunk:
                    conn.exec_driver_sql(f"INSERT INTO {table.name} (work_date, worker_id, project_id, hours, days, rate, amount, approved, created_on, changed_on) VALUES (?,?,?,?,?,?,?,?,?,?)", chunk)
            with engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - start


def measure(app, label: str) -> list[str]:
    spec, models = portal_of(app).spec, portal_of(app).models
    lines = [f"### Reports over {ROWS:,} labour entries ({label})", "",
             row("report", "raw SQL (anchor) ms", "report page ms", "page / raw (min–max)", "JSON API ms", "API / raw (min–max)",
                 "page / raw, CPU time (SQLite)"),
             row("---", "---", "---", "---", "---", "---", "---")]
    client = app.test_client()
    client.post("/login/", data={"username": "bench", "password": "bench-pass"})
    postgres = label == "PostgreSQL"  # its query runs in the server process: the thread's CPU time says nothing
    for report_id in REPORTS:
        report = spec.report(report_id)
        with app.app_context():
            session = app.appbuilder.session
            admin = app.appbuilder.sm.find_user(username="bench")
            viewer = Viewer(spec, admin, app.config["AUTH_ROLE_ADMIN"])
            statement, _, _ = ReportQuery(spec, models, session, viewer).statement(report, _no_params())
            engine = session.get_bind()
            sql = str(statement.compile(engine, compile_kwargs={"literal_binds": True}))

            def raw_query():
                connection = engine.raw_connection()
                try:
                    cursor = connection.cursor()
                    cursor.execute(sql)
                    cursor.fetchall()
                finally:
                    connection.close()

        # interleaved, 11 turns: the anchor and the pages see the same machine and cache state; ratios per turn,
        # then the median and spread of those ratios
        cpu: dict[str, list[float]] = {"raw": [], "page": []}

        def cpu_timed(name, fn):  # the thread's CPU time too: SQLite runs in it, other jobs on the machine do not
            def call():
                start = time.thread_time()
                fn()
                cpu[name].append(time.thread_time() - start)
            return call
        timings = interleaved({"raw": cpu_timed("raw", raw_query),
                               "page": cpu_timed("page", lambda: _ok(client.get(f"/reports/{report_id}"))),
                               "api": lambda: _ok(client.get(f"/api/v1/reports/{report_id}"))}, repeat=11)
        page_ratio = [p / r for p, r in zip(timings["page"], timings["raw"])]
        api_ratio = [a / r for a, r in zip(timings["api"], timings["raw"])]
        cpu_ratio = [p / r for p, r in zip(cpu["page"], cpu["raw"])]
        lines.append(row(report_id, f"{median(timings['raw']) * 1000:.0f}", f"{median(timings['page']) * 1000:.0f}",
                         spread(page_ratio), f"{median(timings['api']) * 1000:.0f}", spread(api_ratio),
                         spread(cpu_ratio) if not postgres else "—"))
    return lines


def _no_params():
    from app.data.reports.query import ReportParams
    return ReportParams()


def _ok(response):
    assert response.status_code == 200, response.status_code
    return response


def run(pg: str | None = None) -> list[str]:
    work = Path(tempfile.mkdtemp(prefix="bench-reports-"))
    app = _app(f"sqlite:///{work / 'labour.db'}")
    seconds = fill(app)
    lines = measure(app, "SQLite")
    lines.append(f"\nSQLite fill: {ROWS:,} rows in {seconds:.1f} s.\n")
    if pg:
        with pg_schema(pg) as url:
            app = _app(url)
            seconds = fill(app)
            lines += measure(app, "PostgreSQL")
            lines.append(f"\nPostgreSQL fill (COPY): {ROWS:,} rows in {seconds:.1f} s.")
    return lines


if __name__ == "__main__":
    print("\n".join(run()))
