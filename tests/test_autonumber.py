"""Autonumber fields: pattern formatting and period restart, assignment on every write path (form, API, import),
read-only afterwards, no gap after a rollback, and 50 parallel creates through gunicorn on PostgreSQL."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re
import subprocess
import sys
import textwrap
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from app.fieldtypes.autonumber import PatternError, parse_pattern
from app.portal import portal_of
from app.rules.record_rules import RuleStep
from app.schema import load_portal
from conftest import ADMIN, ROOT, database_url, jwt_headers, login, make_app, sql_statements

# -- the pattern (pure) ------------------------------------------------------------------------------------------


def test_the_issue_pattern_formats_the_month_and_a_four_digit_counter():
    pattern = parse_pattern("TK-{YYYY}{MM}-{####}")
    day = dt.date(2026, 11, 26)
    assert pattern.format(day, 7) == "TK-202611-0007"
    assert pattern.format(day, 12345) == "TK-202611-12345"  # grows past the width, never cut
    assert pattern.period == "month" and pattern.period_key(day) == "2026-11"
    assert parse_pattern("C-{#####}").period_key(day) == ""  # no date token: never restarts
    assert parse_pattern("{YY}{MM}{DD}/{#}").format(day, 3) == "261126/3"
    assert parse_pattern("{DD}-{YYYY}-{##}").period_key(day) == "2026-11-26"  # the smallest token wins
    assert parse_pattern("Y{YY}-{##}").period_key(day) == "2026"


@settings(max_examples=200, deadline=None)
@given(day=st.dates(dt.date(1900, 1, 1), dt.date(2999, 12, 31)), number=st.integers(1, 10**12),
       width=st.integers(1, 8), tokens=st.lists(st.sampled_from(["YYYY", "YY", "MM", "DD"]), max_size=3),
       prefix=st.text(st.characters(codec="utf-8", exclude_characters="{}"), max_size=5))
def test_any_pattern_formats_its_date_and_the_whole_counter(day, number, width, tokens, prefix):
    text = prefix + "".join(f"{{{t}}}" for t in tokens) + "-{" + "#" * width + "}"
    pattern = parse_pattern(text)
    formatted = pattern.format(day, number)
    dates = "".join(day.strftime({"YYYY": "%Y", "YY": "%y", "MM": "%m", "DD": "%d"}[t]) for t in tokens)
    assert formatted == f"{prefix}{dates}-{str(number).zfill(width)}"
    assert int(formatted.rsplit("-", 1)[1]) == number and len(formatted) <= pattern.max_length
    smallest = "day" if "DD" in tokens else "month" if "MM" in tokens else "year" if tokens else None
    assert pattern.period == smallest
    # two dates share a counter exactly when they are in the same period
    other = day + dt.timedelta(days=1) if day < dt.date(2999, 12, 31) else day - dt.timedelta(days=1)
    same = {"day": day == other, "month": (day.year, day.month) == (other.year, other.month),
            "year": day.year == other.year, None: True}[smallest]
    assert (pattern.period_key(day) == pattern.period_key(other)) == same


@pytest.mark.parametrize("text, code", [
    ("A-{YYYY}", "E440"), ("{#}-{##}", "E440"), ("", "E440"), ("A-{YEAR}-{##}", "E441"), ("{##", "E441"),
    ("A}{##}", "E441"), ("A" * 60 + "{#}", "E442"),
])
def test_bad_patterns_are_refused_with_their_code(text, code):
    with pytest.raises(PatternError) as refused:
        parse_pattern(text)
    assert refused.value.code == code


def _check(tmp_path, fields: str):
    (tmp_path / "m.yaml").write_text(textwrap.dedent(f"""\
        version: 1
        module: m
        entities:
          A:
            fields:
        {textwrap.indent(textwrap.dedent(fields), ' ' * 6)}
        """), encoding="utf-8")
    return load_portal(tmp_path)


def test_the_checker_makes_an_autonumber_read_only_and_unique_and_refuses_options_that_make_no_sense(tmp_path):
    spec, problems = _check(tmp_path, 'x: {type: autonumber, pattern: "N-{###}"}')
    assert not problems
    field = spec.entity("A").field("x")
    assert field.readonly and field.unique and field.pattern == "N-{###}"
    for options, code in [('pattern: "N-{###}", default: N-1', "E418"), ('pattern: "N-{###}", length: 5', "E405"),
                          ("required: false", "E440"), ('pattern: "N-[0-9]+"', "E440"), ("pattern: [a, b]", "E440"),
                          ("pattern: 12", "E440")]:
        _, problems = _check(tmp_path, f"x: {{type: autonumber, {options}}}")
        assert [p.code for p in problems] == [code], options
    _, problems = _check(tmp_path, "s: {type: string, pattern: '[a-'}")  # a string's pattern is still a regex
    assert [p.code for p in problems] == ["E408"]


# -- the write paths ---------------------------------------------------------------------------------------------

ORDERS = """\
    version: 1
    module: orders
    label: {en: Orders, zh: 订单}
    entities:
      Order:
        label: {en: Order, zh: 订单}
        title: title
        fields:
          number: {type: autonumber, pattern: "O-{YYYY}{MM}{DD}-{###}", label: {en: Number, zh: 编号}}
          code: {type: autonumber, pattern: "X{##}", label: {en: Code, zh: 代码}}
          title: {type: string, length: 50, required: true, label: {en: Title, zh: 标题}}
        list: [number, code, title]
    """
BOOM = "boom"


class FailOnInsert(RuleStep):
    """Test-only: after the number is taken, makes the INSERT itself fail (title NOT NULL), so the database
    rolls the whole transaction back."""

    def before_write(self, ctx) -> None:
        if ctx.values.get("title") == BOOM:
            ctx.values["title"] = None


@pytest.fixture(scope="module")
def orders_app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("orders-schema")
    (folder / "orders.yaml").write_text(textwrap.dedent(ORDERS), encoding="utf-8")
    app = make_app(tmp_path_factory, "autonum", schema_dir=folder)
    portal_of(app).add_rule_step(FailOnInsert())
    return app


def _numbers(app) -> dict:
    """title -> (number, code), straight from the table."""
    model = portal_of(app).models["Order"]
    with app.app_context():
        session = app.appbuilder.session
        rows = session.execute(select(model.title, model.number, model.code)).all()
        session.rollback()
    return {r[0]: (r[1], r[2]) for r in rows}


def _csv(rows) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _import(client, headers, rows, **form):
    return client.post("/api/v1/order/import", headers=headers, content_type="multipart/form-data",
                       data={"file": (io.BytesIO(_csv(rows)), "orders.csv"), **form})


def test_every_path_assigns_consecutive_numbers_that_stay_read_only(orders_app):
    today = f"O-{dt.date.today():%Y%m%d}-"
    client = orders_app.test_client()
    headers = jwt_headers(client)
    browser = login(orders_app.test_client())

    created = client.post("/api/v1/order/", json={"title": "api"}, headers=headers)
    assert created.status_code == 201 and created.json["result"]["number"] == today + "001"
    assert 'id="number"' not in browser.get("/order/add").get_data(as_text=True)
    assert browser.post("/order/add", data={"title": "form", "number": "O-1"}).status_code == 302  # no input: ignored

    preview = _import(client, headers, [["number", "title"], ["O-9", "dry"]], dry_run="true")
    assert preview.status_code == 200 and not preview.json["written"]
    assert [(e["field"], e["row"]) for e in preview.json["ignored"]] == [("number", 1)]
    assert preview.json["errors"] == []
    page = browser.post("/order/import", content_type="multipart/form-data",
                        data={"file": (io.BytesIO(_csv([["Number", "title"], ["O-9", "dry"]])), "o.csv"),
                              "action": "preview"}).get_data(as_text=True)
    assert 'id="import-ignored"' in page and "The portal assigns this value" in page
    refused = _import(client, headers, [["title"], ["bad 1"], ["x" * 60]])  # a bad row: nothing written, no number taken
    assert refused.status_code == 422 and not refused.json["written"]
    imported = _import(client, headers, [["number", "title"], ["O-9", "file 1"], ["O-9", "file 2"]])
    assert imported.status_code == 200 and imported.json["written"], imported.json

    stored = _numbers(orders_app)
    assert stored == {"api": (today + "001", "X01"), "form": (today + "002", "X02"),
                      "file 1": (today + "003", "X03"), "file 2": (today + "004", "X04")}

    pk = created.json["id"]
    changed = client.put(f"/api/v1/order/{pk}", json={"number": "O-1", "title": "api"}, headers=headers)
    assert changed.status_code == 422 and changed.json["message"] == {"number": ["This field is read-only."]}
    assert client.put(f"/api/v1/order/{pk}", json={"title": "api 2"}, headers=headers).status_code == 200
    assert browser.post(f"/order/edit/{pk}", data={"title": "api 3", "number": "O-1", "row_version": "2"}).status_code == 302
    assert _numbers(orders_app)["api 3"] == (today + "001", "X01")  # edits never renumber


def test_a_rolled_back_create_leaves_no_gap(orders_app):
    client = orders_app.test_client()
    headers = jwt_headers(client)
    before = _numbers(orders_app)
    last = max(int(code[1:]) for _, code in before.values()) if before else 0
    failed = client.post("/api/v1/order/", json={"title": BOOM}, headers=headers)
    assert failed.status_code >= 400 and _numbers(orders_app) == before
    form_failed = login(orders_app.test_client()).post("/order/add", data={"title": BOOM})
    assert form_failed.status_code in (200, 302) and _numbers(orders_app) == before  # FAB flashes the error
    created = client.post("/api/v1/order/", json={"title": "after the rollback"}, headers=headers)
    assert created.status_code == 201 and created.json["result"]["code"] == f"X{last + 1:02d}"


def test_an_import_takes_one_range_per_chunk_and_a_counter_grows_past_its_width(orders_app):
    from app.data.importer import ROWS_PER_CHUNK

    client = orders_app.test_client()
    headers = jwt_headers(client)
    last = max(int(code[1:]) for _, code in _numbers(orders_app).values())
    rows = ROWS_PER_CHUNK + 10
    with sql_statements(orders_app) as statements:
        imported = _import(client, headers, [["title"], *[[f"bulk {n}"] for n in range(rows)]])
    assert imported.status_code == 200 and imported.json["written"]
    assert sum("portal_counters" in s for s in statements) == 2 * 2  # two chunks, two fields
    stored = _numbers(orders_app)
    codes = sorted(int(stored[f"bulk {n}"][1][1:]) for n in range(rows))
    assert codes == list(range(last + 1, last + rows + 1))
    assert stored[f"bulk {rows - 1}"][1] == f"X{last + rows}"  # 4 digits in a {##} counter
    assert len({number for number, _ in stored.values()}) == len(stored)


# -- concurrency through gunicorn (PostgreSQL) ---------------------------------------------------------------------

@pytest.mark.skipif(not os.environ.get("PORTAL_TEST_DATABASE_URL"), reason="concurrency is tested on PostgreSQL")
def test_fifty_parallel_creates_through_gunicorn_get_fifty_consecutive_numbers(tmp_path, tmp_path_factory):
    from test_gunicorn import assert_clean_log, call, gunicorn

    env = {**os.environ, "DATABASE_URL": database_url(tmp_path_factory, "autonumgun"),
           "SECRET_KEY": "gunicorn-test-secret-key-long-enough-0123456789", "PORTAL_SCHEMA_DIR": str(ROOT / "schemas")}
    env.pop("WERKZEUG_RUN_MAIN", None)
    created = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "run", "fab", "create-admin", "--username", ADMIN[0],
         "--firstname", "Ada", "--lastname", "Admin", "--email", "admin@example.com", "--password", ADMIN[1]],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert created.returncode == 0, created.stderr
    with gunicorn(["--preload", "-w", "4"], env, tmp_path / "autonum.log") as (base, process):
        api = urllib.request.build_opener()
        status, body = call(api, "POST", f"{base}/api/v1/security/login",
                            {"username": ADMIN[0], "password": ADMIN[1], "provider": "db"})
        auth = {"Authorization": f"Bearer {json.loads(body)['access_token']}"}
        status, body = call(api, "POST", f"{base}/api/v1/customer/", {"name": "并发客户"}, auth)
        customer = json.loads(body)["id"]

        def create(n: int):
            return call(api, "POST", f"{base}/api/v1/ticket/", {"subject": f"并发工单 {n}", "customer": customer}, auth)

        with ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(create, range(50)))
        assert process.poll() is None
    assert [status for status, _ in answers] == [201] * 50, answers[:3]
    numbers = sorted(json.loads(body)["result"]["number"] for _, body in answers)
    month = dt.date.today()
    assert numbers == [f"TK-{month:%Y%m}-{n:04d}" for n in range(1, 51)]
    assert_clean_log(tmp_path / "autonum.log")


def test_a_database_from_before_the_autonumber_fields_gets_them_at_start_up(tmp_path, tmp_path_factory):
    """The crm module gained `Customer.code`: an existing database gets the column (existing rows empty), its
    unique index (SQLite cannot add a UNIQUE column) and the counters table; new customers are numbered."""
    old = tmp_path / "old"
    old.mkdir()
    crm = (ROOT / "schemas" / "crm.yaml").read_text(encoding="utf-8")
    crm = re.sub(r"\n      code: .*", "", crm).replace("[name, code, ", "[name, ")
    (old / "crm.yaml").write_text(crm, encoding="utf-8")
    url = database_url(tmp_path_factory, "autonumold")
    before = make_app(tmp_path_factory, "autonumold", schema_dir=old, SQLALCHEMY_DATABASE_URI=url)
    client = before.test_client()
    assert client.post("/api/v1/customer/", json={"name": "Old Co"}, headers=jwt_headers(client)).status_code == 201
    with before.app_context():
        before.appbuilder.session.get_bind().dispose()

    app = make_app(tmp_path_factory, "autonumold", schema_dir=ROOT / "schemas", SQLALCHEMY_DATABASE_URI=url)
    client = app.test_client()
    headers = jwt_headers(client)
    new = client.post("/api/v1/customer/", json={"name": "New Co"}, headers=headers)
    assert new.status_code == 201 and new.json["result"]["code"] == "C-00001"
    rows = client.get("/api/v1/customer/?q=(order_column:id,order_direction:asc)", headers=headers).json["result"]
    assert [(r["name"], r["code"]) for r in rows] == [("Old Co", None), ("New Co", "C-00001")]
    model = portal_of(app).models["Customer"]
    with app.app_context():  # the unique index is there: a second C-00001 is refused by the database itself
        session = app.appbuilder.session
        session.add(model(name="Copy", code="C-00001", kind="company", level="normal"))
        with pytest.raises(Exception, match="(?i)unique"):
            session.commit()
        session.rollback()


SLIPS = """\
    version: 1
    module: slips
    entities:
      Slip:
        title: name
        fields:
          name: {type: string, length: 40, required: true}
          number: {type: autonumber, pattern: "S-{###}"}
          tag: {type: string, length: 60, formula: "concat(number, '/', name)"}
"""


def test_a_formula_reads_the_number_assigned_on_the_same_write(tmp_path_factory):
    """Numbers are assigned after the rules' check and before the write: the formula is computed again with it
    (ExpressionStep.before_write recomputes only when a step changed what a formula reads)."""
    folder = tmp_path_factory.mktemp("slips-schema")
    (folder / "slips.yaml").write_text(textwrap.dedent(SLIPS), encoding="utf-8")
    app = make_app(tmp_path_factory, "slips", schema_dir=folder)
    client = app.test_client()
    headers = jwt_headers(client)
    created = client.post("/api/v1/slip/", json={"name": "甲"}, headers=headers)
    assert created.status_code == 201, created.json
    assert created.json["result"]["tag"] == f"{created.json['result']['number']}/甲" == "S-001/甲"
    imported = client.post("/api/v1/slip/import", headers=headers, content_type="multipart/form-data",
                           data={"file": (io.BytesIO(_csv([["name"], ["乙"], ["丙"]])), "slips.csv")})
    assert imported.status_code == 200, imported.json
    model = portal_of(app).models["Slip"]
    with app.app_context():
        rows = app.appbuilder.session.execute(select(model.name, model.tag).order_by(model.id)).all()
    assert [tuple(r) for r in rows] == [("甲", "S-001/甲"), ("乙", "S-002/乙"), ("丙", "S-003/丙")]


def test_an_import_updating_by_key_keeps_the_stored_numbers(tmp_path_factory):
    """Rows updated by key keep their autonumber (it is given on create only); new rows of the file get new ones."""
    from conftest import post_csv

    app = make_app(tmp_path_factory, "autonumber_import_update")
    client = app.test_client()
    headers = jwt_headers(client)
    first = client.post("/api/v1/customer/", json={"name": "甲", "phone": "+8613800000001"}, headers=headers).json
    response = post_csv(client, headers, "/api/v1/customer/import",
                        [["Name", "Phone"], ["甲改", "+8613800000001"], ["乙", "+8613800000002"]], key="phone")
    assert response.status_code == 200 and (response.json["created"], response.json["updated"]) == (1, 1), response.json
    stored = {c["name"]: c["code"] for c in client.get("/api/v1/customer/", headers=headers).json["result"]}
    first = client.get(f"/api/v1/customer/{first['id']}", headers=headers).json["result"]  # after the import
    assert stored == {"甲改": "C-00001", "乙": "C-00002"} and first["name"] == "甲改"
