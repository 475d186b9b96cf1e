"""The duplicate warning in a real browser (issue 16), on the shipped Customer (schemas/crm.yaml), English and
Chinese: a similar name in the same city (the address's parsed city); the add form comes back with the candidate, "Open" leads to it, "Save anyway" saves the record."""
from __future__ import annotations

import re

import pytest
from browser import live_browser, log_in, screenshot
from conftest import ADMIN, jwt_headers, make_app
from sqlalchemy import func, select

from app.portal import portal_of


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    app = make_app(tmp_path_factory, "browser_duplicates", WTF_CSRF_ENABLED=True)
    client = app.test_client()
    made = client.post("/api/v1/customer/", json={"name": "上海张三建筑工程有限公司", "kind": "company",
                                                  "address": "上海市浦东新区世纪大道100号"},
                       headers=jwt_headers(client))
    assert made.status_code == 201, made.json
    with live_browser(app) as (server, browser):
        yield app, server, browser, made.json["id"]


def customers(app, name: str) -> int:
    model = portal_of(app).models["Customer"]
    with app.app_context():
        n = app.appbuilder.session.scalar(select(func.count()).select_from(model).where(model.name == name))
        app.appbuilder.session.rollback()
    return n


@pytest.mark.parametrize("lang, heading, save_anyway, typed", [
    ("en", "Possible duplicates", "Save anyway", "上海张三建筑工程有限责任公司"),
    ("zh", "疑似重复", "仍然保存", "上海张三建筑安装工程有限公司"),
])
def test_add_form_warns_then_saves_anyway(live, lang, heading, save_anyway, typed):
    app, server, browser, existing = live
    page = browser.new_page(viewport={"width": 1280, "height": 1000}, locale="en-US")
    log_in(page, server.url, *ADMIN)
    page.goto(f"{server.url}/lang/{lang}")
    page.goto(f"{server.url}/customer/add")
    page.fill("#name", typed)
    page.fill("#address", "上海市徐汇区漕溪北路88号")  # the rule compares names within one city (address_city)
    page.click("#model_form button[type=submit]:not(#duplicate-save-anyway)")
    warning = page.locator("#duplicate-warning")
    warning.wait_for()
    assert heading in warning.inner_text()
    link = warning.locator(f'a[href="/customer/show/{existing}"]').first
    assert link.inner_text() == "上海张三建筑工程有限公司"
    score = float(warning.locator("#duplicate-candidates tbody td").nth(1).inner_text())
    assert 90 <= score < 100
    assert customers(app, typed) == 0
    assert page.locator("#name").input_value() == typed  # the typed values are kept
    screenshot(page, f"duplicates-warning-{lang}")
    if lang == "zh":  # no English left in the warning
        text = warning.inner_text()
        assert not re.search(r"[A-Za-z]{3,}", text), text
    with page.expect_popup() as opened:
        warning.locator(".duplicate-open").first.click()
    popup = opened.value
    popup.wait_for_load_state()
    assert popup.url.endswith(f"/customer/show/{existing}")
    popup.close()
    button = page.locator("#duplicate-save-anyway")
    assert button.inner_text().strip() == save_anyway
    button.click()
    page.wait_for_url("**/customer/show/**")
    assert customers(app, typed) == 1
    page.close()
