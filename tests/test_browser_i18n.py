"""Walk the three shipped modules in Chinese in a real browser: no generated text may stay in English."""
from __future__ import annotations

import re

import pytest
from browser import live_browser, log_in, screenshot
from conftest import make_app

from app.demo import load_demo
from app.portal import portal_of

# visible text allowed to stay Latin: brand-free words, formats and things that are data, not UI
ALLOWED = {"CSV", "csv", "xlsx", "Excel", "English", "OpenID", "VIP", "zh", "en", "TK", "PO", "HT", "admin", "ID",
           "pdf", "jpg", "png", "gif", "webp", "docx", "pptx", "zip", "txt", "MB"}  # file kinds and sizes (attachments)
VISIBLE_TEXT = """() => {
  const texts = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode, parent = node.parentElement;
    if (!parent || ['SCRIPT', 'STYLE', 'NOSCRIPT'].includes(parent.tagName)) continue;
    const style = getComputedStyle(parent);
    if (style.display === 'none' || style.visibility === 'hidden') continue;
    const text = node.textContent.trim();
    if (text) texts.push(text);
  }
  document.querySelectorAll('[placeholder], [title]').forEach(el => {
    for (const name of ['placeholder', 'title']) { const v = el.getAttribute(name); if (v && v.trim()) texts.push(v.trim()); }
  });
  return texts;
}"""
LATIN_WORD = re.compile(r"[A-Za-z]{2,}")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    app = make_app(tmp_path_factory, "browser_zh")
    with app.app_context():
        load_demo(app, labour_days=5)
        sm = app.appbuilder.sm
        user = sm.find_user(username="admin")
        user.first_name, user.last_name = "系统", "管理员"
        sm.update_user(user)
    with live_browser(app) as (server, browser):
        yield app, server, browser


def english_left(texts: list[str]) -> list[str]:
    leftovers = []
    for text in texts:
        words = [w for w in LATIN_WORD.findall(text) if w not in ALLOWED]
        if words and not re.fullmatch(r"[\w.+-]+@[\w.-]+", text):
            leftovers.append(text)
    return leftovers


def pages(app) -> list[str]:
    spec = portal_of(app).spec
    urls = ["/", "/reports/"]
    for module in spec.modules:
        urls.append(f"/dashboard/{module.name}")
        for entity in module.entities:
            urls += [f"/{entity.snake}/{page}" for page in ("list/", "add", "show/1", "edit/1", "import")]
    urls += [f"/reports/{r.id}" for r in spec.reports]
    return urls


def test_every_generated_page_is_chinese(live):
    app, server, browser = live
    page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="en-US")
    log_in(page, server.url, "admin", "Admin-pass-1")
    page.goto(f"{server.url}/lang/zh")
    problems = {}
    for url in pages(app):
        response = page.goto(f"{server.url}{url}")
        assert response.status == 200, url
        leftovers = english_left(page.evaluate(VISIBLE_TEXT))
        if leftovers:
            problems[url] = sorted(set(leftovers))
        if url.endswith("/list/") or url.startswith("/dashboard") or url.startswith("/reports/labour"):
            screenshot(page, "zh" + re.sub(r"[^a-z0-9]+", "-", url).rstrip("-"))
    all_left = sorted({t for texts in problems.values() for t in texts})
    assert not problems, " | ".join(all_left)


def test_form_errors_are_chinese_and_language_is_remembered(live):
    app, server, browser = live
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, server.url, "admin", "Admin-pass-1")
    page.goto(f"{server.url}/lang/zh")
    page.goto(f"{server.url}/worker/add")
    page.fill("#name", "新工人")
    page.fill("#phone", "123")
    page.fill("#day_rate", "-5")
    page.click("button[type=submit]")
    page.wait_for_load_state()
    screenshot(page, "zh-worker-add-errors")
    errors = page.locator(".alert-danger").all_inner_texts()
    assert any("不是有效的电话号码" in e for e in errors) and any("不能小于 0" in e for e in errors), errors
    other = browser.new_page()  # a new browser session: the saved choice comes back after sign-in
    log_in(other, server.url, "admin", "Admin-pass-1")
    other.goto(f"{server.url}/customer/list/")
    assert "客户" in other.locator(".panel-title, .panel-heading").first.inner_text()
    other.goto(f"{server.url}/lang/en")
    other.goto(f"{server.url}/customer/list/")
    assert "Customer" in other.locator(".panel-heading").first.inner_text()


def test_import_errors_are_chinese(live, tmp_path):
    app, server, browser = live
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, server.url, "admin", "Admin-pass-1")
    page.goto(f"{server.url}/lang/zh")
    page.goto(f"{server.url}/worker/import")
    path = tmp_path / "workers.csv"
    path.write_text("姓名,工种,日工资,颜色\n张三,木工,abc,红\n", encoding="utf-8")
    page.set_input_files("#file", str(path))
    page.click("#import-preview")
    page.wait_for_load_state()
    text = page.locator("#import-errors").inner_text()
    assert "未知列" in text and "文件未导入" in text
    assert english_left(page.evaluate(VISIBLE_TEXT)) == []
    screenshot(page, "zh-worker-import-errors")
