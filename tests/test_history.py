"""Record history (issue 13): every write path records who, when, which path and each field's old -> new; the API
shows it as the viewer sees the record (masked, hidden, row scope), keyset-paged; nothing edits it."""
from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from sqlalchemy import select, text

from conftest import ROOT, jwt_headers, login, make_app, post_csv, sql_statements
from app.portal import portal_of
from app.rules.history import writing_as

PASSWORD = "History-pass-1"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    app = make_app(tmp_path_factory, "history")
    with app.app_context():
        sm = app.appbuilder.sm
        for name, role in (("fin", "Finance"), ("sales1", "Sales"), ("boss", "Manager")):
            sm.add_user(name, name, "Test", f"{name}@example.com", [sm.find_role(role)], PASSWORD)
    return app


@pytest.fixture(scope="module")
def admin(app):
    client = app.test_client()
    return client, jwt_headers(client)


def as_user(app, name):
    client = app.test_client()
    return client, jwt_headers(client, name, PASSWORD)


def history(client, headers, entity, pk, **args):
    response = client.get(f"/api/v1/{entity}/{pk}/history", headers=headers, query_string=args)
    assert response.status_code == 200, response.json
    return response.json


def changes_of(event) -> dict:
    return {c["field"]: (c["old"], c["new"]) for c in event["changes"]}


def new_customer(admin, **values) -> int:
    client, headers = admin
    response = client.post("/api/v1/customer/", json={"name": "Acme", **values}, headers=headers)
    assert response.status_code == 201, response.json
    return response.json["id"]


def stored_rows(app, entity, pk) -> list:
    with app.app_context():
        table = portal_of(app).metadata.tables["portal_history"]
        session = app.appbuilder.session
        rows = session.execute(select(table).where(table.c.entity == entity, table.c.record_id == pk)
                               .order_by(table.c.id)).all()
        session.remove()
        return rows


def test_api_post_put_delete_are_recorded_with_who_when_path_and_values(app, admin):
    client, headers = admin
    before = dt.datetime.now().replace(microsecond=0)
    pk = new_customer(admin, name="Api Co", phone="13800138001", level="vip", credit_limit="1000")
    assert client.put(f"/api/v1/customer/{pk}", json={"level": "normal", "credit_limit": "1500.5"},
                      headers=headers).status_code == 200
    assert client.put(f"/api/v1/customer/{pk}", json={"level": "normal"}, headers=headers).status_code == 200
    assert len(stored_rows(app, "Customer", pk)) == 2  # a write that changes nothing records nothing
    assert client.delete(f"/api/v1/customer/{pk}", headers=headers).status_code == 200

    events = history(client, headers, "customer", pk)["events"]
    assert [e["action"] for e in events] == ["delete", "update", "create"]  # newest first
    assert {e["path"] for e in events} == {"api"} and {e["user"] for e in events} == {"admin"}
    assert all(before <= dt.datetime.fromisoformat(e["at"]) <= dt.datetime.now() for e in events)
    assert changes_of(events[1]) == {"level": ("VIP", "Normal"), "credit_limit": ("1000.00", "1500.50")}
    created = changes_of(events[2])
    assert created["name"] == (None, "Api Co") and created["level"] == (None, "VIP")
    assert created["owner"] == (None, "admin") and "notes" not in created  # empty fields are left out
    assert changes_of(events[0])["name"] == ("Api Co", None)
    # stored as keys and ids, shown as labels and titles
    stored = json.loads(stored_rows(app, "Customer", pk)[0].changes)
    assert stored["level"] == [None, "vip"] and isinstance(stored["owner"][1], int)


def test_form_add_edit_delete_are_recorded_as_form(app):
    client = login(app.test_client())
    added = client.post("/customer/add", data={"name": "Form Co", "level": "vip", "kind": "company"})
    assert added.status_code == 302
    pk = int(re.search(r"/customer/show/(\d+)", added.headers["Location"]).group(1))
    page = client.get(f"/customer/edit/{pk}")
    version = re.search(r'name="row_version" type="hidden" value="(\d+)"', page.text).group(1)
    edited = client.post(f"/customer/edit/{pk}", data={"name": "Form Co 2", "level": "vip", "kind": "company",
                                                        "row_version": version})
    assert edited.status_code == 302
    assert client.post(f"/customer/delete/{pk}").status_code == 302
    rows = stored_rows(app, "Customer", pk)
    assert [(r.action, r.path, r.username) for r in rows] == [("create", "form", "admin"), ("update", "form", "admin"),
                                                              ("delete", "form", "admin")]
    assert json.loads(rows[1].changes)["name"] == ["Form Co", "Form Co 2"]


def test_import_records_created_and_updated_rows_in_one_insert_per_chunk(app, admin):
    client, headers = admin
    rows = [["name", "phone", "level"]] + [[f"Imp {i}", f"1390013{i:04d}", "vip"] for i in range(60)]
    rows[10][0] = 'Imp \\9 "引号"'  # 60 rows >= COPY_FROM: PostgreSQL COPYs the history (escaping checked)
    assert post_csv(client, headers, "/api/v1/customer/import", rows).json["created"] == 60
    update = [["name", "phone", "level"], ["Imp 0 renamed", "13900130000", "vip"], ["Imp 1", "13900130001", "normal"],
              ["Imp 2", "13900130002", "vip"]]  # the third row changes nothing
    with sql_statements(app) as statements:
        response = post_csv(client, headers, "/api/v1/customer/import", update, key="phone")
    assert (response.json["updated"], response.json["unchanged"]) == (2, 1), response.json  # the third is left alone
    history_inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT INTO PORTAL_HISTORY")]
    assert len(history_inserts) == 1  # the chunk's events in one statement
    with app.app_context():
        session = app.appbuilder.session
        ids = dict(session.execute(text("SELECT phone, id FROM customer WHERE phone IN "
                                        "('+8613900130000', '+8613900130001', '+8613900130002')")).all())
        session.remove()
    first = history(client, headers, "customer", ids["+8613900130000"])["events"]
    assert [(e["action"], e["path"]) for e in first] == [("update", "import"), ("create", "import")]
    assert changes_of(first[0])["name"] == ("Imp 0", "Imp 0 renamed") and "level" not in changes_of(first[0])
    assert changes_of(first[1])["phone"] == (None, "+8613900130000")
    second = history(client, headers, "customer", ids["+8613900130001"])["events"]
    assert changes_of(second[0])["level"] == ("VIP", "Normal") and "name" not in changes_of(second[0])
    with app.app_context():
        session = app.appbuilder.session
        odd = session.execute(text("SELECT id FROM customer WHERE phone = '+8613900130009'")).scalar()
        session.remove()
    assert changes_of(history(client, headers, "customer", odd)["events"][0])["name"] == (None, 'Imp \\9 "引号"')


def test_transition_writes_are_recorded_as_the_transition(app, admin):
    """The workflow helper wraps its writes in writing_as("transition", name): the same flush listener records them."""
    client, headers = admin
    pk = new_customer(admin, name="Step Co", level="potential")
    with app.test_request_context():
        model = portal_of(app).models["Customer"]
        session = app.appbuilder.session
        with writing_as("transition", "promote"):
            session.get(model, pk).level = "vip"
            session.commit()
        session.remove()
    event = history(client, headers, "customer", pk)["events"][0]
    assert (event["action"], event["transition"], event["path"]) == ("transition", "promote", "transition")
    assert changes_of(event) == {"level": ("Potential", "VIP")}


def test_finance_sees_masked_values_and_never_hidden_changes(app, admin):
    client, headers = admin
    pk = new_customer(admin, name="Secret Co", phone="13800138111", email="a@example.com", notes="n1", source="website")
    client.put(f"/api/v1/customer/{pk}", json={"phone": "13800138222", "notes": "n2"}, headers=headers)
    client.put(f"/api/v1/customer/{pk}", json={"notes": "only hidden"}, headers=headers)
    client.put(f"/api/v1/customer/{pk}", json={"source": "visit"}, headers=headers)
    fin = as_user(app, "fin")
    seen = history(*fin, "customer", pk)["events"]
    assert [e["action"] for e in seen] == ["update", "create"]  # the two hidden-only changes are left out
    assert changes_of(seen[0]) == {"phone": ("****", "****")}
    created = changes_of(seen[1])
    assert created["phone"] == (None, "****") and created["email"] == (None, "****")
    assert "notes" not in created and "source" not in created and created["name"] == (None, "Secret Co")
    assert "13800138" not in json.dumps(seen) and "n2" not in json.dumps(seen)
    everything = history(client, headers, "customer", pk)["events"]
    assert len(everything) == 4 and changes_of(everything[2])["notes"] == ("n1", "n2")


def test_row_scope_out_of_scope_record_is_404(app, admin):
    pk = new_customer(admin, name="Not yours")  # owner: admin
    sales = as_user(app, "sales1")
    client, headers = sales
    assert client.get(f"/api/v1/customer/{pk}/history", headers=headers).status_code == 404
    own = client.post("/api/v1/customer/", json={"name": "Mine"}, headers=headers)
    assert own.status_code == 201, own.json
    assert [e["user"] for e in history(client, headers, "customer", own.json["id"])["events"]] == ["sales1"]
    assert client.get("/api/v1/customer/999999/history", headers=headers).status_code == 404


def test_deleted_record_history_is_for_admin_only(app, admin):
    client, headers = admin
    pk = new_customer(admin, name="Gone Co")
    boss = as_user(app, "boss")
    assert history(*boss, "customer", pk)["events"]
    assert client.delete(f"/api/v1/customer/{pk}", headers=headers).status_code == 200
    assert [e["action"] for e in history(client, headers, "customer", pk)["events"]] == ["delete", "create"]
    assert boss[0].get(f"/api/v1/customer/{pk}/history", headers=boss[1]).status_code == 404
    assert client.get("/api/v1/customer/999999/history", headers=headers).status_code == 404  # never existed


def test_history_is_append_only(app, admin):
    client, headers = admin
    pk = new_customer(admin, name="Append Co")
    url = f"/api/v1/customer/{pk}/history"
    for method in (client.put, client.delete, client.post, client.patch):
        assert method(url, json={}, headers=headers).status_code == 405
    assert client.get("/api/v1/portal_history/", headers=headers).status_code == 404
    assert login(app.test_client()).get("/portal_history/list/").status_code == 404
    assert len(stored_rows(app, "Customer", pk)) == 1


def test_history_pages_with_a_cursor_newest_first(app, admin):
    client, headers = admin
    pk = new_customer(admin, name="Pages Co")
    for i in range(6):
        client.put(f"/api/v1/customer/{pk}", json={"address": f"Street {i}"}, headers=headers)
    seen, cursor = [], None
    for expected in (3, 3, 1):
        args = {"page_size": 3, **({"before": cursor} if cursor else {})}
        page = history(client, headers, "customer", pk, **args)
        assert len(page["events"]) == expected
        seen += [e["id"] for e in page["events"]]
        cursor = page["next"]
    assert cursor is None and seen == sorted(seen, reverse=True) and len(set(seen)) == 7
    assert changes_of(history(client, headers, "customer", pk, page_size=1)["events"][0]) == {
        "address": ("Street 4", "Street 5")}
    for bad in ({"page_size": 0}, {"page_size": 101}, {"page_size": "x"}, {"before": "-1"}):
        assert client.get(f"/api/v1/customer/{pk}/history", headers=headers, query_string=bad).status_code == 400


def test_links_show_titles_and_entities_without_history_have_none(app, admin):
    client, headers = admin
    customer = new_customer(admin, name="Linked Co")
    contract = client.post("/api/v1/contract/", json={"name": "Deal", "customer": customer, "amount": "10"},
                           headers=headers)
    assert contract.status_code == 201, contract.json
    event = history(client, headers, "contract", contract.json["id"])["events"][0]
    assert changes_of(event)["customer"] == (None, "Linked Co")
    contact = client.post("/api/v1/contact/", json={"name": "Zhang", "customer": customer}, headers=headers)
    assert client.get(f"/api/v1/contact/{contact.json['id']}/history", headers=headers).status_code == 404


@pytest.fixture(scope="module")
def many_app(tmp_path_factory):
    """The shipped schemas with history on workers too: a many field (projects), imported with INSERT ... RETURNING;
    and on follow-ups (customer: cascade, contact: set_null, by: a user field)."""
    folder = tmp_path_factory.mktemp("history-schemas")
    for source in (ROOT / "schemas").glob("*.yaml"):
        text = source.read_text(encoding="utf-8")
        if source.name == "labour.yaml":
            text = text.replace("    order: [name]\n\n  LabourEntry:", "    order: [name]\n    history: true\n\n  LabourEntry:")
            assert text.count("history: true") == 2
        if source.name == "crm.yaml":  # follow-ups: cascade children of customers, set_null referrers of contacts
            text = text.replace("    order: [-at]\n\nreports:", "    order: [-at]\n    history: true\n\nreports:")
            assert text.count("history: true") == 3
        (folder / source.name).write_text(text, encoding="utf-8")
    return make_app(tmp_path_factory, "history_many", schema_dir=folder)


def test_many_fields_are_recorded_as_sorted_titles_from_api_and_import(many_app):
    client = many_app.test_client()
    headers = jwt_headers(client)
    projects = [client.post("/api/v1/project/", json={"code": f"P{i}", "name": f"Site {i}"}, headers=headers).json["id"]
                for i in range(3)]
    rows = [["name", "phone", "day_rate", "projects"], ["Wang", "13700137000", "300", "Site 2, Site 0"],
            ["Li", "13700137001", "310", ""]]
    assert post_csv(client, headers, "/api/v1/worker/import", rows).json["created"] == 2
    ids = [w["id"] for w in client.get("/api/v1/worker/", headers=headers,
                                       query_string={"q": "(order_column:name,order_direction:asc)"}).json["result"]]
    li, wang = ids
    created = changes_of(history(client, headers, "worker", wang)["events"][0])
    assert created["projects"] == (None, ["Site 0", "Site 2"]) and created["day_rate"] == (None, "300.00")
    assert "projects" not in changes_of(history(client, headers, "worker", li)["events"][0])
    update = [["phone", "projects"], ["13700137000", "Site 1"], ["13700137001", ""]]
    assert post_csv(client, headers, "/api/v1/worker/import", update, key="phone").json["updated"] == 1  # Li: no change
    assert changes_of(history(client, headers, "worker", wang)["events"][0]) == {
        "projects": (["Site 0", "Site 2"], ["Site 1"])}
    assert len(history(client, headers, "worker", li)["events"]) == 1  # nothing changed for Li
    assert client.put(f"/api/v1/worker/{wang}", json={"projects": [projects[0], projects[1]]},
                      headers=headers).status_code == 200
    event = history(client, headers, "worker", wang)["events"][0]
    assert (event["path"], changes_of(event)) == ("api", {"projects": (["Site 1"], ["Site 0", "Site 1"])})


def test_transitions_and_bulk_actions_are_in_the_history_as_such(app, admin):
    """A transition taken through the API and a bulk approve/delete: action, transition name, path and changes."""
    client, headers = admin
    customer = new_customer(admin, name="流程客户")
    ticket = client.post("/api/v1/ticket/", json={"subject": "漏水", "customer": customer, "priority": "high"},
                         headers=headers).json["id"]
    assert client.post(f"/api/v1/ticket/{ticket}/transitions/start", json={}, headers=headers).status_code == 200
    taken = client.post(f"/api/v1/ticket/{ticket}/transitions/resolve", json={"resolution": "已修复"}, headers=headers)
    assert taken.status_code == 200, taken.json
    newest = history(client, headers, "ticket", ticket)["events"][0]
    assert (newest["action"], newest["transition"], newest["path"]) == ("transition", "resolve", "transition")
    changes = changes_of(newest)
    assert changes["status"] == ("In progress", "Resolved") and changes["resolution"] == (None, "已修复")
    assert changes["resolved_at"][0] is None and changes["resolved_at"][1]
    assert changes["resolved_by"] == (None, "admin")

    project = client.post("/api/v1/project/", json={"code": "H-1", "name": "历史项目"}, headers=headers).json["id"]
    worker = client.post("/api/v1/worker/", json={"name": "史工", "day_rate": "300", "projects": [project]},
                         headers=headers).json["id"]
    entries = [client.post("/api/v1/labour_entry/", json={"work_date": f"2026-10-0{day}", "project": project,
                                                           "worker": worker}, headers=headers).json["id"]
               for day in (1, 2)]
    for transition in ("submit", "approve"):
        done = client.post("/api/v1/labour_entry/bulk", json={"action": "transition", "transition": transition,
                                                             "ids": entries}, headers=headers)
        assert done.status_code == 200 and sorted(done.json["done"]) == entries, done.json
    for entry in entries:
        newest = history(client, headers, "labour_entry", entry)["events"][0]
        assert (newest["action"], newest["transition"], newest["path"]) == ("transition", "approve", "bulk")
        assert changes_of(newest)["state"] == ("Submitted", "Approved")
        assert changes_of(newest)["approved_by"] == (None, "admin")
    assert client.post("/api/v1/labour_entry/bulk", json={"action": "transition", "transition": "reopen",
                                                         "ids": entries}, headers=headers).status_code == 200
    assert client.post("/api/v1/labour_entry/bulk", json={"action": "transition", "transition": "reject",
                                                         "ids": entries}, headers=headers).status_code == 200
    gone = client.post("/api/v1/labour_entry/bulk", json={"action": "delete", "ids": entries[:1]}, headers=headers)
    assert gone.status_code == 200 and gone.json["done"] == entries[:1], gone.json
    newest = history(client, headers, "labour_entry", entries[0])["events"][0]
    assert (newest["action"], newest["path"]) == ("delete", "bulk")
    assert changes_of(newest)["state"] == ("Draft", None)


def test_bulk_delete_records_many_fields_like_a_single_delete(many_app):
    client = many_app.test_client()
    headers = jwt_headers(client)
    projects = [client.post("/api/v1/project/", json={"code": f"BD{i}", "name": f"Bulk site {i}"}, headers=headers).json["id"]
                for i in range(2)]
    workers = [client.post("/api/v1/worker/", json={"name": f"Bulk {i}", "day_rate": "300", "projects": linked},
                           headers=headers).json["id"] for i, linked in enumerate((projects, [], projects[1:]))]
    gone = client.post("/api/v1/worker/bulk", json={"action": "delete", "ids": workers}, headers=headers)
    assert gone.status_code == 200 and sorted(gone.json["done"]) == workers, gone.json
    deletes = [history(client, headers, "worker", pk)["events"][0] for pk in workers]
    assert [(e["action"], e["path"]) for e in deletes] == [("delete", "bulk")] * 3
    assert [changes_of(e).get("projects") for e in deletes] == [
        (["Bulk site 0", "Bulk site 1"], None), None, (["Bulk site 1"], None)]
    assert changes_of(deletes[0])["name"] == ("Bulk 0", None)


def follow_up_setup(client, headers, name):
    customer = client.post("/api/v1/customer/", json={"name": name}, headers=headers).json["id"]
    contact = client.post("/api/v1/contact/", json={"name": f"{name} Bob", "customer": customer}, headers=headers).json["id"]
    follow_ups = [client.post("/api/v1/follow_up/", json={"customer": customer, "contact": contact, "summary": f"call {i}"},
                              headers=headers).json["id"] for i in range(2)]
    return customer, contact, follow_ups


def database_events(app, entity, ids) -> list:
    with app.app_context():
        rows = app.appbuilder.session.execute(text(
            "SELECT record_id, action, path, changes FROM portal_history WHERE entity = :e ORDER BY id"), {"e": entity}).all()
        app.appbuilder.session.remove()
    return [(r.record_id, r.action, r.path, json.loads(r.changes)) for r in rows if r.record_id in ids]


def test_rows_the_database_nulls_or_cascades_get_history(many_app):
    """Deleting a contact empties Ticket.contact and FollowUp.contact (set_null): an update event each; deleting a
    customer deletes its follow-ups (cascade): a delete event each, by the API and by a bulk delete alike."""
    client = many_app.test_client()
    headers = jwt_headers(client)
    customer, contact, follow_ups = follow_up_setup(client, headers, "Nulls")
    ticket = client.post("/api/v1/ticket/", json={"subject": "s", "customer": customer, "contact": contact},
                         headers=headers).json["id"]
    assert client.delete(f"/api/v1/contact/{contact}", headers=headers).status_code == 200
    newest = history(client, headers, "ticket", ticket)["events"][0]
    # the contact is gone, so its title is no longer known: shown by its id
    assert (newest["action"], newest["path"], changes_of(newest)) == ("update", "api", {"contact": (f"#{contact}", None)})
    assert [e[1:] for e in database_events(many_app, "FollowUp", follow_ups)][-2:] == [
        ("update", "api", {"contact": [contact, None]})] * 2
    assert client.delete(f"/api/v1/ticket/{ticket}", headers=headers).status_code == 200
    assert client.delete(f"/api/v1/customer/{customer}", headers=headers).status_code == 200
    deleted = [e for e in database_events(many_app, "FollowUp", follow_ups) if e[1] == "delete"]
    assert sorted(e[0] for e in deleted) == follow_ups and {e[2] for e in deleted} == {"api"}
    assert deleted[0][3]["summary"] == ["call 0", None] and deleted[0][3]["customer"] == [customer, None]
    # a bulk delete: the same events, path "bulk", in one INSERT for the follow-ups
    customers, all_follow_ups = [], []
    for name in ("Bulk one", "Bulk two"):
        customer, contact, follow_ups = follow_up_setup(client, headers, name)
        customers.append(customer)
        all_follow_ups += follow_ups
    with sql_statements(many_app) as statements:
        gone = client.post("/api/v1/customer/bulk", json={"action": "delete", "ids": customers}, headers=headers)
    assert gone.status_code == 200 and sorted(gone.json["done"]) == customers, gone.json
    deleted = database_events(many_app, "FollowUp", all_follow_ups)[-4:]
    assert sorted(e[0] for e in deleted) == all_follow_ups and {(e[1], e[2]) for e in deleted} == {("delete", "bulk")}
    assert len([s for s in statements if "INSERT INTO portal_history" in s.replace('"', "")]) <= 2  # customers, follow-ups


def test_deleting_a_user_records_the_user_fields_it_empties(many_app):
    client = many_app.test_client()
    headers = jwt_headers(client)
    with many_app.app_context():
        sm = many_app.appbuilder.sm
        leaver = sm.add_user("leaver", "Lea", "Ver", "leaver@example.com", [sm.find_role("Manager")], PASSWORD).id
    customer = client.post("/api/v1/customer/", json={"name": "Users"}, headers=headers).json["id"]
    ticket = client.post("/api/v1/ticket/", json={"subject": "s", "customer": customer, "assignee": leaver},
                         headers=headers).json["id"]
    follow_up = client.post("/api/v1/follow_up/", json={"customer": customer, "summary": "x", "by": leaver},
                            headers=headers).json["id"]
    browser = login(many_app.test_client())
    assert browser.post(f"/users/delete/{leaver}").status_code in (200, 302)
    assert client.get(f"/api/v1/ticket/{ticket}", headers=headers).json["result"]["assignee"] is None
    newest = history(client, headers, "ticket", ticket)["events"][0]
    assert newest["action"] == "update" and changes_of(newest)["assignee"][1] is None
    assert database_events(many_app, "FollowUp", [follow_up])[-1][1:] == ("update", "form", {"by": [leaver, None]})
