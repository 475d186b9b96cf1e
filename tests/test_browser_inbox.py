"""The inbox in Chromium: the navbar bell counts unread notifications; mark one read, then all; the home card."""
from __future__ import annotations

import pytest
from browser import live_browser, log_in, screenshot
from conftest import jwt_headers, make_app

PASSWORD = "Inbox-pass-1"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    app = make_app(tmp_path_factory, "browser_inbox", WTF_CSRF_ENABLED=True)
    with app.app_context():
        sm = app.appbuilder.sm
        agent = sm.add_user("inbox_agent", "Inbox", "Agent", "inbox_agent@example.com", [sm.find_role("SupportAgent")],
                            PASSWORD)
        app.appbuilder.session.commit()
        agent_id = agent.id
    client = app.test_client()
    headers = jwt_headers(client)
    customer = client.post("/api/v1/customer/", json={"name": "Bell Co"}, headers=headers).json["id"]
    for subject in ("Pump <i>one</i>", "Pump two", "Pump three"):
        response = client.post("/api/v1/ticket/", json={"subject": subject, "customer": customer, "assignee": agent_id},
                               headers=headers)
        assert response.status_code == 201, response.json
    with live_browser(app) as (server, browser):
        yield server, browser


def test_bell_counts_and_inbox_marks_read(live):
    server, browser = live
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, server.url, "inbox_agent", PASSWORD)
    page.goto(f"{server.url}/")
    page.wait_for_selector("#portal-bell-count[data-loaded]", state="attached")
    assert page.locator("#portal-bell-count").inner_text().strip() == "3"
    assert page.locator("#home-inbox .list-group-item").count() == 3
    page.click("#portal-bell")
    page.wait_for_url("**/inbox/**")
    items = page.locator(".inbox-item")
    assert items.count() == 3 and page.locator(".inbox-unread").count() == 3
    assert "Pump <i>one</i>" in page.locator("#portal-inbox").inner_text()  # escaped, shown as text
    assert page.locator("#portal-inbox i").count() == 0
    screenshot(page, "inbox-unread")
    page.locator(".inbox-unread .inbox-read").first.click()
    page.wait_for_load_state()
    assert page.locator(".inbox-unread").count() == 2
    page.wait_for_selector("#portal-bell-count[data-loaded]", state="attached")
    assert page.locator("#portal-bell-count").inner_text().strip() == "2"
    page.click("#inbox-read-all")
    page.wait_for_load_state()
    assert page.locator(".inbox-unread").count() == 0
    page.wait_for_selector("#portal-bell-count[data-loaded]", state="attached")
    assert not page.locator("#portal-bell-count").is_visible()
    page.locator(".inbox-item a").first.click()
    page.wait_for_url("**/ticket/show/**")
    page.goto(f"{server.url}/inbox/?_l_=zh")
    assert "全部标为已读" in page.locator("#portal-inbox").inner_text()
    screenshot(page, "inbox-read")
    page.close()
