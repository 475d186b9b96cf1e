"""The change feed (issue 16): a page of 1,000 changes at 1M logged rows vs the hand-written keyset query; the
write overhead of the log triggers.

Page: 1M customers inserted (the triggers log 1M creates), then a page of 1,000 changes from a cursor in the middle
of the log. Anchor: the hand-written keyset query on a raw DB-API cursor (the log joined to the record and to the
owner's username, the same columns, `(tx, seq) > cursor` and on PostgreSQL `tx < pg_snapshot_xmin(...)`, ORDER BY
tx, seq LIMIT 1000, fetchall). Measured: `ChangeFeed.page` (what the endpoint runs: the statement, the rows, the
records as the API shows them written as JSON text, the signed cursors), and for reference: the feed's statement
alone (executed and fetched: what the database does, JSON included), a hand-written endpoint (the anchor's rows
made into the same records and cursors in plain Python and `json.dumps`), and the whole HTTP request. Goal:
page / anchor <= 1.5.
Write overhead: 20,000 customers inserted in one transaction (executemany) with the triggers and without them
(dropped for the baseline), interleaved. Median of interleaved runs with (min–max).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from sqlalchemy import delete, insert, select

from app.data import change_log
from app.data.change_feed import ChangeFeed, _ordered_scans, _Signer, encode_cursor
from app.data.change_log import OPS
from app.portal import portal_of
from app.rules.access import current_viewer

from .common import interleaved, median, pg_schema, release, row, spread
from .reports import _app

ROWS = int(os.environ.get("PORTAL_BENCH_FEED_ROWS", 1_000_000))
PAGE = 1000
WRITE_ROWS = 20_000
REPEAT = 7
BATCH = 20_000


def _customers(start: int, count: int, now) -> list[dict]:
    return [{"name": f"客户{n}", "kind": "company", "level": ("vip", "normal", "potential")[n % 3],
             "phone": f"+86139{n:08d}", "owner_id": 1, "credit_limit": n % 1000, "since": now.date(),
             "created_on": now, "changed_on": now, "row_version": 1} for n in range(start, start + count)]


def fill(app, rows: int) -> float:
    table = portal_of(app).models["Customer"].__table__
    now = dt.datetime(2026, 1, 1, 9, 0, 0)
    start = time.perf_counter()
    with app.app_context():
        engine = app.appbuilder.session.get_bind()
        for first in range(0, rows, BATCH):
            with engine.begin() as conn:
                conn.execute(insert(table), _customers(first, min(BATCH, rows - first), now))
    return time.perf_counter() - start


def anchor_sql(app, dialect: str) -> str:
    """The hand-written keyset query: the same rows and columns the feed reads."""
    table = portal_of(app).models["Customer"].__table__
    log = portal_of(app).change_logs["Customer"]
    record = ", ".join(f"c.{c.name}" for c in table.columns if c.name != "id")
    if dialect == "sqlite":  # one writer at a time: seq (the rowid) is commit order
        source, number, after, order = f"{log.name} l", "l.tx", "l.seq > ?", "l.seq"
    else:  # commit numbers (app/data/change_log.py)
        source, number, after, order = (f"{log.name} l JOIN {change_log.COMMITS_TABLE} k ON k.tx = l.tx", "k.n",
                                        "(k.n, l.seq) > (%s, %s)", "k.n, l.seq")
    return (f"SELECT l.seq, {number}, l.op, l.record_id, {record}, u.username FROM {source} "
            f"LEFT JOIN {table.name} c ON c.id = l.record_id AND l.op != 'd' LEFT JOIN ab_user u ON u.id = c.owner_id "
            f"WHERE {after} ORDER BY {order} LIMIT {PAGE}")


def measure_page(app, label: str) -> list[str]:
    portal = portal_of(app)
    fill_s = fill(app, ROWS)
    with app.app_context():
        engine = app.appbuilder.session.get_bind()
        dialect = engine.dialect.name
        log = portal.change_logs["Customer"]
        source, number = change_log.ordered_source(log, portal.metadata, dialect)
        with engine.connect() as conn:  # a position in the middle: (commit number, seq)
            middle = conn.execute(select(number, log.c.seq).select_from(source)
                                  .order_by(*change_log.commit_order(log, number, dialect))
                                  .offset(ROWS // 2).limit(1)).first()
    position = (middle[0], middle[1])
    sql = anchor_sql(app, dialect)
    params = (position[1],) if dialect == "sqlite" else position
    spec, entity = portal.spec, portal.spec.entity("Customer")
    client = app.test_client()
    token = client.post("/api/v1/security/login", json={"username": "bench", "password": "bench-pass",
                                                         "provider": "db"}).json["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    with app.test_request_context():
        cursor_text = encode_cursor(entity, position)
    seen = {}

    def anchor_rows() -> list:
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(sql, params)
            rows = cursor.fetchall()
            raw.rollback()
            return rows
        finally:
            raw.close()

    def anchor():
        seen["anchor"] = len(anchor_rows())

    with app.test_request_context():
        statement, _ = ChangeFeed(spec, entity, portal.models, log, portal.metadata, current_viewer()).prepared(dialect)
    statement_values = {"after_tx": position[0], "after_seq": position[1], "page_limit": PAGE}

    def query():
        with engine.connect() as conn, _ordered_scans(conn):  # as ChangeFeed.page runs it
            rows = conn.execute(statement, statement_values).cursor.fetchall()
            seen["query"] = sum(row[0] is not None for row in rows)  # PostgreSQL adds a last row: the newest commit

    handwritten = _handwritten_endpoint(app, dialect, entity)

    def endpoint():
        seen["endpoint"] = handwritten(anchor_rows())

    def page():
        with app.test_request_context():
            session = app.appbuilder.session
            feed = ChangeFeed(spec, entity, portal.models, log, portal.metadata, current_viewer())
            seen["page"] = len(feed.page(session, cursor_text, PAGE).changes)
            session.rollback()
            session.remove()

    def http():
        response = client.get("/api/v1/customer/changes", headers=headers, query_string={"since": cursor_text, "limit": PAGE})
        assert response.status_code == 200
        seen["http"] = len(response.json["changes"])

    times = interleaved({"anchor": anchor, "query": query, "page": page, "endpoint": endpoint, "http": http}, REPEAT)
    assert seen == dict.fromkeys(times, PAGE), seen
    ratio = median(times["page"]) / median(times["anchor"])
    return [row(label, f"{ROWS:,}", f"{fill_s:.0f}", spread(times["anchor"], 1000, 1), spread(times["query"], 1000, 1),
                f"{median(times['query']) / median(times['anchor']):.2f}", spread(times["page"], 1000, 1),
                f"**{ratio:.2f}**", spread(times["endpoint"], 1000, 1),
                f"{median(times['endpoint']) / median(times['anchor']):.2f}", spread(times["http"], 1000, 1))]


def _handwritten_endpoint(app, dialect: str, entity):
    """The anchor's rows -> the feed's JSON as a developer would write it by hand: a dict per record (datetimes and
    decimals as the API writes them, the owner as {id, username}), a keyed-hash cursor per change, json.dumps.
    Returns the number of changes written."""
    table = portal_of(app).models["Customer"].__table__
    names = [c.name for c in table.columns if c.name != "id"]
    with app.test_request_context():
        sign = _Signer(entity)

    def text(value):
        if isinstance(value, dt.datetime):
            return value.isoformat()
        if isinstance(value, str) and len(value) >= 19 and value[10] == " ":  # SQLite's stored datetime
            return value.replace(" ", "T").removesuffix(".000000")
        if isinstance(value, dt.date):
            return value.isoformat()
        if isinstance(value, Decimal):
            return str(value)
        return value

    def write(rows) -> int:
        changes = []
        for seq, number, op, pk, *values, username in rows:
            record = None
            if op != "d":
                record = {"id": pk}
                for name, value in zip(names, values):
                    record[name] = text(value)
                record["credit_limit"] = None if values[names.index("credit_limit")] is None else \
                    f"{values[names.index('credit_limit')]:.2f}"
                owner = record.pop("owner_id")
                record["owner"] = None if owner is None else {"id": owner, "username": username}
            changes.append({"op": OPS[op], "id": pk, "record": record, "cursor": f"{number:x}-{seq:x}-{sign(number, seq)}"})
        json.dumps({"changes": changes, "next": changes[-1]["cursor"]}, ensure_ascii=False)
        return len(changes)

    return write


def measure_writes(app, label: str) -> list[str]:
    portal = portal_of(app)
    table = portal.models["Customer"].__table__
    now = dt.datetime(2026, 1, 1, 9, 0, 0)
    rows = _customers(10_000_000, WRITE_ROWS, now)
    with app.app_context():
        engine = app.appbuilder.session.get_bind()

    def write(with_log: bool):
        if not with_log:
            change_log.drop_triggers(engine, portal.spec, portal.models, portal.change_logs)
        try:
            start = time.perf_counter()
            with engine.begin() as conn:
                conn.execute(insert(table), rows)
            taken = time.perf_counter() - start
            with engine.begin() as conn:
                conn.execute(delete(table).where(table.c.phone.in_([r["phone"] for r in rows[:1]]) | (table.c.id > ROWS)))
                conn.execute(delete(portal.change_logs["Customer"]).where(portal.change_logs["Customer"].c.record_id > ROWS))
            return taken
        finally:
            if not with_log:
                change_log.install_triggers(engine, portal.spec, portal.models, portal.change_logs)

    seconds = {"without": [], "with": []}
    interleaved({"without": lambda: seconds["without"].append(write(False)),
                 "with": lambda: seconds["with"].append(write(True))}, 5)
    return [row(label, f"{WRITE_ROWS:,}", spread(seconds["without"], 1000, 0), spread(seconds["with"], 1000, 0),
                f"{median(seconds['with']) / median(seconds['without']):.2f}")]


def run(pg: str | None = None) -> list[str]:
    lines = [f"### Change feed: a page of {PAGE:,} changes from the middle of the log, median of {REPEAT} "
             "interleaved runs (min–max), ms", "",
             row("database", "logged rows", "fill s", "hand-written keyset query (anchor)", "feed's query",
                 "query / anchor", "ChangeFeed.page", "page / anchor", "hand-written endpoint", "endpoint / anchor",
                 "HTTP GET …/changes"),
             row(*["---"] * 11)]
    work = Path(tempfile.mkdtemp(prefix="bench-feed-"))
    writes = [f"### Change log triggers: {WRITE_ROWS:,} customers inserted in one transaction, ms", "",
              row("database", "rows", "without triggers", "with triggers", "with / without"),
              row("---", "---", "---", "---", "---")]
    databases = [("SQLite", None)] + ([("PostgreSQL", pg)] if pg else [])
    if os.environ.get("PORTAL_BENCH_FEED_ONLY"):  # e.g. PostgreSQL: run one database
        databases = [d for d in databases if d[0] == os.environ["PORTAL_BENCH_FEED_ONLY"]]
    for label, base in databases:
        if base is None:
            app = _app(f"sqlite:///{work / 'feed.db'}")
            lines += measure_page(app, label)
            writes += measure_writes(app, label)
        else:
            with pg_schema(base) as url:
                app = _app(url)
                lines += measure_page(app, label)
                writes += measure_writes(app, label)
                release(app)
        print(lines[-1], writes[-1], sep="\n", file=sys.stderr, flush=True)  # a long run: each result as it comes
    return lines + [""] + writes
