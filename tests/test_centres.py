"""The shipped centres (issue 15), YAML only: the cost, progress and fund centres and the labour summary give the
numbers independent SQL gives over the demo data, on SQLite and PostgreSQL; the service and CRM dashboards open."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from conftest import jwt_headers, make_app
from app.demo import load_demo


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    app = make_app(tmp_path_factory, "centres", PORTAL_REPORT_CACHE_SECONDS=0)
    with app.app_context():
        load_demo(app, labour_days=20)
    return app


@pytest.fixture(scope="module")
def api(app):
    client = app.test_client()
    headers = jwt_headers(client)
    return lambda url: client.get(url, headers=headers)


def sql(app, statement: str) -> dict:
    with app.app_context():
        rows = app.appbuilder.session.execute(text(statement)).all()
        app.appbuilder.session.remove()
    return {r[0]: [float(v) if v is not None else None for v in r[1:]] for r in rows}


def by_group(report: dict, group: str) -> dict:
    return {row[group]["value"]: row for row in report["rows"]}


def test_cost_centre_matches_sql(app, api):
    report = api("/api/v1/reports/project_cost")
    assert report.status_code == 200, report.json
    rows = by_group(report.json, "project")
    expected = sql(app, """
        SELECT p.id, p.budget,
               (SELECT coalesce(sum(amount), 0) FROM labour_entry e WHERE e.project_id = p.id AND e.state = 'approved'),
               (SELECT coalesce(sum(amount), 0) FROM material_cost m WHERE m.project_id = p.id)
        FROM project p""")
    assert set(rows) == set(expected)
    total_cost = total_budget = 0.0
    for pk, (budget, labour, material) in expected.items():
        row = rows[pk]
        assert row["budget"] == pytest.approx(budget) and row["labour"] == pytest.approx(labour)
        assert row["material"] == pytest.approx(material)
        assert row["cost"] == pytest.approx(labour + material)
        assert row["variance"] == pytest.approx(budget - labour - material)
        assert row["used"] == pytest.approx((labour + material) / budget, abs=1e-4)
        assert (row.get("styles") or {}).get("used") == ("danger" if row["used"] > 1 else "warning" if row["used"] > 0.9 else None)
        total_cost += labour + material
        total_budget += budget
    assert report.json["totals"]["used"] == pytest.approx(total_cost / total_budget, abs=1e-4)  # ratio of totals


def test_fund_centre_and_progress_centre_match_sql(app, api):
    funds = by_group(api("/api/v1/reports/project_funds").json, "project")
    expected = sql(app, """
        SELECT p.id, (SELECT coalesce(sum(amount), 0) FROM receipt r WHERE r.project_id = p.id),
                     (SELECT coalesce(sum(amount), 0) FROM payment x WHERE x.project_id = p.id) FROM project p""")
    for pk, (received, paid) in expected.items():
        assert funds[pk]["received"] == pytest.approx(received) and funds[pk]["paid"] == pytest.approx(paid)
        assert funds[pk]["balance"] == pytest.approx(received - paid)
    progress = by_group(api("/api/v1/reports/project_progress").json, "project")
    expected = sql(app, """
        SELECT project_id, count(*), count(actual_end), sum(delay_days) FROM milestone GROUP BY project_id""")
    for pk, (milestones, finished, delay) in expected.items():
        assert progress[pk]["milestones"] == milestones and progress[pk]["finished"] == finished
        assert progress[pk]["delay_days"] == pytest.approx(delay)
        assert progress[pk]["done_share"] == pytest.approx(finished / milestones, abs=1e-4)


def test_cumulative_cash_flow_runs_receipts_minus_payments_down_the_months(app, api):
    """cash_flow: two entities meeting on months of their own dates, running totals, net = received - paid."""
    report = api("/api/v1/reports/cash_flow")
    assert report.status_code == 200, report.json
    with app.app_context():
        session = app.appbuilder.session
        received = session.execute(text("SELECT received_on, amount FROM receipt")).all()
        paid = session.execute(text("SELECT paid_on, amount FROM payment")).all()
        session.remove()
    by_month: dict = {}
    for rows, at in ((received, 0), (paid, 1)):
        for day, amount in rows:
            month = (day if isinstance(day, str) else day.isoformat())[:7]
            by_month.setdefault(month, [0.0, 0.0])[at] += float(amount)
    assert len(by_month) > 1, "the demo data spans several months"
    months = [row["month"]["value"] for row in report.json["rows"]]
    assert months == sorted(by_month)  # in time order, every month either side has
    running_in = running_out = 0.0
    for row in report.json["rows"]:
        got_in, got_out = by_month[row["month"]["value"]]
        running_in, running_out = running_in + got_in, running_out + got_out
        assert row["received"] == pytest.approx(running_in) and row["paid"] == pytest.approx(running_out)
        assert row["net"] == pytest.approx(running_in - running_out)
        assert (row.get("styles") or {}).get("net") == ("danger" if row["net"] < 0 else None)
        # each measure drills into its own entity, over that month
        assert row["drills"]["received"].startswith("/receipt/list/?drill=")
        assert row["drills"]["paid"].startswith("/payment/list/?drill=")
    assert report.json["totals"]["net"] == pytest.approx(running_in - running_out)


def drilled_sum(api, drill: str, field: str = "amount") -> tuple[int, float]:
    """(count, sum of `field`) of every record a drill URL lists, through the list API, page by page."""
    url = "/api/v1/" + drill.split("/")[1] + "/?" + drill.split("?", 1)[1]
    count, total, page = 0, 0.0, 0
    while True:
        listed = api(f"{url}&q=(page:{page},page_size:100)")
        assert listed.status_code == 200, listed.json
        count += len(listed.json["result"])
        total += sum(float(r[field] or 0) for r in listed.json["result"])
        if len(listed.json["result"]) < 100:
            return count, total
        page += 1


def test_cash_flow_drill_sums_equal_the_running_cells_and_date_range(app, api):
    """A running total's cell opens every record up to its month: the list's sum is the cell; a date range
    narrows every source."""
    report = api("/api/v1/reports/cash_flow").json
    first, second = report["rows"][0], report["rows"][1]
    month_paid = second["paid"] - first["paid"]  # running totals: the month's own payments
    for row in (first, second, report["rows"][-1]):
        assert drilled_sum(api, row["drills"]["paid"])[1] == pytest.approx(row["paid"])
        assert drilled_sum(api, row["drills"]["received"])[1] == pytest.approx(row["received"])
    start = second["month"]["value"] + "-01"
    narrowed = api(f"/api/v1/reports/cash_flow?from={start}").json
    assert narrowed["rows"][0]["month"]["value"] == second["month"]["value"]
    assert narrowed["rows"][0]["paid"] == pytest.approx(month_paid)
    assert drilled_sum(api, narrowed["rows"][0]["drills"]["paid"])[1] == pytest.approx(month_paid)


def test_cross_report_page_offers_dates_and_names_source_filters(app):
    client = app.test_client()
    from conftest import login
    login(client)
    page = client.get("/reports/project_cost")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'id="report-from"' in html  # the range applies to each source's own date
    assert "report-fixed-filters" in html and "Approved" in html  # the labour source's fixed filter, in words


def test_labour_summary_pivot_matches_sql(app, api):
    report = api("/api/v1/reports/labour_by_month_pivot")
    assert report.status_code == 200, report.json
    assert report.json["pivot_columns"]
    totals = sql(app, "SELECT project_id, sum(amount) FROM labour_entry WHERE approved GROUP BY project_id"
                 if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql") else
                 "SELECT project_id, sum(amount) FROM labour_entry WHERE approved = 1 GROUP BY project_id")
    rows = by_group(report.json, "project")
    for pk, (amount,) in totals.items():
        assert rows[pk]["cost"] == pytest.approx(amount)  # row total: the plain total
        last = report.json["pivot_columns"][-1]["key"]
        assert rows[pk]["pivot"][last]["cost"] == pytest.approx(amount)  # cumulative: the last column is the total
    # a running cell drills into every record up to its month: the list's sum is the cell (both ends, one row)
    row = max(rows.values(), key=lambda r: len(r["pivot"]))
    for key in (report.json["pivot_columns"][0]["key"], report.json["pivot_columns"][-1]["key"]):
        cell = row["pivot"][key]
        assert drilled_sum(api, cell["drill"])[1] == pytest.approx(cell["cost"])
    trades = by_group(api("/api/v1/reports/labour_by_trade").json, "trade")
    assert sum(r["cost"] for r in trades.values()) == pytest.approx(sum(a for (a,) in totals.values()))


@pytest.mark.parametrize("dashboard", ["management", "service", "crm"])
def test_shipped_dashboards_open_with_their_tiles(api, dashboard):
    response = api(f"/api/v1/dashboards/{dashboard}")
    assert response.status_code == 200, response.json
    assert response.json["tiles"] and all(t["kind"] in ("kpi", "chart", "table", "view") for t in response.json["tiles"])


def test_one_month_of_the_cash_flow_is_its_running_position(api):
    """f_month=<a month>: that month's row with the running totals up to it (what its drill lists), not the
    month alone."""
    report = api("/api/v1/reports/cash_flow").json
    second = report["rows"][1]
    one = api(f"/api/v1/reports/cash_flow?f_month={second['month']['value']}")
    assert one.status_code == 200, one.json
    [row] = one.json["rows"]
    assert (row["received"], row["paid"], row["net"]) == (second["received"], second["paid"], second["net"])
    assert one.json["totals"]["net"] == pytest.approx(second["net"])
    assert drilled_sum(api, row["drills"]["paid"])[1] == pytest.approx(row["paid"])
