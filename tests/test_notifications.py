"""Reminders and the inbox (issue 14): event notifications written with the change, on every write path;
the inbox through the reader's Viewer and language; settings."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from conftest import jwt_headers, make_app
from app.portal import portal_of

PASSWORD = "Remind-pass-1"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    app = make_app(tmp_path_factory, "notifications")
    with app.app_context():
        sm = app.appbuilder.sm
        for name, role in (("agent1", "SupportAgent"), ("agent2", "SupportAgent"), ("boss", "Manager"),
                           ("seller", "Sales")):
            sm.add_user(name, name, "Test", f"{name}@example.com", [sm.find_role(role)], PASSWORD)
        app.appbuilder.session.commit()
    return app


def user_id(app, name) -> int:
    with app.app_context():
        return app.appbuilder.sm.find_user(username=name).id


@pytest.fixture(scope="module")
def admin(app):
    client = app.test_client()
    return client, jwt_headers(client)


def as_user(app, name):
    client = app.test_client()
    return client, jwt_headers(client, name, PASSWORD)


def notifications(app, **where) -> list:
    with app.app_context():
        table = portal_of(app).metadata.tables["portal_notifications"]
        query = select(table)
        for key, value in where.items():
            query = query.where(table.c[key] == value)
        rows = app.appbuilder.session.execute(query.order_by(table.c.id)).all()
        app.appbuilder.session.remove()
        return rows


def new_customer(admin, name="Notified customer") -> int:
    client, headers = admin
    response = client.post("/api/v1/customer/", json={"name": name}, headers=headers)
    assert response.status_code == 201, response.json
    return response.json["id"]


def new_ticket(app, admin, assignee="agent1", **extra) -> int:
    client, headers = admin
    body = {"subject": "Leak", "customer": new_customer(admin), "assignee": user_id(app, assignee), **extra}
    response = client.post("/api/v1/ticket/", json=body, headers=headers)
    assert response.status_code == 201, response.json
    return response.json["id"]


def test_api_create_notifies_the_assignee_in_the_same_transaction(app, admin):
    pk = new_ticket(app, admin)
    rows = notifications(app, entity="Ticket", record_id=pk)
    assert [(r.user_id, r.reminder, r.event) for r in rows] == [(user_id(app, "agent1"), "ticket_assigned", "create")]


def test_refused_write_leaves_no_notification(app, admin):
    client, headers = admin
    before = len(notifications(app, reminder="ticket_assigned"))
    response = client.post("/api/v1/ticket/", json={"subject": "", "customer": new_customer(admin),
                                                    "assignee": user_id(app, "agent1")}, headers=headers)
    assert response.status_code == 422, response.json
    assert len(notifications(app, reminder="ticket_assigned")) == before


def test_notification_rows_are_part_of_the_flush_and_go_with_its_rollback(app, admin):
    customer = new_customer(admin)
    with app.app_context():
        portal = portal_of(app)
        session = app.appbuilder.session
        table = portal.metadata.tables["portal_notifications"]
        Ticket = portal.models["Ticket"]
        ticket = Ticket(subject="Rolled back", customer_id=customer, assignee_id=user_id(app, "agent2"))
        session.add(ticket)
        session.flush()
        inside = session.execute(select(func.count()).select_from(table).where(table.c.record_id == ticket.id,
                                                                               table.c.entity == "Ticket")).scalar()
        pk = ticket.id
        session.rollback()
        session.remove()
    assert inside == 1
    assert notifications(app, entity="Ticket", record_id=pk) == []


def test_reassigning_notifies_the_new_assignee_and_other_changes_do_not(app, admin):
    client, headers = admin
    pk = new_ticket(app, admin)
    assert client.put(f"/api/v1/ticket/{pk}", json={"subject": "Bigger leak"}, headers=headers).status_code == 200
    assert len(notifications(app, entity="Ticket", record_id=pk)) == 1
    assert client.put(f"/api/v1/ticket/{pk}", json={"assignee": user_id(app, "agent2")}, headers=headers).status_code == 200
    rows = notifications(app, entity="Ticket", record_id=pk)
    assert [(r.user_id, r.event) for r in rows][-1] == (user_id(app, "agent2"), "update")


def test_the_author_is_not_notified_of_their_own_change(app):
    agent = as_user(app, "agent1")
    client, headers = agent
    customer = new_customer(as_user(app, "boss"), "Agent customer")
    response = client.post("/api/v1/ticket/", json={"subject": "Mine", "customer": customer,
                                                    "assignee": user_id(app, "agent1")}, headers=headers)
    assert response.status_code == 201, response.json
    assert notifications(app, entity="Ticket", record_id=response.json["id"]) == []


def test_inbox_lists_renders_and_marks_read(app, admin):
    pk = new_ticket(app, admin, assignee="agent2", subject="Window <b>broken</b>")
    client, headers = as_user(app, "agent2")
    body = client.get("/api/v1/notifications", headers=headers).json
    mine = [n for n in body["result"] if n["record_id"] == pk]
    assert len(mine) == 1 and mine[0]["read"] is False and mine[0]["url"] == f"/ticket/show/{pk}"
    assert "Window <b>broken</b>" in mine[0]["text"] and mine[0]["text"].startswith("Ticket TK-")
    assert body["unread"] >= 1 and body["count"] == len(body["result"])
    # someone else's notification is a 404, and changes nothing
    other, other_headers = as_user(app, "agent1")
    assert other.post(f"/api/v1/notifications/{mine[0]['id']}/read", headers=other_headers).status_code == 404
    assert client.post(f"/api/v1/notifications/{mine[0]['id']}/read", headers=headers).status_code == 200
    after = client.get("/api/v1/notifications?unread=1", headers=headers).json
    assert pk not in [n["record_id"] for n in after["result"]] and after["unread"] == body["unread"] - 1
    assert client.post("/api/v1/notifications/read_all", headers=headers).status_code == 200
    assert client.get("/api/v1/notifications", headers=headers).json["unread"] == 0
    assert client.get("/api/v1/notifications?page_size=0", headers=headers).status_code == 400
    assert app.test_client().get("/api/v1/notifications").status_code == 401
