"""The report page's type-ahead group filter in Chromium, en and zh: a link group with many values (here: more
than PORTAL_REPORT_LOOKUP_FROM=5 workers) is searched as the user types, and the chosen worker filters the table."""
from __future__ import annotations

import pytest
from browser import live_browser, log_in, screenshot
from conftest import ADMIN, make_app

from app.demo import load_demo


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    app = make_app(tmp_path_factory, "browser_report_lookup", PORTAL_REPORT_LOOKUP_FROM=5)
    with app.app_context():
        load_demo(app, labour_days=6)
    with live_browser(app) as (server, browser):
        yield server, browser


@pytest.mark.parametrize("language, all_text", [("en", "All"), ("zh", "全部")])
def test_type_ahead_finds_a_worker_and_filters_the_report(live, language, all_text):
    server, browser = live
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    log_in(page, server.url, *ADMIN)
    page.goto(f"{server.url}/lang/{language}")
    rows = page.evaluate("url => fetch(url, {credentials: 'same-origin'}).then(r => r.json())",
                         "/api/v1/reports/labour_by_worker")["rows"]
    assert len(rows) > 5
    page.goto(f"{server.url}/reports/labour_by_worker")
    assert page.locator("table.report-table tbody tr").count() == len(rows)
    assert page.locator("#f_worker option").count() == 1  # the empty choice only: no option per worker
    box = page.locator(".report-lookup .select2-selection")
    assert box.inner_text().strip() == all_text  # the placeholder of a cleared filter, in the reader's language
    worker = rows[-1]["worker"]["label"]
    box.click()
    page.locator(".select2-search__field").fill(worker)
    page.locator(".select2-results__option", has_text=worker).first.click()
    screenshot(page, f"report-lookup-{language}")
    page.click("#report-form button[type=submit]")
    page.wait_for_url("**f_worker=**")
    assert page.locator("table.report-table tbody tr td:nth-child(1)").all_inner_texts() == [worker]
    assert page.locator("#f_worker option:checked").inner_text() == worker
    context.close()
