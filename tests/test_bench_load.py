"""The load benchmark's seed and anchor (bench/load_seed.py, bench/load_anchor.py) on a real PostgreSQL.

A tiny seed in a database of its own: the rows the locust users ask for exist, the unique constraints
hold, a foreman's row scope covers the ids the benchmark gives him, the marker (seed version, sizes, digest of schemas/*.yaml) makes a second call
skip seeding, and the anchor page answers over HTTP. (The full gunicorn + locust run is `make bench-load`.)
"""
from __future__ import annotations

import os
import uuid

import psycopg2
import pytest

from app import create_app
from bench.load_seed import FOREMAN_PROJECTS, PASSWORD, Sizes, database_url, ensure_seeded

BASE = os.environ.get("PORTAL_TEST_DATABASE_URL")
pytestmark = pytest.mark.skipif(not BASE, reason="the load seed uses COPY: PostgreSQL only")
SIZES = Sizes(entries=3_000, workers=40, customers=300, projects=10, contacts=30, follow_ups=30, tickets=30,
              ticket_notes=30)


@pytest.fixture(scope="module")
def seeded():
    name = f"portal_load_t_{uuid.uuid4().hex[:8]}"
    info = ensure_seeded(BASE, name, SIZES, log=lambda message: None)
    yield name, info
    admin = psycopg2.connect(database_url(BASE, "postgres").replace("+psycopg2", ""))
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def _scalar(name: str, sql: str):
    connection = psycopg2.connect(database_url(BASE, name).replace("+psycopg2", ""))
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchone()[0]
    finally:
        connection.close()


def test_seed_fills_every_table_within_the_constraints(seeded):
    name, info = seeded
    assert _scalar(name, "SELECT count(*) FROM labour_entry") == SIZES.entries
    assert _scalar(name, "SELECT count(*) FROM customer") == SIZES.customers
    assert _scalar(name, "SELECT count(*) FROM worker") == SIZES.workers
    assert _scalar(name, "SELECT count(DISTINCT (work_date, worker_id, project_id)) FROM labour_entry") == SIZES.entries
    assert _scalar(name, "SELECT max(project_id) FROM labour_entry") == SIZES.projects
    # the id sequences continue after the copied ids, so the app can add rows
    assert _scalar(name, "SELECT nextval(pg_get_serial_sequence('labour_entry', 'id'))") == SIZES.entries + 1
    assert info["foreman_entries"] and _scalar(
        name, f"SELECT count(*) FROM labour_entry WHERE id IN ({','.join(map(str, info['foreman_entries']))}) "
              f"AND project_id > {FOREMAN_PROJECTS}") == 0


def test_second_call_finds_the_marker_and_keeps_the_data(seeded):
    name, info = seeded
    again = ensure_seeded(BASE, name, SIZES, log=lambda message: None)
    assert again["seconds"] == info["seconds"]  # the stored marker, not a new seed
    assert _scalar(name, "SELECT count(*) FROM labour_entry") == SIZES.entries


def test_seeded_users_log_in_and_see_their_scope(seeded):
    name, info = seeded
    app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False, "SQLALCHEMY_DATABASE_URI": database_url(BASE, name),
                      "SECRET_KEY": "test-secret-key-that-is-long-enough-for-hs256"})
    client = app.test_client()
    token = client.post("/api/v1/security/login",
                        json={"username": "load_foreman", "password": PASSWORD, "provider": "db"}).json["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    own = client.get(f"/api/v1/labour_entry/{info['foreman_entries'][0]}", headers=headers)
    assert own.status_code == 200
    assert own.json["result"]["project"]["id"] <= FOREMAN_PROJECTS
    other = _scalar(name, f"SELECT min(id) FROM labour_entry WHERE project_id > {FOREMAN_PROJECTS}")
    assert client.get(f"/api/v1/labour_entry/{other}", headers=headers).status_code == 404
    listed = client.get("/api/v1/labour_entry/", headers=headers).json
    assert listed["count"] == _scalar(name, f"SELECT count(*) FROM labour_entry WHERE project_id <= {FOREMAN_PROJECTS}")
    assert client.post("/login/", data={"username": "load_admin", "password": PASSWORD}).status_code == 302
    assert client.get("/labour_entry/list/").status_code == 200
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


def test_anchor_page_lists_twenty_entries(seeded, monkeypatch):
    name, _ = seeded
    monkeypatch.setenv("DATABASE_URL", database_url(BASE, name))
    from bench import load_anchor

    monkeypatch.setattr(load_anchor, "_engine", None)
    page = load_anchor.app.test_client().get("/entries")
    assert page.status_code == 200
    assert page.text.count("<tr>") == 21  # header + one page of rows
    load_anchor.engine().dispose()
