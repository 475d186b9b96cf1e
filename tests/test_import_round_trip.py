"""Import round-trip (issue 16): an exported CSV/XLSX, edited, imported back as an update keyed by `id`, a unique
field or a unique_together set; the preview classifies rows (create / update with old → new / unchanged / error)
before anything is written; only created and changed rows are written. SQLite and PostgreSQL."""
from __future__ import annotations

import csv
import io

import pytest
from openpyxl import load_workbook

from conftest import jwt_headers, login, make_app
from test_permissions import PASSWORD, make_user


@pytest.fixture(scope="module")
def trip(tmp_path_factory):
    app = make_app(tmp_path_factory, "roundtrip")
    sales = make_user(app, "rt_sales", "Sales")
    other = make_user(app, "rt_sales2", "Sales")
    make_user(app, "rt_foreman", "SiteForeman")
    client = app.test_client()
    h = jwt_headers(client)
    ids = {}
    for n in range(6):
        ids[n] = client.post("/api/v1/customer/", headers=h, json={
            "name": f"往返客户{n}", "phone": f"1390000000{n}", "level": "normal", "credit_limit": "100.50",
            "owner": sales if n < 4 else other, "next_follow_up": "2026-05-0{}".format(n + 1)}).json["id"]
    return app, client, h, ids


def read_csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


def csv_upload(rows) -> io.BytesIO:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return io.BytesIO(("\ufeff" + buffer.getvalue()).encode("utf-8"))


def do_import(client, h, entity, body: io.BytesIO, name: str, key: str, dry_run: bool):
    return client.post(f"/api/v1/{entity}/import", headers=h, content_type="multipart/form-data",
                       data={"file": (body, name), "key": key, "dry_run": "true" if dry_run else "false"})


def customers(client, h) -> dict:
    result = client.get("/api/v1/customer/", headers=h, query_string={"q": "(page_size:100)"}).json["result"]
    return {r["id"]: r for r in result}


def test_csv_export_edited_and_imported_back_by_id(trip):
    app, client, h, ids = trip
    page = login(app.test_client())
    rows = read_csv(page.get("/customer/export/csv?_oc_CustomerView=name&_od_CustomerView=asc").data)
    header = rows[0]
    assert header[0] == "ID" and "Name" in header and "Customer code" in header
    by_id = {int(r[0]): r for r in rows[1:]}
    level, name, limit = header.index("Level"), header.index("Name"), header.index("Credit limit")
    by_id[ids[1]][level] = "VIP"
    by_id[ids[2]][name] = "往返客户2改"
    by_id[ids[2]][limit] = "200"
    before = customers(client, h)
    preview = do_import(client, h, "customer", csv_upload(rows), "c.csv", "id", dry_run=True)
    assert preview.status_code == 200, preview.json
    body = preview.json
    assert (body["created"], body["updated"], body["unchanged"], body["written"]) == (0, 2, len(rows) - 3, False)
    changes = {p["values"]["ID"]: p["changes"] for p in body["preview"] if p["action"] == "update"}
    assert changes == {str(ids[1]): {"Level": {"old": "Normal", "new": "VIP"}},
                       str(ids[2]): {"Name": {"old": "往返客户2", "new": "往返客户2改"},
                                     "Credit limit": {"old": "100.50", "new": "200.00"}}}
    assert any(i["field"] == "Customer code" for i in body["ignored"])
    assert customers(client, h) == before, "a preview writes nothing"
    done = do_import(client, h, "customer", csv_upload(rows), "c.csv", "id", dry_run=False)
    assert done.status_code == 200 and done.json["written"] and done.json["updated"] == 2, done.json
    after = customers(client, h)
    for pk, record in after.items():
        if pk == ids[1]:
            assert record["level"] == "vip" and record["row_version"] == before[pk]["row_version"] + 1
            assert {k: v for k, v in record.items() if k not in ("level", "row_version", "changed_on")} == \
                {k: v for k, v in before[pk].items() if k not in ("level", "row_version", "changed_on")}
        elif pk == ids[2]:
            assert (record["name"], record["credit_limit"]) == ("往返客户2改", "200.00")
        else:
            assert record == before[pk], "an unchanged row is not written"
    # the same file again: nothing to do
    again = do_import(client, h, "customer", csv_upload(rows), "c.csv", "id", dry_run=False)
    assert (again.json["updated"], again.json["unchanged"]) == (0, len(rows) - 1)
    assert customers(client, h) == after


def test_xlsx_in_chinese_by_unique_field_with_a_new_row(trip):
    app, client, h, ids = trip
    page = login(app.test_client())
    book = load_workbook(io.BytesIO(page.get("/customer/export/xlsx?_l_=zh").data))
    sheet = book.active
    header = [c.value for c in sheet[1]]
    assert header[:3] == ["ID", "名称", "类型"]
    phone = header.index("电话")
    for row in sheet.iter_rows(min_row=2):
        if row[phone].value == "'+8613900000003":
            row[header.index("客户等级")].value = "潜在客户"
    sheet.append([None, "往返新客户", "企业", None, "13911112222"])
    out = io.BytesIO()
    book.save(out)
    data = out.getvalue()
    preview = do_import(client, h, "customer", io.BytesIO(data), "c.xlsx", "phone", dry_run=True)
    assert preview.status_code == 200, preview.json
    assert (preview.json["created"], preview.json["updated"]) == (1, 1)
    actions = sorted((p["action"], tuple(p.get("changes", {}))) for p in preview.json["preview"])
    assert actions == [("create", ()), ("update", ("Level",))]
    done = do_import(client, h, "customer", io.BytesIO(data), "c.xlsx", "phone", dry_run=False)
    assert done.status_code == 200 and done.json["written"], done.json
    records = customers(client, h)
    assert records[ids[3]]["level"] == "potential"
    assert [r["name"] for r in records.values()].count("往返新客户") == 1


def test_unique_together_key_and_the_page_preview(trip):
    app, client, h, ids = trip
    project = client.post("/api/v1/project/", headers=h, json={"code": "RT-1", "name": "往返工地"}).json["id"]
    worker = client.post("/api/v1/worker/", headers=h, json={"name": "往返工人", "trade": "mason", "day_rate": "300",
                                                              "projects": [project]}).json["id"]
    for day in ("2026-09-01", "2026-09-02"):
        created = client.post("/api/v1/labour_entry/", headers=h, json={
            "work_date": day, "project": project, "worker": worker, "hours": "8", "days": "1"})
        assert created.status_code == 201, created.json
    page = login(app.test_client())
    rows = read_csv(page.get(f"/labour_entry/export/csv?_flt_0_project={project}").data)
    header = rows[0]
    hours = header.index("Hours")
    edited = [header] + [r[:] for r in rows[1:]]
    edited[1][hours] = "6"
    response = page.post("/labour_entry/import", content_type="multipart/form-data", data={
        "file": (csv_upload(edited), "l.csv"), "key": "project,worker,work_date", "action": "preview"})
    text = response.get_data(as_text=True)
    assert response.status_code == 200 and "import-errors" not in text, text[:3000]
    assert 'class="import-update"' in text and "<del>8.00</del> → <ins>6.00</ins>" in text
    assert "1 rows change nothing and are left alone." in text
    token = text.split('name="token" value="')[1].split('"')[0]
    done = page.post("/labour_entry/import", data={"token": token, "action": "commit", "key": "project,worker,work_date"})
    assert done.status_code == 302
    entries = client.get("/api/v1/labour_entry/", headers=h, query_string={
        "q": f"(filters:!((col:project,opr:rel_o_m,value:{project})))"}).json["result"]
    assert sorted((e["work_date"], e["hours"]) for e in entries) == [("2026-09-01", "6.00"), ("2026-09-02", "8.00")] or \
        sorted((e["work_date"], e["hours"]) for e in entries) == [("2026-09-01", "8.00"), ("2026-09-02", "6.00")]
    assert [e["hours"] for e in entries].count("6.00") == 1


def test_keys_out_of_scope_and_bad_keys_are_errors_and_nothing_is_written(trip):
    app, client, h, ids = trip
    sales = app.test_client()
    hs = jwt_headers(sales, "rt_sales", PASSWORD)
    before = customers(client, h)
    # Sales may not import customers at all; the foreman's entity is labour entries: use the admin's API for keys
    bad_key = do_import(client, h, "customer", csv_upload([["ID", "name"], [ids[0], "x"]]), "c.csv", "name", True)
    assert bad_key.status_code == 422
    assert bad_key.json["errors"][0]["message"] == \
        "The key must be id, a unique field or fields that are unique together."
    for key in ("nosuch", "name,nosuch", "phone,name", "\u2603"):
        refused = do_import(client, h, "customer", csv_upload([["ID", "name"], [ids[0], "x"]]), "c.csv", key, True)
        assert refused.status_code == 422 and refused.json["errors"][0]["message"] == \
            "The key must be id, a unique field or fields that are unique together.", key
    missing = do_import(client, h, "customer", csv_upload([["name"], ["x"]]), "c.csv", "id", True)
    assert missing.status_code == 422 and missing.json["errors"][0]["message"] == "The key column is missing."
    unknown = do_import(client, h, "customer", csv_upload([["ID", "name"], ["999999", "x"], ["abc", "y"], ["", "新的"]]),
                        "c.csv", "id", True)
    assert unknown.status_code == 422
    assert [(e["row"], e["message"]) for e in unknown.json["errors"]] == [
        (2, "No record of yours has this ID."), (3, "No record of yours has this ID.")]
    assert [p["action"] for p in unknown.json["preview"]] == ["error", "error", "create"]
    assert customers(client, h) == before
    assert sales.get("/api/v1/customer/changes", headers=hs).status_code == 200


def test_out_of_scope_records_cannot_be_updated_by_key(trip, tmp_path_factory):
    """A scoped importer (the Keeper of the assets module imports assets, scoped to their own): another keeper's
    record is an error by id ("no record of yours", the same words as a missing one) and by unique field."""
    from conftest import ASSETS
    app = make_app(tmp_path_factory, "roundtrip_assets", ASSETS)
    mine_id, theirs_id = make_user(app, "rt_keeper", "Keeper"), make_user(app, "rt_keeper2", "Keeper")
    admin = app.test_client()
    h = jwt_headers(admin)
    mine = admin.post("/api/v1/asset/", headers=h, json={"code": "A-0001", "keeper": mine_id}).json["id"]
    theirs = admin.post("/api/v1/asset/", headers=h, json={"code": "A-0002", "keeper": theirs_id}).json["id"]
    keeper = app.test_client()
    hk = jwt_headers(keeper, "rt_keeper", PASSWORD)
    by_id = do_import(keeper, hk, "asset", csv_upload([["ID", "code", "quantity"], [mine, "A-0001", "5"],
                                                       [theirs, "A-0002", "7"]]), "a.csv", "id", False)
    assert by_id.status_code == 422 and [(e["row"], e["message"]) for e in by_id.json["errors"]] == [
        (3, "No record of yours has this ID.")]
    by_code = do_import(keeper, hk, "asset", csv_upload([["code", "quantity"], ["A-0002", "7"]]), "a.csv", "code", False)
    assert by_code.status_code == 422
    assert by_code.json["errors"][0]["message"] == "This record exists but is not yours to change."
    ok = do_import(keeper, hk, "asset", csv_upload([["ID", "code", "quantity"], [mine, "A-0001", "5"]]), "a.csv", "id", False)
    assert ok.status_code == 200 and ok.json["updated"] == 1, ok.json
    quantities = {r["id"]: r["quantity"] for r in admin.get("/api/v1/asset/", headers=h).json["result"]}
    assert quantities == {mine: 5, theirs: 1}
