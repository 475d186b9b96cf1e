"""Record attachments over real HTTP (FAB test client): content checks, size, scope, locks, downloads, dedup,
deletion with and without history, hostile names. Shipped tickets/crm plus the test-only assets module
(Supplier: attachments without history)."""
from __future__ import annotations

import io
import os
import re
import time
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import text

from conftest import ADMIN, ASSETS, jwt_headers, login, make_app

PASSWORD = "Test-pass-1"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0\0\0\rIHDR" + bytes(range(64))
PDF = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00" + b"\0" * 54 + b"PE\0\0" + b"\0" * 64
HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"


def zipped(**parts) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in parts.items():
            archive.writestr(name.replace("__", "/"), content)
    return buffer.getvalue()


DOCX = zipped(**{"[Content_Types].xml": "<Types/>", "word__document.xml": "<w:document/>", "_rels__.rels": "<r/>"})
PLAIN_ZIP = zipped(**{"notes.txt": "hello", "more.txt": "world"})


def blobs(files_dir: Path) -> list[Path]:
    return sorted(p for p in files_dir.rglob("*") if p.is_file() and ".incoming" not in p.parts)


def leftovers(files_dir: Path) -> list[Path]:
    return [p for p in (files_dir / ".incoming").glob("*")] if (files_dir / ".incoming").exists() else []


def add_user(app, name, role):
    with app.app_context():
        sm = app.appbuilder.sm
        if not sm.find_user(username=name):
            sm.add_user(name, name, "Test", f"{name}@example.com", [sm.find_role(role)], PASSWORD)


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    files = tmp_path_factory.mktemp("files")
    app = make_app(tmp_path_factory, "attach", PORTAL_FILES_DIR=str(files), MAX_CONTENT_LENGTH=64 * 1024 * 1024)
    for name, role in (("sam", "Sales"), ("sue", "Sales"), ("fay", "Finance"), ("agent", "SupportAgent")):
        add_user(app, name, role)
    app.files_dir = files
    return app


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    files = tmp_path_factory.mktemp("assetfiles")
    app = make_app(tmp_path_factory, "attach_assets", schema_dir=ASSETS, PORTAL_FILES_DIR=str(files))
    app.files_dir = files
    return app


class Client:
    def __init__(self, app, user=ADMIN[0], password=ADMIN[1]):
        self.app, self.client = app, app.test_client()
        self.headers = jwt_headers(self.client, user, password)

    def get(self, url, **kw):
        return self.client.get(url, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def post(self, url, **kw):
        return self.client.post(url, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def delete(self, url, **kw):
        return self.client.delete(url, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def upload(self, url, *files, headers=None, **form):
        return self.post(url, content_type="multipart/form-data", headers=headers or {},
                         data={"file": [(io.BytesIO(content), name) for name, content in files], **form})


def new_ticket(client: Client, subject="Printer jam") -> int:
    customer = client.post("/api/v1/customer/", json={"name": f"Cust {subject}"})
    assert customer.status_code == 201, customer.json
    ticket = client.post("/api/v1/ticket/", json={"subject": subject, "customer": customer.json["id"]})
    assert ticket.status_code == 201, ticket.json
    return ticket.json["id"]


def listed(client: Client, url: str) -> list[dict]:
    response = client.get(url)
    assert response.status_code == 200, response.json
    return response.json["result"]


def test_upload_list_download_delete(shipped):
    admin = Client(shipped)
    tid = new_ticket(admin, "Roundtrip")
    url = f"/api/v1/ticket/{tid}/attachments"
    # the browser's content type is ignored: the stored one comes from the bytes
    response = admin.post(url, content_type="multipart/form-data", data={"file": [
        (io.BytesIO(PNG), "photo.png", "text/html"), (io.BytesIO(PDF), "合同 2026.pdf", "application/octet-stream")]})
    assert response.status_code == 201, response.json
    got = listed(admin, url)
    assert [(a["name"], a["size"], a["content_type"], a["uploaded_by"]) for a in got] == [
        ("photo.png", len(PNG), "image/png", "admin"), ("合同 2026.pdf", len(PDF), "application/pdf", "admin")]
    assert got[1]["url"] == f"{url}/{got[1]['id']}" and got[1]["uploaded_on"]

    download = admin.get(got[1]["url"])
    assert download.status_code == 200 and download.data == PDF
    assert download.headers["Content-Type"] == "application/pdf"
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert download.headers["Cache-Control"].startswith("private")
    disposition = download.headers["Content-Disposition"]
    assert disposition.startswith("attachment;")
    assert "filename*=UTF-8''%E5%90%88%E5%90%8C%202026.pdf" in disposition

    assert admin.delete(got[0]["url"]).status_code == 200
    assert [a["name"] for a in listed(admin, url)] == ["合同 2026.pdf"]
    assert admin.get(got[0]["url"]).status_code == 404
    assert len(blobs(shipped.files_dir)) >= 1 and not leftovers(shipped.files_dir)


@pytest.mark.parametrize("name, content, reason", [
    ("scan.pdf", PNG, "does not match its content"),            # a PNG renamed .pdf
    ("invoice.pdf", EXE, "not an accepted file type"),          # an EXE renamed .pdf
    ("cat.jpg", HTML, "not an accepted file type"),             # HTML renamed .jpg
    ("report.docx", PLAIN_ZIP, "is a zip archive, not a"),      # a zip that is not a docx
    ("empty.pdf", b"", "not an accepted file type"),
])
def test_refused_by_content_and_nothing_is_stored(shipped, name, content, reason):
    admin = Client(shipped)
    tid = new_ticket(admin, f"Refuse {name}")
    url = f"/api/v1/ticket/{tid}/attachments"
    before = blobs(shipped.files_dir)
    response = admin.upload(url, ("good.pdf", PDF + name.encode()), (name, content))  # all or none
    assert response.status_code == 415, response.json
    assert name in response.json["message"] and reason in response.json["message"]
    assert listed(admin, url) == []
    assert blobs(shipped.files_dir) == before and not leftovers(shipped.files_dir)


def test_refusal_is_localized(shipped):
    admin = Client(shipped)
    tid = new_ticket(admin, "Localized")
    response = admin.upload(f"/api/v1/ticket/{tid}/attachments?_l_=zh", ("a.pdf", EXE))
    assert response.status_code == 415 and re.search(r"[\u4e00-\u9fff]", response.json["message"])


def test_docx_and_text_kinds(assets):
    admin = Client(assets)
    supplier = admin.post("/api/v1/supplier/", json={"name": "Kinds Ltd"}).json["id"]
    url = f"/api/v1/supplier/{supplier}/attachments"
    gb_csv = "名称,数量\n螺丝,3\n".encode("gb18030")
    response = admin.upload(url, ("spec.docx", DOCX), ("list.csv", gb_csv), ("readme.txt", "héllo\n".encode()),
                            ("bundle.zip", PLAIN_ZIP))
    assert response.status_code == 201, response.json
    assert [a["content_type"] for a in response.json["result"]] == [
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "text/csv", "text/plain",
        "application/zip"]
    nul = admin.upload(url, ("bad.csv", b"a,b\n1,\0\n"))
    assert nul.status_code == 415
    binary = admin.upload(url, ("bad.txt", bytes(range(128, 256)) * 4))
    assert binary.status_code == 415
    renamed = admin.upload(url, ("spec.zip", DOCX))  # a docx is not accepted under a .zip name
    assert renamed.status_code == 415 and ".docx" in renamed.json["message"]


def test_no_file_and_too_many_files(shipped):
    admin = Client(shipped)
    tid = new_ticket(admin, "Empty")
    url = f"/api/v1/ticket/{tid}/attachments"
    assert admin.post(url, content_type="multipart/form-data", data={}).status_code == 400
    many = admin.upload(url, *[(f"f{i}.pdf", PDF) for i in range(21)])
    assert many.status_code == 400 and "20" in many.json["message"]
    assert listed(admin, url) == []


def test_too_large_is_a_clean_413_and_the_request_limit_too(shipped):
    admin = Client(shipped)
    tid = new_ticket(admin, "Large")
    url = f"/api/v1/ticket/{tid}/attachments"
    before = blobs(shipped.files_dir)
    big = PDF + b"0" * (20 * 1024 * 1024)  # one byte-ish past max_mb 20
    response = admin.upload(url, ("big.pdf", big))
    assert response.status_code == 413 and "big.pdf" in response.json["message"] and "20" in response.json["message"]
    assert blobs(shipped.files_dir) == before and not leftovers(shipped.files_dir)
    limit = shipped.config["MAX_CONTENT_LENGTH"]
    shipped.config["MAX_CONTENT_LENGTH"] = 1024 * 1024  # the whole request's limit (PORTAL_MAX_UPLOAD_MB)
    try:
        api = admin.upload(url, ("two.pdf", PDF + b"0" * (2 * 1024 * 1024)))
        assert api.status_code == 413 and "1 MB" in api.json["message"]
        page = login(shipped.test_client()).post(f"/ticket/attachments/{tid}", content_type="multipart/form-data",
                                                 data={"file": (io.BytesIO(PDF + b"0" * (2 * 1024 * 1024)), "two.pdf")})
        assert page.status_code == 413 and b"1 MB" in page.data
        imported = admin.post("/api/v1/customer/import", content_type="multipart/form-data",
                              data={"file": (io.BytesIO(b"name\n" + b"x\n" * 600000), "big.csv")})
        assert imported.status_code == 413  # the import's limit still holds
    finally:
        shipped.config["MAX_CONTENT_LENGTH"] = limit
    assert listed(admin, url) == []


def test_scope_another_salespersons_contract_is_404(shipped):
    sam, sue, admin = Client(shipped, "sam", PASSWORD), Client(shipped, "sue", PASSWORD), Client(shipped)
    own = {}
    for who in (sam, sue):
        customer = who.post("/api/v1/customer/", json={"name": f"Customer of {who.headers['Authorization'][-6:]}"})
        assert customer.status_code == 201, customer.json
        contract = who.post("/api/v1/contract/", json={"name": "Service", "customer": customer.json["id"]})
        assert contract.status_code == 201, contract.json
        own[who] = contract.json["id"]
        assert who.upload(f"/api/v1/contract/{own[who]}/attachments", ("signed.pdf", PDF)).status_code == 201
    sues = f"/api/v1/contract/{own[sue]}/attachments"
    sues_file = listed(sue, sues)[0]
    assert sam.get(sues).status_code == 404
    assert sam.get(sues_file["url"]).status_code == 404
    assert sam.upload(sues, ("mine.pdf", PDF)).status_code == 404
    assert sam.delete(sues_file["url"]).status_code == 404
    # another record's attachment id under one's own record
    assert sam.get(f"/api/v1/contract/{own[sam]}/attachments/{sues_file['id']}").status_code == 404
    assert sam.delete(f"/api/v1/contract/{own[sam]}/attachments/{sues_file['id']}").status_code == 404
    page = login(shipped.test_client(), "sam", PASSWORD)
    assert page.get(f"/contract/attachment/{sues_file['id']}").status_code == 404
    assert page.post(f"/contract/attachment/{sues_file['id']}/delete").status_code == 404
    assert [a["name"] for a in listed(admin, sues)] == ["signed.pdf"]
    # read-only roles read but do not upload or delete
    fay = Client(shipped, "fay", PASSWORD)
    assert fay.get(sues_file["url"]).status_code == 200
    assert fay.upload(sues, ("x.pdf", PDF)).status_code == 403
    assert fay.delete(sues_file["url"]).status_code == 403


def test_locked_ticket_is_409_and_entities_without_attachments_404(shipped):
    admin = Client(shipped)
    tid = new_ticket(admin, "Locked")
    url = f"/api/v1/ticket/{tid}/attachments"
    assert admin.upload(url, ("before.pdf", PDF)).status_code == 201
    with shipped.app_context():  # resolved by the workflow (set here directly: the state is what matters)
        session = shipped.appbuilder.session
        session.execute(text("UPDATE ticket SET status = 'resolved' WHERE id = :id"), {"id": tid})
        session.commit()
    first = listed(admin, url)[0]
    refused = admin.upload(url, ("after.pdf", PDF))
    assert refused.status_code == 409 and "locked" in refused.json["message"]
    assert admin.delete(first["url"]).status_code == 409
    assert admin.get(first["url"]).status_code == 200
    page = login(shipped.test_client())
    assert page.post(f"/ticket/attachment/{first['id']}/delete", follow_redirects=True).status_code == 200
    assert [a["name"] for a in listed(admin, url)] == ["before.pdf"]
    shown = page.get(f"/ticket/show/{tid}")
    assert b"portal-files-form" not in shown.data and b"before.pdf" in shown.data
    customer = admin.post("/api/v1/customer/", json={"name": "No files"}).json["id"]
    assert admin.get(f"/api/v1/customer/{customer}/attachments").status_code == 404
    assert admin.upload(f"/api/v1/customer/{customer}/attachments", ("a.pdf", PDF)).status_code == 404
    assert admin.get("/api/v1/ticket/999999/attachments").status_code == 404
    assert admin.get(f"/api/v1/ticket/{tid}/attachments/abc").status_code == 404


def test_same_content_is_one_blob(shipped):
    admin = Client(shipped)
    content = PDF + b"% dedup\n"
    before = len(blobs(shipped.files_dir))
    for subject in ("Dedup one", "Dedup two"):
        tid = new_ticket(admin, subject)
        assert admin.upload(f"/api/v1/ticket/{tid}/attachments", ("a.pdf", content), ("b.pdf", content)).status_code == 201
    assert len(blobs(shipped.files_dir)) == before + 1
    with shipped.app_context():
        rows = shipped.appbuilder.session.execute(
            text("SELECT count(*) FROM portal_attachments WHERE name IN ('a.pdf', 'b.pdf')")).scalar()
    assert rows == 4


def test_deleting_a_record_removes_its_files_unless_history_keeps_them(shipped, assets):
    # Ticket keeps history: rows and blobs stay
    admin = Client(shipped)
    tid = new_ticket(admin, "Deleted with history")
    new_ticket(admin, "After it")  # SQLite reuses the largest id after a delete: keep the deleted one below it
    kept = PDF + b"% kept by history\n"
    assert admin.upload(f"/api/v1/ticket/{tid}/attachments", ("kept.pdf", kept)).status_code == 201
    count_before = len(blobs(shipped.files_dir))
    assert admin.delete(f"/api/v1/ticket/{tid}").status_code == 200
    with shipped.app_context():
        assert shipped.appbuilder.session.execute(
            text("SELECT count(*) FROM portal_attachments WHERE entity = 'Ticket' AND record_id = :id"), {"id": tid}).scalar() == 1
    assert len(blobs(shipped.files_dir)) == count_before

    # Supplier has no history: API delete and page delete remove rows and blobs; a blob another row uses stays
    admin = Client(assets)
    shared = PDF + b"% shared\n"
    before = set(blobs(assets.files_dir))
    ids = []
    for i, only in enumerate((b"% api only\n", b"% page only\n")):
        sid = admin.post("/api/v1/supplier/", json={"name": f"Gone {i}"}).json["id"]
        assert admin.upload(f"/api/v1/supplier/{sid}/attachments", ("own.pdf", PDF + only), ("shared.pdf", shared)).status_code == 201
        ids.append(sid)
    keeper = admin.post("/api/v1/supplier/", json={"name": "Keeper"}).json["id"]
    assert admin.upload(f"/api/v1/supplier/{keeper}/attachments", ("shared.pdf", shared)).status_code == 201
    new = {blob.read_bytes(): blob for blob in set(blobs(assets.files_dir)) - before}
    assert set(new) == {PDF + b"% api only\n", PDF + b"% page only\n", shared}

    old = time.time() - 10
    for blob in new.values():  # uploaded "a while ago": a blob written this second is left alone
        os.utime(blob, (old, old))
    assert admin.delete(f"/api/v1/supplier/{ids[0]}").status_code == 200
    assert not new[PDF + b"% api only\n"].exists() and new[shared].exists()
    page = login(assets.test_client())
    assert page.post(f"/supplier/delete/{ids[1]}", data={"from": "show"}).status_code == 302
    assert admin.get(f"/api/v1/supplier/{ids[1]}").status_code == 404
    assert not new[PDF + b"% page only\n"].exists() and new[shared].exists()
    with assets.app_context():
        assert assets.appbuilder.session.execute(text(
            "SELECT count(*) FROM portal_attachments WHERE entity = 'Supplier' AND record_id IN (:a, :b)"),
            {"a": ids[0], "b": ids[1]}).scalar() == 0
    assert [a["name"] for a in listed(admin, f"/api/v1/supplier/{keeper}/attachments")] == ["shared.pdf"]

    # a bulk delete handles them the same way
    gone = admin.post("/api/v1/supplier/", json={"name": "Bulk gone"}).json["id"]
    assert admin.upload(f"/api/v1/supplier/{gone}/attachments", ("bulk.pdf", PDF + b"% bulk only\n"),
                        ("shared.pdf", shared)).status_code == 201
    bulk_blob = next(b for b in blobs(assets.files_dir) if b.read_bytes() == PDF + b"% bulk only\n")
    os.utime(bulk_blob, (old, old))
    done = admin.post("/api/v1/supplier/bulk", json={"action": "delete", "ids": [gone]})
    assert done.status_code == 200 and done.json["done"] == [gone], done.json
    assert not bulk_blob.exists() and new[shared].exists()
    assert [a["name"] for a in listed(admin, f"/api/v1/supplier/{keeper}/attachments")] == ["shared.pdf"]


@pytest.mark.parametrize("raw, expected", [
    ("../../etc/passwd.pdf", "passwd.pdf"),
    ("..\\..\\windows\\system32\\x.pdf", "x.pdf"),  # (werkzeug's form parser may drop the backslashes first)
    ("bad\x00name\x07.pdf", "badname.pdf"),
    ("长" * 300 + ".pdf", "长" * 251 + ".pdf"),
    ("/etc/", "file"),
])
def test_hostile_names_are_stored_safely(assets, raw, expected):
    admin = Client(assets)
    sid = admin.post("/api/v1/supplier/", json={"name": f"Names {len(raw)} {raw[:3]!r}"}).json["id"]
    url = f"/api/v1/supplier/{sid}/attachments"
    response = admin.upload(url, (raw, PDF + raw.encode("utf-8", "replace")))
    if expected == "file":  # no extension left: it cannot match the content
        assert response.status_code == 415
        return
    assert response.status_code == 201, response.json
    stored = response.json["result"][0]
    assert stored["name"].endswith(expected) and len(stored["name"]) <= 255
    assert not set(stored["name"]) & {"/", "\\", "\0", "\x07"} and not stored["name"].startswith(".")
    for blob in blobs(assets.files_dir):  # every path is the hash's: ab/cd/<sha256>
        relative = blob.relative_to(assets.files_dir).parts
        assert len(relative) == 3 and re.fullmatch(r"[0-9a-f]{64}", relative[2]) and relative[2][:2] == relative[0]
    assert admin.get(stored["url"]).status_code == 200


def test_detail_page_upload_download_delete(shipped):
    admin = Client(shipped)
    tid = new_ticket(admin, "Page upload")
    page = login(shipped.test_client())
    response = page.post(f"/ticket/attachments/{tid}", content_type="multipart/form-data", data={"file": [
        (io.BytesIO(PDF + b"% page\n"), "report.pdf"), (io.BytesIO(EXE), "tool.pdf")]})
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/ticket/show/{tid}")
    shown = page.get(f"/ticket/show/{tid}").data.decode()
    assert "report.pdf" in shown and "1 file(s) uploaded." in shown and "tool.pdf is not an accepted file type" in shown
    aid = listed(admin, f"/api/v1/ticket/{tid}/attachments")[0]["id"]
    download = page.get(f"/ticket/attachment/{aid}")
    assert download.status_code == 200 and download.data == PDF + b"% page\n"
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    as_json = page.post(f"/ticket/attachments/{tid}", content_type="multipart/form-data",
                        headers={"Accept": "application/json"}, data={"file": (io.BytesIO(HTML), "x.jpg")})
    assert as_json.status_code == 415 and as_json.json == {"stored": 0, "refused": [
        "x.jpg is not an accepted file type; accepted: pdf, jpg, png, xlsx, docx."]}
    assert page.post(f"/ticket/attachment/{aid}/delete").status_code == 302
    assert listed(admin, f"/api/v1/ticket/{tid}/attachments") == []
    other = new_ticket(admin, "Other entity id")
    assert page.get(f"/customer/attachment/{aid}").status_code in (404,)  # attachments of another entity: not found
    assert page.post(f"/ticket/attachments/{other}", data={}).status_code == 302  # no file: told so on the page
