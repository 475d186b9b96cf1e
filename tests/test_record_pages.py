"""A record's detail page: Edit and Delete when the user may use them; a new record's save lands on it."""
from __future__ import annotations

import re

import pytest

from conftest import ADMIN, login, make_app


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    app = make_app(tmp_path_factory, "record_pages")
    with app.app_context():
        sm = app.appbuilder.sm
        sm.add_user("fin", "Fi", "Nance", "fin@example.com", sm.find_role("Finance"), "Fin-pass-1")
    return app


def _add_customer(client, name: str):
    return client.post("/customer/add", data={"name": name, "kind": "company", "level": "normal"})


def test_saving_a_new_record_lands_on_its_detail_page(portal):
    client = login(portal.test_client())
    response = _add_customer(client, "落地客户")
    assert response.status_code == 302
    match = re.search(r"/customer/show/(\d+)$", response.headers["Location"])
    assert match, response.headers["Location"]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "落地客户" in page
    assert f'href="/customer/edit/{match.group(1)}"' in page and 'id="record-delete"' in page


def test_a_refused_add_stays_on_the_form(portal):
    client = login(portal.test_client())
    _add_customer(client, "重复电话客户甲")
    response = client.post("/customer/add", data={"name": "", "kind": "company"})
    assert response.status_code == 200 and "/customer/show/" not in (response.headers.get("Location") or "")


def test_detail_page_offers_only_what_the_role_may_do(portal):
    admin = login(portal.test_client())
    pk = re.search(r"(\d+)$", _add_customer(admin, "只读客户").headers["Location"]).group(1)
    finance = login(portal.test_client(), "fin", "Fin-pass-1")
    page = finance.get(f"/customer/show/{pk}").get_data(as_text=True)
    assert "只读客户" in page
    assert 'id="record-edit"' not in page and 'id="record-delete"' not in page


def test_delete_from_the_detail_page_goes_to_the_list(portal):
    client = login(portal.test_client())
    pk = re.search(r"(\d+)$", _add_customer(client, "将删除客户").headers["Location"]).group(1)
    response = client.post(f"/customer/delete/{pk}", data={"from": "show"})
    assert response.status_code == 302 and response.headers["Location"].endswith("/customer/list/")
    assert client.get(f"/customer/show/{pk}").status_code == 404


def test_a_refused_delete_from_the_detail_page_stays_there(portal):
    client = login(portal.test_client())
    pk = re.search(r"(\d+)$", _add_customer(client, "有工单客户").headers["Location"]).group(1)
    assert client.post("/contract/add", data={"name": "维保合同", "customer": pk}).status_code == 302
    response = client.post(f"/customer/delete/{pk}", data={"from": "show"})
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/customer/show/{pk}")
    assert "有工单客户" in client.get(f"/customer/show/{pk}").get_data(as_text=True)
