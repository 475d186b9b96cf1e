"""Type-ahead pickers in a real browser: pick a link on the add form, save, filter the list by it; paging, escaping, Chinese."""
from __future__ import annotations

import datetime as dt
import re

import pytest
from browser import live_browser, log_in, screenshot
from conftest import ADMIN, jwt_headers, make_app
from app.portal import portal_of

XSS_NAME = "<img src=x onerror=window.__xss=1>"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    app = make_app(tmp_path_factory, "browser_lookups", WTF_CSRF_ENABLED=True)
    client = app.test_client()
    h = jwt_headers(client)
    for code, name in (("E-1", "东区工地"), ("W-1", "西区工地")):
        assert client.post("/api/v1/project/", json={"code": code, "name": name}, headers=h).status_code == 201
    with app.app_context():
        table = portal_of(app).models["Worker"].__table__
        now = dt.datetime.now()
        names = [f"瓦工{n:02d}" for n in range(1, 46)] + [XSS_NAME]
        with app.appbuilder.session.get_bind().begin() as conn:
            conn.execute(table.insert(), [{"name": name, "trade": "mason", "day_rate": 300, "active": True,
                                           "created_on": now, "changed_on": now} for name in names])
            pairs = portal_of(app).models["Worker"].projects.property.secondary  # on both sites (the worker filter)
            conn.execute(pairs.insert(), [{"left_id": w, "right_id": p} for w in range(1, len(names) + 1) for p in (1, 2)])
    other = {"work_date": "2026-11-01", "worker": 1, "project": 2, "hours": "8", "days": "1", "rate": "300"}
    assert client.post("/api/v1/labour_entry/", json=other, headers=h).status_code == 201  # 瓦工01 at 西区工地
    with live_browser(app) as (server, browser):
        yield server, browser


def open_picker(page, select_id: str):
    page.click(f"#{select_id} + .select2 .select2-selection")
    return page.locator(".select2-container--open .select2-search__field")


def results(page):
    return page.locator(".select2-container--open .select2-results__option:not(.loading-results)")


def test_pick_links_on_the_add_form_then_filter_the_list_by_one(live):
    server, browser = live
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, server.url, *ADMIN)
    page.goto(f"{server.url}/labour_entry/add")
    assert page.locator("#worker option").count() == 1  # only the empty choice: nothing loaded up front

    search = open_picker(page, "worker")
    search.type("瓦工3")
    page.wait_for_function("() => [...document.querySelectorAll('.select2-results__option')].some(o => o.textContent === '瓦工37')")
    assert results(page).all_inner_texts() == [f"瓦工3{d}" for d in range(10)]
    results(page).filter(has_text="瓦工37").click()
    assert page.locator("#select2-worker-container").inner_text().endswith("瓦工37")

    open_picker(page, "project").type("东区")
    page.wait_for_function("() => [...document.querySelectorAll('.select2-results__option')].some(o => o.textContent === '东区工地')")
    results(page).filter(has_text="东区工地").click()
    page.fill("#rate", "300")
    screenshot(page, "lookup-add-form")
    page.click("button[type=submit]")
    page.wait_for_url("**/labour_entry/show/**")
    page.goto(f"{server.url}/labour_entry/list/")
    row = page.locator("table tr", has_text="瓦工37")
    assert row.count() == 1 and "东区工地" in row.inner_text()
    assert page.locator("tr:has(a[href*='/labour_entry/show/'])").count() == 2

    # filter the list by a worker through the type-ahead
    page.click("a.accordion-toggle[href='#accordion1_href']")
    page.click("#filter_form button.dropdown-toggle")
    page.click("a.filter[name=worker]")
    filter_select = page.locator("#filter_form select.portal-lookup")
    filter_select.locator("xpath=following-sibling::span[contains(@class,'select2')][1]").locator(".select2-selection").click()
    page.locator(".select2-container--open .select2-search__field").type("瓦工37")
    page.wait_for_function("() => [...document.querySelectorAll('.select2-results__option')].some(o => o.textContent === '瓦工37')")
    results(page).filter(has_text="瓦工37").click()
    page.click("#filter_form button[type=submit]")
    page.wait_for_url(re.compile(r".*_flt_0_worker=\d+.*"))
    listed = page.locator("tr:has(a[href*='/labour_entry/show/'])")
    assert listed.count() == 1 and "瓦工37" in listed.inner_text()
    page.click("a.accordion-toggle[href='#accordion1_href']")
    assert page.locator("#filter_form .select2-selection__rendered").last.inner_text().endswith("瓦工37")
    screenshot(page, "lookup-list-filtered")
    page.close()


def test_picker_pages_on_scroll_and_shows_titles_as_text(live):
    server, browser = live
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, server.url, *ADMIN)
    page.goto(f"{server.url}/labour_entry/add")
    open_picker(page, "worker")
    page.wait_for_function("() => document.querySelectorAll('.select2-results__option[aria-selected]').length === 20")
    page.locator(".select2-results__options").evaluate("list => { list.scrollTop = list.scrollHeight; list.dispatchEvent(new Event('scroll')); }")
    page.wait_for_function("() => document.querySelectorAll('.select2-results__option[aria-selected]').length === 40")
    page.keyboard.press("Escape")

    open_picker(page, "worker").type("onerror")
    page.wait_for_function("() => document.querySelectorAll('.select2-results__option[aria-selected]').length === 1")
    assert results(page).inner_text() == XSS_NAME  # shown as text ...
    assert page.locator(".select2-results img").count() == 0  # ... never as markup
    results(page).first.click()
    assert page.evaluate("window.__xss") is None
    assert page.locator(".select2-selection img").count() == 0
    page.close()


def test_picker_speaks_chinese(live):
    server, browser = live
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, server.url, *ADMIN)
    page.goto(f"{server.url}/lang/zh")
    page.goto(f"{server.url}/labour_entry/add")
    # an empty picker's placeholder (approved_by is a workflow stamp now, not on the form: the project picker)
    assert page.locator("#select2-project-container").inner_text().strip() == "输入以搜索"
    open_picker(page, "worker").type("没有这个人")
    message = page.locator(".select2-container--open .select2-results__message")
    message.wait_for()
    assert not re.search(r"[A-Za-z]{2,}", message.inner_text()), message.inner_text()
    screenshot(page, "zh-lookup-no-results")
    page.close()
