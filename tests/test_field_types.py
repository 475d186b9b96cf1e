"""Every field type round-trips through the UI forms and the REST API; bad values are refused on both."""
from __future__ import annotations

import re

import pytest
from conftest import ASSETS, jwt_headers, login, make_app


@pytest.fixture(scope="module")
def assets_app(tmp_path_factory):
    app = make_app(tmp_path_factory, "assets", schema_dir=ASSETS)
    client = app.test_client()
    headers = jwt_headers(client)
    supplier = client.post("/api/v1/supplier/", json={"name": "Bosch"}, headers=headers).json["id"]
    tags = [client.post("/api/v1/tag/", json={"name": n}, headers=headers).json["id"] for n in ("red", "blue")]
    app.config["TEST_IDS"] = {"supplier": supplier, "tags": tags}
    return app


@pytest.fixture()
def client(assets_app):
    return login(assets_app.test_client())


@pytest.fixture()
def headers(client):
    return jwt_headers(client)


def count(client, headers, entity="asset"):
    return client.get(f"/api/v1/{entity}/", headers=headers).json["count"]


def form_errors(html: str) -> list[str]:
    blocks = re.findall(r'<div class="alert alert-danger">(.*?)</div>', html, re.S)
    return [" ".join(b.split()) for b in blocks]


def test_api_round_trip_of_every_type(assets_app, client, headers):
    ids = assets_app.config["TEST_IDS"]
    payload = {
        "code": "A-0001", "description": "Line one\nLine two", "quantity": 3, "price": "1234.50",
        "in_service": False, "bought_on": "2024-02-29", "checked_at": "2026-01-31T14:30:00",
        "condition": "worn", "contact_email": "Ops@Example.COM", "contact_phone": "021 6888 1234",
        "manual": "https://example.com/manual.pdf", "supplier": ids["supplier"], "tags": ids["tags"], "keeper": 1,
    }
    created = client.post("/api/v1/asset/", json=payload, headers=headers)
    assert created.status_code == 201, created.json
    got = client.get(f"/api/v1/asset/{created.json['id']}", headers=headers).json["result"]
    assert got["code"] == "A-0001"
    assert got["description"] == "Line one\nLine two"
    assert got["quantity"] == 3
    assert got["price"] == "1234.50"
    assert got["in_service"] is False
    assert got["bought_on"] == "2024-02-29"
    assert got["checked_at"] == "2026-01-31T14:30:00"
    assert got["condition"] == "worn"
    assert got["contact_email"] == "Ops@example.com"  # domain normalized
    assert got["contact_phone"] == "+862168881234"  # stored as E.164
    assert got["manual"] == "https://example.com/manual.pdf"
    assert got["supplier"] == {"id": ids["supplier"], "name": "Bosch"}
    assert sorted(t["id"] for t in got["tags"]) == sorted(ids["tags"])
    assert got["keeper"] == {"id": 1, "username": "admin"}

    updated = client.put(f"/api/v1/asset/{created.json['id']}", json={"quantity": 4, "tags": [], "supplier": None}, headers=headers)
    assert updated.status_code == 200, updated.json
    got = client.get(f"/api/v1/asset/{created.json['id']}", headers=headers).json["result"]
    assert (got["quantity"], got["tags"], got["supplier"], got["price"]) == (4, [], None, "1234.50")


def test_api_defaults_apply(client, headers):
    created = client.post("/api/v1/asset/", json={"code": "A-0002"}, headers=headers)
    assert created.status_code == 201, created.json
    got = created.json["result"]
    assert (got["quantity"], got["in_service"], got["condition"], got["keeper"]["username"]) == (1, True, "good", "admin")


BAD_VALUES = [
    ("code", "B-1", "Does not have the expected format."),
    ("code", "A-00001234567", "Must be at most 12 characters"),
    ("quantity", "many", "Must be a whole number."),
    ("quantity", 2000, "Must be at most 1000."),
    ("quantity", True, "Must be a whole number."),
    ("price", "12.345", "At most 2 decimal places."),
    ("price", "-1", "Must be at least 0."),
    ("price", "1e20", "Number is too large."),
    ("in_service", "maybe", "Must be yes or no."),
    ("bought_on", "2024-02-30", "Must be a date like 2026-01-31."),
    ("bought_on", "1999-12-31", "Must be at least 2000-01-01."),
    ("checked_at", "yesterday", "Must be a date and time"),
    ("condition", "lost", "Not a valid choice; use one of: good, worn, broken."),
    ("contact_email", "not-an-email", "Not a valid email address."),
    ("contact_phone", "12345", "Not a valid phone number."),
    ("manual", "ftp//nope", "Not a valid web address"),
    ("supplier", 9999, "No record with id 9999."),
    ("tags", [9999], "No record with id 9999."),
    ("keeper", 9999, "No record with id 9999."),
]


@pytest.mark.parametrize("field,value,message", BAD_VALUES, ids=[f"{f}={v}" for f, v, _ in BAD_VALUES])
def test_api_rejects_bad_value_and_changes_nothing(client, headers, field, value, message):
    before = count(client, headers)
    payload = {"code": "A-0999", field: value} if field != "code" else {"code": value}
    response = client.post("/api/v1/asset/", json=payload, headers=headers)
    assert response.status_code == 422, response.json
    assert message in response.json["message"][field][0]
    assert count(client, headers) == before


def test_api_structural_errors(client, headers):
    before = count(client, headers)
    assert client.post("/api/v1/asset/", data="code=A-1", headers=headers).status_code == 400
    assert client.post("/api/v1/asset/", json=[1, 2], headers=headers).status_code == 400
    missing = client.post("/api/v1/asset/", json={"quantity": 1}, headers=headers)
    assert missing.status_code == 422 and missing.json["message"] == {"code": ["This field is required."]}
    unknown = client.post("/api/v1/asset/", json={"code": "A-0100", "colour": "red", "id": 5}, headers=headers)
    assert unknown.status_code == 422 and set(unknown.json["message"]) == {"colour", "id"}
    assert count(client, headers) == before


def test_api_unique_violation_is_a_field_error(client, headers):
    assert client.post("/api/v1/asset/", json={"code": "A-0500"}, headers=headers).status_code == 201
    before = count(client, headers)
    duplicate = client.post("/api/v1/asset/", json={"code": "A-0500"}, headers=headers)
    assert duplicate.status_code == 422
    assert duplicate.json["message"] == {"code": ["Already exists."]}
    other = client.post("/api/v1/asset/", json={"code": "A-0501"}, headers=headers).json["id"]
    clash = client.put(f"/api/v1/asset/{other}", json={"code": "A-0500"}, headers=headers)
    assert clash.status_code == 422 and clash.json["message"] == {"code": ["Already exists."]}
    assert count(client, headers) == before + 1


def form_payload(assets_app, **overrides):
    ids = assets_app.config["TEST_IDS"]
    data = {
        "code": "A-0700", "description": "Made in a form", "quantity": "7", "price": "99.90", "in_service": "y",
        "bought_on": "2025-05-05", "checked_at": "2026-02-03 08:09:10", "condition": "broken",
        "contact_email": "x@example.org", "contact_phone": "+86 138 0013 8000", "manual": "http://intranet/manual",
        "supplier": str(ids["supplier"]), "tags": [str(t) for t in ids["tags"]], "keeper": "1",
    }
    data.update(overrides)
    return data


def test_form_round_trip_of_every_type(assets_app, client, headers):
    response = client.post("/asset/add", data=form_payload(assets_app))
    assert response.status_code == 302, form_errors(response.text)
    listing = client.get("/api/v1/asset/", headers=headers, query_string={"q": '(filters:!((col:code,opr:eq,value:A-0700)))'}).json
    assert listing["count"] == 1
    got = listing["result"][0]
    assert (got["quantity"], got["price"], got["in_service"], got["bought_on"]) == (7, "99.90", True, "2025-05-05")
    assert (got["checked_at"], got["condition"], got["contact_phone"]) == ("2026-02-03T08:09:10", "broken", "+8613800138000")
    assert (got["manual"], got["supplier"]["name"], len(got["tags"]), got["keeper"]["id"]) == ("http://intranet/manual", "Bosch", 2, 1)
    show = client.get(f"/asset/show/{got['id']}").text
    for shown in ("A-0700", "Broken", "+86 138 0013 8000", "99.90", "Bosch", "red", "2025-05-05"):
        assert shown in show, shown
    edit = client.post(f"/asset/edit/{got['id']}", data=form_payload(assets_app, quantity="8", condition="good"))
    assert edit.status_code == 302, form_errors(edit.text)
    again = client.get(f"/api/v1/asset/{got['id']}", headers=headers).json["result"]
    assert (again["quantity"], again["condition"]) == (8, "good")


FORM_BAD_VALUES = [
    ("code", "B-1", "Does not have the expected format."),
    ("quantity", "2000", "Must be at most 1000."),
    ("price", "12.345", "At most 2 decimal places."),
    ("bought_on", "1999-12-31", "Must be at least 2000-01-01."),
    ("condition", "lost", "Not a valid choice; use one of: good, worn, broken."),
    ("contact_email", "not-an-email", "Not a valid email address."),
    ("contact_phone", "12345", "Not a valid phone number."),
    ("manual", "ftp//nope", "Not a valid web address"),
    ("code", "", "This field is required."),
]


@pytest.mark.parametrize("field,value,message", FORM_BAD_VALUES, ids=[f"{f}={v}" for f, v, _ in FORM_BAD_VALUES])
def test_form_rejects_bad_value_and_changes_nothing(assets_app, client, headers, field, value, message):
    before = count(client, headers)
    response = client.post("/asset/add", data=form_payload(assets_app, **{"code": "A-0800", field: value}))
    assert response.status_code == 200
    assert any(message in error for error in form_errors(response.text)), form_errors(response.text)
    assert count(client, headers) == before


def test_form_unique_violation_is_a_field_error(assets_app, client, headers):
    assert client.post("/asset/add", data=form_payload(assets_app, code="A-0900")).status_code == 302
    before = count(client, headers)
    response = client.post("/asset/add", data=form_payload(assets_app, code="A-0900"))
    assert response.status_code == 200
    assert "Already exists." in form_errors(response.text)
    assert count(client, headers) == before


def test_restrict_delete_is_refused_with_a_message(assets_app, client, headers):
    supplier = client.post("/api/v1/supplier/", json={"name": "Makita"}, headers=headers).json["id"]
    client.post("/api/v1/asset/", json={"code": "A-0950", "supplier": supplier}, headers=headers)
    refused = client.delete(f"/api/v1/supplier/{supplier}", headers=headers)
    assert refused.status_code == 422
    assert "Cannot delete: 1 × Asset still refer to this record." == refused.json["message"]
    page = client.post(f"/supplier/delete/{supplier}", follow_redirects=True).text
    assert "Cannot delete: 1 × Asset" in page
    assert client.get(f"/api/v1/supplier/{supplier}", headers=headers).status_code == 200
