"""`/_info` and `/api/v1/_openapi` show each role only the fields it may see (schemas/*.yaml roles).

Finance (crm): Customer notes and source hidden, phone and email masked.
SiteForeman (labour): Worker bank_account hidden, id_card masked; sees only own projects.
"""
from __future__ import annotations

import pytest
from conftest import jwt_headers, make_app
from test_permissions import PASSWORD, make_user


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    app = make_app(tmp_path_factory, "metadata")
    make_user(app, "meta_finance", "Finance")
    foreman_id = make_user(app, "meta_foreman", "SiteForeman")
    with app.app_context():  # YAML roles may not read the document; a deployment may grant it, as here
        sm = app.appbuilder.sm
        for role in ("Finance", "SiteForeman"):
            sm.add_permission_role(sm.find_role(role), sm.find_permission_view_menu("can_get", "OpenApi"))
    client = app.test_client()
    admin = jwt_headers(client)
    for code, manager in (("MINE", {"manager": foreman_id}), ("OTHER", {})):
        response = client.post("/api/v1/project/", json={"code": code, "name": code, **manager}, headers=admin)
        assert response.status_code == 201, response.json
    return {"client": client, "admin": admin, "finance": jwt_headers(client, "meta_finance", PASSWORD),
            "foreman": jwt_headers(client, "meta_foreman", PASSWORD)}


def info(world, who, entity):
    response = world["client"].get(f"/api/v1/{entity}/_info", headers=world[who])
    assert response.status_code == 200, response.json
    return response.json


def names(columns) -> set:
    return {c["name"] for c in columns}


def test_info_leaves_out_hidden_and_masked_fields_for_finance(world):
    data = info(world, "finance", "customer")
    for key in ("add_columns", "edit_columns"):
        assert not names(data[key]) & {"notes", "source", "phone", "email"}
        assert "name" in names(data[key])
    assert not set(data["filters"]) & {"notes", "source", "phone", "email"}
    admin = info(world, "admin", "customer")
    assert {"notes", "source", "phone", "email"} <= names(admin["add_columns"]) and "notes" in admin["filters"]


def test_info_for_the_foreman_hides_bank_account_and_out_of_scope_projects(world):
    worker = info(world, "foreman", "worker")
    assert not names(worker["add_columns"]) & {"bank_account", "id_card"}
    assert "bank_account" in names(info(world, "admin", "worker")["add_columns"])
    entry = info(world, "foreman", "labour_entry")
    project = next(c for c in entry["add_columns"] if c["name"] == "project")
    assert "values" not in project  # the admin's list would name the other site
    admin_project = next(c for c in info(world, "admin", "labour_entry")["add_columns"] if c["name"] == "project")
    assert {v["value"] for v in admin_project["values"]} >= {"MINE", "OTHER"}


def openapi(world, who) -> dict:
    response = world["client"].get("/api/v1/_openapi", headers=world[who])
    assert response.status_code == 200
    return response.json["components"]["schemas"]


def test_openapi_is_trimmed_per_role(world):
    assert world["client"].get("/api/v1/_openapi", headers=world["finance"]).status_code == 200
    finance, admin = openapi(world, "finance"), openapi(world, "admin")
    for suffix in ("get", "get_list"):
        props = set(finance[f"CustomerApi.{suffix}"]["properties"])
        assert not props & {"notes", "source"} and {"phone", "email", "name"} <= props  # masked: shown masked
        assert {"notes", "source"} <= set(admin[f"CustomerApi.{suffix}"]["properties"])
    for suffix in ("post", "put"):
        assert not set(finance[f"CustomerApi.{suffix}"]["properties"]) & {"notes", "source", "phone", "email"}
    foreman = openapi(world, "foreman")
    assert "bank_account" not in foreman["WorkerApi.get"]["properties"]
    assert "bank_account" in openapi(world, "admin")["WorkerApi.get"]["properties"]  # not trimmed for good


def test_openapi_declares_date_times_as_sent(world):
    client, admin = world["client"], world["admin"]
    created = openapi(world, "admin")["ProjectApi.get"]["properties"]["created_on"]
    assert created.get("format") != "date-time"
    sent = client.get("/api/v1/project/1", headers=admin).json["result"]["created_on"]
    assert "T" in sent and "+" not in sent and not sent.endswith("Z")
