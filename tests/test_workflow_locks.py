"""Locked records stay as they are (issue 13 review): a locked parent's lines, records a delete would change
through set_null/cascade, a locked line on its parent's form, the default state on create, and what a transition
records (tests/fixtures/locks: Order locked when done, with `lines: [Line]`, Line locked when shut)."""
from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import text
from werkzeug.datastructures import MultiDict

from conftest import ROOT, jwt_headers, login, make_app, post_csv

PASSWORD = "Lock-pass-1"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    app = make_app(tmp_path_factory, "wflocks", schema_dir=ROOT / "tests" / "fixtures" / "locks",
                   PORTAL_FILES_DIR=str(tmp_path_factory.mktemp("lockfiles")))
    with app.app_context():
        sm = app.appbuilder.sm
        sm.add_user("clerk", "clerk", "Test", "clerk@example.com", [sm.find_role("Clerk")], PASSWORD)
    return app


@pytest.fixture(scope="module")
def api(app):
    client = app.test_client()
    headers = jwt_headers(client, "clerk", PASSWORD)

    class Caller:
        def __getattr__(self, method):
            return lambda url, **kw: getattr(client, method)(url, headers={**headers, **kw.pop("headers", {})}, **kw)
    return Caller()


def stored(app, sql, **params):
    with app.app_context():
        return app.appbuilder.session.execute(text(sql), params).all()


def new_order(api, code, lines=(), **values):
    response = api.post("/api/v1/order/", json={"code": code, "lines": [dict(line) for line in lines], **values})
    assert response.status_code == 201, response.json
    return response.json["id"], [line["id"] for line in response.json["result"]["lines"]]


def take(api, entity, pk, name, body=None):
    response = api.post(f"/api/v1/{entity}/{pk}/transitions/{name}", json=body or {})
    assert response.status_code == 200, response.json
    return response.json


def locked_order(api, code, lines):
    pk, line_ids = new_order(api, code, lines)
    take(api, "order", pk, "start")
    take(api, "order", pk, "finish")
    return pk, line_ids


def test_lines_of_a_locked_parent_are_not_changed_added_deleted_or_moved(app, api):
    done, (line,) = locked_order(api, "L1", [{"item": "a", "qty": "2"}])
    open_order, (other,) = new_order(api, "L1-open", [{"item": "b", "qty": "3"}])
    refusals = {
        "PUT": api.put(f"/api/v1/line/{line}", json={"qty": "99"}),
        "POST": api.post("/api/v1/line/", json={"order": done, "item": "zz", "qty": "100"}),
        "move in": api.put(f"/api/v1/line/{other}", json={"order": done}),
        "move out": api.put(f"/api/v1/line/{line}", json={"order": open_order}),
        "DELETE": api.delete(f"/api/v1/line/{line}"),
        "line transition": api.post(f"/api/v1/line/{line}/transitions/shut", json={}),
    }
    client = app.test_client()
    refusals["import"] = post_csv(client, jwt_headers(client), "/api/v1/line/import",
                                  [["order", "item", "qty"], ["L1", "imported", "50"]])
    for what, response in refusals.items():
        assert response.status_code == 422, (what, response.json)
        assert "Order is Done: its Line can only change through its workflow." in str(response.json), what
    assert stored(app, 'SELECT id, "order_id", qty, state FROM line WHERE id IN (:a, :b) ORDER BY id', a=line, b=other) \
        == [(line, done, 2, "open"), (other, open_order, 3, "open")]
    assert stored(app, 'SELECT total FROM "order" WHERE id = :id', id=done) == [(2,)]
    assert api.get(f"/api/v1/line/{other}").json["result"]["order"]["id"] == open_order
    # the rule is the line's: the Chinese message too, and an open parent's lines still change
    zh = api.put(f"/api/v1/line/{line}", json={"qty": "5"}, headers={"Accept-Language": "zh"})
    assert zh.status_code == 422 and "订单当前为“完成”：其明细只能通过流程操作变更。" in str(zh.json), zh.json
    assert api.put(f"/api/v1/line/{other}", json={"qty": "4"}).status_code == 200


def test_a_delete_that_would_change_a_locked_record_is_refused(app, api):
    vendor = api.post("/api/v1/vendor/", json={"name": "V-locked"}).json["id"]
    done, _ = locked_order(api, "D1", [])
    assert api.put(f"/api/v1/order/{done}", json={"vendor": vendor}).status_code == 422  # locked: set before
    pk, _ = new_order(api, "D2", vendor=vendor)
    take(api, "order", pk, "start")
    take(api, "order", pk, "finish")
    response = api.delete(f"/api/v1/vendor/{vendor}")  # on_delete: set_null would clear the locked order's vendor
    assert response.status_code == 422, response.json
    assert "Cannot delete: 1 × Order in a locked state refer to this record." in response.json["message"]
    assert stored(app, 'SELECT vendor_id FROM "order" WHERE id = :id', id=pk) == [(vendor,)]
    # on_delete: cascade: an open order with a shut line may not take the line with it
    parent, (line,) = new_order(api, "D3", [{"item": "a"}])
    take(api, "line", line, "shut")
    response = api.delete(f"/api/v1/order/{parent}")
    assert response.status_code == 422 and "1 × Line in a locked state" in response.json["message"], response.json
    assert stored(app, "SELECT count(*) FROM line WHERE id = :id", id=line) == [(1,)]
    # the page's delete says the same and keeps it
    client = login(app.test_client(), "clerk", PASSWORD)
    page = client.post(f"/vendor/delete/{vendor}", follow_redirects=True).data.decode()
    assert "in a locked state refer to this record" in page
    assert stored(app, "SELECT count(*) FROM vendor WHERE id = :id", id=vendor) == [(1,)]
    # a bulk delete refuses those rows with the same reason and deletes the others
    other = api.post("/api/v1/vendor/", json={"name": "V-other"}).json["id"]
    bulk = api.post("/api/v1/vendor/bulk", json={"action": "delete", "ids": [vendor, other]})
    assert bulk.status_code == 200 and bulk.json["done"] == [other], bulk.json
    assert [r["id"] for r in bulk.json["refused"]] == [vendor]
    assert "in a locked state refer to this record" in bulk.json["refused"][0]["reason"]
    assert stored(app, 'SELECT vendor_id FROM "order" WHERE id = :id', id=pk) == [(vendor,)]
    bulk = api.post("/api/v1/order/bulk", json={"action": "delete", "ids": [parent]})
    assert bulk.json["done"] == [] and "1 × Line in a locked state" in bulk.json["refused"][0]["reason"], bulk.json
    # nothing locked links to it: the delete goes through
    free = api.post("/api/v1/vendor/", json={"name": "V-free"}).json["id"]
    new_order(api, "D4", vendor=free)
    assert api.delete(f"/api/v1/vendor/{free}").status_code == 200


def form_of(html: str, **changes) -> list[tuple[str, str]]:
    """The inputs of the edit form as the browser posts them (text, hidden, selected options, checked boxes)."""
    fields = []
    for tag in re.findall(r"<input[^>]*>", html):
        name = re.search(r'name="([^"]+)"', tag)
        kind = re.search(r'type="([^"]+)"', tag)
        if not name or (kind and kind.group(1) in ("submit", "file", "button")):
            continue
        if kind and kind.group(1) == "checkbox" and "checked" not in tag:
            continue
        value = re.search(r'value="([^"]*)"', tag)
        fields.append((name.group(1), value.group(1) if value else ""))
    for name, body in re.findall(r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', html, re.S):
        fields += [(name, v) for v in re.findall(r'<option[^>]*selected[^>]*value="([^"]*)"', body)]
        fields += [(name, v) for v in re.findall(r'<option value="([^"]*)" selected', body)]
    for name, body in re.findall(r'<textarea[^>]*name="([^"]+)"[^>]*>(.*?)</textarea>', html, re.S):
        fields.append((name, body.strip()))
    fields = [(n, v) for n, v in fields if n not in changes and not n.startswith("lines-__n__")]
    return MultiDict(fields + list(changes.items()))


def test_a_locked_line_and_a_file_field_do_not_block_saving_the_parent(app, api):
    pk, (shut, kept) = new_order(api, "G1", [{"item": "a", "qty": "2"}, {"item": "b"}])
    take(api, "line", shut, "shut")
    upload = api.post(f"/api/v1/line/{kept}/attachments", data={"file": (io.BytesIO(PNG), "p.png"), "field": "photo"},
                      content_type="multipart/form-data")
    assert upload.status_code in (200, 201), upload.json
    client = login(app.test_client(), "clerk", PASSWORD)
    html = client.get(f"/order/edit/{pk}").data.decode()
    assert 'name="lines-0-item"' in html
    assert not re.search(r'name="lines-[0-9]+-(state|photo)"', html)  # the state is shown read-only, no file column
    response = client.post(f"/order/edit/{pk}", data=form_of(html, note="saved"), follow_redirects=True)
    assert response.status_code == 200
    assert "can only change through its workflow" not in response.data.decode()
    assert stored(app, 'SELECT note FROM "order" WHERE id = :id', id=pk) == [("saved",)]
    # an unlocked line's change is saved as before; the locked one would be refused
    html = client.get(f"/order/edit/{pk}").data.decode()
    data = MultiDict([(n, "7" if n == "lines-1-qty" else v) for n, v in form_of(html).items(multi=True)])
    client.post(f"/order/edit/{pk}", data=data)
    assert stored(app, "SELECT qty FROM line WHERE id = :id", id=kept) == [(7,)]
    data = MultiDict([(n, "8" if n == "lines-0-qty" else v) for n, v in form_of(html).items(multi=True)])
    page = client.post(f"/order/edit/{pk}", data=data).data.decode()
    assert "Line is Shut: it can only change through its workflow." in page
    assert stored(app, "SELECT qty FROM line WHERE id = :id", id=shut) == [(2,)]
    # the API: the lines as GET gives them (state, photo and all) go back unchanged
    audit = ("created_on", "changed_on")  # stamps are never written through the API (any record)
    lines = [{k: v for k, v in line.items() if k not in audit} for line in api.get(f"/api/v1/order/{pk}").json["result"]["lines"]]
    assert any(line.get("photo") for line in lines)
    response = api.put(f"/api/v1/order/{pk}", json={"note": "api", "lines": lines})
    assert response.status_code == 200, response.json
    # leaving the shut line out deletes it: refused, with the line's lock as the reason
    response = api.put(f"/api/v1/order/{pk}", json={"note": "drop", "lines": [{"id": kept}]})
    assert response.status_code == 422 and "Line is Shut" in str(response.json), response.json
    assert stored(app, "SELECT count(*) FROM line WHERE order_id = :id", id=pk) == [(2,)]


def test_a_new_record_without_its_state_meets_the_unique_checks_in_its_default_state(app, api):
    new_order(api, "U1")
    response = api.post("/api/v1/order/", json={"code": "U1"})  # unique_together [code, stage]: U1/new exists
    assert response.status_code == 422, response.json
    assert "A record with the same" in str(response.json) and "constraint" not in str(response.json), response.json
    assert stored(app, "SELECT count(*) FROM \"order\" WHERE code = 'U1'") == [(1,)]


def events(api, pk):
    return [(e["action"], e["transition"], e["changes"]) for e in api.get(f"/api/v1/order/{pk}/history").json["events"]]


def test_a_same_state_transition_is_an_event_and_raises_the_version(app, api):
    pk, _ = new_order(api, "S1")
    before = api.get(f"/api/v1/order/{pk}").json["result"]["row_version"]
    result = take(api, "order", pk, "poke")
    assert result["result"]["row_version"] == before + 1
    assert ("transition", "poke", []) in events(api, pk)
    assert stored(app, "SELECT count(*) FROM portal_history WHERE entity = 'Order' AND record_id = :id "
                       "AND action = 'transition'", id=pk) == [(1,)]


def test_a_transition_setting_links_is_one_event_and_one_version(app, api):
    vendor = api.post("/api/v1/vendor/", json={"name": "V-pick"}).json["id"]
    tag = api.post("/api/v1/tag/", json={"name": "T-pick"}).json["id"]
    with app.app_context():
        owner = app.appbuilder.sm.find_user(username="clerk").id
    pk, _ = new_order(api, "P1")
    before = api.get(f"/api/v1/order/{pk}").json["result"]["row_version"]
    result = take(api, "order", pk, "pick", {"vendor": vendor, "tags": [tag], "owner": owner})
    assert result["result"]["row_version"] == before + 1
    transitions = [e for e in events(api, pk) if e[0] == "transition"]
    assert len(transitions) == 1, transitions
    assert {c["field"] for c in transitions[0][2]} >= {"stage", "vendor", "tags", "owner"}
