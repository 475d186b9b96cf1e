"""Sorting a list page by a field the viewer may not see must not reveal how its hidden values rank."""
from __future__ import annotations

import re

import pytest
from conftest import jwt_headers, login
from test_permissions import PASSWORD, make_user

VIEW = "WorkerView"


@pytest.fixture(scope="module")
def foreman(app):
    make_user(app, "leak_foreman", "SiteForeman")
    client = app.test_client()
    headers = jwt_headers(client)
    # names rank one way, hidden bank accounts and masked ID cards the opposite way
    for n in range(6):
        created = client.post("/api/v1/worker/", headers=headers, json={
            "name": f"排序工人{n}", "trade": "general", "team": "排序班组", "day_rate": "300",
            "bank_account": f"62220{9 - n}000000000000", "id_card": f"11010119900101{9 - n}23X"[:18]})
        assert created.status_code == 201, created.json
    return login(app.test_client(), "leak_foreman", PASSWORD)


def names(html: str) -> list[str]:
    return re.findall(r"排序工人\d", html)


@pytest.mark.parametrize("column", ["bank_account", "id_card", "created_by.password", "nope"])
def test_pages_refuse_sorting_by_what_the_viewer_may_not_read(foreman, column):
    base = f"/worker/list/?_flt_0_team=排序班组&psize_{VIEW}=100"
    default = names(foreman.get(base).get_data(as_text=True))
    assert len(default) == 6
    for direction in ("asc", "desc"):
        response = foreman.get(f"{base}&_oc_{VIEW}={column}&_od_{VIEW}={direction}")
        assert response.status_code == 200
        html = response.get_data(as_text=True)
        assert names(html) == default, (column, direction)  # the order did not follow the hidden values
        assert "cannot be sorted" in html or "不能" in html  # and the page says why


def test_the_api_refuses_the_same_sorts(app, foreman):
    headers = jwt_headers(app.test_client(), "leak_foreman", PASSWORD)
    client = app.test_client()
    for column in ("bank_account", "id_card", "nope"):
        refused = client.get(f"/api/v1/worker/?q=(order_column:{column},order_direction:asc)", headers=headers)
        assert refused.status_code == 400, column
