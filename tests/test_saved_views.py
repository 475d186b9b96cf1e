"""Saved views, highlights, quick search and the home page (issue 14), through HTTP on the shipped schemas, with
`my_open_tickets` made the default view of its roles (a copy of the schemas). Dates are relative to today: the
view's `$today+3d` and the highlight's `$today` are evaluated at request time."""
from __future__ import annotations

import datetime as dt
import re
import shutil

import pytest

from conftest import ROOT, jwt_headers, login, make_app

PASSWORD = "Views-pass-1"
USERS = {"agent1": "SupportAgent", "agent2": "SupportAgent", "tmanager": "Manager", "finance": "Finance"}
TODAY = dt.date.today()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    schemas = tmp_path_factory.mktemp("view_schemas")
    for path in (ROOT / "schemas").glob("*.yaml"):
        shutil.copy(path, schemas / path.name)
    tickets = schemas / "tickets.yaml"
    text = tickets.read_text(encoding="utf-8")
    tickets.write_text(text.replace("    home: true                              # a count card on the home page",
                                    "    home: true\n    default: true\n"
                                    "  described:\n    entity: Ticket\n    columns: [number, description]\n"
                                    "    roles: [Finance, Manager]\n"), encoding="utf-8")
    app = make_app(tmp_path_factory, "views", schema_dir=schemas)
    with app.app_context():
        sm = app.appbuilder.sm
        for name, role in USERS.items():
            sm.add_user(name, name, "Test", f"{name}@example.com", [sm.find_role(role)], PASSWORD)
    return app


class Caller:
    def __init__(self, app, username=None):
        self.client = app.test_client()
        self.headers = jwt_headers(self.client, username, PASSWORD) if username else jwt_headers(self.client)

    def __getattr__(self, method):
        return lambda url, **kw: getattr(self.client, method)(url, headers={**self.headers, **kw.pop("headers", {})}, **kw)


def user_id(app, username):
    with app.app_context():
        return app.appbuilder.sm.find_user(username=username).id


def page_client(app, username):
    return login(app.test_client(), username, PASSWORD)


@pytest.fixture(scope="module")
def data(app):
    admin = Caller(app)
    customer = admin.post("/api/v1/customer/", json={"name": "Views Customer", "kind": "company",
                                                      "notes": "zebra-secret-note"})
    assert customer.status_code == 201, customer.json
    agent1, agent2 = user_id(app, "agent1"), user_id(app, "agent2")
    made = {}
    for key, assignee, due in [("soon", agent1, 1), ("later", agent1, 5), ("other", agent2, 1), ("late", agent1, -2)]:
        response = admin.post("/api/v1/ticket/", json={"subject": f"views {key}", "customer": customer.json["id"],
                                                       "assignee": assignee, "due_date": str(TODAY + dt.timedelta(days=due))})
        assert response.status_code == 201, response.json
        made[key] = response.json["id"]
    numbers = {key: admin.get(f"/api/v1/ticket/{pk}").json["result"]["number"] for key, pk in made.items()}
    return {"ids": made, "numbers": numbers, "customer": customer.json["id"]}


# -- YAML views: API, scope, relative dates, roles -------------------------------------------------------------

def test_views_api_lists_the_callers_views_with_counts_in_scope(app, data):
    views = {v["id"]: v for v in Caller(app, "agent1").get("/api/v1/views/").json["result"]}
    assert set(views) == {"my_open_tickets"}  # awaiting_my_approval is for Finance and Manager
    mine = views["my_open_tickets"]
    assert mine["count"] == 2  # soon and late: assigned to agent1, open, due before today+3d
    assert mine["filter"] == {"assignee": "$user", "status": ["open", "in_progress"], "due_date": {"lt": "$today+3d"}}
    assert mine["order"] == ["due_date"] and mine["home"] is True
    finance = {v["id"] for v in Caller(app, "finance").get("/api/v1/views/").json["result"]}
    assert finance == {"awaiting_my_approval", "described"}
    assert Caller(app, "agent2").get("/api/v1/views/").json["result"][0]["count"] == 1


def test_view_rows_follow_the_filter_order_and_columns(app, data):
    response = Caller(app, "agent1").get("/api/v1/views/my_open_tickets")
    assert response.status_code == 200, response.json
    assert response.json["ids"] == [data["ids"]["late"], data["ids"]["soon"]]  # by due_date
    assert response.json["count"] == 2
    assert set(response.json["result"][0]) <= {"number", "subject", "customer", "priority", "due_date", "highlight"}
    assert response.json["result"][0]["highlight"] == ["overdue"]
    assert "highlight" not in response.json["result"][1]
    assert Caller(app, "agent1").get("/api/v1/views/my_open_tickets?page_size=1&page=1").json["ids"] == [data["ids"]["soon"]]
    assert Caller(app, "agent1").get("/api/v1/views/my_open_tickets?page_size=0").status_code == 400
    # paged like the entity list: rison q, the capped count, the view's count filled in
    paged = Caller(app, "agent1").get("/api/v1/views/my_open_tickets?q=(page:1,page_size:1)").json
    assert paged["ids"] == [data["ids"]["soon"]] and paged["page"] == 1 and paged["page_size"] == 1
    assert paged["count"] == paged["view"]["count"] == 2 and paged["count_capped"] is False
    for bad in ("(page:-1)", "(page_size:0)", "(page_size:x)", "(filters:!())", "(((", "!(1)"):
        refused = Caller(app, "agent1").get(f"/api/v1/views/my_open_tickets?q={bad}")
        assert refused.status_code == 400 and refused.json["message"], bad
    app.config["PORTAL_COUNT_CAP"] = 1
    try:
        capped = Caller(app, "agent1").get("/api/v1/views/my_open_tickets").json
        assert capped["count"] == 1 and capped["count_capped"] is True and len(capped["ids"]) == 2
    finally:
        app.config["PORTAL_COUNT_CAP"] = 10000


def test_yaml_view_refused_to_other_roles_and_its_menu_hidden(app, data):
    finance = Caller(app, "finance")
    assert finance.get("/api/v1/views/my_open_tickets").status_code == 403
    assert finance.get("/api/v1/views/no_such_view").status_code == 404
    page = page_client(app, "finance")
    assert page.get("/ticket/list/?view=my_open_tickets").status_code == 403
    assert "?view=my_open_tickets" not in page.get("/ticket/list/").data.decode()
    assert "?view=awaiting_my_approval" in page.get("/").data.decode()  # the menu lists Finance's own view
    agent = page_client(app, "agent1").get("/").data.decode()
    assert "?view=my_open_tickets" in agent and "?view=awaiting_my_approval" not in agent


def test_list_page_applies_the_view_with_scope_highlights_and_legend(app, data):
    numbers = data["numbers"]
    html = page_client(app, "agent1").get("/ticket/list/?view=my_open_tickets").data.decode()
    assert numbers["soon"] in html and numbers["late"] in html
    assert numbers["later"] not in html and numbers["other"] not in html
    late_row = re.search(r'<tr class="([^"]*)"[^>]*data-highlight="overdue"[^>]*>(?:(?!</tr>).)*' + numbers["late"], html, re.S)
    assert late_row and "danger" in late_row.group(1).split()
    assert html.count('data-highlight="overdue"') == 2  # the late row and the legend
    assert 'id="highlight-legend"' in html and "Overdue" in html and 'id="active-view"' in html


def test_default_view_opens_first_and_all_records_leaves_it(app, data):
    client = page_client(app, "agent1")
    opened = client.get("/ticket/list/")
    assert opened.status_code == 302 and opened.headers["Location"].endswith("/ticket/list/?view=my_open_tickets")
    html = client.get("/ticket/list/", follow_redirects=True).data.decode()
    assert 'id="active-view"' in html and data["numbers"]["later"] not in html
    assert 'action="/ticket/bulk?view=my_open_tickets"' in html
    html = client.get("/ticket/list/?view=all").data.decode()
    assert 'id="active-view"' not in html and data["numbers"]["later"] in html
    admin = login(client.application.test_client()).get("/ticket/list/").data.decode()
    assert 'id="active-view"' not in admin  # Admin has no default view


def test_hidden_columns_never_appear(app, data):
    """`described` lists description, which Finance hides: left out for Finance, shown to Manager."""
    finance = Caller(app, "finance")
    rows = finance.get("/api/v1/views/described").json
    assert rows["count"] == 4 and rows["list_columns"] == ["number"]
    assert all("description" not in r for r in rows["result"])
    assert "description" in Caller(app, "tmanager").get("/api/v1/views/described").json["list_columns"]
    html = page_client(app, "finance").get("/ticket/list/?view=described").data.decode()
    assert data["numbers"]["soon"] in html and ">Description<" not in html
    assert ">Description<" in page_client(app, "tmanager").get("/ticket/list/?view=described").data.decode()
    response = finance.post("/api/v1/views/", json={"entity": "Ticket", "label": "with description",
                                                     "columns": ["number", "description"]})
    assert response.status_code == 400


# -- personal views -----------------------------------------------------------------------------------------------

def test_post_view_validation(app, data):
    agent = Caller(app, "agent1")
    bad = agent.post("/api/v1/views/", json={"entity": "Ticket", "label": "x", "filter": {"nope": 1}})
    assert bad.status_code == 400 and "nope" in bad.json["message"]
    assert agent.post("/api/v1/views/", json={"entity": "Ticket", "label": "x", "filter": {"due_date": {"lt": "$tomorrow"}}}).status_code == 400
    assert agent.post("/api/v1/views/", json={"entity": "Nope", "label": "x"}).status_code == 400
    assert agent.post("/api/v1/views/", json={"entity": "Ticket", "label": ""}).status_code == 400
    assert agent.post("/api/v1/views/", json={"entity": "Customer", "label": "x", "order": ["-credit_limit"]}).status_code == 400
    assert agent.post("/api/v1/views/", json={"entity": "Customer", "label": "x", "filter": {"notes": {"contains": "z"}}}).status_code == 400
    assert agent.post("/api/v1/views/", json={"entity": "Ticket", "label": "x", "share_with_role": "Manager"}).status_code == 403
    assert agent.post("/api/v1/views/", json={"entity": "LabourEntry", "label": "x"}).status_code == 403
    finance = Caller(app, "finance")  # Finance masks Worker.phone: a view lists what its owner sees in full
    assert finance.post("/api/v1/views/", json={"entity": "Worker", "label": "x", "columns": ["name", "phone"]}).status_code == 400
    assert finance.post("/api/v1/views/", json={"entity": "Worker", "label": "x", "order": ["phone"]}).status_code == 400
    assert finance.post("/api/v1/views/", json={"entity": "Worker", "label": "x", "columns": ["name"]}).status_code == 201
    zh = agent.post("/api/v1/views/", json={"entity": "Ticket", "label": "x", "order": ["nope"]},
                    headers={"Accept-Language": "zh"})
    assert zh.status_code == 400
    # the refusal is in the caller's language from end to end, naming the field by its label
    import re
    for body, words in (({"status": "bogus"}, "状态"), ({"status": {"like": "x"}}, "状态"), ({"nope": 1}, "nope"),
                        ({"due_date": {"lt": "$tomorrow"}}, "截止日期")):
        zh = agent.post("/api/v1/views/?_l_=zh", json={"entity": "Ticket", "label": "x", "filter": body})
        assert zh.status_code == 400 and words in zh.json["message"], zh.json
        rest = re.sub(r"contains|null", "", zh.json["message"].replace(words, ""))  # operator names are code
        assert not re.search(r"[A-Za-z]{4,}", rest), zh.json["message"]
    english = agent.post("/api/v1/views/", json={"entity": "Ticket", "label": "x", "filter": {"status": "bogus"}})
    assert english.json["message"] == "The value for Status is not one of its choices."
    refused = agent.post("/api/v1/views/?_l_=zh", json={"entity": "LabourEntry", "label": "x"})
    assert refused.status_code == 403 and "点工记录" in refused.json["message"]  # the entity's label, not its class
    assert agent.post("/api/v1/views/", json={"entity": "ticket", "label": "by API name"}).status_code == 201


def test_personal_view_sharing_and_deleting(app, data):
    agent1, agent2 = Caller(app, "agent1"), Caller(app, "agent2")
    private = agent1.post("/api/v1/views/", json={"entity": "Ticket", "label": "Due soon",
                                                  "filter": {"due_date": {"lte": "$today+1d"}}, "order": ["-due_date"]})
    assert private.status_code == 201, private.json
    shared = agent1.post("/api/v1/views/", json={"entity": "Ticket", "label": "Team soon", "share_with_role": "SupportAgent",
                                                 "filter": {"due_date": {"gte": "$today"}}})
    assert shared.status_code == 201
    rows = agent1.get(f"/api/v1/views/{private.json['id']}").json
    assert rows["ids"] == [data["ids"]["soon"], data["ids"]["late"]]  # -due_date, in agent1's scope only
    assert agent2.get(f"/api/v1/views/{private.json['id']}").status_code == 404
    listed = {v["id"]: v for v in agent2.get("/api/v1/views/").json["result"]}
    assert shared.json["id"] in listed and private.json["id"] not in listed
    assert listed[shared.json["id"]]["count"] == 1  # agent2's own scope: the "other" ticket
    assert agent2.delete(f"/api/v1/views/{shared.json['id']}").status_code == 404
    assert agent1.delete(f"/api/v1/views/{shared.json['id']}").status_code == 200
    assert agent2.get(f"/api/v1/views/{shared.json['id']}").status_code == 404


def test_save_view_from_a_list_page(app, data):
    client = page_client(app, "agent1")
    html = client.get("/ticket/list/?view=all").data.decode()
    index = re.search(r'name="due_date" class="filter"', html)
    assert index  # the search form offers due_date
    # _flt_2_ is "contains" on a text column; _flt_0_ "starts with", which the filter language cannot say
    query = "view=my_open_tickets&_flt_2_subject=late&_flt_0_number=TK&_oc_TicketView=subject&_od_TicketView=desc"
    response = client.post("/saved_views/save", data={"entity": "Ticket", "label": "Subject views", "query": query})
    assert response.status_code == 302
    assert "cannot be saved in a view" in client.get(response.headers["Location"]).data.decode()
    view_id = int(response.headers["Location"].rsplit("=", 1)[1])
    saved = {v["id"]: v for v in Caller(app, "agent1").get("/api/v1/views/").json["result"]}[view_id]
    assert saved["filter"]["assignee"] == "$user" and saved["order"] == ["-subject"]
    assert saved["columns"] == ["number", "subject", "customer", "priority", "due_date"]
    assert saved["filter"]["subject"] == {"contains": "late"} and "number" not in saved["filter"]
    assert saved["count"] == 1


# -- highlights, search, home --------------------------------------------------------------------------------------

def test_search_is_scoped_and_title_only(app, data):
    agent = Caller(app, "agent1")
    found = agent.get("/api/v1/search?q=TK-").json
    ids = {r["id"] for r in found if r["entity"] == "Ticket"}
    assert ids == {data["ids"]["soon"], data["ids"]["later"], data["ids"]["late"]}
    assert all(r["url"].startswith("/ticket/show/") for r in found if r["entity"] == "Ticket")
    assert Caller(app).get("/api/v1/search?q=zebra-secret").json == []  # notes are not a title
    assert agent.get("/api/v1/search?q=views%20cust").json[0]["entity"] == "Customer"
    assert agent.get("/api/v1/search?q=%25").json == []  # % is literal
    assert agent.get("/api/v1/search?q=").status_code == 400
    assert agent.get("/api/v1/search?q=" + "x" * 101).status_code == 400
    page = page_client(app, "agent1").get("/search/?q=TK-").data.decode()
    assert data["numbers"]["soon"] in page and data["numbers"]["other"] not in page


def test_home_page_counts_in_scope(app, data):
    html = page_client(app, "agent1").get("/").data.decode()
    card = re.search(r'data-view="my_open_tickets".*?portal-count[^>]*>(\d+)<', html, re.S)
    assert card and card.group(1) == "2"
    overdue = re.search(r'data-highlight="overdue".*?portal-count[^>]*>(\d+)<', html, re.S)
    assert overdue and overdue.group(1) == "1"
    assert 'id="quick-search"' in html
    listing = page_client(app, "agent1").get("/ticket/list/?highlight=overdue").data.decode()
    assert data["numbers"]["late"] in listing and data["numbers"]["soon"] not in listing
    manager = page_client(app, "tmanager").get("/").data.decode()
    assert re.search(r'data-highlight="overdue".*?portal-count[^>]*>(\d+)<', manager, re.S).group(1) == "1"


def test_home_page_recent_records(app, data):
    agent = Caller(app, "agent1")
    pk = data["ids"]["soon"]
    etag = agent.get(f"/api/v1/ticket/{pk}").headers["ETag"]
    assert agent.put(f"/api/v1/ticket/{pk}", json={"subject": "views soon edited"},
                     headers={"If-Match": etag}).status_code == 200
    html = page_client(app, "agent1").get("/").data.decode()
    recent = html[html.index('id="home-recent"'):]
    assert data["numbers"]["soon"] in recent and data["numbers"]["late"] not in recent
    admin_html = login(app.test_client()).get("/").data.decode()
    assert data["numbers"]["late"] in admin_html[admin_html.index('id="home-recent"'):]  # admin created them


def test_a_shared_view_over_a_field_the_sharee_may_not_see_stays_hidden_from_them(app, data):
    with app.app_context():
        sm = app.appbuilder.sm
        sm.add_user("mgrfin", "mgrfin", "Test", "mgrfin@example.com", [sm.find_role("Manager"), sm.find_role("Finance")],
                    PASSWORD)
    owner = Caller(app, "mgrfin")  # Manager sees description; Finance hides it
    made = owner.post("/api/v1/views/", json={"entity": "Ticket", "label": "By description", "share_with_role": "Finance",
                                              "filter": {"description": {"contains": "secret"}}})
    assert made.status_code == 201, made.json
    assert owner.get(f"/api/v1/views/{made.json['id']}").status_code == 200
    finance = Caller(app, "finance")
    assert made.json["id"] not in {v["id"] for v in finance.get("/api/v1/views/").json["result"]}
    assert finance.get(f"/api/v1/views/{made.json['id']}").status_code == 404


def test_bulk_all_matching_on_a_view_acts_on_the_views_rows_only(app, data):
    client = page_client(app, "agent1")
    response = client.post("/ticket/bulk?view=my_open_tickets", data={"action": "transition:start", "scope": "filter"})
    assert response.status_code == 200, response.data[:300]
    states = {key: Caller(app).get(f"/api/v1/ticket/{pk}").json["result"]["status"] for key, pk in data["ids"].items()}
    assert states == {"soon": "in_progress", "late": "in_progress", "later": "open", "other": "open"}
    assert Caller(app, "agent1").get("/api/v1/views/my_open_tickets").json["count"] == 2  # in_progress is still open work


def test_recent_records_read_an_index_of_the_users_history(app):
    """The home page reads portal_history newest first per user: (user_id, id) is indexed (older databases get
    it from start-up's additive migration, which creates every missing index)."""
    from sqlalchemy import inspect
    with app.app_context():
        engine = app.appbuilder.session.get_bind()
        indexes = {i["name"]: i["column_names"] for i in inspect(engine).get_indexes("portal_history")}
    assert indexes.get("ix_portal_history_user") == ["user_id", "id"]
