"""Formula fields and check rules through every write path (form, API, import) and through roles."""
from __future__ import annotations

import textwrap
from decimal import Decimal

import pytest
from sqlalchemy import select

from app.portal import portal_of
from conftest import jwt_headers, login, make_app, post_csv

SCHEMA = """\
    version: 1
    module: site
    label: {en: Site, zh: 工地}
    entities:
      Crew:
        label: {en: Crew, zh: 工人}
        title: name
        fields:
          name: {type: string, length: 40, required: true, unique: true, label: {en: Name, zh: 姓名}}
          day_rate: {type: decimal, precision: 10, scale: 2, label: {en: Day rate, zh: 日工资}}
        order: [name]
      Job:
        label: {en: Job, zh: 工作}
        title: code
        fields:
          code: {type: string, length: 20, required: true, unique: true, label: {en: Code, zh: 编号}}
          crew: {type: link, to: Crew, label: {en: Crew, zh: 工人}}
          days: {type: decimal, precision: 5, scale: 2, default: 1, label: {en: Days, zh: 工日}}
          hours: {type: decimal, precision: 5, scale: 2, label: {en: Hours, zh: 工时}}
          rate: {type: decimal, precision: 10, scale: 3, label: {en: Rate, zh: 单价}}
          cost: {type: decimal, precision: 10, scale: 2, label: {en: Cost, zh: 成本}}
          amount: {type: decimal, precision: 12, scale: 2, formula: "round(days * rate, 2)", label: {en: Amount, zh: 金额}}
          margin: {type: decimal, precision: 12, scale: 2, formula: "amount - cost", label: {en: Margin, zh: 毛利}}
          crew_cost: {type: decimal, precision: 12, scale: 2, formula: "days * crew.day_rate", label: {en: Crew cost, zh: 人工成本}}
          tag: {type: string, length: 40, formula: "concat('J-', code)", label: {en: Tag, zh: 标签}}
          double_days: {type: decimal, precision: 6, scale: 2, required: true, formula: "days * 2", label: {en: Double days, zh: 双倍工日}}
          ref: {type: string, length: 20, label: {en: Reference, zh: 参考号}}
          ref_tag: {type: string, length: 40, formula: "'R-' + ref", label: {en: Reference tag, zh: 参考标签}}
        order: [code]
        rules:
          - check: "hours <= days * 12"
            fields: [hours]
            message: {en: At most 12 hours per day, zh: 每个工日最多12小时}
    roles:
      Auditor:
        label: {en: Auditor, zh: 审计}
        can: {Job: [read], Crew: [read]}
        hide: {Job: [cost]}
        mask: {Job: [ref]}
    """
TOO_LONG = "At most 12 hours per day"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("formula-schema")
    (folder / "site.yaml").write_text(textwrap.dedent(SCHEMA), encoding="utf-8")
    app = make_app(tmp_path_factory, "formulas", schema_dir=folder)
    client = app.test_client()
    headers = jwt_headers(client)
    crew = client.post("/api/v1/crew/", json={"name": "老王", "day_rate": "300"}, headers=headers)
    assert crew.status_code == 201, crew.json
    return app, crew.json["id"]


def jobs(app) -> dict:
    """code -> (days, hours, rate, cost, amount, margin, crew_cost, tag), straight from the table."""
    model = portal_of(app).models["Job"]
    with app.app_context():
        session = app.appbuilder.session
        rows = session.execute(select(model.code, model.days, model.hours, model.rate, model.cost, model.amount,
                                      model.margin, model.crew_cost, model.tag)).all()
        session.rollback()
    return {r[0]: tuple(r[1:]) for r in rows}


def job_id(app, code):
    model = portal_of(app).models["Job"]
    with app.app_context():
        pk = app.appbuilder.session.scalar(select(model.id).where(model.code == code))
        app.appbuilder.session.rollback()
    return pk


def import_csv(client, headers, rows, **form):
    return post_csv(client, headers, "/api/v1/job/import", rows, "jobs.csv", **form)


def test_formulas_are_computed_on_every_path(site):
    app, crew = site
    client = app.test_client()
    headers = jwt_headers(client)
    api = client.post("/api/v1/job/", json={"code": "A1", "crew": crew, "days": "1.5", "hours": "10", "rate": "333.335",
                                            "cost": "100"}, headers=headers)
    assert api.status_code == 201, api.json
    browser = login(app.test_client())
    form = browser.post("/job/add", data={"code": "F1", "crew": str(crew), "days": "2", "hours": "8", "rate": "100.5",
                                          "cost": "1"})
    assert form.status_code == 302, form.text[:2000]
    imported = import_csv(client, headers, [["code", "crew", "days", "hours", "rate", "cost", "amount"],
                                            ["I1", "老王", "0.5", "4", "10", "", "999"]])
    assert imported.status_code == 200 and imported.json["written"], imported.json
    assert [e["field"] for e in imported.json["ignored"]] == ["amount"]  # reported, not imported
    stored = jobs(app)
    assert stored["A1"][4:] == (Decimal("500.00"), Decimal("400.00"), Decimal("450.00"), "J-A1")  # 500.0025 half up
    assert stored["F1"][4:] == (Decimal("201.00"), Decimal("200.00"), Decimal("600.00"), "J-F1")
    assert stored["I1"][4:] == (Decimal("5.00"), None, Decimal("150.00"), "J-I1")  # null cost: null margin

    # edits recompute from the new values and the stored ones
    put = client.put(f"/api/v1/job/{job_id(app, 'A1')}", json={"rate": "10"}, headers=headers)
    assert put.status_code == 200, put.json
    edit = browser.post(f"/job/edit/{job_id(app, 'F1')}", data={"code": "F1", "crew": str(crew), "days": "3", "hours": "8",
                                                                 "rate": "100.5", "cost": "1", "row_version": "1"})
    assert edit.status_code == 302, edit.text[:2000]
    update = import_csv(client, headers, [["code", "days"], ["I1", "1"]], key="code")
    assert update.status_code == 200 and update.json["written"], update.json
    stored = jobs(app)
    assert stored["A1"][4:7] == (Decimal("15.00"), Decimal("-85.00"), Decimal("450.00"))
    assert stored["F1"][4:7] == (Decimal("301.50"), Decimal("300.50"), Decimal("900.00"))
    assert stored["I1"][4:7] == (Decimal("10.00"), None, Decimal("300.00"))


def test_the_api_refuses_writes_to_a_formula_field(site):
    app, crew = site
    client = app.test_client()
    headers = jwt_headers(client)
    before = jobs(app)
    refused = client.post("/api/v1/job/", json={"code": "X1", "rate": "1", "amount": "5"}, headers=headers)
    assert refused.status_code == 422 and refused.json["message"] == {"amount": ["This field is read-only."]}
    empty = client.post("/api/v1/job/", json={"code": "X2", "days": None}, headers=headers)  # double_days is required
    assert empty.status_code == 422 and empty.json["message"] == {"double_days": ["Cannot be computed: a value it needs is empty."]}
    assert jobs(app) == before


def test_a_rule_refuses_on_every_path_and_nothing_is_stored(site):
    app, crew = site
    client = app.test_client()
    headers = jwt_headers(client)
    browser = login(app.test_client())
    assert client.post("/api/v1/job/", json={"code": "R1", "days": "1", "hours": "8", "rate": "1"}, headers=headers).status_code == 201
    before = jobs(app)

    api = client.post("/api/v1/job/", json={"code": "R2", "days": "1", "hours": "13", "rate": "1"}, headers=headers)
    assert api.status_code == 422 and api.json["message"] == {"hours": [TOO_LONG]}
    form = browser.post("/job/add", data={"code": "R3", "days": "1", "hours": "13", "rate": "1"})
    assert form.status_code == 200 and TOO_LONG in form.text
    imported = import_csv(client, headers, [["code", "days", "hours"], ["R4", "1", "8"], ["R5", "0.5", "7"]])
    assert imported.status_code == 422 and not imported.json["written"]
    assert [(e["row"], e["field"], e["message"]) for e in imported.json["errors"]] == [(3, "Hours", TOO_LONG)]

    # an edit is checked against the stored values it leaves alone (days 1 -> 0.5 with 8 hours stored)
    r1 = job_id(app, "R1")
    put = client.put(f"/api/v1/job/{r1}", json={"days": "0.5"}, headers=headers)
    assert put.status_code == 422 and put.json["message"] == {"hours": [TOO_LONG]}
    edit = browser.post(f"/job/edit/{r1}", data={"code": "R1", "days": "0.5", "hours": "8", "rate": "1", "row_version": "1"})
    assert edit.status_code == 200 and TOO_LONG in edit.text
    update = import_csv(client, headers, [["code", "days"], ["R1", "0.5"]], key="code")
    assert update.status_code == 422 and update.json["errors"][0]["message"] == TOO_LONG
    assert jobs(app) == before

    # the message in the user's language
    zh = client.post("/api/v1/job/", json={"code": "R6", "days": "1", "hours": "13"},
                     headers={**headers, "Accept-Language": "zh"})
    assert zh.status_code == 422 and zh.json["message"] == {"hours": ["每个工日最多12小时"]}


def test_a_formula_over_a_hidden_or_masked_field_is_hidden_or_masked_too(site):
    from test_permissions import PASSWORD, make_user

    app, crew = site
    client = app.test_client()
    admin = jwt_headers(client)
    made = client.post("/api/v1/job/", json={"code": "S1", "ref": "SECRET-77", "days": "1", "rate": "50", "cost": "31.17"}, headers=admin)
    assert made.status_code == 201, made.json
    make_user(app, "auditor1", "Auditor")
    headers = jwt_headers(client, "auditor1", PASSWORD)
    record = client.get(f"/api/v1/job/{made.json['id']}", headers=headers).json["result"]
    assert "cost" not in record and "margin" not in record  # margin = amount - cost would reveal cost
    assert record["amount"] == 50.0 or str(record["amount"]) in ("50", "50.0", "50.00")
    assert "SECRET-77" not in str(record) and record["ref_tag"] not in (None, "R-SECRET-77")  # ref is masked
    browser = login(app.test_client(), "auditor1", PASSWORD)
    show = browser.get(f"/job/show/{made.json['id']}").text
    listed = browser.get("/job/list/").text
    for page in (show, listed):
        assert "18.83" not in page and "31.17" not in page and "SECRET-77" not in page
    assert "Margin" not in show
