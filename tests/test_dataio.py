"""Import and export: filtered, scoped, hidden/masked-aware exports; validated all-or-nothing imports."""
from __future__ import annotations

import re

import csv
import datetime as dt
import io
import os
import subprocess
import sys

import pytest
from conftest import ROOT, jwt_headers, login
from app.portal import portal_of
from openpyxl import Workbook, load_workbook
from sqlalchemy import text
from test_permissions import PASSWORD, make_user


def upload(client, url, content: bytes, filename: str, **form):
    return client.post(url, data={"file": (io.BytesIO(content), filename), **form}, content_type="multipart/form-data")


def csv_bytes(rows: list[list], encoding="utf-8") -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode(encoding)


def read_csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


def without_id(rows: list[list[str]]) -> list[list[str]]:
    """An export's rows without its leading ID column (checked: the header says ID, the cells are ids)."""
    assert rows[0][0] == "ID" and all(r[0].isdecimal() for r in rows[1:]), rows[:2]
    return [r[1:] for r in rows]


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
    users["worker"] = admin.post("/api/v1/worker/", json={"name": "导入工人", "trade": "mason", "day_rate": "350",
                                                          "projects": [users["site"], users["other_site"]]}, headers=h).json["id"]
    return users


def test_export_follows_filters_scope_and_masks(app, staff):
    sales = login(app.test_client(), "io_sales", PASSWORD)
    rows = read_csv(sales.get("/customer/export/csv").data)
    assert rows[0][:2] == ["ID", "Name"]  # exports lead with the record's id (an edited file imports back by id)
    names = {r[1] for r in rows[1:]}
    assert {"导出客户0", "导出客户1", "导出客户2"} <= names and "别人的导出客户" not in names
    filtered = read_csv(sales.get("/customer/export/csv?_flt_0_name=导出客户1").data)
    assert [r[1] for r in filtered[1:]] == ["导出客户1"]
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
    assert values[0][:2] == ("ID", "Name") and isinstance(values[1][0], int) and len(values) - 1 == count(api, "customer", "(col:name,opr:sw,value:导出客户)")
    via_api = api.get("/api/v1/customer/export?format=csv&q=(filters:!((col:name,opr:eq,value:导出客户2)))")
    assert via_api.status_code == 200 and [r[1] for r in read_csv(via_api.data)[1:]] == ["导出客户2"]
    agent = app.test_client()
    assert agent.get("/api/v1/customer/export", headers=jwt_headers(agent, "io_agent", PASSWORD)).status_code == 403


def test_export_is_localized(app, staff):
    admin = login(app.test_client())
    rows = read_csv(admin.get("/customer/export/csv?_l_=zh&_flt_0_name=导出客户1").data)
    assert rows[0][:4] == ["ID", "名称", "类型", "行业"] and "重要客户" in rows[1]


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
    assert post(csv_bytes([["name"], ["a"]]), "c.csv", key="name").json["errors"][0]["message"] == \
        "The key must be id, a unique field or fields that are unique together."
    anonymous = app.test_client().post("/api/v1/customer/import")
    assert anonymous.status_code == 401


def test_xlsx_import_with_typed_cells(app, staff, api):
    book = Workbook()
    sheet = book.active
    sheet.append(["Code", "Name", "Status", "Start date", "Budget"])
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
    runner = app.test_cli_runner()  # `flask --app run portal import ...`, in-process
    result = runner.invoke(args=["portal", "import", "Worker", str(path)])
    assert result.exit_code == 0, result.output
    assert "Imported 30 rows into Worker: 30 created, 0 updated." in result.stdout
    assert "Checking rows" in result.stdout  # the progress bar
    bad = tmp_path / "bad.csv"
    bad.write_bytes(csv_bytes([["name", "trade", "day_rate"], ["坏工人", "飞行员", "abc"]]))
    failed = runner.invoke(args=["portal", "import", "worker", str(bad)])
    assert failed.exit_code == 1 and isinstance(failed.exception, SystemExit)
    assert f"{bad}: row 2, Trade: " in failed.stderr and f"{bad}: row 2, Day rate: " in failed.stderr
    assert "Nothing imported: 2 problem(s) in 1 rows." in failed.stderr
    with app.app_context():
        workers = lambda: app.appbuilder.session.execute(text("SELECT count(*) FROM worker")).scalar()  # noqa: E731
        before = workers()
        dry = runner.invoke(args=["portal", "import", "Worker", str(path), "--dry-run"])
        assert dry.exit_code == 0 and "Would import 30 rows into Worker: 30 created, 0 updated." in dry.stdout, dry.output
        assert workers() == before
        app.appbuilder.session.remove()
    unknown = runner.invoke(args=["portal", "import", "Nope", str(path)])
    assert unknown.exit_code == 1 and "Error: unknown entity 'Nope'; entities: " in unknown.output
    odd = tmp_path / "workers.txt"
    odd.write_text("name\n")
    assert runner.invoke(args=["portal", "import", "Worker", str(odd)]).exit_code == 1


# -- exports at scale: same content as the per-object export had; safe cells; streamed XLSX --------------------------

@pytest.fixture(scope="module")
def crew(app, staff):
    """Two workers on the foreman's site (one on two sites) and labour entries on both sites."""
    h = jwt_headers(app.test_client())
    admin = app.test_client()
    ids, inactive = {}, []
    for name, trade, card, phone, projects, active in [
            ("导出工人甲", "mason", "110101199002021234", "13900001111", [staff["site"]], True),
            ("导出工人乙", "welder", "110101199002025678", "13900002222", [staff["site"], staff["other_site"]], False)]:
        created = admin.post("/api/v1/worker/", headers=h, json={
            "name": name, "trade": trade, "id_card": card, "phone": phone, "day_rate": "420.5",
            "bank_account": "622202000012345678", "team": "导出班组", "projects": projects, "active": True})
        assert created.status_code == 201, created.json
        ids[name] = created.json["id"]
        inactive.extend([] if active else [name])
    for worker, project, day in [("导出工人甲", "site", 1), ("导出工人乙", "other_site", 2)]:
        created = admin.post("/api/v1/labour_entry/", headers=h, json={
            "work_date": f"2026-09-0{day}", "worker": ids[worker], "project": staff[project], "hours": "8", "days": "1",
            "rate": "420.5"})
        assert created.status_code == 201, created.json
        if day == 1:  # approved through its workflow (`approved` is a formula over the state)
            for transition in ("submit", "approve"):
                taken = admin.post(f"/api/v1/labour_entry/{created.json['id']}/transitions/{transition}", headers=h)
                assert taken.status_code == 200, taken.json
    for name in inactive:  # leaves after working: the entry keeps its worker (only active workers can be chosen)
        assert admin.put(f"/api/v1/worker/{ids[name]}", headers=h, json={"active": False}).status_code == 200
    return ids


def test_export_content_enum_labels_links_many_booleans_masks(app, staff, crew):
    admin = login(app.test_client())
    rows = without_id(read_csv(admin.get("/worker/export/csv?_flt_0_team=导出班组&_oc_WorkerView=name&_od_WorkerView=asc").data))
    assert rows[0] == ["Name", "ID card no.", "Mobile", "Trade", "Day rate", "Crew", "Bank account", "Projects", "Active"]
    second, first = rows[1:]  # sorted by name: 乙 (U+4E59) before 甲 (U+7532)
    assert first == ["导出工人甲", "110101199002021234", "'+8613900001111", "Mason", "420.50", "导出班组",
                     "622202000012345678", "导入工地", "Yes"]
    assert second[3] == "Welder" and second[8] == "No"
    assert sorted(second[7].split(", ")) == sorted(["导入工地", "别人的工地"])
    zh = without_id(read_csv(admin.get("/worker/export/csv?_l_=zh&_flt_0_team=导出班组&_oc_WorkerView=name&_od_WorkerView=asc").data))
    assert zh[0][:4] == ["姓名", "身份证号", "手机", "工种"] and zh[2][3] == "瓦工" and zh[2][8] == "是" and zh[1][8] == "否"
    finance = login(app.test_client(), "io_finance", PASSWORD)
    seen = without_id(read_csv(finance.get("/worker/export/csv?_flt_0_team=导出班组&_oc_WorkerView=name&_od_WorkerView=asc").data))
    assert [r[1:3] for r in seen[1:]] == [["110****5678", "139****2222"], ["110****1234", "139****1111"]]  # masked
    foreman = login(app.test_client(), "io_foreman", PASSWORD)
    entries = without_id(read_csv(foreman.get("/labour_entry/export/csv").data))
    assert entries[0][:4] == ["Date", "Project", "Worker", "Hours"]
    assert {r[1] for r in entries[1:]} == {"导入工地"}  # only the foreman's site
    mine = [r for r in entries[1:] if r[2] in ("导出工人甲", "导出工人乙")]
    assert entries[0][7:] == ["Work done", "Trade", "State", "Approved", "Approved by", "Approved on"]
    assert [r[:12] for r in mine] == [["2026-09-01", "导入工地", "导出工人甲", "8.00", "1.00", "420.50", "420.50", "",
                                       "Mason", "Approved", "Yes", "admin"]]  # approved: stamped; the worker's trade
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", mine[0][12])


def test_export_xlsx_streams_and_round_trips(app, staff, crew, api):
    admin = login(app.test_client())
    url = "/worker/export/{}?_flt_0_team=导出班组&_oc_WorkerView=name&_od_WorkerView=asc"
    response = admin.get(url.format("xlsx"), buffered=False)
    assert response.is_streamed and "spreadsheetml" in response.mimetype
    chunks = list(response.response)
    assert len(chunks) >= 3  # the zip's first parts leave before the rows are read
    sheet = load_workbook(io.BytesIO(b"".join(chunks))).active
    cells = list(sheet.iter_rows(values_only=True))
    as_csv = read_csv(admin.get(url.format("csv")).data)
    assert [["" if v is None else str(v) for v in r] for r in cells] == \
        [[v.replace("420.50", "420.5") for v in r] for r in as_csv]
    assert isinstance(cells[1][5], float) and cells[1][5] == 420.5 and isinstance(cells[1][0], int)
    entries = list(load_workbook(io.BytesIO(admin.get("/labour_entry/export/xlsx?_flt_0_work_content=").data)).active.values)
    assert entries[0][:2] == ("ID", "Date")
    # the exported file imports back unchanged: both rows found by ID card, each already holds the file's values
    back = io.BytesIO(b"".join(chunks))
    result = api.post("/api/v1/worker/import", data={"file": (back, "w.xlsx"), "key": "id_card"},
                      content_type="multipart/form-data")
    assert result.status_code == 200, result.json
    assert (result.json["created"], result.json["updated"], result.json["unchanged"]) == (0, 0, 2)
    again = read_csv(admin.get(url.format("csv")).data)
    assert again == as_csv


def test_export_neutralises_formulas_and_strips_control_characters(app, staff, api):
    names = ["=HYPERLINK(\"http://evil.example\",\"x\")", "+1+2", "-3+4", "@SUM(A1)", "\t=tab", "普通\x0e客户"]
    for n, name in enumerate(names):
        created = api.post("/api/v1/customer/", json={"name": name, "notes": f"注入测试{n}\x0b\x1f", "industry": "property"})
        assert created.status_code == 201, created.json
    admin = login(app.test_client())
    rows = read_csv(admin.get("/customer/export/csv?_flt_0_industry=property").data)
    name_column, notes_column = rows[0].index("Name"), rows[0].index("Notes")
    exported = sorted(r[name_column] for r in rows[1:])
    assert exported == sorted(["'=HYPERLINK(\"http://evil.example\",\"x\")", "'+1+2", "'-3+4", "'@SUM(A1)", "'=tab", "普通客户"])  # names are stripped
    assert all(r[notes_column].startswith("注入测试") and r[notes_column][-1].isdigit() for r in rows[1:])
    response = admin.get("/customer/export/xlsx?_flt_0_industry=property")
    sheet = load_workbook(io.BytesIO(response.data)).active
    assert sheet.max_row == len(names) + 1  # the record with control characters did not cut the file short
    cells = [sheet.cell(row=r, column=name_column + 1) for r in range(2, sheet.max_row + 1)]
    assert all(c.data_type == "s" for c in cells)  # text, never a formula
    assert sorted(c.value for c in cells) == exported
    # importing the export back gives the original names (the quote is ours, not the user's)
    back = api.post("/api/v1/customer/import", content_type="multipart/form-data", data={"file": (io.BytesIO(csv_bytes(
        [["name", "industry"], ["'=1+1", "property"], ["'@x", "property"], ["it's", "property"]])), "c.csv")})
    assert back.status_code == 200 and back.json["created"] == 3, back.json
    names = {r["name"] for r in api.get("/api/v1/customer/", query_string={
        "q": "(filters:!((col:industry,opr:eq,value:property)),page_size:100)"}).json["result"]}
    assert {"=1+1", "@x", "it's"} <= names and "'=1+1" not in names


# -- imports in bounded memory --------------------------------------------------------------------------------------

def test_csv_that_turns_gb18030_after_the_first_64kb(app, staff):
    rows = [["name", "trade", "day_rate"]] + [[f"worker{n:05d}", "general", "300"] for n in range(4000)]
    rows.append(["编码工人", "普工", "300"])
    content = csv_bytes(rows, "gb18030")
    assert content[:70_000].isascii()
    h = jwt_headers(app.test_client())
    result = app.test_client().post("/api/v1/worker/import", headers=h, content_type="multipart/form-data",
                                     data={"file": (io.BytesIO(content), "w.csv"), "dry_run": "true"})
    assert result.status_code == 200 and result.json["rows"] == 4001 and result.json["written"] is False, result.json


MEMORY_ROWS = 150_000
MEMORY_BOUND_MB = 200  # the app alone is ~110 MB; reading the whole file (as before) needed ~270 MB for 100k rows


def test_import_of_150k_rows_stays_in_bounded_memory(tmp_path_factory, tmp_path):
    """The CLI imports 150k labour entries in a subprocess that reports its own peak RSS (VmHWM).

    (Not getrusage: Linux carries ru_maxrss over exec, so a child would report pytest's own peak.)
    """
    from conftest import database_url

    env = {**os.environ, "DATABASE_URL": database_url(tmp_path_factory, "memory"), "SECRET_KEY": "x" * 32}
    wrapper = ("import sys\nfrom flask.cli import main\ntry:\n    main()\nfinally:\n"
               "    peak = [line for line in open('/proc/self/status') if line.startswith('VmHWM')][0]\n"
               "    print('MAXRSS_KB', peak.split()[1], file=sys.stderr)\n")

    def cli(entity, rows):
        path = tmp_path / f"{entity}.csv"
        path.write_bytes(csv_bytes(rows))
        result = subprocess.run([sys.executable, "-c", wrapper, "--app", "run", "portal", "import", entity, str(path)],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        return result, int(result.stderr.rsplit("MAXRSS_KB", 1)[1].split()[0]) / 1024

    cli("Project", [["code", "name"]] + [[f"M{p}", f"内存工地{p}"] for p in range(20)])
    every_site = ",".join(f"内存工地{p}" for p in range(20))  # entries take active workers of their project
    cli("Worker", [["name", "day_rate", "projects"]] + [[f"内存工人{w}", "400", every_site] for w in range(500)])
    day0 = dt.date(2020, 1, 1)
    entries = [["日期", "工人", "项目", "工时", "工日", "日工资", "金额", "已审核"]] + [
        [(day0 + dt.timedelta(days=n // 10_000)).isoformat(), f"内存工人{n % 500}", f"内存工地{n // 500 % 20}",
         "8", "1", "400", "400", "是"] for n in range(MEMORY_ROWS)]
    result, peak_mb = cli("LabourEntry", entries)
    assert f"Imported {MEMORY_ROWS} rows into LabourEntry: {MEMORY_ROWS} created" in result.stdout
    assert peak_mb < MEMORY_BOUND_MB, f"peak RSS {peak_mb:.0f} MB"


@pytest.mark.skipif(not os.environ.get("PORTAL_TEST_DATABASE_URL"), reason="CSV lines are rendered by PostgreSQL only")
@pytest.mark.parametrize("locale", ["en", "zh"])
def test_csv_rendered_by_postgresql_equals_the_python_rendering(app, staff, crew, locale):
    """Every entity's export, cell for cell, both ways (enum labels, booleans, links, many, dates, decimals, quotes)."""
    from app.generate.dataio import csv_chunks
    from app.data.exporter import Export

    spec, models = portal_of(app).spec, portal_of(app).models
    session = app.appbuilder.session
    checked = 0
    with app.test_request_context(f"/?_l_={locale}"):
        from app.rules.access import current_viewer
        for entity in spec.entities:
            model = models[entity.name]
            export = Export(spec, entity, models, current_viewer(), session.query(model).order_by(model.id))
            assert export.can_format_in_database("postgresql")
            in_python = b"".join(csv_chunks([[export.header], *export.batches(session, "csv")]))
            in_database = b"".join(export.csv_chunks(session))
            assert read_csv(in_database) == read_csv(in_python), entity.name
            checked += len(read_csv(in_database)) - 1
    assert checked >= 20  # workers, labour entries, projects, customers with formula-like names...


@pytest.mark.skipif(not os.environ.get("PORTAL_TEST_DATABASE_URL"), reason="the COPY path is PostgreSQL's")
def test_the_copy_behind_a_postgresql_csv_export_reports_progress_while_it_runs(app, staff, crew):
    """The COPY is one blocking call; it must let gunicorn's arbiter know the worker is alive (app/runtime/serving.py)."""
    from app.data.exporter import Export

    spec, models = portal_of(app).spec, portal_of(app).models
    session = app.appbuilder.session
    calls = []
    with app.test_request_context("/"):
        from app.rules.access import current_viewer
        model = models["LabourEntry"]
        export = Export(spec, spec.entity("LabourEntry"), models, current_viewer(), session.query(model))
        rows = read_csv(b"".join(export.csv_chunks(session, progress=lambda: calls.append(1))))
    assert len(rows) > 1 and len(calls) >= len(rows) - 1  # at least once per row COPY wrote
