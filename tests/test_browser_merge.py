"""Merging duplicates in a real browser (issue 16), in English and in Chinese: the detail page's "Merge…" picker,
the choice page (values side by side, masked for a role that may not see them, a swap link), the confirmation, the
merged record and its timeline."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from browser import live_browser, log_in, screenshot
from conftest import jwt_headers, make_app
from test_browser_i18n import english_left, VISIBLE_TEXT

FIXTURE = Path(__file__).parent / "fixtures" / "merge"
PASSWORD = "Merge-pass-1"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    app = make_app(tmp_path_factory, "browser_merge", schema_dir=FIXTURE, WTF_CSRF_ENABLED=True)
    with app.app_context():
        sm = app.appbuilder.sm
        sam = sm.add_user("sam", "山姆", "销售", "sam@example.com", [sm.find_role("Sales")], PASSWORD).id
    client = app.test_client()
    headers = jwt_headers(client)

    def create(entity, **values):
        response = client.post(f"/api/v1/{entity}/", json=values, headers=headers)
        assert response.status_code == 201, response.json
        return response.json["id"]

    def record(pk):
        return client.get(f"/api/v1/company/{pk}", headers=headers)

    ids = {}
    for lang in ("en", "zh"):
        ids[lang] = (create("company", name=f"张三建筑 {lang}", code=f"A-{lang}", phone="13800138000", owner=sam),
                     create("company", name=f"张三 <b>建筑</b> {lang}", code=f"B-{lang}", phone="13900139000",
                            email=f"b-{lang}@example.com", secret="s3cret", owner=sam))
        create("contact", company=ids[lang][1], name="李四")
    with live_browser(app) as (server, browser):
        yield server, browser, ids, record


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_merge_from_the_detail_page(live, lang):
    server, browser, ids, record = live
    survivor, loser = ids[lang]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, server.url, "sam", PASSWORD)
    page.goto(f"{server.url}/lang/{lang}")
    page.goto(f"{server.url}/company/show/{survivor}")
    # the picker finds the duplicate by its title (Select2 over /company/merge_lookup/<id>)
    page.click("#merge-panel .select2-selection")
    page.fill(".select2-search__field", f"<b>建筑</b> {lang}")
    option = page.locator(".select2-results__option", has_text=f"张三 <b>建筑</b> {lang}")
    option.wait_for()
    option.click()
    page.click("#merge-open")
    page.wait_for_url(re.compile(rf".*/company/merge/{survivor}\?loser={loser}$"))
    texts = page.evaluate(VISIBLE_TEXT)
    if lang == "zh":
        assert english_left([t for t in texts if "张三" not in t and "@" not in t]) == []
        assert page.locator("#merge-submit").inner_text().strip() == "合并"
    else:
        assert page.locator("#merge-submit").inner_text().strip() == "Merge"
    # masked for Sales on both sides, the hidden field not there at all; the title shown as text, not as HTML
    assert page.locator("tr[data-field=phone] .merge-survivor .merge-value").inner_text() == "138****8000"
    assert page.locator("tr[data-field=phone] .merge-loser .merge-value").inner_text() == "139****9000"
    assert page.locator("tr[data-field=secret]").count() == 0 and "s3cret" not in page.content()
    assert page.locator("#merge-loser-head b").count() == 0
    # only differing fields get a radio; the survivor's value is preselected
    assert page.locator("tr[data-field=parent] input[type=radio]").count() == 0
    assert page.locator("#merge-code-survivor").is_checked()
    screenshot(page, f"merge-page-{lang}")
    # the swap link makes the other one the survivor
    page.click("#merge-swap")
    page.wait_for_url(re.compile(rf".*/company/merge/{loser}\?loser={survivor}$"))
    page.go_back()
    page.wait_for_url(re.compile(rf".*/company/merge/{survivor}\?loser={loser}$"))
    page.check("#merge-code-loser")
    page.check("#merge-email-loser")
    page.click("#merge-submit")  # the confirmation box is required: the browser refuses to send without it
    assert page.url.endswith(f"/company/merge/{survivor}?loser={loser}")
    page.check("#merge-confirm")
    page.click("#merge-submit")
    page.wait_for_url(f"**/company/show/{survivor}")
    flash = page.locator(".alert-success").first.inner_text()
    assert (f"已将 张三 <b>建筑</b> {lang}（#{loser}）合并到本记录" if lang == "zh"
            else f"Merged 张三 <b>建筑</b> {lang} (#{loser}) into this record.") in flash
    merged = record(survivor).json["result"]
    assert merged["code"] == f"B-{lang}" and merged["email"] == f"b-{lang}@example.com" and merged["contacts"] == 1
    assert record(loser).status_code == 404
    assert page.locator(".portal-timeline-history").first.locator(".portal-attachment-link").count() == 0
    timeline = page.locator(".portal-timeline-history").first.inner_text()
    assert (f"将 张三 <b>建筑</b> {lang} (#{loser}) 合并到本记录" if lang == "zh" else "into this record") in timeline
    screenshot(page, f"merge-done-{lang}")
    page.close()
