"""Saved views and the home page in a real browser: save the list's filters as a view, see it picked and counted,
and find a record with the navbar's search box."""
from __future__ import annotations

import datetime as dt

import pytest
from browser import live_browser, log_in, screenshot
from conftest import jwt_headers, make_app
from test_permissions import PASSWORD, make_user


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    app = make_app(tmp_path_factory, "browser_views", WTF_CSRF_ENABLED=True)
    agent = make_user(app, "bv_agent", "SupportAgent")
    client = app.test_client()
    h = jwt_headers(client)
    customer = client.post("/api/v1/customer/", json={"name": "Browser views", "kind": "company"}, headers=h).json["id"]
    numbers = []
    for subject, due in [("pump broken", 1), ("valve leaking", -1), ("pump noisy", 9)]:
        made = client.post("/api/v1/ticket/", json={"subject": subject, "customer": customer, "assignee": agent,
                                                    "due_date": str(dt.date.today() + dt.timedelta(days=due))}, headers=h)
        assert made.status_code == 201, made.json
        numbers.append(client.get(f"/api/v1/ticket/{made.json['id']}", headers=h).json["result"]["number"])
    with live_browser(app) as (server, browser):
        yield app, server, browser, numbers


def test_save_view_from_the_list_then_home_counts_and_search(live):
    app, server, browser, numbers = live
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    log_in(page, server.url, "bv_agent", PASSWORD)
    page.goto(f"{server.url}/ticket/list/?_flt_2_subject=pump")
    assert page.locator("tbody tr", has_text="TK-").count() == 2
    page.fill("#save-view-label", "Pumps")
    page.click("#save-view")
    page.wait_for_selector("#active-view")
    assert page.locator("#active-view").inner_text() == "Pumps"
    assert page.locator("tbody tr", has_text="TK-").count() == 2
    page.click("#view-picker button")
    assert page.locator("#view-picker a", has_text="Pumps").is_visible()
    screenshot(page, "saved-view")
    # the home page: my_open_tickets counts the two due within three days, one of them overdue
    page.goto(f"{server.url}/")
    assert page.locator('[data-view="my_open_tickets"] .portal-count').inner_text() == "2"
    assert page.locator('.portal-overdue-card .portal-count').inner_text() == "1"
    page.fill("#quick-search-q", numbers[1][-6:])  # tickets are titled by their number
    page.press("#quick-search-q", "Enter")
    page.wait_for_selector("#search-results")
    screenshot(page, "quick-search")
    page.click("#search-results a")
    page.wait_for_load_state()
    assert "/ticket/show/" in page.url and numbers[1] in page.content()
