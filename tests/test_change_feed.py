"""GET /api/v1/<entity>/changes (issue 16): every write path feeds it, in commit order, scoped, masked; an ERP
polling with the cursor under concurrent writers misses nothing and sees nothing twice (SQLite and PostgreSQL)."""
from __future__ import annotations

import datetime as dt
import random
import threading
import time

import pytest
from sqlalchemy import insert, select, text, update

from conftest import jwt_headers, login, make_app, post_csv
from app.data import change_log
from app.portal import portal_of
from test_permissions import PASSWORD, make_user


@pytest.fixture(scope="module")
def feed_app(tmp_path_factory):
    app = make_app(tmp_path_factory, "feed")
    make_user(app, "feed_sales", "Sales")
    make_user(app, "feed_sales2", "Sales")
    make_user(app, "feed_finance", "Finance")
    return app


def headers(app, user=None):
    client = app.test_client()
    return client, (jwt_headers(client) if user is None else jwt_headers(client, user, PASSWORD))


def read_all(client, h, entity, since=None, limit=None):
    """Follow `next` until a page comes back empty: (changes, the last next)."""
    changes = []
    while True:
        args = {k: v for k, v in (("since", since), ("limit", limit)) if v is not None}
        response = client.get(f"/api/v1/{entity}/changes", headers=h, query_string=args)
        assert response.status_code == 200, response.json
        page = response.json
        assert set(page) == {"changes", "next"} and isinstance(page["next"], str)
        changes += page["changes"]
        if not page["changes"]:
            return changes, page["next"]
        since = page["next"]


def user_id(app, name):
    with app.app_context():
        return app.appbuilder.sm.find_user(username=name).id


def test_shape_order_and_records_as_the_list_api_shows_them(feed_app):
    client, h = headers(feed_app)
    _, start = read_all(client, h, "customer")
    first = client.post("/api/v1/customer/", json={"name": "同步一", "phone": "13700000001", "credit_limit": "10.5",
                                                   "next_follow_up": "2026-03-01", "notes": "n"}, headers=h).json["id"]
    second = client.post("/api/v1/customer/", json={"name": "同步二"}, headers=h).json["id"]
    assert client.put(f"/api/v1/customer/{first}", json={"name": "同步一改"}, headers=h).status_code == 200
    assert client.delete(f"/api/v1/customer/{second}", headers=h).status_code == 200
    changes, end = read_all(client, h, "customer", since=start, limit=1)  # one per page: cursors chain
    assert [(c["op"], c["id"]) for c in changes] == [("create", first), ("update", first), ("delete", second)], \
        "the create of a record deleted since is left out; its delete is there"
    listed = client.get("/api/v1/customer/", headers=h, query_string={
        "q": "(filters:!((col:name,opr:eq,value:'同步一改')))"}).json["result"][0]
    assert changes[0]["record"] == listed == changes[1]["record"], "the record as it is now, as the list shows it"
    assert changes[2]["record"] is None
    assert len({c["cursor"] for c in changes}) == 3
    assert read_all(client, h, "customer", since=end)[0] == []  # `next` of the last page: at or after the last change
    again, _ = read_all(client, h, "customer", since=changes[0]["cursor"])
    assert [(c["op"], c["id"]) for c in again] == [("update", first), ("delete", second)], "resume from any cursor"


def test_many_links_users_decimals_dates_in_records(tmp_path_factory):
    from conftest import ASSETS
    app = make_app(tmp_path_factory, "feed_assets", ASSETS)
    client, h = headers(app)
    supplier = client.post("/api/v1/supplier/", json={"name": "供应商甲"}, headers=h).json["id"]
    tags = [client.post("/api/v1/tag/", json={"name": f"t{n}"}, headers=h).json["id"] for n in range(2)]
    asset = client.post("/api/v1/asset/", json={
        "code": "A-0001", "price": "12.30", "bought_on": "2024-02-03", "checked_at": "2024-02-03T04:05:06",
        "supplier": supplier, "tags": tags, "contact_phone": "13800138000", "in_service": False}, headers=h)
    assert asset.status_code == 201, asset.json
    changes, _ = read_all(client, h, "asset")
    listed = client.get("/api/v1/asset/", headers=h).json["result"]
    assert [c["record"] for c in changes if c["op"] == "create"] == listed


def test_scope_hidden_masked_and_deletes_of_other_peoples_records(feed_app):
    admin, h = headers(feed_app)
    sales, hs = headers(feed_app, "feed_sales")
    finance, hf = headers(feed_app, "feed_finance")
    _, start_s = read_all(sales, hs, "customer")
    _, start_f = read_all(finance, hf, "customer")
    mine = admin.post("/api/v1/customer/", json={"name": "我的客户", "owner": user_id(feed_app, "feed_sales"),
                                                 "phone": "13700000009", "notes": "secret"}, headers=h).json["id"]
    theirs = admin.post("/api/v1/customer/", json={"name": "别人的客户", "owner": user_id(feed_app, "feed_sales2")},
                        headers=h).json["id"]
    contact = admin.post("/api/v1/contact/", json={"name": "联系人", "customer": mine}, headers=h).json["id"]
    admin.delete(f"/api/v1/customer/{theirs}", headers=h)
    seen, _ = read_all(sales, hs, "customer", since=start_s)
    assert [(c["op"], c["id"]) for c in seen] == [("create", mine)], "another's record, and its delete, never shown"
    assert seen[0]["record"]["notes"] == "secret"
    seen_f, _ = read_all(finance, hf, "customer", since=start_f)
    record = next(c["record"] for c in seen_f if c["id"] == mine)
    assert "notes" not in record and "source" not in record and record["phone"] == "137****0009"
    assert {c["id"] for c in seen_f} >= {mine, theirs}, "Finance reads every customer"
    _, start_c = read_all(sales, hs, "contact")
    # the scope's values are kept at delete time: a delete of my record is mine to see, even though it is gone
    admin.put(f"/api/v1/customer/{mine}", json={"owner": user_id(feed_app, "feed_sales")}, headers=h)
    assert admin.delete(f"/api/v1/contact/{contact}", headers=h).status_code == 200
    assert [(c["op"], c["id"]) for c in read_all(sales, hs, "contact", since=start_c)[0]] == [("delete", contact)]
    with feed_app.app_context():
        admin_gone = admin.delete(f"/api/v1/customer/{mine}", headers=h)
    assert admin_gone.status_code == 200
    assert [c["op"] for c in read_all(sales, hs, "customer", since=start_s)[0]][-1] == "delete"


def test_deletes_through_a_link_are_scoped_by_the_linked_values_at_delete_time(feed_app):
    """Contact's Sales scope is `customer.owner: $user`: a contact's delete belongs to whoever owned its customer
    when it went — also when the database's cascade took it with its customer, in one statement with others."""
    admin, h = headers(feed_app)
    sales = {name: headers(feed_app, name) for name in ("feed_sales", "feed_sales2")}
    owner = {name: user_id(feed_app, name) for name in sales}
    start = {name: read_all(*sales[name], "contact")[1] for name in sales}
    _, admin_start = read_all(admin, h, "contact")

    def customer(name, who):
        return admin.post("/api/v1/customer/", json={"name": name, "owner": owner[who]}, headers=h).json["id"]

    def contact(name, of):
        return admin.post("/api/v1/contact/", json={"name": name, "customer": of}, headers=h).json["id"]

    moved, kept = customer("转手客户", "feed_sales"), customer("留下客户", "feed_sales")
    first, second, third = contact("先删", moved), contact("随客户删", moved), contact("留下的联系人", kept)
    assert admin.delete(f"/api/v1/contact/{first}", headers=h).status_code == 200
    assert admin.put(f"/api/v1/customer/{moved}", json={"owner": owner["feed_sales2"]}, headers=h).status_code == 200
    with feed_app.app_context():  # one statement outside the portal: the database cascades to the contacts
        engine = feed_app.appbuilder.session.get_bind()
        table = portal_of(feed_app).models["Customer"].__table__
    with engine.begin() as conn:
        conn.execute(table.delete().where(table.c.id.in_([moved, kept])))
    seen = {name: [(c["op"], c["id"]) for c in read_all(*sales[name], "contact", since=start[name])[0]
                   if c["id"] in (first, second, third)] for name in sales}
    assert seen["feed_sales"] == [("delete", first), ("delete", third)], seen
    assert seen["feed_sales2"] == [("delete", second)], seen
    everything = [(c["op"], c["id"]) for c in read_all(admin, h, "contact", since=admin_start)[0]
                  if c["id"] in (first, second, third)]
    assert everything == [("delete", first), ("delete", second), ("delete", third)]
    with feed_app.app_context():
        log = portal_of(feed_app).change_logs["Contact"]
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {log.name} WHERE customer_id__pending")).scalar() == 0


def test_a_delete_logged_before_link_values_were_kept_reads_the_linked_record(feed_app):
    """A log row from an older build (no copy of the linked value: its pending flag NULL) is scoped by the linked
    record as it is now, as it was then."""
    admin, h = headers(feed_app)
    sales = {name: headers(feed_app, name) for name in ("feed_sales", "feed_sales2")}
    start = {name: read_all(*sales[name], "contact")[1] for name in sales}
    mine = admin.post("/api/v1/customer/", json={"name": "旧日志客户", "owner": user_id(feed_app, "feed_sales")},
                      headers=h).json["id"]
    gone = admin.post("/api/v1/contact/", json={"name": "旧日志", "customer": mine}, headers=h).json["id"]
    assert admin.delete(f"/api/v1/contact/{gone}", headers=h).status_code == 200
    assert admin.put(f"/api/v1/customer/{mine}", json={"owner": user_id(feed_app, "feed_sales2")},
                     headers=h).status_code == 200
    with feed_app.app_context():
        engine = feed_app.appbuilder.session.get_bind()
        log = portal_of(feed_app).change_logs["Contact"]
    with engine.begin() as conn:  # as an older build wrote it
        conn.execute(update(log).where(log.c.record_id == gone, log.c.op == "d")
                     .values(customer_id__owner_id=None, customer_id__pending=None))
    seen = {name: [c["id"] for c in read_all(*sales[name], "contact", since=start[name])[0]] for name in sales}
    assert gone in seen["feed_sales2"] and gone not in seen["feed_sales"], seen


def test_every_write_path_feeds_it(feed_app):
    admin, h = headers(feed_app)
    _, start = read_all(admin, h, "customer")
    _, start_contacts = read_all(admin, h, "contact")
    form = login(feed_app.test_client())
    assert form.post("/customer/add", data={"name": "表单客户", "kind": "company", "level": "normal"}).status_code == 302
    imported = post_csv(admin, h, "/api/v1/customer/import", [["名称", "电话"], ["导入一", "13711110001"],
                                                              ["导入二", "13711110002"]])
    assert imported.status_code == 200, imported.json
    ids = {c["record"]["name"]: c["id"] for c in read_all(admin, h, "customer", since=start)[0] if c["op"] == "create"}
    assert set(ids) == {"表单客户", "导入一", "导入二"}
    contact = admin.post("/api/v1/contact/", json={"name": "级联", "customer": ids["导入二"]}, headers=h).json["id"]
    _, middle = read_all(admin, h, "customer")
    bulk = admin.post("/api/v1/customer/bulk", json={"action": "delete", "ids": [ids["导入二"]]}, headers=h)
    assert bulk.status_code == 200, bulk.json
    with feed_app.app_context():  # set-based SQL outside the portal's write path
        engine = feed_app.appbuilder.session.get_bind()
        table = portal_of(feed_app).models["Customer"].__table__
    with engine.begin() as conn:
        conn.execute(update(table).where(table.c.id.in_([ids["表单客户"], ids["导入一"]])).values(level="vip"))
    changes = read_all(admin, h, "customer", since=middle)[0]
    assert [(c["op"], c["id"]) for c in changes] == [("delete", ids["导入二"])] + sorted(
        [("update", ids["表单客户"]), ("update", ids["导入一"])])
    assert {c["record"]["level"] for c in changes if c["op"] == "update"} == {"vip"}
    contacts = read_all(admin, h, "contact", since=start_contacts)[0]
    assert [c["op"] for c in contacts if c["id"] == contact] == ["delete"], "the database's cascade is logged too"


def test_a_workflow_transition_feeds_it(feed_app):
    admin, h = headers(feed_app)
    customer = admin.post("/api/v1/customer/", json={"name": "工单客户"}, headers=h).json["id"]
    ticket = admin.post("/api/v1/ticket/", json={"subject": "坏了", "customer": customer}, headers=h).json["id"]
    _, start = read_all(admin, h, "ticket")
    assert admin.post(f"/api/v1/ticket/{ticket}/transitions/start", json={}, headers=h).status_code == 200
    changes = read_all(admin, h, "ticket", since=start)[0]
    assert [(c["op"], c["id"], c["record"]["status"]) for c in changes] == [("update", ticket, "in_progress")]


def test_bad_cursor_limit_and_expired_cursor(feed_app):
    admin, h = headers(feed_app)
    for name in ("游标客户", "游标客户二"):  # two changes at least, also when this test runs alone
        admin.post("/api/v1/customer/", json={"name": name}, headers=h)
    changes, end = read_all(admin, h, "customer")
    good = changes[0]["cursor"]
    tx, seq, mac = good.split("-")
    forged = f"{tx}-{int(seq, 16) + 1:x}-{mac}"  # another position under the same mac
    edited = good[:-1] + ("0" if good[-1] != "0" else "1")
    for bad in ("xyz", forged, edited, "0-1", "0-1-", "0-1-zz", "-1-0-abc", "x" * 300, good + "-0"):
        response = admin.get("/api/v1/customer/changes", headers=h, query_string={"since": bad})
        assert response.status_code == 400 and response.json["message"] == "This cursor is not valid for this feed."
    foreign = admin.get("/api/v1/contact/changes", headers=h, query_string={"since": good})
    assert foreign.status_code == 400, "a cursor of another entity's feed"
    for limit in ("0", "1001", "-1", "ten"):
        assert admin.get("/api/v1/customer/changes", headers=h, query_string={"limit": limit}).status_code == 400
    unauthenticated = feed_app.test_client().get("/api/v1/customer/changes")
    assert unauthenticated.status_code == 401
    # retention: rows older than the kept days are pruned; a cursor from before them answers 410
    with feed_app.app_context():
        portal = portal_of(feed_app)
        engine = feed_app.appbuilder.session.get_bind()
        log = portal.change_logs["Customer"]
        with engine.begin() as conn:
            conn.execute(update(log).values(changed_at=dt.datetime(2020, 1, 1)))
        assert change_log.prune(engine, portal.metadata, portal.change_logs, days=30) >= len(changes)
    gone = admin.get("/api/v1/customer/changes", headers=h, query_string={"since": good})
    assert gone.status_code == 410
    assert admin.get("/api/v1/customer/changes", headers=h, query_string={"since": end}).status_code == 200
    fresh = admin.post("/api/v1/customer/", json={"name": "修剪后"}, headers=h).json["id"]
    assert [c["id"] for c in read_all(admin, h, "customer", since=end)[0]] == [fresh]


def test_concurrent_writers_nothing_missed_nothing_twice(feed_app):
    """Writers on their own connections commit (or roll back) interleaved; one long transaction writes first and
    commits last. A poller follows the feed all along; afterwards it has every committed create exactly once and
    none of the rolled-back ones."""
    client, h = headers(feed_app)
    _, start = read_all(client, h, "customer")
    with feed_app.app_context():
        engine = feed_app.appbuilder.session.get_bind()
        table = portal_of(feed_app).models["Customer"].__table__
        log = portal_of(feed_app).change_logs["Customer"]
    postgres = engine.dialect.name == "postgresql"
    committed, rolled_back, ids, lock = set(), set(), set(), threading.Lock()
    stop = threading.Event()
    seen, positions_before_long_commit, held = [], [], set()
    long_started, long_may_commit = threading.Event(), threading.Event()
    long_pk = {}

    def add(conn, name):
        return conn.execute(insert(table).values(name=name, kind="company", level="normal", row_version=1,
                                                 created_on=dt.datetime.now(), changed_on=dt.datetime.now())
                            ).inserted_primary_key[0]

    def long_writer():
        with engine.connect() as conn:
            pk = long_pk["id"] = add(conn, "长事务")
            long_started.set()
            long_may_commit.wait(30)
            conn.commit()
            with lock:
                committed.add("长事务")

    def writer(n):
        rng = random.Random(n)
        for i in range(25):
            if i == 12 and n == 0:  # halfway: the long transaction may end; the poller has read past the others
                time.sleep(0.3)
                with lock:
                    positions_before_long_commit.append(list(seen))
                    held.update(ids)
                long_may_commit.set()
            with engine.connect() as conn:
                names = [f"w{n}-{i}-{k}" for k in range(rng.randint(1, 3))]
                pks = [add(conn, name) for name in names]
                time.sleep(rng.random() / 200)
                if rng.random() < 0.2:
                    conn.rollback()
                    with lock:
                        rolled_back.update(names)  # SQLite hands a rolled-back id out again: compare names
                else:
                    conn.commit()
                    with lock:
                        committed.update(names)
                        ids.update(pks)

    def poller():
        since = start
        while True:
            done = stop.is_set()
            page = client.get("/api/v1/customer/changes", headers=h, query_string={"since": since, "limit": 7}).json
            seen.extend(page["changes"])
            since = page["next"]
            if done and not page["changes"]:
                return
            time.sleep(0.002)

    threads = [threading.Thread(target=poller)]
    if postgres:  # SQLite has one writer at a time: a long write transaction would only make the others wait
        threads.append(threading.Thread(target=long_writer))
    threads += [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    threads[0].start()
    if postgres:
        threads[1].start()
        assert long_started.wait(30)
    else:
        long_may_commit.set()
    for t in threads[1 + postgres:]:
        t.start()
    for t in threads[1:]:
        t.join(120)
    stop.set()
    threads[0].join(120)
    created = [c["record"]["name"] for c in seen if c["op"] == "create"]
    assert len(created) == len(set(created)), "nothing twice"
    assert set(created) == committed, "nothing missed, nothing rolled back"
    assert not set(created) & rolled_back
    assert len(committed) > 50
    if postgres:
        before = positions_before_long_commit[0]
        long_name = "长事务"
        assert held and {c["id"] for c in before} & held, "others' commits were handed out while it ran"
        assert long_name not in {c["record"]["name"] for c in before}
        with engine.connect() as conn:
            seqs = dict(conn.execute(text(f"SELECT record_id, seq FROM {log.name} WHERE op = 'c'")).all())
        assert seqs[long_pk['id']] < max(seqs[c["id"]] for c in before), \
            "its sequence number is below ones already handed out: a seq cursor would have skipped it"
        order = [c["record"]["name"] for c in seen if c["op"] == "create"]
        assert order.index(long_name) > max(order.index(c["record"]["name"]) for c in before), "read in commit order"


def test_a_page_seeks_to_its_cursor_on_sqlite(feed_app):
    """The page's cost must not grow with the log: SQLite seeks the rowid (seq) after the cursor instead of walking
    an index from its start (ordering by (number, seq) did: 20–40 ms a page at 1M rows)."""
    with feed_app.app_context():
        engine = feed_app.appbuilder.session.get_bind()
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL pages by (commit number, seq) through its index")
    from app.data.change_feed import ChangeFeed
    from app.rules.access import current_viewer
    portal = portal_of(feed_app)
    with feed_app.test_request_context():
        feed = ChangeFeed(portal.spec, portal.spec.entity("Customer"), portal.models, portal.change_logs["Customer"],
                          portal.metadata, current_viewer())
        statement, _ = feed.statement("sqlite")
        compiled = statement.compile(dialect=engine.dialect)
        params = compiled.construct_params({"after_tx": 0, "after_seq": 5, "page_limit": 10})
        sql, values = str(compiled), [params[name] for name in compiled.positiontup]
    with engine.connect() as conn:
        plan = " | ".join(row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, tuple(values)))
    log = portal.change_logs["Customer"].name
    assert f"SEARCH {log} USING INTEGER PRIMARY KEY (rowid>?)" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


def test_a_page_inside_a_large_transaction_reads_only_the_page_on_postgresql(feed_app):
    """PostgreSQL pages commit by commit (`ChangeFeed._per_commit`): a page in the middle of a large import reads its
    own rows from the (tx, seq) index and stops. Joining the log to the commits and sorting by (number, seq) read,
    joined and sorted every row of the import after the cursor (170 ms a page inside a 100,000-row transaction)."""
    with feed_app.app_context():
        engine = feed_app.appbuilder.session.get_bind()
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite pages by seq, its rowid (test_a_page_seeks_to_its_cursor_on_sqlite)")
    import json as json_module
    from app.data.change_feed import ChangeFeed, _ordered_scans
    from app.rules.access import current_viewer
    portal = portal_of(feed_app)
    table, log = portal.models["Customer"].__table__, portal.change_logs["Customer"]
    now = dt.datetime(2026, 1, 1, 9, 0, 0)
    with engine.begin() as conn:  # one transaction, one commit number
        first = conn.execute(insert(table).returning(table.c.id), [
            {"name": f"大批{n}", "kind": "company", "level": "normal", "created_on": now, "changed_on": now,
             "row_version": 1} for n in range(4000)]).scalars().all()[0]
    with engine.begin() as conn:
        conn.execute(text(f"ANALYZE {log.name}"))
        conn.execute(text(f"ANALYZE {table.name}"))
        conn.execute(text(f"ANALYZE {change_log.COMMITS_TABLE}"))
        source, number = change_log.ordered_source(log, portal.metadata, "postgresql")
        middle = conn.execute(select(number, log.c.seq).select_from(source)
                              .where(log.c.record_id == first + 2000)).one()
    with feed_app.test_request_context():
        feed = ChangeFeed(portal.spec, portal.spec.entity("Customer"), portal.models, log, portal.metadata,
                          current_viewer())
        statement, _ = feed.statement("postgresql")
        sql = str(statement.params(after_tx=middle[0], after_seq=middle[1], page_limit=20).compile(
            dialect=engine.dialect, compile_kwargs={"literal_binds": True})).replace("%%", "%")
    with engine.connect() as conn, _ordered_scans(conn):  # as ChangeFeed.page runs it
        cursor = conn.connection.cursor()
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)
        plan = cursor.fetchone()[0]
        cursor.execute(sql)
        page = cursor.fetchall()
    assert [json_module.loads(row[4])["id"] for row in page if row[0] is not None] == \
        list(range(first + 2001, first + 2021))

    def nodes(node):
        yield node
        for child in node.get("Plans", ()):
            yield from nodes(child)

    read = [n["Actual Rows"] * n["Actual Loops"] for n in nodes(plan[0]["Plan"]) if n.get("Relation Name") == log.name]
    summary = [(n["Node Type"], n.get("Relation Name") or n.get("Index Name"), n.get("Plan Rows"), n["Actual Rows"],
                n["Actual Loops"]) for n in nodes(plan[0]["Plan"])]
    assert read and max(read) <= 100, summary


def test_the_pages_planner_setting_is_restored_and_never_hides_an_error(feed_app):
    """PostgreSQL: `_ordered_scans` turns bitmap scans off for the page's statement only; when the statement
    fails, the failure itself reaches the caller (restoring the setting then would fail with "current transaction
    is aborted" instead) and the rollback undoes the setting."""
    import sqlalchemy.exc
    from app.data.change_feed import _ordered_scans
    with feed_app.app_context():
        engine = feed_app.appbuilder.session.get_bind()
    if engine.dialect.name != "postgresql":
        pytest.skip("a PostgreSQL planner setting")
    setting = text("SELECT current_setting('enable_bitmapscan')")
    with engine.connect() as conn:
        with _ordered_scans(conn):
            assert conn.execute(setting).scalar() == "off"
        assert conn.execute(setting).scalar() == "on"
        with pytest.raises(sqlalchemy.exc.DataError, match="division by zero"):
            with _ordered_scans(conn):
                conn.execute(text("SELECT 1 / 0"))
        conn.rollback()
        assert conn.execute(setting).scalar() == "on"


def test_a_caught_up_client_of_a_quiet_entity_does_not_walk_other_tables_commits_again(feed_app):
    """PostgreSQL: commit numbers are shared by every table, and a page walks the commits after its cursor. A page
    that read every commit its snapshot sees hands out a `next` after the newest of them, so the next poll of a
    quiet entity starts there instead of walking again every commit since the entity's last change (300,000 other
    commits: 410 ms a poll, every poll). Nothing is missed: a change made after it is in the next page."""
    client, h = headers(feed_app)
    _, start = read_all(client, h, "customer")
    with feed_app.app_context():
        engine = feed_app.appbuilder.session.get_bind()
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite pages its own log by seq: no shared commits")
    for n in range(30):  # other tables' commits, one each
        assert client.post("/api/v1/supplier/", json={"name": f"安静{n}"}, headers=h).status_code == 201
    page = client.get("/api/v1/customer/changes", headers=h, query_string={"since": start}).json
    assert page["changes"] == [] and page["next"] != start
    from app.data.change_feed import decode_cursor
    portal = portal_of(feed_app)
    with engine.connect() as conn:
        newest = conn.execute(text(f"SELECT max(n) FROM {change_log.COMMITS_TABLE}")).scalar()
    with feed_app.app_context():
        assert decode_cursor(portal.spec.entity("Customer"), page["next"])[0] == newest
    again = client.get("/api/v1/customer/changes", headers=h, query_string={"since": page["next"]}).json
    assert again == {"changes": [], "next": page["next"]}
    made = client.post("/api/v1/customer/", json={"name": "安静之后"}, headers=h).json["id"]
    assert [(c["op"], c["id"]) for c in read_all(client, h, "customer", since=page["next"])[0]] == [("create", made)]
