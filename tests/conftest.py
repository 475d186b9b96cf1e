"""Shared fixtures: a portal app on SQLite (default) or the PostgreSQL in PORTAL_TEST_DATABASE_URL."""
from __future__ import annotations

import csv
import io
import os
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, text

from app import create_app
from services import RedisServer

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "tests" / "fixtures" / "assets"  # a module that exists only in the tests, every field type
ADMIN = ("admin", "Admin-pass-1")
if "PORTAL_TEST_DATABASE_URL" in os.environ and not os.environ["PORTAL_TEST_DATABASE_URL"].strip():
    # `PORTAL_TEST_DATABASE_URL=$(bash .ci/postgres.sh) pytest` with a PostgreSQL that did not start: never let the
    # PostgreSQL run quietly become a second SQLite run
    raise pytest.UsageError("PORTAL_TEST_DATABASE_URL is set but empty (did PostgreSQL start?): not running on SQLite "
                            "instead")


def database_url(tmp_path_factory, name: str) -> str:
    """A fresh, empty database for one app: a SQLite file, or a new schema on the test PostgreSQL."""
    base = os.environ.get("PORTAL_TEST_DATABASE_URL")
    if not base:
        return f"sqlite:///{tmp_path_factory.mktemp(name) / 'portal.db'}"
    schema = f"t_{name}_{uuid.uuid4().hex[:8]}"
    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}options=-csearch_path%3D{schema}"


def make_app(tmp_path_factory, name: str, schema_dir: Path | str = ROOT / "schemas", **config):
    settings = {
        "TESTING": True,
        "WTF_CSRF_ENABLED": False,
        "SECRET_KEY": "test-secret-key-that-is-long-enough-for-hs256",
        "SQLALCHEMY_DATABASE_URI": database_url(tmp_path_factory, name),
        "PORTAL_SCHEMA_DIR": str(schema_dir),
    }
    settings.update(config)
    app = create_app(settings)
    with app.app_context():
        sm = app.appbuilder.sm
        if not sm.find_user(username=ADMIN[0]):
            sm.add_user(ADMIN[0], "Ada", "Admin", "admin@example.com", sm.find_role("Admin"), ADMIN[1])
    return app


@pytest.fixture(scope="session")
def app(tmp_path_factory):
    return make_app(tmp_path_factory, "main")


def login(client, username=ADMIN[0], password=ADMIN[1]):
    response = client.post("/login/", data={"username": username, "password": password})
    assert response.status_code == 302, response.data[:500]
    return client


def jwt_headers(client, username=ADMIN[0], password=ADMIN[1]) -> dict:
    response = client.post("/api/v1/security/login",
                           json={"username": username, "password": password, "provider": "db"})
    assert response.status_code == 200, response.json
    return {"Authorization": f"Bearer {response.json['access_token']}"}


def post_csv(client, headers, url: str, rows, name: str = "rows.csv", **form):
    """POST rows as a CSV upload (the import API: `url` like /api/v1/job/import)."""
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return client.post(url, headers=headers, content_type="multipart/form-data",
                       data={"file": (io.BytesIO(buffer.getvalue().encode()), name), **form})


@pytest.fixture()
def admin_client(app):
    # no `with`: a preserved request context would be shared with other clients' requests
    return login(app.test_client())


@pytest.fixture()
def api(app):
    """A test client plus admin JWT headers."""
    client = app.test_client()  # no `with`: it may be used beside admin_client
    jwt = jwt_headers(client)

    class Api:  # extra headers (e.g. If-Match) are added to the JWT one
        def get(self, url, headers=None, **kw):
            return client.get(url, headers={**jwt, **(headers or {})}, **kw)

        def post(self, url, json=None, headers=None, **kw):
            return client.post(url, json=json, headers={**jwt, **(headers or {})}, **kw)

        def put(self, url, json=None, headers=None, **kw):
            return client.put(url, json=json, headers={**jwt, **(headers or {})}, **kw)

        def delete(self, url, headers=None, **kw):
            return client.delete(url, headers={**jwt, **(headers or {})}, **kw)

    return Api()


@pytest.fixture()
def redis_server(tmp_path):
    """A real redis-server of our own (Debian package; .ci/system-deps.sh installs it)."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@contextmanager
def sql_statements(app):
    """Every SQL statement the app's engine runs inside the block (a list, filled as they run)."""
    with app.app_context():
        engine = app.appbuilder.session.get_bind()
    seen = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)
