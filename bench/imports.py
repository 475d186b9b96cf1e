"""100k-row validated import vs a raw executemany of the same rows, in the same run.

Anchor: csv.reader + names mapped to ids with a dict + DB-API executemany + commit (no validation).
Measured: Importer.run on the same file (every cell validated, links resolved by title,
uniqueness checked against the file and the table, bulk insert in one transaction).
Goal: anchor time / import time >= 0.3.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import tempfile
import time
from pathlib import Path

from sqlalchemy import delete

from app.access import current_viewer
from app.importer import Importer

from .common import pg_schema, row
from .reports import _app

ROWS = 100_000
WORKERS, PROJECTS = 2000, 50


def make_csv(rows: int = ROWS) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["日期", "工人", "项目", "工时", "工日", "日工资", "金额", "已审核"])
    day0 = dt.date(2025, 1, 1)
    for n in range(rows):
        days = "1" if n % 4 else "0.5"
        amount = "400.00" if n % 4 else "200.00"
        writer.writerow([(day0 + dt.timedelta(days=n // WORKERS)).isoformat(), f"工人{n % WORKERS + 1}",
                         f"项目{n % PROJECTS + 1}", "8" if n % 4 else "4", days, "400", amount, "是" if n % 3 else "否"])
    return buffer.getvalue().encode("utf-8")


def seed(app) -> None:
    models = app.extensions["portal_models"]
    now = dt.datetime.now()
    with app.app_context():
        with app.appbuilder.session.get_bind().begin() as conn:
            conn.execute(models["Project"].__table__.insert(), [
                {"code": f"P{i}", "name": f"项目{i}", "status": "active", "created_on": now, "changed_on": now}
                for i in range(1, PROJECTS + 1)])
            conn.execute(models["Worker"].__table__.insert(), [
                {"name": f"工人{i}", "trade": "general", "day_rate": 400, "active": True, "created_on": now, "changed_on": now}
                for i in range(1, WORKERS + 1)])


def raw_import(app, data: bytes) -> float:
    models = app.extensions["portal_models"]
    with app.app_context():
        engine = app.appbuilder.session.get_bind()
        start = time.perf_counter()
        with engine.connect() as conn:
            workers = dict(conn.execute(models["Worker"].__table__.select().with_only_columns(
                models["Worker"].name, models["Worker"].id)).all())
            projects = dict(conn.execute(models["Project"].__table__.select().with_only_columns(
                models["Project"].name, models["Project"].id)).all())
        reader = csv.reader(io.StringIO(data.decode("utf-8")))
        next(reader)
        now = dt.datetime.now()
        rows = [(d, workers[w], projects[p], h, ds, r, a, flag == "是", now, now) for d, w, p, h, ds, r, a, flag in reader]
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            marker = "%s" if engine.dialect.name == "postgresql" else "?"
            cursor.executemany(
                "INSERT INTO labour_entry (work_date, worker_id, project_id, hours, days, rate, amount, approved, created_on, changed_on) "
                f"VALUES ({', '.join([marker] * 10)})", rows)
            raw.commit()
        finally:
            raw.close()
        return time.perf_counter() - start


def portal_import(app, data: bytes) -> tuple[float, object]:
    spec, models = app.extensions["portal_spec"], app.extensions["portal_models"]
    with app.app_context():
        importer = Importer(spec, spec.entity("LabourEntry"), models, app.appbuilder.session, current_viewer())
        start = time.perf_counter()
        report = importer.run(io.BytesIO(data), "csv", dry_run=False)
        return time.perf_counter() - start, report


def clear(app) -> None:
    models = app.extensions["portal_models"]
    with app.app_context():
        with app.appbuilder.session.get_bind().begin() as conn:
            conn.execute(delete(models["LabourEntry"].__table__))


def measure(app, label: str) -> list[str]:
    seed(app)
    data = make_csv()
    raw_seconds = raw_import(app, data)
    clear(app)
    ours, report = portal_import(app, data)
    assert report.written and report.created == ROWS, report.errors[:5]
    return [row(label, f"{raw_seconds:.2f}", f"{ROWS / raw_seconds:,.0f}", f"{ours:.2f}", f"{ROWS / ours:,.0f}",
                f"{raw_seconds / ours:.2f}")]


def run(pg: str | None = None) -> list[str]:
    lines = [f"### Import of {ROWS:,} labour entries (CSV)", "",
             row("database", "raw executemany s (anchor)", "rows/s", "validated import s", "rows/s", "anchor / import"),
             row("---", "---", "---", "---", "---", "---")]
    work = Path(tempfile.mkdtemp(prefix="bench-import-"))
    lines += measure(_app(f"sqlite:///{work / 'import.db'}"), "SQLite")
    if pg:
        with pg_schema(pg) as url:
            lines += measure(_app(url), "PostgreSQL")
    return lines


if __name__ == "__main__":
    print("\n".join(run()))
