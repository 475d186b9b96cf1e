"""List pages and the list API: capped counts, keyset paging, junk paging arguments, SQL statements per request.

A small count cap (PORTAL_COUNT_CAP) and 90 labour entries stand in for a big table. The app's
labour module has its list search limited to plain fields (the link pickers of the search form
load every linked row, a separate piece of work), so the statement count is the list's own.
"""
from __future__ import annotations

import datetime as dt
import re

import prison
import pytest
from conftest import ROOT, jwt_headers, login, make_app, sql_statements
from app.portal import portal_of
from sqlalchemy import select

CAP = 25
ENTRIES = 90  # 30 per project; the foreman runs project 1
PASSWORD = "Paging-pass-1"
VIEW = "LabourEntryView"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    app = make_app(tmp_path_factory, "paging", ROOT / "schemas", PORTAL_COUNT_CAP=CAP)
    models = portal_of(app).models
    with app.app_context():
        sm = app.appbuilder.sm
        foreman = sm.add_user("pager_foreman", "F", "Oreman", "f@example.com", [sm.find_role("SiteForeman")], PASSWORD)
        now = dt.datetime(2026, 1, 1)
        stamps = {"created_on": now, "changed_on": now}
        engine = app.appbuilder.session.get_bind()
        with engine.begin() as conn:
            conn.execute(models["Project"].__table__.insert(), [
                {"code": f"P{i}", "name": f"工地{i}", "status": "active", "manager_id": foreman.id if i == 1 else None,
                 **stamps} for i in (1, 2, 3)])
            conn.execute(models["Worker"].__table__.insert(), [
                {"name": f"工人{i}", "trade": "general", "day_rate": 300, "active": True, **stamps} for i in range(1, 6)])
            # nine work dates for 90 entries: many ties on the order column, broken by id
            conn.execute(models["LabourEntry"].__table__.insert(), [
                {"work_date": dt.date(2024, 1, 1) + dt.timedelta(days=i % 9), "worker_id": i % 5 + 1,
                 "project_id": i // 30 + 1, "hours": 8 - i % 4, "days": 1, "rate": 300, "amount": 300,
                 "approved": i % 6 == 0, **stamps} for i in range(ENTRIES)])
        table = models["LabourEntry"].__table__
        with engine.connect() as conn:
            ordered = [r.id for r in conn.execute(select(table.c.id).order_by(table.c.work_date.desc(), table.c.id.desc()))]
            mine = [r.id for r in conn.execute(select(table.c.id).where(table.c.project_id == 1)
                                               .order_by(table.c.work_date.desc(), table.c.id.desc()))]
            by_hours = [r.id for r in conn.execute(select(table.c.id).order_by(table.c.hours, table.c.id))]
    return {"app": app, "ordered": ordered, "mine": mine, "by_hours": by_hours, "engine": engine}


@pytest.fixture(scope="module")
def admin(world):
    app = world["app"]
    return login(app.test_client()), app.test_client(), jwt_headers(app.test_client())


@pytest.fixture(scope="module")
def foreman(world):
    app = world["app"]
    return (login(app.test_client(), "pager_foreman", PASSWORD), app.test_client(),
            jwt_headers(app.test_client(), "pager_foreman", PASSWORD))


def api_list(client, headers, entity="labour_entry", **args):
    return client.get(f"/api/v1/{entity}/", headers=headers, query_string={"q": prison.dumps(args)} if args else None)


def row_ids(html: str) -> list[int]:
    return [int(i) for i in dict.fromkeys(re.findall(r"/labour_entry/show/(\d+)", html))]


def link(html: str, rel: str) -> str | None:
    found = re.search(rf'<li class="">\s*<a href="([^"#]+)" rel="{rel}"', html)
    return found.group(1).replace("&amp;", "&") if found else None


def record_count(html: str) -> str:
    return re.search(r'class="portal-count-value">([^<]*)<', html).group(1)


# -- counts --------------------------------------------------------------------------------------

def test_api_count_is_capped_above_the_cap_and_exact_below(admin):
    _, client, headers = admin
    listing = api_list(client, headers).json
    assert (listing["count"], listing["count_capped"], len(listing["result"])) == (CAP, True, 20)
    approved = api_list(client, headers, filters=[{"col": "approved", "opr": "eq", "value": True}]).json
    assert (approved["count"], approved["count_capped"]) == (ENTRIES // 6, False)
    projects = api_list(client, headers, "project").json
    assert (projects["count"], projects["count_capped"], projects["next"]) == (3, False, None)


def test_html_count_shows_cap_plus_and_exact_counts(admin):
    ui, _, _ = admin
    assert record_count(ui.get("/labour_entry/list/").text) == f"{CAP}+"
    assert record_count(ui.get("/labour_entry/list/?_l_=zh").text) == f"超过 {CAP}"
    assert record_count(ui.get("/project/list/").text) == "3"
    approved = ui.get(f"/labour_entry/list/?_flt_0_approved=y&psize_{VIEW}=100").text
    assert record_count(approved) == str(ENTRIES // 6) and len(row_ids(approved)) == ENTRIES // 6


# -- API paging ----------------------------------------------------------------------------------

@pytest.mark.parametrize("order, expected", [({}, "ordered"), ({"order_column": "hours", "order_direction": "asc"}, "by_hours"),
                                             ({"order_column": "id", "order_direction": "desc"}, "ids_desc")])
def test_api_cursor_walk_and_page_walk_give_every_row_once_in_order(world, admin, order, expected):
    _, client, headers = admin
    expected = sorted(world["ordered"], reverse=True) if expected == "ids_desc" else world[expected]
    by_cursor, after = [], None
    while True:
        listing = api_list(client, headers, page_size=7, **order, **({"after": after} if after else {})).json
        by_cursor += listing["ids"]
        after = listing["next"]
        if after is None:
            break
    by_page, page = [], 0
    while ids := api_list(client, headers, page_size=7, page=page, **order).json["ids"]:
        by_page += ids
        page += 1
    assert by_cursor == expected and by_page == expected


def test_api_order_on_an_optional_column_pages_by_number_only(admin):
    _, client, headers = admin
    listing = api_list(client, headers, order_column="work_content", order_direction="asc", page_size=10).json
    assert listing["next"] is None and len(listing["ids"]) == 10
    token = api_list(client, headers, page_size=5).json["next"]
    refused = api_list(client, headers, order_column="work_content", order_direction="asc", after=token)
    assert refused.status_code == 400 and "required column" in refused.json["message"]


@pytest.mark.parametrize("q", [
    "(page:-1)", "(page_size:0)", "(page_size:-5)", "(page_size:x)", "(page:'2')", "(page:99999999999)",
    "(order_direction:up)", "(order_column:nope,order_direction:asc)", "(order_column:'id;drop',order_direction:asc)",
    "(after:garbage)", "(after:'')", "(after:!(1,2))", "((", "(filters:!((col:approved)))",
])
def test_api_junk_paging_arguments_get_400(admin, q):
    _, client, headers = admin
    response = client.get("/api/v1/labour_entry/", headers=headers, query_string={"q": q})
    assert response.status_code == 400, (q, response.status_code, response.data[:300])
    assert response.json["message"]


def test_api_cursor_of_another_order_or_forged_gets_400(admin):
    _, client, headers = admin
    token = api_list(client, headers, page_size=5).json["next"]
    other = api_list(client, headers, after=token, order_column="hours", order_direction="asc")
    assert other.status_code == 400
    import base64
    forged = base64.urlsafe_b64encode(b'["work_date","desc","not a date",3]').decode().rstrip("=")
    assert api_list(client, headers, after=forged).status_code == 400
    forged = base64.urlsafe_b64encode(b'["work_date","desc","2024-01-05",true]').decode().rstrip("=")
    assert api_list(client, headers, after=forged).status_code == 400


def test_api_huge_page_size_is_cut_to_the_maximum(world, admin):
    _, client, headers = admin
    world["app"].config["FAB_API_MAX_PAGE_SIZE"] = 30
    try:
        assert len(api_list(client, headers, page_size=10_000).json["ids"]) == 30
    finally:
        world["app"].config["FAB_API_MAX_PAGE_SIZE"] = 100


def test_openapi_documents_the_cursor_and_the_capped_count(admin):
    _, client, headers = admin
    spec = client.get("/api/v1/_openapi", headers=headers).json
    assert "after" in spec["components"]["schemas"]["portal_get_list_schema"]["properties"]
    listing = spec["paths"]["/api/v1/labour_entry/"]["get"]
    properties = listing["responses"]["200"]["content"]["application/json"]["schema"]["properties"]
    assert {"count", "count_capped", "next", "result"} <= set(properties)
    assert listing["parameters"][0]["content"]["application/json"]["schema"]["$ref"].endswith("portal_get_list_schema")


# -- HTML paging ---------------------------------------------------------------------------------

def test_html_next_links_walk_every_row_and_prev_links_walk_back_from_the_last_page(world, admin):
    ui, _, _ = admin
    expected, seen, urls = world["ordered"], [], [f"/labour_entry/list/?psize_{VIEW}=10"]
    while urls[-1]:
        html = ui.get(urls[-1]).text
        seen += row_ids(html)
        urls.append(link(html, "next"))
    assert seen == expected and len(urls) == 10
    assert all(f"after_{VIEW}=" in url for url in urls[1:-1])  # next pages seek from a cursor
    last = ui.get(link(ui.get(f"/labour_entry/list/?psize_{VIEW}=10").text, "last")).text
    assert row_ids(last) == expected[-10:] and link(last, "next") is None
    back, url = [], link(last, "prev")
    while url:
        html = ui.get(url).text
        back = row_ids(html) + back
        url = link(html, "prev")
    assert back + row_ids(last) == expected


def test_html_numbered_pages_and_first_link(world, admin):
    ui, _, _ = admin
    html = ui.get(f"/labour_entry/list/?psize_{VIEW}=10&page_{VIEW}=3").text
    assert row_ids(html) == world["ordered"][30:40]
    numbers = re.findall(rf'page_{VIEW}=(\d+)[^"]*">(\d+)</a>', html)
    # two pages either side, but past the capped count only the next page is known to exist
    assert ("1", "2") in numbers and ("2", "3") in numbers and ("4", "5") in numbers and ("5", "6") not in numbers
    assert row_ids(ui.get(link(html, "first")).text) == world["ordered"][:10]


@pytest.mark.parametrize("query, first_rows", [
    (f"page_{VIEW}=abc", slice(0, 25)),
    (f"page_{VIEW}=-99999999999999", slice(0, 25)),
    (f"psize_{VIEW}=zero", slice(0, 25)),
    (f"psize_{VIEW}=-4", slice(0, 25)),
    (f"psize_{VIEW}=100000", slice(0, 90)),  # cut to 100
    (f"_oc_{VIEW}=nope&_od_{VIEW}=asc", slice(0, 25)),
    (f"_oc_{VIEW}=hours&_od_{VIEW}=sideways", slice(0, 25)),
    (f"after_{VIEW}=garbage", slice(0, 25)),
    (f"before_{VIEW}=%00%ff", slice(0, 25)),
    (f"page_{VIEW}=1000", slice(65, 90)),  # past the end: the last page
    (f"_scheme=x&_external=1&page_{VIEW}=1", slice(25, 50)),  # url_for's keywords in the URL (a 500 in FAB)
])
def test_html_junk_paging_arguments_give_a_sensible_page(world, admin, query, first_rows):
    ui, _, _ = admin
    response = ui.get(f"/labour_entry/list/?{query}")
    assert response.status_code == 200, query
    assert row_ids(response.text) == world["ordered"][first_rows], query


def test_html_sort_links_flip_the_order_and_start_from_page_one(world, admin):
    ui, _, _ = admin
    html = ui.get(f"/labour_entry/list/?psize_{VIEW}=10&page_{VIEW}=2").text
    by_hours = re.search(rf'<th><a href="([^"]*_oc_{VIEW}=hours[^"]*)"', html).group(1).replace("&amp;", "&")
    assert f"page_{VIEW}" not in by_hours and f"_od_{VIEW}=asc" in by_hours
    sorted_html = ui.get(by_hours).text
    assert row_ids(sorted_html) == world["by_hours"][:10]
    flipped = re.search(rf'<th><a href="([^"]*_oc_{VIEW}=hours[^"]*)"', sorted_html).group(1)
    assert f"_od_{VIEW}=desc" in flipped


def test_html_cursor_of_another_order_falls_back_to_the_page_number(world, admin):
    ui, _, _ = admin
    first = ui.get(f"/labour_entry/list/?psize_{VIEW}=10").text
    token = re.search(rf"after_{VIEW}=([\w-]+)", first).group(1)
    html = ui.get(f"/labour_entry/list/?psize_{VIEW}=10&page_{VIEW}=2&_oc_{VIEW}=hours&_od_{VIEW}=asc&after_{VIEW}={token}").text
    assert row_ids(html) == world["by_hours"][20:30]


# -- row scope -----------------------------------------------------------------------------------

def test_row_scope_holds_for_counts_and_every_page(world, foreman):
    ui, client, headers = foreman
    mine, seen, after = world["mine"], [], None
    listing = api_list(client, headers).json
    assert (listing["count"], listing["count_capped"]) == (CAP, True)  # 30 rows in scope
    while True:
        listing = api_list(client, headers, page_size=8, **({"after": after} if after else {})).json
        seen += listing["ids"]
        if not (after := listing["next"]):
            break
    assert seen == mine
    first = ui.get(f"/labour_entry/list/?psize_{VIEW}=10").text
    assert record_count(first) == f"{CAP}+" and row_ids(first) == mine[:10]
    assert row_ids(ui.get(link(first, "last")).text) == mine[-10:]
    # a cursor taken from rows outside the scope moves the position only, never widens the scope
    other = api_list(*admin_like(world), page_size=85).json["next"]
    assert set(api_list(client, headers, after=other).json["ids"]) <= set(mine)


def admin_like(world):
    app = world["app"]
    client = app.test_client()
    return client, jwt_headers(client)


# -- SQL statements per request -------------------------------------------------------------------

@pytest.mark.parametrize("who", ["admin", "foreman"])
def test_list_requests_run_at_most_six_sql_statements(world, request, who):
    ui, client, headers = request.getfixturevalue(who)
    token = api_list(client, headers, page_size=10).json["next"]
    html_next = link(ui.get(f"/labour_entry/list/?psize_{VIEW}=10").text, "next")
    requests = {
        "page 1": lambda: ui.get("/labour_entry/list/"),
        "next page": lambda: ui.get(html_next),
        "last page": lambda: ui.get(f"/labour_entry/list/?page_{VIEW}=-1"),
        "API page 1": lambda: api_list(client, headers),
        "API cursor page": lambda: api_list(client, headers, page_size=10, after=token),
        "API page 3": lambda: api_list(client, headers, page=3, page_size=10),
    }
    for name, call in requests.items():
        with sql_statements(world["app"]) as seen:
            response = call()
        assert response.status_code == 200, name
        assert len(seen) <= 6, (who, name, len(seen), [s[:80] for s in seen])


def test_related_list_on_a_detail_page_pages_with_the_same_pager(world, admin):
    ui, _, _ = admin
    mine = world["mine"]  # project 1's 30 entries, more than the cap
    html = ui.get("/project/show/1").text
    # a project's page lists several related entities (labour entries, material costs, milestones, …): the
    # labour entries' count is the last one before their first row
    counts = re.findall(r'class="portal-count-value">([^<]*)<', html[:html.index("/labour_entry/show/")])
    assert counts[-1] == f"{CAP}+" and row_ids(html) == mine[:25]
    last = link(html, "last")
    assert last.startswith("/project/show/1?") and row_ids(ui.get(last).text) == mine[-25:]


@pytest.mark.parametrize("who", ["admin", "foreman"])
def test_deep_numbered_pages_read_ids_first_and_give_the_same_rows(world, request, who, monkeypatch):
    """Past DEFERRED_JOIN_OFFSET a numbered page skips ids only, then reads its rows: same rows, same order, scope."""
    import app.generate.paging as paging

    ui, client, headers = request.getfixturevalue(who)
    expected = world["ordered"] if who == "admin" else world["mine"]
    by_hours = world["by_hours"] if who == "admin" else None
    pages = {}
    for threshold in (10**9, 1):  # never deferred, then always (page 1 skips 7 rows)
        monkeypatch.setattr(paging, "DEFERRED_JOIN_OFFSET", threshold)
        pages[threshold] = [api_list(client, headers, page=p, page_size=7).json["ids"] for p in range(1, 5)]
        pages[threshold, "html"] = row_ids(ui.get(f"/labour_entry/list/?psize_{VIEW}=7&page_{VIEW}=2").text)
        if by_hours:
            pages[threshold, "hours"] = api_list(client, headers, page=3, page_size=7, order_column="hours",
                                                 order_direction="asc").json["ids"]
    assert pages[1] == pages[10**9] == [expected[7 * p:7 * p + 7] for p in range(1, 5)]
    assert pages[1, "html"] == pages[10**9, "html"] == expected[14:21]
    if by_hours:
        assert pages[1, "hours"] == pages[10**9, "hours"] == by_hours[21:28]
