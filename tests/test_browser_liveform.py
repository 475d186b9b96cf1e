"""The live add form in a real browser: formulas update as the user types, a chosen worker fills the rate, and
the worker picker follows the project (labour: worker filter {active: true, projects: $record.project})."""
from __future__ import annotations

from decimal import Decimal

import pytest
from browser import live_browser, log_in, screenshot
from conftest import ADMIN, jwt_headers, make_app
from sqlalchemy import select

from app.portal import portal_of


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    app = make_app(tmp_path_factory, "browser_liveform", WTF_CSRF_ENABLED=True)
    client = app.test_client()
    h = jwt_headers(client)
    ids = {}
    for code, name in (("E-1", "东区工地"), ("W-1", "西区工地")):
        ids[name] = client.post("/api/v1/project/", json={"code": code, "name": name}, headers=h).json["id"]
    for name, rate, active, sites in (("甲师傅", "300", True, ["东区工地"]), ("乙师傅", "450", True, ["西区工地"]),
                                      ("丙师傅", "500", False, ["东区工地", "西区工地"]),
                                      ("丁师傅", "520", True, ["东区工地", "西区工地"])):
        made = client.post("/api/v1/worker/", json={"name": name, "trade": "mason", "day_rate": rate, "active": active,
                                                    "projects": [ids[s] for s in sites]}, headers=h)
        assert made.status_code == 201, made.json
    with live_browser(app) as (server, browser):
        yield app, server, browser


def open_picker(page, select_id: str):
    page.click(f"#{select_id} + .select2 .select2-selection")
    return page.locator(".select2-container--open .select2-search__field")


def choices(page) -> list[str]:
    page.wait_for_function("() => !document.querySelector('.select2-container--open .loading-results')")
    return page.locator(".select2-container--open .select2-results__option[aria-selected]").all_inner_texts()


def pick(page, select_id: str, title: str) -> None:
    open_picker(page, select_id).type(title)
    page.wait_for_function("t => [...document.querySelectorAll('.select2-results__option')].some(o => o.textContent === t)", arg=title)
    page.locator(".select2-container--open .select2-results__option", has_text=title).click()


def test_typing_and_choosing_a_worker_update_the_form_live(live):
    app, server, browser = live
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    log_in(page, server.url, *ADMIN)
    page.goto(f"{server.url}/labour_entry/add")
    amount = page.locator("#amount")
    assert amount.get_attribute("readonly") is not None
    pick(page, "project", "东区工地")
    open_picker(page, "worker")
    assert choices(page) == ["丁师傅", "甲师傅"]  # active workers of this project only
    page.keyboard.press("Escape")
    pick(page, "worker", "甲师傅")
    page.wait_for_function("() => document.querySelector('#rate').value === '300.00'")  # filled from the worker
    page.wait_for_function("() => document.querySelector('#amount').value === '300.00'")
    page.fill("#days", "")
    page.locator("#days").type("2")
    page.wait_for_function("() => document.querySelector('#amount').value === '600.00'")  # as the user types
    page.fill("#rate", "")
    page.locator("#rate").type("310")  # the filled rate stays editable
    page.wait_for_function("() => document.querySelector('#amount').value === '620.00'")
    screenshot(page, "liveform-add")
    page.click("button[type=submit]")
    page.wait_for_url("**/labour_entry/show/**")
    with app.app_context():
        model = portal_of(app).models["LabourEntry"]
        stored = app.appbuilder.session.execute(select(model.rate, model.amount)).all()
        app.appbuilder.session.rollback()
    assert stored == [(Decimal("310.00"), Decimal("620.00"))]
    page.close()


def test_changing_the_project_refreshes_the_worker_picker(live):
    app, server, browser = live
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    log_in(page, server.url, *ADMIN)
    page.goto(f"{server.url}/labour_entry/add")
    pick(page, "project", "西区工地")
    pick(page, "worker", "丁师傅")  # on both sites
    pick(page, "project", "东区工地")
    page.wait_for_timeout(600)
    assert page.locator("#worker").input_value() != ""  # still valid: kept
    assert page.locator("#select2-worker-container").inner_text().endswith("丁师傅")
    pick(page, "project", "西区工地")
    pick(page, "worker", "乙师傅")  # only on 西区
    page.wait_for_function("() => document.querySelector('#rate').value === '450.00'")
    pick(page, "project", "东区工地")
    page.wait_for_function("() => document.querySelector('#worker').value === ''")  # no longer passes: cleared
    open_picker(page, "worker")
    assert choices(page) == ["丁师傅", "甲师傅"]
    screenshot(page, "liveform-filtered-picker")
    page.close()
