"""Date reminders (issue 14): the worker's scan fires once per (reminder, record, date value), across scans and
restarts; a moved date fires again; a late record fires at once; never after the date; concurrent scans on
PostgreSQL do not double-fire. The fan-out pass renders email for the recipient (their language, their Viewer)."""
from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
from sqlalchemy import select

from conftest import jwt_headers, make_app
from app import create_app
from app.portal import portal_of
from app.rules.notification_passes import notify_pass, scan

PASSWORD = "Remind-pass-1"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    app = make_app(tmp_path_factory, "date_reminders")
    with app.app_context():
        sm = app.appbuilder.sm
        for name, role in (("seller", "Sales"), ("seller2", "Sales"), ("boss", "Manager"), ("agent", "SupportAgent")):
            sm.add_user(name, name, "Test", f"{name}@example.com", [sm.find_role(role)], PASSWORD)
        app.appbuilder.session.commit()
    return app


@pytest.fixture(scope="module")
def admin(app):
    client = app.test_client()
    return client, jwt_headers(client)


def uid(app, name) -> int:
    with app.app_context():
        return app.appbuilder.sm.find_user(username=name).id


def rows(app, **where) -> list:
    with app.app_context():
        table = portal_of(app).metadata.tables["portal_notifications"]
        query = select(table)
        for key, value in where.items():
            query = query.where(table.c[key] == value)
        found = app.appbuilder.session.execute(query.order_by(table.c.id)).all()
        app.appbuilder.session.remove()
        return found


def follow_up(app, admin, owner="seller", on=None, **extra) -> int:
    client, headers = admin
    customer = client.post("/api/v1/customer/", json={"name": f"Due customer {owner}", "owner": uid(app, owner)},
                           headers=headers)
    assert customer.status_code == 201, customer.json
    body = {"customer": customer.json["id"], "summary": "Call back", "next_contact_on": on, **extra}
    response = client.post("/api/v1/follow_up/", json=body, headers=headers)
    assert response.status_code == 201, response.json
    return response.json["id"]


TODAY = dt.date.today()  # the day the dates below are written from


def on_today() -> dt.datetime:
    """Now, but on TODAY: a run that crosses midnight keeps the dates and the scan on the same day."""
    return dt.datetime.combine(TODAY, dt.datetime.now().time()).replace(microsecond=0)


def run_scan(app, now=None) -> int:
    with app.app_context():
        return scan(app, now or on_today())


def test_fires_once_across_scans_and_a_restart_and_again_when_the_date_moves(app, admin):
    pk = follow_up(app, admin, on=str(TODAY + dt.timedelta(days=1)))  # offset -1d: due from today 00:00
    run_scan(app)
    fired = rows(app, reminder="follow_up_due", record_id=pk)
    # `by` is the admin who wrote it, customer.owner the seller: both (a scan has no author)
    assert sorted(r.user_id for r in fired) == sorted([uid(app, "admin"), uid(app, "seller")])
    assert {r.event for r in fired} == {"due"}
    run_scan(app)
    restarted = create_app({**{k: app.config[k] for k in ("SECRET_KEY", "SQLALCHEMY_DATABASE_URI", "PORTAL_SCHEMA_DIR")},
                            "TESTING": True})
    run_scan(restarted)
    assert len(rows(app, reminder="follow_up_due", record_id=pk)) == 2
    client, headers = admin
    moved = client.put(f"/api/v1/follow_up/{pk}", json={"next_contact_on": str(TODAY)}, headers=headers)
    assert moved.status_code == 200, moved.json
    run_scan(app)
    assert len(rows(app, reminder="follow_up_due", record_id=pk)) == 4


def test_not_before_its_time_never_after_the_date_and_when_must_hold(app, admin):
    later = follow_up(app, admin, on=str(TODAY + dt.timedelta(days=3)))
    past = follow_up(app, admin, on=str(TODAY - dt.timedelta(days=1)))
    done = follow_up(app, admin, on=str(TODAY + dt.timedelta(days=1)), done=True)
    run_scan(app)
    for pk in (later, past, done):
        assert rows(app, reminder="follow_up_due", record_id=pk) == []
    # two days on, the first one is due
    run_scan(app, dt.datetime.combine(TODAY + dt.timedelta(days=2), dt.time(9)))
    assert len(rows(app, reminder="follow_up_due", record_id=later)) == 2


def test_a_record_created_after_its_fire_time_fires_on_the_next_scan(app, admin):
    pk = follow_up(app, admin, on=str(TODAY))  # fire time was yesterday midnight; the date is today
    run_scan(app)
    assert len(rows(app, reminder="follow_up_due", record_id=pk)) == 2


def test_positive_offset_fires_on_the_fire_day_only(app, admin):
    client, headers = admin
    customer = client.post("/api/v1/customer/", json={"name": "Ticket owner"}, headers=headers).json["id"]
    made = {}
    for days in (1, 2):
        response = client.post("/api/v1/ticket/", json={"subject": f"late {days}", "customer": customer,
                                                        "assignee": uid(app, "agent"),
                                                        "due_date": str(TODAY - dt.timedelta(days=days))}, headers=headers)
        assert response.status_code == 201, response.json
        made[days] = response.json["id"]
    run_scan(app)
    fired = rows(app, reminder="ticket_overdue", record_id=made[1])
    assert sorted(r.user_id for r in fired) == sorted([uid(app, "agent"), uid(app, "boss")])
    assert rows(app, reminder="ticket_overdue", record_id=made[2]) == []  # its fire day was yesterday


def test_email_is_rendered_for_the_recipient_language_and_scope(app, admin):
    from app.runtime.locale import UserLocale

    with app.app_context():
        session = app.appbuilder.session
        session.merge(UserLocale(user_id=uid(app, "seller2"), locale="zh"))
        session.commit()
        session.remove()
    # `by` names seller, but the record is seller2's customer's: outside seller's row scope
    pk = follow_up(app, admin, owner="seller2", on=str(TODAY + dt.timedelta(days=1)), by=uid(app, "seller"))
    run_scan(app)
    assert uid(app, "seller") in [r.user_id for r in rows(app, reminder="follow_up_due", record_id=pk)]
    with app.app_context():
        while notify_pass(app):
            pass
        outbox = portal_of(app).metadata.tables["portal_outbox"]
        messages = [json.loads(m.payload) | {"user_id": m.user_id} for m in app.appbuilder.session.execute(
            select(outbox).where(outbox.c.channel == "email")).all()]
        app.appbuilder.session.remove()
    mine = [m for m in messages if m["user_id"] == uid(app, "seller2")]
    assert len(mine) == 1 and mine[0]["to"] == "seller2@example.com"
    assert mine[0]["subject"].startswith("请在") and f"/follow_up/show/{pk}" in mine[0]["text"]
    assert mine[0]["text"].startswith("请在") and app.config["PORTAL_BASE_URL"] + f"/follow_up/show/{pk}" in mine[0]["text"]
    # seller was notified but may not read the record: no email, and nothing in their inbox
    assert not any(f"/follow_up/show/{pk}" in m["text"] for m in messages if m["user_id"] == uid(app, "seller"))
    client = app.test_client()
    inbox = client.get("/api/v1/notifications", headers=jwt_headers(client, "seller", PASSWORD)).json
    assert pk not in [n["record_id"] for n in inbox["result"] if n["entity"] == "FollowUp"]
    assert inbox["count"] == len(inbox["result"])
    assert all(r.dispatched_on is not None for r in rows(app, reminder="follow_up_due"))


def test_concurrent_scans_do_not_double_fire(app, admin):
    ids = [follow_up(app, admin, on=str(TODAY + dt.timedelta(days=1))) for _ in range(12)]
    barrier = threading.Barrier(4)
    errors = []

    def one_worker():
        try:
            with app.app_context():
                barrier.wait()
                scan(app, on_today())
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one_worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for pk in ids:
        assert len(rows(app, reminder="follow_up_due", record_id=pk)) == 2
