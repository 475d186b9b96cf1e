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

from app.portal import portal_of

from .common import interleaved, median, pg_schema, release, row, spread
from .reports import ROWS, _app, fill

REPEAT = 5
API_BATCH = 50  # creates per batch: every batch of the run stays under the API rate limit (1000/minute)
ANCHOR = ("UPDATE project SET labour_cost = (SELECT coalesce(SUM(amount), 0) FROM labour_entry "
          "WHERE labour_entry.project_id = project.id AND labour_entry.approved)")


def measure(app, label: str) -> list[str]:
    with app.app_context():
        engine = app.appbuilder.session.get_bind()
        with engine.begin() as conn:  # projects with budgets: the formula has something to compute
            conn.execute(text("UPDATE project SET budget = 1000000 + id"))
            assert conn.scalar(text("SELECT count(*) FROM labour_entry")) == ROWS
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


def api_creates(work: Path) -> list[str]:
    """Single-record API creates of approved labour entries: with the rollup listener vs the same app with it
    removed (no labour_cost/budget_left upkeep), interleaved batches on SQLite."""
    from sqlalchemy import event

    from .formulas import entry_poster
    from .imports import seed

    app = _app(f"sqlite:///{work / 'creates.db'}")
    seed(app)
    rollups = portal_of(app).rollups
    post = entry_poster(app, {"approved": True})
    seconds = {"with": [], "without": []}
    listeners = (("before_flush", rollups.before_flush), ("after_flush", rollups.gather),
                 ("after_flush_postexec", rollups.after_flush))

    def batch(key):
        def call():
            on = key == "with"
            if not on:
                for name, fn in listeners:
                    event.remove(app.appbuilder.session, name, fn)
            start = time.perf_counter()
            for _ in range(API_BATCH):
                post()
            seconds[key].append((time.perf_counter() - start) / API_BATCH)
            if not on:
                for name, fn in listeners:
                    event.listen(app.appbuilder.session, name, fn)
        return call

    batch("with")()  # warm-up
    seconds["with"].clear()
    interleaved({"with": batch("with"), "without": batch("without")}, REPEAT)
    ratio = median(seconds["with"]) / median(seconds["without"])
    return [f"### Single-record API create of an approved labour entry (SQLite), median of {REPEAT} interleaved batches of {API_BATCH} (min–max ms)", "",
            row("rollup upkeep", "ms per create", "with / without"), row("---", "---", "---"),
            row("listener removed (labour_cost and budget_left not kept)", spread(seconds["without"], 1000), "1.00"),
            row("with the project rollup kept (UPDATE … SELECT SUM, budget_left)", spread(seconds["with"], 1000), f"{ratio:.2f}")]


def run(pg: str | None = None) -> list[str]:
    work = Path(tempfile.mkdtemp(prefix="bench-rollups-"))
    lines = api_creates(work) + [""]
    app = _app(f"sqlite:///{work / 'rollups.db'}")
    fill(app)
    lines += measure(app, "SQLite")
    if pg:
        with pg_schema(pg) as url:
            app = _app(url)
            fill(app)
            lines += ["", *measure(app, "PostgreSQL")]
            release(app)
    return lines


if __name__ == "__main__":
    print("\n".join(run()))
