"""YAML dashboards (issue 15) through HTTP on the test module tests/fixtures/dashboards: KPI value, previous period
and target against independent SQL, per-role visibility, tiles left out for a viewer who may not open their
report, view tiles' counts, the page, the menu and the home page. Dates are relative to today."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import text

from conftest import ROOT, jwt_headers, login, make_app

from app.portal import portal_of

from views.dashboard_pages import period_dates, previous_dates

PASSWORD = "Dash-pass-1"
USERS = {"boss": "Boss", "clerk1": "Clerk", "clerk2": "Clerk", "outsider": "Outsider"}
SCHEMAS = ROOT / "tests" / "fixtures" / "dashboards"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    app = make_app(tmp_path_factory, "dashboards", schema_dir=SCHEMAS)
    with app.app_context():
        sm = app.appbuilder.sm
        for name, role in USERS.items():
            sm.add_user(name, name, "Test", f"{name}@example.com", [sm.find_role(role)], PASSWORD)
    return app


def user_id(app, name):
    with app.app_context():
        return app.appbuilder.sm.find_user(username=name).id


@pytest.fixture(scope="module")
def data(app):
    """Expenses this month, last month, before and after (noise), for two clerks; budgets this and last month."""
    today = dt.date.today()
    start, end = period_dates("this_month", today)
    before, _ = previous_dates("this_month", start, end)
    clerk1, clerk2 = user_id(app, "clerk1"), user_id(app, "clerk2")
    rows = [  # (amount, date, category, owner, secret)
        ("12.50", start, "travel", clerk1, "1"), ("150.25", end, "office", clerk1, "2"),
        ("99.99", start + dt.timedelta(days=3), "office", clerk2, "4"), ("300", start, "travel", clerk2, "8"),
        ("40", before, "travel", clerk1, "16"), ("260.10", start - dt.timedelta(days=1), "office", clerk1, "32"),
        ("1000", before - dt.timedelta(days=1), "travel", clerk2, "64"), ("7", end + dt.timedelta(days=1), "office", clerk1, "128"),
    ]
    budgets = [("travel", "500", start), ("office", "250.50", end), ("old", "900", before)]
    with app.app_context():
        session = app.appbuilder.session
        tables = portal_of(app).metadata.tables  # plain INSERTs: the numbers are checked against plain SQL
        session.execute(tables["expense"].insert(), [
            {"note": f"e{i}", "amount": Decimal(a), "spent_on": d, "category": c, "owner_id": o, "secret": Decimal(s)}
            for i, (a, d, c, o, s) in enumerate(rows)])
        session.execute(tables["budget"].insert(), [{"name": n, "amount": Decimal(a), "month": m} for n, a, m in budgets])
        session.commit()
    return {"start": start, "end": end, "before": before, "clerk1": clerk1, "clerk2": clerk2}


def sql_value(app, statement: str, **params):
    """An independent number straight from the tables (never through the report engine)."""
    with app.app_context():
        value = app.appbuilder.session.execute(text(statement), params).scalar()
    return float(value) if value is not None else None


def expense_sum(app, start, end, owner=None, what="SUM(amount)"):
    scope = " AND owner_id = :owner" if owner else ""
    return sql_value(app, f"SELECT COALESCE({what}, 0) FROM expense WHERE spent_on >= :a AND spent_on <= :b{scope}",
                     a=start, b=end, owner=owner)


class Caller:
    def __init__(self, app, username=None):
        self.client = app.test_client()
        self.headers = jwt_headers(self.client, username, PASSWORD) if username else jwt_headers(self.client)

    def get(self, url):
        return self.client.get(url, headers=self.headers)


def tiles_of(response) -> list[dict]:
    assert response.status_code == 200, response.json
    return response.json["tiles"]


# -- numbers -------------------------------------------------------------------------------------------------

def test_periods_are_calendar_periods_and_the_one_before():
    assert period_dates("this_month", dt.date(2026, 11, 26)) == (dt.date(2026, 11, 1), dt.date(2026, 11, 30))
    assert previous_dates("this_month", dt.date(2026, 3, 1), dt.date(2026, 3, 31)) == (dt.date(2026, 2, 1), dt.date(2026, 2, 28))
    assert period_dates("this_quarter", dt.date(2026, 11, 26)) == (dt.date(2026, 10, 1), dt.date(2026, 12, 31))
    assert previous_dates("this_quarter", dt.date(2026, 1, 1), dt.date(2026, 3, 31)) == (dt.date(2025, 10, 1), dt.date(2025, 12, 31))
    assert period_dates("this_year", dt.date(2026, 2, 3)) == (dt.date(2026, 1, 1), dt.date(2026, 12, 31))
    assert previous_dates("this_year", dt.date(2026, 1, 1), dt.date(2026, 12, 31)) == (dt.date(2025, 1, 1), dt.date(2025, 12, 31))
    assert period_dates("last_30_days", dt.date(2026, 3, 5)) == (dt.date(2026, 2, 4), dt.date(2026, 3, 5))
    assert previous_dates("last_30_days", dt.date(2026, 2, 4), dt.date(2026, 3, 5)) == (dt.date(2026, 1, 5), dt.date(2026, 2, 3))


def test_kpi_value_previous_and_target_equal_independent_sql(app, data):
    response = Caller(app, "boss").get("/api/v1/dashboards/money")
    body = response.json
    start, end, before = data["start"], data["end"], data["before"]
    assert body["id"] == "money" and body["label"] == "Money"
    assert body["period"] == {"from": start.isoformat(), "to": end.isoformat()}
    kpis = {(t["report"], t["measure"]): t for t in tiles_of(response) if t["kind"] == "kpi"}
    total = kpis[("spend", "total")]
    value = expense_sum(app, start, end)
    previous = expense_sum(app, before, start - dt.timedelta(days=1))
    target = sql_value(app, "SELECT SUM(amount) FROM budget WHERE month >= :a AND month <= :b", a=start, b=end)
    assert value == pytest.approx(562.74) and previous == pytest.approx(300.10) and target == pytest.approx(750.50)
    assert total["value"] == pytest.approx(value) and total["previous"] == pytest.approx(previous)
    assert total["target"] == pytest.approx(target)
    assert total["change"] == pytest.approx((value - previous) / previous, abs=1e-4)
    assert total["direction"] == "up" and total["progress"] == pytest.approx(value / target, abs=1e-4)
    assert total["label"] == "Spending by category · Total"
    entries = kpis[("spend", "entries")]
    count_now = expense_sum(app, start, end, what="COUNT(*)")
    count_before = expense_sum(app, before, start - dt.timedelta(days=1), what="COUNT(*)")
    assert (entries["value"], entries["previous"]) == (count_now, count_before) == (4, 2)
    assert entries["direction"] == "up" and entries["change"] == pytest.approx(1.0)
    assert entries["target"] is None and entries["progress"] is None and entries["label"] == "Expenses this month"
    assert kpis[("secret_report", "hidden_total")]["value"] == pytest.approx(expense_sum(app, start, end, what="SUM(secret)"))
    chart = next(t for t in tiles_of(response) if t["kind"] == "chart")
    assert chart["report"] == "spend" and chart["config"]["type"] == "bar"
    by_label = dict(zip(chart["config"]["data"]["labels"], chart["config"]["data"]["datasets"][0]["data"]))
    assert sum(by_label.values()) == pytest.approx(value)
    table = next(t for t in tiles_of(response) if t["kind"] == "table")
    assert table["totals"]["total"] == pytest.approx(value) and len(table["rows"]) == 2


def test_a_clerk_sees_their_own_scope_and_tiles_they_may_not_open_are_left_out(app, data):
    clerk = Caller(app, "clerk1")
    tiles = tiles_of(clerk.get("/api/v1/dashboards/money"))
    kinds = [(t["kind"], t.get("report") or t.get("view"), t.get("measure")) for t in tiles]
    # spend.total has a target from `budget`, which clerks may not open; secret_report's measure is over a field
    # hidden from clerks: both tiles are left out, never shown with someone else's numbers
    assert kinds == [("kpi", "spend", "entries"), ("chart", "spend", None), ("table", "spend", None),
                     ("view", "big_expenses", None)]
    start, end, before = data["start"], data["end"], data["before"]
    entries = tiles[0]
    assert entries["value"] == expense_sum(app, start, end, data["clerk1"], "COUNT(*)") == 2
    assert entries["previous"] == expense_sum(app, before, start - dt.timedelta(days=1), data["clerk1"], "COUNT(*)") == 2
    assert entries["direction"] == "flat" and entries["change"] == 0
    assert tiles[2]["totals"]["total"] == pytest.approx(expense_sum(app, start, end, data["clerk1"]))
    view = tiles[3]
    views_api = clerk.get("/api/v1/views/big_expenses").json
    assert view["count"] == views_api["count"] == sql_value(
        app, "SELECT COUNT(*) FROM expense WHERE amount >= 100 AND owner_id = :o", o=data["clerk1"]) == 2
    assert view["url"] == "/expense/list/?view=big_expenses"
    other = tiles_of(Caller(app, "clerk2").get("/api/v1/dashboards/money"))
    assert other[0]["value"] == expense_sum(app, start, end, data["clerk2"], "COUNT(*)") == 2
    assert other[3]["count"] == 2  # 300 this month and 1000 before: in clerk2's scope only


def test_dashboards_are_offered_to_their_roles_only(app, data):
    outsider = Caller(app, "outsider")
    assert outsider.get("/api/v1/dashboards/money").status_code == 403
    assert outsider.get("/api/v1/dashboards/no_such").status_code == 404
    listed = outsider.get("/api/v1/dashboards/").json
    assert [d["id"] for d in listed["result"]] == ["budgets"] and listed["count"] == 1
    budgets = outsider.get("/api/v1/dashboards/budgets").json
    year = dt.date.today().year
    assert budgets["period"] == {"from": f"{year}-01-01", "to": f"{year}-12-31"}
    assert budgets["tiles"][0]["totals"]["planned"] == pytest.approx(sql_value(
        app, "SELECT SUM(amount) FROM budget WHERE month >= :a AND month <= :b", a=dt.date(year, 1, 1), b=dt.date(year, 12, 31)))
    assert [d["id"] for d in Caller(app, "clerk1").get("/api/v1/dashboards/").json["result"]] == ["money"]
    assert [d["id"] for d in Caller(app).get("/api/v1/dashboards/").json["result"]] == ["money", "budgets"]  # Admin
    assert app.test_client().get("/api/v1/dashboards/money").status_code == 401
    page = login(app.test_client(), "outsider", PASSWORD)
    assert page.get("/dashboards/money").status_code == 403
    assert page.get("/dashboards/nope").status_code == 404
    html = page.get("/").data.decode()
    assert 'href="/dashboards/budgets"' in html and 'href="/dashboards/money"' not in html
    assert 'id="home-dashboard"' not in html  # budgets is not a home dashboard
    assert app.test_client().get("/dashboards/money").status_code == 302  # to the login page


def test_the_page_shows_values_arrows_progress_and_charts(app, data):
    page = login(app.test_client(), "boss", PASSWORD)
    html = page.get("/dashboards/money").data.decode()
    assert 'data-measure="total"' in html and 'data-direction="up"' in html and "fa-arrow-up" in html
    assert "progress-bar" in html and "<canvas data-chart=" in html and "report-table" in html
    assert 'data-view="big_expenses"' in html and "562.74" in html
    assert 'href="/dashboards/money"' in html  # the Dashboards menu
    home = page.get("/").data.decode()
    assert 'id="home-dashboard"' in home and 'data-measure="total"' in home and "<canvas data-chart=" in home
    zh = login(app.test_client(), "boss", PASSWORD)
    zh.get("/lang/zh")
    html = zh.get("/dashboards/money").data.decode()
    assert "资金看板" in html and "按类别支出 · 合计" in html and "看板" in html
    clerk = login(app.test_client(), "clerk1", PASSWORD).get("/dashboards/money").data.decode()
    assert 'data-measure="total"' not in clerk and 'data-measure="entries"' in clerk and 'data-report="secret_report"' not in clerk
