"""Contract: the checker's reserved names cover everything a booted portal registers itself.

An entity named like a Flask-AppBuilder or portal route, endpoint, permission view-menu or model
class would be shadowed by it or break start-up. This boots the shipped portal, collects those
names, and fails when app/schema/reserved.py does not cover one (e.g. after a FAB upgrade).
"""
from __future__ import annotations

import pytest
from flask_appbuilder import Model
from flask_appbuilder.security.sqla.models import ViewMenu
from sqlalchemy import select

from app.schema import load_portal
from app.schema.reserved import RESERVED_NAMES, entity_name_forms
from app.portal import portal_of

def _spec_names(spec) -> set[str]:
    names = {e.name for e in spec.entities} | {m.name for m in spec.modules}
    names |= {f"{e.name}View" for e in spec.entities} | {f"{e.name}Api" for e in spec.entities}
    names |= {e.snake for e in spec.entities}
    return names


def _own_names(app) -> dict[str, str]:
    """name -> where it was found, for every route segment, endpoint, view-menu and model class."""
    spec = portal_of(app).spec
    generated = _spec_names(spec)
    found: dict[str, str] = {}

    def add(name: str, where: str) -> None:
        if name and "<" not in name and name not in generated and not name.startswith(("Report:", "Dashboard:", "Dashboards:", "View:")):
            found.setdefault(name, where)

    for rule in app.url_map.iter_rules():
        parts = [p for p in rule.rule.split("/") if p]
        if parts:
            add(parts[0], f"route {rule.rule}")
        if parts[:1] == ["api"] and len(parts) > 2:
            add(parts[2], f"API route {rule.rule}")
        add(rule.endpoint.split(".")[0], f"endpoint {rule.endpoint}")
    for name in app.blueprints:
        add(name, "blueprint")
    with app.app_context():
        for name in app.appbuilder.session.scalars(select(ViewMenu.name)):
            add(name, "permission view-menu")
    for mapper in Model.registry.mappers:  # entity models of every portal built in this process are skipped
        if not mapper.class_.__module__.startswith("portal_models_"):
            add(mapper.class_.__name__, "model class")
    return found


def test_reserved_names_cover_every_name_the_portal_registers(app):
    found = _own_names(app)
    assert len(found) > 30  # routes, endpoints, view-menus and models were really collected
    missing = {name: where for name, where in found.items() if name.lower() not in RESERVED_NAMES}
    assert missing == {}, f"add these to RESERVED_NAMES in app/schema/reserved.py: {missing}"


@pytest.mark.parametrize("name", [
    "Menu", "Security", "Users", "User", "Roles", "Role", "Login", "Logout", "Register", "Permissions", "ViewMenus",
    "Reports", "Dashboard", "Swagger", "Lang", "Static", "Api", "OpenApi", "Open", "ResetMyPassword", "Userinfo",
    "UserInfo", "Locale", "Healthz", "Readyz", "Metrics", "MENU", "Group", "ApiKey", "PermissionView", "Util",
])
def test_checker_refuses_reserved_entity_names(tmp_path, name):
    (tmp_path / "m.yaml").write_text(f"version: 1\nmodule: m\nentities:\n  {name}: {{fields: {{x: string}}}}\n")
    spec, problems = load_portal(tmp_path)
    assert spec is None and [(p.line, p.code) for p in problems] == [(4, "E901")], problems


def test_entity_names_are_compared_in_every_generated_form():
    assert entity_name_forms("FollowUp") == {"followup", "follow_up", "followupview", "followupapi"}
