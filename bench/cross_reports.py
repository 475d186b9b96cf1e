"""Cross-entity report (issue 15) over 1M labour entries + 100k material costs vs the hand-written SQL it equals.

The report is the cost centre: per project, its budget (Project), approved labour (LabourEntry: sum, count,
average) and material (MaterialCost), with derived cost, variance and % used. Anchor: the same numbers written
out by hand as one SQL statement (three grouped subqueries joined on the union of their keys), executed on the
raw DB-API connection and fetched. Measured: `ReportQuery.run` (statement building, execution, rows, derived
measures, styles, drill URLs) and the JSON API through the FAB test client as an admin. Median of interleaved
runs, with min-max. Goal: report / hand-written SQL <= 1.3.
"""
from __future__ import annotations

import datetime as dt
import io
import logging
import random
import tempfile
import textwrap
import time
from pathlib import Path

from app import create_app
from app.data.reports.query import ReportParams, ReportQuery
from app.portal import portal_of
from app.rules.access import Viewer

from .common import interleaved, median, pg_schema, release, row, spread

LABOUR, MATERIAL, PROJECTS = 1_000_000, 100_000, 2_000
RUNS = 9

SCHEMA = """
version: 1
module: cost
entities:
  Project:
    title: name
    fields: {name: {type: string, required: true}, budget: decimal, start_date: date}
  LabourEntry:
    title: note
    fields:
      note: string
      project: {type: link, to: Project}
      work_date: date
      amount: decimal
      state: {type: enum, choices: [draft, approved]}
  MaterialCost:
    title: item
    fields: {item: string, project: {type: link, to: Project}, bought_on: date, amount: decimal}
reports:
  project_cost:
    group_by: [project]
    sources:
      budget:  {entity: Project, key: id, measures: {budget: sum(budget)}}
      labour:  {entity: LabourEntry, key: project, measures: {labour: sum(amount), entries: count, avg_labour: avg(amount)}, filter: {state: approved}}
      material: {entity: MaterialCost, key: project, measures: {material: sum(amount)}}
    derived:
      cost:     {expr: "labour + material", format: money}
      variance: {expr: "budget - cost", format: money, style: {danger: "variance < 0"}}
      used:     {expr: "cost / budget", format: percent, style: {warning: "used > 0.9", danger: "used > 1"}}
"""

HAND_WRITTEN = """
SELECT g.k, g.budget, g.labour, g.entries, g.avg_labour, g.material, p.name
FROM (SELECT k, COALESCE(MAX(budget), 0) AS budget, COALESCE(MAX(labour), 0) AS labour,
             COALESCE(MAX(entries), 0) AS entries, MAX(avg_labour) AS avg_labour, COALESCE(MAX(material), 0) AS material
      FROM (SELECT id AS k, SUM(budget) AS budget, CAST(NULL AS NUMERIC) AS labour, CAST(NULL AS BIGINT) AS entries,
                   CAST(NULL AS NUMERIC) AS avg_labour, CAST(NULL AS NUMERIC) AS material
            FROM project GROUP BY id
            UNION ALL
            SELECT COALESCE(project_id, -1), NULL, SUM(amount), COUNT(*), AVG(amount), NULL
            FROM labour_entry WHERE state = 'approved' GROUP BY COALESCE(project_id, -1)
            UNION ALL
            SELECT COALESCE(project_id, -1), NULL, NULL, NULL, NULL, SUM(amount)
            FROM material_cost GROUP BY COALESCE(project_id, -1)) AS stacked
      GROUP BY k) AS g
LEFT JOIN project p ON p.id = g.k
ORDER BY g.k
"""


def _app(url: str, schema_dir: Path):
    logging.getLogger("flask_appbuilder").setLevel(logging.ERROR)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench", "WTF_CSRF_ENABLED": False,
                      "PORTAL_SCHEMA_DIR": str(schema_dir), "PORTAL_REPORT_CACHE_SECONDS": 0})
    with app.app_context():
        sm = app.appbuilder.sm
        sm.add_user("bench", "Bench", "Admin", "bench@example.com", sm.find_role("Admin"), "bench-pass")
    return app


def fill(app) -> float:
    models = portal_of(app).models
    rng = random.Random(15)
    start = time.perf_counter()
    day0 = dt.date(2025, 1, 1)
    now = dt.datetime.now().replace(microsecond=0)
    with app.app_context():
        engine = app.appbuilder.session.get_bind()
        with engine.begin() as conn:
            conn.execute(models["Project"].__table__.insert(), [
                {"name": f"项目{i}", "budget": rng.randrange(10_000, 400_000), "start_date": day0,
                 "created_on": now, "changed_on": now} for i in range(1, PROJECTS + 1)])
        labour = ((f"L{n}", (n % (PROJECTS + 1)) or None, day0 + dt.timedelta(days=n % 365), rng.randrange(100, 900),
                   "approved" if n % 5 else "draft", now, now) for n in range(LABOUR))
        material = ((f"M{n}", n % PROJECTS + 1, day0 + dt.timedelta(days=n % 365), rng.randrange(10, 5000), now, now)
                    for n in range(MATERIAL))
        columns = {"labour_entry": "(note, project_id, work_date, amount, state, created_on, changed_on)",
                   "material_cost": "(item, project_id, bought_on, amount, created_on, changed_on)"}
        if engine.dialect.name == "postgresql":
            raw = engine.raw_connection()
            try:
                cursor = raw.cursor()
                for table, rows in (("labour_entry", labour), ("material_cost", material)):
                    buffer = io.StringIO()
                    for r in rows:
                        buffer.write("\t".join(r"\N" if v is None else str(v) for v in r) + "\n")
                    buffer.seek(0)
                    cursor.copy_expert(f"COPY {table} {columns[table]} FROM STDIN", buffer)
                raw.commit()
                raw.set_isolation_level(0)
                raw.cursor().execute("VACUUM ANALYZE")
                raw.set_isolation_level(1)
            finally:
                raw.close()
        else:
            with engine.begin() as conn:
                for table, rows in (("labour_entry", labour), ("material_cost", material)):
                    marks = ",".join("?" * len(columns[table].split(",")))
                    conn.exec_driver_sql(f"INSERT INTO {table} {columns[table]} VALUES ({marks})",
                                         [tuple(v.isoformat(sep=" ") if isinstance(v, dt.datetime) else str(v) if isinstance(v, dt.date) else v
                                          for v in r) for r in rows])
            with engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - start


def measure(app, label: str) -> list[str]:
    spec, models = portal_of(app).spec, portal_of(app).models
    report = spec.report("project_cost")
    client = app.test_client()
    client.post("/login/", data={"username": "bench", "password": "bench-pass"})
    with app.app_context():
        session = app.appbuilder.session
        engine = session.get_bind()
        admin = app.appbuilder.sm.find_user(username="bench")
        viewer = Viewer(spec, admin, app.config["AUTH_ROLE_ADMIN"])

        def raw_query():
            connection = engine.raw_connection()
            try:
                cursor = connection.cursor()
                cursor.execute(HAND_WRITTEN)
                return cursor.fetchall()
            finally:
                connection.close()

        def report_run():
            result = ReportQuery(spec, models, session, viewer).run(report, ReportParams())
            session.rollback()  # as a request ends
            return result

        # the same numbers, or the comparison means nothing
        hand = {k: (float(budget), float(labour), int(entries)) for k, budget, labour, entries, *_ in raw_query()}
        ours = {r["project"]["value"] or -1: (r["budget"], r["labour"], r["entries"]) for r in report_run().rows}
        assert hand.keys() == ours.keys() and all(abs(hand[k][1] - ours[k][1]) < 0.01 and hand[k][2] == ours[k][2]
                                                  for k in hand), "report and hand-written SQL differ"

        def api():
            response = client.get("/api/v1/reports/project_cost")
            assert response.status_code == 200, response.status_code

        times = interleaved({"raw": raw_query, "report": report_run, "api": api}, repeat=RUNS)
    anchor = median(times["raw"])
    return [f"### Cross-entity cost centre over {LABOUR:,} labour entries + {MATERIAL:,} material costs, "
            f"{PROJECTS:,} projects ({label})", "",
            row("what", "ms: median (min–max) of " + str(RUNS), "/ hand-written SQL"),
            row("---", "---", "---"),
            row("hand-written SQL (anchor)", spread(times["raw"], 1000, 0), "1.00"),
            row("ReportQuery.run", spread(times["report"], 1000, 0), f"{median(times['report']) / anchor:.2f}"),
            row("JSON API /api/v1/reports/project_cost", spread(times["api"], 1000, 0), f"{median(times['api']) / anchor:.2f}")]


def run(pg: str | None = None) -> list[str]:
    work = Path(tempfile.mkdtemp(prefix="bench-cross-"))
    schema_dir = work / "schema"
    schema_dir.mkdir()
    (schema_dir / "cost.yaml").write_text(textwrap.dedent(SCHEMA), encoding="utf-8")
    app = _app(f"sqlite:///{work / 'cost.db'}", schema_dir)
    seconds = fill(app)
    lines = measure(app, "SQLite") + ["", f"SQLite fill: {seconds:.1f} s.", ""]
    if pg:
        with pg_schema(pg) as url:
            app = _app(url, schema_dir)
            seconds = fill(app)
            lines += measure(app, "PostgreSQL") + ["", f"PostgreSQL fill (COPY): {seconds:.1f} s."]
            release(app)
    return lines


if __name__ == "__main__":
    print("\n".join(run()))
