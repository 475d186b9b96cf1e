"""100k-row validated import vs a raw load of the same rows, in the same run; peak memory of 1M-row imports.

Anchor: csv.reader + names mapped to ids with a dict + (SQLite) DB-API executemany, (PostgreSQL) one raw
COPY FROM STDIN, then commit (no validation). Measured: Importer.run on the same rows without the rate and amount
columns (every cell validated, links resolved by title, uniqueness checked against the file and the table, the
rate filled from the worker, the amount formula, the hours rule, the worker filter, the project's labour_cost
rollup, rows written in one transaction). Goal (issue 12): anchor time / import time >= 0.2 (0.3 before business
rules). Median of interleaved runs with (min–max).
Memory: `flask portal import` of a 1M-row CSV and XLSX in a subprocess that reports its peak RSS (VmHWM).
Goal: <= 300 MB.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from openpyxl import Workbook

from sqlalchemy import delete

from app.rules.access import current_viewer
from app.data.importer import Importer
from app.portal import portal_of

from .common import interleaved, median, pg_schema, row, spread
from .reports import ROOT, _app

ROWS = 100_000
MEMORY_ROWS = 1_000_000
REPEAT = 3
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


def without_columns(data: bytes, *indexes: int) -> bytes:
    """The CSV without the given columns (e.g. the rate, left to the worker's day rate; the amount, a formula)."""
    out = io.StringIO()
    writer = csv.writer(out)
    for cells in csv.reader(io.StringIO(data.decode("utf-8"))):
        writer.writerow([cell for n, cell in enumerate(cells) if n not in indexes])
    return out.getvalue().encode("utf-8")


def seed(app) -> None:
    models = portal_of(app).models
    now = dt.datetime.now()
    with app.app_context():
        with app.appbuilder.session.get_bind().begin() as conn:
            conn.execute(models["Project"].__table__.insert(), [
                {"code": f"P{i}", "name": f"项目{i}", "status": "active", "created_on": now, "changed_on": now}
                for i in range(1, PROJECTS + 1)])
            conn.execute(models["Worker"].__table__.insert(), [
                {"name": f"工人{i}", "trade": "general", "day_rate": 400, "active": True, "created_on": now, "changed_on": now}
                for i in range(1, WORKERS + 1)])
            # each worker on the projects the file books them on (labour's worker filter: active workers of the project)
            pairs = {(n % WORKERS + 1, n % PROJECTS + 1) for n in range(math.lcm(WORKERS, PROJECTS))}
            conn.execute(models["Worker"].projects.property.secondary.insert(),
                         [{"left_id": w, "right_id": p} for w, p in sorted(pairs)])


def raw_import(app, data: bytes) -> float:
    models = portal_of(app).models
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
        rows = [(d, workers[w], projects[p], h, ds, r, a, flag == "是", "approved" if flag == "是" else "draft", now, now)
                for d, w, p, h, ds, r, a, flag in reader]
        raw = engine.raw_connection()
        columns = "work_date, worker_id, project_id, hours, days, rate, amount, approved, state, created_on, changed_on"
        try:
            cursor = raw.cursor()
            if engine.dialect.name == "postgresql":
                text = "".join("\t".join(str(v) for v in r) + "\n" for r in rows)
                cursor.copy_expert(f"COPY labour_entry ({columns}) FROM STDIN", io.StringIO(text))
            else:
                cursor.executemany(f"INSERT INTO labour_entry ({columns}) VALUES ({', '.join(['?'] * 11)})", rows)
            raw.commit()
        finally:
            raw.close()
        return time.perf_counter() - start


def portal_import(app, data: bytes) -> tuple[float, object]:
    spec, models = portal_of(app).spec, portal_of(app).models
    with app.app_context():
        importer = Importer(spec, spec.entity("LabourEntry"), models, app.appbuilder.session, current_viewer())
        start = time.perf_counter()
        report = importer.run(io.BytesIO(data), "csv", dry_run=False)
        return time.perf_counter() - start, report


def clear(app) -> None:
    models = portal_of(app).models
    with app.app_context():
        with app.appbuilder.session.get_bind().begin() as conn:
            conn.execute(delete(models["LabourEntry"].__table__))


def measure(app, label: str) -> list[str]:
    seed(app)
    data = make_csv()
    # the file a foreman would fill: no day rate (the worker's, default: worker.day_rate) and no amount (a formula);
    # the import also checks the hours rule and the worker filter, and keeps the project's labour_cost rollup
    file = without_columns(data, 5, 6)
    seconds = {"raw": [], "ours": []}

    def raw():
        seconds["raw"].append(raw_import(app, data))
        clear(app)

    def ours():
        taken, report = portal_import(app, file)
        assert report.written and report.created == ROWS, report.errors[:5]
        seconds["ours"].append(taken)
        clear(app)

    interleaved({"raw": raw, "ours": ours}, REPEAT)
    anchor = "raw COPY" if label == "PostgreSQL" else "raw executemany"
    raw_s, ours_s = median(seconds["raw"]), median(seconds["ours"])
    return [row(f"{label} ({anchor})", spread(seconds["raw"]), f"{ROWS / raw_s:,.0f}", spread(seconds["ours"]),
                f"{ROWS / ours_s:,.0f}", f"{raw_s / ours_s:.2f}")]


_PEAK = ("import sys\nfrom flask.cli import main\ntry:\n    main()\nfinally:\n"
         "    peak = [line for line in open('/proc/self/status') if line.startswith('VmHWM')][0]\n"
         "    print('PEAK_KB', peak.split()[1], file=sys.stderr)\n")


def peak_memory(url: str, work: Path, fmt: str) -> tuple[float, float]:
    """(seconds, peak MB) of `flask portal import LabourEntry` of MEMORY_ROWS rows, in a fresh process."""
    app = _app(url)
    seed(app)
    path = work / f"entries.{fmt}"
    if not path.exists():
        data = make_csv(MEMORY_ROWS)
        if fmt == "csv":
            path.write_bytes(data)
        else:
            book = Workbook(write_only=True)
            sheet = book.create_sheet()
            for cells in csv.reader(io.StringIO(data.decode("utf-8"))):
                sheet.append(cells)
            book.save(path)
    env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": "bench" * 8}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", _PEAK, "--app", "run", "portal", "import", "LabourEntry", str(path)],
                            cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stderr[-2000:]
    return seconds, int(result.stderr.rsplit("PEAK_KB", 1)[1].split()[0]) / 1024


def run(pg: str | None = None) -> list[str]:
    lines = [f"### Import of {ROWS:,} labour entries (CSV), median of {REPEAT} interleaved runs (min–max)", "",
             row("database (anchor)", "anchor s", "rows/s", "validated import s", "rows/s", "anchor / import"),
             row("---", "---", "---", "---", "---", "---")]
    work = Path(tempfile.mkdtemp(prefix="bench-import-"))
    lines += measure(_app(f"sqlite:///{work / 'import.db'}"), "SQLite")
    if pg:
        with pg_schema(pg) as url:
            lines += measure(_app(url), "PostgreSQL")
    lines += ["", f"### Peak memory of `flask portal import` of {MEMORY_ROWS:,} labour entries", "",
              row("database", "file", "seconds", "peak RSS MB"), row("---", "---", "---", "---")]
    for fmt in ("csv", "xlsx"):
        seconds, peak = peak_memory(f"sqlite:///{work / f'memory-{fmt}.db'}", work, fmt)
        lines.append(row("SQLite", fmt.upper(), f"{seconds:.0f}", f"{peak:.0f}"))
        if pg:
            with pg_schema(pg) as url:
                seconds, peak = peak_memory(url, work, fmt)
                lines.append(row("PostgreSQL", fmt.upper(), f"{seconds:.0f}", f"{peak:.0f}"))
    return lines


if __name__ == "__main__":
    print("\n".join(run()))
