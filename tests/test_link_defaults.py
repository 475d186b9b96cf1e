"""Defaults from a link (`rate: {default: crew.day_rate}`) through every write path, roles and the checker."""
from __future__ import annotations

import textwrap
from decimal import Decimal

import pytest
from sqlalchemy import select

from app.portal import portal_of
from conftest import jwt_headers, login, make_app, post_csv, sql_statements

SCHEMA = """\
    version: 1
    module: yard
    label: {en: Yard, zh: 场地}
    entities:
      Site:
        label: {en: Site, zh: 工地}
        title: name
        fields:
          name: {type: string, length: 40, required: true, unique: true, label: {en: Name, zh: 名称}}
          boss: {type: user, label: {en: Boss, zh: 负责人}}
          regulars: {type: many, to: Crew, filter: {active: true}, label: {en: Regulars, zh: 常驻工人}}
      Crew:
        label: {en: Crew, zh: 工人}
        title: name
        fields:
          name: {type: string, length: 40, required: true, unique: true, label: {en: Name, zh: 姓名}}
          day_rate: {type: decimal, precision: 10, scale: 2, label: {en: Day rate, zh: 日工资}}
          secret_rate: {type: decimal, precision: 10, scale: 2, label: {en: Secret rate, zh: 保密工资}}
          active: {type: boolean, default: true, label: {en: Active, zh: 在岗}}
          sites: {type: many, to: Site, label: {en: Sites, zh: 工地}}
          lead: {type: user, label: {en: Lead, zh: 班长}}
        order: [name]
      Job:
        label: {en: Job, zh: 工作}
        title: code
        fields:
          code: {type: string, length: 20, required: true, unique: true, label: {en: Code, zh: 编号}}
          site: {type: link, to: Site, label: {en: Site, zh: 工地}}
          crew: {type: link, to: Crew, filter: {active: true, sites: $record.site}, label: {en: Crew, zh: 工人}}
          days: {type: decimal, precision: 5, scale: 2, default: 1, label: {en: Days, zh: 工日}}
          rate: {type: decimal, precision: 10, scale: 2, required: true, max: 1000, default: crew.day_rate, label: {en: Rate, zh: 单价}}
          bonus: {type: decimal, precision: 10, scale: 2, default: crew.secret_rate, label: {en: Bonus, zh: 奖金}}
          note: {type: string, length: 20, default: site.name, label: {en: Note, zh: 备注}}
          amount: {type: decimal, precision: 12, scale: 2, formula: "round(days * rate, 2)", label: {en: Amount, zh: 金额}}
          helper: {type: link, to: Crew, filter: {lead: $user, active: [true]}, label: {en: Helper, zh: 帮手}}
        order: [code]
    roles:
      Clerk:
        label: {en: Clerk, zh: 文员}
        can: {Job: [read, create, update, import], Crew: [read], Site: [read]}
        hide: {Crew: [secret_rate], Job: [days]}
        rows: {Site: {boss: $user}}
    """


@pytest.fixture(scope="module")
def yard(tmp_path_factory):
    folder = tmp_path_factory.mktemp("link-default-schema")
    (folder / "yard.yaml").write_text(textwrap.dedent(SCHEMA), encoding="utf-8")
    app = make_app(tmp_path_factory, "link_defaults", schema_dir=folder)
    client = app.test_client()
    headers = jwt_headers(client)
    ids = {}
    for name in ("North", "South"):
        ids[name] = client.post("/api/v1/site/", json={"name": name}, headers=headers).json["id"]
    for name, rate, secret, sites in (("Wang", "300", "77", ["North"]), ("Li", "1200", "88", ["North"]),
                                      ("Zhao", None, "99", ["North", "South"])):
        made = client.post("/api/v1/crew/", json={"name": name, "day_rate": rate, "secret_rate": secret,
                                                  "sites": [ids[s] for s in sites]}, headers=headers)
        assert made.status_code == 201, made.json
        ids[name] = made.json["id"]
    return app, ids


def jobs(app) -> dict:
    """code -> (crew id, rate, bonus, note, amount), straight from the table."""
    model = portal_of(app).models["Job"]
    with app.app_context():
        session = app.appbuilder.session
        rows = session.execute(select(model.code, model.crew_id, model.rate, model.bonus, model.note, model.amount)).all()
        session.rollback()
    return {r[0]: tuple(r[1:]) for r in rows}


def import_csv(client, headers, rows, **form):
    return post_csv(client, headers, "/api/v1/job/import", rows, "jobs.csv", **form)


def test_the_api_fills_from_the_link_and_a_given_value_wins(yard):
    app, ids = yard
    client = app.test_client()
    headers = jwt_headers(client)
    made = client.post("/api/v1/job/", json={"code": "A1", "site": ids["North"], "crew": ids["Wang"], "days": "2"}, headers=headers)
    assert made.status_code == 201, made.json
    given = client.post("/api/v1/job/", json={"code": "A2", "crew": ids["Wang"], "rate": "250", "bonus": None}, headers=headers)
    assert given.status_code == 201, given.json
    stored = jobs(app)
    # the formula reads the filled rate; an empty value (null) is not a given value
    assert stored["A1"] == (ids["Wang"], Decimal("300.00"), Decimal("77.00"), "North", Decimal("600.00"))
    assert stored["A2"] == (ids["Wang"], Decimal("250.00"), Decimal("77.00"), None, Decimal("250.00"))

    # changing the link fills again, unless the value is given; an edit without the link keeps the value
    a1 = made.json["id"]
    assert client.put(f"/api/v1/job/{a1}", json={"rate": "310"}, headers=headers).status_code == 200
    assert jobs(app)["A1"][1] == Decimal("310.00")
    assert client.put(f"/api/v1/job/{a1}", json={"crew": ids["Zhao"], "rate": None}, headers=headers).status_code == 422
    changed = client.put(f"/api/v1/job/{a1}", json={"crew": ids["Zhao"], "rate": "200"}, headers=headers)
    assert changed.status_code == 200, changed.json
    assert jobs(app)["A1"][1:3] == (Decimal("200.00"), Decimal("99.00"))  # the bonus follows the new crew
    # the same crew again is no change: nothing is filled
    same = client.put(f"/api/v1/job/{a1}", json={"crew": ids["Zhao"], "bonus": None}, headers=headers)
    assert same.status_code == 200, same.json
    assert jobs(app)["A1"][1:3] == (Decimal("200.00"), None)


def test_an_empty_or_unfitting_source_is_a_field_error_not_a_database_error(yard):
    app, ids = yard
    client = app.test_client()
    headers = jwt_headers(client)
    before = jobs(app)
    empty = client.post("/api/v1/job/", json={"code": "B1", "site": ids["South"], "crew": ids["Zhao"]}, headers=headers)
    assert empty.status_code == 422 and empty.json["message"] == {"rate": ["This field is required."]}
    no_link = client.post("/api/v1/job/", json={"code": "B2"}, headers=headers)
    assert no_link.status_code == 422 and no_link.json["message"] == {"rate": ["This field is required."]}
    too_big = client.post("/api/v1/job/", json={"code": "B3", "crew": ids["Li"]}, headers=headers)
    assert too_big.status_code == 422 and list(too_big.json["message"]) == ["rate"], too_big.json
    zh = client.post("/api/v1/job/", json={"code": "B4", "crew": ids["Zhao"]}, headers={**headers, "Accept-Language": "zh"})
    assert zh.status_code == 422 and zh.json["message"]["rate"] != ["This field is required."]
    assert jobs(app) == before


def test_the_form_fills_when_the_rate_is_left_empty(yard):
    app, ids = yard
    browser = login(app.test_client())
    added = browser.post("/job/add", data={"code": "F1", "site": str(ids["North"]), "crew": str(ids["Wang"]), "days": "1", "rate": ""})
    assert added.status_code == 302, [l for l in added.text.splitlines() if "alert" in l.lower() or "help-block" in l.lower() or "danger" in l.lower()]
    typed = browser.post("/job/add", data={"code": "F2", "crew": str(ids["Wang"]), "days": "1", "rate": "123"})
    assert typed.status_code == 302, typed.text[:3000]
    refused = browser.post("/job/add", data={"code": "F3", "crew": str(ids["Zhao"]), "days": "1", "rate": ""})
    assert refused.status_code == 200 and "This field is required." in refused.text
    stored = jobs(app)
    assert stored["F1"][1:] == (Decimal("300.00"), Decimal("77.00"), "North", Decimal("300.00"))
    assert stored["F2"][1] == Decimal("123.00") and "F3" not in stored


def test_an_import_fills_per_row_with_one_query_per_chunk(yard):
    app, ids = yard
    client = app.test_client()
    headers = jwt_headers(client)
    rows = [["code", "site", "crew", "days", "rate"]] + [[f"I{n}", "North", "Wang" if n % 2 else "Zhao", "1", "" if n % 2 else "50"]
                                                        for n in range(1, 41)]
    with sql_statements(app) as seen:
        imported = import_csv(client, headers, rows)
    assert imported.status_code == 200 and imported.json["written"], imported.json
    crew_reads = [s for s in seen if "FROM crew" in s and "secret_rate" in s]
    assert len(crew_reads) == 1, crew_reads  # the linked rows of the chunk, read once
    stored = jobs(app)
    assert stored["I1"][1:3] == (Decimal("300.00"), Decimal("77.00")) and stored["I2"][1:3] == (Decimal("50.00"), Decimal("99.00"))
    assert stored["I1"][4] == Decimal("300.00")  # the formula reads the filled rate

    # a file without the rate column fills it; a row whose crew has no rate is refused at its row and column
    missing = import_csv(client, headers, [["code", "crew"], ["J1", "Wang"], ["J2", "Zhao"]])
    assert missing.status_code == 422 and not missing.json["written"]
    assert [(e["row"], e["field"], e["message"]) for e in missing.json["errors"]] == [(3, "Rate", "This field is required.")]
    ok = import_csv(client, headers, [["code", "crew"], ["J1", "Wang"]])
    assert ok.status_code == 200 and ok.json["written"], ok.json
    assert jobs(app)["J1"][1] == Decimal("300.00")

    # an update by key that does not name the crew keeps the stored rate
    update = import_csv(client, headers, [["code", "days"], ["J1", "2"]], key="code")
    assert update.status_code == 200 and update.json["written"], update.json
    assert jobs(app)["J1"][1] == Decimal("300.00") and jobs(app)["J1"][4] == Decimal("600.00")


def test_a_hidden_source_is_never_copied(yard):
    from test_permissions import PASSWORD, make_user

    app, ids = yard
    make_user(app, "clerk1", "Clerk")
    client = app.test_client()
    headers = jwt_headers(client, "clerk1", PASSWORD)
    made = client.post("/api/v1/job/", json={"code": "H1", "crew": ids["Wang"]}, headers=headers)
    assert made.status_code == 201, made.json
    assert jobs(app)["H1"][1:3] == (Decimal("300.00"), None)  # the rate is copied, the hidden secret_rate is not
    imported = import_csv(client, headers, [["code", "crew"], ["H2", "Wang"]])
    assert imported.status_code == 200 and imported.json["written"], imported.json
    assert jobs(app)["H2"][1:3] == (Decimal("300.00"), None)


@pytest.mark.parametrize("default,code", [
    ("crew.day_rte", "E460"), ("crew.sites", "E461"), ("crew.name", "E462"), ("crew.active", "E462"),
])
def test_the_checker_refuses_bad_link_defaults(tmp_path, default, code):
    from app.schema import load_portal

    text = textwrap.dedent(SCHEMA).replace("default: crew.day_rate", f"default: {default}")
    (tmp_path / "yard.yaml").write_text(text, encoding="utf-8")
    spec, problems = load_portal(tmp_path)
    assert [p.code for p in problems] == [code], [str(p) for p in problems]


def test_a_dotted_default_that_names_no_link_stays_a_literal(tmp_path):
    from app.schema import load_portal

    text = textwrap.dedent(SCHEMA).replace("default: site.name", "default: ver.two")
    (tmp_path / "yard.yaml").write_text(text, encoding="utf-8")
    spec, problems = load_portal(tmp_path)
    assert problems == [] and spec.entity("Job").field("note").default == "ver.two"
    assert spec.entity("Job").field("note").default_from is None
    assert spec.entity("Job").field("rate").default_from == ("crew", "day_rate")


def test_the_live_form_preview_runs_the_same_rules_without_saving(yard):
    app, ids = yard
    browser = login(app.test_client())
    before = jobs(app)
    chosen = browser.post("/job/preview", data={"code": "P1", "crew": str(ids["Wang"]), "days": "2", "rate": "", "_changed": "crew"})
    assert chosen.status_code == 200, chosen.text[:500]
    assert chosen.json == {"values": {"amount": "600.00"}, "defaults": {"rate": "300.00", "bonus": "77.00"}}
    typed = browser.post("/job/preview", data={"crew": str(ids["Wang"]), "days": "1.5", "rate": "111", "_changed": "days"})
    assert typed.json == {"values": {"amount": "166.50"}, "defaults": {}}  # only a changed link fills
    cleared = browser.post("/job/preview", data={"crew": "", "days": "1", "rate": "5", "_changed": "crew"})
    assert cleared.json == {"values": {"amount": "5.00"}, "defaults": {}}  # a cleared link leaves the typed rate
    for bad in ({"days": "abc", "rate": "1"}, {"crew": "99999999999999999999", "_changed": "crew"}, {"crew": "x", "_changed": "crew"},
                {"days": "1" * 20000}, {"_id": "not-a-number"}):
        answer = browser.post("/job/preview", data=bad)
        assert answer.status_code == 200 and answer.json["values"] == {"amount": None}, (bad, answer.text[:300])
    assert jobs(app) == before  # nothing saved
    form = browser.get("/job/add").text
    assert 'class="form-control portal-computed"' in form and 'id="amount"' in form and "readonly" in form


def test_the_preview_never_reveals_a_hidden_source_and_needs_a_write_permission(yard):
    from test_permissions import PASSWORD, make_user

    app, ids = yard
    make_user(app, "clerk2", "Clerk")
    clerk = login(app.test_client(), "clerk2", PASSWORD)
    answer = clerk.post("/job/preview", data={"crew": str(ids["Wang"]), "days": "1", "_changed": "crew"})
    assert answer.status_code == 200 and answer.json["defaults"] == {"rate": "300.00"}  # no bonus: secret_rate is hidden
    assert answer.json["values"] == {}  # amount reads the hidden days: hidden too
    assert "77" not in answer.text
    form = clerk.get("/job/add").text
    assert 'id="rate"' in form and 'id="amount"' not in form and 'id="days"' not in form
    anonymous = app.test_client().post("/job/preview", data={"crew": str(ids["Wang"]), "_changed": "crew"})
    assert anonymous.status_code in (302, 401, 403) and "300" not in anonymous.text


NO_CREW_READ = {
    # a formula and a rollup that read another entity, and roles that read one side only
    "      helper: {type: link": "      crew_rate: {type: decimal, precision: 10, scale: 2, formula: crew.day_rate, label: {en: Crew rate, zh: 工人日工资}}\n"
                                     "      helper: {type: link",
    "      lead: {type: user": "      job_days: {type: decimal, precision: 12, scale: 2, rollup: {of: Job.crew, measure: sum(days)}, label: {en: Job days, zh: 工日合计}}\n"
                                  "      lead: {type: user",
    "roles:\n": "roles:\n"
                   "  Booker: {can: {Job: [read, create, update, import], Site: [read]}}\n"
                   "  Scout: {can: {Crew: [read]}}\n",
}


@pytest.fixture(scope="module")
def unread(tmp_path_factory):
    """The yard with Booker (writes jobs, may not read Crew) and Scout (reads Crew, not Job)."""
    from test_permissions import make_user

    text = textwrap.dedent(SCHEMA)
    for old, new in NO_CREW_READ.items():
        assert old in text, old
        text = text.replace(old, new)
    folder = tmp_path_factory.mktemp("link-default-unread")
    (folder / "yard.yaml").write_text(text, encoding="utf-8")
    app = make_app(tmp_path_factory, "link_defaults_unread", schema_dir=folder)
    client = app.test_client()
    headers = jwt_headers(client)
    crew = client.post("/api/v1/crew/", json={"name": "Wang", "day_rate": "432.10"}, headers=headers)
    assert crew.status_code == 201, crew.json
    job = client.post("/api/v1/job/", json={"code": "A1", "crew": crew.json["id"], "days": "2", "rate": "7"}, headers=headers)
    assert job.status_code == 201, job.json
    for user, role in (("booker", "Booker"), ("scout", "Scout"), ("clerk3", "Clerk")):
        make_user(app, user, role)
    return app, crew.json["id"], job.json["id"]


def test_no_default_formula_or_rollup_reads_an_entity_the_role_may_not_read(unread):
    from test_permissions import PASSWORD

    app, crew_id, job_id = unread
    client = app.test_client()
    booker = jwt_headers(client, "booker", PASSWORD)
    assert client.get(f"/api/v1/crew/{crew_id}", headers=booker).status_code == 403
    # a default from Crew: not filled for Booker on the API, the live preview and imports
    made = client.post("/api/v1/job/", json={"code": "B1", "crew": crew_id}, headers=booker)
    assert made.status_code == 422 and made.json["message"]["rate"] == ["This field is required."], made.json
    assert "432" not in made.text and "B1" not in jobs(app)
    preview = login(app.test_client(), "booker", PASSWORD).post("/job/preview", data={"crew": str(crew_id), "days": "1", "_changed": "crew"})
    assert preview.status_code == 200 and preview.json["defaults"] == {} and "432" not in preview.text, preview.text
    imported = import_csv(client, booker, [["code", "crew"], ["B2", "Wang"]])
    assert imported.status_code == 422 and [e["field"] for e in imported.json["errors"]] == ["Rate"], imported.json
    typed = client.post("/api/v1/job/", json={"code": "B3", "crew": crew_id, "rate": "5"}, headers=booker)
    assert typed.status_code == 201, typed.json
    # a formula reading crew.day_rate is hidden from Booker (the record and the list), shown to those who read Crew
    for url in (f"/api/v1/job/{job_id}", "/api/v1/job/"):
        answer = client.get(url, headers=booker)
        assert answer.status_code == 200 and "crew_rate" not in answer.text and "432" not in answer.text, answer.text[:300]
    assert client.get(f"/api/v1/job/{job_id}", headers=jwt_headers(client)).json["result"]["crew_rate"] == "432.10"
    clerk = jwt_headers(client, "clerk3", PASSWORD)
    assert client.get(f"/api/v1/job/{job_id}", headers=clerk).json["result"]["crew_rate"] == "432.10"
    clerk_preview = login(app.test_client(), "clerk3", PASSWORD).post("/job/preview", data={"crew": str(crew_id), "_changed": "crew"})
    assert clerk_preview.json["defaults"] == {"rate": "432.10"}  # a role that reads Crew still gets the default
    # a rollup over Job is hidden from Scout, who reads Crew but not Job
    scout = client.get(f"/api/v1/crew/{crew_id}", headers=jwt_headers(client, "scout", PASSWORD))
    assert scout.status_code == 200 and "job_days" not in scout.json["result"] and scout.json["result"]["day_rate"] == "432.10"
    assert client.get(f"/api/v1/crew/{crew_id}", headers=jwt_headers(client)).json["result"]["job_days"] == "3.00"  # A1 and B3
