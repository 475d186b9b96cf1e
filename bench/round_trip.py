"""Import round-trip (issue 16): importing a file keyed to existing records vs the same number of new rows.

50,000 customers. "create": the file imported into an empty table (no key). "by id" / "by phone": the exported
file of those records (ID first, labels as headers) with 10 % of the rows edited, imported with key=id / key=phone:
every row is looked up, compared with the stored record (one IN (...) per 1,000 rows) and only the 5,000 changed
rows are written. Median of interleaved runs (min–max); ratio = create / keyed (>= 1: keyed is no slower).
"""
from __future__ import annotations

import csv
import io
import tempfile
import time
from pathlib import Path

from sqlalchemy import delete

from app.data.importer import Importer
from app.portal import portal_of
from app.rules.access import current_viewer

from .common import interleaved, median, pg_schema, release, row, spread
from .reports import _app

ROWS = 50_000
REPEAT = 3


def new_file() -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["Name", "Phone", "Level", "Credit limit"])
    for n in range(ROWS):
        writer.writerow([f"往返{n}", f"139{n:08d}", ("VIP", "Normal", "Potential")[n % 3], str(n % 1000)])
    return out.getvalue().encode()


def exports(app) -> tuple[bytes, bytes]:
    """The app's own CSV export of the customers, as it is and with 10 % of the rows given another level."""
    client = app.test_client()
    token = client.post("/api/v1/security/login", json={"username": "bench", "password": "bench-pass",
                                                         "provider": "db"}).json["access_token"]
    data = client.get("/api/v1/customer/export?format=csv", headers={"Authorization": f"Bearer {token}"}).data
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    level = rows[0].index("Level")
    edited = [r[:] for r in rows]
    for n, cells in enumerate(edited[1:]):
        if n % 10 == 0:
            cells[level] = "Potential" if cells[level] != "Potential" else "VIP"
    files = []
    for table in (rows, edited):
        out = io.StringIO()
        csv.writer(out).writerows(table)
        files.append(out.getvalue().encode())
    return files[0], files[1]


def run_import(app, data: bytes, key: str | None) -> tuple[float, object]:
    spec, models = portal_of(app).spec, portal_of(app).models
    with app.test_request_context():
        importer = Importer(spec, spec.entity("Customer"), models, app.appbuilder.session, current_viewer(), key)
        start = time.perf_counter()
        report = importer.run(io.BytesIO(data), "csv", dry_run=False)
        taken = time.perf_counter() - start
        app.appbuilder.session.remove()
    return taken, report


def measure(app, label: str) -> list[str]:
    table = portal_of(app).models["Customer"].__table__
    taken, report = run_import(app, new_file(), None)
    assert report.written and report.created == ROWS, report.errors[:3]
    back, edited = exports(app)  # imported in turns: each import changes the same 5,000 rows (there and back)
    seconds = {"create": [], "id": [], "phone": []}
    state = {"flip": False}

    def create():
        with app.app_context():
            with app.appbuilder.session.get_bind().begin() as conn:
                conn.execute(delete(table).where(table.c.name.like("新%")))
        data = new_file().replace("往返".encode(), "新".encode()).replace(b",139", b",137")
        taken, report = run_import(app, data, None)
        assert report.created == ROWS, report.errors[:3]
        seconds["create"].append(taken)
        with app.app_context():
            with app.appbuilder.session.get_bind().begin() as conn:
                conn.execute(delete(table).where(table.c.name.like("新%")))

    def keyed(key):
        def go():
            data = back if state["flip"] else edited
            taken, report = run_import(app, data, key)
            assert report.written and report.updated == ROWS // 10, (report.updated, report.errors[:3])
            state["flip"] = not state["flip"]
            seconds[key].append(taken)
        return go

    interleaved({"create": create, "id": keyed("id"), "phone": keyed("phone")}, REPEAT)
    create_s = median(seconds["create"])
    return [row(label, spread(seconds["create"]), spread(seconds["id"]), f"{create_s / median(seconds['id']):.2f}",
                spread(seconds["phone"]), f"{create_s / median(seconds['phone']):.2f}")]


def run(pg: str | None = None) -> list[str]:
    lines = [f"### Import round-trip: {ROWS:,} customers, 10 % edited, median of {REPEAT} interleaved runs (min–max), s",
             "", row("database", "create (no key)", "by id", "create / by id", "by phone", "create / by phone"),
             row("---", "---", "---", "---", "---", "---")]
    work = Path(tempfile.mkdtemp(prefix="bench-roundtrip-"))
    lines += measure(_app(f"sqlite:///{work / 'trip.db'}"), "SQLite")
    if pg:
        with pg_schema(pg) as url:
            app = _app(url)
            lines += measure(app, "PostgreSQL")
            release(app)
    return lines
