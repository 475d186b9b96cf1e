"""Bulk actions (issue 13): POST /api/v1/<entity>/bulk and the list page's POST /<entity>/bulk, through HTTP.

Each row is checked on its own (role, scope, state, locked, references, record rules); refused rows are reported
with their reason and do not stop the others; done rows get history and keep the rollups exact.
"""
from __future__ import annotations

import json
from decimal import Decimal

import pytest
from conftest import jwt_headers, login, make_app
from sqlalchemy import text
from test_permissions import PASSWORD, make_user

from app.portal import portal_of
from app.rules import bulk_actions

BULK = "/api/v1/labour_entry/bulk"


class Labour:
    """The labour module with a foreman's site (A), another site (B) and 40 entries; clients per role."""

    def __init__(self, app) -> None:
        self.app = app
        self.foreman_id = make_user(app, "bulk_foreman", "SiteForeman")
        self.finance_id = make_user(app, "bulk_finance", "Finance")
        make_user(app, "bulk_manager", "Manager")
        self.client = app.test_client()
        self.admin = jwt_headers(self.client)
        self.foreman = jwt_headers(self.client, "bulk_foreman", PASSWORD)
        self.finance = jwt_headers(self.client, "bulk_finance", PASSWORD)
        self.manager = jwt_headers(self.client, "bulk_manager", PASSWORD)
        self.site_a = self.post("project", code="BULK-A", name="Site A", status="active", manager=self.foreman_id)
        self.site_b = self.post("project", code="BULK-B", name="Site B", status="active")
        self.worker = self.post("worker", name="Bulk Li", trade="mason", day_rate=300,
                                projects=[self.site_a, self.site_b])
        self.entries = {}
        self.serial = 0

    def post(self, entity, **values) -> int:
        response = self.client.post(f"/api/v1/{entity}/", json=values, headers=self.admin)
        assert response.status_code == 201, response.json
        return response.json["id"]

    def add_entries(self, project: int, count: int, days: str = "1") -> list[int]:
        ids = []
        for _ in range(count):
            self.serial += 1
            day = f"2025-{1 + self.serial // 28:02d}-{1 + self.serial % 28:02d}"
            ids.append(self.post("labour_entry", project=project, worker=self.worker, work_date=day,
                                 days=days, hours="8", rate="300"))
        return ids

    def bulk(self, headers, body, url=BULK):
        return self.client.post(url, json=body, headers=headers)

    def states(self, ids) -> dict:
        table = portal_of(self.app).models["LabourEntry"].__table__
        with _engine(self.app).connect() as conn:
            rows = conn.execute(table.select().where(table.c.id.in_(ids))).mappings().all()
        return {row["id"]: dict(row) for row in rows}

    def history(self, ids, action=None) -> list[dict]:
        sql = "SELECT * FROM portal_history WHERE entity = 'LabourEntry'"
        with _engine(self.app).connect() as conn:
            rows = [dict(r) for r in conn.execute(text(sql + " ORDER BY id")).mappings()]
        return [r for r in rows if r["record_id"] in set(ids) and (action is None or r["action"] == action)]

    def assert_rollups_exact(self):
        """Project.labour_cost is the sum of approved entries' amounts, as computed from scratch."""
        with _engine(self.app).connect() as conn:
            stored = dict(conn.execute(text("SELECT id, labour_cost FROM project")).all())
            fresh = dict(conn.execute(text(
                "SELECT project_id, SUM(amount) FROM labour_entry WHERE approved = :yes GROUP BY project_id"),
                {"yes": True}).all())
        for pk, value in stored.items():
            assert Decimal(str(value or 0)) == Decimal(str(fresh.get(pk) or 0)), (pk, value, fresh.get(pk))


def _engine(app):
    with app.app_context():
        return app.appbuilder.session.get_bind()


@pytest.fixture(scope="module")
def labour(tmp_path_factory):
    return Labour(make_app(tmp_path_factory, "bulk"))


def refused_by_id(response) -> dict:
    return {r["id"]: r["reason"] for r in response.json["refused"]}


def test_finance_approves_40_entries_in_one_call_with_refusals(labour):
    on_a, on_b = labour.add_entries(labour.site_a, 30), labour.add_entries(labour.site_b, 10)
    entries = on_a + on_b
    submit = labour.bulk(labour.admin, {"action": "transition", "transition": "submit", "ids": entries[:36]})
    assert submit.status_code == 200, submit.json
    assert sorted(submit.json["done"]) == sorted(entries[:36]) and submit.json["refused"] == [], submit.json["refused"][:3]
    missing = max(entries) + 10_000
    response = labour.bulk(labour.finance, {"action": "transition", "transition": "approve",
                                            "ids": entries + [missing, str(entries[0])]})
    assert response.status_code == 200, response.json
    assert sorted(response.json["done"]) == sorted(entries[:36])
    refused = refused_by_id(response)
    assert set(refused) == set(entries[36:]) | {missing}
    assert refused[missing] == "Not found"
    assert all("Draft" in refused[i] for i in entries[36:]), refused  # the state it is in, by its label
    stored = labour.states(entries)
    assert {stored[i]["state"] for i in entries[:36]} == {"approved"}
    assert all(stored[i]["approved"] and stored[i]["approved_by_id"] == labour.finance_id
               and stored[i]["approved_on"] is not None and stored[i]["row_version"] == 3 for i in entries[:36])
    assert {stored[i]["state"] for i in entries[36:]} == {"draft"} and all(stored[i]["row_version"] == 1 for i in entries[36:])
    history = labour.history(entries[:36], "transition")
    approvals = [h for h in history if h["transition"] == "approve"]
    assert len(approvals) == 36 and {h["path"] for h in approvals} == {"bulk"}
    assert {h["username"] for h in approvals} == {"bulk_finance"}
    changes = json.loads(approvals[0]["changes"])
    assert changes["state"] == ["submitted", "approved"] and changes["approved_by"] == [None, labour.finance_id]
    assert changes["approved_on"][0] is None and changes["approved"] == [False, True]
    labour.assert_rollups_exact()
    # approving them again: every row is in the wrong state now, nothing changes
    again = labour.bulk(labour.finance, {"action": "transition", "transition": "approve", "ids": entries[:3]})
    assert again.json["done"] == [] and len(again.json["refused"]) == 3
    assert labour.states(entries[:3])[entries[0]]["row_version"] == 3


def test_a_foreman_gets_scope_and_role_refusals(labour):
    on_a, on_b = labour.add_entries(labour.site_a, 3), labour.add_entries(labour.site_b, 2)
    response = labour.bulk(labour.foreman, {"action": "transition", "transition": "submit", "ids": on_a + on_b})
    assert response.status_code == 200, response.json
    assert sorted(response.json["done"]) == sorted(on_a)
    assert refused_by_id(response) == {i: "Not found" for i in on_b}  # out of scope reads as missing
    approve = labour.bulk(labour.foreman, {"action": "transition", "transition": "approve", "ids": on_a + on_b})
    refused = refused_by_id(approve)
    assert approve.json["done"] == [] and set(refused) == set(on_a + on_b)
    assert all(refused[i] == "Not found" for i in on_b)
    role_reasons = {refused[i] for i in on_a}
    assert len(role_reasons) == 1 and "Not found" not in role_reasons  # the same role refusal on each row
    assert {row["state"] for row in labour.states(on_a).values()} == {"submitted"}


def test_delete_checks_permission_lock_references_and_keeps_rollups(labour):
    drafts, submitted = labour.add_entries(labour.site_a, 3), labour.add_entries(labour.site_b, 2)
    approved = labour.add_entries(labour.site_b, 2, days="2")
    assert labour.bulk(labour.admin, {"action": "transition", "transition": "submit", "ids": submitted + approved}).json["refused"] == []
    assert labour.bulk(labour.admin, {"action": "transition", "transition": "approve", "ids": approved}).json["refused"] == []
    labour.assert_rollups_exact()
    everything = drafts + submitted + approved
    # Finance may not delete: each row says so, nothing goes
    denied = labour.bulk(labour.finance, {"action": "delete", "ids": everything})
    assert denied.json["done"] == [] and len(set(refused_by_id(denied).values())) == 1
    response = labour.bulk(labour.manager, {"action": "delete", "ids": everything})
    assert response.status_code == 200, response.json
    assert sorted(response.json["done"]) == sorted(drafts + submitted)
    refused = refused_by_id(response)
    assert set(refused) == set(approved) and all("Approved" in reason for reason in refused.values())  # locked
    assert set(labour.states(everything)) == set(approved)
    deletes = labour.history(drafts + submitted, "delete")
    assert len(deletes) == 5 and {h["path"] for h in deletes} == {"bulk"}
    assert json.loads(deletes[0]["changes"])["state"][1] is None
    labour.assert_rollups_exact()
    # a site with entries is still referenced; an empty one goes
    empty = labour.post("project", code="BULK-C", name="Site C", status="active")
    projects = labour.bulk(labour.manager, {"action": "delete", "ids": [labour.site_b, empty]},
                           url="/api/v1/project/bulk")
    assert projects.json["done"] == [empty]
    assert "still refer" in refused_by_id(projects)[labour.site_b]


def test_filter_variant_json_and_rison_stay_in_scope(labour):
    on_a, on_b = labour.add_entries(labour.site_a, 2), labour.add_entries(labour.site_b, 2)
    response = labour.bulk(labour.foreman, {"action": "transition", "transition": "submit",
                                            "filter": [{"col": "state", "opr": "eq", "value": "draft"}]})
    assert response.status_code == 200, response.json
    assert set(on_a) <= set(response.json["done"]) and not set(on_b) & set(response.json["done"])
    assert {row["state"] for row in labour.states(on_b).values()} == {"draft"}
    rison = labour.bulk(labour.manager, {"action": "transition", "transition": "submit",
                                         "filter": "!((col:state,opr:eq,value:draft))"})
    assert rison.status_code == 200 and set(on_b) <= set(rison.json["done"])
    assert {row["state"] for row in labour.states(on_a + on_b).values()} == {"submitted"}


def test_limits_and_bad_input_are_4xx_and_write_nothing(labour, monkeypatch):
    ids = labour.add_entries(labour.site_a, 3)
    before = labour.states(ids)
    history_before = len(labour.history(ids))
    approve = {"action": "transition", "transition": "approve"}
    cases = [
        ({"action": "transition", "transition": "approve", "ids": list(range(1, 10_002))}, 413),
        ({"action": "frobnicate", "ids": ids}, 400),
        ({"action": "transition", "transition": "teleport", "ids": ids}, 400),
        ({"action": "transition", "ids": ids}, 400),
        ({**approve, "ids": []}, 400),
        ({**approve, "ids": ["x"]}, 400),
        ({**approve, "ids": [2 ** 70]}, 400),
        ({**approve, "ids": [True]}, 400),
        ({**approve, "ids": "1,2"}, 400),
        ({**approve}, 400),
        ({**approve, "ids": ids, "filter": []}, 400),
        ({**approve, "filter": [{"col": "nope", "opr": "eq", "value": 1}]}, 400),
        ({**approve, "filter": [{"col": "state", "opr": "zz", "value": 1}]}, 400),
        ({**approve, "filter": [{"col": "work_date", "opr": "eq", "value": "not a date"}]}, 400),
        ({**approve, "filter": [{"col": "state"}]}, 400),
        ({**approve, "filter": [{"col": "state", "opr": ["eq"], "value": "draft"}]}, 400),  # was a 500 in FAB
        ({**approve, "filter": [{"col": "state", "opr": {"a": 1}, "value": "draft"}]}, 400),
        ({**approve, "filter": [{"col": ["state"], "opr": "eq", "value": "draft"}]}, 400),
        ({**approve, "filter": "!((col:state,opr:!(eq),value:draft))"}, 400),
        ({**approve, "filter": "!((col:state"}, 400),
        ({**approve, "filter": 7}, 400),
    ]
    for body, status in cases:
        response = labour.bulk(labour.manager, body)
        assert response.status_code == status, (body if len(str(body)) < 300 else body["action"], response.json)
        assert response.json["message"], body
    assert labour.client.post(BULK, data="{", headers={**labour.manager, "Content-Type": "application/json"}).status_code == 400
    assert labour.client.post(BULK, data="ids=1", headers=labour.manager).status_code == 400
    # a hidden field cannot be filtered on (the foreman does not see workers' bank accounts)
    hidden = labour.bulk(labour.foreman, {"action": "delete", "filter": [
        {"col": "bank_account", "opr": "sw", "value": "6"}]}, url="/api/v1/worker/bulk")
    assert hidden.status_code == 400, hidden.json
    # a filter matching more rows than a call may take
    monkeypatch.setattr(bulk_actions, "MAX_ROWS", 2)
    many = labour.bulk(labour.manager, {**approve, "filter": [{"col": "state", "opr": "eq", "value": "draft"}]})
    assert many.status_code == 413, many.json
    assert labour.states(ids) == before and len(labour.history(ids)) == history_before
    # a localized message
    zh = labour.client.post(BULK, json={"action": "x", "ids": ids}, headers={**labour.manager, "Accept-Language": "zh"})
    assert zh.status_code == 400 and not zh.json["message"].isascii()


def test_a_rule_broken_by_a_transition_refuses_that_row_only(labour):
    """A portal rule step that refuses approving entries of more than 1 day: those rows are refused with its
    message, the others are approved (the record rules run on every row of a bulk transition)."""
    from app.rules.record_rules import RuleStep

    class NoLongApprovals(RuleStep):
        def applies(self, entity):
            return entity.name == "LabourEntry"

        def check(self, ctx):
            if ctx.get("state") == "approved" and ctx.get("days") > 1:
                ctx.error("days", "Too long to approve in bulk")

    short, long = labour.add_entries(labour.site_a, 2), labour.add_entries(labour.site_a, 2, days="2")
    assert labour.bulk(labour.admin, {"action": "transition", "transition": "submit", "ids": short + long}).json["refused"] == []
    step = NoLongApprovals()
    portal_of(labour.app).add_rule_step(step)
    try:
        response = labour.bulk(labour.finance, {"action": "transition", "transition": "approve", "ids": short + long})
    finally:
        portal_of(labour.app).remove_rule_step(step)
    assert sorted(response.json["done"]) == sorted(short)
    refused = refused_by_id(response)
    assert set(refused) == set(long) and all("Too long to approve in bulk" in r for r in refused.values())
    assert {row["state"] for row in labour.states(long).values()} == {"submitted"}
    labour.assert_rollups_exact()


def test_a_schema_rule_a_row_breaks_refuses_that_row_with_its_message(labour):
    """`rules:` run on every row (evaluated once per distinct set of values they read): two entries stored with 20
    hours a day (written before the rule, here by SQL) are refused with the rule's message, the others approved."""
    rows = labour.add_entries(labour.site_a, 4)
    assert labour.bulk(labour.admin, {"action": "transition", "transition": "submit", "ids": rows}).json["refused"] == []
    with _engine(labour.app).begin() as conn:
        conn.execute(text("UPDATE labour_entry SET hours = 20 WHERE id IN (:a, :b)"), {"a": rows[0], "b": rows[2]})
    response = labour.bulk(labour.finance, {"action": "transition", "transition": "approve", "ids": rows})
    assert sorted(response.json["done"]) == [rows[1], rows[3]]
    assert refused_by_id(response) == {rows[0]: "Hours: At most 12 hours per day", rows[2]: "Hours: At most 12 hours per day"}
    zh = labour.bulk({**labour.finance, "Accept-Language": "zh"}, {"action": "transition", "transition": "approve",
                                                                     "ids": [rows[0]]})
    assert refused_by_id(zh) == {rows[0]: "工时: 每个工日最多12小时"}
    labour.assert_rollups_exact()


def test_rows_sharing_their_values_are_checked_together_yet_each_gets_its_own_outcome(labour):
    """Rows that agree on every field their checks read share one check (RuleStep.edit_reads); rows that differ
    in any of them get their own: whole and two-day entries, one with a stale stored amount (recomputed, and only
    its history says so) and one breaking the hours rule, approved in one call."""
    whole, double = labour.add_entries(labour.site_a, 3), labour.add_entries(labour.site_a, 3, days="2")
    stale, broken = whole[2], double[2]
    rows = whole + double
    assert labour.bulk(labour.admin, {"action": "transition", "transition": "submit", "ids": rows}).json["refused"] == []
    with _engine(labour.app).begin() as conn:
        conn.execute(text("UPDATE labour_entry SET amount = 1 WHERE id = :id"), {"id": stale})
        conn.execute(text("UPDATE labour_entry SET hours = 30 WHERE id = :id"), {"id": broken})
    response = labour.bulk(labour.finance, {"action": "transition", "transition": "approve", "ids": rows})
    assert response.json["done"] == [i for i in rows if i != broken]  # in the order asked
    assert refused_by_id(response) == {broken: "Hours: At most 12 hours per day"}
    stored = labour.states(rows)
    assert {i: Decimal(str(stored[i]["amount"])) for i in rows if i != broken} == {
        **{i: Decimal(300) for i in whole}, **{i: Decimal(600) for i in double[:2]}}
    assert stored[broken]["state"] == "submitted" and stored[stale]["state"] == "approved"
    changes = {h["record_id"]: json.loads(h["changes"]) for h in labour.history(rows, "transition")
               if h["transition"] == "approve"}
    assert set(changes) == set(rows) - {broken}
    assert changes[stale]["amount"] == ["1.00", "300.00"]
    assert all("amount" not in changes[i] and changes[i]["state"] == ["submitted", "approved"]
               for i in rows if i not in (stale, broken))
    labour.assert_rollups_exact()


def test_a_rule_step_reading_more_than_it_declares_fails_and_writes_nothing(labour):
    """A step whose edit_reads leaves out a field its check reads would be handed one row's verdict for others: the
    bulk transition refuses to run it rather than read None (the whole call fails, nothing is written)."""
    from app.rules.record_rules import RuleStep

    class Undeclared(RuleStep):
        def edit_reads(self, rules, written):
            return frozenset()

        def check(self, ctx):
            if ctx.get("work_content") == "overtime":  # read by no built-in step on approve
                ctx.error("work_content", "No overtime")

    rows = labour.add_entries(labour.site_a, 2)
    assert labour.bulk(labour.admin, {"action": "transition", "transition": "submit", "ids": rows}).json["refused"] == []
    step = Undeclared()
    portal_of(labour.app).add_rule_step(step)
    try:
        response = labour.bulk(labour.finance, {"action": "transition", "transition": "approve", "ids": rows})
    finally:
        portal_of(labour.app).remove_rule_step(step)
    assert response.status_code == 500
    assert {row["state"] for row in labour.states(rows).values()} == {"submitted"}


def test_list_page_approves_selected_rows_and_all_matching_the_filter(labour):
    ids = labour.add_entries(labour.site_a, 4)
    finance = login(labour.app.test_client(), "bulk_finance", PASSWORD)
    page = finance.get("/labour_entry/list/")
    html = page.get_data(as_text=True)
    assert 'id="bulk-form"' in html and 'value="transition:approve"' in html and 'class="bulk-check"' in html
    assert 'value="transition:submit"' not in html and 'value="delete"' not in html  # not Finance's
    result = finance.post("/labour_entry/bulk", data={"action": "transition:approve", "rowid": [str(i) for i in ids[:2]]})
    assert result.status_code == 200
    body = result.get_data(as_text=True)
    assert "0 done" in body and body.count("<tr data-id=") == 2  # drafts: refused, each with a link and why
    assert f"/labour_entry/show/{ids[0]}" in body
    assert labour.bulk(labour.admin, {"action": "transition", "transition": "submit", "ids": ids}).json["refused"] == []
    result = finance.post("/labour_entry/bulk?_flt_0_state=submitted",
                          data={"action": "transition:approve", "scope": "filter"})
    assert result.status_code == 200
    assert {row["state"] for row in labour.states(ids).values()} == {"approved"}
    assert "/labour_entry/list/?_flt_0_state=submitted" in result.get_data(as_text=True)
    # an action the role may not take, and no rows, are refused with nothing written
    assert finance.post("/labour_entry/bulk", data={"action": "delete", "rowid": [str(ids[0])]}).status_code == 400
    assert finance.post("/labour_entry/bulk", data={"action": "transition:approve"}).status_code == 400
    labour.assert_rollups_exact()


def test_export_selected_has_only_the_chosen_rows(labour):
    ids = labour.add_entries(labour.site_a, 3)
    manager = login(labour.app.test_client(), "bulk_manager", PASSWORD)
    response = manager.post("/labour_entry/bulk", data={"action": "export:csv", "rowid": [str(i) for i in ids[:2]]})
    assert response.status_code == 200 and response.mimetype == "text/csv"
    lines = [line for line in response.get_data(as_text=True).splitlines() if line.strip()]
    assert len(lines) == 3  # the header and the two chosen rows
    # a foreman's selection of a row outside their scope exports nothing of it
    outside = labour.add_entries(labour.site_b, 1)
    foreman = login(labour.app.test_client(), "bulk_foreman", PASSWORD)
    scoped = foreman.post("/labour_entry/bulk", data={"action": "export:csv", "rowid": [str(outside[0])]})
    assert scoped.status_code == 200 and len([ln for ln in scoped.get_data(as_text=True).splitlines() if ln.strip()]) == 1


UNIQUE_SCHEMA = """version: 1
module: docs
label: {en: Docs, zh: 文档}
entities:
  Doc:
    label: {en: Doc, zh: 文档}
    title: code
    fields:
      code: {type: string, length: 40, required: true, label: {en: Code, zh: 编号}}
      state:
        type: enum
        required: true
        label: {en: State, zh: 状态}
        choices: {a: {en: A, zh: 甲}, b: {en: B, zh: 乙}, c: {en: C, zh: 丙}}
        default: a
    list: [code, state]
    unique_together: [[code, state]]
    workflow:
      field: state
      transitions:
        go: {from: [a, c], to: b, roles: [Manager]}
        park: {from: a, to: c, roles: [Manager]}
    history: true
roles:
  Manager:
    label: {en: Manager, zh: 经理}
    can: {Doc: all}
"""


def test_bulk_transition_refuses_only_rows_that_would_repeat_a_unique_group(tmp_path_factory):
    """(code, state) is unique_together and the transition writes state: a row whose code is already in state b,
    and the second of two rows of one code in the same call, are refused with the duplicate message; the others
    are taken (no database error aborting the call)."""
    folder = tmp_path_factory.mktemp("bulk-unique")
    (folder / "docs.yaml").write_text(UNIQUE_SCHEMA, encoding="utf-8")
    app = make_app(tmp_path_factory, "bulk_unique", schema_dir=folder)
    client = app.test_client()
    headers = jwt_headers(client)

    def doc(code):
        response = client.post("/api/v1/doc/", json={"code": code}, headers=headers)
        assert response.status_code == 201, response.json
        return response.json["id"]

    assert client.post(f"/api/v1/doc/{doc('X')}/transitions/go", json={}, headers=headers).status_code == 200
    taken_x, free_y, twin_z1 = doc("X"), doc("Y"), doc("Z")
    assert client.post(f"/api/v1/doc/{twin_z1}/transitions/park", json={}, headers=headers).status_code == 200
    twin_z2 = doc("Z")  # Z in state c and Z in state a: both would be Z in state b
    result = client.post("/api/v1/doc/bulk", json={"action": "transition", "transition": "go",
                                                   "ids": [taken_x, free_y, twin_z1, twin_z2]}, headers=headers)
    assert result.status_code == 200, result.json
    assert sorted(result.json["done"]) == [free_y, twin_z1]
    refused = {r["id"]: r["reason"] for r in result.json["refused"]}
    assert set(refused) == {taken_x, twin_z2}
    assert all("A record with the same Code, State already exists." in reason for reason in refused.values())
    states = {pk: client.get(f"/api/v1/doc/{pk}", headers=headers).json["result"]["state"]
              for pk in (taken_x, free_y, twin_z1, twin_z2)}
    assert states == {taken_x: "a", free_y: "b", twin_z1: "b", twin_z2: "a"}
    assert client.post("/api/v1/doc/bulk", json={"action": "transition", "transition": "go", "ids": [twin_z2]},
                       headers=headers).json["refused"][0]["id"] == twin_z2  # now against the stored row
    zh = client.post("/api/v1/doc/bulk?_l_=zh", json={"action": "transition", "transition": "go", "ids": [taken_x]},
                     headers=headers)
    assert zh.status_code == 200 and zh.json["refused"][0]["reason"] != refused[taken_x]
