"""The report cache (issue 15): hits are identical, a write to a source entity retires them in every process
(through the API, an import and a bulk action), unrelated writes do not, and scopes never share an entry unless
they come out the same. In-process (SimpleCache) and on a real redis-server; SQLite and PostgreSQL."""
from __future__ import annotations

import pytest
from conftest import ASSETS, jwt_headers, login, make_app, post_csv, sql_statements
from test_permissions import PASSWORD, make_user

from app import create_app

QUARTER = "/api/v1/reports/assets_by_quarter"  # Asset only
SUPPLIER = "/api/v1/reports/assets_by_supplier"  # Asset, titles from Supplier and users


def grouping_queries(app, call) -> int:
    """How many GROUP BY statements (a report's own query) `call()` ran."""
    with sql_statements(app) as seen:
        call()
    return sum("GROUP BY" in statement for statement in seen)


def fetch(app, client, url, headers) -> tuple[dict, bool]:
    """(the report's JSON, whether it came from the cache)."""
    got = {}

    def call():
        response = client.get(url, headers=headers)
        assert response.status_code == 200, response.json
        got.update(response.json)
    ran = grouping_queries(app, call)
    return got, ran == 0


class World:
    """An assets portal (cache on, in-process or on `redis_url`) with a few assets, two keepers and two auditors."""

    def __init__(self, tmp_path_factory, name, redis_url=None):
        config = {"REDIS_URL": redis_url} if redis_url else {"REDIS_URL": ""}
        self.app = make_app(tmp_path_factory, name, schema_dir=ASSETS, PORTAL_REPORT_CACHE_SECONDS=300, **config)
        self.client = self.app.test_client()
        self.admin = jwt_headers(self.client)
        self.keepers = [make_user(self.app, f"{name}_keeper{n}", "Keeper") for n in (1, 2)]
        for n in (1, 2):
            make_user(self.app, f"{name}_auditor{n}", "Auditor")
        self.name = name
        self.supplier = self.post("supplier", name="博世")
        self.serial = 0
        for n in range(6):
            self.add_asset(keeper=self.keepers[n % 2], supplier=self.supplier)

    def headers(self, who: str) -> dict:
        return jwt_headers(self.app.test_client(), f"{self.name}_{who}", PASSWORD)

    def post(self, entity, **values) -> int:
        response = self.client.post(f"/api/v1/{entity}/", json=values, headers=self.admin)
        assert response.status_code == 201, response.json
        return response.json["id"]

    def add_asset(self, **values) -> int:
        self.serial += 1
        return self.post("asset", code=f"A-{self.serial:04d}", quantity=1, price="10.00", bought_on="2025-02-03", **values)

    def twin(self):
        """A second app on the same database (and Redis): another gunicorn worker, with a cache of its own."""
        return create_app({**{k: self.app.config[k] for k in (
            "TESTING", "WTF_CSRF_ENABLED", "SECRET_KEY", "SQLALCHEMY_DATABASE_URI", "PORTAL_SCHEMA_DIR",
            "PORTAL_REPORT_CACHE_SECONDS", "REDIS_URL")}})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return World(tmp_path_factory, "rcache")


def total(data) -> int:
    return data["totals"]["assets"]


def test_a_hit_is_served_and_identical(world):
    app, client, h = world.app, world.client, world.admin
    first, cached = fetch(app, client, QUARTER, h)
    again, cached_again = fetch(app, client, QUARTER, h)
    assert again == first and cached_again
    browser, page = login(app.test_client()), {}
    assert grouping_queries(app, lambda: page.update(response=browser.get("/reports/assets_by_quarter"))) == 0
    assert page["response"].status_code == 200  # the page shares the API's entry (the result; the API keeps its body)
    zh, cached_zh = fetch(app, client, QUARTER + "?_l_=zh", h)
    assert not cached_zh  # another language: an entry of its own
    filtered, cached_filtered = fetch(app, client, QUARTER + "?from=2025-01-01&to=2025-12-31", h)
    assert not cached_filtered  # other parameters too


def test_writes_to_a_source_retire_and_unrelated_writes_do_not(world):
    app, client, h = world.app, world.client, world.admin
    before, _ = fetch(app, client, QUARTER, h)
    assert fetch(app, client, QUARTER, h)[1]
    # another entity, not read by the report: still a hit
    world.post("tag", name=f"tag-{world.serial}")
    assert fetch(app, client, QUARTER, h) == (before, True)
    # the API: create, update, delete
    new = world.add_asset(keeper=world.keepers[0])
    created, cached = fetch(app, client, QUARTER, h)
    assert not cached and total(created) == total(before) + 1
    assert client.put(f"/api/v1/asset/{new}", json={"quantity": 5}, headers=h).status_code == 200
    assert fetch(app, client, QUARTER, h)[1] is False
    assert client.delete(f"/api/v1/asset/{new}", headers=h).status_code == 200
    deleted, cached = fetch(app, client, QUARTER, h)
    assert not cached and total(deleted) == total(before)


def test_an_import_and_a_bulk_action_retire(world):
    app, client, h = world.app, world.client, world.admin
    before, _ = fetch(app, client, QUARTER, h)
    imported = post_csv(client, h, "/api/v1/asset/import",
                        [["code", "quantity", "price", "bought_on"]] + [[f"A-{9000 + n}", "1", "1.00", "2025-03-01"] for n in range(3)])
    assert imported.status_code == 200 and imported.json["created"] == 3, imported.json
    after_import, cached = fetch(app, client, QUARTER, h)
    assert not cached and total(after_import) == total(before) + 3
    assert fetch(app, client, QUARTER, h)[1]
    ids = [r["id"] for r in client.get("/api/v1/asset/", headers=h, query_string={
        "q": "(filters:!((col:code,opr:sw,value:'A-90')))"}).json["result"]]
    assert len(ids) == 3
    done = client.post("/api/v1/asset/bulk", json={"action": "delete", "ids": ids}, headers=h)
    assert done.status_code == 200, done.json
    after_bulk, cached = fetch(app, client, QUARTER, h)
    assert not cached and total(after_bulk) == total(before)


def test_a_linked_title_change_retires_reports_showing_it(world):
    """A report grouped by a link shows the linked record's title: renaming it retires that report only."""
    app, client, h = world.app, world.client, world.admin
    fetch(app, client, SUPPLIER, h), fetch(app, client, QUARTER, h)
    assert client.put(f"/api/v1/supplier/{world.supplier}", json={"name": "Bosch"}, headers=h).status_code == 200
    renamed, cached = fetch(app, client, SUPPLIER, h)
    assert not cached and "Bosch" in {r["supplier"]["label"] for r in renamed["rows"]}
    assert fetch(app, client, QUARTER, h)[1]


def test_scopes_never_share_and_equal_scopes_do(world):
    app, client = world.app, world.client
    keeper1, keeper2 = world.headers("keeper1"), world.headers("keeper2")
    own = {}
    for who, h in (("keeper1", keeper1), ("keeper2", keeper2)):
        mine, cached = fetch(app, client, SUPPLIER, h)
        assert not cached, who  # another keeper's entry (another row scope) is never served
        own[who] = total(mine)
        assert own[who] == client.get("/api/v1/asset/", headers=h).json["count"]
        assert fetch(app, client, SUPPLIER, h) == (mine, True)  # their own entry, reused
    admin, cached = fetch(app, client, SUPPLIER, world.admin)
    assert total(admin) > max(own.values())
    # two auditors: no row scope, the same hidden fields: one entry for both
    auditor1, auditor2 = world.headers("auditor1"), world.headers("auditor2")
    first, _ = fetch(app, client, QUARTER, auditor1)
    assert "value" not in first["totals"]  # price is hidden from auditors
    assert fetch(app, client, QUARTER, auditor2) == (first, True)
    assert fetch(app, client, QUARTER, world.admin)[0] != first  # the admin sees prices: not the auditors' entry


def test_another_process_stops_serving_after_a_write(world):
    app, client, h = world.app, world.client, world.admin
    other = world.twin()
    other_client = other.test_client()
    other_h = jwt_headers(other_client)
    seen, _ = fetch(other, other_client, QUARTER, other_h)
    assert fetch(other, other_client, QUARTER, other_h) == (seen, True)
    world.add_asset(keeper=world.keepers[1])  # written through the first app only
    fresh, cached = fetch(other, other_client, QUARTER, other_h)
    assert not cached and total(fresh) == total(seen) + 1


def test_redis_is_shared_by_processes_and_retired_by_writes(tmp_path_factory, redis_server):
    world = World(tmp_path_factory, "rcache_redis", redis_url=redis_server.url)
    app, client, h = world.app, world.client, world.admin
    other = world.twin()
    other_client = other.test_client()
    other_h = jwt_headers(other_client)
    first, _ = fetch(app, client, QUARTER, h)
    assert fetch(other, other_client, QUARTER, other_h) == (first, True)  # stored by the first app, in Redis
    assert any(key.startswith(b"portal-report:") for key in redis_server.client().keys("*"))
    world.post("tag", name="unrelated")
    assert fetch(other, other_client, QUARTER, other_h)[1]
    world.add_asset(keeper=world.keepers[0])  # written through the first app
    fresh, cached = fetch(other, other_client, QUARTER, other_h)
    assert not cached and total(fresh) == total(first) + 1
    assert fetch(app, client, QUARTER, h) == (fresh, True)  # the other process's fresh result, shared
    keeper1, keeper2 = world.headers("keeper1"), world.headers("keeper2")
    mine, cached = fetch(app, client, SUPPLIER, keeper1)
    theirs, cached_theirs = fetch(other, other_client, SUPPLIER, keeper2)
    assert not cached and not cached_theirs and total(mine) != total(fresh)
    assert fetch(other, other_client, SUPPLIER, keeper1) == (mine, True)
    redis_server.stop()  # Redis away: reports are still served, from the database
    assert fetch(app, client, QUARTER, h) == (fresh, False)


class _Planted:
    """What someone who can write to Redis would plant: unpickling it runs code (here: creates a file)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_redis_entries_are_unpickled_only_with_the_portals_signature(tmp_path_factory, redis_server, tmp_path):
    """Report results are pickled on Redis; an entry planted or altered there (pickle runs code) is never
    unpickled: it reads as a miss and the report is computed again."""
    import pickle
    world = World(tmp_path_factory, "rcache_signed", redis_url=redis_server.url)
    app, client, h = world.app, world.client, world.admin
    first, _ = fetch(app, client, QUARTER, h)
    assert fetch(app, client, QUARTER, h) == (first, True)
    redis = redis_server.client()
    keys = [k for k in redis.keys("*") if k.startswith(b"portal-report:")]
    assert keys and all(redis.get(k)[:1] == b"#" for k in keys)  # signed
    marker = tmp_path / "planted"
    for key in keys:  # cachelib's own unsigned format, and a signed one with the tag of other bytes
        redis.set(key, b"!" + pickle.dumps(_Planted(str(marker))))
    assert fetch(app, client, QUARTER, h) == (first, False) and not marker.exists()
    for key in [k for k in redis.keys("*") if k.startswith(b"portal-report:")]:
        value = redis.get(key)
        redis.set(key, value[:33] + pickle.dumps(_Planted(str(marker))))
    assert fetch(app, client, QUARTER, h) == (first, False) and not marker.exists()
    assert fetch(app, client, QUARTER, h) == (first, True)  # its own entries, written again, are read
    # a valid entry copied under another key (another scope's, an older version's) is not served there
    keeper = world.headers("keeper1")
    fetch(app, client, SUPPLIER, keeper)
    before = {k: redis.get(k) for k in redis.keys("*") if k.startswith(b"portal-report:")}
    fetch(app, client, SUPPLIER, h)
    theirs = [k for k in redis.keys("*") if k.startswith(b"portal-report:") and k not in before]
    assert theirs
    for key in theirs:  # the admin's entries replaced by the keeper's (signed, but for other keys)
        redis.set(key, next(v for k, v in before.items() if k.endswith(b":body") == key.endswith(b":body")))
    assert fetch(app, client, SUPPLIER, h)[1] is False


def test_the_cache_can_be_turned_off(tmp_path_factory):
    app = make_app(tmp_path_factory, "rcache_off", schema_dir=ASSETS, PORTAL_REPORT_CACHE_SECONDS=0)
    client = app.test_client()
    h = jwt_headers(client)
    assert [fetch(app, client, QUARTER, h)[1] for _ in range(2)] == [False, False]


def test_a_write_to_what_a_row_scope_follows_retires(tmp_path_factory):
    """A foreman sees the labour entries of the sites they manage (`project.manager: $user`): handing them another
    site writes only Project, yet their labour_by_worker result (LabourEntry, Worker) must change."""
    from test_bulk import Labour

    app = make_app(tmp_path_factory, "rcache_labour", PORTAL_REPORT_CACHE_SECONDS=300, REDIS_URL="")
    labour = Labour(app)
    entries = labour.add_entries(labour.site_a, 2) + labour.add_entries(labour.site_b, 3)
    for step in ("submit", "approve"):
        done = labour.bulk(labour.admin, {"action": "transition", "transition": step, "ids": entries})
        assert done.status_code == 200, done.json
    url = "/api/v1/reports/labour_by_worker"
    mine, _ = fetch(app, labour.client, url, labour.foreman)
    assert fetch(app, labour.client, url, labour.foreman) == (mine, True)
    handed = labour.client.put(f"/api/v1/project/{labour.site_b}", json={"manager": labour.foreman_id}, headers=labour.admin)
    assert handed.status_code == 200, handed.json
    both, cached = fetch(app, labour.client, url, labour.foreman)
    assert not cached
    assert both["totals"]["days"] == mine["totals"]["days"] + 3  # one day each


MINE_SCHEMA = """\
version: 1
module: mine
entities:
  Job:
    title: name
    fields:
      name: {type: string}
      keeper: {type: user, default: current_user}
      state: {type: enum, choices: {a: {en: A, zh: 甲}, b: {en: B, zh: 乙}}}
reports:
  my_jobs:
    entity: Job
    group_by: [state]
    measures: {jobs: count}
    filter: {keeper: $user}
roles:
  Boss:
    can: {Job: all}
    reports: [my_jobs]
"""


def test_a_report_filtered_by_user_is_never_shared_between_users(tmp_path_factory):
    """`filter: {keeper: $user}` makes the result each user's own, whatever their scopes: two users who read every
    row still get their own numbers (the check for `$user` read the text '$user' in the parsed report, where it is
    a `Relative`: the second user was served the first one's result)."""
    folder = tmp_path_factory.mktemp("mine-schema")
    (folder / "mine.yaml").write_text(MINE_SCHEMA, encoding="utf-8")
    app = make_app(tmp_path_factory, "rcache_mine", schema_dir=folder, PORTAL_REPORT_CACHE_SECONDS=300, REDIS_URL="")
    totals = {}
    for user, jobs in (("boss1", 2), ("boss2", 1)):
        make_user(app, user, "Boss")
        client = app.test_client()
        h = jwt_headers(client, user, PASSWORD)
        for n in range(jobs):
            assert client.post("/api/v1/job/", json={"name": f"{user}-{n}", "state": "a"}, headers=h).status_code == 201
    for user in ("boss1", "boss2", "boss1"):
        client = app.test_client()
        data, _ = fetch(app, client, "/api/v1/reports/my_jobs", jwt_headers(client, user, PASSWORD))
        totals.setdefault(user, []).append(data["totals"]["jobs"])
    assert totals == {"boss1": [2, 2], "boss2": [1]}
