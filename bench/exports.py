"""Export of 1M labour entries (CSV and XLSX, through the page URL) vs dumping the same join raw.

Anchor (same run, same rows, same SELECT with the link titles joined, compiled with its parameters):
PostgreSQL `COPY (SELECT ...) TO STDOUT WITH CSV` through psycopg2; SQLite a raw sqlite3 cursor feeding
`csv.writer`. Measured: GET /labour_entry/export/csv and /export/xlsx through the FAB test client as a
logged-in admin, the streamed body read to its end; for XLSX also the time to its first byte.
Goal: CSV <= 3x the anchor; XLSX first byte < 1 s. Median of interleaved runs, with (min–max).
"""
from __future__ import annotations

import csv
import io
import sys
import tempfile
import time
from pathlib import Path

from app.rules.access import Viewer
from app.data.exporter import Export
from app.portal import portal_of

from .common import interleaved, median, pg_schema, row, spread
from .reports import ROWS, _app, fill

REPEAT = 3


class _Counter(io.RawIOBase):
    """A sink that only counts what is written (the anchors write their CSV here)."""

    def __init__(self) -> None:
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.size += len(data)
        return len(data)


def export_sql(app) -> str:
    """The export's own SELECT for an admin, with its parameters inlined."""
    spec, models = portal_of(app).spec, portal_of(app).models
    with app.test_request_context():
        session = app.appbuilder.session
        admin = app.appbuilder.sm.find_user(username="bench")
        viewer = Viewer(spec, admin, app.config["AUTH_ROLE_ADMIN"])
        model = models["LabourEntry"]
        query = session.query(model).order_by(model.work_date.desc())
        statement = Export(spec, spec.entity("LabourEntry"), models, viewer, query).statement
        return str(statement.compile(session.get_bind(), compile_kwargs={"literal_binds": True}))


def anchor(app, sql: str):
    with app.app_context():
        engine = app.appbuilder.session.get_bind()
    if engine.dialect.name == "postgresql":
        def run():
            raw = engine.raw_connection()
            try:
                raw.cursor().copy_expert(f"COPY ({sql}) TO STDOUT WITH CSV HEADER", _Counter())
            finally:
                raw.close()
    else:
        def run():
            raw = engine.raw_connection()
            try:
                cursor = raw.cursor()
                cursor.execute(sql)
                text = io.TextIOWrapper(_Counter(), encoding="utf-8", newline="")
                writer = csv.writer(text)
                while rows := cursor.fetchmany(2000):
                    writer.writerows(rows)
                text.flush()
            finally:
                raw.close()
    return run


def download(client, url: str, first: list | None = None) -> int:
    start = time.perf_counter()
    response = client.get(url, buffered=False)
    assert response.status_code == 200, response.status_code
    size = 0
    for chunk in response.response:
        if size == 0 and first is not None:
            first.append(time.perf_counter() - start)
        size += len(chunk)
    response.close()
    return size


def measure(app, label: str) -> list[str]:
    client = app.test_client()
    client.post("/login/", data={"username": "bench", "password": "bench-pass"})
    first_bytes: list[float] = []
    times = interleaved({
        "anchor": anchor(app, export_sql(app)),
        "csv": lambda: download(client, "/labour_entry/export/csv"),
        "xlsx": lambda: download(client, "/labour_entry/export/xlsx", first_bytes),
    }, REPEAT)
    ratio = median(times["csv"]) / median(times["anchor"])
    return [row(label, spread(times["anchor"]), spread(times["csv"]), f"{ratio:.2f}",
                spread(first_bytes, 1000, 0), spread(times["xlsx"]))]


def run(pg: str | None = None) -> list[str]:
    lines = [f"### Export of {ROWS:,} labour entries (median of {REPEAT} interleaved runs, min–max)", "",
             row("database", "anchor s (raw dump of the same join)", "CSV export s", "CSV / anchor",
                 "XLSX first byte ms", "XLSX total s"),
             row("---", "---", "---", "---", "---", "---")]
    work = Path(tempfile.mkdtemp(prefix="bench-exports-"))
    app = _app(f"sqlite:///{work / 'export.db'}")
    fill(app)
    lines += measure(app, "SQLite")
    print("\n".join(lines), file=sys.stderr)
    if pg:
        with pg_schema(pg) as url:
            app = _app(url)
            fill(app)
            lines += measure(app, "PostgreSQL")
    return lines


if __name__ == "__main__":
    print("\n".join(run()))
