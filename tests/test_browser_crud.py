"""What a back-office user does in a real browser: log in, add a customer, fix an error, find it again."""
from __future__ import annotations

import pytest
from browser import live_browser, log_in, screenshot
from conftest import ADMIN, make_app


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    app = make_app(tmp_path_factory, "browser", WTF_CSRF_ENABLED=True)
    with live_browser(app) as (server, browser):
        yield server, browser


def test_add_customer_with_a_mistake_then_fix_it(live):
    server, browser = live
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, server.url, *ADMIN)
    page.goto(f"{server.url}/customer/add")
    page.fill("#name", "浦东物业有限公司")
    page.fill("#phone", "12345")
    page.select_option("#level", "vip")
    page.click("button[type=submit]")
    error = page.locator(".alert-danger").first
    assert "Not a valid phone number." in error.inner_text()
    screenshot(page, "customer-add-error")

    page.fill("#phone", "021 5888 0000")
    page.click("button[type=submit]")
    page.wait_for_url("**/customer/list/**")
    row = page.locator("table tr", has_text="浦东物业有限公司")
    assert row.count() == 1
    assert "+86 21 5888 0000" in row.inner_text() and "VIP" in row.inner_text()
    screenshot(page, "customer-list")

    row.locator("a[href*='/customer/show/']").first.click()
    page.wait_for_url("**/customer/show/**")
    assert page.locator("text=Follow-up").count() >= 1  # related-record tab
    screenshot(page, "customer-show")
    page.close()
