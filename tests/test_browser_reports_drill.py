"""Report pages in Chromium, en and zh: formatted numbers right-aligned, the fixed filter in words, a chart bar
click landing on the list of exactly that bar's records, and the date range remembered across page loads."""
from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from browser import live_browser, log_in, screenshot
from conftest import ADMIN, make_app

from app.demo import load_demo

REPORT = "labour_cost_by_month"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    app = make_app(tmp_path_factory, "browser_reports_drill")
    with app.app_context():
        load_demo(app, labour_days=15)
    with live_browser(app) as (server, browser):
        yield server, browser


@pytest.fixture
def page(live):
    server, browser = live
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    log_in(page, server.url, *ADMIN)
    yield server.url, page
    context.close()


def report_json(page, url: str) -> dict:
    return page.evaluate("url => fetch(url, {credentials: 'same-origin'}).then(r => r.json())", url)


@pytest.mark.parametrize("language, fixed, intro", [("en", "Approved = Yes", "Only records where"),
                                                    ("zh", "已审核 = 是", "仅统计以下记录")])
def test_numbers_right_aligned_and_fixed_filter_shown(page, language, fixed, intro):
    url, page = page
    page.goto(f"{url}/lang/{language}")
    page.goto(f"{url}/reports/{REPORT}")
    filters = page.locator("#report-fixed-filters")
    assert intro in filters.inner_text() and fixed in filters.inner_text()
    data = report_json(page, f"{url}/api/v1/reports/{REPORT}")
    cost = page.locator("table.report-table tbody tr").first.locator("td").nth(4)
    assert cost.evaluate("td => getComputedStyle(td).textAlign") == "right"
    assert cost.inner_text() == f"{data['rows'][0]['cost']:,.2f}"
    month = page.locator("table.report-table tbody tr").first.locator("td").first
    assert month.evaluate("td => getComputedStyle(td).textAlign") != "right"
    screenshot(page, f"report-formatted-{language}")


def test_a_bar_click_opens_that_bars_records(page):
    url, page = page
    page.goto(f"{url}/lang/en")
    page.goto(f"{url}/reports/{REPORT}")
    page.locator("#report-chart[data-drawn=true]").wait_for(timeout=10000)
    # the middle of the first bar of the first series, in page coordinates
    point = page.evaluate("""() => {
      const canvas = document.getElementById('report-chart'), chart = canvas.chart;
      const bar = chart.getDatasetMeta(0).data.find(b => Math.abs(b.base - b.y) > 4);
      const index = chart.getDatasetMeta(0).data.indexOf(bar), box = canvas.getBoundingClientRect();
      return {x: box.left + bar.x, y: box.top + (bar.y + bar.base) / 2, drill: chart.data.datasets[0].drill[index]};
    }""")
    assert point["drill"].startswith("/labour_entry/list/?drill=")
    page.mouse.click(point["x"], point["y"])
    page.wait_for_url("**/labour_entry/list/?drill=**", timeout=10000)
    assert page.url == url + point["drill"]
    row = next(r for r in report_json(page, f"{url}/api/v1/reports/{REPORT}")["rows"] if r["drill"] == point["drill"])
    text = page.inner_text("body")
    assert int(re.search(r"Record Count:\s*(\d+)", text).group(1)) == row["entries"]
    bar = page.locator("#drill-bar")
    assert f"Project = {row['project']['label']}" in bar.inner_text()
    screenshot(page, "report-drill-list")
    # × removes the drill: the whole list again
    page.click("#drill-remove")
    page.wait_for_load_state()
    assert "drill=" not in page.url and page.locator("#drill-bar").count() == 0
    assert int(re.search(r"Record Count:\s*(\d+)", page.inner_text("body")).group(1)) > row["entries"]


def test_the_last_date_range_is_remembered(page):
    url, page = page
    page.goto(f"{url}/reports/{REPORT}")
    page.fill("#report-from", "2026-01-01")
    page.fill("#report-to", "2026-06-30")
    page.click("#report-form button[type=submit]")
    page.wait_for_url("**from=2026-01-01**")
    page.goto(f"{url}/reports/labour_by_project")  # another report has its own range (none yet)
    assert "from=" not in page.url
    page.goto(f"{url}/reports/{REPORT}")  # from the menu: no range in the address
    page.wait_for_url("**from=2026-01-01**")
    query = parse_qs(urlsplit(page.url).query)
    assert query["from"] == ["2026-01-01"] and query["to"] == ["2026-06-30"]
    assert page.input_value("#report-from") == "2026-01-01" and page.input_value("#report-to") == "2026-06-30"
    page.click("#report-reset")  # Reset forgets it
    page.wait_for_load_state()
    page.goto(f"{url}/reports/{REPORT}")
    page.wait_for_load_state()
    assert "from=" not in page.url and page.input_value("#report-from") == ""
    assert json.loads(page.evaluate("JSON.stringify(Object.keys(localStorage))")) == []
