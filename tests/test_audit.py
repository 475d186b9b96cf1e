"""The access audit log (issue 16) over HTTP: sign-ins (form and API, ok and failed, an unknown name recorded like a
wrong password), exports (who, entity, filter, rows), imports (counts), permission changes (a user's roles, a
role's permissions), `record_event` in the caller's transaction; Admin only (page and `GET /api/v1/audit`), filters,
paging, capped count, append-only (405). Retention runs: tests/test_retention.py."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text

from conftest import ADMIN, jwt_headers, login, make_app, post_csv

PASSWORD = "Audit-pass-1"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return make_app(tmp_path_factory, "audit")


@pytest.fixture(scope="module")
def admin(app):
    client = app.test_client()
    headers = jwt_headers(client)

    class Api:
        def __getattr__(self, method):
            return lambda url, **kw: getattr(client, method)(url, headers={**headers, **kw.pop("headers", {})}, **kw)
    return Api()


def make_user(app, username, *role_names) -> int:
    with app.app_context():
        sm = app.appbuilder.sm
        user = sm.find_user(username=username)
        if user is None:
            user = sm.add_user(username, username, "Test", f"{username}@example.com",
                               [sm.find_role(name) for name in role_names], PASSWORD)
        return user.id


def entries(admin, **args) -> list[dict]:
    response = admin.get("/api/v1/audit", query_string={"page_size": 100, **args})
    assert response.status_code == 200, response.json
    return response.json["result"]


def latest(admin, kind: str) -> dict:
    return entries(admin, kind=kind)[0]


def test_form_and_api_sign_ins_ok_and_failed(app, admin):
    with app.app_context():
        admin_id = app.appbuilder.sm.find_user(username=ADMIN[0]).id
    login(app.test_client())
    ok = latest(admin, "login")
    assert (ok["username"], ok["user_id"], ok["detail"], ok["remote_addr"]) == (ADMIN[0], admin_id, {"method": "form"},
                                                                                "127.0.0.1")
    before = len(entries(admin, kind="login_failed"))
    client = app.test_client()
    wrong = client.post("/login/", data={"username": ADMIN[0], "password": "not-it"})
    unknown = client.post("/login/", data={"username": "nobody-here", "password": "not-it"})
    assert wrong.status_code == unknown.status_code
    api_wrong = client.post("/api/v1/security/login", json={"username": ADMIN[0], "password": "x", "provider": "db"})
    api_unknown = client.post("/api/v1/security/login", json={"username": "ghost", "password": "x", "provider": "db"})
    assert api_wrong.status_code == api_unknown.status_code == 401
    failed = entries(admin, kind="login_failed")[:4]
    assert len(entries(admin, kind="login_failed")) == before + 4
    assert [(e["username"], e["detail"]["method"]) for e in reversed(failed)] == [
        (ADMIN[0], "form"), ("nobody-here", "form"), (ADMIN[0], "api"), ("ghost", "api")]
    # an unknown name and a real one with a wrong password leave entries of the same shape: nothing tells them apart
    shapes = {(e["user_id"], e["entity"], tuple(sorted(e["detail"])), e["remote_addr"]) for e in failed}
    assert shapes == {(None, None, ("method",), "127.0.0.1")}
    jwt_headers(app.test_client())
    assert latest(admin, "login")["detail"] == {"method": "api"}


def test_exports_record_who_what_filter_and_rows(app, admin):
    for n in range(3):
        assert admin.post("/api/v1/customer/", json={"name": f"Export-{n}"}).status_code == 201
    page = login(app.test_client())
    exported = page.get("/customer/export/csv?_flt_2_name=Export-").data.decode("utf-8-sig")
    rows = len(exported.strip().splitlines()) - 1
    entry = latest(admin, "export")
    assert rows == 3 and entry["entity"] == "Customer" and entry["username"] == ADMIN[0]
    assert entry["detail"] == {"format": "csv", "filter": {"_flt_2_name": "Export-"}, "rows": 3, "complete": True}
    response = admin.get("/api/v1/customer/export?format=xlsx&q=(filters:!((col:name,opr:sw,value:Export-1)))")
    assert response.status_code == 200 and response.data[:2] == b"PK"
    entry = latest(admin, "export")
    assert entry["detail"]["rows"] == 1 and entry["detail"]["format"] == "xlsx"
    assert entry["detail"]["filter"]["q"] == "(filters:!((col:name,opr:sw,value:Export-1)))"
    ids = [str(c["id"]) for c in admin.get("/api/v1/customer/?q=(filters:!((col:name,opr:sw,value:Export-)))").json["result"]]
    selected = page.post("/customer/bulk", data={"action": "export:csv", "rowid": ids[:2]})
    assert selected.status_code == 200 and len(selected.data.decode("utf-8-sig").strip().splitlines()) == 3
    entry = latest(admin, "export")
    assert entry["detail"]["rows"] == 2 and entry["detail"]["filter"] == {"rowid": ids[:2]}


def test_imports_record_counts_and_a_check_alone_is_not_recorded(app, admin, tmp_path):
    before = len(entries(admin, kind="import"))
    rows = [["Name"], ["Imported A"], ["Imported B"]]
    assert post_csv(admin, {}, "/api/v1/customer/import", rows, dry_run="true").status_code == 200
    assert len(entries(admin, kind="import")) == before
    assert post_csv(admin, {}, "/api/v1/customer/import", rows).status_code == 200
    entry = latest(admin, "import")
    assert entry["entity"] == "Customer" and entry["username"] == ADMIN[0]
    assert entry["detail"] == {"rows": 2, "created": 2, "updated": 0, "errors": 0, "written": True, "key": None}
    path = tmp_path / "customers.csv"
    path.write_text("Name\nFrom the CLI\n", encoding="utf-8")
    result = app.test_cli_runner().invoke(args=["portal", "import", "Customer", str(path)])
    assert result.exit_code == 0, result.output
    entry = latest(admin, "import")
    assert (entry["user_id"], entry["username"], entry["detail"]["created"], entry["detail"]["via"]) == (None, None, 1, "cli")


def test_permission_changes_are_recorded(app, admin):
    user_id = make_user(app, "audit_sales", "Sales")
    with app.app_context():
        sm = app.appbuilder.sm
        finance = sm.find_role("Finance")
        finance_id, permission_ids = finance.id, [p.id for p in finance.permissions]
        extra = next(pv.id for pv in sm.session.query(sm.permissionview_model).all()
                     if pv.id not in permission_ids)
    page = login(app.test_client())
    response = page.post(f"/users/edit/{user_id}", data={
        "first_name": "audit_sales", "last_name": "Test", "username": "audit_sales", "active": "y",
        "email": "audit_sales@example.com", "roles": [str(finance_id)]})
    assert response.status_code == 302, response.data[:1000]
    entry = latest(admin, "permission")
    assert entry["username"] == ADMIN[0]
    assert entry["detail"] == {"action": "user_changed", "user": "audit_sales", "added": ["Finance"], "removed": ["Sales"]}
    response = page.post(f"/roles/edit/{finance_id}", data={
        "name": "Finance", "permissions": [str(i) for i in permission_ids + [extra]]})
    assert response.status_code == 302, response.data[:1000]
    entry = latest(admin, "permission")
    assert entry["detail"]["action"] == "role_changed" and entry["detail"]["role"] == "Finance"
    assert len(entry["detail"]["added"]) == 1 and entry["detail"]["removed"] == []
    assert page.post("/roles/add", data={"name": "Auditors"}).status_code == 302
    assert latest(admin, "permission")["detail"] == {"action": "role_created", "role": "Auditors", "permissions": []}


def test_record_event_joins_the_callers_transaction(app, admin):
    from app.data.audit import record_event

    with app.app_context():
        session = app.appbuilder.session
        record_event("merge", entity="Customer", detail={"survivor": 1, "loser": 2}, session=session)
        session.rollback()
        record_event("merge", user_id=7, username="lead", entity="Customer", detail={"survivor": 1, "loser": 3},
                     session=session)
        session.commit()
    found = entries(admin, kind="merge")
    assert [(e["user_id"], e["username"], e["detail"]) for e in found] == [(7, "lead", {"survivor": 1, "loser": 3})]


def test_only_admin_reads_it_and_nothing_edits_it(app, admin):
    make_user(app, "audit_manager", "Manager")
    manager = app.test_client()
    headers = jwt_headers(manager, "audit_manager", PASSWORD)
    assert manager.get("/api/v1/audit", headers=headers).status_code == 403
    assert manager.get("/api/v1/audit/1", headers=headers).status_code == 403
    assert app.test_client().get("/api/v1/audit").status_code == 401
    login(manager, "audit_manager", PASSWORD)
    assert manager.get("/audit/").status_code == 403
    assert app.test_client().get("/audit/").status_code == 302  # to the sign-in page
    first = entries(admin)[-1]["id"]
    for method in ("post", "put", "delete", "patch"):
        assert getattr(admin, method)("/api/v1/audit", json={}).status_code == 405
        assert getattr(admin, method)(f"/api/v1/audit/{first}", json={}).status_code == 405
    page = login(app.test_client())
    assert page.post(f"/audit/{first}/delete").status_code == 404 and page.post("/audit/").status_code == 405
    with app.app_context():
        count = app.appbuilder.session.execute(text("SELECT count(*) FROM portal_audit WHERE id = :id"),
                                               {"id": first}).scalar()
    assert count == 1 and admin.get(f"/api/v1/audit/{first}").json["result"]["id"] == first


def test_filters_paging_and_capped_count(app, admin):
    everything = entries(admin)
    assert {e["kind"] for e in entries(admin, kind="login")} == {"login"}
    assert {e["username"] for e in entries(admin, user="ghost")} == {"ghost"}
    assert {e["entity"] for e in entries(admin, entity="Customer")} == {"Customer"}
    today = dt.date.today()
    assert len(entries(admin, since=today.isoformat(), until=today.isoformat())) == len(everything)
    assert entries(admin, since=(today + dt.timedelta(days=1)).isoformat()) == []
    assert entries(admin, until=(today - dt.timedelta(days=1)).isoformat()) == []
    rison = admin.get("/api/v1/audit?q=(kind:login_failed,user:ghost,page_size:1)").json
    assert [e["username"] for e in rison["result"]] == ["ghost"] and rison["count"] >= 1
    page0 = admin.get("/api/v1/audit?page_size=2&page=0").json
    page1 = admin.get("/api/v1/audit?page_size=2&page=1").json
    assert [e["id"] for e in page0["result"] + page1["result"]] == [e["id"] for e in everything[:4]]
    assert page0["count"] == len(everything) and page0["count_capped"] is False
    app.config["PORTAL_COUNT_CAP"] = 3
    try:
        capped = admin.get("/api/v1/audit?page_size=1").json
    finally:
        app.config.pop("PORTAL_COUNT_CAP")
    assert capped["count"] == 3 and capped["count_capped"] is True
    for bad in ("kind=nope", "since=yesterday", "page_size=0", "page_size=101", "page=-1", "colour=red",
                "q=(kind:login)&page=1", "q=(kind:(a:b))"):
        response = admin.get(f"/api/v1/audit?{bad}")
        assert response.status_code == 400 and response.json["message"], bad


def test_page_filters_and_escapes(app):
    app.test_client().post("/login/", data={"username": "<script>alert(1)</script>", "password": "x"})
    page = login(app.test_client())
    html = page.get("/audit/?kind=login_failed").data.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    assert 'data-kind="login"' not in html and 'data-kind="login_failed"' in html
    assert 'href="/audit/"' in page.get("/audit/").data.decode()  # Security → Audit log
    zh = page.get("/audit/?kind=nope", headers={"Accept-Language": "zh"}).data.decode()
    assert "kind 必须是以下之一" in zh and 'class="audit-entry"' in zh  # a bad filter is said; all entries shown
    assert "登录失败" in zh and "审计日志" in zh


def test_audit_entries_do_not_block_a_restore():
    """A new portal's sign-ins are audited before its backup is restored; the restore replaces the log anyway."""
    from app.data.backup import rows_in_the_way

    assert rows_in_the_way({"portal_audit": 5, "portal_retention_runs": 1, "customer": 0, "ab_role": 4}) == []
    assert rows_in_the_way({"portal_audit": 5, "customer": 1}) == ["customer"]
