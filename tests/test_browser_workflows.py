"""Workflows in a real browser: the state badge and transition buttons, the require form (error, then success),
and a locked record without Edit / Delete."""
from __future__ import annotations

import pytest
from browser import live_browser, log_in, screenshot
from conftest import jwt_headers, make_app

PASSWORD = "Flow-pass-1"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    app = make_app(tmp_path_factory, "browser_workflows", WTF_CSRF_ENABLED=True)
    with app.app_context():
        sm = app.appbuilder.sm
        agent = sm.add_user("flow_agent", "Flow", "Agent", "flow_agent@example.com", [sm.find_role("SupportAgent")],
                            PASSWORD)
        agent_id = agent.id
    client = app.test_client()
    headers = jwt_headers(client)
    customer = client.post("/api/v1/customer/", json={"name": "浏览器客户", "kind": "company"}, headers=headers)
    ticket = client.post("/api/v1/ticket/", json={"subject": "水泵漏水", "customer": customer.json["id"],
                                                  "assignee": agent_id}, headers=headers)
    assert ticket.status_code == 201, ticket.json
    with live_browser(app) as (server, browser):
        yield server, browser, ticket.json["id"]


def test_buttons_require_form_and_locked_record(live):
    server, browser, pk = live
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, server.url, "flow_agent", PASSWORD)
    page.goto(f"{server.url}/ticket/show/{pk}")
    assert page.locator("#workflow-state").inner_text().strip() == "Open"
    assert page.locator(".portal-transition").all_inner_texts() == ["Start"]
    assert page.locator("#record-edit").count() == 1
    page.click("#transition-start")  # a tiny form with the CSRF token
    page.wait_for_url(f"**/ticket/show/{pk}")
    assert page.locator("#workflow-state").inner_text().strip() == "In progress"
    assert "Start: done." in page.locator(".alert-success").first.inner_text()
    assert [t.strip() for t in page.locator(".portal-transition").all_inner_texts()] == ["Wait for customer", "Resolve"]
    screenshot(page, "workflow-in-progress")

    page.click("#transition-resolve")  # opens the form of its `require` fields
    page.wait_for_url(f"**/ticket/transition/{pk}/resolve")
    assert page.locator("#resolution").count() == 1 and page.locator("#subject").count() == 0
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert "This field is required." in page.content()
    screenshot(page, "workflow-require-error")
    page.fill("#resolution", "更换了密封圈")
    page.click("button[type=submit]")
    page.wait_for_url(f"**/ticket/show/{pk}")
    assert page.locator("#workflow-state").inner_text().strip() == "Resolved"
    assert "更换了密封圈" in page.content()
    assert page.locator("#record-edit").count() == 0 and page.locator("#record-delete").count() == 0
    assert page.locator(".portal-transition").count() == 0  # close / reopen are the manager's
    screenshot(page, "workflow-resolved-locked")

    page.goto(f"{server.url}/ticket/edit/{pk}")  # typed by hand: refused, back to the record
    page.wait_for_url(f"**/ticket/show/{pk}")
    assert "it can only change through its workflow" in page.locator(".alert-danger").first.inner_text()
    page.close()
