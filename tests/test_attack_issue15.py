"""Adversarial review of issue 15's surfaces: report parameters, drill-down lists, dashboards, the report cache
and the escaping of labels and titles in pages, chart JSON and downloads. HTTP through the FAB test client on a
copy of the shipped schemas whose labour-by-project report and one derived measure carry HTML in their labels."""
from __future__ import annotations

import csv
import io
import json
import shutil
from urllib.parse import quote

import pytest

from attack_support import PASSWORD, add_users, caller_fixtures, user_id
from conftest import ROOT, login, make_app

USERS = {"foreman1": "SiteForeman", "foreman2": "SiteForeman", "fin": "Finance", "sales1": "Sales",
         "sales2": "Sales", "boss": "Manager"}
EVIL = "<img src=x onerror=alert(1)>'\""
FORMULA = "=HYPERLINK(\"http://evil\",\"x\")"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    schemas = tmp_path_factory.mktemp("attack15_schemas")
    for path in (ROOT / "schemas").glob("*.yaml"):
        shutil.copy(path, schemas / path.name)
    labour = schemas / "labour.yaml"
    text = labour.read_text(encoding="utf-8")
    old = "label: {en: Labour by project, zh: 项目点工汇总}"
    assert old in text
    labour.write_text(text.replace(old, "label: {en: \"Labour " + EVIL.replace('"', '\\"') + "\", zh: 项目点工汇总}"),
                      encoding="utf-8")
    centres = schemas / "centres.yaml"
    text = centres.read_text(encoding="utf-8")
    old = "label: {en: Net cash flow, zh: 净现金流}"
    assert old in text
    centres.write_text(text.replace(old, "label: {en: \"Net </script>" + EVIL.replace('"', '\\"') + "\", zh: 净现金流}"),
                       encoding="utf-8")
    app = make_app(tmp_path_factory, "attack15", schema_dir=schemas)
    add_users(app, USERS)
    return app


admin, callers = caller_fixtures(USERS)


def approve(admin, pk):
    for name in ("submit", "approve"):
        response = admin.post(f"/api/v1/labour_entry/{pk}/transitions/{name}", json={})
        assert response.status_code == 200, response.json


@pytest.fixture(scope="module")
def data(app, admin):
    """Two sites (one per foreman), a worker, approved labour on each, receipts; a customer per salesperson."""
    made = {}
    for i, foreman in enumerate(("foreman1", "foreman2"), 1):
        r = admin.post("/api/v1/project/", json={"code": f"P{i}", "name": FORMULA if i == 1 else EVIL,
                                                 "manager": user_id(app, foreman), "budget": 1000})
        assert r.status_code == 201, r.json
        made[foreman] = r.json["id"]
    r = admin.post("/api/v1/worker/", json={"name": "W1", "day_rate": 100, "bank_account": "123456789012",
                                            "id_card": "11010119900101123X", "projects": list(made.values())})
    assert r.status_code == 201, r.json
    made["worker"] = r.json["id"]
    for foreman, days in (("foreman1", 1), ("foreman2", 2)):
        r = admin.post("/api/v1/labour_entry/", json={"work_date": "2026-03-02", "project": made[foreman],
                                                      "worker": made["worker"], "days": days, "hours": 8})
        assert r.status_code == 201, r.json
        approve(admin, r.json["id"])
        r = admin.post("/api/v1/receipt/", json={"project": made[foreman], "received_on": "2026-03-05", "amount": 50})
        assert r.status_code == 201, r.json
    for sales in ("sales1", "sales2"):
        r = admin.post("/api/v1/customer/", json={"name": f"Secret {sales}", "owner": user_id(app, sales)})
        assert r.status_code == 201, r.json
        made[sales] = r.json["id"]
    return made


# -- report parameters ------------------------------------------------------------------------------------------

BAD_PARAMS = [
    "from=garbage", "to=2026-13-01", "from=0000-01-01", "to=10000-01-01", "from=2026-05-01&to=2026-01-01",
    "from=%00", "f_nothing=1", "f_worker=1", "f_project=abc", "f_project=99999999999999999999",
    "f_project=-1", "f_project=%00", "f_project=1%27%20OR%201=1--",
]


@pytest.mark.parametrize("query", BAD_PARAMS)
def test_bad_report_params_are_a_clear_400(callers, data, query):
    response = callers["foreman1"].get(f"/api/v1/reports/labour_by_project?{query}")
    assert response.status_code == 400, (query, response.status_code, response.data[:300])
    assert response.json["message"]


@pytest.mark.parametrize("query", [
    "f_project=99999999999999999999", "f_project=abc", "f_project=%00", "f_project=0", "f_budget=1",
    "f_project=1%20OR%201=1",
])
def test_bad_group_filter_of_a_cross_entity_report_is_a_400(callers, data, query):
    response = callers["fin"].get(f"/api/v1/reports/project_cost?{query}")
    assert response.status_code == 400, (query, response.status_code, response.data[:300])


@pytest.mark.parametrize("value", ["%00", "2026-13", "x' OR '1'='1", "9" * 5000, "2026-03%00"])
def test_bad_month_of_the_cash_flow_is_a_400(callers, data, value):
    response = callers["fin"].get(f"/api/v1/reports/cash_flow?f_month={value}")
    assert response.status_code == 400, (value, response.status_code, response.data[:300])


def test_a_good_month_of_the_cash_flow_filters(callers, data):
    response = callers["fin"].get("/api/v1/reports/cash_flow?f_month=2026-03")
    assert response.status_code == 200, response.json
    assert [row["month"]["value"] for row in response.json["rows"]] == ["2026-03"]
    assert response.json["totals"]["received"] == 100


def test_repeated_and_unicode_args_do_not_fail(callers, data):
    for query in ("from=2026-01-01&from=junk", "f_project=&f_project=1", "from=%E4%BB%8A%E5%A4%A9", "to=" + "9" * 10000):
        response = callers["foreman1"].get(f"/api/v1/reports/labour_by_project?{query}")
        assert response.status_code in (200, 400), (query, response.status_code)


def test_reports_refuse_anonymous_and_other_roles(app, callers, data):
    anonymous = app.test_client()
    assert anonymous.get("/api/v1/reports/project_cost").status_code == 401
    assert anonymous.get("/api/v1/reports/").status_code == 401
    page = anonymous.get("/reports/project_cost")
    assert page.status_code in (302, 401, 403) and b"Budget" not in page.data
    assert anonymous.get("/reports/project_cost/download.csv").status_code in (302, 401, 403)
    assert callers["foreman1"].get("/api/v1/reports/project_cost").status_code == 403
    assert callers["foreman1"].get("/api/v1/reports/no_such").status_code == 404
    assert callers["foreman1"].get("/api/v1/reports/..%2Fproject_cost").status_code == 404
    ids = [r["id"] for r in callers["foreman1"].get("/api/v1/reports/").json["result"]]
    assert "project_cost" not in ids and "cash_flow" not in ids
    client = app.test_client()
    login(client, "foreman1", PASSWORD)
    for url in ("/reports/project_cost", "/reports/project_cost/download.xlsx", "/reports/project_cost/download.csv"):
        response = client.get(url)  # refused: a 403 or back to the reports with a message, never the numbers
        assert response.status_code in (302, 403), (url, response.status_code)
        assert b"Budget" not in response.data and b"1000" not in response.data
    assert client.get("/reports/labour_by_project/download.exe").status_code == 404


def test_report_rows_keep_to_the_viewers_scope(callers, data):
    rows = callers["foreman1"].get("/api/v1/reports/labour_by_project").json["rows"]
    assert [row["project"]["value"] for row in rows] == [data["foreman1"]], rows
    # naming another foreman's site gives nothing, not its numbers
    other = callers["foreman1"].get(f"/api/v1/reports/labour_by_project?f_project={data['foreman2']}").json
    assert other["rows"] == [] and not other["totals"].get("cost")


# -- drill-down -------------------------------------------------------------------------------------------------

def drill_list(caller, entity, obj) -> object:
    text = obj if isinstance(obj, str) else json.dumps(obj)
    return caller.get(f"/api/v1/{entity}/?drill={quote(text)}")


BAD_DRILLS = [
    "[]", "1", "null", "\"x\"", "{", "{\"project\": {\"eq\": {\"eq\": 1}}}",
    json.dumps({"project": {"in": list(range(1, 2000))}}),
    json.dumps({"project": 99999999999999999999}), json.dumps({"project": True}), json.dumps({"project": "1 OR 1=1"}),
    json.dumps({"project": {"like": "%"}}), json.dumps({"project": {"eq": 1, "in": [2]}}),
    json.dumps({"hours": {"regex": ".*"}}), json.dumps({"hours": {"gt": "lots"}}), json.dumps({"nothing": 1}),
    json.dumps({"worker.bank_account": {"null": False}}), json.dumps({"worker.id_card": "11010119900101123X"}),
    json.dumps({"project.manager.password": "x"}), json.dumps({"work_date": {"gte": "10000-01-01"}}),
    json.dumps({"work_content": "a\u0000b"}), "{" * 3000 + "}" * 3000,
    json.dumps({"and": [{"or": [{"not": {"hours": 1}}]}]}), json.dumps({"hours": [[1]]}),
]


@pytest.mark.parametrize("drill", BAD_DRILLS, ids=range(len(BAD_DRILLS)))
def test_bad_drills_are_a_clear_400(callers, data, drill):
    response = drill_list(callers["foreman1"], "labour_entry", drill)
    assert response.status_code == 400, (drill[:80], response.status_code, response.data[:300])
    assert response.json["message"]


def test_bad_drill_on_the_list_page_is_a_400_page(app, data):
    client = app.test_client()
    login(client, "foreman1", PASSWORD)
    response = client.get("/labour_entry/list/?drill=" + quote(json.dumps({"worker.bank_account": "123456789012"})))
    assert response.status_code == 400 and b"123456789012" not in response.data


def test_hidden_and_masked_fields_cannot_be_probed_by_drill(callers, data):
    # a foreman may not see a worker's bank account (hidden) nor the id card (masked): no count may tell them
    for field, value in (("bank_account", "123456789012"), ("id_card", "11010119900101123X")):
        response = drill_list(callers["foreman1"], "worker", {field: value})
        assert response.status_code == 400, (field, response.status_code, response.json)
        response = drill_list(callers["foreman1"], "worker", {field: {"null": False}})
        assert response.status_code == 400, (field, response.status_code)


def test_drill_keeps_to_the_row_scope(callers, data):
    response = drill_list(callers["foreman1"], "labour_entry", {"project": data["foreman2"]})
    assert response.status_code == 200 and response.json["count"] == 0
    response = drill_list(callers["foreman1"], "labour_entry", {"project": {"in": [data["foreman1"], data["foreman2"]]}})
    assert response.status_code == 200 and response.json["count"] == 1
    # a link path into a scope the foreman is outside of: still only own rows
    response = drill_list(callers["foreman1"], "labour_entry", {"project.manager": {"null": False}})
    assert response.status_code == 200 and response.json["count"] == 1
    # drill with FAB filters and ordering together: still scoped
    q = quote(json.dumps({"filters": [{"col": "days", "opr": "gt", "value": 0}], "order_column": "days",
                          "order_direction": "desc"}))
    response = callers["foreman1"].get(f"/api/v1/labour_entry/?drill={quote(json.dumps({'hours': {'gt': 0}}))}&q={q}")
    assert response.status_code == 200 and response.json["count"] == 1


def test_drill_refuses_anonymous(app, data):
    response = app.test_client().get("/api/v1/labour_entry/?drill=" + quote(json.dumps({"project": data["foreman1"]})))
    assert response.status_code == 401


def test_drill_urls_of_a_report_equal_its_cells(callers, data):
    body = callers["foreman1"].get("/api/v1/reports/labour_by_project").json
    row = body["rows"][0]
    drilled = callers["foreman1"].get("/api/v1" + row["drill"].replace("/list/", "/", 1))
    assert drilled.status_code == 200 and drilled.json["count"] == 1


# -- dashboards -------------------------------------------------------------------------------------------------

def test_dashboards_refuse_other_roles_unknown_ids_and_anonymous(app, callers, data):
    assert app.test_client().get("/api/v1/dashboards/").status_code == 401
    assert app.test_client().get("/api/v1/dashboards/management").status_code == 401
    assert app.test_client().get("/dashboards/management").status_code in (302, 401)
    foreman = callers["foreman1"]
    assert foreman.get("/api/v1/dashboards/management").status_code == 403
    for unknown in ("nothing", "..%2Fmanagement", "management%00", "%3Cscript%3E", "x" * 2000):
        response = foreman.get(f"/api/v1/dashboards/{unknown}")
        assert response.status_code in (400, 404), (unknown, response.status_code)
        assert b"<script>" not in response.data
    ids = [d["id"] for d in foreman.get("/api/v1/dashboards/").json["result"]]
    assert "management" not in ids and "crm" not in ids
    client = app.test_client()
    login(client, "foreman1", PASSWORD)
    assert client.get("/dashboards/management").status_code == 403
    assert client.get("/dashboards/crm").status_code == 403


def test_dashboard_tiles_only_show_reports_the_role_may_open(callers, data):
    # Finance shares the management dashboard but may not open the progress centre: its tile is left out
    body = callers["fin"].get("/api/v1/dashboards/management")
    assert body.status_code == 200
    reports = {tile.get("report") for tile in body.json["tiles"]}
    assert "project_progress" not in reports and "project_cost" in reports
    manager_reports = {t.get("report") for t in callers["boss"].get("/api/v1/dashboards/management").json["tiles"]}
    assert "project_progress" in manager_reports


# -- the report cache -------------------------------------------------------------------------------------------

def test_cache_never_serves_another_scope(app, callers, data):
    first = callers["sales1"].get("/api/v1/reports/customers_by_owner").json
    second = callers["sales2"].get("/api/v1/reports/customers_by_owner").json
    assert first["totals"]["customers"] == 1 and second["totals"]["customers"] == 1
    assert {r["owner"]["value"] for r in first["rows"]} == {user_id(app, "sales1")}
    assert {r["owner"]["value"] for r in second["rows"]} == {user_id(app, "sales2")}
    assert callers["boss"].get("/api/v1/reports/customers_by_owner").json["totals"]["customers"] >= 2


def test_cache_keeps_languages_apart(callers, data):
    en = callers["fin"].get("/api/v1/reports/cash_flow").json
    zh = callers["fin"].get("/api/v1/reports/cash_flow", headers={"Accept-Language": "zh"}).json
    labels_en = {c["key"]: c["label"] for c in en["columns"]}
    labels_zh = {c["key"]: c["label"] for c in zh["columns"]}
    assert labels_en["received"] == "Received" and labels_zh["received"] == "收款", (labels_en, labels_zh)


def test_a_write_retires_cached_results(callers, data, admin):
    before = callers["foreman1"].get("/api/v1/reports/labour_by_project").json["totals"]["days"]
    r = admin.post("/api/v1/labour_entry/", json={"work_date": "2026-03-03", "project": data["foreman1"],
                                                  "worker": data["worker"], "days": 1, "hours": 8})
    assert r.status_code == 201, r.json
    approve(admin, r.json["id"])
    after = callers["foreman1"].get("/api/v1/reports/labour_by_project").json["totals"]["days"]
    assert after == before + 1
    # reopened (a transition is a write too): out of the approved report again
    reopened = admin.post(f"/api/v1/labour_entry/{r.json['id']}/transitions/reopen", json={})
    assert reopened.status_code == 200, reopened.json
    assert callers["foreman1"].get("/api/v1/reports/labour_by_project").json["totals"]["days"] == before


def test_a_reassigned_site_changes_the_foremans_numbers(app, callers, data, admin):
    # the row scope follows project.manager: moving a site is a write to Project, which the scope reads
    assert callers["foreman2"].get("/api/v1/reports/labour_by_project").json["totals"]["days"] == 2
    r = admin.put(f"/api/v1/project/{data['foreman2']}", json={"manager": user_id(app, "foreman1")})
    assert r.status_code == 200, r.json
    try:
        assert not callers["foreman2"].get("/api/v1/reports/labour_by_project").json["totals"].get("days")
    finally:
        r = admin.put(f"/api/v1/project/{data['foreman2']}", json={"manager": user_id(app, "foreman2")})
        assert r.status_code == 200, r.json


# -- escaping ---------------------------------------------------------------------------------------------------

def test_labels_and_titles_are_escaped_in_pages_and_chart_json(app, data):
    client = app.test_client()
    login(client, "boss", PASSWORD)
    for url in ("/reports/labour_by_project", "/reports/cash_flow", "/reports/labour_by_month_pivot",
                "/reports/", "/dashboards/management", "/"):
        page = client.get(url)
        assert page.status_code == 200, url
        text = page.get_data(as_text=True)
        assert "<img src=x" not in text, url
        assert "</script><img" not in text, url
        # chart configs live in a single-quoted attribute: a raw quote would end it
        for chunk in text.split("data-chart='")[1:]:
            attribute = chunk.split("'", 1)[0]
            json.loads(attribute.replace("&#34;", '"').replace("&quot;", '"').replace("&lt;", "<")
                       .replace("&gt;", ">").replace("&#39;", "'").replace("&amp;", "&"))


def test_downloads_defuse_formulas(app, data):
    client = app.test_client()
    login(client, "boss", PASSWORD)
    response = client.get("/reports/labour_by_project/download.csv")
    assert response.status_code == 200
    cells = [cell for row in csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))) for cell in row]
    assert FORMULA not in cells
    assert all(not cell or cell[0] not in "=+@\t\r" for cell in cells if not _number(cell)), cells
    response = client.get("/reports/labour_by_project/download.xlsx")
    assert response.status_code == 200
    from openpyxl import load_workbook
    sheet = load_workbook(io.BytesIO(response.data)).active
    values = [c.value for row in sheet.iter_rows() for c in row if isinstance(c.value, str)]
    assert all(v[0] not in "=+-@" for v in values if not _number(v)), values


def _number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
        return True
    except ValueError:
        return False


def test_drill_through_a_link_into_fields_hidden_from_the_viewer(callers, data):
    # Finance may not see a customer's notes: no drill from a contract or project through `customer.` may ask
    for entity in ("project", "contract"):
        for condition in ({"customer.notes": {"null": False}}, {"customer.source": "x"}):
            response = drill_list(callers["fin"], entity, condition)
            assert response.status_code in (400, 403), (entity, condition, response.status_code)
            assert "count" not in (response.json or {})


def test_pivot_columns_and_unknown_fields_cannot_be_filtered(callers, data):
    for query in ("f_work_date=2026-03-02", "f_month=2026-03", "f_approved=1", "f_days=1"):
        response = callers["foreman1"].get(f"/api/v1/reports/labour_by_month_pivot?{query}")
        assert response.status_code == 400, (query, response.status_code)


def test_the_last_month_a_date_can_have(callers, data, admin):
    # a receipt dated 9999-12: its month's drill link ends in year 10000, which Python's dates cannot hold
    r = admin.post("/api/v1/receipt/", json={"project": data["foreman1"], "received_on": "9999-12-15", "amount": 7})
    assert r.status_code in (201, 422), r.json
    if r.status_code == 422:
        return  # refused at the door: nothing to report
    try:
        for url in ("/api/v1/reports/cash_flow", "/api/v1/reports/cash_flow?f_month=9999-12",
                    "/api/v1/reports/receipts_by_month", "/api/v1/dashboards/management"):
            response = callers["fin"].get(url)
            assert response.status_code == 200, (url, response.status_code, response.data[:200])
        rows = callers["fin"].get("/api/v1/reports/cash_flow").json["rows"]
        assert rows[-1]["month"]["value"] == "9999-12" and rows[-1]["received"] == 107  # running: 50 + 50 + 7
        drilled = callers["fin"].get("/api/v1" + rows[-1]["drills"]["received"].replace("/list/", "/", 1))
        assert drilled.status_code == 200 and drilled.json["count"] == 3, drilled.json
        pivot = callers["fin"].get("/api/v1/reports/receipts_by_month").json["rows"]
        cell = next(row for row in pivot if row["project"]["value"] == data["foreman1"])["pivot"]["9999-12"]
        drilled = callers["fin"].get("/api/v1" + cell["drill"].replace("/list/", "/", 1))
        assert drilled.status_code == 200 and drilled.json["count"] == 2, drilled.json  # running along the months
    finally:
        assert admin.delete(f"/api/v1/receipt/{r.json['id']}").status_code == 200
