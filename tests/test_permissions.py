"""Roles from YAML: every role x entity x action x (UI, API) matches the grants exactly; row scopes, hide, mask."""
from __future__ import annotations

import re

import pytest
from conftest import jwt_headers, login
from app.portal import portal_of

PASSWORD = "Role-pass-1"
MISSING = 999999  # an id that does not exist: allowed requests get 404, denied ones are refused first


def make_user(app, username, *role_names):
    with app.app_context():
        sm = app.appbuilder.sm
        user = sm.find_user(username=username)
        if user is None:
            roles = [sm.find_role(name) for name in role_names]
            assert all(roles), role_names
            user = sm.add_user(username, username, "Test", f"{username}@example.com", roles, PASSWORD)
        return user.id


# action -> (method, path, extra request arguments, status when allowed); a refused request never gets that status.
# Allowed writes aim at a missing id or send no data, so nothing is stored.
UI_PROBES = {
    "read": ("get", "/{entity}/list/", {}, 200),
    "create": ("get", "/{entity}/add", {}, 200),
    "update": ("get", f"/{{entity}}/edit/{MISSING}", {}, 404),
    "delete": ("post", f"/{{entity}}/delete/{MISSING}", {}, 404),
    "export": ("get", "/{entity}/export/csv", {}, 200),
    "import": ("get", "/{entity}/import", {}, 200),
}
API_PROBES = {
    "read": ("get", "/api/v1/{entity}/", {}, 200),
    "create": ("post", "/api/v1/{entity}/", {"json": {}}, 422),  # field errors
    "update": ("put", f"/api/v1/{{entity}}/{MISSING}", {"json": {}}, 404),
    "delete": ("delete", f"/api/v1/{{entity}}/{MISSING}", {}, 404),
    "export": ("get", "/api/v1/{entity}/export?format=csv", {}, 200),
    "import": ("post", "/api/v1/{entity}/import", {}, 400),  # "choose a file"
}


def _probe(probes, client, entity: str, action: str, **extra):
    """(allowed?, status) for one action on one entity."""
    method, path, arguments, allowed_status = probes[action]
    response = getattr(client, method)(path.format(entity=entity), **arguments, **extra)
    return response.status_code == allowed_status, response.status_code


def ui_probe(client, entity: str, action: str):
    return _probe(UI_PROBES, client, entity, action)


def api_probe(client, headers, entity: str, action: str):
    return _probe(API_PROBES, client, entity, action, headers=headers)


CRUD = ("read", "create", "update", "delete", "import", "export")


def test_every_role_entity_action_matches_the_yaml(app):
    spec = portal_of(app).spec
    mismatches, probes = [], 0
    for role in spec.roles:
        username = f"matrix_{role.name.lower()}"
        make_user(app, username, role.name)
        ui = login(app.test_client(), username, PASSWORD)
        api_client = app.test_client()
        headers = jwt_headers(api_client, username, PASSWORD)
        for entity in spec.entities:
            granted = role.actions(entity.name)
            for action in CRUD:
                expected = action in granted
                for channel, (allowed, status) in (("UI", ui_probe(ui, entity.snake, action)),
                                                   ("API", api_probe(api_client, headers, entity.snake, action))):
                    probes += 1
                    if allowed != expected:
                        kind = "leak" if allowed else "over-denial"
                        mismatches.append(f"{kind}: {role.name} {action} {entity.name} via {channel} -> {status}")
        for report in spec.reports:  # report access by id, on the page and the API
            expected = report.id in role.reports and "read" in role.actions(report.entity)
            page = ui.get(f"/reports/{report.id}").status_code == 200
            data = api_client.get(f"/api/v1/reports/{report.id}", headers=headers).status_code == 200
            for channel, allowed in (("UI", page), ("API", data)):
                probes += 1
                if allowed != expected:
                    mismatches.append(f"{'leak' if allowed else 'over-denial'}: {role.name} report {report.id} via {channel}")
    assert probes == len(spec.roles) * (len(spec.entities) * len(CRUD) * 2 + len(spec.reports) * 2)
    assert mismatches == []


def test_admin_can_do_everything(app, admin_client):
    headers = jwt_headers(app.test_client())
    client = app.test_client()
    for entity in portal_of(app).spec.entities:
        for action in CRUD:
            assert ui_probe(admin_client, entity.snake, action)[0], (entity.name, action)
            assert api_probe(client, headers, entity.snake, action)[0], (entity.name, action)


def test_roles_are_synced_from_yaml_and_edits_are_replaced(app, tmp_path_factory):
    with app.app_context():
        sm = app.appbuilder.sm
        sales = sm.find_role("Sales")
        names = {(pv.permission.name, pv.view_menu.name) for pv in sales.permissions}
        assert ("can_export", "Customer") in names and ("can_delete", "Customer") not in names
        assert ("menu_access", "crm") in names and ("menu_access", "tickets") not in names
        finance = sm.find_role("Finance")  # grants merged from crm, tickets and labour
        finance_views = {pv.view_menu.name for pv in finance.permissions}
        assert {"Customer", "Ticket", "LabourEntry"} <= finance_views


@pytest.fixture(scope="module")
def people(app):
    """Two salespeople, a finance clerk, an agent and a foreman, with records owned by some of them."""
    ids = {name: make_user(app, name, role) for name, role in
           [("sales1", "Sales"), ("sales2", "Sales"), ("finance1", "Finance"), ("agent1", "SupportAgent"),
            ("foreman1", "SiteForeman"), ("foreman2", "SiteForeman")]}
    admin = app.test_client()
    h = jwt_headers(admin)

    def post(entity, **payload):
        response = admin.post(f"/api/v1/{entity}/", json=payload, headers=h)
        assert response.status_code == 201, response.json
        return response.json["id"]

    ids["c1"] = post("customer", name="甲方一号", owner=ids["sales1"], phone="13911112222", notes="secret-note-1",
                     source="referral", credit_limit="500000", email="boss@jia.cn")
    ids["c1b"] = post("customer", name="甲方一号B", owner=ids["sales1"])
    ids["c2"] = post("customer", name="乙方二号", owner=ids["sales2"], notes="secret-note-2")
    ids["f2"] = post("follow_up", customer=ids["c2"], summary="乙方的跟进")
    ids["p1"] = post("project", code="RS-1", name="一号工地", manager=ids["foreman1"])
    ids["p2"] = post("project", code="RS-2", name="二号工地", manager=ids["foreman2"])
    ids["w"] = post("worker", name="钢筋工老赵", trade="rebar", day_rate="420", id_card="110101199001011234",
                    bank_account="6222020200112233445", projects=[ids["p1"], ids["p2"]])
    ids["e2"] = post("labour_entry", work_date="2026-11-01", worker=ids["w"], project=ids["p2"], hours="8", days="1",
                     rate="420")
    ids["t_agent"] = post("ticket", subject="给客服的工单", customer=ids["c1"], assignee=ids["agent1"])
    ids["t_other"] = post("ticket", subject="别人的工单", customer=ids["c1"])
    return ids


def as_user(app, username):
    ui = login(app.test_client(), username, PASSWORD)
    api = app.test_client()
    return ui, api, jwt_headers(api, username, PASSWORD)


def test_sales_sees_and_edits_only_own_customers(app, people):
    ui, api, h = as_user(app, "sales1")
    listing = api.get("/api/v1/customer/", headers=h).json
    assert sorted(listing["ids"]) == sorted([people["c1"], people["c1b"]]) and listing["count"] == 2
    page = ui.get("/customer/list/").text
    assert "甲方一号" in page and "乙方二号" not in page
    assert api.get(f"/api/v1/customer/{people['c2']}", headers=h).status_code == 404
    assert ui.get(f"/customer/show/{people['c2']}").status_code == 404
    assert ui.get(f"/customer/edit/{people['c2']}").status_code == 404
    assert api.put(f"/api/v1/customer/{people['c2']}", json={"name": "hijack"}, headers=h).status_code == 404
    # filtering cannot widen the scope
    wide = api.get("/api/v1/customer/", headers=h, query_string={"q": f"(filters:!((col:owner,opr:rel_o_m,value:{people['sales2']})))"})
    assert wide.status_code in (200, 400) and people["c2"] not in (wide.json.get("ids") or [])


def test_sales_new_customer_is_forced_to_be_their_own(app, people):
    ui, api, h = as_user(app, "sales1")
    created = api.post("/api/v1/customer/", json={"name": "自己的新客户", "owner": people["sales2"]}, headers=h)
    assert created.status_code == 201, created.json
    assert created.json["result"]["owner"]["id"] == people["sales1"]
    assert ui.post("/customer/add", data={"name": "表单新客户", "owner": str(people["sales2"]), "kind": "company",
                                          "level": "normal"}).status_code == 302
    mine = api.get("/api/v1/customer/", headers=h, query_string={"q": "(filters:!((col:name,opr:eq,value:表单新客户)))"}).json
    assert mine["count"] == 1 and mine["result"][0]["owner"]["id"] == people["sales1"]


def test_sales_related_records_follow_the_customer_scope(app, people):
    ui, api, h = as_user(app, "sales1")
    assert api.get(f"/api/v1/follow_up/{people['f2']}", headers=h).status_code == 404
    refused = api.post("/api/v1/follow_up/", json={"customer": people["c2"], "summary": "偷跟进"}, headers=h)
    assert refused.status_code == 422 and "customer" in refused.json["message"]
    add_form = ui.get("/follow_up/add").text
    assert 'data-lookup-url="/follow_up/lookup/customer"' in add_form  # the picker offers what its lookup finds
    offered = [r["title"] for r in ui.get("/follow_up/lookup/customer").json["results"]]
    assert "甲方一号" in offered and "乙方二号" not in offered
    show = ui.get(f"/customer/show/{people['c1']}").text
    tabs = re.findall(r'href="#(\w+)View" data-toggle="tab"', show)
    assert sorted(tabs) == ["Contact", "Contract", "FollowUp"], "Sales may not read tickets or projects: no panels for them"
    assert "给客服的工单" not in show


def test_finance_hidden_and_masked_customer_fields(app, people):
    ui, api, h = as_user(app, "finance1")
    record = api.get(f"/api/v1/customer/{people['c1']}", headers=h).json
    result = record["result"]
    assert "notes" not in result and "source" not in result
    assert result["phone"] == "139****2222" and result["email"] == "b****@jia.cn"
    assert result["credit_limit"] == "500000.00"
    assert "notes" not in record["label_columns"]
    listing = api.get("/api/v1/customer/", headers=h).json
    assert all("notes" not in r for r in listing["result"])
    assert "secret-note" not in str(listing)
    show = ui.get(f"/customer/show/{people['c1']}").text
    assert "secret-note-1" not in show and "139****2222" in show and "13911112222" not in show and "+86 139" not in show
    page = ui.get("/customer/list/").text
    assert "+86 139 1111 2222" not in page


def test_hidden_and_masked_fields_cannot_be_searched_or_sorted(app, people):
    ui, api, h = as_user(app, "finance1")
    for column in ("notes", "phone"):
        q = f"(filters:!((col:{column},opr:ct,value:secret)))"
        response = api.get("/api/v1/customer/", headers=h, query_string={"q": q})
        assert response.status_code == 400, (column, response.json)
    assert api.get("/api/v1/customer/", headers=h, query_string={"q": "(order_column:phone,order_direction:asc)"}).status_code == 400
    everyone = ui.get("/customer/list/").text.count("/customer/show/")
    probing = ui.get("/customer/list/?_flt_2_notes=secret-note-1").text  # filter on a hidden field is ignored
    assert probing.count("/customer/show/") == everyone > 1
    masked = ui.get("/customer/list/?_flt_0_phone=139").text  # and on a masked one
    assert masked.count("/customer/show/") == everyone
    search_options = re.findall(r'<a href="#" name="(\w+)" class="filter">', probing)
    assert "name" in search_options and "phone" not in search_options


def test_foreman_works_only_on_own_sites(app, people):
    ui, api, h = as_user(app, "foreman1")
    assert api.get("/api/v1/project/", headers=h).json["ids"] == [people["p1"]]
    assert api.get(f"/api/v1/labour_entry/{people['e2']}", headers=h).status_code == 404
    other_site = api.post("/api/v1/labour_entry/", json={"work_date": "2026-11-02", "worker": people["w"], "project": people["p2"],
                                                          "hours": "8", "days": "1", "rate": "420"}, headers=h)
    assert other_site.status_code == 422 and "project" in other_site.json["message"]
    own_site = api.post("/api/v1/labour_entry/", json={"work_date": "2026-11-02", "worker": people["w"], "project": people["p1"],
                                                        "hours": "8", "days": "1", "rate": "420"}, headers=h)
    assert own_site.status_code == 201, own_site.json
    worker = api.get(f"/api/v1/worker/{people['w']}", headers=h).json["result"]
    assert "bank_account" not in worker and worker["id_card"] == "110****1234"
    refused = api.put(f"/api/v1/worker/{people['w']}", json={"id_card": "110101199001019999"}, headers=h)
    assert refused.status_code == 422 and "id_card" in refused.json["message"]
    edit_form = ui.get(f"/worker/edit/{people['w']}").text
    assert "110101199001011234" not in edit_form and "6222020200112233445" not in edit_form


def test_agent_sees_assigned_tickets_and_customers_without_credit(app, people):
    ui, api, h = as_user(app, "agent1")
    assert api.get("/api/v1/ticket/", headers=h).json["ids"] == [people["t_agent"]]
    customer = api.get(f"/api/v1/customer/{people['c1']}", headers=h).json["result"]
    assert "credit_limit" not in customer and customer["phone"] == "+8613911112222"
    new = api.post("/api/v1/ticket/", json={"subject": "新工单", "customer": people["c2"]}, headers=h)
    assert new.status_code == 201 and new.json["result"]["assignee"]["id"] == people["agent1"]


def test_a_permission_change_in_one_worker_is_seen_by_another_at_its_next_request(app, tmp_path_factory):
    """Permissions are kept per set of roles while FAB's permission tables keep their version (read with the
    user): two app instances on one database stand for two gunicorn workers."""
    from conftest import make_app

    url = app.config["SQLALCHEMY_DATABASE_URI"]
    other = make_app(tmp_path_factory, "permissions_other_worker", SQLALCHEMY_DATABASE_URI=url)
    make_user(app, "keeper", "Finance")
    client = login(app.test_client(), "keeper", PASSWORD)
    assert client.get("/payment/list/").status_code == 200
    from conftest import sql_statements
    with sql_statements(app) as seen:
        assert client.get("/payment/list/").status_code == 200
    assert not [s for s in seen if "ab_permission_view_role" in s], "the role's permissions are kept, not re-read"
    assert [s for s in seen if "portal_user_locale" in s and "ab_user" in s], "language and version ride on the user"
    with other.app_context():  # the "other worker" takes list access away from Finance
        sm = other.appbuilder.sm
        sm.del_permission_role(sm.find_role("Finance"), sm.find_permission_view_menu("can_read", "Payment"))
    assert client.get("/payment/list/").status_code in (302, 403)
    with other.app_context():
        sm = other.appbuilder.sm
        sm.add_permission_role(sm.find_role("Finance"), sm.find_permission_view_menu("can_read", "Payment"))
    assert client.get("/payment/list/").status_code == 200
