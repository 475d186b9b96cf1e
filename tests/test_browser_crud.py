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
    page.wait_for_url("**/customer/show/**")  # a saved record opens on its detail page
    assert "+86 21 5888 0000" in page.locator("table", has_text="浦东物业有限公司").first.inner_text()
    page.goto(f"{server.url}/customer/list/")
    row = page.locator("table tr", has_text="浦东物业有限公司")
    assert row.count() == 1
    assert "+86 21 5888 0000" in row.inner_text() and "VIP" in row.inner_text()
    screenshot(page, "customer-list")

    row.locator("a[href*='/customer/show/']").first.click()
    page.wait_for_url("**/customer/show/**")
    assert page.locator("text=Follow-up").count() >= 1  # related-record tab
    screenshot(page, "customer-show")
    page.close()


def test_two_pages_editing_one_record_the_second_save_is_refused(live):
    """Two people open the same customer; the first saves; the second gets the message, keeps the input, reloads."""
    server, browser = live
    first, second = (browser.new_context(viewport={"width": 1280, "height": 900}).new_page() for _ in range(2))
    for page in (first, second):
        log_in(page, server.url, *ADMIN)
    first.goto(f"{server.url}/customer/add")
    first.fill("#name", "Locking Co")
    first.click("button[type=submit]")
    first.wait_for_load_state()
    first.goto(f"{server.url}/customer/list/?_flt_0_name=Locking+Co")
    first.locator("table tr", has_text="Locking Co").locator("a[href*='/customer/edit/']").first.click()
    first.wait_for_url("**/customer/edit/**")
    edit_url = first.url
    second.goto(edit_url)

    first.fill("#address", "Saved first")
    first.click("button[type=submit]")
    first.wait_for_load_state()
    second.fill("#address", "Typed second")
    second.click("button[type=submit]")
    second.wait_for_load_state()
    alert = second.locator(".alert-danger", has_text="Changed by admin at").first
    assert "reload and try again" in alert.inner_text()
    assert second.input_value("#address") == "Typed second"  # the user's input is still there
    screenshot(second, "customer-edit-stale")

    alert.locator("a", has_text="Reload").click()
    second.wait_for_load_state()
    assert second.input_value("#address") == "Saved first"
    second.fill("#address", "Second, after reload")
    second.click("button[type=submit]")
    second.wait_for_load_state()
    assert second.locator(".alert-success").count() == 1
    second.goto(edit_url)
    assert second.input_value("#address") == "Second, after reload"
    for page in (first, second):
        page.context.close()
