"""What the adversarial test modules (tests/test_attack_issue*.py) share: users per YAML role, a caller that
sends each request with a user's JWT, and the module-scoped `admin` / `callers` fixtures over the module's `app`."""
from __future__ import annotations

import pytest

from conftest import jwt_headers

PASSWORD = "Attack-pass-1"  # every test user's


def add_users(app, users: dict[str, str], password: str = PASSWORD) -> None:
    """One user per name -> YAML role."""
    with app.app_context():
        sm = app.appbuilder.sm
        for name, role in users.items():
            sm.add_user(name, name, "Test", f"{name}@example.com", [sm.find_role(role)], password)
        app.appbuilder.session.commit()


class AttackCaller:
    """`caller.get(url, ...)`, `.post`, ...: the test client with the user's JWT (Admin's without a username)."""

    password = PASSWORD

    def __init__(self, app, username=None):
        self.client = app.test_client()
        self.headers = jwt_headers(self.client, username, self.password) if username else jwt_headers(self.client)

    def __getattr__(self, method):
        return lambda url, **kw: getattr(self.client, method)(url, headers={**self.headers, **kw.pop("headers", {})}, **kw)


def user_id(app, username):
    with app.app_context():
        return app.appbuilder.sm.find_user(username=username).id


def caller_fixtures(users: dict[str, str]):
    """(admin, callers): module-scoped fixtures on the module's `app` fixture — Admin's caller, and one caller per
    test user. A module binds them by name: `admin, callers = caller_fixtures(USERS)`."""
    @pytest.fixture(scope="module")
    def admin(app):
        return AttackCaller(app)

    @pytest.fixture(scope="module")
    def callers(app):
        return {name: AttackCaller(app, name) for name in users}

    return admin, callers
