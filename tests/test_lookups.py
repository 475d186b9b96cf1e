"""Type-ahead pickers: the paged lookup endpoint, scoped choices, validated ids, and pages that never load a linked table."""
from __future__ import annotations

import datetime as dt
import json
import re
from contextlib import contextmanager

import pytest
from conftest import ASSETS, jwt_headers, login, make_app
from app.portal import portal_of
from sqlalchemy import event, func, select
from test_permissions import PASSWORD, make_user

WORKERS = 300


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Two foremen with a site each, 300 workers (bulk), and one labour entry per site."""
    app = make_app(tmp_path_factory, "lookups")
    ids = {name: make_user(app, name, "SiteForeman") for name in ("fm_north", "fm_south")}
    ids["sales"] = make_user(app, "sales_lk", "Sales")
    client = app.test_client()
    h = jwt_headers(client)

    def post(entity, **payload):
        response = client.post(f"/api/v1/{entity}/", json=payload, headers=h)
        assert response.status_code == 201, response.json
        return response.json["id"]

    ids["north"] = post("project", code="N-1", name="北区工地", manager=ids["fm_north"])
    ids["north2"] = post("project", code="N-2", name="北区二期", manager=ids["fm_north"])
    ids["south"] = post("project", code="S-1", name="南区工地", manager=ids["fm_south"])
    sites = [ids["north"], ids["north2"], ids["south"]]  # entries take workers of their project (the worker filter)
    ids["odd"] = post("worker", name="100%_Mixer", trade="general", day_rate="300", projects=sites)  # LIKE wildcards in a title
    ids["latin"] = post("worker", name="Zhang Wei", trade="mason", day_rate="300", projects=sites)
    add_workers(app, WORKERS)
    ids["w1"] = worker_id(app, "工人001")
    ids["n_entry"] = post("labour_entry", work_date="2026-11-02", worker=ids["w1"], project=ids["north"],
                          hours="8", days="1", rate="300")
    ids["s_entry"] = post("labour_entry", work_date="2026-11-02", worker=ids["latin"], project=ids["south"],
                          hours="8", days="1", rate="300")
    return app, ids


def add_workers(app, count: int, prefix: str = "工人") -> None:
    """Bulk rows straight into the table: the tests measure pages, not how workers are created."""
    with app.app_context():
        table = portal_of(app).models["Worker"].__table__
        now = dt.datetime.now()
        with app.appbuilder.session.get_bind().begin() as conn:
            names = [f"{prefix}{n:03d}" for n in range(1, count + 1)]
            last = conn.execute(select(func.max(table.c.id))).scalar() or 0
            conn.execute(table.insert(), [{"name": name, "trade": "general", "day_rate": 300, "active": True,
                                           "created_on": now, "changed_on": now} for name in names])
            # on every project, so the labour entry's worker filter (active workers of its project) takes them
            pairs = portal_of(app).models["Worker"].projects.property.secondary
            workers = conn.execute(select(table.c.id).where(table.c.id > last)).scalars().all()
            projects = conn.execute(select(portal_of(app).models["Project"].__table__.c.id)).scalars().all()
            if projects:
                conn.execute(pairs.insert(), [{"left_id": w, "right_id": p} for w in workers for p in projects])


def worker_id(app, name: str) -> int:
    with app.app_context():
        model = portal_of(app).models["Worker"]
        return app.appbuilder.session.scalar(select(model.id).where(model.name == name))


def as_user(app, username):
    return login(app.test_client(), username, PASSWORD)


def titles(response) -> list[str]:
    assert response.status_code == 200, response.data[:300]
    return [r["title"] for r in response.json["results"]]


def test_lookup_pages_through_titles_in_order(world):
    app, ids = world
    ui = login(app.test_client())
    first = ui.get("/labour_entry/lookup/worker").json
    assert len(first["results"]) == 20 and first["more"] is True
    assert set(first["results"][0]) == {"id", "title"}
    assert [r["title"] for r in first["results"]] == sorted(r["title"] for r in first["results"])
    second = ui.get("/labour_entry/lookup/worker?page=2").json
    assert not {r["id"] for r in first["results"]} & {r["id"] for r in second["results"]}
    assert first["results"][-1]["title"] <= second["results"][0]["title"]
    total = WORKERS + 2
    last_page = -(-total // 20)
    last = ui.get(f"/labour_entry/lookup/worker?page={last_page}").json
    assert last["more"] is False and len(last["results"]) == total - 20 * (last_page - 1)
    assert ui.get(f"/labour_entry/lookup/worker?page={last_page + 1}").json == {"results": [], "more": False}


def test_lookup_searches_case_insensitively_anywhere_in_the_title(world):
    app, ids = world
    ui = login(app.test_client())
    assert titles(ui.get("/labour_entry/lookup/worker", query_string={"q": "zhang"})) == ["Zhang Wei"]
    assert titles(ui.get("/labour_entry/lookup/worker", query_string={"q": "WEI"})) == ["Zhang Wei"]
    assert titles(ui.get("/labour_entry/lookup/worker", query_string={"q": "人29"})) == [f"工人29{d}" for d in range(10)]
    # % and _ are matched literally, not as wildcards
    assert titles(ui.get("/labour_entry/lookup/worker", query_string={"q": "0%_"})) == ["100%_Mixer"]
    assert titles(ui.get("/labour_entry/lookup/worker", query_string={"q": "%"})) == ["100%_Mixer"]
    assert titles(ui.get("/labour_entry/lookup/worker", query_string={"q": "no such worker"})) == []
    many = ui.get("/worker/lookup/projects", query_string={"q": "北区"}).json
    assert [r["title"] for r in many["results"]] == ["北区二期", "北区工地"] and many["more"] is False


def test_user_fields_look_up_users_by_username_or_name(world):
    app, ids = world
    ui = login(app.test_client())
    found = ui.get("/project/lookup/manager", query_string={"q": "fm_"}).json["results"]
    assert {r["id"] for r in found} == {ids["fm_north"], ids["fm_south"]}
    assert {r["title"] for r in found} == {"fm_north Test", "fm_south Test"}  # shown by name, as FAB shows users
    assert titles(ui.get("/project/lookup/manager", query_string={"q": "ada"})) == ["Ada Admin"]


def test_lookup_applies_the_target_row_scope(world):
    app, ids = world
    north = as_user(app, "fm_north")
    assert titles(north.get("/labour_entry/lookup/project")) == ["北区二期", "北区工地"]
    assert titles(north.get("/worker/lookup/projects", query_string={"q": "工地"})) == ["北区工地"]
    south = as_user(app, "fm_south")
    assert titles(south.get("/labour_entry/lookup/project")) == ["南区工地"]
    assert len(titles(south.get("/labour_entry/lookup/worker"))) == 20  # workers are not scoped for foremen


@pytest.mark.parametrize("url,status", [
    ("/labour_entry/lookup/hours", 404),      # not a link
    ("/labour_entry/lookup/nothing", 404),    # not a field
    ("/labour_entry/lookup/worker?page=0", 400),
    ("/labour_entry/lookup/worker?page=-1", 400),
    ("/labour_entry/lookup/worker?page=abc", 400),
    ("/labour_entry/lookup/worker?page=1.5", 400),
    ("/labour_entry/lookup/worker?page=99999999999999999999", 400),
    ("/labour_entry/lookup/worker?page=", 400),
    ("/labour_entry/lookup/worker?q=" + "x" * 101, 400),
    ("/labour_entry/lookup/worker?q=a%00b", 400),
])
def test_lookup_refuses_bad_requests_with_a_clear_message(world, url, status):
    app, ids = world
    response = login(app.test_client()).get(url)
    assert response.status_code == status
    assert response.json["message"]


def test_lookup_messages_are_localized(world):
    app, ids = world
    response = login(app.test_client()).get("/labour_entry/lookup/worker?page=x&_l_=zh")
    assert response.status_code == 400 and "整数" in response.json["message"]


def test_lookup_needs_read_permission_and_hides_hidden_fields(world, tmp_path_factory, tmp_path):
    app, ids = world
    assert app.test_client().get("/labour_entry/lookup/worker").status_code == 302  # anonymous: to the login page
    sales = as_user(app, "sales_lk")  # Sales may not read labour entries
    refused = sales.get("/labour_entry/lookup/worker")
    assert refused.status_code in (302, 403) and b"results" not in refused.data
    # a role that hides a link field cannot look up its choices either
    schema = tmp_path / "assets.yaml"
    schema.write_text((ASSETS / "assets.yaml").read_text(encoding="utf-8").replace(
        "    hide: {Asset: [price, condition]}", "    hide: {Asset: [price, condition, supplier]}"), encoding="utf-8")
    assets = make_app(tmp_path_factory, "lookups_hidden", schema_dir=tmp_path)
    make_user(assets, "auditor_lk", "Auditor")
    auditor = as_user(assets, "auditor_lk")
    assert auditor.get("/asset/lookup/supplier").status_code == 404
    assert auditor.get("/asset/lookup/keeper").status_code == 200
    assert login(assets.test_client()).get("/asset/lookup/supplier").status_code == 200


def picker(html: str, name: str) -> str:
    match = re.search(rf'<select [^>]*name="{name}"[^>]*>.*?</select>', html, re.S)
    assert match, f"no picker {name}"
    return match.group(0)


def test_edit_form_holds_only_the_chosen_records(world):
    app, ids = world
    ui = login(app.test_client())
    html = ui.get(f"/labour_entry/edit/{ids['n_entry']}").text
    worker = picker(html, "worker")
    assert f'data-lookup-url="/labour_entry/lookup/worker"' in worker
    assert re.findall(r"<option[^>]*>([^<]*)</option>", worker) == ["", "工人001"]
    assert f'<option selected value="{ids["w1"]}">工人001</option>' in worker
    assert "工人002" not in html
    project = picker(html, "project")
    assert re.findall(r"<option[^>]*>([^<]*)</option>", project) == ["", "北区工地"]


def test_many_field_holds_only_its_chosen_records_and_saves_ids(world):
    app, ids = world
    ui = login(app.test_client())
    worker = ids["latin"]
    form = {"name": "Zhang Wei", "trade": "mason", "day_rate": "300", "projects": [str(ids["north"]), str(ids["south"])]}
    assert ui.post(f"/worker/edit/{worker}", data=form).status_code == 302
    html = ui.get(f"/worker/edit/{worker}").text
    options = re.findall(r"<option selected value=\"(\d+)\">([^<]*)</option>", picker(html, "projects"))
    assert sorted(options) == sorted([(str(ids["north"]), "北区工地"), (str(ids["south"]), "南区工地")])
    assert "北区二期" not in html


def test_filtered_list_shows_the_chosen_record_only(world):
    app, ids = world
    ui = login(app.test_client())
    html = ui.get(f"/labour_entry/list/?_flt_0_worker={ids['w1']}").text
    form_fields = json.loads(re.search(r"new AdminFilters\(\s*'#filter_form',\s*.*?,\s*(\{.*?\}),\s*\{", html, re.S).group(1))
    options = re.findall(r"<option[^>]*>([^<]*)</option>", form_fields["worker"])
    assert options == ["", "工人001"] and "portal-lookup" in form_fields["project"]
    assert html.count("/labour_entry/show/") == 1  # the filter still filters


def post_entry(client, **overrides):
    data = {"work_date": "2026-11-03", "hours": "8", "days": "1", "rate": "300"}
    data.update(overrides)
    return client.post("/labour_entry/add", data=data)


def entry_count(app) -> int:
    client = app.test_client()
    return client.get("/api/v1/labour_entry/", headers=jwt_headers(client)).json["count"]


def form_errors(html: str) -> str:
    return " ".join(" ".join(re.findall(r'<div class="alert alert-danger">(.*?)</div>', html, re.S)).split())


@pytest.mark.parametrize("project,message", [
    ("south", "No record with id"),   # exists, outside the foreman's sites
    (None, "No record with id"),      # does not exist
    ("abc", "Must be the id of a record."),
    ("", "This field is required."),
])
def test_submitted_ids_are_checked_against_the_scope(world, project, message):
    app, ids = world
    north = as_user(app, "fm_north")
    before = entry_count(app)
    value = str(ids[project]) if project in ids else ("999999" if project is None else project)
    response = post_entry(north, worker=str(ids["w1"]), project=value, work_date="2026-11-04")
    assert response.status_code == 200
    assert message in form_errors(response.text)
    assert entry_count(app) == before


def test_a_related_add_cannot_smuggle_an_out_of_scope_link(world):
    """FAB's "add" from a related panel fills the link from ?_flt_0_<field>; it is checked like a picked id."""
    app, ids = world
    north = as_user(app, "fm_north")
    before = entry_count(app)
    response = north.post(f"/labour_entry/add?_flt_0_project={ids['south']}",
                          data={"work_date": "2026-11-05", "worker": str(ids["w1"]), "hours": "8", "days": "1",
                                "rate": "300"})
    assert response.status_code == 200 and entry_count(app) == before
    allowed = north.post(f"/labour_entry/add?_flt_0_project={ids['north']}",
                         data={"work_date": "2026-11-05", "worker": str(ids["w1"]), "hours": "8", "days": "1",
                               "rate": "300"})
    assert allowed.status_code == 302 and entry_count(app) == before + 1


def test_a_picked_id_in_scope_is_saved(world):
    app, ids = world
    north = as_user(app, "fm_north")
    before = entry_count(app)
    response = post_entry(north, worker=str(ids["w1"]), project=str(ids["north2"]), work_date="2026-11-06")
    assert response.status_code == 302, form_errors(response.text)
    assert entry_count(app) == before + 1


# -- cost: pages must not grow with the linked tables ---------------------------------------------

@contextmanager
def sql_log(app):
    """Every statement the app's engine runs, and how many Worker/Project objects the ORM loads."""
    statements, loaded = [], []
    models = portal_of(app).models
    with app.app_context():
        engine = app.appbuilder.session.get_bind()

    def on_execute(conn, cursor, statement, parameters, context, executemany):
        statements.append(" ".join(statement.split()))

    def on_load(target, context):
        loaded.append(type(target).__name__)

    event.listen(engine, "before_cursor_execute", on_execute)
    for name in ("Worker", "Project"):
        event.listen(models[name], "load", on_load)
    try:
        yield statements, loaded
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        for name in ("Worker", "Project"):
            event.remove(models[name], "load", on_load)


def unbounded_reads(statements: list[str], table: str) -> list[str]:
    """Statements reading `table` with neither a LIMIT nor a condition on its id: they read the whole table."""
    reads = [s for s in statements if s.startswith("SELECT") and re.search(rf"\b(FROM|JOIN) {table}\b", s)]
    bounded = re.compile(rf"\bLIMIT\b|\b{table}\.id (=|IN)")
    return [s for s in reads if not bounded.search(s)]


# page -> the linked tables it must not read whole (a list's own table is the paging code's business)
PAGES = {
    "/labour_entry/list/": ("worker", "project"),
    "/labour_entry/add": ("worker", "project"),
    "/labour_entry/edit/{n_entry}": ("worker", "project"),
    "/labour_entry/list/?_flt_0_worker={w1}&_flt_0_project={north}": ("worker", "project"),
    "/worker/list/": ("project",),
    "/worker/add": ("project",),
}


def page_statements(app, client, ids) -> tuple[dict, list]:
    with sql_log(app) as (statements, loaded):
        by_page = {}
        for url in PAGES:
            start = len(statements)
            assert client.get(url.format(**ids)).status_code == 200, url
            by_page[url] = statements[start:]
    return by_page, loaded


@pytest.mark.parametrize("user", ["admin", "fm_north"])
def test_list_and_form_pages_never_read_a_whole_linked_table(world, user):
    app, ids = world
    client = login(app.test_client()) if user == "admin" else as_user(app, user)
    page_statements(app, client, ids)  # warm up: permissions, caches
    before, loaded = page_statements(app, client, ids)
    for url, tables in PAGES.items():
        for table in tables:
            assert unbounded_reads(before[url], table) == [], (url, table)
    assert len(loaded) <= 40, f"{len(loaded)} Worker/Project objects loaded"
    add_workers(app, 50, prefix="追加工人")
    after, _ = page_statements(app, client, ids)
    assert {url: len(s) for url, s in after.items()} == {url: len(s) for url, s in before.items()}
