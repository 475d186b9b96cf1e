"""The one record-rules path: a rule step added once is enforced alike by forms, the API and imports."""
from __future__ import annotations

import csv
import io
import textwrap

import pytest
from sqlalchemy import func, select

from app.portal import portal_of
from app.rules.record_rules import RuleStep
from conftest import jwt_headers, login, make_app

NOTES = """\
    version: 1
    module: notes
    label: {en: Notes, zh: 笔记}
    entities:
      Note:
        label: {en: Note, zh: 笔记}
        title: title
        fields:
          title: {type: string, length: 50, required: true, unique: true, label: {en: Title, zh: 标题}}
          locked: {type: boolean, default: false, label: {en: Locked, zh: 锁定}}
          shout: {type: string, length: 50, readonly: true, label: {en: Shout, zh: 大写}}
        list: [title, locked]
        order: [title]
    """
LOCKED = "This record is locked."


class RefuseLocked(RuleStep):
    """Test-only workflow lock: no write may leave (or find) a record with locked = true."""

    def check(self, ctx) -> None:
        if ctx.get("locked"):
            ctx.error("locked", LOCKED)


class Shout(RuleStep):
    """Test-only computed field: `shout` is the title in capitals, on every write."""

    writes = ("shout",)

    def before_write(self, ctx) -> None:
        ctx.values["shout"] = str(ctx.get("title")).upper()


@pytest.fixture(scope="module")
def notes_app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("notes-schema")
    (folder / "notes.yaml").write_text(textwrap.dedent(NOTES), encoding="utf-8")
    app = make_app(tmp_path_factory, "rules", schema_dir=folder)
    portal = portal_of(app)
    portal.add_rule_step(RefuseLocked())  # once, for every path
    portal.add_rule_step(Shout())
    return app


def _notes(app) -> dict:
    """title -> (locked, shout, row_version, changed_on) straight from the table."""
    model = portal_of(app).models["Note"]
    with app.app_context():
        session = app.appbuilder.session
        rows = session.execute(select(model.title, model.locked, model.shout, model.row_version, model.changed_on)).all()
        session.rollback()
    return {r[0]: tuple(r[1:]) for r in rows}


def _store_locked(app, title: str) -> None:
    model = portal_of(app).models["Note"]
    with app.app_context():
        session = app.appbuilder.session
        session.add(model(title=title, locked=True))
        session.commit()


def _note_id(app, title: str) -> int:
    model = portal_of(app).models["Note"]
    with app.app_context():
        session = app.appbuilder.session
        pk = session.scalar(select(model.id).where(model.title == title))
        session.rollback()
        return pk


def _csv(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _import(client, headers, rows, **form):
    return client.post("/api/v1/note/import", headers=headers, content_type="multipart/form-data",
                       data={"file": (io.BytesIO(_csv(rows)), "notes.csv"), **form})


def test_the_rule_steps_run_in_order_with_the_audit_stamp_last(notes_app):
    names = [type(step).__name__ for step in portal_of(notes_app).rule_steps]
    assert names == ["LinkDefaultStep", "WorkflowStep", "LockedParentStep", "SiblingStep", "RequiredStep", "UniqueStep", "RowScopeStep", "AutonumberStep", "LinkFilterStep",
                     "ExpressionStep", "RefuseLocked", "Shout",
                     "AuditStep"]


def test_a_write_the_step_allows_goes_through_every_path_with_its_computed_field(notes_app):
    client = notes_app.test_client()
    headers = jwt_headers(client)
    assert client.post("/api/v1/note/", json={"title": "api note"}, headers=headers).status_code == 201
    browser = login(notes_app.test_client())
    assert browser.post("/note/add", data={"title": "form note"}).status_code == 302
    imported = _import(client, headers, [["title", "locked"], ["file note", "no"]])
    assert imported.status_code == 200 and imported.json["written"], imported.json
    stored = _notes(notes_app)
    assert {t: stored[t][:2] for t in ("api note", "form note", "file note")} == {
        "api note": (False, "API NOTE"), "form note": (False, "FORM NOTE"), "file note": (False, "FILE NOTE")}
    assert all(stored[t][3] is not None for t in ("api note", "form note", "file note"))  # audit stamp


def test_form_api_and_import_all_refuse_a_locked_record_and_change_nothing(notes_app):
    client = notes_app.test_client()
    headers = jwt_headers(client)
    browser = login(notes_app.test_client())
    assert client.post("/api/v1/note/", json={"title": "draft"}, headers=headers).status_code == 201
    draft_id = _note_id(notes_app, "draft")
    before = _notes(notes_app)

    # creating a locked record
    form = browser.post("/note/add", data={"title": "locked by form", "locked": "y"})
    assert form.status_code == 200 and LOCKED in form.get_data(as_text=True)
    api = client.post("/api/v1/note/", json={"title": "locked by api", "locked": True}, headers=headers)
    assert api.status_code == 422 and api.json["message"] == {"locked": [LOCKED]}
    imported = _import(client, headers, [["title", "locked"], ["fine", "no"], ["locked by file", "yes"]])
    assert imported.status_code == 422, imported.json
    assert [(e["row"], e["message"]) for e in imported.json["errors"]] == [(3, LOCKED)]
    assert not imported.json["written"]

    # locking an existing record
    form = browser.post(f"/note/edit/{draft_id}", data={"title": "draft", "locked": "y", "row_version": "1"})
    assert form.status_code == 200 and LOCKED in form.get_data(as_text=True)
    api = client.put(f"/api/v1/note/{draft_id}", json={"locked": True}, headers=headers)
    assert api.status_code == 422 and api.json["message"] == {"locked": [LOCKED]}
    imported = _import(client, headers, [["title", "locked"], ["draft", "yes"]], key="title")
    assert imported.status_code == 422 and imported.json["errors"][0]["message"] == LOCKED

    assert _notes(notes_app) == before


def test_a_stored_locked_record_refuses_edits_that_do_not_touch_the_lock(notes_app):
    """The step reads the stored value when a write leaves the field alone (a workflow state)."""
    _store_locked(notes_app, "frozen")
    frozen_id = _note_id(notes_app, "frozen")
    before = _notes(notes_app)
    client = notes_app.test_client()
    headers = jwt_headers(client)
    browser = login(notes_app.test_client())

    api = client.put(f"/api/v1/note/{frozen_id}", json={"title": "thawed"}, headers=headers)
    assert api.status_code == 422 and api.json["message"] == {"locked": [LOCKED]}
    imported = _import(client, headers, [["title"], ["frozen"]], key="title")
    assert imported.status_code == 422 and imported.json["errors"][0]["message"] == LOCKED
    page = browser.get(f"/note/edit/{frozen_id}").get_data(as_text=True)
    assert 'name="title"' in page
    form = browser.post(f"/note/edit/{frozen_id}", data={"title": "thawed", "locked": "y", "row_version": "1"})
    assert form.status_code == 200 and LOCKED in form.get_data(as_text=True)

    assert _notes(notes_app) == before
    with notes_app.app_context():
        count = notes_app.appbuilder.session.scalar(select(func.count()).select_from(portal_of(notes_app).models["Note"]))
        notes_app.appbuilder.session.rollback()
    assert count == len(before)
