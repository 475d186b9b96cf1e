"""The `file` field type (Asset.photo of the test-only assets module, {max_mb: 5, types: [jpg, png]}) over HTTP:
forms (upload, keep, remove, refusals), show page, API values and writes, the attachments API with field=,
import/export, and record deletion."""
from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import text

from app.schema import load_portal
from conftest import ASSETS, jwt_headers, login, make_app
from test_attachments import PDF, PNG, blobs, leftovers

JPG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01" + bytes(range(48)) + b"\xff\xd9"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    files = tmp_path_factory.mktemp("fieldfiles")
    app = make_app(tmp_path_factory, "file_field", schema_dir=ASSETS, PORTAL_FILES_DIR=str(files))
    app.files_dir = files
    return app


@pytest.fixture()
def page(app):
    return login(app.test_client())


@pytest.fixture()
def api(app):
    client = app.test_client()
    headers = jwt_headers(client)

    class Api:
        def __getattr__(self, method):
            return lambda url, **kw: getattr(client, method)(url, headers={**headers, **kw.pop("headers", {})}, **kw)
    return Api()


def add_asset(page, code, photo=None, **extra):
    data = {"code": code, "quantity": "1", "condition": "good", **extra}  # extra may override quantity
    if photo is not None:
        data["photo"] = (io.BytesIO(photo[1]), photo[0])
    return page.post("/asset/add", data=data, content_type="multipart/form-data")


def asset_id(api, code) -> int | None:
    result = api.get(f"/api/v1/asset/?q=(filters:!((col:code,opr:eq,value:'{code}')))").json["result"]
    return result[0]["id"] if result else None


def test_form_upload_show_api_value_and_download(app, page, api):
    response = add_asset(page, "A-0001", ("front.png", PNG))
    assert response.status_code == 302, response.data[:2000]
    pk = asset_id(api, "A-0001")
    record = api.get(f"/api/v1/asset/{pk}").json["result"]
    photo = record["photo"]
    assert photo["name"] == "front.png" and photo["size"] == len(PNG) and photo["content_type"] == "image/png"
    assert photo["url"] == f"/api/v1/asset/{pk}/attachments/{photo['id']}"
    assert api.get(photo["url"]).data == PNG
    listed = api.get("/api/v1/asset/").json["result"]
    assert next(r for r in listed if r["id"] == pk)["photo"]["name"] == "front.png"
    shown = page.get(f"/asset/show/{pk}").data.decode()
    assert f'href="/asset/attachment/{photo["id"]}"' in shown and "front.png" in shown
    download = page.get(f"/asset/attachment/{photo['id']}")
    assert download.status_code == 200 and download.data == PNG and download.headers["Content-Type"] == "image/png"
    with app.app_context():  # the row knows its record once the record is saved
        row = app.appbuilder.session.execute(text("SELECT record_id, field FROM portal_attachments WHERE id = :id"),
                                             {"id": photo["id"]}).one()
    assert tuple(row) == (pk, "photo")


def test_form_refuses_wrong_content_and_saves_nothing(app, page, api):
    before = blobs(app.files_dir)
    response = add_asset(page, "A-0002", ("front.png", PDF))
    assert response.status_code == 200
    assert "front.png is not an accepted file type; accepted: jpg, png." in response.data.decode()
    renamed = add_asset(page, "A-0002", ("front.png", JPG))
    assert renamed.status_code == 200 and "front.png does not match its content (a jpg file)" in renamed.data.decode()
    checked_then_refused = add_asset(page, "A-0002", ("front.png", PNG + b"2"), quantity="5000")  # a file that passed
    assert checked_then_refused.status_code == 200 and "Must be at most 1000." in checked_then_refused.data.decode()
    assert asset_id(api, "A-0002") is None
    assert blobs(app.files_dir) == before and not leftovers(app.files_dir)


def test_edit_keeps_replaces_and_removes(app, page, api):
    assert add_asset(page, "A-0003", ("one.png", PNG + b"1")).status_code == 302
    pk = asset_id(api, "A-0003")
    first = api.get(f"/api/v1/asset/{pk}").json["result"]["photo"]

    def edit(**data):
        form = page.get(f"/asset/edit/{pk}").data.decode()
        version = re.search(r'name="row_version"[^>]*value="(\d+)"', form) or re.search(r'value="(\d+)"[^>]*name="row_version"', form)
        payload = {"code": "A-0003", "quantity": "2", "condition": "good", "row_version": version.group(1), **data}
        response = page.post(f"/asset/edit/{pk}", data=payload, content_type="multipart/form-data")
        assert response.status_code == 302, response.data[:3000]
        return api.get(f"/api/v1/asset/{pk}").json["result"]["photo"]

    form = page.get(f"/asset/edit/{pk}").data.decode()
    assert 'type="file" name="photo"' in form and 'name="photo-remove"' in form and "one.png" in form
    assert edit() == first  # no file chosen: kept
    second = edit(photo=(io.BytesIO(JPG), "two.jpg"))
    assert second["name"] == "two.jpg" and second["content_type"] == "image/jpeg" and second["id"] != first["id"]
    assert api.get(first["url"]).status_code == 404  # the replaced file is gone (Asset keeps no history)
    assert edit(**{"photo-remove": "1"}) is None


def test_api_writes_go_through_the_attachments_endpoint(app, api):
    created = api.post("/api/v1/asset/", json={"code": "A-0004", "photo": 5})
    assert created.status_code == 422 and "field=photo" in created.json["message"]["photo"][0]
    pk = api.post("/api/v1/asset/", json={"code": "A-0004"}).json["id"]
    url = f"/api/v1/asset/{pk}/attachments"
    assert api.get(url).status_code == 404  # Asset has no record attachments: only its file field
    assert api.post(url, data={"file": (io.BytesIO(PNG), "a.png")}, content_type="multipart/form-data").status_code == 404
    first = api.post(url, data={"file": (io.BytesIO(PNG + b"api"), "a.png"), "field": "photo"},
                     content_type="multipart/form-data")
    assert first.status_code == 201, first.json
    wrong = api.post(url, data={"file": (io.BytesIO(PDF), "a.pdf"), "field": "photo"}, content_type="multipart/form-data")
    assert wrong.status_code == 415 and "jpg, png" in wrong.json["message"]
    two = api.post(url, data={"file": [(io.BytesIO(PNG), "a.png"), (io.BytesIO(PNG), "b.png")], "field": "photo"},
                   content_type="multipart/form-data")
    assert two.status_code == 400
    assert api.post(url, data={"file": (io.BytesIO(PNG), "a.png"), "field": "code"},
                    content_type="multipart/form-data").status_code == 404
    replaced = api.post(url, data={"file": (io.BytesIO(JPG + b"api"), "b.jpg"), "field": "photo"},
                        content_type="multipart/form-data")
    assert replaced.status_code == 201
    photo = api.get(f"/api/v1/asset/{pk}").json["result"]["photo"]
    assert photo["name"] == "b.jpg" and photo["id"] == replaced.json["result"][0]["id"]
    assert api.get(f"{url}/{first.json['result'][0]['id']}").status_code == 404
    assert api.get(photo["url"]).data == JPG + b"api"
    assert api.delete(photo["url"]).status_code == 200
    assert api.get(f"/api/v1/asset/{pk}").json["result"]["photo"] is None


def test_export_gives_the_name_and_import_ignores_the_column(app, page, api):
    assert add_asset(page, "A-0005", ("export me.png", PNG + b"5")).status_code == 302
    exported = page.get("/asset/export/csv?_flt_0_code=A-0005").data.decode("utf-8-sig")
    assert "Photo" in exported.splitlines()[0] and "export me.png" in exported
    upload = io.BytesIO("Code,Photo\nA-0006,evil.png\n".encode())
    response = api.post("/api/v1/asset/import", data={"file": (upload, "rows.csv")}, content_type="multipart/form-data")
    assert response.status_code == 200, response.json
    assert any(e["field"] == "Photo" for e in response.json["ignored"])
    assert api.get(f"/api/v1/asset/{asset_id(api, 'A-0006')}").json["result"]["photo"] is None


def test_deleting_the_record_removes_its_file(app, page, api):
    assert add_asset(page, "A-0007", ("gone.png", PNG + b"7")).status_code == 302
    pk = asset_id(api, "A-0007")
    photo = api.get(f"/api/v1/asset/{pk}").json["result"]["photo"]
    with app.app_context():
        sha = app.appbuilder.session.execute(text("SELECT sha256 FROM portal_attachments WHERE id = :id"),
                                             {"id": photo["id"]}).scalar()
    blob = next(b for b in blobs(app.files_dir) if b.name == sha)
    import os
    os.utime(blob, (0, 0))
    assert api.delete(f"/api/v1/asset/{pk}").status_code == 200
    assert not blob.exists()
    with app.app_context():
        assert app.appbuilder.session.execute(text("SELECT count(*) FROM portal_attachments WHERE id = :id"),
                                              {"id": photo["id"]}).scalar() == 0


@pytest.mark.parametrize("yaml, code", [
    ("f: {type: file, max_mb: 0.5}", "E532"),
    ("f: {type: file, types: pdf}", "E533"),
    ("f: {type: file, types: [pdf, exe]}", "E534"),
    ("f: {type: file, formula: n}", "E535"),
    ("f: {type: file, unique: true}", "E407"),
    ("f: {type: file, default: x}", "E418"),
])
def test_checker_codes_of_file_options(tmp_path, yaml, code):
    source = f"version: 1\nmodule: m\nentities:\n  W:\n    fields:\n      n: integer\n      {yaml}\n"
    assert code in codes_of(tmp_path, source)


def codes_of(tmp_path, source: str) -> list[str]:
    (tmp_path / "m.yaml").write_text(source, encoding="utf-8")
    return [p.code for p in load_portal(tmp_path)[1]]


def test_file_field_cannot_be_title_or_sorted(tmp_path):
    source = ("version: 1\nmodule: m\nentities:\n  W:\n    title: f\n    order: [f]\n    fields:\n"
              "      f: {type: file, types: [png]}\n")
    assert codes_of(tmp_path, source) == ["E305", "E305"]
    fine = "version: 1\nmodule: m\nentities:\n  W:\n    fields:\n      f: {type: file, required: true, max_mb: 2, types: [jpeg, PNG]}\n"
    assert codes_of(tmp_path, fine) == []
    spec = load_portal(tmp_path)[0]
    assert spec.entity("W").field("f").files.types == ("jpg", "png") and spec.entity("W").field("f").files.max_mb == 2


# -- review findings of issue 13: readonly and required file fields, files of deleted records, names in history --
DEEDS = """\
version: 1
module: deeds
entities:
  Deed:
    title: name
    fields:
      name: {type: string, length: 40, required: true}
      photo: {type: file, types: [png], readonly: true, label: {en: Photo, zh: 照片}}
      scan: {type: file, types: [pdf], required: true, label: {en: Signed scan, zh: 签字扫描件}}
      note: {type: file, types: [pdf]}
    history: true
    attachments: {types: [pdf, png]}
roles:
  Clerk:
    can: {Deed: [read, create, update, delete]}
"""


@pytest.fixture(scope="module")
def deeds(tmp_path_factory):
    schemas = tmp_path_factory.mktemp("deeds_schema")
    (schemas / "deeds.yaml").write_text(DEEDS, encoding="utf-8")
    app = make_app(tmp_path_factory, "deeds", schema_dir=schemas,
                   PORTAL_FILES_DIR=str(tmp_path_factory.mktemp("deedfiles")))
    from test_permissions import make_user
    make_user(app, "clerk", "Clerk")
    return app


def deed_api(app, username="admin"):
    from test_permissions import PASSWORD
    client = app.test_client()
    headers = jwt_headers(client) if username == "admin" else jwt_headers(client, username, PASSWORD)

    class Api:
        def __getattr__(self, method):
            return lambda url, **kw: getattr(client, method)(url, headers={**headers, **kw.pop("headers", {})}, **kw)
    return Api()


def upload(api, pk, name, content, field=None):
    data = {"file": (io.BytesIO(content), name), **({"field": field} if field else {})}
    return api.post(f"/api/v1/deed/{pk}/attachments", data=data, content_type="multipart/form-data")


def test_readonly_file_field_cannot_be_set_or_cleared_through_the_attachments_api(deeds):
    clerk = deed_api(deeds, "clerk")
    pk = clerk.post("/api/v1/deed/", json={"name": "D1"}).json["id"]
    refused = upload(clerk, pk, "p.png", PNG, field="photo")
    assert refused.status_code == 422 and refused.json["message"] == {"photo": ["This field is read-only."]}
    assert clerk.get(f"/api/v1/deed/{pk}").json["result"]["photo"] is None
    admin = deed_api(deeds)
    assert upload(admin, pk, "p.png", PNG, field="photo").status_code == 422  # readonly for everyone
    # a file the field got some other way (a former schema without readonly) cannot be deleted either
    note = upload(clerk, pk, "n.pdf", PDF + b"ro", field="note").json["result"][0]["id"]
    with deeds.app_context():
        session = deeds.appbuilder.session
        session.execute(text("UPDATE portal_attachments SET field = 'photo' WHERE id = :id"), {"id": note})
        session.execute(text("UPDATE deed SET photo = :id, note = NULL WHERE id = :pk"), {"id": note, "pk": pk})
        session.commit()
    url = clerk.get(f"/api/v1/deed/{pk}").json["result"]["photo"]["url"]
    gone = clerk.delete(url)
    assert gone.status_code == 422 and gone.json["message"] == {"photo": ["This field is read-only."]}
    assert clerk.get(f"/api/v1/deed/{pk}").json["result"]["photo"]["id"] == note
    assert clerk.get(url).status_code == 200


def test_required_file_field_api_create_without_it_and_delete_refused(deeds):
    clerk = deed_api(deeds, "clerk")
    created = clerk.post("/api/v1/deed/", json={"name": "D2"})  # an API create cannot send the file
    assert created.status_code == 201, created.json
    pk = created.json["id"]
    assert clerk.get(f"/api/v1/deed/{pk}").json["result"]["scan"] is None
    first = upload(clerk, pk, "s.pdf", PDF + b"req", field="scan")
    assert first.status_code == 201
    url = clerk.get(f"/api/v1/deed/{pk}").json["result"]["scan"]["url"]
    refused = clerk.delete(url)
    assert refused.status_code == 422
    assert refused.json["message"] == {"scan": ["Signed scan is required: upload a replacement with field=scan."]}
    zh = clerk.delete(url, headers={"Accept-Language": "zh"})
    assert zh.json["message"] == {"scan": ["签字扫描件为必填项：请用 field=scan 上传替换文件。"]}
    assert clerk.get(f"/api/v1/deed/{pk}").json["result"]["scan"]["url"] == url and clerk.get(url).status_code == 200
    replaced = upload(clerk, pk, "s2.pdf", PDF + b"req2", field="scan")  # replacing stays possible
    assert replaced.status_code == 201
    assert clerk.get(f"/api/v1/deed/{pk}").json["result"]["scan"]["name"] == "s2.pdf"
    page = login(deeds.test_client())  # the form still requires the file
    response = page.post("/deed/add", data={"name": "D3"}, content_type="multipart/form-data")
    assert response.status_code == 200 and "This field is required." in response.data.decode()


def test_admin_reads_the_files_of_a_deleted_record_others_get_404(deeds):
    clerk = deed_api(deeds, "clerk")
    pk = clerk.post("/api/v1/deed/", json={"name": "D4"}).json["id"]
    aid = upload(clerk, pk, "kept.pdf", PDF + b"kept").json["result"][0]["id"]
    assert clerk.delete(f"/api/v1/deed/{pk}").status_code == 200
    admin = deed_api(deeds)
    listed = admin.get(f"/api/v1/deed/{pk}/attachments")
    assert listed.status_code == 200 and [a["name"] for a in listed.json["result"]] == ["kept.pdf"]
    assert admin.get(f"/api/v1/deed/{pk}/attachments/{aid}").data == PDF + b"kept"
    assert login(deeds.test_client()).get(f"/deed/attachment/{aid}").data == PDF + b"kept"
    assert clerk.get(f"/api/v1/deed/{pk}/attachments").status_code == 404
    assert clerk.get(f"/api/v1/deed/{pk}/attachments/{aid}").status_code == 404
    from test_permissions import PASSWORD
    assert login(deeds.test_client(), "clerk", PASSWORD).get(f"/deed/attachment/{aid}").status_code == 404
    # still no writes on a deleted record, even for Admin
    assert admin.delete(f"/api/v1/deed/{pk}/attachments/{aid}").status_code == 404
    assert upload(admin, pk, "x.pdf", PDF).status_code == 404
    assert admin.get(f"/api/v1/deed/{pk + 1000}/attachments").status_code == 404  # never existed
    assert admin.get("/api/v1/deed/x1/attachments").status_code == 404


def test_history_names_the_files_of_file_fields(deeds):
    clerk = deed_api(deeds, "clerk")
    pk = clerk.post("/api/v1/deed/", json={"name": "D5"}).json["id"]
    assert upload(clerk, pk, "first <b>.pdf", PDF + b"h1", field="scan").status_code == 201
    assert upload(clerk, pk, "second.pdf", PDF + b"h2", field="scan").status_code == 201
    events = clerk.get(f"/api/v1/deed/{pk}/history").json["events"]
    scans = [(c["old"], c["new"]) for e in events for c in e["changes"] if c["field"] == "scan"]
    assert ("first <b>.pdf", "second.pdf") in scans and (None, "first <b>.pdf") in scans, events
    timeline = login(deeds.test_client()).get(f"/deed/timeline/{pk}").data.decode()
    assert "second.pdf" in timeline and "first &lt;b&gt;.pdf" in timeline
