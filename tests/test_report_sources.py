"""Cross-entity reports, derived measures, styles and pivots: numbers against hand-written SQL, scope per source,
refusal, empty sources, drill-down filters that count what the cell says; on SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt
import json
import random
import textwrap
from collections import defaultdict
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import jwt_headers, make_app, sql_statements
from hypothesis import given, settings, strategies as st
from sqlalchemy import func, select, text
from test_permissions import PASSWORD, make_user

from app.data.reports.query import _compiled
from app.portal import portal_of
from app.rules.filters import context_for, filter_clause
from app.schema.expressions import Expression
from app.schema.filters import parse_filter

SCHEMA = """
version: 1
module: cost
entities:
  Project:
    title: name
    fields:
      name: {type: string, required: true}
      budget: decimal
      start_date: date
      manager: user
  LabourEntry:
    title: note
    fields:
      note: string
      project: {type: link, to: Project}
      work_date: date
      amount: decimal
      hours: decimal
      state: {type: enum, choices: [draft, approved]}
      owner: user
  MaterialCost:
    title: item
    fields:
      item: string
      project: {type: link, to: Project}
      bought_on: date
      amount: decimal
      owner: user
roles:
  Foreman:
    can: {Project: [read], LabourEntry: [read], MaterialCost: [read]}
    rows: {Project: {manager: $user}, LabourEntry: {owner: $user}, MaterialCost: {owner: $user}}
    reports: [project_cost, labour_pivot]
  Clerk:
    can: {Project: [read], LabourEntry: [read]}
    reports: [project_cost, labour_pivot]
  Auditor:
    can: {Project: [read], LabourEntry: [read], MaterialCost: [read]}
    hide: {LabourEntry: [amount]}
    reports: [project_cost]
  Inspector:
    can: {Project: [read], LabourEntry: [read], MaterialCost: [read]}
    hide: {LabourEntry: [state]}
    reports: [project_cost]
reports:
  project_cost:
    label: {en: Project cost centre, zh: 项目成本中心}
    group_by: [project]
    sources:
      budget:  {entity: Project, key: id, measures: {budget: {expr: sum(budget), format: money}}}
      labour:  {entity: LabourEntry, key: project, measures: {labour: sum(amount), entries: count, avg_labour: avg(amount)}, filter: {state: approved}}
      material: {entity: MaterialCost, key: project, measures: {material: sum(amount)}}
    derived:
      cost:     {expr: "labour + material", format: money}
      variance: {expr: "budget - cost", format: money, style: {danger: "variance < 0"}}
      used:     {expr: "cost / budget", format: percent, style: {warning: "used > 0.9", danger: "used > 1"}}
    chart: bar
    chart_measure: [budget, cost]
  labour_pivot:
    entity: LabourEntry
    group_by: [project]
    columns: work_date:month
    filter: {state: approved}
    measures: {cost: sum(amount), entries: count, avg_cost: avg(amount)}
    cumulative: true
  labour_by_state:
    entity: LabourEntry
    group_by: [project]
    columns: state
    measures: {cost: sum(amount), hours: sum(hours)}
    derived:
      rate: {expr: "cost / hours", format: money}
"""

MONTHS = ["2026-01", "2026-02", "2026-03", "2026-04"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    schema = tmp_path_factory.mktemp("cross_schema")
    (schema / "cost.yaml").write_text(textwrap.dedent(SCHEMA), encoding="utf-8")
    app = make_app(tmp_path_factory, "cross", schema_dir=schema)
    foreman = make_user(app, "foreman1", "Foreman")
    make_user(app, "clerk1", "Clerk")
    make_user(app, "auditor1", "Auditor")
    make_user(app, "inspector1", "Inspector")
    rng = random.Random(15)
    models = portal_of(app).models
    with app.app_context():
        session = app.appbuilder.session
        table = lambda name: models[name].__table__  # noqa: E731
        projects = []
        for n in range(12):
            budget = None if n == 11 else 0 if n == 10 else rng.randrange(0, 5000)  # one without a budget, one of 0
            projects.append({"name": f"P{n:02d}", "budget": budget, "start_date": dt.date(2026, 1, 1),
                             "manager_id": foreman if n < 4 else 1})
        session.execute(table("Project").insert(), projects)
        ids = list(session.scalars(select(table("Project").c.id).order_by(table("Project").c.id)))
        session.execute(table("LabourEntry").insert(), [{
            "note": f"L{n}", "project_id": rng.choice(ids[:9] + [None]),  # projects 9-11 have no labour; some none
            "amount": rng.randrange(1, 400), "hours": rng.randrange(1, 10),
            "work_date": dt.date(2026, rng.randrange(1, 5), rng.randrange(1, 28)),
            "state": rng.choice(["draft", "approved", "approved"]), "owner_id": rng.choice([foreman, 1])} for n in range(400)])
        session.execute(table("MaterialCost").insert(), [{
            "item": f"M{n}", "project_id": rng.choice(ids[:6] + ids[10:]), "amount": rng.randrange(1, 900),
            "bought_on": dt.date(2026, rng.randrange(1, 5), 3), "owner_id": rng.choice([foreman, 1])} for n in range(150)])
        session.commit()
    client = app.test_client()
    return app, client, jwt_headers(client), foreman, ids


def hand_written(app, user_id=None, date_from=None, date_to=None):
    """The cost centre, written out by hand: per project, the three sums (scoped to `user_id` when given)."""
    scope = {"p": "p.manager_id = :u", "l": "l.owner_id = :u", "m": "m.owner_id = :u"} if user_id else {}
    where = lambda alias, extra="1=1": " AND ".join([extra] + ([scope[alias]] if alias in scope else []))  # noqa: E731
    rng = lambda column: (f" AND {column} >= :f AND {column} <= :t") if date_from else ""  # noqa: E731
    sql = f"""
        WITH b AS (SELECT p.id AS k, SUM(p.budget) AS budget FROM project p WHERE {where('p')}{rng('p.start_date')} GROUP BY p.id),
             l AS (SELECT COALESCE(l.project_id, -1) AS k, SUM(l.amount) AS labour, COUNT(*) AS entries, AVG(l.amount) AS avg_labour
                   FROM labour_entry l WHERE {where('l', "l.state = 'approved'")}{rng('l.work_date')} GROUP BY COALESCE(l.project_id, -1)),
             m AS (SELECT COALESCE(m.project_id, -1) AS k, SUM(m.amount) AS material FROM material_cost m WHERE {where('m')}{rng('m.bought_on')}
                   GROUP BY COALESCE(m.project_id, -1)),
             keys AS (SELECT k FROM b UNION SELECT k FROM l UNION SELECT k FROM m)
        SELECT keys.k, COALESCE(b.budget, 0), COALESCE(l.labour, 0), COALESCE(l.entries, 0), l.avg_labour, COALESCE(m.material, 0)
        FROM keys LEFT JOIN b ON b.k = keys.k LEFT JOIN l ON l.k = keys.k LEFT JOIN m ON m.k = keys.k ORDER BY keys.k"""
    with app.app_context():
        rows = app.appbuilder.session.execute(text(sql), {"u": user_id, "f": date_from, "t": date_to}).all()
    return {(None if k == -1 else k): [None if v is None else float(v) for v in rest] for k, *rest in rows}


def _table(app, name):
    with app.app_context():
        return portal_of(app).spec.entity(name).table


def test_cross_entity_numbers_equal_hand_written_sql_in_one_statement(world):
    app, client, h, _, ids = world
    assert _table(app, "LabourEntry") == "labour_entry"
    with sql_statements(app) as seen:
        data = client.get("/api/v1/reports/project_cost", headers=h).json
    report_selects = [s for s in seen if "labour_entry" in s and "material_cost" in s]
    assert len(report_selects) == 1 and "UNION" in report_selects[0].upper()  # one statement for the three sources
    expected = hand_written(app)
    got = {r["project"]["value"]: r for r in data["rows"]}
    assert list(got) == list(expected)
    for key, (budget, labour, entries, avg_labour, material) in expected.items():
        row = got[key]
        assert row["budget"] == pytest.approx(budget, abs=0.01)  # a sum of nothing (no record, no value) is 0
        assert row["labour"] == pytest.approx(labour, abs=0.01) and row["entries"] == entries
        assert row["material"] == pytest.approx(material, abs=0.01)
        assert row["avg_labour"] == (None if avg_labour is None else pytest.approx(avg_labour, abs=0.01))
        assert row["cost"] == pytest.approx(labour + material, abs=0.01)
        used = None if not budget else round((labour + material) / budget, 4)
        assert row["used"] == (None if used is None else pytest.approx(used, abs=0.0001))  # budget 0 or none: null
        want_style = {}
        if budget is not None and budget - (labour + material) < 0:
            want_style["variance"] = "danger"
        if used is not None and used > 0.9:
            want_style["used"] = "danger" if used > 1 else "warning"
        assert row.get("styles", {}) == want_style
    assert got[None]["project"]["label"] == "(none)" and got[None]["budget"] == 0
    # projects 9-11 have no labour: 0 for sums and counts, null for the average
    assert got[ids[9]]["labour"] == 0 and got[ids[9]]["entries"] == 0 and got[ids[9]]["avg_labour"] is None
    # totals: sums add up, derived measures are evaluated on the totals (a ratio of totals)
    totals = data["totals"]
    budget_total = sum(v[0] for v in expected.values())
    cost_total = sum(v[1] + v[4] for v in expected.values())
    assert totals["budget"] == pytest.approx(budget_total, abs=0.01)
    assert totals["cost"] == pytest.approx(cost_total, abs=0.01)
    assert totals["used"] == pytest.approx(round(cost_total / budget_total, 4), abs=0.0001)
    assert "avg_labour" not in totals
    kinds = {c["key"]: (c["kind"], c["format"]) for c in data["columns"]}
    assert kinds["budget"] == ("measure", "money") and kinds["used"] == ("derived", "percent") and kinds["project"][0] == "group"
    assert data["chart_measure"] == ["budget", "cost"] and data["pivot_columns"] == []


def test_date_range_applies_to_each_source_date_field(world):
    app, client, h, *_ = world
    data = client.get("/api/v1/reports/project_cost?from=2026-02-01&to=2026-03-31", headers=h).json
    expected = hand_written(app, date_from=dt.date(2026, 2, 1), date_to=dt.date(2026, 3, 31))
    got = {r["project"]["value"]: (r["labour"], r["material"]) for r in data["rows"]}
    assert got == {k: (pytest.approx(v[1], abs=0.01), pytest.approx(v[4], abs=0.01)) for k, v in expected.items()}


def test_scoped_user_gets_only_their_rows_in_every_source(world):
    app, client, _, foreman, _ = world
    h = jwt_headers(client, "foreman1", PASSWORD)
    assert "project_cost" in [r["id"] for r in client.get("/api/v1/reports/", headers=h).json["result"]]
    data = client.get("/api/v1/reports/project_cost", headers=h).json
    expected = hand_written(app, user_id=foreman)
    got = {r["project"]["value"]: [r["budget"], r["labour"], r["entries"], r["material"]] for r in data["rows"]}
    assert got == {k: [pytest.approx(v[0], abs=0.01), pytest.approx(v[1], abs=0.01), v[2],
                       pytest.approx(v[4], abs=0.01)] for k, v in expected.items()}
    assert sum(v[1] for v in expected.values()) < sum(v[1] for v in hand_written(app).values())  # the scope bites


def test_user_who_cannot_read_a_source_is_refused_and_not_offered(world):
    app, client, *_ = world
    h = jwt_headers(client, "clerk1", PASSWORD)
    listed = [r["id"] for r in client.get("/api/v1/reports/", headers=h).json["result"]]
    assert "project_cost" not in listed and "labour_pivot" in listed
    assert client.get("/api/v1/reports/project_cost", headers=h).status_code in (403, 404)
    from conftest import login
    page_client = login(app.test_client(), "clerk1", PASSWORD)
    index = page_client.get("/reports/").get_data(as_text=True)
    assert "/reports/project_cost" not in index and "/reports/labour_pivot" in index


def _drill_count(app, url):
    """Rows the drill filter picks: its conditions through the one filter language's SQL (filter_clause), a link
    compared with a record id (which the YAML filter language leaves out, ids differing between databases) as
    the list page's `?drill=` reads it: the link column equal to the id, or empty."""
    parts = urlsplit(url)
    snake = parts.path.strip("/").split("/")[0]
    raw = json.loads(parse_qs(parts.query)["drill"][0])
    with app.app_context():
        portal = portal_of(app)
        entity = next(e for e in portal.spec.entities if e.snake == snake)
        model = portal.models[entity.name]
        links = {name: raw.pop(name) for name in list(raw) if entity.field(name).kind.is_relation}
        conditions = parse_filter({e.name: e for e in portal.spec.entities}, entity.name, raw)
        clauses = [filter_clause(portal.spec, portal.models, entity.name, conditions, context_for(1))]
        for name, value in links.items():
            column = getattr(model, entity.field(name).column_name)
            clauses.append(column.is_(None) if value == {"null": True} else column == value)
        count = app.appbuilder.session.scalar(select(func.count()).select_from(model).where(*clauses))
        total = app.appbuilder.session.scalar(select(func.sum(model.amount)).select_from(model).where(*clauses))
    return count, float(total or 0)


def test_pivot_rows_columns_grand_totals_cumulative_and_drill(world):
    app, client, h, _, ids = world
    data = client.get("/api/v1/reports/labour_pivot", headers=h).json
    with app.app_context():
        rows = app.appbuilder.session.execute(text(
            "SELECT project_id, work_date, amount FROM labour_entry WHERE state = 'approved'")).all()
    cells = defaultdict(lambda: [0.0, 0])
    for project, day, amount in rows:
        month = str(day)[:7]
        cells[(project, month)][0] += float(amount)
        cells[(project, month)][1] += 1
    assert [c["key"] for c in data["pivot_columns"]] == MONTHS
    by_project = {r["project"]["value"]: r for r in data["rows"]}
    assert set(by_project) == {p for p, _ in cells}
    for project, row in by_project.items():
        running, running_count = 0.0, 0
        for month in MONTHS:
            amount, count = cells.get((project, month), (0.0, 0))
            running += amount
            running_count += count
            cell = row["pivot"][month]
            assert cell["cost"] == pytest.approx(running, abs=0.01)  # cumulative along the columns
            assert cell["avg_cost"] == (pytest.approx(amount / count, abs=0.01) if count else None)  # not cumulative
            # a running cell drills into every record up to its month: the list adds up to the cell
            assert _drill_count(app, cell["drill"]) == (running_count, pytest.approx(running, abs=0.01))
        assert row["cost"] == pytest.approx(sum(cells.get((project, m), (0, 0))[0] for m in MONTHS), abs=0.01)
        n = sum(cells.get((project, m), (0, 0))[1] for m in MONTHS)
        assert row["entries"] == n
        assert row["avg_cost"] == pytest.approx(row["cost"] / n, abs=0.01)  # from sums and counts, not an average of averages
        assert _drill_count(app, row["drill"])[0] == n
    totals = data["totals"]
    running = 0.0
    for month in MONTHS:
        amount = sum(v[0] for (p, m), v in cells.items() if m == month)
        running += amount
        assert totals["pivot"][month]["cost"] == pytest.approx(running, abs=0.01)
    grand = sum(v[0] for v in cells.values())
    assert totals["cost"] == pytest.approx(grand, abs=0.01) and totals["entries"] == len(rows)


def test_enum_pivot_with_derived_per_cell(world):
    app, client, h, *_ = world
    data = client.get("/api/v1/reports/labour_by_state", headers=h).json
    assert data["pivot_columns"] == [{"key": "draft", "label": "Draft"}, {"key": "approved", "label": "Approved"}]
    with app.app_context():
        rows = app.appbuilder.session.execute(text("SELECT project_id, state, SUM(amount), SUM(hours) FROM labour_entry GROUP BY project_id, state")).all()
    for project, state, amount, hours in rows:
        row = next(r for r in data["rows"] if r["project"]["value"] == project)
        assert row["pivot"][state]["cost"] == pytest.approx(float(amount), abs=0.01)
        assert row["pivot"][state]["rate"] == pytest.approx(round(float(amount) / float(hours), 2), abs=0.01)
        assert _drill_count(app, row["pivot"][state]["drill"])[1] == pytest.approx(float(amount), abs=0.01)
    total_rate = data["totals"]["cost"] / data["totals"]["hours"]
    assert data["totals"]["rate"] == pytest.approx(total_rate, abs=0.01)


def test_cross_entity_row_drill_counts_first_linked_source(world):
    app, client, h, _, ids = world
    data = client.get("/api/v1/reports/project_cost?from=2026-02-01&to=2026-03-31", headers=h).json
    for row in data["rows"][:5]:
        count, amount = _drill_count(app, row["drill"])
        assert count == row["entries"] and amount == pytest.approx(row["labour"], abs=0.01)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(-10**6, 10**6), st.floats(-1e6, 1e6, allow_nan=False)), min_size=3, max_size=3))
def test_derived_evaluation_matches_python(values):
    a, b, c = values
    expr = Expression.of("(a + b) * 2 - c / (b - 1)")

    def reference():
        if None in values or b - 1 == 0:
            return None
        return (a + b) * 2 - c / (b - 1)

    want = reference()
    # the report's float closure and the expression language's own evaluator agree with Python
    for got in (_compiled(expr)({"a": a, "b": b, "c": c}), expr.evaluate_values({"a": a, "b": b, "c": c})):
        assert (got is None) == (want is None)
        if want is not None:
            assert float(got) == pytest.approx(want, rel=1e-9, abs=1e-6)
    style = _compiled(Expression.of("a > b or not (c <= 0)"))({"a": a, "b": b, "c": c})
    left = None if a is None or b is None else a > b
    right = None if c is None else not (c <= 0)
    truth = True if True in (left, right) else None if None in (left, right) else False  # SQL's three-valued or
    assert style == truth


def test_pages_group_filter_and_pivot_download(world):
    app, client, h, _, ids = world
    from conftest import login
    pages = login(app.test_client())
    assert pages.get("/reports/project_cost").status_code == 200
    assert pages.get("/reports/labour_pivot").status_code == 200
    one = client.get(f"/api/v1/reports/project_cost?f_project={ids[0]}", headers=h).json
    whole = {r["project"]["value"]: r for r in client.get("/api/v1/reports/project_cost", headers=h).json["rows"]}
    assert [r["project"]["value"] for r in one["rows"]] == [ids[0]]
    assert one["rows"][0]["labour"] == whole[ids[0]]["labour"] and one["rows"][0]["budget"] == whole[ids[0]]["budget"]
    assert client.get("/api/v1/reports/project_cost?f_project=abc", headers=h).status_code == 400
    csv_text = pages.get("/reports/labour_pivot/download.csv").data.decode("utf-8-sig")
    header = csv_text.splitlines()[0].split(",")
    assert header[:2] == ["Project", "2026-01 · Cost"] and header[-1] == "Avg cost (Total)"
    assert len(header) == 1 + 4 * 3 + 3


def test_hidden_fields_in_a_source(world):
    app, client, *_ = world
    h = jwt_headers(client, "auditor1", PASSWORD)
    data = client.get("/api/v1/reports/project_cost", headers=h).json
    keys = [c["key"] for c in data["columns"]]
    assert "labour" not in keys and "avg_labour" not in keys and "entries" in keys and "material" in keys
    assert all("labour" not in r and r["cost"] is None for r in data["rows"])  # derived over a hidden measure: null
    assert "labour" not in data["totals"] and data["totals"]["cost"] is None
    # a source filtering by a field hidden from the viewer: refused, not silently unfiltered
    h = jwt_headers(client, "inspector1", PASSWORD)
    response = client.get("/api/v1/reports/project_cost", headers=h)
    assert response.status_code == 400 and "hidden" in response.json["message"]
