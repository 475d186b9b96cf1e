"""Import and export: filtered, scoped, hidden/masked-aware exports; validated all-or-nothing imports."""
from __future__ import annotations

import csv
import datetime as dt
import io
import os
import subprocess
import sys

import pytest
from conftest import ROOT, jwt_headers, login
from openpyxl import Workbook, load_workbook
from test_permissions import PASSWORD, make_user


def upload(client, url, content: bytes, filename: str, **form):
    return client.post(url, data={"file": (io.BytesIO(content), filename), **form}, content_type="multipart/form-data")


def csv_bytes(rows: list[list], encoding="utf-8") -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode(encoding)


def read_csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


def count(api, entity, flt=""):
    q = {"q": f"(filters:!({flt}))"} if flt else None
    return api.get(f"/api/v1/{entity}/", query_string=q).json["count"]


@pytest.fixture(scope="module")
def staff(app):
    users = {name: make_user(app, name, role) for name, role in
             [("io_sales", "Sales"), ("io_sales2", "Sales"), ("io_finance", "Finance"), ("io_foreman", "SiteForeman"),
              ("io_agent", "SupportAgent")]}
    admin = app.test_client()
    h = jwt_headers(admin)
    for n in range(3):
        admin.post("/api/v1/customer/", json={"name": f"导出客户{n}", "owner": users["io_sales"], "phone": f"1360000000{n}",
                                              "notes": "内部备注", "level": "vip" if n else "normal"}, headers=h)
    admin.post("/api/v1/customer/", json={"name": "别人的导出客户", "owner": users["io_sales2"]}, headers=h)
    users["site"] = admin.post("/api/v1/project/", json={"code": "IO-1", "name": "导入工地", "manager": users["io_foreman"]}, headers=h).json["id"]
    users["other_site"] = admin.post("/api/v1/project/", json={"code": "IO-2", "name": "别人的工地"}, headers=h).json["id"]
    users["worker"] = admin.post("/api/v1/worker/", json={"name": "导入工人", "trade": "mason", "day_rate": "350"}, headers=h).json["id"]
    return users


def test_export_follows_filters_scope_and_masks(app, staff):
    sales = login(app.test_client(), "io_sales", PASSWORD)
    rows = read_csv(sales.get("/customer/export/csv").data)
    names = {r[0] for r in rows[1:]}
    assert {"导出客户0", "导出客户1", "导出客户2"} <= names and "别人的导出客户" not in names
    filtered = read_csv(sales.get("/customer/export/csv?_flt_0_name=导出客户1").data)
    assert [r[0] for r in filtered[1:]] == ["导出客户1"]
    finance = login(app.test_client(), "io_finance", PASSWORD)
    exported = read_csv(finance.get("/customer/export/csv?_flt_0_name=导出客户").data)
    header = exported[0]
    assert "Notes" not in header and "Source" not in header
    phone = header.index("Phone")
    assert {r[phone] for r in exported[1:]} == {"136****0000", "136****0001", "136****0002"}
    assert "内部备注" not in str(exported)


def test_export_xlsx_and_api_export(app, staff, api):
    admin = login(app.test_client())
    response = admin.get("/customer/export/xlsx?_flt_0_name=导出客户")
    assert response.is_streamed and "spreadsheetml" in response.mimetype
    sheet = load_workbook(io.BytesIO(response.data)).active
    values = list(sheet.iter_rows(values_only=True))
    assert values[0][0] == "Name" and len(values) - 1 == count(api, "customer", "(col:name,opr:sw,value:导出客户)")
    via_api = api.get("/api/v1/customer/export?format=csv&q=(filters:!((col:name,opr:eq,value:导出客户2)))")
    assert via_api.status_code == 200 and [r[0] for r in read_csv(via_api.data)[1:]] == ["导出客户2"]
    agent = app.test_client()
    assert agent.get("/api/v1/customer/export", headers=jwt_headers(agent, "io_agent", PASSWORD)).status_code == 403


def test_export_is_localized(app, staff):
    admin = login(app.test_client())
    rows = read_csv(admin.get("/customer/export/csv?_l_=zh&_flt_0_name=导出客户1").data)
    assert rows[0][:3] == ["名称", "类型", "行业"] and "重要客户" in rows[1]


def test_preview_writes_nothing_and_lists_row_errors(app, staff, api):
    admin = login(app.test_client())
    before = count(api, "customer")
    content = csv_bytes([["名称", "电话", "客户等级", "负责人", "信用额度"],
                         ["导入甲", "13700001111", "重要客户", "admin", "1000"],
                         ["导入乙", "12", "gold", "nobody", "-5"]])
    page = upload(admin, "/customer/import", content, "customers.csv", action="preview")
    assert page.status_code == 200 and "import-errors" in page.text
    for fragment in ("<td>3</td><td>Phone</td><td>Not a valid phone number.</td>",
                     "<td>3</td><td>Level</td><td>Not a valid choice; use one of: vip, normal, potential.</td>",
                     "<td>3</td><td>Owner</td><td>No record named &#39;nobody&#39;.</td>",
                     "<td>3</td><td>Credit limit</td><td>Must be at least 0.</td>"):
        assert fragment in page.text, fragment
    assert "import-commit" not in page.text
    assert count(api, "customer") == before
    zh = upload(admin, "/customer/import?_l_=zh", content, "customers.csv", action="preview")
    assert "不是有效的电话号码。" in zh.text and "没有名为“nobody”的记录。" in zh.text


def test_all_or_nothing_then_commit_with_upsert(app, staff, api):
    admin = login(app.test_client())
    rows = [["name", "phone", "level"]] + [[f"批量客户{n}", f"1350000{n:04d}", "normal"] for n in range(50)]
    bad = rows + [["批量客户坏", "13500000001", "normal"]]  # duplicates row 3's phone
    before = count(api, "customer")
    h = jwt_headers(app.test_client())
    client = app.test_client()
    refused = client.post("/api/v1/customer/import", data={"file": (io.BytesIO(csv_bytes(bad)), "c.csv")},
                          headers=h, content_type="multipart/form-data")
    assert refused.status_code == 422 and refused.json["written"] is False
    assert refused.json["errors"] == [{"row": 52, "field": "Phone", "message": "Same phone as row 3."}]
    assert count(api, "customer") == before
    checked = upload(admin, "/customer/import", csv_bytes(rows), "c.csv", action="preview", key="phone")
    token = checked.text.split('name="token" value="')[1].split('"')[0]
    done = admin.post("/customer/import", data={"token": token, "action": "commit", "key": "phone"})
    assert done.status_code == 302
    assert count(api, "customer") == before + 50
    changed = [["phone", "level"], ["13500000007", "vip"]]
    result = client.post("/api/v1/customer/import", data={"file": (io.BytesIO(csv_bytes(changed)), "u.csv"), "key": "phone"},
                         headers=h, content_type="multipart/form-data")
    assert result.status_code == 200 and (result.json["created"], result.json["updated"]) == (0, 1)
    updated = api.get("/api/v1/customer/", query_string={"q": "(filters:!((col:phone,opr:eq,value:'+8613500000007')))"}).json
    assert updated["result"][0]["level"] == "vip" and updated["result"][0]["name"] == "批量客户7"
    assert count(api, "customer") == before + 50


def test_import_labour_entries_links_by_title_and_unique_together(app, staff, api):
    h = jwt_headers(app.test_client())
    client = app.test_client()
    rows = [["日期", "工人", "项目", "工时", "工日", "日工资", "金额", "已审核"],
            ["2026-10-01", "导入工人", "导入工地", "8", "1", "350", "350", "是"],
            ["2026-10-02", "导入工人", "导入工地", "4", "0.5", "350", "175", "否"]]
    ok = client.post("/api/v1/labour_entry/import", data={"file": (io.BytesIO(csv_bytes(rows, "gb18030")), "l.csv")},
                     headers=h, content_type="multipart/form-data")
    assert ok.status_code == 200 and ok.json["created"] == 2, ok.json
    again = client.post("/api/v1/labour_entry/import", data={"file": (io.BytesIO(csv_bytes(rows[:2])), "l.csv")},
                        headers=h, content_type="multipart/form-data")
    assert again.status_code == 422
    assert "already exists" in again.json["errors"][0]["message"]
    entries = api.get("/api/v1/labour_entry/", query_string={"q": "(filters:!((col:work_content,opr:eq,value:x)))"}).json
    assert entries["count"] == 0


def test_import_respects_scope_and_forced_owner(app, staff, api):
    foreman = app.test_client()
    h = jwt_headers(foreman, "io_foreman", PASSWORD)
    rows = [["work_date", "worker", "project", "hours", "days", "rate", "amount"],
            ["2026-10-05", "导入工人", "别人的工地", "8", "1", "350", "350"]]
    refused = foreman.post("/api/v1/labour_entry/import", data={"file": (io.BytesIO(csv_bytes(rows)), "l.csv")},
                           headers=h, content_type="multipart/form-data")
    assert refused.status_code == 422 and refused.json["errors"][0]["message"] == "No record named '别人的工地'."
    sales = app.test_client()
    hs = jwt_headers(sales, "io_sales", PASSWORD)
    created = sales.post("/api/v1/follow_up/import", headers=hs, content_type="multipart/form-data",
                         data={"file": (io.BytesIO(csv_bytes([["customer", "summary"], ["导出客户0", "导入的跟进"]])), "f.csv")})
    assert created.status_code == 200, created.json
    theirs = sales.post("/api/v1/follow_up/import", headers=hs, content_type="multipart/form-data",
                        data={"file": (io.BytesIO(csv_bytes([["customer", "summary"], ["别人的导出客户", "x"]])), "f.csv")})
    assert theirs.status_code == 422
    not_granted = sales.post("/api/v1/customer/import", headers=hs, content_type="multipart/form-data",
                             data={"file": (io.BytesIO(csv_bytes([["name"], ["销售导入客户"]])), "c.csv")})
    assert not_granted.status_code == 403  # Sales may create customers but not import them


def test_import_file_problems(app, staff, api):
    h = jwt_headers(app.test_client())
    client = app.test_client()

    def post(content, name, **form):
        return client.post("/api/v1/customer/import", data={"file": (io.BytesIO(content), name), **form}, headers=h,
                           content_type="multipart/form-data")

    assert post(b"x", "c.txt").json["message"] == "Upload a .csv or .xlsx file."
    assert post(b"not a zip", "c.xlsx").json["errors"][0]["message"] == "This is not a readable Excel (.xlsx) file."
    assert post(b"", "c.csv").json["errors"][0]["message"] == "The file is empty."
    unknown = post(csv_bytes([["name", "colour"], ["a", "red"]]), "c.csv").json["errors"]
    assert unknown == [{"row": 1, "field": "colour", "message": "Unknown column."}]
    short = post(b"name,phone,level\n\xe7\x9f\xad\xe8\xa1\x8c\n,13911112345\n", "c.csv").json["errors"]
    assert short == [{"row": 3, "field": "Name", "message": "This field is required."}]  # row 2 just stops early
    extra = post(csv_bytes([["name"], ["a", "stray"]]), "c.csv").json["errors"]
    assert extra == [{"row": 2, "field": "", "message": "This row has more cells than the header has columns."}]
    missing = post(csv_bytes([["phone"], ["13911110000"]]), "c.csv").json["errors"]
    assert missing == [{"row": 2, "field": "Name", "message": "This field is required."}]
    assert post(csv_bytes([["name"], ["a"]]), "c.csv", key="name").json["errors"][0]["message"] == "The key must be a unique field."
    anonymous = app.test_client().post("/api/v1/customer/import")
    assert anonymous.status_code == 401


def test_xlsx_import_with_typed_cells(app, staff, api):
    book = Workbook()
    sheet = book.active
    sheet.append(["Code", "Name", "Status", "Start date", "Labour budget"])
    sheet.append(["XL-1", "表格工地", "筹备中", dt.datetime(2026, 5, 1), 120000.5])
    buffer = io.BytesIO()
    book.save(buffer)
    h = jwt_headers(app.test_client())
    result = app.test_client().post("/api/v1/project/import", data={"file": (io.BytesIO(buffer.getvalue()), "p.xlsx")},
                                    headers=h, content_type="multipart/form-data")
    assert result.status_code == 200, result.json
    project = api.get("/api/v1/project/", query_string={"q": "(filters:!((col:code,opr:eq,value:XL-1)))"}).json["result"][0]
    assert (project["status"], project["start_date"], project["budget"]) == ("planned", "2026-05-01", "120000.50")


def test_cli_import_with_progress(app, tmp_path):
    path = tmp_path / "workers.csv"
    path.write_bytes(csv_bytes([["name", "trade", "day_rate"]] + [[f"命令行工人{n}", "普工", "300"] for n in range(30)]))
    env = {**os.environ, "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"], "SECRET_KEY": "x" * 32}
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "run", "portal", "import", "Worker", str(path)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Imported 30 rows into Worker: 30 created, 0 updated." in result.stdout
    bad = tmp_path / "bad.csv"
    bad.write_bytes(csv_bytes([["name", "trade", "day_rate"], ["坏工人", "飞行员", "abc"]]))
    failed = subprocess.run([sys.executable, "-m", "flask", "--app", "run", "portal", "import", "worker", str(bad)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert "row 2, Trade: Not a valid choice" in failed.stderr and "row 2, Day rate: Must be a number." in failed.stderr
