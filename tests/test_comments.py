"""Comments (issue 13): who may add, edit and delete them, mentions, plain text escaped on the page, the timeline."""
from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import update

from conftest import jwt_headers, login, make_app
from app.portal import portal_of

PASSWORD = "Comment-pass-1"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    app = make_app(tmp_path_factory, "comments")
    with app.app_context():
        sm = app.appbuilder.sm
        for name, role in (("agent1", "SupportAgent"), ("agent2", "SupportAgent"), ("mgr", "Manager"),
                           ("seller", "Sales")):
            sm.add_user(name, name, "Test", f"{name}@example.com", [sm.find_role(role)], PASSWORD)
        gone = sm.add_user("gone", "gone", "Test", "gone@example.com", [sm.find_role("Manager")], PASSWORD)
        gone.active = False
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


def new_ticket(app, admin, assignee="agent1") -> int:
    client, headers = admin
    customer = client.post("/api/v1/customer/", json={"name": "Ticket customer"}, headers=headers).json["id"]
    response = client.post("/api/v1/ticket/", json={"subject": "Leak", "customer": customer,
                                                   "assignee": user_id(app, assignee)}, headers=headers)
    assert response.status_code == 201, response.json
    return response.json["id"]


def comment(client, headers, pk, text):
    return client.post(f"/api/v1/ticket/{pk}/comments", json={"text": text}, headers=headers)


def age_comment(app, cid, minutes) -> None:
    """The 15-minute window without sleeping: the comment is made older in the database."""
    with app.app_context():
        table = portal_of(app).metadata.tables["portal_comments"]
        session = app.appbuilder.session
        session.execute(update(table).where(table.c.id == cid).values(
            created_on=dt.datetime.now().replace(microsecond=0) - dt.timedelta(minutes=minutes)))
        session.commit()
        session.remove()


def test_reader_in_scope_adds_comments_with_mentions(app, admin):
    pk = new_ticket(app, admin)
    agent = as_user(app, "agent1")
    added = comment(*agent, pk, "  Called @mgr and @nobody, cc @gone and @agent2.  ")
    assert added.status_code == 201, added.json
    result = added.json["result"]
    assert result["text"] == "Called @mgr and @nobody, cc @gone and @agent2."  # trimmed
    # active users who may read this ticket only: agent2 is out of its row scope, like an unknown or inactive user
    assert result["author"] == "agent1" and result["mentions"] == ["mgr"]
    assert result["may_edit"] is True
    listed = agent[0].get(f"/api/v1/ticket/{pk}/comments", headers=agent[1]).json
    assert [c["id"] for c in listed["comments"]] == [added.json["id"]] and listed["next"] is None
    # another agent's ticket is out of scope: 404 for reading and adding alike
    other = as_user(app, "agent2")
    assert other[0].get(f"/api/v1/ticket/{pk}/comments", headers=other[1]).status_code == 404
    assert comment(*other, pk, "hi").status_code == 404
    # an entity without comments
    client, headers = admin
    assert client.get("/api/v1/customer/1/comments", headers=headers).status_code == 404
    assert client.post("/api/v1/customer/1/comments", json={"text": "x"}, headers=headers).status_code == 404


def test_bad_comment_text_is_refused_and_nothing_is_stored(app, admin):
    pk = new_ticket(app, admin)
    client, headers = admin
    for bad in ("", "   ", None, 5, "x" * 4001):
        response = comment(client, headers, pk, bad)
        assert response.status_code == 422 and response.json["message"], bad
    assert client.post(f"/api/v1/ticket/{pk}/comments", data="text", headers=headers).status_code == 400
    zh = client.post(f"/api/v1/ticket/{pk}/comments?_l_=zh", json={"text": ""}, headers=headers)
    assert zh.status_code == 422 and "Write a comment." not in zh.json["message"]
    assert client.get(f"/api/v1/ticket/{pk}/comments", headers=headers).json["comments"] == []


def test_only_the_author_edits_or_deletes_and_only_within_15_minutes(app, admin):
    pk = new_ticket(app, admin)
    agent, boss = as_user(app, "agent1"), as_user(app, "mgr")
    cid = comment(*agent, pk, "first").json["id"]
    url = f"/api/v1/ticket/{pk}/comments/{cid}"
    refused = boss[0].put(url, json={"text": "not mine"}, headers=boss[1])
    assert refused.status_code == 403 and "author" in refused.json["message"]
    assert boss[0].delete(url, headers=boss[1]).status_code == 403
    edited = agent[0].put(url, json={"text": "second @mgr"}, headers=agent[1])
    assert edited.status_code == 200 and edited.json["result"]["text"] == "second @mgr"
    assert edited.json["result"]["edited_on"] and edited.json["result"]["mentions"] == ["mgr"]
    assert agent[0].put(url, json={"text": " "}, headers=agent[1]).status_code == 422
    age_comment(app, cid, 16)
    late = agent[0].put(url, json={"text": "third"}, headers=agent[1])
    assert late.status_code == 403 and "15 minutes" in late.json["message"]
    assert agent[0].delete(url, headers=agent[1]).status_code == 403
    assert agent[0].get(f"/api/v1/ticket/{pk}/comments", headers=agent[1]).json["comments"][0]["text"] == "second @mgr"
    # within the window the author deletes it; a comment of another record is not reachable through this one
    cid2 = comment(*agent, pk, "oops").json["id"]
    other = new_ticket(app, admin)
    assert agent[0].delete(f"/api/v1/ticket/{other}/comments/{cid2}", headers=agent[1]).status_code == 404
    age_comment(app, cid2, 14)
    assert agent[0].delete(f"/api/v1/ticket/{pk}/comments/{cid2}", headers=agent[1]).status_code == 200
    assert len(agent[0].get(f"/api/v1/ticket/{pk}/comments", headers=agent[1]).json["comments"]) == 1


def test_comment_text_is_escaped_on_the_detail_page(app, admin):
    pk = new_ticket(app, admin)
    client, headers = admin
    assert comment(client, headers, pk, "<script>alert('x')</script><b>bold</b>").status_code == 201
    page = login(app.test_client()).get(f"/ticket/show/{pk}")
    assert page.status_code == 200
    assert "&lt;script&gt;alert(" in page.text and "<script>alert(" not in page.text
    assert "&lt;b&gt;bold&lt;/b&gt;" in page.text


def test_page_comment_box_add_edit_delete(app, admin):
    pk = new_ticket(app, admin)
    browser = login(app.test_client(), "agent1", PASSWORD)
    added = browser.post(f"/ticket/comments/{pk}", data={"text": "From the page"})
    assert added.status_code == 302 and f"/ticket/show/{pk}" in added.headers["Location"]
    page = browser.get(f"/ticket/show/{pk}").text
    cid = int(re.search(r'action="/ticket/comment/(\d+)/edit"', page).group(1))
    assert "From the page" in page
    assert browser.post(f"/ticket/comment/{cid}/edit", data={"text": "Edited on the page"}).status_code == 302
    assert "Edited on the page" in browser.get(f"/ticket/show/{pk}").text
    refused = browser.post(f"/ticket/comments/{pk}", data={"text": "  "}, follow_redirects=True)
    assert "Write a comment." in refused.text
    other = login(app.test_client(), "mgr", PASSWORD)
    assert other.post(f"/ticket/comment/{cid}/delete", follow_redirects=True).text.count("Edited on the page") >= 1
    assert browser.post(f"/ticket/comment/{cid}/delete").status_code == 302
    assert "Edited on the page" not in browser.get(f"/ticket/show/{pk}").text
    outsider = login(app.test_client(), "agent2", PASSWORD)
    assert outsider.post(f"/ticket/comments/{pk}", data={"text": "x"}).status_code == 404
    assert outsider.get(f"/ticket/timeline/{pk}").status_code == 404


def test_timeline_merges_history_and_comments_and_pages_older_entries(app, admin):
    pk = new_ticket(app, admin)
    client, headers = admin
    for i in range(25):
        assert comment(client, headers, pk, f"note {i}").status_code == 201
    browser = login(app.test_client())
    page = browser.get(f"/ticket/show/{pk}").text
    first = re.findall(r'data-kind="(\w+)" data-id="(\d+)"', page)
    assert len(first) == 20 and first[0] == ("comment", str(max(int(i) for k, i in first if k == "comment")))
    older = re.search(r'data-url="(/ticket/timeline/\d+\?before=[^"]+)"', page).group(1)
    rest = browser.get(older.replace("&amp;", "&"))
    assert rest.status_code == 200
    second = re.findall(r'data-kind="(\w+)" data-id="(\d+)"', rest.text)
    kinds = [k for k, _ in first + second]
    assert kinds.count("comment") == 25 and kinds.count("history") == 1  # the ticket's creation
    assert not set(first) & set(second) and 'data-url="' not in rest.text  # the last page
    assert browser.get(f"/ticket/timeline/{pk}?before=zz").status_code == 400


def test_mentions_keep_only_users_who_may_read_the_record(app, admin):
    """A mention of a user who may not read the record (no role reading tickets, or out of their row scope) is
    dropped, so the answer does not tell which usernames exist; once the record is in their scope it counts."""
    pk = new_ticket(app, admin)
    agent = as_user(app, "agent1")
    added = comment(*agent, pk, "@seller @agent2 @admin @agent1 @nosuchuser")
    assert added.status_code == 201 and added.json["result"]["mentions"] == ["admin", "agent1"]
    client, headers = admin
    assert client.put(f"/api/v1/ticket/{pk}", json={"assignee": user_id(app, "agent2")}, headers=headers).status_code == 200
    edited = client.post(f"/api/v1/ticket/{pk}/comments", json={"text": "over to @agent2, not @seller"}, headers=headers)
    assert edited.status_code == 201 and edited.json["result"]["mentions"] == ["agent2"]


def test_odd_ids_and_cursors_are_4xx_not_500(app, admin):
    """Unicode digits (isdigit() takes "²", int() does not) and comment ids past the integer column."""
    pk = new_ticket(app, admin)
    client, headers = admin
    for query in ("page_size=²", "before=²", "before=٣", "page_size=1%0A", "before=1234567890123456789"):
        for what in ("history", "comments"):
            response = client.get(f"/api/v1/ticket/{pk}/{what}?{query}", headers=headers)
            assert response.status_code == 400 and response.json["message"], (what, query)
    huge = "9" * 25
    assert client.put(f"/api/v1/ticket/{pk}/comments/{huge}", json={"text": "x"}, headers=headers).status_code == 404
    assert client.delete(f"/api/v1/ticket/{pk}/comments/{huge}", headers=headers).status_code == 404
    assert client.delete(f"/api/v1/ticket/{pk}/comments/{2**31}", headers=headers).status_code == 404
    browser = login(app.test_client())
    assert browser.post(f"/ticket/comment/{huge}/edit", data={"text": "x"}).status_code == 404
    assert browser.post(f"/ticket/comment/{2**63}/delete").status_code == 404
    for cursor in ("h²", "c²", "h٣", "h1%0A"):
        assert browser.get(f"/ticket/timeline/{pk}?before={cursor}").status_code == 400, cursor
    assert client.get(f"/api/v1/ticket/{pk}/comments", headers=headers).json["comments"] == []
