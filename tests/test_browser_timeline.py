"""The detail page's timeline in Chromium: add a comment and see it (escaped), load older entries."""
from __future__ import annotations

import pytest
from browser import live_browser, log_in, screenshot
from conftest import ADMIN, jwt_headers, make_app


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    app = make_app(tmp_path_factory, "browser_timeline", WTF_CSRF_ENABLED=True)
    client = app.test_client()
    headers = jwt_headers(client)
    customer = client.post("/api/v1/customer/", json={"name": "Timeline Co"}, headers=headers).json["id"]
    ticket = client.post("/api/v1/ticket/", json={"subject": "Pump", "customer": customer}, headers=headers).json["id"]
    for i in range(24):
        client.post(f"/api/v1/ticket/{ticket}/comments", json={"text": f"older note {i}"}, headers=headers)
    with live_browser(app) as (server, browser):
        yield server, browser, ticket


def test_add_a_comment_and_load_older_entries(live):
    server, browser, ticket = live
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, server.url, *ADMIN)
    page.goto(f"{server.url}/ticket/show/{ticket}")
    entries = page.locator("#timeline-entries > li.portal-timeline-entry")
    assert entries.count() == 20

    page.fill("#comment-text", "Checked the <b>pump</b> with @admin")
    page.click("#comment-add")
    page.wait_for_url(f"**/ticket/show/{ticket}**")
    newest = page.locator("#timeline-entries > li.portal-timeline-entry").first
    assert newest.get_attribute("data-kind") == "comment"
    assert newest.locator(".portal-comment-text").inner_text() == "Checked the <b>pump</b> with @admin"  # as text
    assert newest.locator(".portal-comment-text b").count() == 0
    screenshot(page, "timeline-comment")

    page.click(".portal-timeline-older")
    page.wait_for_function("document.querySelectorAll('#timeline-entries > li.portal-timeline-entry').length > 20")
    if page.locator(".portal-timeline-older").count():  # 26 entries: two older pages at most
        page.click(".portal-timeline-older")
        page.wait_for_function("document.querySelectorAll('#timeline-entries > li.portal-timeline-entry').length == 26")
    texts = page.locator("#timeline-entries .portal-comment-text").all_inner_texts()
    assert "older note 0" in texts and len(texts) == 25
    assert page.locator("#timeline-entries .portal-timeline-history").count() == 1  # the ticket was created
    assert page.locator(".portal-timeline-older").count() == 0
    screenshot(page, "timeline-older")
    page.close()
