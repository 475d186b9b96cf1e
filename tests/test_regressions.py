"""Regression tests from the review of the architecture refactor: forced row-scope values seen by every rule step,
a non-text `to:` reported as E502, page exports never sorted by a field the viewer may not sort on."""
from __future__ import annotations

import csv
import io
import textwrap

import pytest
from conftest import jwt_headers, login, make_app

PASSWORD = "Role-pass-1"


def _user(app, username, *roles):
    with app.app_context():
        sm = app.appbuilder.sm
        user = sm.find_user(username=username)
        if user is None:
            user = sm.add_user(username, username, "Test", f"{username}@example.com",
                               [sm.find_role(r) for r in roles], PASSWORD)
        return user.id


# -- 1. forced row-scope values are applied after the rule checks ------------------------------------

SCOPED_UNIQUE = """\
    version: 1
    module: pads
    label: {en: Pads}
    entities:
      Pad:
        label: {en: Pad}
        title: name
        fields:
          owner: {type: user, default: current_user, label: {en: Owner}}
          name: {type: string, length: 40, required: true, label: {en: Name}}
        list: [name, owner]
        unique_together: [[owner, name]]
    roles:
      Writer:
        can: {Pad: [read, create, update]}
        rows: {Pad: {owner: $user}}
    """


@pytest.fixture(scope="module")
def pads_app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pads-schema")
    (folder / "pads.yaml").write_text(textwrap.dedent(SCOPED_UNIQUE), encoding="utf-8")
    return make_app(tmp_path_factory, "pads", schema_dir=folder)


def test_api_unique_together_on_a_forced_scope_field_is_a_field_error(pads_app):
    """83c8159: RecordWriter.parse put the forced values (owner = me) into the values before `conflicts`, so a
    duplicate was a 422 on the field. Now RowScopeStep adds them in before_write, after UniqueStep checked
    without them: the duplicate reaches the database, whose constraint text is sent back instead."""
    _user(pads_app, "pad_writer", "Writer")
    client = pads_app.test_client()
    headers = jwt_headers(client, "pad_writer", PASSWORD)
    first = client.post("/api/v1/pad/", json={"name": "same"}, headers=headers)
    assert first.status_code == 201, first.json
    second = client.post("/api/v1/pad/", json={"name": "same"}, headers=headers)
    assert second.status_code == 422
    assert isinstance(second.json["message"], dict), second.json  # {"owner": ["A record with the same ..."]}
    assert "owner" in second.json["message"]


# -- 2. portal check: a non-text `to:` crashes the field checker ------------------------------------

def test_link_to_that_is_not_a_name_is_E502_not_an_internal_error(tmp_path):
    """app/schema/fields.py check_field binds the local name `kind` to the FieldType, shadowing values.kind;
    the E502 message then calls the FieldType: TypeError -> E099 'internal checker error', every other problem lost."""
    from app.schema import load_portal

    (tmp_path / "x.yaml").write_text(textwrap.dedent("""\
        version: 1
        module: x
        label: {en: X}
        entities:
          A:
            label: {en: A}
            fields:
              name: {type: string}
              other: {type: link, to: 5}
        """), encoding="utf-8")
    spec, problems = load_portal(tmp_path)
    codes = [p.code for p in problems]
    assert "E502" in codes and "E099" not in codes, [str(p) for p in problems]


# -- 3. page export sorts by any column, hidden ones included (ordering leak) -----------------------

@pytest.fixture(scope="module")
def crm_app(tmp_path_factory):
    return make_app(tmp_path_factory, "review_crm")


def test_page_export_refuses_to_sort_by_a_hidden_field(crm_app):
    """views list pages sort only by order_columns (paged_pages._list_order), the API refuses others with 400,
    but /<entity>/export/<fmt> passes `_oc_<View>` straight to datamodel.apply_all: Finance (notes hidden
    on Customer) learns the order of the notes. Pre-existing (same code at 83c8159)."""
    client = login(crm_app.test_client())
    admin = jwt_headers(crm_app.test_client())
    for name, notes in (("A-cust", "zzz"), ("B-cust", "aaa"), ("C-cust", "mmm")):
        r = crm_app.test_client().post("/api/v1/customer/", json={"name": name, "notes": notes}, headers=admin)
        assert r.status_code == 201, r.json
    _user(crm_app, "fin_review", "Finance")
    finance = login(crm_app.test_client(), "fin_review", PASSWORD)
    response = finance.get("/customer/export/csv?_oc_CustomerView=notes&_od_CustomerView=asc")
    if response.status_code == 200:
        rows = list(csv.reader(io.StringIO(response.data.decode("utf-8-sig"))))
        names = [r[0] for r in rows[1:] if r and r[0].endswith("-cust")]
        assert names != ["B-cust", "C-cust", "A-cust"], "the export followed the hidden notes"


def test_a_missing_page_is_the_portals_own_page_in_the_users_language(app):
    """Not Werkzeug's bare English 'Not Found': the portal's page, translated; the API keeps its JSON."""
    client = login(app.test_client())
    page = client.get("/no-such-page/")
    assert page.status_code == 404 and "There is no page at this address." in page.text and "bootstrap" in page.text
    client.get("/lang/zh")  # remembered for the user: set back below, other tests share this app's admin
    try:
        page = client.get("/no-such-page/")
        assert page.status_code == 404 and "此地址没有页面。" in page.text and "未找到" in page.text
    finally:
        client.get("/lang/en")
    api = client.get("/api/v1/no_such_entity/")
    assert api.status_code == 404 and api.is_json
