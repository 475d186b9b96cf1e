"""Optimistic locking: row_version, ETag/If-Match on the API, the edit form's hidden version, import bumps."""
from __future__ import annotations

import io
import re
import threading

from conftest import jwt_headers, login
from test_dataio import csv_bytes
from test_permissions import PASSWORD, make_user

STALE = re.compile(r"^Changed by (\w+) at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d — reload and try again\.$")


def new_customer(api, **values) -> int:
    response = api.post("/api/v1/customer/", json={"name": "Lock test", **values})
    assert response.status_code == 201, response.json
    return response.json["id"]


def test_get_sends_etag_and_put_honours_if_match(api):
    pk = new_customer(api, name="ETag Co")
    first = api.get(f"/api/v1/customer/{pk}")
    assert first.headers["ETag"] == '"1"' and first.json["result"]["row_version"] == 1

    saved = api.put(f"/api/v1/customer/{pk}", json={"address": "1 Main St"}, headers={"If-Match": '"1"'})
    assert saved.status_code == 200, saved.json
    assert saved.headers["ETag"] == '"2"' and saved.json["result"]["row_version"] == 2

    stale = api.put(f"/api/v1/customer/{pk}", json={"address": "overwritten"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 409
    assert STALE.match(stale.json["message"]) and "admin" in stale.json["message"]
    assert stale.json["current"]["address"] == "1 Main St" and stale.json["current"]["row_version"] == 2
    assert stale.headers["ETag"] == '"2"'
    assert api.get(f"/api/v1/customer/{pk}").json["result"]["address"] == "1 Main St"

    in_body = api.put(f"/api/v1/customer/{pk}", json={"address": "body", "row_version": 1})
    assert in_body.status_code == 409
    assert api.put(f"/api/v1/customer/{pk}", json={"address": "body", "row_version": 2}).status_code == 200
    # no If-Match, or *: the last save wins, as before; an ETag we never sent never matches
    assert api.put(f"/api/v1/customer/{pk}", json={"address": "plain"}).json["result"]["row_version"] == 4
    assert api.put(f"/api/v1/customer/{pk}", json={"address": "star"}, headers={"If-Match": "*"}).status_code == 200
    assert api.put(f"/api/v1/customer/{pk}", json={"address": "junk"}, headers={"If-Match": '"abc"'}).status_code == 409
    assert api.get(f"/api/v1/customer/{pk}").json["result"]["address"] == "star"
    # row_version is read-only: it cannot be set, only named as the version edited
    assert api.put(f"/api/v1/customer/{pk}", json={"row_version": 99}).status_code == 409
    assert api.get(f"/api/v1/customer/{pk}").headers["ETag"] == '"5"'


def test_stale_delete_gets_409_and_keeps_the_record(api):
    pk = new_customer(api, name="Delete lock")
    api.put(f"/api/v1/customer/{pk}", json={"address": "moved"})
    stale = api.delete(f"/api/v1/customer/{pk}", headers={"If-Match": '"1"'})
    assert stale.status_code == 409 and stale.json["current"]["row_version"] == 2
    assert api.get(f"/api/v1/customer/{pk}").status_code == 200
    assert api.delete(f"/api/v1/customer/{pk}", headers={"If-Match": '"2"'}).status_code == 200
    assert api.get(f"/api/v1/customer/{pk}").status_code == 404


def test_409_body_hides_and_masks_like_a_read_and_row_scope_still_404s(app, api):
    make_user(app, "lock_foreman", "SiteForeman")
    client = app.test_client()
    foreman = jwt_headers(client, "lock_foreman", PASSWORD)
    worker = api.post("/api/v1/worker/", json={"name": "Lock Wang", "trade": "carpenter", "id_card": "11010519491231002X",
                                               "bank_account": "6222020000000000", "day_rate": 300})
    assert worker.status_code == 201, worker.json
    pk = worker.json["id"]
    api.put(f"/api/v1/worker/{pk}", json={"name": "Lock Wang Jr"})
    stale = client.put(f"/api/v1/worker/{pk}", json={"name": "stale"}, headers={**foreman, "If-Match": '"1"'})
    assert stale.status_code == 409, stale.json
    current = stale.json["current"]
    assert current["name"] == "Lock Wang Jr" and "bank_account" not in current
    assert current["id_card"] != "11010519491231002X" and "*" in current["id_card"]
    # a labour entry outside the foreman's sites is not there for them, stale or not
    project = api.post("/api/v1/project/", json={"code": "LOCK-1", "name": "Lock site", "status": "active"})
    assert project.status_code == 201, project.json
    assert api.put(f"/api/v1/worker/{pk}", json={"projects": [project.json["id"]]}).status_code == 200  # the worker filter
    entry = api.post("/api/v1/labour_entry/", json={"project": project.json["id"], "worker": pk,
                                                     "work_date": "2026-01-05", "rate": 300})
    assert entry.status_code == 201, entry.json
    hidden = client.put(f"/api/v1/labour_entry/{entry.json['id']}", json={"hours": 1},
                        headers={**foreman, "If-Match": '"9"'})
    assert hidden.status_code == 404


def test_import_update_by_key_bumps_the_version(app, api):
    pk = new_customer(api, name="Import lock", phone="13900001111")
    client = app.test_client()
    headers = jwt_headers(client)
    rows = [["Name", "Phone", "Address"], ["Import lock", "13900001111", "Imported St"]]
    done = client.post("/api/v1/customer/import", data={"file": (io.BytesIO(csv_bytes(rows)), "c.csv"), "key": "phone"},
                       headers=headers, content_type="multipart/form-data")
    assert done.status_code == 200 and done.json["updated"] == 1, done.json
    after = api.get(f"/api/v1/customer/{pk}")
    assert after.json["result"]["address"] == "Imported St" and after.headers["ETag"] == '"2"'
    assert api.put(f"/api/v1/customer/{pk}", json={"address": "x"}, headers={"If-Match": '"1"'}).status_code == 409


def test_openapi_documents_etag_if_match_and_409(api):
    spec = api.get("/api/v1/_openapi").json
    item = spec["paths"]["/api/v1/customer/{pk}"]
    assert "ETag" in item["get"]["responses"]["200"]["headers"]
    for method in ("put", "delete"):
        assert "409" in item[method]["responses"]
        assert any(p["name"] == "If-Match" and p["in"] == "header" for p in item[method]["parameters"])
    assert item["put"]["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("CustomerApi.put")


def edit_form(client, pk) -> dict:
    """The fields of the edit page as the browser would post them back."""
    page = client.get(f"/customer/edit/{pk}")
    assert page.status_code == 200
    versions = re.findall(r'<input id="row_version" name="row_version" type="hidden" value="(\d+)">', page.text)
    assert len(versions) == 1 and 'for="row_version"' not in page.text, page.text
    return {"name": re.search(r'id="name"[^>]* name="name"[^>]*value="([^"]*)"', page.text).group(1),
            "row_version": versions[0]}


def test_two_edit_forms_second_save_gets_the_message_and_keeps_its_input(app, api):
    pk = new_customer(api, name="Form lock")
    first, second = login(app.test_client()), login(app.test_client())
    form_one, form_two = edit_form(first, pk), edit_form(second, pk)
    assert form_one["row_version"] == form_two["row_version"] == "1"

    saved = first.post(f"/customer/edit/{pk}", data={**form_one, "address": "First wins"})
    assert saved.status_code == 302
    refused = second.post(f"/customer/edit/{pk}", data={**form_two, "address": "Second <b>loses</b>"})
    assert refused.status_code == 200  # the form again, not a redirect
    assert re.search(r"Changed by admin at [\d: -]+ — reload and try again\.", refused.text)
    assert f'href="/customer/edit/{pk}">Reload</a>' in refused.text
    assert "Second &lt;b&gt;loses&lt;/b&gt;" in refused.text  # the user's input is kept (escaped)
    assert api.get(f"/api/v1/customer/{pk}").json["result"]["address"] == "First wins"
    zh = second.post(f"/customer/edit/{pk}?_l_=zh", data={**form_two, "address": "again"})
    assert "重新加载" in zh.text and "已于" in zh.text and "Changed by" not in zh.text

    fresh = edit_form(second, pk)
    assert fresh["row_version"] == "2"
    assert second.post(f"/customer/edit/{pk}", data={**fresh, "address": "Second, after reload"}).status_code == 302
    assert api.get(f"/api/v1/customer/{pk}").json["result"]["address"] == "Second, after reload"


def test_concurrent_saves_of_one_version_exactly_one_wins(app, api):
    """Both forms were opened at version 1 and are posted at the same moment: one save, one refusal."""
    pk = new_customer(api, name="Race lock")
    clients = [login(app.test_client()) for _ in range(2)]
    forms = [edit_form(c, pk) for c in clients]
    barrier, results = threading.Barrier(2), [None, None]

    def save(i):
        barrier.wait()
        results[i] = clients[i].post(f"/customer/edit/{pk}", data={**forms[i], "address": f"writer {i}"})

    threads = [threading.Thread(target=save, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status_code for r in results) in ([200, 302], [302, 302]), [r.status_code for r in results]
    record = api.get(f"/api/v1/customer/{pk}").json["result"]
    assert record["row_version"] == 2
    winner = record["address"]
    loser = 1 - int(winner[-1])
    loser_page = results[loser]
    if loser_page.status_code == 302:  # the UPDATE lost the race: FAB redirects with the flash
        loser_page = clients[loser].get(loser_page.headers["Location"])
    assert "Changed by admin at" in loser_page.text

