"""The shipped centres (schemas/centres.yaml, labour.yaml) in Chromium, English and Chinese, over the demo data:
the management dashboard's KPIs and drawn charts, the cost centre's styled cells and per-source drill-down, the
labour pivot's running cells opening the records that add up to them, and the cash flow chart's points opening
their own entity's records."""
from __future__ import annotations

import re

import pytest
from browser import live_browser, log_in, screenshot
from conftest import ADMIN, make_app
from test_browser_i18n import VISIBLE_TEXT, english_left
from test_browser_reports import PAINTED

from app.demo import load_demo


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    app = make_app(tmp_path_factory, "browser_centres", PORTAL_REPORT_CACHE_SECONDS=0)
    with app.app_context():
        load_demo(app, labour_days=40)  # two months or more: a running pivot
        sm = app.appbuilder.sm
        user = sm.find_user(username=ADMIN[0])
        user.first_name, user.last_name = "系统", "管理员"  # a name is data, not UI text left in English
        sm.update_user(user)
    with live_browser(app) as (server, browser):
        yield server, browser


@pytest.fixture
def page(live):
    server, browser = live
    context = browser.new_context(viewport={"width": 1280, "height": 1100})
    page = context.new_page()
    log_in(page, server.url, *ADMIN)
    yield server.url, page
    context.close()


def fetch_json(page, url: str) -> dict:
    return page.evaluate("url => fetch(url, {credentials: 'same-origin'}).then(r => r.json())", url)


def record_count(page) -> int:
    return int(re.search(r"(?:Record Count|记录数)[:：]\s*(\d+)", page.inner_text("body")).group(1))


def drilled_count(page, url: str, drill: str) -> int:
    """How many records the list API gives for a drill link (the list page must show as many)."""
    api = "/api/v1/" + drill.split("/")[1] + "/?" + drill.split("?", 1)[1]
    return fetch_json(page, url + api + "&q=(page_size:1)")["count"]


@pytest.mark.parametrize("language", ["en", "zh"])
def test_management_dashboard_kpis_and_charts(page, language):
    url, page = page
    page.goto(f"{url}/lang/{language}")
    page.goto(f"{url}/dashboards/management")
    page.locator(".dashboard-tile canvas[data-drawn=true]").first.wait_for(timeout=10000)
    board = fetch_json(page, f"{url}/api/v1/dashboards/management")
    kpis = [t for t in board["tiles"] if t["kind"] == "kpi"]
    assert len(kpis) == 3
    for tile in kpis:
        shown = page.locator(f".dashboard-kpi[data-report={tile['report']}][data-measure={tile['measure']}] .kpi-value")
        assert f"{int(tile['value']):,}" in shown.inner_text()
    cost = page.locator(".dashboard-kpi[data-measure=cost]")
    assert cost.locator(".progress-bar").count() == 1  # the budget is its target
    canvases = page.locator(".dashboard-tile canvas[data-drawn=true]")
    assert canvases.count() >= 3  # cost centre, labour pivot, cash flow
    for i in range(canvases.count()):
        assert canvases.nth(i).evaluate(PAINTED) > 1000, "a chart stayed blank"
    assert page.locator("table.report-table").count() >= 1  # the progress centre as a table
    if language == "zh":
        assert "经营看板" in page.inner_text("body")
        assert english_left(page.evaluate(VISIBLE_TEXT)) == []
    screenshot(page, f"centres-management-{language}")


@pytest.mark.parametrize("language, words", [("en", "State = Approved"), ("zh", "点工记录：状态 = 已审核")])
def test_cost_centre_styles_fixed_filter_and_per_source_drill(page, language, words):
    url, page = page
    page.goto(f"{url}/lang/{language}")
    page.goto(f"{url}/reports/project_cost")
    assert words in page.locator("#report-fixed-filters").inner_text()
    assert page.locator("#report-from").is_visible()  # a date range over each source's own date
    data = fetch_json(page, f"{url}/api/v1/reports/project_cost")
    header = [th.inner_text() for th in page.locator("table.report-table thead th").all()]
    used_at = next(i for i, label in enumerate(header) if label in ("Budget used", "预算使用率"))
    material_at = next(i for i, label in enumerate(header) if label in ("Material", "材料费"))
    body = page.locator("table.report-table tbody tr")
    for i, row in enumerate(data["rows"]):
        style = (row.get("styles") or {}).get("used")
        cell = body.nth(i).locator("td").nth(used_at)
        assert ("report-" + style in cell.get_attribute("class")) if style else "report-danger" not in (cell.get_attribute("class") or "")
        assert cell.inner_text().endswith("%")
    assert any((r.get("styles") or {}).get("used") for r in data["rows"]), "the demo has a project near or over budget"
    # the material cell opens that project's material costs, not its labour entries
    row = next(r for r in data["rows"] if r["material"])
    at = data["rows"].index(row)
    body.nth(at).locator("td").nth(material_at).locator("a").click()
    page.wait_for_url("**/material_cost/list/?drill=**", timeout=10000)
    assert page.url == url + row["drills"]["material"]
    assert record_count(page) == drilled_count(page, url, row["drills"]["material"]) > 0
    assert row["project"]["label"] in page.locator("#drill-bar").inner_text()
    screenshot(page, f"centres-cost-drill-{language}")


@pytest.mark.parametrize("language", ["en", "zh"])
def test_labour_pivot_running_cell_opens_every_record_up_to_its_month(page, language):
    url, page = page
    page.goto(f"{url}/lang/{language}")
    page.goto(f"{url}/reports/labour_by_month_pivot")
    data = fetch_json(page, f"{url}/api/v1/reports/labour_by_month_pivot")
    months = [c["key"] for c in data["pivot_columns"]]
    assert len(months) >= 2
    measures = [c["key"] for c in data["columns"] if c["kind"] != "group"]  # days, cost: a column per month each
    wages = "Wages" if language == "en" else "工资"
    header = [th.inner_text() for th in page.locator("table.report-table thead th").all()]
    assert header[1:1 + len(months) * len(measures):len(measures)] == [f"{c['label']} · {header[1].split(' · ')[1]}" for c in data["pivot_columns"]]
    last_wages = 1 + (len(months) - 1) * len(measures) + measures.index("cost")
    assert header[last_wages] == f"{months[-1]} · {wages}"
    row = max(data["rows"], key=lambda r: sum(1 for c in r["pivot"].values() if c["cost"]))
    at = data["rows"].index(row)
    cell = page.locator("table.report-table tbody tr").nth(at).locator("td").nth(last_wages)
    assert cell.evaluate("td => getComputedStyle(td).textAlign") == "right"
    first = drilled_count(page, url, row["pivot"][months[0]]["drill"])
    cell.locator("a").click()
    page.wait_for_url("**/labour_entry/list/?drill=**", timeout=10000)
    last = record_count(page)
    assert last == drilled_count(page, url, row["pivot"][months[-1]]["drill"]) and last > first  # running
    screenshot(page, f"centres-pivot-drill-{language}")


def test_cash_flow_points_open_their_own_entitys_records(page):
    url, page = page
    page.goto(f"{url}/lang/en")
    page.goto(f"{url}/reports/cash_flow")
    page.locator("#report-chart[data-drawn=true]").wait_for(timeout=10000)
    assert page.locator("#report-chart").evaluate(PAINTED) > 1000
    # the last point of the "Paid" line, in page coordinates
    point = page.evaluate("""() => {
      const canvas = document.getElementById('report-chart'), chart = canvas.chart;
      const index = chart.data.datasets.findIndex(d => d.label === 'Paid');
      const points = chart.getDatasetMeta(index).data, last = points[points.length - 1];
      const box = canvas.getBoundingClientRect();
      return {x: box.left + last.x, y: box.top + last.y, drill: chart.data.datasets[index].drill[points.length - 1]};
    }""")
    assert point["drill"].startswith("/payment/list/?drill=")
    page.mouse.click(point["x"], point["y"])
    page.wait_for_url("**/payment/list/?drill=**", timeout=10000)
    assert page.url == url + point["drill"]
    assert record_count(page) == drilled_count(page, url, point["drill"]) > 0
