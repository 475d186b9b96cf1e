"""Merging duplicates (issue 16) over HTTP: every kind of reference moves to the survivor, all or nothing, who may
merge what (permissions, row scope, hidden and masked fields), the API's answers and the merge page."""
from __future__ import annotations

import datetime as dt
import io
import struct
import zlib
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from conftest import ADMIN, jwt_headers, login, make_app
from app.portal import portal_of

FIXTURE = Path(__file__).parent / "fixtures" / "merge"
PASSWORD = "Merge-pass-1"
PDF = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"


def png(seed: int) -> bytes:
    """A real 1x1 PNG (a different pixel per seed, so a different blob)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"\x00" + bytes([seed % 256, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    files = tmp_path_factory.mktemp("mergefiles")
    app = make_app(tmp_path_factory, "merge", schema_dir=FIXTURE, PORTAL_FILES_DIR=str(files))
    with app.app_context():
        sm = app.appbuilder.sm
        for name, role in (("sam", "Sales"), ("sue", "Sales"), ("ed", "Editor")):
            sm.add_user(name, name, "Test", f"{name}@example.com", [sm.find_role(role)], PASSWORD)
    return app


class Client:
    def __init__(self, app, user=ADMIN[0], password=ADMIN[1]):
        self.client = app.test_client()
        self.headers = jwt_headers(self.client, user, password)

    def get(self, url, **kw):
        return self.client.get(url, headers=self.headers, **kw)

    def post(self, url, json=None, **kw):
        return self.client.post(url, json=json, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def put(self, url, json=None):
        return self.client.put(url, json=json, headers=self.headers)

    def create(self, entity, **values) -> int:
        response = self.post(f"/api/v1/{entity}/", json=values)
        assert response.status_code == 201, response.json
        return response.json["id"]

    def record(self, entity, pk) -> dict:
        response = self.get(f"/api/v1/{entity}/{pk}")
        assert response.status_code == 200, response.json
        return response.json["result"]

    def upload(self, entity, pk, name, content, field=None):
        form = {"file": [(io.BytesIO(content), name)]}
        if field:
            form["field"] = field
        response = self.post(f"/api/v1/{entity}/{pk}/attachments", content_type="multipart/form-data", data=form)
        assert response.status_code == 201, response.json
        return response.json["result"][0]["id"]

    def merge(self, survivor, body, entity="company", **kw):
        return self.post(f"/api/v1/{entity}/{survivor}/merge", json=body, **kw)


def user_id(app, name) -> int:
    with app.app_context():
        return app.appbuilder.sm.find_user(username=name).id


@pytest.fixture(scope="module")
def admin(app):
    return Client(app)


def snapshot(app) -> dict:
    """Every row of every table the merge touches, to show that a refused merge changed nothing."""
    with app.app_context():
        portal = portal_of(app)
        session = app.appbuilder.session
        names = sorted(t for t in portal.metadata.tables if not t.startswith("portal_table_versions"))
        found = {name: sorted(map(repr, session.execute(select(portal.metadata.tables[name])).all())) for name in names}
        session.remove()
        return found


def history(client, pk, entity="company") -> list[dict]:
    response = client.get(f"/api/v1/{entity}/{pk}/history?page_size=100")
    assert response.status_code == 200, response.json
    return response.json["events"]


def test_every_reference_moves_to_the_survivor(app, admin):
    tag1, tag2 = admin.create("tag", name="vip"), admin.create("tag", name="north")
    a = admin.create("company", name="张三建筑", code="A-1", phone="13800138000", tags=[tag1])
    b = admin.create("company", name="张三建筑有限公司", code="B-1", phone="13900139000", email="b@example.com",
                     tags=[tag2])
    child = admin.create("company", name="Branch", parent=b)
    assert admin.put(f"/api/v1/company/{a}", json={"parent": b}).status_code == 200  # the survivor points at the loser
    ann = admin.create("contact", company=a, name="Ann")
    bob = admin.create("contact", company=b, name="Bob")
    deal = admin.create("deal", title="Tower", company=b)
    both = admin.create("deal", title="Joint", partners=[a, b])
    only = admin.create("deal", title="Solo", partners=[b])
    deal_version = admin.record("deal", deal)["row_version"]
    assert admin.post(f"/api/v1/company/{b}/comments", json={"text": "met at the fair"}).status_code == 201
    attachment = admin.upload("company", b, "offer.pdf", PDF)
    logo_a = admin.upload("company", a, "a.png", png(1), field="logo")
    logo_b = admin.upload("company", b, "b.png", png(2), field="logo")
    with app.app_context():  # a notification and fired reminder keys, as the reminders worker leaves them
        portal, session = portal_of(app), app.appbuilder.session
        notes, fired = portal.metadata.tables["portal_notifications"], portal.metadata.tables["portal_reminder_fired"]
        session.execute(insert(notes).values(user_id=1, reminder="r", entity="Company", record_id=b, event="update",
                                             snapshot="{}", created_on=dt.datetime(2026, 1, 1)))
        session.execute(insert(fired), [{"reminder": "r", "entity": "Company", "record_id": pk, "fire_key": key}
                                        for pk, key in ((a, "2026-01-01"), (b, "2026-01-01"), (b, "2026-02-01"))])
        session.commit()
        session.remove()
    loser_history = [e["action"] for e in history(admin, b)]

    response = admin.merge(a, {"loser": b, "fields": {"code": "loser", "email": "loser", "tags": "loser",
                                                      "logo": "loser", "phone": "survivor"}})
    assert response.status_code == 200, response.json
    result = response.json["result"]
    assert response.json["id"] == a and response.json["merged"] == {"id": b, "title": "张三建筑有限公司",
                                                                   "fields": ["code", "email", "logo", "tags"]}
    # chosen values (a unique code taken from the loser), unnamed and "survivor" fields kept, rollups recounted
    assert (result["name"], result["code"], result["phone"], result["email"]) == (
        "张三建筑", "B-1", "+8613800138000", "b@example.com")
    assert [t["id"] for t in result["tags"]] == [tag2]
    assert result["contacts"] == 2 and result["logo"]["id"] == logo_b
    assert result["parent"] is None  # it pointed at the loser: not at itself now
    assert response.headers["ETag"]
    assert admin.get(f"/api/v1/company/{b}").status_code == 404
    # links, inline lines, many-links (one row where both were linked)
    assert admin.record("company", child)["parent"]["id"] == a
    assert admin.record("contact", bob)["company"]["id"] == a and admin.record("contact", ann)["company"]["id"] == a
    moved = admin.record("deal", deal)
    assert moved["company"]["id"] == a and moved["row_version"] == deal_version + 1
    assert [p["id"] for p in admin.record("deal", both)["partners"]] == [a]
    assert [p["id"] for p in admin.record("deal", only)["partners"]] == [a]
    # referrers' history says so
    deal_events = history(admin, deal, "deal")
    assert deal_events[0]["path"] == "merge" and deal_events[0]["changes"][0]["field"] == "company"
    joint = history(admin, both, "deal")[0]["changes"][0]
    assert joint["field"] == "partners"
    # comments, attachments and the loser's history are the survivor's
    comments = admin.get(f"/api/v1/company/{a}/comments").json["comments"]
    assert [c["text"] for c in comments] == ["met at the fair"]
    files = admin.get(f"/api/v1/company/{a}/attachments").json["result"]
    assert [f["id"] for f in files] == [attachment]
    assert admin.get(f"/api/v1/company/{a}/attachments/{attachment}").data == PDF
    events = history(admin, a)
    assert events[0]["action"] == "merge" and events[0]["merged"]["id"] == b
    assert events[0]["merged"]["fields"] == ["Code", "Email", "Logo", "Tags"]
    assert [e["action"] for e in events].count("create") == 2  # both records' creation
    assert any(c["field"] == "parent" and c["old"] == f"#{b}" and c["new"] is None
               for e in events if e["path"] == "merge" for c in e["changes"])  # no longer its own parent
    assert len(events) >= len(loser_history) + 3
    with app.app_context():
        session = app.appbuilder.session
        assert session.execute(select(notes.c.record_id)).scalars().all() == [a]
        assert sorted(session.execute(select(fired.c.record_id, fired.c.fire_key)).all()) == [
            (a, "2026-01-01"), (a, "2026-02-01")]
        session.remove()
    assert logo_a != logo_b


def test_a_failure_half_way_leaves_everything_as_it_was(app, admin):
    """The loser's email without its phone breaks the survivor's rule: found after the references moved and the
    loser was deleted, so everything done until then is rolled back."""
    a = admin.create("company", name="Half A")
    b = admin.create("company", name="Half B", phone="13700137000", email="half@example.com")
    admin.create("contact", company=b, name="Carl")
    admin.create("deal", title="Half deal", company=b, partners=[b])
    assert admin.post(f"/api/v1/company/{b}/comments", json={"text": "stays"}).status_code == 201
    before = snapshot(app)
    response = admin.merge(a, {"loser": b, "fields": {"email": "loser"}})
    assert response.status_code == 422, response.json
    assert response.json["errors"] == {"email": ["An email needs a phone"]}
    assert snapshot(app) == before
    zh = admin.merge(a, {"loser": b, "fields": {"email": "loser"}}, query_string={"_l_": "zh"})
    assert zh.status_code == 422 and zh.json["errors"] == {"email": ["有邮箱须有电话"]}
    # with the phone too it is fine
    assert admin.merge(a, {"loser": b, "fields": {"email": "loser", "phone": "loser"}}).status_code == 200


def test_bad_bodies_are_refused_and_change_nothing(app, admin):
    a = admin.create("company", name="Body A")
    b = admin.create("company", name="Body B")
    before = snapshot(app)
    for body, where in (({}, None), ({"loser": "x"}, None), ({"loser": True}, None), ({"loser": a}, None),
                        ({"loser": 1.5}, None), ({"loser": b, "fields": []}, None),
                        ({"loser": b, "fields": {"nope": "loser"}}, "nope"),
                        ({"loser": b, "fields": {"phone": "both"}}, "phone"),
                        ({"loser": b, "fields": {"contacts": "loser"}}, "contacts"),
                        ({"loser": b, "fields": {"stage": "loser"}}, "stage"),
                        ({"loser": b, "extra": 1}, None)):
        response = admin.merge(a, body)
        assert response.status_code == 400, (body, response.json)
        assert response.json["message"]
        if where:
            assert list(response.json["errors"]) == [where]
    assert admin.client.post(f"/api/v1/company/{a}/merge", data="loser=1", headers=admin.headers).status_code == 400
    assert admin.merge(a, [b]).status_code == 400
    assert admin.merge(999999, {"loser": b}).status_code == 404
    assert admin.merge(a, {"loser": 999999}).status_code == 404
    zh = admin.merge(a, {"loser": a}, query_string={"_l_": "zh"})
    assert zh.status_code == 400 and "itself" not in zh.json["message"]
    assert snapshot(app) == before


def test_locked_records_and_conflicting_references_are_409(app, admin):
    sam = Client(app, "sam", PASSWORD)
    a = sam.create("company", name="Lock A")
    b = sam.create("company", name="Lock B")
    assert sam.post(f"/api/v1/company/{b}/transitions/close").status_code == 200
    before = snapshot(app)
    for survivor, loser in ((a, b), (b, a)):
        response = sam.merge(survivor, {"loser": loser})
        assert response.status_code == 409 and "Closed" in response.json["message"], response.json
    # each has a contact named Ann: moving one over would repeat (company, name)
    c, d = admin.create("company", name="Dup C"), admin.create("company", name="Dup D")
    admin.create("contact", company=c, name="Ann")
    admin.create("contact", company=d, name="Ann")
    before = snapshot(app)
    response = admin.merge(c, {"loser": d})
    assert response.status_code == 409 and "Contact" in response.json["message"] and "Name" in response.json["message"]
    assert snapshot(app) == before
    # a stale If-Match on the survivor
    e, f = admin.create("company", name="Stale E"), admin.create("company", name="Stale F")
    assert admin.merge(e, {"loser": f}, headers={"If-Match": '"99"'}).status_code == 409


def test_who_may_merge_what(app, admin):
    sam, sue, ed = Client(app, "sam", PASSWORD), Client(app, "sue", PASSWORD), Client(app, "ed", PASSWORD)
    sam_id = user_id(app, "sam")  # the phone is masked for Sales: an admin fills it in
    mine = admin.create("company", name="Sam one", phone="13600136000", owner=sam_id)
    also_mine = admin.create("company", name="Sam two", phone="13500135000", owner=sam_id)
    admin.put(f"/api/v1/company/{mine}", json={"secret": "ours"})
    admin.put(f"/api/v1/company/{also_mine}", json={"secret": "theirs"})
    hers = sue.create("company", name="Sue one")
    before = snapshot(app)
    # out of scope: "Not found", whichever record it is
    for survivor, loser in ((mine, hers), (hers, mine)):
        response = sam.merge(survivor, {"loser": loser})
        assert response.status_code == 404 and response.json["message"] == "Not found."
    # a hidden field cannot be chosen (nor told apart from an unknown one)
    hidden = sam.merge(mine, {"loser": also_mine, "fields": {"secret": "loser"}})
    assert hidden.status_code == 400 and hidden.json["errors"] == {"secret": ["Unknown field."]}
    # update without delete: no merge
    ed_try = ed.merge(mine, {"loser": also_mine})
    assert ed_try.status_code == 403
    assert snapshot(app) == before
    # a masked field may be chosen; the answer masks it, the hidden field is not in it
    done = sam.merge(mine, {"loser": also_mine, "fields": {"phone": "loser"}})
    assert done.status_code == 200, done.json
    assert done.json["result"]["phone"] == "135****5000" and "secret" not in done.json["result"]
    stored = admin.record("company", mine)
    assert stored["phone"] == "+8613500135000" and stored["secret"] == "ours"
    # the merge event shows the chosen masked field's label, never its values
    events = history(sam, mine)
    assert events[0]["merged"]["title"] == f"Sam two (#{also_mine})"
    assert all(c["new"] in (None, "****") for e in events for c in e["changes"] if c["field"] == "phone")


def test_merge_page_choices_swap_confirmation_and_merge(app, admin):
    sam_id = user_id(app, "sam")
    a = admin.create("company", name="Page <A>", phone="13400134000", code="PA", owner=sam_id)
    b = admin.create("company", name="Page <b>", phone="13300133000", code="PB", owner=sam_id)
    admin.put(f"/api/v1/company/{b}", json={"secret": "s3cret-b"})
    hers = Client(app, "sue", PASSWORD).create("company", name="Sue page")
    browser = login(app.test_client(), "sam", PASSWORD)
    page = browser.get(f"/company/merge/{a}?loser={b}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Page <b>" not in html and "Page &lt;b&gt;" in html  # titles escaped
    assert 'name="field.phone"' in html and 'name="field.code"' in html and 'name="field.name"' in html
    assert 'name="field.stage"' not in html and "s3cret" not in html and 'data-field="secret"' not in html
    assert "134****4000" in html and "13400134000" not in html  # masked on the page
    assert f'/company/merge/{b}?loser={a}' in html  # the swap link
    assert browser.get(f"/company/merge/{a}?loser={hers}").status_code == 404
    assert browser.get(f"/company/merge/{hers}?loser={a}").status_code == 404
    # the detail page offers it, with a picker that lists other records in scope only
    show = browser.get(f"/company/show/{a}").get_data(as_text=True)
    assert 'id="merge-panel"' in show
    found = browser.get(f"/company/merge_lookup/{a}?q=Page").json
    assert [r["id"] for r in found["results"]] == [b]
    assert browser.get(f"/company/merge_lookup/{a}?q=Sue").json["results"] == []
    # no confirmation: nothing happens
    before = snapshot(app)
    refused = browser.post(f"/company/merge/{a}?loser={b}", data={"field.code": "loser"})
    assert refused.status_code == 302 and snapshot(app) == before
    done = browser.post(f"/company/merge/{a}?loser={b}", data={"field.code": "loser", "field.phone": "survivor",
                                                               "confirm": "1"}, follow_redirects=True)
    assert done.status_code == 200 and "into this record" in done.get_data(as_text=True)
    record = admin.record("company", a)
    assert record["code"] == "PB" and record["phone"] == "+8613400134000"
    assert admin.get(f"/api/v1/company/{b}").status_code == 404
    # an editor (no delete) neither sees the panel nor opens the page
    ed = login(app.test_client(), "ed", PASSWORD)
    assert 'id="merge-panel"' not in ed.get(f"/company/show/{a}").get_data(as_text=True)
    assert ed.get(f"/company/merge/{a}?loser={hers}").status_code in (302, 403)


def test_two_merges_of_one_loser_at_once(app, admin):
    """Two users merge the same loser into two survivors at the same moment: one wins, the other is refused, and
    every reference ends up on the winner."""
    import threading

    a, b, c = (admin.create("company", name=f"Race {n}") for n in "ABC")
    contacts = [admin.create("contact", company=b, name=f"Race contact {n}") for n in range(5)]
    clients = [Client(app), Client(app)]
    answers = {}

    def run(n, survivor):
        answers[survivor] = clients[n].merge(survivor, {"loser": b})

    threads = [threading.Thread(target=run, args=(0, a)), threading.Thread(target=run, args=(1, c))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r.status_code for r in answers.values())
    assert statuses == [200, 404], {k: r.json for k, r in answers.items()}  # "Not found.": the loser is gone
    winner = next(pk for pk, r in answers.items() if r.status_code == 200)
    assert {admin.record("contact", pk)["company"]["id"] for pk in contacts} == {winner}
    assert admin.record("company", winner)["contacts"] == 5
    assert admin.get(f"/api/v1/company/{b}").status_code == 404


def test_a_merge_is_in_the_access_audit_and_a_refused_one_is_not(app, admin):
    a = admin.create("company", name="Audit A")
    b = admin.create("company", name="Audit B", phone="13700137001")
    refused = admin.merge(a, {"loser": a})
    assert refused.status_code == 400
    assert admin.merge(a, {"loser": b, "fields": {"phone": "loser"}}).status_code == 200
    entries = admin.get("/api/v1/audit?kind=merge").json["result"]
    mine = [e for e in entries if e["detail"].get("survivor") == a]
    assert len(mine) == 1 and mine[0]["entity"] == "Company" and mine[0]["username"] == "admin"
    assert mine[0]["detail"] == {"survivor": a, "loser": b, "fields": ["phone"]}
