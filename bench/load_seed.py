"""Seed a PostgreSQL database for the peak-load benchmark (bench/load.py), once, then reuse it.

Tables, permissions and roles come from booting the real app once (create_app); the bulk rows go in
with COPY (psycopg2 copy_expert), then VACUUM ANALYZE. A marker table holds the seed's version and
sizes, so a later run with the same sizes skips all of this.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2

SEED_VERSION = 2  # bump when the generated data changes shape
ROOT = Path(__file__).resolve().parent.parent
MARKER = "bench_load_seed"
PASSWORD = "load-pass-2026"  # bench-only database on 127.0.0.1
USERS = {"load_admin": "Admin", "load_foreman": "SiteForeman", "load_sales": "Sales"}
FOREMAN_PROJECTS = 5  # projects 1..5 are run by load_foreman: his row scope (~5 % of the entries)
NULL = r"\N"  # COPY text format

SURNAMES = "张王李刘陈杨赵黄周吴徐孙马朱胡郭何高林罗"
GIVEN = ["伟", "芳", "娜", "洋", "静", "磊", "强", "敏", "杰", "刚", "丽", "浩", "超", "琳", "军", "勇"]
FIRMS = ["华建", "中铁", "万科", "绿地", "宏达", "恒信", "远大", "蓝天", "东方", "安居", "北辰", "南方"]
FIRM_KINDS = ["集团", "建设", "物业", "地产", "机电", "装饰", "建工", "电力"]
TRADES = ["general", "carpenter", "mason", "rebar", "electrician", "plumber", "welder"]


@dataclass(frozen=True)
class Sizes:
    entries: int = 1_000_000
    workers: int = 2_000
    customers: int = 100_000
    projects: int = 100
    contacts: int = 5_000
    follow_ups: int = 5_000
    tickets: int = 5_000
    ticket_notes: int = 5_000


def database_url(server_url: str, database: str) -> str:
    """The bench server's URL (any database) with the database name replaced."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{database}", query=""))


def _dsn(url: str) -> str:
    """psycopg2 takes the URL without SQLAlchemy's '+psycopg2' driver suffix."""
    return url.replace("postgresql+psycopg2://", "postgresql://", 1)


def _admin_connection(server_url: str):
    connection = psycopg2.connect(_dsn(database_url(server_url, "postgres")))
    connection.autocommit = True
    return connection


def stored_seed(url: str) -> dict | None:
    """The marker row of a database seeded earlier, or None."""
    try:
        connection = psycopg2.connect(_dsn(url))
    except psycopg2.OperationalError:
        return None  # no such database yet
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass(%s)", (MARKER,))
            if cursor.fetchone()[0] is None:
                return None
            cursor.execute(f"SELECT info FROM {MARKER} WHERE version = %s", (SEED_VERSION,))
            found = cursor.fetchone()
            return json.loads(found[0]) if found else None
    finally:
        connection.close()


def schemas_digest() -> str:
    """Changed YAML (new fields, roles, reports) means a new seed."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "schemas").glob("*.yaml")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def ensure_seeded(server_url: str, database: str, sizes: Sizes, log=print) -> dict:
    """Seed `database` unless it already holds this seed; returns what the load test needs to know."""
    url = database_url(server_url, database)
    info = stored_seed(url)
    if info and info.get("sizes") == dataclasses.asdict(sizes) and info.get("schemas") == schemas_digest():
        log(f"seed: {database} already holds seed v{SEED_VERSION} ({sizes.entries:,} entries); not seeding")
        return info
    started = time.perf_counter()
    admin = _admin_connection(server_url)
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            cursor.execute(f'CREATE DATABASE "{database}"')
    finally:
        admin.close()
    log(f"seed: booting the app once on {database} to create tables, permissions and roles")
    user_ids = _boot_app(url)
    log(f"seed: COPY {sizes.entries:,} labour entries, {sizes.customers:,} customers, {sizes.workers:,} workers, ...")
    info = _copy_rows(url, sizes, user_ids, log)
    info.update(sizes=dataclasses.asdict(sizes), schemas=schemas_digest(), users=USERS, password=PASSWORD,
                seconds=round(time.perf_counter() - started, 1), seeded_on=dt.date.today().isoformat())
    _write_marker(url, info)
    log(f"seed: done in {info['seconds']} s")
    return info


def _boot_app(url: str) -> dict[str, int]:
    logging.getLogger("flask_appbuilder").setLevel(logging.ERROR)
    from app import create_app

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench-load-seed",
                      "PORTAL_SCHEMA_DIR": str(ROOT / "schemas")})
    with app.app_context():
        sm = app.appbuilder.sm
        for username, role in USERS.items():
            sm.add_user(username, username, "Load", f"{username}@example.com", sm.find_role(role), PASSWORD)
        ids = {username: sm.find_user(username=username).id for username in USERS}
        app.appbuilder.session.remove()
        app.extensions["sqlalchemy"].engine.dispose()
    return ids


class _Rows(io.TextIOBase):
    """A file-like object COPY reads from, producing tab-separated lines on demand (flat memory)."""

    def __init__(self, lines):
        self._lines = iter(lines)
        self._buffer = ""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> str:
        while size < 0 or len(self._buffer) < size:
            chunk = "".join(line for _, line in zip(range(5000), self._lines))
            if not chunk:
                break
            self._buffer += chunk
        if size < 0:
            out, self._buffer = self._buffer, ""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out



def _line(*values) -> str:
    return "\t".join(NULL if v is None else str(v) for v in values) + "\n"


def _copy(cursor, table: str, columns: list[str], lines) -> None:
    names = ", ".join(f'"{c}"' for c in columns)
    cursor.copy_expert(f'COPY "{table}" ({names}) FROM STDIN', _Rows(lines), size=1 << 16)


def _person(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(["", *GIVEN])


def _copy_rows(url: str, s: Sizes, user_ids: dict[str, int], log) -> dict:
    rng = random.Random(20261123)
    admin_id, foreman_id, sales_id = user_ids["load_admin"], user_ids["load_foreman"], user_ids["load_sales"]
    now = dt.datetime.now().replace(microsecond=0)
    today = dt.date.today()
    audit = (now, now, admin_id, admin_id)
    audit_columns = ["created_on", "changed_on", "created_by_id", "changed_by_id"]
    days_of_entries = -(-s.entries // s.workers)
    first_day = today - dt.timedelta(days=days_of_entries)

    connection = psycopg2.connect(_dsn(url))
    try:
        cursor = connection.cursor()
        timings = {}

        def timed(table, columns, lines):
            start = time.perf_counter()
            _copy(cursor, table, columns + audit_columns, lines)
            timings[table] = round(time.perf_counter() - start, 1)
            log(f"seed:   {table}: {timings[table]} s")

        def customers():
            for i in range(1, s.customers + 1):
                owner = sales_id if i % 3 == 0 else admin_id
                yield _line(i, f"{FIRMS[i % len(FIRMS)]}{FIRM_KINDS[i // len(FIRMS) % len(FIRM_KINDS)]}{i:06d}",
                            rng.choice(["company", "company", "individual", "government"]),
                            rng.choice(["construction", "real_estate", "manufacturing", "property", "other"]),
                            f"+86138{i:08d}", f"c{i}@example.com", f"上海市浦东新区张江路{i % 900 + 1}号",
                            rng.choice(["vip", "normal", "normal", "potential"]),
                            rng.choice(["referral", "bidding", "website", "visit"]), owner,
                            rng.randrange(1, 500) * 1000, today + dt.timedelta(days=i % 90 - 30), None, *audit)

        timed("customer", ["id", "name", "kind", "industry", "phone", "email", "address", "level", "source",
                           "owner_id", "credit_limit", "next_follow_up", "notes"], customers())

        def contacts():
            for i in range(1, s.contacts + 1):
                yield _line(i, (i * 7) % s.customers + 1, _person(rng), rng.choice(["项目经理", "采购", "总经理"]),
                            f"+86139{i:08d}", f"p{i}@example.com", f"wx_{i:06d}", i % 3 == 0, *audit)

        timed("contact", ["id", "customer_id", "name", "position", "phone", "email", "wechat", "is_primary"], contacts())

        def follow_ups():
            for i in range(1, s.follow_ups + 1):
                contact = i % s.contacts + 1
                yield _line(i, (contact * 7) % s.customers + 1, contact, now - dt.timedelta(hours=i * 3),
                            rng.choice(["phone", "visit", "wechat", "email"]),
                            rng.choice(["沟通年度维保合同", "现场踏勘", "报价跟进", "续签意向沟通"]),
                            sales_id if i % 2 else admin_id, *audit)

        timed("follow_up", ["id", "customer_id", "contact_id", "at", "method", "summary", "by_id"], follow_ups())

        def projects():
            for i in range(1, s.projects + 1):
                yield _line(i, f"P{i:04d}", f"{FIRMS[i % len(FIRMS)]}项目{i}", i * 13 % s.customers + 1,
                            f"上海市松江区工业路{i}号", foreman_id if i <= FOREMAN_PROJECTS else admin_id,
                            rng.choice(["active", "active", "planned", "completed"]), first_day, None,
                            rng.randrange(50, 500) * 1000, *audit)

        timed("project", ["id", "code", "name", "customer_id", "site_address", "manager_id", "status", "start_date",
                          "end_date", "budget"], projects())

        day_rates = {w: 250 + (w * 37) % 300 for w in range(1, s.workers + 1)}

        def workers():
            for w in range(1, s.workers + 1):
                yield _line(w, f"{_person(rng)}{w}", f"1101011990{w:07d}X", f"+86137{w:08d}", TRADES[w % len(TRADES)],
                            day_rates[w], f"{'一二三四五'[w % 5]}班组", f"6222{w:014d}", w % 20 != 0, *audit)

        timed("worker", ["id", "name", "id_card", "phone", "trade", "day_rate", "team", "bank_account", "active"],
              workers())

        def project_of(worker: int, day: int) -> int:
            return (worker * 7 + day // 30) % s.projects + 1  # a worker changes site every month

        def worker_projects():
            for w in range(1, s.workers + 1):
                for p in sorted({project_of(w, 0), project_of(w, 30)}):
                    yield f"{w}\t{p}\n"

        start = time.perf_counter()
        cursor.copy_expert('COPY "worker_projects" ("left_id", "right_id") FROM STDIN', _Rows(worker_projects()))
        timings["worker_projects"] = round(time.perf_counter() - start, 1)

        def tickets():
            for i in range(1, s.tickets + 1):
                opened = now - dt.timedelta(hours=i * 2)
                status = rng.choice(["open", "in_progress", "waiting", "resolved", "closed"])
                resolved = opened + dt.timedelta(hours=rng.randrange(2, 96)) if status in ("resolved", "closed") else None
                yield _line(i, f"GD{i:010d}", rng.choice(["空调不制冷", "电梯异响", "屋面渗水", "配电箱跳闸"]),
                            (i * 11) % s.customers + 1, None, rng.choice(["repair", "installation", "inspection"]),
                            rng.choice(["urgent", "high", "normal", "low"]), status, admin_id, opened,
                            (opened + dt.timedelta(days=3)).date(), resolved, rng.randrange(0, 40) / 2, None, None, None,
                            *audit)

        timed("ticket", ["id", "number", "subject", "customer_id", "contact_id", "category", "priority", "status",
                         "assignee_id", "opened_at", "due_date", "resolved_at", "hours_spent", "site_address",
                         "description", "resolution"], tickets())

        def ticket_notes():
            for i in range(1, s.ticket_notes + 1):
                yield _line(i, i % s.tickets + 1, rng.choice(["已电话联系客户", "已派师傅上门", "等待配件到货"]), admin_id,
                            now - dt.timedelta(minutes=i), *audit)

        timed("ticket_note", ["id", "ticket_id", "body", "author_id", "at"], ticket_notes())

        def entries():
            # (work_date, worker) is unique per n, hence (work_date, worker, project) too
            for n in range(s.entries):
                day, worker = divmod(n, s.workers)
                days = (1, 1, 1, 0.5, 1.5)[n % 5]
                rate = day_rates[worker + 1]
                approved = day < days_of_entries - 7  # the last week is not approved yet
                yield (f"{n + 1}\t{first_day + dt.timedelta(days=day)}\t{worker + 1}\t{project_of(worker + 1, day)}\t"
                       f"{days * 8}\t{days}\t{rate}\t{days * rate}\t{'approved' if approved else 'submitted'}\t"
                       f"{'t' if approved else 'f'}\t{admin_id if approved else NULL}\t{now}\t{now}\t{admin_id}\t{admin_id}\n")

        timed("labour_entry", ["id", "work_date", "worker_id", "project_id", "hours", "days", "rate", "amount",
                               "state", "approved", "approved_by_id"], entries())  # approved = (state == 'approved')

        for table in ("customer", "contact", "follow_up", "project", "worker", "ticket", "ticket_note", "labour_entry"):
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM \"{table}\"))")
        cursor.execute("SELECT id FROM labour_entry WHERE project_id <= %s ORDER BY id DESC LIMIT 2000",
                       (FOREMAN_PROJECTS,))
        foreman_entries = [r[0] for r in cursor.fetchall()]
        connection.commit()

        start = time.perf_counter()
        connection.autocommit = True  # VACUUM cannot run in a transaction
        cursor.execute("VACUUM ANALYZE")  # what autovacuum would do after a bulk load
        timings["vacuum_analyze"] = round(time.perf_counter() - start, 1)
        log(f"seed:   VACUUM ANALYZE: {timings['vacuum_analyze']} s")
    finally:
        connection.close()
    return {"copy_seconds": timings, "foreman_projects": list(range(1, FOREMAN_PROJECTS + 1)),
            "foreman_entries": foreman_entries, "first_day": first_day.isoformat()}


def _write_marker(url: str, info: dict) -> None:
    connection = psycopg2.connect(_dsn(url))
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(f"CREATE TABLE {MARKER} (version integer PRIMARY KEY, info text NOT NULL)")
            cursor.execute(f"INSERT INTO {MARKER} VALUES (%s, %s)", (SEED_VERSION, json.dumps(info)))
    finally:
        connection.close()
