"""List pages and the list API at 10k and 1M labour entries, against a hand-written FAB ModelView.

Anchor: a plain FAB ModelView over the same table (SQLAInterface: exact count, OFFSET paging),
registered in the same app at /anchor_labour/. Measured through the FAB test client as a logged-in
admin, every request interleaved with the others, median of RUNS runs with the spread (min–max):
page 1 at 10k vs 1M, the last page and a page deep in the list vs page 1, the portal page vs the
anchor, the JSON API, and the SQL statements per request.

Both search forms leave out the link fields (LabourEntry `search: [work_date, hours, approved]`):
their pickers load every worker and project into a <select>, which another change replaces.
Goals: page 1 at 1M <= 1.3x at 10k; last page <= 2x page 1; portal <= 1.1x anchor; <= 6 statements.
"""
from __future__ import annotations

import logging
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import jsonschema
import prison
from flask_appbuilder import ModelView
from flask_appbuilder.api import get_list_schema
from flask_appbuilder.models.sqla.interface import SQLAInterface
from sqlalchemy import event, select

from app import create_app
from app.generate.paged_api import LIST_ARGS_SCHEMA
from app.generate.paging import Cursor
from app.portal import portal_of

from .common import pg_schema, release, row
from .reports import fill

SIZES = (10_000, 1_000_000)
RUNS = 7
VIEW = "LabourEntryView"
ROOT = Path(__file__).resolve().parent.parent
LIST_COLUMNS = ["work_date", "worker", "project", "hours", "days", "amount", "approved"]
SEARCH = ["work_date", "hours", "approved"]


def _schemas() -> Path:
    """The shipped schemas with LabourEntry's search on plain fields only (see the module docstring)."""
    target = Path(tempfile.mkdtemp(prefix="bench-lists-schemas-"))
    for path in (ROOT / "schemas").glob("*.yaml"):
        shutil.copy(path, target / path.name)
    labour = target / "labour.yaml"
    labour.write_text(labour.read_text().replace("search: [work_date, worker, project, approved]",
                                                 f"search: [{', '.join(SEARCH)}]"))
    return target


def _app(url: str, schemas: Path):
    logging.getLogger("flask_appbuilder").setLevel(logging.ERROR)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench", "WTF_CSRF_ENABLED": False,
                      "PORTAL_SCHEMA_DIR": str(schemas)})
    model = portal_of(app).models["LabourEntry"]

    class AnchorLabourView(ModelView):  # what a developer would write by hand with FAB
        datamodel = SQLAInterface(model)
        route_base = "/anchor_labour"
        list_columns = LIST_COLUMNS
        search_columns = SEARCH
        base_order = ("work_date", "desc")

    with app.app_context():
        app.appbuilder.add_view_no_menu(AnchorLabourView)
        sm = app.appbuilder.sm
        sm.add_user("bench", "Bench", "Admin", "bench@example.com", sm.find_role("Admin"), "bench-pass")
    return app


def _deep_cursor(app, rows: int) -> str:
    """The cursor of the row in the middle of the list (as if someone had clicked "next" that far)."""
    table = portal_of(app).models["LabourEntry"].__table__
    with app.app_context():
        with app.appbuilder.session.get_bind().connect() as conn:
            found = conn.execute(select(table.c.work_date, table.c.id)
                                 .order_by(table.c.work_date.desc(), table.c.id.desc()).offset(rows // 2).limit(1)).one()
    return Cursor("work_date", "desc", found.work_date, found.id).encode()


def _requests(app, rows: int) -> dict:
    client = app.test_client()
    client.post("/login/", data={"username": "bench", "password": "bench-pass"})
    token = client.post("/api/v1/security/login", json={"username": "bench", "password": "bench-pass",
                                                        "provider": "db"}).json["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    cursor = _deep_cursor(app, rows)
    anchor_last = rows // 25 - 1  # FAB's own last-page link: OFFSET to the end
    return {
        "portal page 1": lambda: client.get("/labour_entry/list/"),
        "portal last page": lambda: client.get(f"/labour_entry/list/?page_{VIEW}=-1"),
        "portal page in the middle (cursor)": lambda: client.get(
            f"/labour_entry/list/?page_{VIEW}={rows // 50}&after_{VIEW}={cursor}"),
        "anchor page 1": lambda: client.get("/anchor_labour/list/"),
        "anchor last page": lambda: client.get(f"/anchor_labour/list/?page_AnchorLabourView={anchor_last}"),
        "API page 1": lambda: client.get("/api/v1/labour_entry/", headers=headers),
        "API page in the middle (cursor)": lambda: client.get(
            "/api/v1/labour_entry/", headers=headers, query_string={"q": prison.dumps({"after": cursor})}),
    }


def _statements(app, call) -> int:
    seen = []
    with app.app_context():
        engine = app.appbuilder.session.get_bind()

    def count(*_):
        seen.append(1)

    event.listen(engine, "before_cursor_execute", count)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len(seen)


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f} ({min(values) * 1000:.1f}–{max(values) * 1000:.1f})"


def measure(apps: dict, label: str) -> list[str]:
    calls = {(size, name): call for size, app in apps.items() for name, call in _requests(app, size).items()}
    for call in calls.values():  # warm caches and templates; every request must succeed
        response = call()
        assert response.status_code == 200, response.status_code
    times = {key: [] for key in calls}
    for _ in range(RUNS):
        for key, call in calls.items():
            start = time.perf_counter()
            call()
            times[key].append(time.perf_counter() - start)
    small, big = SIZES
    big_label, ratio_label = f"{big // 1000:,}k", f"{big // 1000:,}k / {small // 1000:,}k"
    median = {key: statistics.median(values) for key, values in times.items()}
    statements = {key: _statements(apps[key[0]], call) for key, call in calls.items()}
    lines = [f"### List pages, {label} (ms: median of {RUNS} interleaved runs, min–max)", "",
             row("request", f"{small:,} rows", f"{big:,} rows", "SQL statements"), row("---", "---", "---", "---")]
    for name in [name for size, name in calls if size == small]:
        lines.append(row(name, _ms(times[(small, name)]), _ms(times[(big, name)]), statements[(big, name)]))
    goals = [
        (f"portal page 1: {ratio_label}", median[(big, "portal page 1")] / median[(small, "portal page 1")], 1.3),
        (f"portal last page / page 1 ({big_label})", median[(big, "portal last page")] / median[(big, "portal page 1")], 2.0),
        (f"portal middle page / page 1 ({big_label})",
         median[(big, "portal page in the middle (cursor)")] / median[(big, "portal page 1")], 2.0),
        (f"portal / anchor page 1 ({small // 1000:,}k)", median[(small, "portal page 1")] / median[(small, "anchor page 1")], 1.1),
        (f"portal / anchor page 1 ({big_label})", median[(big, "portal page 1")] / median[(big, "anchor page 1")], 1.1),
        (f"portal / anchor last page ({big_label})", median[(big, "portal last page")] / median[(big, "anchor last page")], 1.1),
        (f"API page 1: {ratio_label}", median[(big, "API page 1")] / median[(small, "API page 1")], 1.3),
        (f"API middle page / page 1 ({big_label})",
         median[(big, "API page in the middle (cursor)")] / median[(big, "API page 1")], 2.0),
    ]
    lines += ["", row("ratio", "measured", "goal", "met"), row("---", "---", "---", "---")]
    lines += [row(name, f"{value:.2f}", f"<= {goal}", "yes" if value <= goal else "**no**") for name, value, goal in goals]
    most = max(count for (_, name), count in statements.items() if not name.startswith("anchor"))
    lines.append(row("SQL statements per portal list request", most, "<= 6", "yes" if most <= 6 else "**no**"))
    return lines


def rison_validation() -> list[str]:
    """Cost of validating a typical `q` per request: jsonschema.validate() (FAB) vs a validator built once."""
    q = prison.loads("(filters:!((col:approved,opr:eq,value:!t)),order_column:work_date,order_direction:desc,"
                     "page:3,page_size:25)")
    compiled = jsonschema.validators.validator_for(LIST_ARGS_SCHEMA)(LIST_ARGS_SCHEMA)
    times = {"FAB: jsonschema.validate per request": [], "portal: validator compiled once": []}
    for _ in range(RUNS):
        for name, call in (("FAB: jsonschema.validate per request", lambda: jsonschema.validate(q, get_list_schema)),
                           ("portal: validator compiled once", lambda: next(compiled.iter_errors(q), None))):
            start = time.perf_counter()
            for _ in range(200):
                call()
            times[name].append((time.perf_counter() - start) / 200)
    lines = ["### Rison argument validation (µs per request: median of 7 runs of 200, min–max)", "",
             row("validator", "µs"), row("---", "---")]
    for name, values in times.items():
        lines.append(row(name, f"{statistics.median(values) * 1e6:.0f} ({min(values) * 1e6:.0f}–{max(values) * 1e6:.0f})"))
    return lines


def run(pg: str | None = None) -> list[str]:
    schemas = _schemas()
    work = Path(tempfile.mkdtemp(prefix="bench-lists-"))
    apps = {size: _app(f"sqlite:///{work / f'labour-{size}.db'}", schemas) for size in SIZES}
    seconds = sum(fill(app, size) for size, app in apps.items())
    lines = measure(apps, "SQLite") + ["", f"SQLite fill: {sum(SIZES):,} rows in {seconds:.1f} s.", ""]
    if pg:
        with pg_schema(pg) as small_url, pg_schema(pg) as big_url:
            apps = {size: _app(url, schemas) for size, url in zip(SIZES, (small_url, big_url))}
            seconds = sum(fill(app, size) for size, app in apps.items())
            lines += measure(apps, "PostgreSQL") + ["", f"PostgreSQL fill (COPY): {sum(SIZES):,} rows in {seconds:.1f} s.", ""]
            for app in apps.values():
                release(app)
    return lines + rison_validation()


if __name__ == "__main__":
    print("\n".join(run()))
