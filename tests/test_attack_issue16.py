"""Adversarial review of issue 16's surfaces: the change feed, merge (API and page), duplicate candidates and the
duplicates page, the access audit and import round-trips keyed by `key=`, probed by signed-in low-privilege users
(Sales with a row scope, Finance with hidden and masked fields) and anonymously, through the FAB test client."""
from __future__ import annotations

import csv
import io
import shutil

import pytest

from attack_support import PASSWORD, AttackCaller as Caller, add_users, caller_fixtures, user_id
from conftest import ROOT, login, make_app

USERS = {"sales1": "Sales", "sales2": "Sales", "fin": "Finance", "boss": "Manager"}
CITY = "浙江省杭州市西湖区文三路{}号"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    schemas = tmp_path_factory.mktemp("attack16_schemas")
    text = (ROOT / "schemas" / "crm.yaml").read_text(encoding="utf-8")
    old = "can: {Customer: [read, create, update, export], Contact: all"
    assert old in text
    # Sales may also import customers here: the import's key= and duplicate flags are probed under a row scope
    (schemas / "crm.yaml").write_text(text.replace(old, "can: {Customer: [read, create, update, export, import], "
                                                        "Contact: all"), encoding="utf-8")
    app = make_app(tmp_path_factory, "attack16", schema_dir=schemas)
    add_users(app, USERS)
    return app


admin, callers = caller_fixtures(USERS)


def create(caller, entity, body, allow=True):
    response = caller.post(f"/api/v1/{entity}/" + ("?allow_duplicate=1" if allow else ""), json=body)
    assert response.status_code == 201, response.json
    return response.json["id"]


@pytest.fixture(scope="module")
def data(app, admin, callers):
    """Customers of sales1 and sales2 (one near-duplicate pair across the two, one within sales2), contacts."""
    s1, s2 = user_id(app, "sales1"), user_id(app, "sales2")
    ids = {
        "mine": create(admin, "customer", {"name": "杭州甲建筑有限公司", "phone": "13800138001", "owner": s1,
                                            "address": CITY.format(1), "notes": "SECRET-NOTE-1", "source": "referral"}),
        "theirs": create(admin, "customer", {"name": "杭州甲建筑有限公司 ", "phone": "13800138002", "owner": s2,
                                              "address": CITY.format(2), "notes": "SECRET-NOTE-2",
                                              "email": "theirs@example.com"}),
        "theirs2": create(admin, "customer", {"name": "杭州甲建筑有限公司。", "phone": "13800138003", "owner": s2,
                                               "address": CITY.format(3)}),
    }
    ids["my_contact"] = create(admin, "contact", {"customer": ids["mine"], "name": "张三", "phone": "13900139001"})
    ids["my_contact2"] = create(admin, "contact", {"customer": ids["mine"], "name": "张三丰", "phone": "13900139002"})
    ids["their_contact"] = create(admin, "contact", {"customer": ids["theirs"], "name": "李四", "phone": "13900139003"})
    return ids


def feed(caller, entity, **args):
    response = caller.get(f"/api/v1/{entity}/changes", query_string=args)
    assert response.status_code == 200, response.json
    return response.json


def all_changes(caller, entity):
    changes, since = [], None
    while True:
        body = feed(caller, entity, **({"since": since} if since else {}), limit=1000)
        changes += body["changes"]
        if not body["changes"]:
            return changes
        since = body["next"]


# -- change feed ---------------------------------------------------------------------------------------------------

def test_change_feed_only_shows_the_callers_rows_and_deletes(app, admin, callers, data):
    gone = create(admin, "customer", {"name": "删除测试客户", "phone": "13800138099", "owner": user_id(app, "sales2")})
    assert admin.delete(f"/api/v1/customer/{gone}").status_code == 200
    doomed = create(admin, "contact", {"customer": data["theirs"], "name": "王五", "phone": "13900139099"})
    assert admin.delete(f"/api/v1/contact/{doomed}").status_code == 200
    assert admin.put(f"/api/v1/customer/{data['theirs']}", json={"level": "vip"}).status_code == 200
    sales1 = callers["sales1"]
    seen = {c["id"] for c in all_changes(sales1, "customer")}
    assert seen == {data["mine"]}, seen
    contacts = {c["id"] for c in all_changes(sales1, "contact")}
    assert contacts == {data["my_contact"], data["my_contact2"]}, contacts
    assert doomed in {c["id"] for c in all_changes(callers["sales2"], "contact")}
    assert gone in {c["id"] for c in all_changes(callers["sales2"], "customer") if c["op"] == "delete"}


def test_change_feed_hides_and_masks_for_finance(callers, data):
    records = [c["record"] for c in all_changes(callers["fin"], "customer") if c["record"]]
    assert records
    text = repr(records)
    for secret in ("SECRET-NOTE", "13800138002", "theirs@example.com", "referral"):
        assert secret not in text
    assert all("notes" not in r and "source" not in r for r in records)


def test_change_feed_refuses_forged_foreign_and_bad_cursors(callers, data):
    sales1 = callers["sales1"]
    first = feed(sales1, "customer", limit=1)
    cursor = first["changes"][0]["cursor"]
    contact_cursor = feed(sales1, "contact", limit=1)["next"]
    tx, seq, mac = cursor.split("-")
    forged = [contact_cursor, f"{tx}-{int(seq, 16) + 1:x}-{mac}", f"{tx}-{seq}-{'0' * len(mac)}", "0-0-0",
              "ffffffffffffffff-0-" + mac, "-1--1-x", "x" * 201, cursor + "-", "1-1", "\x00", "１-1-" + mac,
              f"{tx.upper()}-{seq}-{mac.upper()}", f" {cursor}"]
    for bad in forged:
        response = sales1.get("/api/v1/customer/changes", query_string={"since": bad})
        assert response.status_code == 400, (bad, response.status_code, response.json)
        assert "cursor" in response.json["message"]
    # a cursor signed for sales1 works for anyone on the same entity, but shows only their own rows
    other = feed(callers["sales2"], "customer", since=cursor)
    assert data["mine"] not in {c["id"] for c in other["changes"]}


@pytest.mark.parametrize("limit", ["0", "-1", "1001", "1e3", "10.0", "", " 5", "9" * 40, "٣"])
def test_change_feed_refuses_bad_limits(callers, data, limit):
    response = callers["sales1"].get("/api/v1/customer/changes", query_string={"limit": limit})
    assert response.status_code == 400, (limit, response.status_code)
    assert "limit" in response.json["message"]


def test_change_feed_anonymous_and_without_permission(app, callers):
    assert app.test_client().get("/api/v1/customer/changes").status_code == 401
    # Finance has no permission on Contact at all
    assert callers["fin"].get("/api/v1/contact/changes").status_code in (401, 403)


def test_change_feed_chinese_message(callers):
    response = callers["sales1"].get("/api/v1/customer/changes", query_string={"since": "1-1-1"},
                                     headers={"Accept-Language": "zh"})
    assert response.status_code == 400
    assert any("\u4e00" <= ch <= "\u9fff" for ch in response.json["message"]), response.json


# -- merge ---------------------------------------------------------------------------------------------------------

def rows_of(admin, entity):
    result = admin.get(f"/api/v1/{entity}/", query_string={"q": "(page_size:100)"}).json["result"]
    return {r["id"]: r for r in result}


def test_merge_without_delete_permission_is_403(callers, data):
    response = callers["sales1"].post(f"/api/v1/customer/{data['mine']}/merge", json={"loser": data["theirs"]})
    assert response.status_code == 403


def test_merge_out_of_scope_survivor_or_loser_reads_not_found(admin, callers, data):
    before = rows_of(admin, "contact")
    sales1 = callers["sales1"]
    for survivor, loser in ((data["my_contact"], data["their_contact"]), (data["their_contact"], data["my_contact"]),
                            (data["my_contact"], 999999)):
        response = sales1.post(f"/api/v1/contact/{survivor}/merge", json={"loser": loser})
        assert response.status_code == 404, response.json
        assert response.json["message"] == "Not found."
    # the page: the same answer
    page = login(sales1.client.application.test_client(), "sales1", PASSWORD)
    assert page.get(f"/contact/merge/{data['my_contact']}?loser={data['their_contact']}").status_code == 404
    assert page.get(f"/contact/merge/{data['their_contact']}?loser={data['my_contact']}").status_code == 404
    assert page.post(f"/contact/merge/{data['my_contact']}?loser={data['their_contact']}",
                     data={"confirm": "1"}).status_code == 404
    lookup = page.get(f"/contact/merge_lookup/{data['my_contact']}?q=李")
    assert lookup.status_code == 200 and lookup.json["results"] == [], lookup.json
    assert page.get(f"/contact/merge_lookup/{data['their_contact']}").status_code == 404
    assert rows_of(admin, "contact") == before


@pytest.mark.parametrize("body", [
    {"loser": "abc"}, {"loser": True}, {"loser": [1]}, {"loser": 2 ** 70}, {"loser": -1}, {"loser": 1.5},
    {"loser": None}, {}, {"loser": "1", "extra": 1}, {"loser": "LOSER", "fields": []},
    {"loser": "LOSER", "fields": {"name": "both"}}, {"loser": "LOSER", "fields": {"nope": "loser"}},
    {"loser": "LOSER", "fields": {"customer": 1}}, {"loser": "LOSER", "fields": "name"},
    {"loser": "SELF"}, [1], "x", 5])
def test_merge_bad_bodies_are_400(admin, callers, data, body):
    before = rows_of(admin, "contact")
    if isinstance(body, dict) and body.get("loser") in ("LOSER", "SELF"):
        body = {**body, "loser": data["my_contact2"] if body["loser"] == "LOSER" else data["my_contact"]}
    response = callers["sales1"].post(f"/api/v1/contact/{data['my_contact']}/merge", json=body)
    assert response.status_code == 400, (body, response.status_code, response.json)
    assert response.json["message"]
    assert rows_of(admin, "contact") == before


def test_merge_refuses_non_json(callers, data):
    response = callers["sales1"].post(f"/api/v1/contact/{data['my_contact']}/merge", data="loser=1",
                                      content_type="text/plain")
    assert response.status_code == 400


def test_merge_page_carries_a_csrf_token(app, data):
    page = login(app.test_client(), "sales1", PASSWORD)
    response = page.get(f"/contact/merge/{data['my_contact']}?loser={data['my_contact2']}")
    assert response.status_code == 200
    assert b'name="csrf_token"' in response.data


def test_merge_page_refuses_without_csrf_token(tmp_path_factory, data):
    """With CSRF checks on (as in production), a cross-site POST to the merge page merges nothing."""
    schemas = tmp_path_factory.mktemp("attack16_csrf")
    shutil.copy(ROOT / "schemas" / "crm.yaml", schemas / "crm.yaml")
    app = make_app(tmp_path_factory, "attack16csrf", schema_dir=schemas, WTF_CSRF_ENABLED=True)
    api = Caller(app)
    a = create(api, "contact", {"customer": create(api, "customer", {"name": "CSRF客户"}), "name": "甲"})
    b = create(api, "contact", {"customer": rows_of(api, "contact")[a]["customer"]["id"], "name": "乙"})
    page = app.test_client()
    token_page = page.get("/login/")
    assert token_page.status_code == 200
    import re
    token = re.search(rb'name="csrf_token"[^>]*value="([^"]+)"', token_page.data)
    assert token, token_page.data[:2000]
    signed = page.post("/login/", data={"username": "admin", "password": "password",
                                        "csrf_token": token.group(1).decode()})
    if signed.status_code != 302:  # the admin's password from conftest
        from conftest import ADMIN
        signed = page.post("/login/", data={"username": ADMIN[0], "password": ADMIN[1],
                                            "csrf_token": token.group(1).decode()})
    assert signed.status_code == 302
    forged = page.post(f"/contact/merge/{a}?loser={b}", data={"confirm": "1"})
    assert forged.status_code in (400, 403), forged.status_code
    assert set(rows_of(api, "contact")) >= {a, b}


# -- duplicates ----------------------------------------------------------------------------------------------------

def test_duplicate_409_never_names_records_outside_scope(admin, callers, data):
    sales1 = callers["sales1"]
    near = sales1.post("/api/v1/customer/", json={"name": "杭州甲建筑有限公司", "address": CITY.format(9)})
    body = near.json
    assert near.status_code == 409, body
    assert {c["id"] for c in body["duplicates"]} == {data["mine"]}, body  # the own one only
    assert "SECRET" not in repr(body) and "13800138002" not in repr(body)
    # sales2's similar customers alone are no candidates for sales1: a name only they hold saves
    theirs_only = sales1.post("/api/v1/customer/", json={"name": "杭州甲建筑有限公司。", "address": CITY.format(9)})
    assert theirs_only.status_code in (201, 409), theirs_only.json
    if theirs_only.status_code == 409:
        assert {c["id"] for c in theirs_only.json["duplicates"]} <= {data["mine"]}, theirs_only.json
    else:
        assert admin.delete(f"/api/v1/customer/{theirs_only.json['id']}").status_code == 200


def test_duplicate_form_warning_never_names_records_outside_scope(app, admin, data):
    page = login(app.test_client(), "sales1", PASSWORD)
    response = page.post("/customer/add", data={"name": "杭州甲建筑有限公司", "address": CITY.format(8),
                                                 "kind": "company", "level": "normal"})
    html = response.get_data(as_text=True)
    assert f"/customer/show/{data['mine']}" in html, "the warning names the own near-duplicate (the probe can fail)"
    assert f"/customer/show/{data['theirs']}" not in html and f"/customer/show/{data['theirs2']}" not in html
    assert "13800138002" not in html
    created = [r for r in rows_of(admin, "customer").values() if r["address"] == CITY.format(8)]
    for r in created:
        admin.delete(f"/api/v1/customer/{r['id']}")


def test_duplicates_page_shows_only_pairs_in_scope(app, data):
    sales1 = login(app.test_client(), "sales1", PASSWORD)
    html = sales1.get("/customer/duplicates/").get_data(as_text=True)
    assert f"/customer/show/{data['theirs']}" not in html and f"/customer/show/{data['theirs2']}" not in html
    sales2 = login(app.test_client(), "sales2", PASSWORD)
    html2 = sales2.get("/customer/duplicates/")
    assert html2.status_code == 200
    text = html2.get_data(as_text=True)
    assert f"/customer/show/{data['theirs']}" in text, "sales2's own pair is listed (the probe can fail)"
    assert f"/customer/show/{data['mine']}" not in text


def test_duplicates_page_for_finance_masks_and_hides(app, data):
    fin = login(app.test_client(), "fin", PASSWORD)
    response = fin.get("/customer/duplicates/")
    assert response.status_code in (200, 403)
    text = response.get_data(as_text=True)
    for secret in ("13800138001", "13800138002", "13800138003", "SECRET-NOTE", "theirs@example.com"):
        assert secret not in text


@pytest.mark.parametrize("after", ["x", "1-", "-1", "1-x", "9" * 40 + "-1", "1-1-1", "\x00"])
def test_duplicates_page_bad_paging_is_400(app, data, after):
    sales1 = login(app.test_client(), "sales1", PASSWORD)
    assert sales1.get("/customer/duplicates/", query_string={"after": after}).status_code == 400


def test_allow_duplicate_cannot_bypass_unique_or_scope(admin, callers, data):
    before = rows_of(admin, "customer")
    clash = callers["sales1"].post("/api/v1/customer/?allow_duplicate=1", json={"name": "X", "phone": "13800138002"})
    assert 400 <= clash.status_code < 500 and clash.status_code != 404
    assert "SECRET" not in repr(clash.json) and str(data["theirs"]) not in repr(clash.json.get("duplicates", ""))
    # editing another's record with allow_duplicate is still out of scope
    put = callers["sales1"].put(f"/api/v1/customer/{data['theirs']}?allow_duplicate=1", json={"level": "vip"})
    assert put.status_code == 404
    assert rows_of(admin, "customer") == before


# -- audit ---------------------------------------------------------------------------------------------------------

def test_audit_is_admin_only(app, callers):
    for name in USERS:
        assert callers[name].get("/api/v1/audit").status_code == 403
        assert login(app.test_client(), name, PASSWORD).get("/audit/").status_code == 403
    assert app.test_client().get("/api/v1/audit").status_code == 401


@pytest.mark.parametrize("args", [{"page_size": "100000"}, {"page_size": "0"}, {"page_size": "-1"},
                                  {"page": "-1"}, {"page": "99999999999999999999"}, {"since": "yesterday"},
                                  {"until": "2026-13-40"}, {"kind": "x" * 5000}, {"bogus": "1"},
                                  {"q": "(page_size:100000)"}, {"q": "((("}, {"page_size": "1e2"}])
def test_audit_bad_filters_are_400(admin, args):
    response = admin.get("/api/v1/audit", query_string=args)
    assert response.status_code == 400, (args, response.status_code, response.json)


@pytest.mark.parametrize("user", ["' OR 1=1 --", "%", "_", "admin%"])
def test_audit_filter_is_not_injectable(admin, user):
    response = admin.get("/api/v1/audit", query_string={"user": user, "page_size": 100})
    assert response.status_code in (200, 400), response.status_code
    if response.status_code == 200:
        assert response.json["result"] == [], (user, response.json["result"][:2])


# -- import round-trip ---------------------------------------------------------------------------------------------

def csv_upload(rows) -> io.BytesIO:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return io.BytesIO(buffer.getvalue().encode("utf-8"))


def do_import(caller, entity, rows, key, dry_run=True):
    return caller.post(f"/api/v1/{entity}/import", content_type="multipart/form-data",
                       data={"file": (csv_upload(rows), "c.csv"), "key": key,
                             "dry_run": "true" if dry_run else "false"})


def test_import_by_id_does_not_reveal_out_of_scope_records(admin, callers, data):
    before = rows_of(admin, "contact")
    sales1 = callers["sales1"]
    rows = [["ID", "Customer", "Name"], [str(data["their_contact"]), "杭州甲建筑有限公司", "改名"],
            ["99999999", "杭州甲建筑有限公司", "改名"]]
    for dry_run in (True, False):
        response = do_import(sales1, "contact", rows, "id", dry_run=dry_run)
        body = response.json
        assert response.status_code == 422, body
        assert "李四" not in repr(body) and not body.get("updated"), body
        by_row = {}
        for error in body["errors"]:
            by_row.setdefault(error["row"], []).append((error["field"], error["message"]))
        # an out-of-scope id reads exactly like an id that does not exist
        assert by_row[2] == by_row[3] and by_row[2], body["errors"]
    assert rows_of(admin, "contact") == before


def test_import_by_unique_key_never_updates_or_shows_out_of_scope_records(admin, callers, data):
    before = rows_of(admin, "customer")
    rows = [["Name", "Phone", "Notes"], ["抢客户", "13800138002", "mine now"], ["抢客户2", "13800138077", ""]]
    for dry_run in (True, False):
        response = do_import(callers["sales1"], "customer", rows, "phone", dry_run=dry_run)
        body = response.json
        assert response.status_code == 422, body
        assert not body.get("updated") and not body.get("written"), body
        text = repr(body)
        for secret in ("杭州甲建筑", "SECRET", "theirs@example.com"):
            assert secret not in text, body
        assert [(e["row"], e["message"]) for e in body["errors"]] == [
            (2, "This record exists but is not yours to change.")], body["errors"]
    assert rows_of(admin, "customer") == before


def test_import_duplicate_flags_only_name_records_in_scope(admin, callers, data):
    before = rows_of(admin, "customer")
    rows = [["Name", "Address"], ["杭州甲建筑有限公司", CITY.format(7)]]
    response = do_import(callers["sales1"], "customer", rows, "", dry_run=True)
    body = response.json
    assert response.status_code in (200, 422), body
    flagged = repr(body["duplicates"])
    assert body["duplicates"], body
    assert str(data["mine"]) in flagged
    for pk in (data["theirs"], data["theirs2"]):
        assert f"'id': {pk}" not in flagged, body["duplicates"]
    assert "SECRET" not in repr(body) and "13800138002" not in repr(body)
    assert rows_of(admin, "customer") == before


@pytest.mark.parametrize("key", ["notes", "owner", "name", "id,phone", "phone,phone", "x" * 500, "__class__",
                                 "address_city", "code,", ","])
def test_import_bad_keys_are_refused(admin, callers, data, key):
    before = rows_of(admin, "customer")
    for dry_run in (True, False):
        response = do_import(callers["boss"], "customer", [["Name"], ["x"]], key, dry_run=dry_run)
        assert response.status_code == 422, (key, response.status_code, response.json)
        assert [e["message"] for e in response.json["errors"]] == [
            "The key must be id, a unique field or fields that are unique together."], response.json
    assert rows_of(admin, "customer") == before


def test_deeply_nested_query_argument_is_400(admin):
    for url in ("/api/v1/audit", "/api/v1/customer/", "/api/v1/customer/changes"):
        for q in ("(" * 3000, "[" * 100000, "!(" * 3000):
            response = admin.get(url, query_string={"q": q})
            assert response.status_code in (200, 400), (url, q[:4], response.status_code)
            if url != "/api/v1/customer/changes":
                assert response.status_code == 400


# -- more probes ---------------------------------------------------------------------------------------------------

def test_merge_lookup_wildcards_stay_in_scope(app, data):
    page = login(app.test_client(), "sales1", PASSWORD)
    for q in ("%", "_", "", "李", "*", "\\"):
        response = page.get(f"/contact/merge_lookup/{data['my_contact']}", query_string={"q": q})
        assert response.status_code == 200, (q, response.status_code)
        ids = {r["id"] for r in response.json["results"]}
        assert data["their_contact"] not in ids and data["my_contact"] not in ids, (q, response.json)
    assert page.get(f"/contact/merge_lookup/{data['my_contact']}", query_string={"q": "\x00"}).status_code == 400


def test_merge_page_escapes_titles(app, admin, data):
    evil = "<img src=x onerror=alert(1)>"
    a = create(admin, "contact", {"customer": data["mine"], "name": evil})
    page = login(app.test_client(), "sales1", PASSWORD)
    response = page.get(f"/contact/merge/{data['my_contact']}?loser={a}")
    assert response.status_code == 200
    assert evil not in response.get_data(as_text=True)
    assert admin.delete(f"/api/v1/contact/{a}").status_code == 200


def test_duplicate_check_on_edit_stays_in_scope(admin, callers, data):
    mine = create(admin, "customer", {"name": "另一家公司", "owner": user_id(admin.client.application, "sales1"),
                                      "address": CITY.format(5)})
    put = callers["sales1"].put(f"/api/v1/customer/{mine}", json={"name": "杭州甲建筑有限公司。"})
    assert put.status_code in (200, 409), put.json
    if put.status_code == 409:
        assert {c["id"] for c in put.json["duplicates"]} <= {data["mine"]}, put.json
    assert admin.delete(f"/api/v1/customer/{mine}").status_code == 200


@pytest.mark.parametrize("args", [{"page_size": "100000"}, {"page": "-1"}, {"since": "x"}, {"kind": "nope"}])
def test_audit_page_bad_filters_are_refused(app, args):
    page = login(app.test_client())
    response = page.get("/audit/", query_string=args)
    assert response.status_code == 200, response.status_code  # the unfiltered first page, with the reason flashed
    assert "alert-danger" in response.get_data(as_text=True), args


def test_change_feed_shows_cascaded_deletes_to_the_owner_only(app, admin, callers):
    s2 = user_id(app, "sales2")
    customer = create(admin, "customer", {"name": "级联删除客户", "phone": "13800138066", "owner": s2})
    contact = create(admin, "contact", {"customer": customer, "name": "赵六"})
    since = {name: feed(callers[name], "contact", limit=1000) for name in ("sales1", "sales2")}
    for name in since:  # to the end of each feed (SQLite reuses a deleted contact's id: only what follows counts)
        while since[name]["changes"]:
            since[name] = feed(callers[name], "contact", since=since[name]["next"], limit=1000)
    assert admin.delete(f"/api/v1/customer/{customer}").status_code == 200
    assert ("delete", contact) in {(c["op"], c["id"]) for c in all_changes(admin, "contact")}, "logged"
    after = feed(callers["sales2"], "contact", since=since["sales2"]["next"], limit=1000)
    assert [(c["op"], c["id"]) for c in after["changes"]] == [("delete", contact)], after
    assert feed(callers["sales1"], "contact", since=since["sales1"]["next"], limit=1000)["changes"] == []
