"""A YAML dashboard in a real browser, in English and Chinese: the KPI value, its arrow and progress bar, and a
Chart.js canvas actually drawn (the test module tests/fixtures/dashboards)."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from browser import live_browser, log_in, screenshot
from conftest import ROOT, make_app
from test_browser_i18n import VISIBLE_TEXT, english_left
from test_browser_reports import PAINTED

from app.portal import portal_of
from views.dashboard_pages import period_dates, previous_dates

PASSWORD = "Dash-pass-1"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    app = make_app(tmp_path_factory, "browser_dashboards", schema_dir=ROOT / "tests" / "fixtures" / "dashboards")
    start, end = period_dates("this_month", dt.date.today())
    before, _ = previous_dates("this_month", start, end)
    with app.app_context():
        sm = app.appbuilder.sm
        boss = sm.add_user("boss", "老", "板", "boss@example.com", [sm.find_role("Boss")], PASSWORD)
        tables = portal_of(app).metadata.tables
        session = app.appbuilder.session
        session.execute(tables["expense"].insert(), [
            {"note": "a", "amount": Decimal("1200.50"), "spent_on": start, "category": "travel", "owner_id": boss.id},
            {"note": "b", "amount": Decimal("300"), "spent_on": end, "category": "office", "owner_id": boss.id},
            {"note": "c", "amount": Decimal("500"), "spent_on": before, "category": "office", "owner_id": boss.id}])
        session.execute(tables["budget"].insert(), [{"name": "all", "amount": Decimal("2000"), "month": start}])
        session.commit()
    with live_browser(app) as (server, browser):
        yield server, browser


def open_dashboard(browser, server, language: str):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    log_in(page, server.url, "boss", PASSWORD)
    page.goto(f"{server.url}/lang/{language}")
    page.goto(f"{server.url}/dashboards/money")
    page.locator("canvas[data-drawn=true]").first.wait_for(timeout=10000)
    return page


@pytest.mark.parametrize("language,label,compared", [("en", "Spending by category · Total", "vs previous period"),
                                                     ("zh", "按类别支出 · 合计", "较上一期")])
def test_dashboard_shows_kpi_arrow_progress_and_a_drawn_chart(live, language, label, compared):
    server, browser = live
    page = open_dashboard(browser, server, language)
    kpi = page.locator(".dashboard-kpi[data-measure=total]")
    assert label in kpi.inner_text() and compared in kpi.inner_text()
    assert kpi.locator(".kpi-value").inner_text() == "1,500.50"
    assert kpi.locator(".kpi-arrow.fa-arrow-up").is_visible()  # 1,500.50 against 500 last month
    assert "+200%" in kpi.locator(".kpi-change").inner_text()
    bar = kpi.locator(".progress-bar")
    assert bar.get_attribute("aria-valuenow") == "75" and bar.bounding_box()["width"] > 0  # 1,500.50 of 2,000
    canvas = page.locator(".dashboard-chart canvas[data-drawn=true]")
    assert canvas.evaluate(PAINTED) > 1000, "the chart canvas stayed blank"
    assert page.locator(".dashboard-view[data-view=big_expenses] .kpi-value").inner_text() == "3"  # all three are 100 or more
    if language == "zh":
        assert english_left(page.evaluate(VISIBLE_TEXT)) == []
        assert page.locator(".navbar").get_by_text("看板", exact=True).count() >= 1  # the Dashboards menu
    screenshot(page, f"dashboard-money-{language}")
    page.close()
