"""Schema texts and record values full of markup are shown as text on every generated page (headless Chromium)."""
from __future__ import annotations

import pytest
from browser import live_browser, log_in, screenshot
from conftest import ADMIN, ROOT, jwt_headers, make_app

PAYLOAD = "<img src=x onerror=alert('value')>"


@pytest.fixture(scope="module")
def payload_app(tmp_path_factory):
    return make_app(tmp_path_factory, "payloads", schema_dir=ROOT / "tests" / "fixtures" / "payloads")


def test_no_markup_from_schema_or_records_runs_on_any_page(payload_app):
    client = payload_app.test_client()
    headers = jwt_headers(client)
    gadget = client.post("/api/v1/gadget/", json={"name": f"g{PAYLOAD}", "kind": "a", "qty": 3}, headers=headers)
    assert gadget.status_code == 201, gadget.json
    gadget_id = gadget.json["id"]
    part = client.post("/api/v1/part/", json={"code": f"p\"><script>alert('v2')</script>", "gadget": gadget_id}, headers=headers)
    assert part.status_code == 201, part.json
    pages = ["/", f"/gadget/list/", f"/gadget/show/{gadget_id}", "/gadget/add", f"/gadget/edit/{gadget_id}",
             "/gadget/import", "/part/list/", f"/part/show/{part.json['id']}", "/part/add", f"/part/edit/{part.json['id']}",
             "/reports/", "/reports/gadgets_by_kind", "/dashboard/payloads", "/users/list/", "/roles/list/"]
    dialogs, visited = [], []
    with live_browser(payload_app) as (server, browser):
        for language in ("en", "zh"):
            page = browser.new_page()
            page.on("dialog", lambda dialog: (dialogs.append((page.url, dialog.message)), dialog.dismiss()))
            log_in(page, server.url, *ADMIN)
            for path in pages:
                response = page.goto(f"{server.url}{path}{'&' if '?' in path else '?'}_l_={language}")
                assert response.status < 400, (path, response.status)
                page.wait_for_load_state("networkidle")
                visited.append(path)
            # the module label is shown as the text it is, in the menu of every page
            menu = page.locator(".navbar").inner_text()
            assert ("R&D <beta>" if language == "en" else "研发<img") in menu, menu
            page.goto(f"{server.url}/gadget/list/?_l_={language}")
            headers_text = " ".join(page.locator("th").all_inner_texts())
            assert ("Name<img src=x" if language == "en" else "名称<svg") in headers_text
            assert "<img src=x onerror=alert('value')>" in page.content().replace("&lt;", "<").replace("&gt;", ">")
            screenshot(page, f"escaping-{language}")
            page.close()
    assert dialogs == [], dialogs
    assert len(visited) == 2 * len(pages)
