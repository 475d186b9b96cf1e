"""`portal recompute` over 1M labour entries vs one hand-written UPDATE, in the same run.

The shipped labour schema: Project.labour_cost = sum(amount) of its approved entries, and budget_left =
budget - labour_cost. Measured: `flask --app run portal recompute Project` through the app's CLI runner (the
rollup UPDATE, then the formula over 50 projects, committed). Anchor: `UPDATE project SET labour_cost =
(SELECT coalesce(SUM(amount), 0) FROM labour_entry WHERE project_id = project.id AND approved)`, written by hand
and run on the same engine, committed. Median of REPEAT interleaved runs (min–max). Goal: ratio <= 1.5.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from .common import interleaved, median, pg_schema, row, spread
from .reports import ROWS, _app, fill

REPEAT = 5
ANCHOR = ("UPDATE project SET labour_cost = (SELECT coalesce(SUM(amount), 0) FROM labour_entry "
          "WHERE labour_entry.project_id = project.id AND labour_entry.approved)")


def measure(app, label: str) -> list[str]:
    with app.app_context():
        engine = app.appbuilder.session.get_bind()
        with engine.begin() as conn:  # projects with budgets: the formula has something to compute
            conn.execute(text("UPDATE project SET budget = 1000000 + id"))
    runner = app.test_cli_runner()
    seconds = {"anchor": [], "recompute": []}

    def anchor():
        start = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(text(ANCHOR))
        seconds["anchor"].append(time.perf_counter() - start)

    def recompute():
        start = time.perf_counter()
        result = runner.invoke(args=["portal", "recompute", "Project"])
        seconds["recompute"].append(time.perf_counter() - start)
        assert result.exit_code == 0 and "Project.labour_cost: 50 records" in result.output, result.output

    interleaved({"anchor": anchor, "recompute": recompute}, REPEAT)
    with engine.connect() as conn:  # both agree with a fresh aggregate
        wrong = conn.scalar(text("SELECT count(*) FROM project WHERE labour_cost <> (SELECT coalesce(SUM(amount), 0) "
                                 "FROM labour_entry WHERE project_id = project.id AND approved) "
                                 "OR budget_left <> budget - labour_cost"))
    assert wrong == 0
    ratio = median(seconds["recompute"]) / median(seconds["anchor"])
    return [f"### `portal recompute Project` over {ROWS:,} labour entries ({label}), median of {REPEAT} interleaved runs (min–max)", "",
            row("what", "seconds", "ratio"), row("---", "---", "---"),
            row("hand-written UPDATE … SET labour_cost = (SELECT SUM …) (anchor)", spread(seconds["anchor"]), "1.00"),
            row("`portal recompute Project` (rollup UPDATE + budget_left formula, via the CLI)",
                spread(seconds["recompute"]), f"{ratio:.2f}")]


def run(pg: str | None = None) -> list[str]:
    work = Path(tempfile.mkdtemp(prefix="bench-rollups-"))
    app = _app(f"sqlite:///{work / 'rollups.db'}")
    fill(app)
    lines = measure(app, "SQLite")
    if pg:
        with pg_schema(pg) as url:
            app = _app(url)
            fill(app)
            lines += ["", *measure(app, "PostgreSQL")]
            with app.app_context():
                app.appbuilder.session.remove()
                app.appbuilder.session.get_bind().dispose()
    return lines


if __name__ == "__main__":
    print("\n".join(run()))
