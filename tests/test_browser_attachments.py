"""Attachments in a real browser: choose two files on a ticket's detail page, drop another (drag and drop), see
them listed, download one through its link; a refused file is named with its reason."""
from __future__ import annotations

import pytest
from browser import live_browser, log_in, screenshot
from conftest import ADMIN, jwt_headers, make_app
from test_attachments import EXE, PDF, PNG


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    app = make_app(tmp_path_factory, "browser_files", WTF_CSRF_ENABLED=True,
                   PORTAL_FILES_DIR=str(tmp_path_factory.mktemp("browserfiles")))
    client = app.test_client()
    headers = jwt_headers(client)
    customer = client.post("/api/v1/customer/", json={"name": "Files Co"}, headers=headers).json["id"]
    ticket = client.post("/api/v1/ticket/", json={"subject": "Broken printer", "customer": customer}, headers=headers)
    with live_browser(app) as (server, browser):
        yield server, browser, ticket.json["id"]


def test_upload_two_files_drop_one_and_download(live):
    server, browser, ticket = live
    page = browser.new_page(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    log_in(page, server.url, *ADMIN)
    page.goto(f"{server.url}/ticket/show/{ticket}")
    assert page.locator("#portal-files-none").count() == 1

    page.set_input_files("#portal-files-input", [
        {"name": "invoice.pdf", "mimeType": "application/pdf", "buffer": PDF},
        {"name": "photo.png", "mimeType": "image/png", "buffer": PNG}])
    with page.expect_navigation():  # attachments.js posts both, then reloads the page
        page.click("#portal-files-upload")
    links = page.locator("a.portal-file-link")
    assert sorted(links.all_inner_texts()) == ["invoice.pdf", "photo.png"]

    # drag and drop: one good file and one refused (an EXE named .pdf)
    transfer = page.evaluate_handle("""([pdf, exe]) => {
        const data = new DataTransfer();
        data.items.add(new File([new Uint8Array(pdf)], "dropped.pdf", {type: "application/pdf"}));
        data.items.add(new File([new Uint8Array(exe)], "tool.pdf", {type: "application/pdf"}));
        return data;
    }""", [list(PDF + b"% dropped\n"), list(EXE)])
    with page.expect_navigation():
        page.dispatch_event("#portal-dropzone", "drop", {"dataTransfer": transfer})
    assert sorted(page.locator("a.portal-file-link").all_inner_texts()) == ["dropped.pdf", "invoice.pdf", "photo.png"]
    assert "tool.pdf is not an accepted file type" in page.locator("#portal-files-errors").inner_text()
    screenshot(page, "ticket-attachments")

    with page.expect_download() as caught:
        page.locator("a.portal-file-link", has_text="invoice.pdf").click()
    download = caught.value
    assert download.suggested_filename == "invoice.pdf"
    with open(download.path(), "rb") as handle:
        assert handle.read() == PDF
    page.close()
