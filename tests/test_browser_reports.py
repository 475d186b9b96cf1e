"""Report pages in a real browser: Chart.js is served locally and actually draws."""
from __future__ import annotations

from urllib.parse import urlparse

import pytest
from browser import live_browser, log_in, screenshot
from conftest import ADMIN, make_app

from app.demo import load_demo

PAINTED = """canvas => {
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < data.length; i += 4) { if (data[i] > 0) painted++; }
  return painted;
}"""


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    app = make_app(tmp_path_factory, "browser_reports")
    with app.app_context():
        load_demo(app, labour_days=20)
    with live_browser(app) as (server, browser):
        yield server, browser


def test_report_chart_draws_from_local_assets(live):
    server, browser = live
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    hosts = set()
    page.on("request", lambda request: hosts.add(urlparse(request.url).netloc))
    log_in(page, server.url, *ADMIN)
    page.goto(f"{server.url}/reports/labour_cost_by_month")
    canvas = page.locator("#report-chart[data-drawn=true]")
    canvas.wait_for(timeout=10000)
    assert canvas.evaluate(PAINTED) > 1000, "the chart canvas stayed blank"
    assert page.evaluate("document.getElementById('report-chart').chart.data.datasets.length") >= 1
    assert page.locator("table.report-table tbody tr").count() >= 1
    screenshot(page, "report-labour-cost-by-month")
    assert hosts == {urlparse(server.url).netloc}, f"requests left the server: {hosts}"

    page.select_option("#f_project", index=1)
    page.click("button[type=submit]")
    page.wait_for_url("**f_project=**")
    chosen = page.locator("#f_project option:checked").inner_text()
    cells = page.locator("table.report-table tbody tr td:nth-child(2)").all_inner_texts()
    assert cells and set(cells) == {chosen}
    page.close()


def test_dashboard_shows_cards_and_charts(live):
    server, browser = live
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    log_in(page, server.url, *ADMIN)
    page.goto(f"{server.url}/dashboard/labour")
    page.locator("canvas[data-drawn=true]").first.wait_for(timeout=10000)
    assert page.locator(".dashboard-card").count() >= 3
    assert page.locator("canvas[data-drawn=true]").count() == page.locator("canvas[data-chart]").count() >= 2
    screenshot(page, "dashboard-labour")
    page.close()
