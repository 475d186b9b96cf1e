"""Duplicate detection (issue 16): `duplicates:` rules checked, candidates on create/edit through forms, the API and
imports, in the user's scope, and the duplicates page. SQLite and PostgreSQL (PORTAL_TEST_DATABASE_URL)."""
from __future__ import annotations

import textwrap

import pytest
from sqlalchemy import func, select

from app.generate import duplicates as duplicates_pages
from app.portal import portal_of
from app.schema import load_portal
from conftest import jwt_headers, login, make_app, post_csv

PASSWORD = "Dup-pass-12345"

SCHEMA = """\
    version: 1
    module: dup
    label: {en: Dup, zh: 查重}
    entities:
      Client:
        label: {en: Client, zh: 客户}
        title: name
        fields:
          name: {type: string, length: 120, required: true, label: {en: Name, zh: 名称}}
          phone: {type: phone, label: {en: Phone, zh: 电话}}
          email: {type: email, label: {en: Email, zh: 邮箱}}
          city: {type: string, length: 40, label: {en: City, zh: 城市}}
          notes: {type: string, length: 200, label: {en: Notes, zh: 备注}}
          owner: {type: user, default: current_user, label: {en: Owner, zh: 负责人}}
        duplicates:
          - {match: [phone]}
          - {match: [name], fuzzy: 90, same: [city]}
          - {match: [email], save_anyway: [Lead]}
    roles:
      Rep:
        label: {en: Rep, zh: 销售}
        can: {Client: [read, create, update, import]}
        rows: {Client: {owner: $user}}
      Lead:
        label: {en: Lead, zh: 主管}
        can: {Client: all}
      Viewer:
        label: {en: Viewer, zh: 查看}
        can: {Client: [read]}
        mask: {Client: [phone]}
    """


@pytest.fixture(scope="module")
def dup_app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dup-schema")
    (folder / "dup.yaml").write_text(textwrap.dedent(SCHEMA), encoding="utf-8")
    app = make_app(tmp_path_factory, "dup", schema_dir=folder)
    with app.app_context():
        sm = app.appbuilder.sm
        for name, role in (("rep1", "Rep"), ("rep2", "Rep"), ("lead", "Lead"), ("viewer", "Viewer")):
            if not sm.find_user(username=name):
                sm.add_user(name, name, "Test", f"{name}@example.com", [sm.find_role(role)], PASSWORD)
    return app


@pytest.fixture()
def clean(dup_app):
    """Each test starts from an empty table."""
    model = portal_of(dup_app).models["Client"]
    with dup_app.app_context():
        session = dup_app.appbuilder.session
        session.query(model).delete()
        session.commit()
    return dup_app


def headers(app, user="admin", password=None):
    from conftest import ADMIN
    return jwt_headers(app.test_client(), user, password or (ADMIN[1] if user == "admin" else PASSWORD))


def create(app, hdrs, allow=False, **values):
    url = "/api/v1/client/" + ("?allow_duplicate=1" if allow else "")
    return app.test_client().post(url, json=values, headers=hdrs)


def listed_pairs(client, url: str) -> tuple[str, set]:
    """(the duplicates page's HTML, its candidate pairs as (first id, second id))."""
    import re
    response = client.get(url)
    assert response.status_code == 200, response.data[:300]
    html = response.get_data(as_text=True)
    return html, {(int(x), int(y)) for x, y in re.findall(r'data-first="(\d+)" data-second="(\d+)"', html)}


def count(app) -> int:
    model = portal_of(app).models["Client"]
    with app.app_context():
        session = app.appbuilder.session
        n = session.scalar(select(func.count()).select_from(model))
        session.rollback()
        return n


# -- the checker ------------------------------------------------------------------------------------------
HEAD = """\
version: 1
module: m
entities:
  A:
    title: name
    fields: {name: string, phone: phone, born: date, notes: text, tags: {type: many, to: A}, city: string}
    duplicates:
"""


@pytest.mark.parametrize("rules, code", [
    ("      {match: [phone]}\n", "E810"),
    ("      - {match: [phone], exact: true}\n", "E811"),
    ("      - {same: [city]}\n", "E812"),
    ("      - {match: [phon]}\n", "E813"),
    ("      - {match: [notes]}\n", "E814"),
    ("      - {match: [tags]}\n", "E814"),
    ("      - {match: [name], fuzzy: 120}\n", "E815"),
    ("      - {match: [born], fuzzy: 90}\n", "E815"),
    ("      - {match: [name, city], fuzzy: 90}\n", "E815"),
    ("      - {match: [name], same: [name]}\n", "E816"),
    ("      - {match: [phone]}\n      - {match: [phone]}\n", "E817"),
    ("      - {match: [phone], save_anyway: [Nobody]}\n", "E818"),
    ("      - {match: [phone]}\nroles:\n  R: {can: {A: all}, hide: {A: [phone]}}\n", "E819"),
])
def test_checker_reports_bad_rules_with_their_line(tmp_path, rules, code):
    (tmp_path / "m.yaml").write_text(HEAD + rules, encoding="utf-8")
    spec, problems = load_portal(tmp_path)
    assert spec is None
    found = {(p.code, p.line) for p in problems}
    assert any(c == code and line >= 7 for c, line in found), problems


def test_checker_accepts_the_issue_syntax(tmp_path):
    (tmp_path / "m.yaml").write_text(HEAD + "      - {match: [phone]}\n      - {match: [name], fuzzy: 90, same: [city]}\n",
                                     encoding="utf-8")
    spec, problems = load_portal(tmp_path)
    assert not problems
    rules = spec.entity("A").duplicates
    assert [r.id for r in rules] == ["phone", "name~90=city"]


# -- API ----------------------------------------------------------------------------------------------------
def test_api_exact_rule_answers_409_with_candidates_unless_allowed(clean):
    app = clean
    admin = headers(app)
    first = create(app, admin, name="Zhang San Ltd", phone="138-0013-8000")
    assert first.status_code == 201, first.json
    again = create(app, admin, name="Another", phone="+86 13800138000")  # the same number, spelt otherwise
    assert again.status_code == 409, again.json
    assert again.json["duplicates"] == [{"id": first.json["id"], "title": "Zhang San Ltd", "score": 100.0, "rule": "phone"}]
    assert "allow_duplicate" in again.json["message"]
    assert count(app) == 1  # nothing written
    saved = create(app, admin, allow=True, name="Another", phone="+86 13800138000")
    assert saved.status_code == 201 and count(app) == 2


def test_api_fuzzy_rule_needs_the_same_fields_equal(clean):
    app = clean
    admin = headers(app)
    first = create(app, admin, name="Acme Building Co", city="Shanghai")
    assert first.status_code == 201
    near = create(app, admin, name="ACME Building Co.", city="Shanghai")  # case and punctuation
    assert near.status_code == 409
    assert near.json["duplicates"][0]["rule"] == "name~90=city" and near.json["duplicates"][0]["score"] >= 90
    assert create(app, admin, name="Acme Building Co", city="Beijing").status_code == 201  # other city
    assert create(app, admin, name="Acme Holdings Group", city="Shanghai").status_code == 201  # not similar
    # null never equals null: no city on either side is no match
    assert create(app, admin, name="Lone Wolf Trading").status_code == 201
    assert create(app, admin, name="Lone Wolf Trading").status_code == 201
    chinese = create(app, admin, name="上海张三建筑工程有限公司", city="上海")
    assert chinese.status_code == 201
    dup = create(app, admin, name="上海张三建筑工程有限公司。", city="上海")
    assert dup.status_code == 409 and dup.json["duplicates"][0]["id"] == chinese.json["id"]


def test_fuzzy_rule_blocks_after_a_leading_place_name(clean):
    """Company names start with their city so often that the first two characters make one block of a big city's
    companies: the blocking key skips a leading province or city name (and a 市/省 after it), so spellings with the
    city written out, or without it, are compared; and a block of other "上海…" companies is not."""
    app = clean
    admin = headers(app)
    stored = create(app, admin, name="上海宏达建筑工程有限公司", city="上海市").json["id"]
    for spelling in ("上海市宏达建筑工程有限公司", "宏达建筑工程有限公司", "上海宏达建筑工程有限责任公司"):
        found = create(app, admin, name=spelling, city="上海市")
        assert found.status_code == 409, (spelling, found.json)
        assert [d["id"] for d in found.json["duplicates"]] == [stored], (spelling, found.json)
    group = create(app, admin, name="上海建工集团股份有限公司", city="上海市").json["id"]
    near = create(app, admin, name="上海市建工集团股份有限公司", city="上海市")
    assert near.status_code == 409 and [d["id"] for d in near.json["duplicates"]] == [group], near.json
    # the same written form in another city, or a different company of the city, is no candidate
    assert create(app, admin, name="宏达建筑工程有限公司", city="杭州市").status_code == 201
    assert create(app, admin, name="上海宏远建筑工程有限公司", city="上海市").status_code == 201
    # a short name (a person's) keeps its first characters: 周口 is a city, 周口伟 a person
    person = create(app, admin, name="周口伟", city="上海市").json["id"]
    same_person = create(app, admin, name="周口伟。", city="上海市")
    assert same_person.status_code == 409 and [d["id"] for d in same_person.json["duplicates"]] == [person]


def test_import_blocks_file_rows_after_a_leading_place_name(clean):
    app = clean
    admin = headers(app)
    rows = [["name", "city"], ["杭州华泰装饰工程有限公司", "杭州市"], ["杭州市华泰装饰工程有限公司", "杭州市"],
            ["华泰装饰工程有限公司", "杭州市"]]
    report = post_csv(app.test_client(), admin, "/api/v1/client/import", rows, dry_run="true").json
    assert {(d["row"], d.get("other_row")) for d in report["duplicates"]} == {(3, 2), (4, 2)}, report


def test_blocking_key_in_sql_is_the_python_key(dup_app):
    """The index expression and `block_key` (import blocks within a file) agree on both databases."""
    from sqlalchemy import literal

    from app.data.duplicates import _block, block_key
    names = ["上海宏达建筑工程有限公司", "上海市宏达建筑工程有限公司", "广东省深圳市华为技术有限公司", "黑龙江省龙江建设公司",
             "石家庄市华泰建设有限公司", "呼和浩特市草原建设有限公司", "周口伟", "张伟", "上海", "上海市", "上海市宏达",
             "ACME Trading Ltd", "宏达建筑工程有限公司"]
    with dup_app.app_context():
        session = dup_app.appbuilder.session
        got = [session.scalar(select(_block(literal(n)))) for n in names]
        session.rollback()
    assert got == [block_key(n) for n in names]
    assert got[:6] == ["宏达", "宏达", "深圳", "龙江", "华泰", "草原"] and got[6:8] == ["周口", "张伟"]


def test_api_empty_values_never_match(clean):
    app = clean
    admin = headers(app)
    assert create(app, admin, name="One").status_code == 201
    assert create(app, admin, name="Two").status_code == 201  # both without phone or email


def test_api_edit_checks_changed_fields_only(clean):
    app = clean
    admin = headers(app)
    a = create(app, admin, name="Alpha", phone="13800138001").json["id"]
    b = create(app, admin, allow=True, name="Beta", phone="13800138001").json["id"]  # a known duplicate
    client = app.test_client()
    assert client.put(f"/api/v1/client/{b}", json={"notes": "kept"}, headers=admin).status_code == 200
    c = create(app, admin, name="Gamma", phone="13800138002").json["id"]
    moved = client.put(f"/api/v1/client/{c}", json={"phone": "13800138001"}, headers=admin)
    assert moved.status_code == 409
    assert {d["id"] for d in moved.json["duplicates"]} == {a, b}  # never itself
    assert client.put(f"/api/v1/client/{c}?allow_duplicate=1", json={"phone": "13800138001"},
                      headers=admin).status_code == 200


def test_candidates_are_only_records_the_user_may_read(clean):
    app = clean
    rep1, rep2 = headers(app, "rep1"), headers(app, "rep2")
    mine = create(app, rep1, name="Rep One Client", phone="13900139000")
    assert mine.status_code == 201
    # rep2 cannot read rep1's record: no candidate, no hint
    theirs = create(app, rep2, name="Rep Two Client", phone="13900139000")
    assert theirs.status_code == 201, theirs.json
    again = create(app, rep1, name="Rep One Again", phone="13900139000")
    assert again.status_code == 409
    assert [d["id"] for d in again.json["duplicates"]] == [mine.json["id"]]


def test_save_anyway_can_be_limited_to_roles(clean):
    app = clean
    rep1, lead = headers(app, "rep1"), headers(app, "lead")
    assert create(app, rep1, name="Mail One", email="x@example.com").status_code == 201
    refused = create(app, rep1, allow=True, name="Mail Two", email="x@example.com")
    assert refused.status_code == 409 and "may not" in refused.json["message"]
    assert create(app, lead, allow=True, name="Mail Three", email="x@example.com").status_code == 201


def test_rules_over_masked_fields_are_skipped_for_that_viewer(clean):
    app = clean
    admin = headers(app)
    create(app, admin, name="Masked", phone="13700137000")
    with app.test_request_context():
        from app.data.duplicates import DuplicateSearch
        from app.rules.access import viewer_for
        sm = app.appbuilder.sm
        search = DuplicateSearch(portal_of(app).spec.entity("Client"), portal_of(app).models, app.appbuilder.session,
                                 viewer_for(sm.find_user(username="viewer")))
        assert [r.id for r in search.rules] == ["name~90=city", "email"]
        assert search.candidates({"phone": "+8613700137000", "name": "x"}) == []
        app.appbuilder.session.rollback()


# -- forms --------------------------------------------------------------------------------------------------
def test_form_shows_candidates_then_saves_anyway(clean):
    app = clean
    first = create(app, headers(app), name="Form Original", phone="13600136000").json["id"]
    client = login(app.test_client())
    data = {"name": "Form <Copy>", "phone": "136 0013 6000"}
    shown = client.post("/client/add", data=data)
    assert shown.status_code == 200
    page = shown.get_data(as_text=True)
    assert 'id="duplicate-warning"' in page and f'href="/client/show/{first}"' in page
    assert "Form Original" in page and 'id="duplicate-save-anyway"' in page
    assert "Form &lt;Copy&gt;" in page  # the typed values come back, escaped
    assert count(app) == 1
    saved = client.post("/client/add", data={**data, "allow_duplicate": "1"})
    assert saved.status_code == 302 and count(app) == 2


def test_form_without_override_right_offers_no_save_anyway(clean):
    app = clean
    create(app, headers(app, "rep1"), name="Mailer", email="m@example.com")
    client = login(app.test_client(), "rep1", PASSWORD)
    page = client.post("/client/add", data={"name": "Mailer 2", "email": "m@example.com"}).get_data(as_text=True)
    assert 'id="duplicate-warning"' in page and 'id="duplicate-save-anyway"' not in page
    forced = client.post("/client/add", data={"name": "Mailer 2", "email": "m@example.com", "allow_duplicate": "1"})
    assert forced.status_code == 200 and count(app) == 1


def test_edit_form_warns_on_a_changed_rule_field_only(clean):
    app = clean
    admin = headers(app)
    first = create(app, admin, name="Edit Original", phone="13100131000").json["id"]
    other = create(app, admin, name="Edit Other", phone="13100131001").json["id"]
    client = login(app.test_client())
    form = client.get(f"/client/edit/{other}").get_data(as_text=True)
    import re
    version = re.search(r'name="row_version"[^>]*value="(\d+)"|value="(\d+)"[^>]*name="row_version"', form)
    row_version = next(g for g in version.groups() if g)
    data = {"name": "Edit Other", "phone": "13100131000", "row_version": row_version}
    page = client.post(f"/client/edit/{other}", data=data)
    assert page.status_code == 200 and f'href="/client/show/{first}"' in page.get_data(as_text=True)
    assert client.post(f"/client/edit/{other}", data={**data, "phone": "13100131001", "notes": "n"}).status_code == 302


# -- imports ------------------------------------------------------------------------------------------------
def test_import_flags_rows_against_the_file_and_the_table(clean):
    app = clean
    admin = headers(app)
    stored = create(app, admin, name="Stored Co", phone="13500135000", city="Hangzhou").json["id"]
    rows = [["name", "phone", "city"],
            ["Fresh One", "13500135001", "Hangzhou"],
            ["Fresh Two", "+86 135 0013 5001", "Hangzhou"],  # row 3 = row 2 by phone
            ["Stored Co.", "", "Hangzhou"],                  # row 4 ~ the stored record by name
            ["Unrelated", "13500135009", ""]]
    client = app.test_client()
    report = post_csv(client, admin, "/api/v1/client/import", rows, dry_run="true").json
    assert report["rows"] == 4 and not report["errors"]
    flags = {(d["row"], d["rule"]): d for d in report["duplicates"]}
    assert flags[(3, "phone")]["other_row"] == 2
    assert flags[(4, "name~90=city")]["id"] == stored and flags[(4, "name~90=city")]["title"] == "Stored Co"
    assert report["duplicates_count"] == 2
    assert count(app) == 1
    # the page preview shows them too
    page = login(app.test_client()).post("/client/import", content_type="multipart/form-data", data={
        "file": (__import__("io").BytesIO("\n".join(",".join(r) for r in rows).encode()), "rows.csv"),
        "action": "preview"}).get_data(as_text=True)
    assert 'id="import-duplicates"' in page and f'href="show/{stored}"' in page
    # a rule whose save_anyway the importer lacks refuses the row
    rep1 = headers(app, "rep1")
    create(app, rep1, name="Mail Holder", email="held@example.com")
    refused = post_csv(client, rep1, "/api/v1/client/import", [["name", "email"], ["Other", "held@example.com"]])
    assert refused.status_code == 422 and refused.json["errors"][0]["row"] == 2


# -- the duplicates page ------------------------------------------------------------------------------------
def test_duplicates_page_lists_readable_pairs_with_merge_links(clean, monkeypatch):
    app = clean
    admin, rep1, rep2 = headers(app), headers(app, "rep1"), headers(app, "rep2")
    a = create(app, rep1, name="Pair A", phone="13300133000").json["id"]
    b = create(app, rep1, allow=True, name="Pair B", phone="13300133000").json["id"]
    c = create(app, rep2, name="Pair C", phone="13300133000").json["id"]
    d = create(app, admin, name="Fuzzy Trading Co", city="Wuhan").json["id"]
    e = create(app, admin, allow=True, name="Fuzzy Trading Co.", city="Wuhan").json["id"]
    create(app, admin, name="Fuzzy Trading Co")  # no city: paired with nobody
    create(app, admin, name="Fuzzy Trading Co")

    def pairs(client, url="/client/duplicates/"):
        return listed_pairs(client, url)

    html, found = pairs(login(app.test_client()))
    assert found == {(a, b), (a, c), (b, c), (d, e)}
    assert 'id="duplicates-link"' in login(app.test_client()).get("/client/list/").get_data(as_text=True)
    assert f'href="/client/merge/{a}?loser={b}"' in html
    _, found = pairs(login(app.test_client(), "rep1", PASSWORD))
    assert found == {(a, b)}  # only pairs of records rep1 reads
    html, found = pairs(login(app.test_client(), "viewer", PASSWORD))
    assert found == {(d, e)} and "/merge/" not in html  # the phone rule reads a masked field; no update right
    # paged by a cursor
    monkeypatch.setattr(duplicates_pages, "PAGE_SIZE", 2)
    admin_client = login(app.test_client())
    html, first_page = pairs(admin_client)
    assert len(first_page) == 2 and 'id="duplicates-next"' in html
    import re
    next_url = re.search(r'id="duplicates-next" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    _, second_page = pairs(admin_client, next_url)
    assert first_page | second_page == {(a, b), (a, c), (b, c), (d, e)} and not first_page & second_page
    assert admin_client.get("/client/duplicates/?after=x-1").status_code == 400


def test_duplicate_indexes_exist(dup_app):
    from sqlalchemy import inspect
    with dup_app.app_context():
        engine = dup_app.appbuilder.session.get_bind()
        if engine.dialect.name == "sqlite":
            from sqlalchemy import text
            with engine.connect() as conn:
                names = {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type='index'"))}
        else:
            names = {i["name"] for i in inspect(engine).get_indexes("client")}
    assert {"ix_client_dup1", "ix_client_dup2p", "ix_client_dup3"} <= names  # p: the fuzzy rule's place-skipping key


KEPT_APART_SCHEMA = """\
    version: 1
    module: apart
    entities:
      Account:
        title: code
        unique_together: [[region, number]]
        fields:
          code: {type: string, length: 20, unique: true}
          region: {type: string, length: 20}
          number: {type: integer}
          phone: {type: phone}
        duplicates:
          - {match: [code]}
          - {match: [region, number]}
          - {match: [phone]}
    """


def test_duplicates_page_skips_exact_rules_the_database_keeps_apart(tmp_path_factory):
    """An exact rule over a unique field or a whole unique_together set can pair nothing: the page does not read
    the table for it (the CRM's unique phone rule read 1M rows to find nothing: 1.4 s a page). Other rules still
    pair."""
    from sqlalchemy import event
    folder = tmp_path_factory.mktemp("apart-schema")
    (folder / "apart.yaml").write_text(textwrap.dedent(KEPT_APART_SCHEMA), encoding="utf-8")
    app = make_app(tmp_path_factory, "apart", schema_dir=folder)
    admin, client = headers(app), app.test_client()
    ids = [client.post("/api/v1/account/?allow_duplicate=1", json=body, headers=admin).json["id"] for body in (
        {"code": "A-1", "region": "north", "number": 1, "phone": "13300133000"},
        {"code": "A-2", "region": "north", "number": 2, "phone": "13300133000"},
        {"code": "A-3", "region": "south", "number": 1})]
    with app.app_context():
        engine = app.appbuilder.session.get_bind()
    self_joins = []

    def note(conn, cursor, statement, parameters, context, executemany):
        if statement.count("account AS ") >= 2:
            self_joins.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        _, found = listed_pairs(login(app.test_client()), "/account/duplicates/")
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert found == {tuple(ids[:2])}
    assert len(self_joins) == 1 and "phone" in self_joins[0], self_joins


def test_a_field_made_unique_after_its_duplicates_were_stored_still_lists_them(tmp_path_factory):
    """`unique: true` added to a field of an existing table does not create its index (start-up adds new columns
    only), so the duplicates page must not take the YAML's word that the rule can pair nothing (review)."""
    import datetime as dt
    from sqlalchemy import insert
    from conftest import database_url
    before = KEPT_APART_SCHEMA.replace("unique: true", "").replace("        unique_together: [[region, number]]\n", "")
    url = database_url(tmp_path_factory, "late_unique")
    folders = []
    for n, text_ in enumerate((before, KEPT_APART_SCHEMA)):
        folders.append(tmp_path_factory.mktemp(f"late-unique-{n}"))
        (folders[-1] / "apart.yaml").write_text(textwrap.dedent(text_), encoding="utf-8")
    first = make_app(tmp_path_factory, "late_unique_1", schema_dir=folders[0], SQLALCHEMY_DATABASE_URI=url)
    now = dt.datetime.now()
    with first.app_context():
        table = portal_of(first).models["Account"].__table__
        with first.appbuilder.session.get_bind().begin() as conn:
            ids = conn.execute(insert(table).returning(table.c.id), [
                {"code": "X-1", "region": "north", "number": 1, "created_on": now, "changed_on": now, "row_version": 1}
                for _ in range(2)]).scalars().all()
    later = make_app(tmp_path_factory, "late_unique_2", schema_dir=folders[1], SQLALCHEMY_DATABASE_URI=url)
    assert listed_pairs(login(later.test_client()), "/account/duplicates/")[1] == {tuple(sorted(ids))}
