"""Workflows (issue 13): role x transition matrix over the shipped tickets and labour modules, through the API and
the pages; the state never changes by form, API or import; locked records refuse edits and deletes; stamps,
formulas and rollups follow a transition."""
from __future__ import annotations

import re
from decimal import Decimal

import pytest
from sqlalchemy import select, text

from conftest import jwt_headers, login, make_app, post_csv

PASSWORD = "Flow-pass-1"
USERS = {"agent1": "SupportAgent", "agent2": "SupportAgent", "tmanager": "Manager", "finance": "Finance",
         "foreman": "SiteForeman", "nobody": "Public"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    app = make_app(tmp_path_factory, "workflows")
    with app.app_context():
        sm = app.appbuilder.sm
        for name, role in USERS.items():
            sm.add_user(name, name, "Test", f"{name}@example.com", [sm.find_role(role)], PASSWORD)
    return app


@pytest.fixture(scope="module")
def admin(app):
    client = app.test_client()
    headers = jwt_headers(client)

    class Caller:
        def __getattr__(self, method):
            return lambda url, **kw: getattr(client, method)(url, headers={**headers, **kw.pop("headers", {})}, **kw)
    return Caller()


def as_user(app, username):
    client = app.test_client()
    headers = jwt_headers(client, username, PASSWORD)

    class Caller:
        def __getattr__(self, method):
            return lambda url, **kw: getattr(client, method)(url, headers={**headers, **kw.pop("headers", {})}, **kw)
    return Caller()


def user_id(app, username):
    with app.app_context():
        return app.appbuilder.sm.find_user(username=username).id


@pytest.fixture(scope="module")
def customer(admin):
    response = admin.post("/api/v1/customer/", json={"name": "流程客户", "kind": "company"})
    assert response.status_code == 201, response.json
    return response.json["id"]


def new_ticket(admin, app, customer, assignee="agent1", priority="normal", **values):
    response = admin.post("/api/v1/ticket/", json={"subject": "pump", "customer": customer, "priority": priority,
                                                   "assignee": user_id(app, assignee), **values})
    assert response.status_code == 201, response.json
    return response.json["id"]


def stored(app, table, pk, *columns):
    with app.app_context():
        row = app.appbuilder.session.execute(
            text(f"SELECT {', '.join(columns)} FROM {table} WHERE id = :id"), {"id": pk}).one()
    return row[0] if len(columns) == 1 else row


def take(caller, entity, pk, name, body=None, **kw):
    return caller.post(f"/api/v1/{entity}/{pk}/transitions/{name}", json=body if body is not None else {}, **kw)


# -- API matrix ----------------------------------------------------------------------------------------

def test_new_tickets_start_open_and_the_state_cannot_be_given(app, admin, customer):
    pk = new_ticket(admin, app, customer)
    assert stored(app, "ticket", pk, "status") == "open"
    response = admin.post("/api/v1/ticket/", json={"subject": "x", "customer": customer, "status": "closed"})
    assert response.status_code == 422
    assert response.json["message"]["status"] == ["Status starts as Open; change it with a transition."]
    response = admin.post("/api/v1/ticket/", json={"subject": "null state", "customer": customer, "status": None})
    assert response.status_code == 201 and response.json["result"]["status"] == "open"
    response = admin.post("/api/v1/ticket/", json={"subject": "given default", "customer": customer, "status": "open"})
    assert response.status_code == 201


def test_put_cannot_change_the_state(app, admin, customer):
    pk = new_ticket(admin, app, customer)
    response = admin.put(f"/api/v1/ticket/{pk}", json={"status": "in_progress"})
    assert response.status_code == 422
    message = response.json["message"]["status"][0]
    assert "Status only changes through its transitions" in message and "Start" in message and "Reopen" in message
    assert stored(app, "ticket", pk, "status") == "open"
    assert admin.put(f"/api/v1/ticket/{pk}", json={"status": "open", "subject": "same state"}).status_code == 200


def test_transitions_listed_for_the_caller(app, admin, customer):
    pk = new_ticket(admin, app, customer)
    agent = as_user(app, "agent1")
    response = agent.get(f"/api/v1/ticket/{pk}/transitions")
    assert response.status_code == 200
    assert response.json == {"state": {"key": "open", "label": "Open"},
                             "transitions": [{"name": "start", "label": "Start", "to": "in_progress", "require": []}]}
    assert take(agent, "ticket", pk, "start").status_code == 200
    listed = agent.get(f"/api/v1/ticket/{pk}/transitions").json
    assert [t["name"] for t in listed["transitions"]] == ["wait", "resolve"]
    assert listed["transitions"][1]["require"] == [{"name": "resolution", "label": "Resolution", "type": "text"}]
    assert as_user(app, "finance").get(f"/api/v1/ticket/{pk}/transitions").json["transitions"] == []


def test_ticket_lifecycle_with_stamps_and_locks(app, admin, customer):
    pk = new_ticket(admin, app, customer)
    agent, manager = as_user(app, "agent1"), as_user(app, "tmanager")
    response = take(agent, "ticket", pk, "start")
    assert response.status_code == 200 and response.json["result"]["status"] == "in_progress"
    assert response.headers["ETag"] == f'"{response.json["result"]["row_version"]}"'
    # wrong state: close needs resolved
    response = take(manager, "ticket", pk, "close")
    assert response.status_code == 409 and "In progress" in response.json["message"]
    # required value missing, then blank
    response = take(agent, "ticket", pk, "resolve")
    assert response.status_code == 422 and response.json["errors"] == {"resolution": ["This field is required."]}
    response = take(agent, "ticket", pk, "resolve", {"resolution": "   "})
    assert response.status_code == 422
    response = take(agent, "ticket", pk, "resolve", {"resolution": "fixed", "subject": "sneaky"})
    assert response.status_code == 422 and response.json["errors"] == {"subject": ["Unknown field."]}
    assert stored(app, "ticket", pk, "status", "subject") == ("in_progress", "pump")
    response = take(agent, "ticket", pk, "resolve", {"resolution": "replaced the seal"})
    assert response.status_code == 200, response.json
    status, resolution, resolved_at, resolved_by = stored(app, "ticket", pk, "status", "resolution", "resolved_at",
                                                          "resolved_by_id")
    assert (status, resolution, resolved_by) == ("resolved", "replaced the seal", user_id(app, "agent1"))
    assert resolved_at is not None
    # locked: no PUT, no DELETE, even for Admin
    response = admin.put(f"/api/v1/ticket/{pk}", json={"subject": "changed"})
    assert response.status_code == 422
    assert response.json["message"]["status"] == ["Ticket is Resolved: it can only change through its workflow."]
    response = admin.delete(f"/api/v1/ticket/{pk}")
    assert response.status_code == 422 and "Resolved" in response.json["message"]
    assert stored(app, "ticket", pk, "subject") == "pump"
    # the agent may not close; the manager may
    response = take(agent, "ticket", pk, "close")
    assert response.status_code == 403
    assert take(manager, "ticket", pk, "close").status_code == 200
    assert stored(app, "ticket", pk, "status") == "closed"
    response = take(manager, "ticket", pk, "reopen")
    assert response.status_code == 200 and stored(app, "ticket", pk, "status") == "open"


def test_when_condition_false_is_409(app, admin, customer):
    pk = new_ticket(admin, app, customer, priority="low")
    assert take(admin, "ticket", pk, "start").status_code == 200
    assert take(admin, "ticket", pk, "resolve", {"resolution": "done"}).status_code == 200
    response = take(admin, "ticket", pk, "reopen")
    assert response.status_code == 409 and "priority != 'low'" in response.json["message"]
    assert "reopen" not in [t["name"] for t in admin.get(f"/api/v1/ticket/{pk}/transitions").json["transitions"]]
    assert stored(app, "ticket", pk, "status") == "resolved"


def test_bulk_reopen_reads_when_of_each_row(app, admin, customer):
    """A bulk transition with `when` (priority != 'low'): rows of the same state but another priority are checked
    apart, and only the low ones are refused with the condition."""
    low = [new_ticket(admin, app, customer, priority="low") for _ in range(2)]
    high = [new_ticket(admin, app, customer, priority="high") for _ in range(2)]
    for pk in low + high:
        assert take(admin, "ticket", pk, "start").status_code == 200
        assert take(admin, "ticket", pk, "resolve", {"resolution": "done"}).status_code == 200
    response = admin.post("/api/v1/ticket/bulk", json={"action": "transition", "transition": "reopen",
                                                       "ids": [low[0], high[0], low[1], high[1]]})
    assert response.status_code == 200 and response.json["done"] == high
    refused = {r["id"]: r["reason"] for r in response.json["refused"]}
    assert set(refused) == set(low) and all("priority != 'low'" in reason for reason in refused.values())
    assert [stored(app, "ticket", pk, "status") for pk in low + high] == ["resolved"] * 2 + ["open"] * 2


def test_row_scope_hides_other_agents_tickets(app, admin, customer):
    pk = new_ticket(admin, app, customer, assignee="agent2")
    agent1 = as_user(app, "agent1")
    assert agent1.get(f"/api/v1/ticket/{pk}/transitions").status_code == 404
    assert take(agent1, "ticket", pk, "start").status_code == 404
    assert stored(app, "ticket", pk, "status") == "open"
    assert take(as_user(app, "agent2"), "ticket", pk, "start").status_code == 200


def test_unknown_transition_record_and_bad_body(app, admin, customer):
    pk = new_ticket(admin, app, customer)
    assert take(admin, "ticket", pk, "teleport").status_code == 404
    assert take(admin, "ticket", 999999, "start").status_code == 404
    assert admin.get("/api/v1/ticket/999999/transitions").status_code == 404
    response = admin.post(f"/api/v1/ticket/{pk}/transitions/start", data="[1, 2]", content_type="application/json")
    assert response.status_code == 400
    response = admin.post(f"/api/v1/ticket/{pk}/transitions/start", data="not json", content_type="text/plain")
    assert response.status_code == 400
    assert stored(app, "ticket", pk, "status") == "open"
    # an entity without a workflow has no transitions
    assert admin.get("/api/v1/customer/1/transitions").status_code == 404
    # no role on Ticket at all: FAB's permission check
    assert as_user(app, "nobody").get(f"/api/v1/ticket/{pk}/transitions").status_code in (401, 403)


def test_if_match_as_for_put(app, admin, customer):
    pk = new_ticket(admin, app, customer)
    version = admin.get(f"/api/v1/ticket/{pk}").json["result"]["row_version"]
    response = take(admin, "ticket", pk, "start", headers={"If-Match": f'"{version + 5}"'})
    assert response.status_code == 409 and stored(app, "ticket", pk, "status") == "open"
    response = take(admin, "ticket", pk, "start", headers={"If-Match": f'"{version}"'})
    assert response.status_code == 200 and stored(app, "ticket", pk, "status") == "in_progress"


# -- labour: approve stamps, formula and rollup follow ---------------------------------------------------

@pytest.fixture(scope="module")
def site(app, admin):
    project = admin.post("/api/v1/project/", json={"code": "WF-1", "name": "流程工地", "budget": "10000",
                                                   "manager": user_id(app, "foreman")})
    assert project.status_code == 201, project.json
    worker = admin.post("/api/v1/worker/", json={"name": "张三", "day_rate": "300",
                                                 "projects": [project.json["id"]]})
    assert worker.status_code == 201, worker.json
    return project.json["id"], worker.json["id"]


def new_entry(admin, site, day):
    project, worker = site
    response = admin.post("/api/v1/labour_entry/", json={"project": project, "worker": worker,
                                                         "work_date": f"2026-03-{day:02d}", "days": "1"})
    assert response.status_code == 201, response.json
    return response.json["id"]


def test_labour_approval_matrix(app, admin, site):
    pk = new_entry(admin, site, 1)
    foreman, finance, manager = as_user(app, "foreman"), as_user(app, "finance"), as_user(app, "tmanager")
    assert stored(app, "labour_entry", pk, "state") == "draft"
    assert take(finance, "labour_entry", pk, "submit").status_code == 403
    assert take(finance, "labour_entry", pk, "approve").status_code == 409
    assert take(foreman, "labour_entry", pk, "submit").status_code == 200
    assert take(foreman, "labour_entry", pk, "approve").status_code == 403
    assert take(finance, "labour_entry", pk, "reject").status_code == 200
    assert take(foreman, "labour_entry", pk, "submit").status_code == 200
    assert stored(app, "project", site[0], "labour_cost") in (0, Decimal("0"), None)
    response = take(finance, "labour_entry", pk, "approve")
    assert response.status_code == 200 and response.json["result"]["approved"] is True
    state, approved, approved_by, approved_on = stored(app, "labour_entry", pk, "state", "approved", "approved_by_id",
                                                       "approved_on")
    assert (state, bool(approved), approved_by) == ("approved", True, user_id(app, "finance"))
    assert approved_on is not None
    assert Decimal(str(stored(app, "project", site[0], "labour_cost"))) == Decimal("300")
    # locked for everybody but transitions
    assert foreman.put(f"/api/v1/labour_entry/{pk}", json={"days": "2"}).status_code == 422
    assert manager.delete(f"/api/v1/labour_entry/{pk}").status_code == 422
    assert take(finance, "labour_entry", pk, "reopen").status_code == 403
    response = take(manager, "labour_entry", pk, "reopen")
    assert response.status_code == 200 and response.json["result"]["approved"] is False
    assert Decimal(str(stored(app, "project", site[0], "labour_cost"))) == Decimal("0")
    assert manager.put(f"/api/v1/labour_entry/{pk}", json={"days": "2"}).status_code == 200


def test_transition_that_breaks_a_rule_is_422(app, admin, site):
    pk = new_entry(admin, site, 2)
    with app.app_context():  # a record that breaks its rule only through data written behind the rules' back
        app.appbuilder.session.execute(text("UPDATE labour_entry SET hours = 20 WHERE id = :id"), {"id": pk})
        app.appbuilder.session.commit()
    response = take(admin, "labour_entry", pk, "submit")
    assert response.status_code == 422 and response.json["errors"] == {"hours": ["At most 12 hours per day"]}
    browser = page_client(app, "tmanager")
    assert browser.post(f"/labour_entry/transition/{pk}/submit").status_code == 302
    page = browser.get(f"/labour_entry/show/{pk}").get_data(as_text=True)
    assert "would break a rule" in page and "Hours: At most 12 hours per day" in page
    assert stored(app, "labour_entry", pk, "state") == "draft"


def test_foreman_scope_on_labour(app, admin, site):
    other = admin.post("/api/v1/project/", json={"code": "WF-2", "name": "别人的工地"}).json["id"]
    admin.put(f"/api/v1/worker/{site[1]}", json={"projects": [site[0], other]})
    response = admin.post("/api/v1/labour_entry/", json={"project": other, "worker": site[1],
                                                         "work_date": "2026-03-03"})
    assert response.status_code == 201, response.json
    assert take(as_user(app, "foreman"), "labour_entry", response.json["id"], "submit").status_code == 404


# -- import ------------------------------------------------------------------------------------------------

def test_import_cannot_set_or_change_the_state(app, admin, site):
    pk = new_entry(admin, site, 4)
    headers = jwt_headers(app.test_client())
    client = app.test_client()
    project = stored(app, "project", site[0], "name")
    worker = stored(app, "worker", site[1], "name")
    rows = [["work_date", "project", "worker", "state"], ["2026-03-05", project, worker, "approved"]]
    response = post_csv(client, headers, "/api/v1/labour_entry/import", rows)
    assert response.status_code == 422
    assert "State starts as Draft" in str(response.json)
    assert stored(app, "labour_entry", pk, "state") == "draft"


PERMITS = """
version: 1
module: permits
label: {en: Permits, zh: 许可}
entities:
  Permit:
    label: {en: Permit, zh: 许可证}
    title: code
    fields:
      code: {type: string, length: 20, required: true, unique: true, label: {en: Code, zh: 编号}}
      note: {type: string, length: 100, label: {en: Note, zh: 备注}}
      state:
        type: enum
        required: true
        label: {en: State, zh: 状态}
        choices: {draft: {en: Draft, zh: 草稿}, issued: {en: Issued, zh: 已签发}}
        default: draft
    workflow:
      field: state
      transitions:
        issue: {from: draft, to: issued, roles: [Admin], label: {en: Issue, zh: 签发}}
      locked: [issued]
"""


def test_import_update_by_key_cannot_change_the_state_nor_a_locked_record(tmp_path_factory):
    schemas = tmp_path_factory.mktemp("permit_schemas")
    (schemas / "permits.yaml").write_text(PERMITS, encoding="utf-8")
    app = make_app(tmp_path_factory, "permits", schema_dir=schemas)
    client = app.test_client()
    headers = jwt_headers(client)
    ids = [client.post("/api/v1/permit/", json={"code": code}, headers=headers).json["id"] for code in ("P1", "P2")]
    rows = [["code", "note", "state"], ["P1", "renamed", "issued"], ["P2", "fine", "draft"]]
    response = post_csv(client, headers, "/api/v1/permit/import", rows, key="code")
    assert response.status_code == 422 and "State only changes through its transitions: Issue." in str(response.json)
    assert [stored(app, "permit", pk, "note") for pk in ids] == [None, None]
    rows = [["code", "note", "state"], ["P1", "renamed", "draft"], ["P2", "fine", "draft"]]
    response = post_csv(client, headers, "/api/v1/permit/import", rows, key="code")
    assert response.status_code == 200, response.json
    assert take(_Bound(client, headers), "permit", ids[0], "issue").status_code == 200
    rows = [["code", "note"], ["P1", "again"], ["P2", "again"]]
    response = post_csv(client, headers, "/api/v1/permit/import", rows, key="code")
    assert response.status_code == 422 and "Permit is Issued: it can only change through its workflow." in str(response.json)
    assert [stored(app, "permit", pk, "note") for pk in ids] == ["renamed", "fine"]
    # a new row given the default state is fine; another state is not
    rows = [["code", "state"], ["P3", "draft"], ["P4", "issued"]]
    response = post_csv(client, headers, "/api/v1/permit/import", rows)
    assert response.status_code == 422 and "State starts as Draft; change it with a transition." in str(response.json)


class _Bound:
    def __init__(self, client, headers):
        self.client, self.headers = client, headers

    def post(self, url, **kw):
        return self.client.post(url, headers={**self.headers, **kw.pop("headers", {})}, **kw)


# -- pages -------------------------------------------------------------------------------------------------

def page_client(app, username):
    return login(app.test_client(), username, PASSWORD)


def test_detail_page_buttons_and_taking_a_transition(app, admin, customer):
    pk = new_ticket(admin, app, customer)
    agent = page_client(app, "agent1")
    page = agent.get(f"/ticket/show/{pk}").get_data(as_text=True)
    assert 'id="workflow-state"' in page and ">Open<" in page
    assert 'id="transition-start"' in page and 'id="transition-resolve"' not in page
    response = agent.post(f"/ticket/transition/{pk}/start")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/ticket/show/{pk}")
    assert stored(app, "ticket", pk, "status") == "in_progress"
    page = agent.get(f"/ticket/show/{pk}").get_data(as_text=True)
    assert "Start: done." in page and f'href="/ticket/transition/{pk}/resolve"' in page
    # the require form: error with the page kept, then success
    form = agent.get(f"/ticket/transition/{pk}/resolve").get_data(as_text=True)
    assert 'name="resolution"' in form and 'name="subject"' not in form
    response = agent.post(f"/ticket/transition/{pk}/resolve", data={"resolution": ""})
    assert response.status_code == 200 and "This field is required." in response.get_data(as_text=True)
    assert stored(app, "ticket", pk, "status") == "in_progress"
    response = agent.post(f"/ticket/transition/{pk}/resolve", data={"resolution": "新的密封圈 <b>"})
    assert response.status_code == 302
    assert stored(app, "ticket", pk, "status", "resolution") == ("resolved", "新的密封圈 <b>")
    page = agent.get(f"/ticket/show/{pk}").get_data(as_text=True)
    assert ">Resolved<" in page and 'id="record-edit"' not in page and 'id="record-delete"' not in page
    assert 'id="transition-' not in page  # close and reopen are the manager's


def test_page_refusals(app, admin, customer):
    pk = new_ticket(admin, app, customer)
    agent = page_client(app, "agent1")
    response = agent.post(f"/ticket/transition/{pk}/close")  # wrong role and state: flash, back to the record
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/ticket/show/{pk}")
    assert "may not take" in agent.get(f"/ticket/show/{pk}").get_data(as_text=True)
    other = new_ticket(admin, app, customer, assignee="agent2")
    assert agent.post(f"/ticket/transition/{other}/start").status_code == 404
    assert agent.get(f"/ticket/transition/{pk}/nope").status_code == 404
    assert page_client(app, "tmanager").get("/customer/transition/1/start").status_code == 404  # no workflow: no route
    assert stored(app, "ticket", other, "status") == "open"


def test_forms_never_change_the_state(app, admin, customer):
    manager = page_client(app, "tmanager")
    add = manager.get("/ticket/add").get_data(as_text=True)
    assert 'name="status"' not in add
    pk = new_ticket(admin, app, customer)
    edit = manager.get(f"/ticket/edit/{pk}").get_data(as_text=True)
    assert 'name="status"' not in edit and ">Open<" in edit
    response = manager.post(f"/ticket/edit/{pk}", data={"subject": "edited", "customer": customer,
                                                        "priority": "high", "status": "closed"})
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    assert stored(app, "ticket", pk, "status", "subject") == ("open", "edited")
    refused = manager.post(f"/ticket/edit/{pk}", data={"subject": "", "customer": customer, "priority": "high"})
    assert refused.status_code == 200 and ">Open<" in refused.get_data(as_text=True)  # the state still shown


def test_locked_record_refuses_edit_and_delete_pages(app, admin, customer):
    pk = new_ticket(admin, app, customer)
    take(admin, "ticket", pk, "start")
    take(admin, "ticket", pk, "resolve", {"resolution": "ok"})
    manager = page_client(app, "tmanager")
    for response in (manager.get(f"/ticket/edit/{pk}"),
                     manager.post(f"/ticket/edit/{pk}", data={"subject": "edited", "customer": customer,
                                                              "priority": "high"})):
        assert response.status_code == 302 and response.headers["Location"].endswith(f"/ticket/show/{pk}")
    response = manager.post(f"/ticket/delete/{pk}", data={"from": "show"})
    assert response.status_code == 302
    page = manager.get(f"/ticket/show/{pk}").get_data(as_text=True)
    assert "Ticket is Resolved: it can only change through its workflow." in page
    assert stored(app, "ticket", pk, "subject", "status") == ("pump", "resolved")
    assert 'id="transition-close"' in page and 'id="transition-reopen"' in page


BEFORE_WORKFLOW = """version: 1
module: jobs
entities:
  Job:
    fields:
      name: {type: string, required: true}
"""
WITH_WORKFLOW = BEFORE_WORKFLOW + """      stage:
        type: enum
        required: true
        choices: [new, done]
        default: new
    workflow:
      field: stage
      transitions:
        finish: {from: new, to: done, roles: [Admin]}
"""


def test_records_older_than_their_workflow_start_in_its_default_state(tmp_path_factory, tmp_path):
    """A workflow added to an entity that has records: start-up adds the state column, and the database fills
    it with the default state (rows written before, and rows written by hand without it, can take transitions)."""
    (tmp_path / "jobs.yaml").write_text(BEFORE_WORKFLOW, encoding="utf-8")
    first = make_app(tmp_path_factory, "workflow_added", schema_dir=tmp_path)
    client = first.test_client()
    old = client.post("/api/v1/job/", json={"name": "早于流程"}, headers=jwt_headers(client))
    assert old.status_code == 201, old.json
    with first.app_context():
        first.appbuilder.session.get_bind().dispose()
    (tmp_path / "jobs.yaml").write_text(WITH_WORKFLOW, encoding="utf-8")
    second = make_app(tmp_path_factory, "workflow_added_2", schema_dir=tmp_path,
                      SQLALCHEMY_DATABASE_URI=first.config["SQLALCHEMY_DATABASE_URI"])
    client = second.test_client()
    headers = jwt_headers(client)
    record = client.get(f"/api/v1/job/{old.json['id']}", headers=headers)
    assert record.json["result"]["stage"] == "new"
    assert [t["name"] for t in client.get(f"/api/v1/job/{old.json['id']}/transitions", headers=headers)
            .json["transitions"]] == ["finish"]
    with second.app_context():  # a row written by hand, without the state column
        with second.appbuilder.session.get_bind().begin() as conn:
            conn.execute(text("INSERT INTO job (name, created_on, changed_on) VALUES ('手写', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
            assert conn.scalar(text("SELECT stage FROM job WHERE name = '手写'")) == "new"


HIDING = """version: 1
module: hiding
entities:
  Task:
    fields:
      name: {type: string, required: true}
      note: {type: text}
      stage: {type: enum, required: true, choices: [new, done], default: new}
    workflow:
      field: stage
      transitions:
        finish: {from: new, to: done, roles: [Blind, NoNote]}
        close: {from: new, to: done, roles: [NoNote], require: [note]}
roles:
  Blind:
    can: {Task: [read, update]}
    hide: {Task: [stage]}
  NoNote:
    can: {Task: [read, update]}
    mask: {Task: [note]}
"""


def test_a_role_that_may_not_see_the_state_or_a_required_field_is_offered_nothing_that_tells_it(tmp_path_factory, tmp_path):
    (tmp_path / "hiding.yaml").write_text(HIDING, encoding="utf-8")
    app = make_app(tmp_path_factory, "workflow_hiding", schema_dir=tmp_path)
    with app.app_context():
        sm = app.appbuilder.sm
        for name in ("Blind", "NoNote"):
            sm.add_user(name.lower(), name, "Test", f"{name}@example.com", [sm.find_role(name)], PASSWORD)
    admin = app.test_client()
    pk = admin.post("/api/v1/task/", json={"name": "t"}, headers=jwt_headers(admin)).json["id"]

    blind = app.test_client()
    headers = jwt_headers(blind, "blind", PASSWORD)
    listed = blind.get(f"/api/v1/task/{pk}/transitions", headers=headers).json
    assert listed == {"state": None, "transitions": []}
    assert blind.post(f"/api/v1/task/{pk}/transitions/finish", json={}, headers=headers).status_code == 403
    page = login(app.test_client(), "blind", PASSWORD).get(f"/task/show/{pk}").get_data(as_text=True)
    assert 'id="workflow-panel"' not in page and "transition-finish" not in page

    no_note = app.test_client()
    headers = jwt_headers(no_note, "nonote", PASSWORD)
    listed = no_note.get(f"/api/v1/task/{pk}/transitions", headers=headers).json
    assert [t["name"] for t in listed["transitions"]] == ["finish"]  # not `close`: it asks for the masked note
    refused = no_note.post(f"/api/v1/task/{pk}/transitions/close", json={"note": "x"}, headers=headers)
    assert refused.status_code == 403
    assert admin.get(f"/api/v1/task/{pk}", headers=jwt_headers(admin)).json["result"]["stage"] == "new"
