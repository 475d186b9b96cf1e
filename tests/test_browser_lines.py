"""Inline lines in a real browser: add two rows to a purchase order's grid, watch the totals, save; remove a row,
save; a link picker in a row added later."""
from __future__ import annotations

from decimal import Decimal

import pytest
from browser import LiveServer, launch_browser, log_in, screenshot
from conftest import ADMIN, jwt_headers, make_app
from playwright.sync_api import sync_playwright
from sqlalchemy import select

from app.portal import portal_of


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:  # one browser for both apps of this file
        chromium = launch_browser(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory, browser):
    app = make_app(tmp_path_factory, "browser_lines", WTF_CSRF_ENABLED=True)
    client = app.test_client()
    assert client.post("/api/v1/supplier/", json={"name": "宏达五金"}, headers=jwt_headers(client)).status_code == 201
    with LiveServer(app) as server:
        yield app, server, browser


def lines_of_the_order(app) -> list[tuple]:
    models = portal_of(app).models
    line = models["OrderLine"]
    with app.app_context():
        session = app.appbuilder.session
        rows = session.execute(select(line.item, line.qty, line.amount).order_by(line.id)).all()
        session.rollback()
    return [tuple(r) for r in rows]


def test_add_rows_see_totals_save_then_remove_one(live):
    app, server, browser = live
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, server.url, *ADMIN)
    page.goto(f"{server.url}/purchase_order/add")
    page.click("#supplier + .select2 .select2-selection")
    page.locator(".select2-container--open .select2-search__field").type("宏达")
    option = page.locator(".select2-container--open .select2-results__option", has_text="宏达五金")
    option.click()

    page.click(".portal-line-add")
    page.click(".portal-line-add")
    page.fill("input[name='lines-0-item']", "螺丝")
    page.fill("input[name='lines-0-qty']", "10")
    page.fill("input[name='lines-0-unit_price']", "0.35")
    page.fill("input[name='lines-1-item']", "扳手")
    page.fill("input[name='lines-1-qty']", "2.5")
    page.fill("input[name='lines-1-unit_price']", "40")
    totals = page.locator("td.portal-lines-total[data-column='qty']")
    assert totals.inner_text() == "12.500"
    assert page.locator("td.portal-lines-total[data-column='unit_price']").inner_text() == "40.35"
    # each row's amount (a formula) follows what is typed, and so does the Amount total (CSRF on: the token is sent)
    amount = page.locator("tr.portal-line").nth(1).locator(".portal-line-value[data-column='amount']")
    amount.filter(has_text="100.00").wait_for(timeout=5000)
    assert page.locator("tr.portal-line").nth(0).locator(".portal-line-value[data-column='amount']").inner_text() == "3.50"
    page.locator("td.portal-lines-total[data-column='amount']", has_text="103.50").wait_for(timeout=5000)
    page.fill("input[name='lines-1-qty']", "3")
    amount.filter(has_text="120.00").wait_for(timeout=5000)
    page.locator("td.portal-lines-total[data-column='amount']", has_text="123.50").wait_for(timeout=5000)
    screenshot(page, "order-lines-add")
    page.click("button[type=submit]")
    page.wait_for_url("**/purchase_order/show/**")
    assert lines_of_the_order(app) == [("螺丝", Decimal("10"), Decimal("3.50")), ("扳手", Decimal("3"), Decimal("120.00"))]

    page.click("#record-edit")  # the detail page's Edit button
    page.wait_for_url("**/purchase_order/edit/**")
    assert page.locator("td.portal-lines-total[data-column='amount']").inner_text() == "123.50"  # stored amounts
    page.locator("tr.portal-line", has_text="").nth(0).locator(".portal-line-remove").click()
    assert page.locator("tbody tr.portal-line").count() == 1
    assert page.locator("td.portal-lines-total[data-column='qty']").inner_text() == "3.000"
    page.click("button[type=submit]")
    page.wait_for_url("**/purchase_order/show/**")  # back to where the edit started
    assert lines_of_the_order(app) == [("扳手", Decimal("3"), Decimal("120.00"))]
    screenshot(page, "order-lines-after-remove")
    page.close()


PARTS = """\
    version: 1
    module: jobs
    entities:
      Part:
        title: name
        fields:
          name: {type: string, length: 40, required: true}
      Job:
        title: code
        fields:
          code: {type: string, length: 20, required: true}
        lines: [JobPart]
      JobPart:
        fields:
          job: {type: link, to: Job, required: true, on_delete: cascade}
          part: {type: link, to: Part, required: true}
          count: {type: integer, default: 1}
    """


@pytest.fixture(scope="module")
def parts_live(tmp_path_factory, browser):
    folder = tmp_path_factory.mktemp("parts-schema")
    (folder / "jobs.yaml").write_text(PARTS.replace("\n    ", "\n")[4:], encoding="utf-8")
    app = make_app(tmp_path_factory, "browser_line_picker", schema_dir=folder, WTF_CSRF_ENABLED=True)
    client = app.test_client()
    headers = jwt_headers(client)
    for name in ("轴承", "齿轮", "<b>螺母</b>"):
        assert client.post("/api/v1/part/", json={"name": name}, headers=headers).status_code == 201
    with LiveServer(app) as server:
        yield app, server, browser


def test_a_link_cell_of_an_added_row_is_a_type_ahead_picker(parts_live):
    app, server, browser = parts_live
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, server.url, *ADMIN)
    page.goto(f"{server.url}/job/add")
    page.fill("#code", "J-1")
    page.click(".portal-line-add")
    page.click(".portal-line-add")
    for n, text, title in ((0, "齿", "齿轮"), (1, "螺母", "<b>螺母</b>")):
        page.click(f"select[name='lines-{n}-part'] + .select2 .select2-selection")
        page.locator(".select2-container--open .select2-search__field").type(text)
        page.locator(".select2-container--open .select2-results__option", has_text=title).click()
    assert page.evaluate("() => window.__xss") is None
    page.fill("input[name='lines-1-count']", "4")
    assert page.locator("td.portal-lines-total[data-column='count']").inner_text() == "5"
    page.click("button[type=submit]")
    page.wait_for_url("**/job/show/**")
    models = portal_of(app).models
    with app.app_context():
        session = app.appbuilder.session
        rows = session.execute(select(models["Part"].name, models["JobPart"].count)
                               .join(models["JobPart"], models["JobPart"].part_id == models["Part"].id)
                               .order_by(models["JobPart"].id)).all()
        session.rollback()
    assert [tuple(r) for r in rows] == [("齿轮", 1), ("<b>螺母</b>", 4)]
    page.close()
