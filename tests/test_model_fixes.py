"""Model fixes: long indexed text, unique link/user fields, many fields to their own entity, old databases."""
from __future__ import annotations

import io
import secrets
import shutil

import pytest
from conftest import ROOT, database_url, jwt_headers, login, make_app
from sqlalchemy import create_engine, text
from test_dataio import csv_bytes, read_csv

PEOPLE = """version: 1
module: people
label: {en: People, zh: 人员}
entities:
  Desk:
    title: code
    fields:
      code: {type: string, length: 10, required: true, unique: true}
  Person:
    label: {en: Person, zh: 人}
    title: name
    fields:
      name: {type: string, length: 40, required: true, unique: true}
      desk: {type: link, to: Desk, unique: true}
      login: {type: user, unique: true}
      mentors: {type: many, to: Person, label: {en: Mentors, zh: 导师}}
      bio: {type: text, index: true}
"""


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    schema_dir = tmp_path_factory.mktemp("people_schemas")
    (schema_dir / "people.yaml").write_text(PEOPLE, encoding="utf-8")
    app = make_app(tmp_path_factory, "people", schema_dir=schema_dir)
    client = app.test_client()
    return app, client, jwt_headers(client)


def _import(client, headers, entity, rows, **form):
    return client.post(f"/api/v1/{entity}/import", data={"file": (io.BytesIO(csv_bytes(rows)), "p.csv"), **form},
                       headers=headers, content_type="multipart/form-data")


def test_many_field_to_its_own_entity(people):
    app, client, headers = people
    ada = client.post("/api/v1/person/", json={"name": "Ada"}, headers=headers).json["id"]
    bob = client.post("/api/v1/person/", json={"name": "Bob", "mentors": [ada]}, headers=headers)
    assert bob.status_code == 201, bob.json
    assert bob.json["result"]["mentors"] == [{"id": ada}]
    bob = bob.json["id"]
    assert client.get(f"/api/v1/person/{ada}", headers=headers).json["result"]["mentors"] == []  # one direction only
    page = login(app.test_client()).get(f"/person/show/{bob}")
    assert page.status_code == 200 and "Ada" in page.text

    exported = read_csv(client.get("/api/v1/person/export?format=csv", headers=headers).data)
    column = exported[0].index("Mentors")
    by_name = {row[1]: row[column] for row in exported[1:]}
    assert by_name["Bob"] == "Ada" and by_name["Ada"] == ""

    done = _import(client, headers, "person", [["Name", "Mentors"], ["Cy", "Ada, Bob"]])
    assert done.status_code == 200 and done.json["created"] == 1, done.json
    cy = client.get("/api/v1/person/?q=(filters:!((col:name,opr:eq,value:Cy)))", headers=headers).json["result"][0]
    assert sorted(m["id"] for m in cy["mentors"]) == sorted([ada, bob])
    again = _import(client, headers, "person", [["Name", "Mentors"], ["Ada", "Cy"]], key="name")
    assert again.status_code == 200 and again.json["updated"] == 1, again.json
    assert client.get(f"/api/v1/person/{ada}", headers=headers).json["result"]["mentors"] == [{"id": cy["id"]}]
    # deleting a mentor removes the link rows on both sides, not the other person
    assert client.delete(f"/api/v1/person/{cy['id']}", headers=headers).status_code == 200
    assert client.get(f"/api/v1/person/{ada}", headers=headers).json["result"]["mentors"] == []


def test_unique_link_and_user_fields_are_enforced(people):
    app, client, headers = people
    desk = client.post("/api/v1/desk/", json={"code": "D1"}, headers=headers).json["id"]
    with app.app_context():
        admin = app.appbuilder.sm.find_user(username="admin").id
    first = client.post("/api/v1/person/", json={"name": "Uno", "desk": desk, "login": admin}, headers=headers)
    assert first.status_code == 201, first.json
    second = client.post("/api/v1/person/", json={"name": "Dos", "desk": desk, "login": admin}, headers=headers)
    assert second.status_code == 422
    assert second.json["message"] == {"desk": ["Already exists."], "login": ["Already exists."]}
    # the record keeps its own value on an edit
    assert client.put(f"/api/v1/person/{first.json['id']}", json={"desk": desk}, headers=headers).status_code == 200
    refused = _import(client, headers, "person", [["Name", "desk"], ["Tres", "D1"]])
    assert refused.status_code == 422, refused.json
    twice = _import(client, headers, "person", [["Name", "desk"], ["Cuatro", ""], ["Cinco", ""]])
    assert twice.status_code == 200  # empty values do not clash
    other = client.post("/api/v1/desk/", json={"code": "D2"}, headers=headers).json["id"]
    repeated = _import(client, headers, "person", [["Name", "desk"], ["Seis", "D2"], ["Siete", "D2"]])
    assert repeated.status_code == 422, repeated.json
    assert client.get(f"/api/v1/desk/{other}", headers=headers).status_code == 200
    # and the database itself refuses a second row (a unique index on the foreign key)
    with app.app_context():
        session = app.appbuilder.session
        with pytest.raises(Exception, match="(?i)unique"):
            session.execute(text("INSERT INTO person (name, desk_id, row_version, created_on, changed_on) "
                                 "VALUES ('Ocho', :d, 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"), {"d": desk})
            session.flush()
        session.rollback()


def test_long_values_in_indexed_text_fields(people, api):
    app, client, headers = people
    long_bio = "长文本 " * 3000  # ~21 KB of UTF-8: far beyond one B-tree entry on PostgreSQL
    person = client.post("/api/v1/person/", json={"name": "Long", "bio": long_bio}, headers=headers)
    assert person.status_code == 201, person.json
    ticket = api.post("/api/v1/ticket/", json={"subject": "Long note", "customer": api.post(
        "/api/v1/customer/", json={"name": "Long note Co"}).json["id"]})
    assert ticket.status_code == 201, ticket.json
    body = secrets.token_hex(5000)  # does not compress below PostgreSQL's ~2.7 KB index entry limit
    note = api.post("/api/v1/ticket_note/", json={"ticket": ticket.json["id"], "body": body})
    assert note.status_code == 201, note.json
    assert api.get(f"/api/v1/ticket_note/{note.json['id']}").json["result"]["body"] == body


def test_database_from_before_row_version_and_prefix_indexes(tmp_path, tmp_path_factory):
    """A database made by the previous release: no row_version column, a plain index on a text title."""
    schema_dir = tmp_path / "schemas"
    shutil.copytree(ROOT / "schemas", schema_dir)
    url = database_url(tmp_path_factory, "oldrows")
    make_app(tmp_path_factory, "oldrows", schema_dir=schema_dir, SQLALCHEMY_DATABASE_URI=url)
    engine = create_engine(url)
    with engine.begin() as conn:  # turn it back into the old layout, with an old row in it
        conn.execute(text("DROP INDEX ix_ticket_note_body"))
        conn.execute(text("CREATE INDEX ix_ticket_note_body ON ticket_note (body)"))
        conn.execute(text("ALTER TABLE customer DROP COLUMN row_version"))
        conn.execute(text("INSERT INTO customer (name, kind, level, created_on, changed_on) "
                          "VALUES ('Old Co', 'company', 'normal', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
    engine.dispose()

    app = make_app(tmp_path_factory, "oldrows", schema_dir=schema_dir, SQLALCHEMY_DATABASE_URI=url)
    client = app.test_client()
    headers = jwt_headers(client)
    old = client.get("/api/v1/customer/?q=(filters:!((col:name,opr:eq,value:'Old Co')))", headers=headers).json["result"][0]
    assert old["row_version"] == 1
    saved = client.put(f"/api/v1/customer/{old['id']}", json={"address": "new"}, headers={**headers, "If-Match": '"1"'})
    assert saved.status_code == 200 and saved.headers["ETag"] == '"2"'
    stale = client.put(f"/api/v1/customer/{old['id']}", json={"address": "x"}, headers={**headers, "If-Match": '"1"'})
    assert stale.status_code == 409
    customer = client.post("/api/v1/customer/", json={"name": "Note Co"}, headers=headers).json["id"]
    ticket = client.post("/api/v1/ticket/", json={"subject": "s", "customer": customer}, headers=headers).json["id"]
    note = client.post("/api/v1/ticket_note/", json={"ticket": ticket, "body": secrets.token_hex(5000)}, headers=headers)
    assert note.status_code == 201, note.json  # the old whole-text index was replaced on PostgreSQL
