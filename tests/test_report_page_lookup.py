"""A report's link-group filter with many values is a type-ahead (the link pickers' lookup), not a <select> of
every record: the 2,000-worker report page no longer carries 2,000 options. PORTAL_REPORT_LOOKUP_FROM sets how
many values make a type-ahead; the demo has a handful of workers, so the test lowers it."""
from __future__ import annotations

import re
from html import unescape
from urllib.parse import quote

import pytest
from conftest import jwt_headers, login, make_app


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from app.demo import load_demo

    app = make_app(tmp_path_factory, "report_page_lookup", PORTAL_REPORT_LOOKUP_FROM=5)
    with app.app_context():
        load_demo(app, labour_days=6)
    api = app.test_client()
    return app, api, jwt_headers(api)


def select_of(html: str, name: str) -> str:
    return re.search(rf'<select[^>]*id="f_{name}".*?</select>', html, re.S).group(0)


def test_many_values_make_a_type_ahead_that_finds_and_filters(demo):
    app, api, h = demo
    rows = api.get("/api/v1/reports/labour_by_worker", headers=h).json["rows"]
    assert len(rows) > 5
    client = login(app.test_client())
    html = client.get("/reports/labour_by_worker").get_data(as_text=True)
    select = select_of(html, "worker")
    assert "portal-lookup" in select and 'data-allow-clear="true"' in select
    assert re.findall(r'<option value="([^"]*)"', select) == [""]  # no option per worker: the lookup has them
    url = unescape(re.search(r'data-lookup-url="([^"]+)"', select).group(1))
    assert url == "/labour_entry/lookup/worker?all=1"

    # the type-ahead finds a worker of the report by part of the name, in the viewer's scope
    worker = rows[0]["worker"]
    found = client.get(f"{url}&q={quote(worker['label'][:2])}").json["results"]
    assert {"id": worker["value"], "title": worker["label"]} in found

    # choosing it filters the report to that worker; the page keeps the choice
    page = client.get(f"/reports/labour_by_worker?f_worker={worker['value']}").get_data(as_text=True)
    chosen = select_of(page, "worker")
    assert re.findall(r'<option value="(\d+)" selected>([^<]*)</option>', chosen) == [(str(worker["value"]), worker["label"])]
    body = page.split("<tbody>")[1].split("</tbody>")[0]
    assert [unescape(label) for label in re.findall(r"<tr><td>([^<]*)</td>", body)] == [worker["label"]]


def test_few_values_keep_the_select(demo):
    """labour_by_project groups by project: a few values stay a plain select of the values that occur."""
    app, api, h = demo
    rows = api.get("/api/v1/reports/labour_by_project", headers=h).json["rows"]
    assert 0 < len(rows) <= 5
    html = login(app.test_client()).get("/reports/labour_by_project").get_data(as_text=True)
    select = select_of(html, "project")
    assert "portal-lookup" not in select
    assert sorted(re.findall(r'<option value="(\d+)"', select)) == sorted(str(r["project"]["value"]) for r in rows
                                                                          if r["project"]["value"] is not None)


def test_default_keeps_the_select_for_a_hundred_values(tmp_path_factory):
    from app.demo import load_demo

    app = make_app(tmp_path_factory, "report_page_lookup_default")
    with app.app_context():
        load_demo(app, labour_days=2)
    html = login(app.test_client()).get("/reports/labour_by_worker").get_data(as_text=True)
    select = select_of(html, "worker")
    assert "portal-lookup" not in select and len(re.findall(r'<option value="\d+"', select)) > 3
