"""Bad input gets a clear 4xx and changes nothing: ids out of range, junk page and filter arguments, NUL characters.

Each case was a 500 (OverflowError, DataError, TypeError, IndexError, ValueError) or a filter silently
ignored (every row returned) before app/generate/input_errors.py.
"""
from __future__ import annotations

import datetime as dt
import re

import pytest
from conftest import jwt_headers, login, make_app
from app.portal import portal_of

HUGE = "9223372036854775808"  # past BIGINT; 2147483648 is past the INTEGER id columns
ENTRIES = 6


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    app = make_app(tmp_path_factory, "inputs")
    models = portal_of(app).models
    with app.app_context():
        now = dt.datetime(2026, 1, 1)
        stamps = {"created_on": now, "changed_on": now}
        with app.appbuilder.session.get_bind().begin() as conn:
            conn.execute(models["Project"].__table__.insert(), [{"code": "P1", "name": "Site", "status": "active", **stamps}])
            conn.execute(models["Worker"].__table__.insert(), [{"name": "W1", "trade": "general", "day_rate": 300,
                                                                "active": True, **stamps}])
            conn.execute(models["LabourEntry"].__table__.insert(), [
                {"work_date": dt.date(2026, 1, 1 + i), "worker_id": 1, "project_id": 1, "hours": 8, "days": 1,
                 "rate": 300, "amount": 300, "approved": i % 2 == 0, **stamps} for i in range(ENTRIES)])
    client = app.test_client()
    return {"app": app, "api": client, "headers": jwt_headers(client), "browser": login(app.test_client())}


def api(world, method, url, **kw):
    return getattr(world["api"], method)(url, headers={**world["headers"], **kw.pop("headers", {})}, **kw)


def flt(col, opr, value) -> str:
    return f"/api/v1/labour_entry/?q=(filters:!((col:{col},opr:{opr},value:{value})))"


def entry_count(world) -> int:
    return api(world, "get", "/api/v1/labour_entry/").json["count"]


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_api_ids_that_cannot_exist_are_json_404(world, method):
    kw = {"json": {"hours": 1}} if method == "put" else {}
    for pk in (HUGE, "2147483648", "0", "99999999999999999999999999"):
        response = api(world, method, f"/api/v1/labour_entry/{pk}", **kw)
        assert response.status_code == 404, response.data
        assert response.json == {"message": "Not found"}
    for junk in ("-1", "1.5", "abc"):  # no route takes these (FAB's routes are <int:pk>): still JSON
        response = api(world, method, f"/api/v1/labour_entry/{junk}", **kw)
        assert response.status_code in (404, 405) and "message" in response.json
    assert entry_count(world) == ENTRIES


@pytest.mark.parametrize("path", ["show", "edit", "delete"])
def test_page_ids_that_cannot_exist_are_404_pages(world, path):
    for pk in (HUGE, "2147483648", "abc"):
        response = world["browser"].get(f"/labour_entry/{path}/{pk}")
        assert response.status_code == 404
        assert b"<html" in response.data.lower()


def test_junk_page_arguments_on_a_detail_page_show_the_first_page(world):
    response = world["browser"].get("/project/show/1?page_LabourEntryView=abc&psize_LabourEntryView=x&page_X=1e9")
    assert response.status_code == 200
    huge = world["browser"].get("/project/show/1?psize_LabourEntryView=99999999999999&page_LabourEntryView=-5")
    assert huge.status_code == 200


def test_a_filter_number_the_column_does_not_have_is_ignored(world):
    response = world["browser"].get("/labour_entry/list/?_flt_9_work_date=2026-01-01")
    assert response.status_code == 200


@pytest.mark.parametrize("col,opr,value,message", [
    ("work_date", "gt", "'not-a-date'", "Filter on Date: Must be a date like 2026-01-31."),
    ("work_date", "eq", "'2026-02-30'", "Filter on Date: Must be a date like 2026-01-31."),
    ("hours", "gt", "'junk'", "Filter on Hours: Must be a number."),
    ("hours", "lt", "1e400", "Filter on Hours: Must be a number."),
    ("hours", "lt", "1000", "Filter on Hours: Number is too large."),
    ("approved", "eq", "'perhaps'", "Filter on Approved: Must be yes or no."),
    ("worker", "rel_o_m", HUGE, "Filter on Worker: Must be the id of a record."),
    ("worker", "rel_o_m", "'x'", "Filter on Worker: Must be the id of a record."),
    ("worker", "nrel_o_m", "-3", "Filter on Worker: Must be the id of a record."),
])
def test_api_filter_values_that_do_not_fit_are_400_naming_the_column(world, col, opr, value, message):
    response = api(world, "get", flt(col, opr, value))
    assert response.status_code == 400, response.data
    assert response.json["message"] == message


def test_api_enum_filter_with_an_unknown_key_is_400(world):
    response = api(world, "get", "/api/v1/project/?q=(filters:!((col:status,opr:eq,value:zzz)))")
    assert response.status_code == 400
    assert "planned, active, suspended, completed" in response.json["message"]


def test_api_filter_messages_are_localized(world):
    response = api(world, "get", flt("work_date", "gt", "'not-a-date'"), headers={"Accept-Language": "zh"})
    assert response.status_code == 400
    assert "日期" in response.json["message"] and "Filter on" not in response.json["message"]


@pytest.mark.parametrize("query", [
    "(filters:!((col:work_content,opr:ct,value:!(1,2))))",  # a list for an operator that takes one value
    "(filters:!((col:work_content,opr:in,value:'a')))",  # a single value where a list is expected
    "(filters:!((col:work_content,opr:eq)))",  # no value
    "(filters:!((col:work_content,opr:eq,value:!n)))",  # null
])
def test_api_filter_shapes_are_checked_by_the_rison_schema(world, query):
    response = api(world, "get", f"/api/v1/labour_entry/?q={query}")
    assert response.status_code == 400
    assert response.json["message"].startswith("Not a valid Rison argument")


@pytest.mark.parametrize("col,opr,value,expected", [
    ("work_date", "gt", "'2026-01-03'", 3),
    ("hours", "gt", "-1", ENTRIES),  # below the field's min: fine for a filter
    ("hours", "gt", "'7.999'", ENTRIES),  # more decimal places than stored: fine for a comparison
    ("approved", "eq", "!t", ENTRIES // 2),
    ("approved", "eq", "'no'", ENTRIES // 2),
    ("worker", "rel_o_m", "1", ENTRIES),
    ("worker", "rel_o_m", "'1'", ENTRIES),
    ("work_content", "sw", "1", 0),  # a number given to a text filter is text
    ("work_content", "in", "!(1,a)", 0),
])
def test_api_filter_values_that_fit_still_filter(world, col, opr, value, expected):
    response = api(world, "get", flt(col, opr, value))
    assert response.status_code == 200, response.data
    assert response.json["count"] == expected


def _alerts(html: str) -> list[str]:
    return [re.sub(r"\s+|&times;", " ", a).strip() for a in re.findall(r'alert-danger[^>]*>(.*?)</div', html, re.S)]


def test_list_page_with_a_bad_filter_value_shows_the_error_and_the_list_without_that_filter(world):
    # _flt_1_ is "greater than" on a date column
    response = world["browser"].get("/labour_entry/list/?_flt_1_work_date=not-a-date")
    assert response.status_code == 200
    html = response.data.decode()
    assert any("Filter on Date: Must be a date like 2026-01-31." in a for a in _alerts(html))
    assert html.count("/labour_entry/show/") >= ENTRIES
    good = world["browser"].get("/labour_entry/list/?_flt_1_work_date=2026-01-03").data.decode()
    assert not _alerts(good) and good.count("/labour_entry/show/") < html.count("/labour_entry/show/")


def test_list_page_filter_error_in_chinese(world):
    response = world["browser"].get("/labour_entry/list/?_flt_0_worker=" + HUGE, headers={"Accept-Language": "zh"})
    assert response.status_code == 200
    alerts = _alerts(response.data.decode())
    assert alerts and "工人" in alerts[0] and "Filter on" not in alerts[0]


def test_export_with_a_bad_filter_value_is_400(world):
    response = world["browser"].get("/labour_entry/export/csv?_flt_1_work_date=not-a-date")
    assert response.status_code == 400
    assert b"Must be a date like 2026-01-31." in response.data
    assert api(world, "get", "/api/v1/labour_entry/export?format=csv&q=(filters:!((col:hours,opr:gt,value:x)))"
               ).status_code == 400


@pytest.mark.parametrize("value", [99999999999999999999999, 2147483648, -1, 0, {"id": 2**40}, "99999999999999999999"])
def test_link_ids_out_of_range_in_a_body_are_422_and_nothing_is_stored(world, value):
    body = {"work_date": "2026-03-01", "worker": value, "project": 1, "rate": 300}
    response = api(world, "post", "/api/v1/labour_entry/", json=body)
    assert response.status_code == 422, response.data
    assert "worker" in response.json["message"]
    put = api(world, "put", "/api/v1/labour_entry/1", json={"worker": value})
    assert put.status_code == 422
    assert entry_count(world) == ENTRIES
    assert api(world, "get", "/api/v1/labour_entry/1").json["result"]["worker"]["id"] == 1


def test_nul_characters_are_400(world):
    body = {"work_date": "2026-03-02", "worker": 1, "project": 1, "rate": 300, "work_content": "a\u0000b"}
    response = api(world, "post", "/api/v1/labour_entry/", json=body)
    assert response.status_code == 400
    assert "NUL" in response.json["message"]
    assert api(world, "get", "/api/v1/labour_entry/?q=(filters:!((col:work_content,opr:ct,value:'a%00')))"
               ).status_code == 400
    assert world["browser"].get("/labour_entry/list/?_flt_2_work_content=a%00").status_code == 400
    assert entry_count(world) == ENTRIES


def test_json_text_a_database_cannot_store_is_a_400(world):
    """Half of a UTF-16 pair (`"\\ud800"`) is valid JSON but no database stores it: refused before any write."""
    api, headers = world["api"], world["headers"]
    before = api.get("/api/v1/project/", headers=headers).json["count"]
    for url, method in (("/api/v1/project/", "post"), ("/api/v1/project/1", "put")):
        response = getattr(api, method)(url, data='{"code": "P9", "name": "\\ud800 lone"}', headers=headers,
                                        content_type="application/json")
        assert response.status_code == 400 and "Unicode" in response.json["message"], response.json
    paired = api.post("/api/v1/project/", data='{"code": "P9", "name": "\\ud83d\\ude00 pair"}', headers=headers,
                      content_type="application/json")
    assert paired.status_code == 201 and paired.json["result"]["name"] == "\U0001F600 pair"
    assert api.get("/api/v1/project/", headers=headers).json["count"] == before + 1


@pytest.mark.parametrize("version", [[1], {"n": 1}, True])
def test_a_row_version_that_is_not_a_number_is_stale_not_a_500(world, version):
    api, headers = world["api"], world["headers"]
    response = api.put("/api/v1/project/1", json={"name": "Site", "row_version": version}, headers=headers)
    assert response.status_code == 409, response.json


def test_comment_and_attachment_ids_past_what_a_database_holds_are_404(world):
    api, headers = world["api"], world["headers"]
    huge = "9" * 25
    for method, url in (("put", f"/api/v1/ticket/1/comments/{huge}"), ("delete", f"/api/v1/ticket/1/comments/{huge}"),
                        ("get", f"/api/v1/ticket/1/attachments/{huge}")):
        response = getattr(api, method)(url, json={"text": "x"} if method == "put" else None, headers=headers)
        assert response.status_code == 404, (url, response.status_code)
    browser = world["browser"]
    assert browser.post(f"/ticket/comment/{huge}/edit", data={"text": "x"}).status_code == 404
