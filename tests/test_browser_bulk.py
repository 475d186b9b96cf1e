"""Bulk actions in a real browser: tick rows (mouse and keyboard), approve them from the action bar and see the result
page; tick the page, then "select all N matching the filter"; a delete asks first."""
from __future__ import annotations

import pytest
from browser import live_browser, log_in, screenshot
from conftest import jwt_headers, make_app
from test_permissions import PASSWORD, make_user

from app.portal import portal_of


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    app = make_app(tmp_path_factory, "browser_bulk", WTF_CSRF_ENABLED=True)
    make_user(app, "bb_finance", "Finance")
    make_user(app, "bb_manager", "Manager")
    client = app.test_client()
    h = jwt_headers(client)
    project = client.post("/api/v1/project/", json={"code": "BB-1", "name": "Bulk site"}, headers=h).json["id"]
    worker = client.post("/api/v1/worker/", json={"name": "Bulk Zhang", "trade": "mason", "day_rate": "300",
                                                   "projects": [project]}, headers=h).json["id"]
    ids = []
    for day in range(1, 13):
        made = client.post("/api/v1/labour_entry/", json={"project": project, "worker": worker, "rate": "300",
                                                          "work_date": f"2025-03-{day:02d}"}, headers=h)
        assert made.status_code == 201, made.json
        ids.append(made.json["id"])
    submitted = client.post("/api/v1/labour_entry/bulk", json={"action": "transition", "transition": "submit",
                                                               "ids": ids[:10]}, headers=h)
    assert submitted.json["refused"] == [], submitted.json
    with live_browser(app) as (server, browser):
        yield app, server, browser, ids


def states(app, ids) -> dict:
    table = portal_of(app).models["LabourEntry"].__table__
    with app.app_context():
        with app.appbuilder.session.get_bind().connect() as conn:
            return dict(conn.execute(table.select().with_only_columns(table.c.id, table.c.state)
                                     .where(table.c.id.in_(ids))).all())


def test_select_rows_approve_then_all_matching_the_filter(live):
    app, server, browser, ids = live
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    log_in(page, server.url, "bb_finance", PASSWORD)
    page.goto(f"{server.url}/labour_entry/list/?_flt_0_state=submitted&psize_LabourEntryView=4"
              "&_oc_LabourEntryView=work_date&_od_LabourEntryView=asc")
    apply = page.locator("#bulk-apply")
    assert apply.is_disabled()
    boxes = page.locator("input.bulk-check")
    assert boxes.count() == 4
    boxes.nth(0).check()
    boxes.nth(1).focus()
    page.keyboard.press("Space")  # the keyboard ticks a row too
    assert page.locator("#bulk-selected").inner_text() == "2 selected"
    page.select_option("#bulk-action", "transition:approve")
    screenshot(page, "bulk-selected")
    apply.click()
    page.wait_for_selector("#bulk-done")
    assert page.locator("#bulk-done").inner_text() == "2 done"
    assert sorted(i for i, s in states(app, ids).items() if s == "approved") == ids[:2]
    # the whole page ticked: every one of the 8 submitted entries matching the filter, not only these 4
    page.click("#bulk-back")
    page.wait_for_selector("#bulk-check-all")
    page.check("#bulk-check-all")
    matching = page.locator("#bulk-select-matching")
    matching.wait_for(state="visible")  # shown by the page's script after the tick: not instant on a loaded machine
    assert "8" in matching.inner_text()
    matching.click()
    assert "8" in page.locator("#bulk-selected").inner_text()
    page.select_option("#bulk-action", "transition:approve")
    apply.click()
    page.wait_for_selector("#bulk-done")
    assert page.locator("#bulk-done").inner_text() == "8 done"
    screenshot(page, "bulk-result")
    assert {s for i, s in states(app, ids).items() if i in ids[:10]} == {"approved"}


def test_delete_asks_first_and_lists_refused_rows(live):
    app, server, browser, ids = live
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    log_in(page, server.url, "bb_manager", PASSWORD)
    page.goto(f"{server.url}/labour_entry/list/?_oc_LabourEntryView=work_date&_od_LabourEntryView=asc")
    page.locator(f"input.bulk-check[value='{ids[0]}']").check()  # approved: locked
    page.locator(f"input.bulk-check[value='{ids[11]}']").check()  # a draft
    page.select_option("#bulk-action", "delete")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#bulk-apply")
    assert page.locator("#bulk-done").count() == 0 and len(states(app, ids)) == 12  # said no: nothing happened
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#bulk-apply")
    page.wait_for_selector("#bulk-done")
    assert page.locator("#bulk-done").inner_text() == "1 done"
    refused = page.locator("#bulk-refused tbody tr")
    assert refused.count() == 1 and "Approved" in refused.inner_text()
    assert refused.locator("a").get_attribute("href").endswith(f"/labour_entry/show/{ids[0]}")
    assert ids[11] not in states(app, ids)
