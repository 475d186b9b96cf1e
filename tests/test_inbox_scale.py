"""The inbox is filtered, counted and paged in SQL (issue 14): a user with hundreds of notifications, most about
records outside their scope, gets the right count, unread count and pages, and one inbox page costs the same
number of statements whether they have 30 notifications or 300."""
from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from conftest import jwt_headers, login, make_app, sql_statements
from app.portal import portal_of

PASSWORD = "Inbox-scale-1"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    app = make_app(tmp_path_factory, "inbox_scale")
    with app.app_context():
        sm = app.appbuilder.sm
        sm.add_user("seller", "Seller", "Test", "seller@example.com", [sm.find_role("Sales")], PASSWORD)
        app.appbuilder.session.commit()
    return app


@pytest.fixture(scope="module")
def setup(app):
    """Two customers (the seller's and another's) with a follow-up each, and a ticket the seller may not read."""
    client = app.test_client()
    headers = jwt_headers(client)
    with app.app_context():
        seller = app.appbuilder.sm.find_user(username="seller").id
    mine = client.post("/api/v1/customer/", json={"name": "Mine", "owner": seller}, headers=headers).json["id"]
    theirs = client.post("/api/v1/customer/", json={"name": "Theirs"}, headers=headers).json["id"]
    made = {}
    for key, customer in (("in", mine), ("out", theirs)):
        response = client.post("/api/v1/follow_up/", json={"customer": customer, "summary": f"call {key}"},
                               headers=headers)
        assert response.status_code == 201, response.json
        made[key] = response.json["id"]
    ticket = client.post("/api/v1/ticket/", json={"subject": "Not for sales", "customer": mine}, headers=headers)
    assert ticket.status_code == 201, ticket.json
    made["ticket"] = ticket.json["id"]
    return seller, made


KINDS = ("in", "out", "ticket", "gone", "deleted")  # what each notification is about, in turn
VISIBLE = {"in", "deleted"}  # in scope; a delete event of an entity the seller reads (shown from its snapshot)


def give(app, seller, made, count: int, start: int) -> list[tuple[int, str]]:
    """`count` notifications for the seller, kinds in turn; returns (id, kind) of each."""
    with app.app_context():
        table = portal_of(app).metadata.tables["portal_notifications"]
        session = app.appbuilder.session
        now = dt.datetime.now().replace(microsecond=0)
        out = []
        for n in range(start, start + count):
            kind = KINDS[n % len(KINDS)]
            entity, record, event = {"in": ("FollowUp", made["in"], "create"),
                                     "out": ("FollowUp", made["out"], "create"),
                                     "ticket": ("Ticket", made["ticket"], "create"),
                                     "gone": ("FollowUp", 10 ** 8, "update"),
                                     "deleted": ("FollowUp", 10 ** 8 + 1, "delete")}[kind]
            pk = session.execute(table.insert().values(
                user_id=seller, reminder="follow_up_due" if entity == "FollowUp" else "ticket_assigned",
                entity=entity, record_id=record, event=event, snapshot=json.dumps({"summary": f"n{n}"}),
                created_on=now, read_on=now if n % 3 == 0 else None)).inserted_primary_key[0]
            out.append((pk, kind, n % 3 != 0))
        session.commit()
        return out


def test_counts_pages_and_statements_stay_flat(app, setup):
    seller, made = setup
    client = app.test_client()
    headers = jwt_headers(client, "seller", PASSWORD)
    counts = {}
    given = []
    for size in (30, 300):
        given += give(app, seller, made, size - len(given), len(given))
        visible = [(pk, unread) for pk, kind, unread in given if kind in VISIBLE]
        with sql_statements(app) as statements:
            response = client.get("/api/v1/notifications?page_size=10&page=1", headers=headers)
        assert response.status_code == 200, response.json
        assert response.json["count"] == len(visible)
        assert response.json["unread"] == sum(1 for _, unread in visible if unread)
        newest_first = sorted((pk for pk, _ in visible), reverse=True)
        assert [r["id"] for r in response.json["result"]] == newest_first[10:20]
        counts[size] = len(statements)
        # the inbox is never loaded whole: every read of it is a COUNT or a LIMITed page
        reads = [s for s in statements if "FROM portal_notifications" in s and s.lstrip().upper().startswith("SELECT")]
        assert reads and all("count(" in s.lower() or "LIMIT" in s.upper() for s in reads), reads

        unread = client.get("/api/v1/notifications?unread=1&page_size=100", headers=headers).json
        assert unread["count"] == unread["unread"] == sum(1 for _, u in visible if u)
        assert {r["id"] for r in unread["result"]} == {pk for pk, u in visible if u}
    assert counts[30] == counts[300], counts

    # the inbox page with the navbar bell: the same statements at 300 as at 30, and the bell's count
    browser = login(app.test_client(), "seller", PASSWORD)
    browser.get("/inbox/")  # the role's permissions read once, then kept (app/runtime/security.py)
    with sql_statements(app) as statements:
        page = browser.get("/inbox/?page=2")
    assert page.status_code == 200
    times = re.findall(r'<time datetime="([^"]+)">([^<]+)</time>', page.get_data(as_text=True))
    assert len(times) == 20 and all("T" in iso and "T" not in shown for iso, shown in times)  # shown in the locale
    page_statements = len(statements)
    given += give(app, seller, made, 300, len(given))
    with sql_statements(app) as statements:
        assert browser.get("/inbox/?page=2").status_code == 200
    assert len(statements) == page_statements
    visible = [(pk, unread) for pk, kind, unread in given if kind in VISIBLE]
    assert client.get("/api/v1/notifications?page_size=1", headers=headers).json["unread"] == \
        sum(1 for _, u in visible if u)
