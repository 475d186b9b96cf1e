"""Filtered pickers (`filter: {active: true, sites: $record.site}`): the lookup endpoint, API, form and import refuse
alike, in the viewer's scope; the checker's codes."""
from __future__ import annotations

import textwrap

import pytest

from conftest import jwt_headers, login, make_app, sql_statements
from test_link_defaults import SCHEMA, import_csv, jobs
from test_permissions import PASSWORD, make_user

NOT_ALLOWED = "This record is not one of the allowed choices here."


@pytest.fixture(scope="module")
def yard(tmp_path_factory):
    folder = tmp_path_factory.mktemp("link-filter-schema")
    (folder / "yard.yaml").write_text(textwrap.dedent(SCHEMA), encoding="utf-8")
    app = make_app(tmp_path_factory, "link_filters", schema_dir=folder)
    client = app.test_client()
    headers = jwt_headers(client)
    ids = {"clerk": make_user(app, "clerk_f", "Clerk")}
    for name, boss in (("North", ids["clerk"]), ("South", None), ("East", None)):
        ids[name] = client.post("/api/v1/site/", json={"name": name, "boss": boss}, headers=headers).json["id"]
    for name, active, sites, lead in (("Wang", True, ["North"], ids["clerk"]), ("Li", True, ["North", "South"], None),
                                      ("Old", False, ["North", "South"], ids["clerk"])):
        made = client.post("/api/v1/crew/", json={"name": name, "day_rate": "300", "active": active, "lead": lead,
                                                  "sites": [ids[s] for s in sites]}, headers=headers)
        assert made.status_code == 201, made.json
        ids[name] = made.json["id"]
    return app, ids


def test_the_api_refuses_a_choice_outside_the_filter_against_the_final_values(yard):
    app, ids = yard
    client = app.test_client()
    headers = jwt_headers(client)
    before = jobs(app)
    for payload in ({"code": "X1", "site": ids["South"], "crew": ids["Wang"]},   # not on that site
                    {"code": "X2", "site": ids["North"], "crew": ids["Old"]}):    # not active
        refused = client.post("/api/v1/job/", json=payload, headers=headers)
        assert refused.status_code == 422 and refused.json["message"] == {"crew": [NOT_ALLOWED]}, refused.json
    zh = client.post("/api/v1/job/", json={"code": "X3", "site": ids["South"], "crew": ids["Wang"]},
                     headers={**headers, "Accept-Language": "zh"})
    assert zh.status_code == 422 and zh.json["message"]["crew"][0] != NOT_ALLOWED
    assert jobs(app) == before

    made = client.post("/api/v1/job/", json={"code": "A1", "site": ids["North"], "crew": ids["Wang"]}, headers=headers)
    assert made.status_code == 201, made.json
    no_site = client.post("/api/v1/job/", json={"code": "A2", "crew": ids["Wang"]}, headers=headers)
    assert no_site.status_code == 201, no_site.json  # an empty $record value drops that condition
    # moving the job to a site the stored crew is not on is refused, under the crew
    moved = client.put(f"/api/v1/job/{made.json['id']}", json={"site": ids["South"]}, headers=headers)
    assert moved.status_code == 422 and moved.json["message"] == {"crew": [NOT_ALLOWED]}
    both = client.put(f"/api/v1/job/{made.json['id']}", json={"site": ids["South"], "crew": ids["Li"]}, headers=headers)
    assert both.status_code == 200, both.json
    # a choice that stopped passing later (the crew left) does not block edits that leave it alone
    assert client.put(f"/api/v1/crew/{ids['Li']}", json={"active": False}, headers=headers).status_code == 200
    try:
        edit = client.put(f"/api/v1/job/{made.json['id']}", json={"days": "2"}, headers=headers)
        assert edit.status_code == 200, edit.json
    finally:
        assert client.put(f"/api/v1/crew/{ids['Li']}", json={"active": True}, headers=headers).status_code == 200


def test_user_and_list_conditions(yard):
    app, ids = yard
    admin = app.test_client()
    admin_h = jwt_headers(admin)
    refused = admin.post("/api/v1/job/", json={"code": "U1", "crew": ids["Li"], "helper": ids["Wang"]}, headers=admin_h)
    assert refused.status_code == 422 and refused.json["message"] == {"helper": [NOT_ALLOWED]}  # Wang's lead is the clerk
    clerk = app.test_client()
    clerk_h = jwt_headers(clerk, "clerk_f", PASSWORD)
    ok = clerk.post("/api/v1/job/", json={"code": "U2", "crew": ids["Li"], "helper": ids["Wang"]}, headers=clerk_h)
    assert ok.status_code == 201, ok.json
    inactive = clerk.post("/api/v1/job/", json={"code": "U3", "crew": ids["Li"], "helper": ids["Old"]}, headers=clerk_h)
    assert inactive.status_code == 422 and inactive.json["message"] == {"helper": [NOT_ALLOWED]}


def test_a_many_field_refuses_any_record_outside_its_filter(yard):
    app, ids = yard
    client = app.test_client()
    headers = jwt_headers(client)
    refused = client.post("/api/v1/site/", json={"name": "West", "regulars": [ids["Wang"], ids["Old"]]}, headers=headers)
    assert refused.status_code == 422 and refused.json["message"] == {"regulars": [NOT_ALLOWED]}
    ok = client.post("/api/v1/site/", json={"name": "West", "regulars": [ids["Wang"], ids["Li"]]}, headers=headers)
    assert ok.status_code == 201, ok.json
    browser = login(app.test_client())
    assert [r["title"] for r in browser.get("/site/lookup/regulars").json["results"]] == ["Li", "Wang"]


def test_the_form_refuses_a_choice_outside_the_filter(yard):
    app, ids = yard
    browser = login(app.test_client())
    refused = browser.post("/job/add", data={"code": "F1", "site": str(ids["South"]), "crew": str(ids["Wang"]), "days": "1"})
    assert refused.status_code == 200 and NOT_ALLOWED in refused.text and "F1" not in jobs(app)
    ok = browser.post("/job/add", data={"code": "F2", "site": str(ids["South"]), "crew": str(ids["Li"]), "days": "1"})
    assert ok.status_code == 302 and "F2" in jobs(app)


def test_an_import_refuses_rows_outside_the_filter_with_one_query_per_distinct_filter(yard):
    app, ids = yard
    client = app.test_client()
    headers = jwt_headers(client)
    rows = [["code", "site", "crew"]] + [[f"I{n}", "North" if n % 2 else "South", "Li"] for n in range(1, 41)]
    bad = rows + [["I41", "South", "Wang"], ["I42", "North", "Old"]]
    before = jobs(app)
    refused = import_csv(client, headers, bad)
    assert refused.status_code == 422 and not refused.json["written"]
    assert [(e["row"], e["field"], e["message"]) for e in refused.json["errors"]] == [(42, "Crew", NOT_ALLOWED), (43, "Crew", NOT_ALLOWED)]
    assert jobs(app) == before
    with sql_statements(app) as seen:
        imported = import_csv(client, headers, rows)
    assert imported.status_code == 200 and imported.json["written"], imported.json
    filter_reads = [s for s in seen if "FROM crew" in s and "active" in s]
    assert len(filter_reads) == 2, filter_reads  # one per distinct site in the chunk, not one per row


def test_the_lookup_applies_the_filter_in_the_viewers_scope(yard):
    app, ids = yard
    browser = login(app.test_client())

    def names(url):
        response = browser.get(url)
        assert response.status_code == 200, response.text[:300]
        return [r["title"] for r in response.json["results"]]

    assert names("/job/lookup/crew") == ["Li", "Wang"]  # active only; no site chosen: any site
    assert names(f"/job/lookup/crew?record.site={ids['South']}") == ["Li"]
    assert names(f"/job/lookup/crew?record.site={ids['East']}") == []
    assert names(f"/job/lookup/crew?record.site={ids['South']}&id={ids['Wang']}") == []  # Wang no longer fits
    assert names(f"/job/lookup/crew?record.site={ids['North']}&id={ids['Wang']}") == ["Wang"]
    assert names("/job/lookup/helper") == []  # $user: the admin leads nobody
    assert names(f"/job/lookup/crew?all=1&record.site={ids['East']}") == ["Li", "Old", "Wang"]  # a list filter: any
    assert "/job/lookup/crew?all=1" in browser.get("/job/list/").text
    for bad in ("record.site=abc", "record.site=99999", "record.site=1%00", "id=x"):
        answer = browser.get(f"/job/lookup/crew?{bad}")
        assert answer.status_code == 400 and answer.json["message"], bad
    zh = browser.get("/job/lookup/crew?record.site=99999", headers={"Accept-Language": "zh"})
    assert zh.status_code == 400 and zh.json["message"] != browser.get("/job/lookup/crew?record.site=99999").json["message"]

    clerk = login(app.test_client(), "clerk_f", PASSWORD)
    assert [r["title"] for r in clerk.get("/job/lookup/helper").json["results"]] == ["Wang"]
    hidden_site = clerk.get(f"/job/lookup/crew?record.site={ids['South']}")  # not the clerk's site
    assert hidden_site.status_code == 400 and "South" not in hidden_site.text


@pytest.mark.parametrize("filter_text,code", [
    ("{activ: true}", "E465"), ("{active: maybe}", "E466"), ("{name: $user}", "E467"), ("{sites: $record.sit}", "E468"),
    ("{sites: $record.code}", "E469"), ("{name: $me}", "E470"), ("{sites: 3}", "E471"), ("{lead: $record.crew}", "E472"),
    ("active", "E464"), ("{secret_rate: $record.rate}", "E473"), ("{secret_rate: 77, active: true}", "E473"),
])
def test_the_checker_refuses_bad_filters(tmp_path, filter_text, code):
    from app.schema import load_portal

    text = textwrap.dedent(SCHEMA).replace("filter: {active: true, sites: $record.site}", f"filter: {filter_text}")
    (tmp_path / "yard.yaml").write_text(text, encoding="utf-8")
    spec, problems = load_portal(tmp_path)
    assert [p.code for p in problems] == [code], [str(p) for p in problems]


def test_the_checker_refuses_a_filter_on_a_masked_field(tmp_path):
    """A masked field is as secret as a hidden one: `mask:` refuses a filter on it too (E473, at the filter's line)."""
    from app.schema import load_portal

    text = textwrap.dedent(SCHEMA).replace("hide: {Crew: [secret_rate], Job: [days]}", "mask: {Crew: [secret_rate]}")
    text = text.replace("filter: {active: true, sites: $record.site}", "filter: {active: true, secret_rate: $record.rate}")
    (tmp_path / "yard.yaml").write_text(text, encoding="utf-8")
    spec, problems = load_portal(tmp_path)
    assert [p.code for p in problems] == ["E473"], [str(p) for p in problems]
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "secret_rate: $record.rate" in row)
    assert problems[0].line == line and "Clerk" in problems[0].message
