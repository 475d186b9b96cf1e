"""Retention (issue 16): anonymizing 50,000 of 100,000 clients with `run_retention` (what `portal retention` and the
worker run) vs one hand-written UPDATE of the same rows and their history, in the same run and database.

The entity (written below): Client with history, a required name, unique code and phone, email and notes; policy
`{age: 5y, from: since, when: {level: normal}, action: anonymize, fields: [name, code, phone, email, notes]}`.
Half of the clients are old and normal; each client has one history entry (its creation, every field's value).

- anchor: `UPDATE client SET name = '(anonymized)', code = 'anon-' || id, phone = 'anon-' || id, email = NULL,
  notes = NULL, row_version = row_version + 1 WHERE since <= :cutoff AND level = 'normal'` and one UPDATE of those
  records' history entries with the same JSON rewrite the portal uses, in one transaction — a hand-written job;
- retention: `run_retention(app, dry_run=False)`: the same selection (plus "not anonymized yet"), a thousand records
  per transaction, UPDATE, history rewrite, audit entry;
- dry run: `run_retention(app, dry_run=True)` vs the anchor's `SELECT count(*)` of the same condition.

The rows and history are put back before each timed run, untimed. Median of REPEAT interleaved runs (min–max).
"""
from __future__ import annotations

import datetime as dt
import logging
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from app import create_app

from .common import median, pg_schema, release, row, spread

REPEAT = 5
ROWS = 100_000
SCHEMA = """version: 1
module: bench
entities:
  Client:
    title: name
    history: true
    fields:
      name: {type: string, required: true}
      code: {type: string, unique: true}
      phone: {type: phone, unique: true}
      email: {type: email}
      notes: {type: text}
      level: {type: enum, choices: {normal: Normal, vip: VIP}, default: normal}
      since: {type: date}
    retention: {age: 5y, from: since, when: {level: normal}, action: anonymize, fields: [name, code, phone, email, notes]}
"""
CUTOFF = dt.date.today().replace(year=dt.date.today().year - 5)
OLD, NEW = dt.date(2015, 3, 1), dt.date.today()
CONDITION = "since <= :cutoff AND level = 'normal'"


def _app(url: str, schemas: Path):
    logging.getLogger("flask_appbuilder").setLevel(logging.ERROR)
    return create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench", "PORTAL_SCHEMA_DIR": str(schemas)})


def fill(engine) -> int:
    """ROWS clients (every other one old and normal), a history entry each, and copies of both to reset from."""
    now = dt.datetime.now().replace(microsecond=0)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO client (name, code, phone, email, notes, level, since, created_on, changed_on, "
                          "row_version) VALUES (:name, :code, :phone, :email, :notes, :level, :since, :now, :now, 1)"), [
            {"name": f"客户{i}", "code": f"C{i:06d}", "phone": f"+86138{i:08d}", "email": f"c{i}@example.com",
             "notes": f"note {i}", "level": "vip" if i % 4 == 1 else "normal", "since": OLD if i % 2 == 0 else NEW,
             "now": now} for i in range(ROWS)])
        conn.execute(text(
            "INSERT INTO portal_history (entity, record_id, at, user_id, username, path, action, transition, changes) "
            "SELECT 'Client', id, :now, NULL, 'bench', 'import', 'create', NULL, "
            "'{\"name\":[null,\"' || name || '\"],\"code\":[null,\"' || code || '\"],\"phone\":[null,\"' || phone || "
            "'\"],\"email\":[null,\"' || email || '\"],\"level\":[null,\"' || level || '\"]}' FROM client"), {"now": now})
        conn.execute(text("CREATE TABLE client_copy AS SELECT * FROM client"))
        conn.execute(text("CREATE TABLE history_copy AS SELECT * FROM portal_history"))
        for table in ("client", "portal_history"):  # these tables only: the database may hold other schemas
            conn.exec_driver_sql(f"ANALYZE {table}")
        return conn.scalar(text(f"SELECT count(*) FROM client WHERE {CONDITION}"), {"cutoff": CUTOFF})


def reset(engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM client"))
        conn.execute(text("INSERT INTO client SELECT * FROM client_copy"))
        conn.execute(text("DELETE FROM portal_history"))
        conn.execute(text("INSERT INTO portal_history SELECT * FROM history_copy"))
        conn.execute(text("DELETE FROM portal_audit"))


def anchor(engine) -> None:
    names = ["name", "code", "phone", "email", "notes"]
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE client SET name = '(anonymized)', code = 'anon-' || CAST(id AS VARCHAR), "
                          f"phone = 'anon-' || CAST(id AS VARCHAR), email = NULL, notes = NULL, "
                          f"row_version = row_version + 1 WHERE {CONDITION}"), {"cutoff": CUTOFF})
        ids = f"SELECT id FROM client WHERE {CONDITION}"
        if engine.dialect.name == "postgresql":
            conn.execute(text(
                "UPDATE portal_history SET changes = (SELECT jsonb_object_agg(key, CASE WHEN key = ANY(:names) "
                "THEN '[null, null]'::jsonb ELSE value END) FROM jsonb_each(changes::jsonb))::text "
                f"WHERE entity = 'Client' AND record_id IN ({ids}) AND changes::jsonb ?| CAST(:names AS text[])"),
                {"names": names, "cutoff": CUTOFF})
        else:
            paths = ", ".join(f"'$.\"{name}\"', json('[null,null]')" for name in names)
            conn.execute(text(f"UPDATE portal_history SET changes = json_replace(changes, {paths}) "
                              f"WHERE entity = 'Client' AND record_id IN ({ids})"), {"cutoff": CUTOFF})


def measure(app, label: str) -> list[str]:
    from app.data.retention import run_retention

    with app.app_context():
        engine = app.appbuilder.session.get_bind()
    old = fill(engine)

    def retention(dry_run: bool):
        with app.app_context():
            [result] = run_retention(app, dry_run=dry_run)
        assert result.touched == old, (result.touched, old)

    def count():
        with engine.connect() as conn:
            assert conn.scalar(text(f"SELECT count(*) FROM client WHERE {CONDITION}"), {"cutoff": CUTOFF}) == old

    calls = {"anchor": lambda: anchor(engine), "retention": lambda: retention(False),
             "count": count, "dry": lambda: retention(True)}
    seconds = {name: [] for name in calls}
    for run in range(REPEAT + 1):  # the first round warms up and is not counted
        for name, fn in calls.items():
            reset(engine)
            start = time.perf_counter()
            fn()
            if run:
                seconds[name].append(time.perf_counter() - start)
    with engine.connect() as conn:  # the last timed call was the dry run: reset, apply, check what it left
        reset(engine)
        retention(False)
        assert conn.scalar(text("SELECT count(*) FROM client WHERE name = '(anonymized)' AND email IS NULL "
                                "AND code = 'anon-' || CAST(id AS VARCHAR)")) == old
        assert conn.scalar(text("SELECT count(*) FROM portal_history WHERE changes LIKE '%example.com%'")) == ROWS - old
    ratio = median(seconds["retention"]) / median(seconds["anchor"])
    dry_ratio = median(seconds["dry"]) / median(seconds["count"])
    return [f"### Retention: anonymizing {old:,} of {ROWS:,} clients with history ({label}), median of {REPEAT} "
            "interleaved runs (min–max seconds)", "",
            row("what", "seconds", "ratio"), row("---", "---", "---"),
            row("hand-written UPDATE of the rows + one UPDATE of their history (anchor)", spread(seconds["anchor"]),
                "1.00"),
            row("`run_retention` (what `portal retention` runs): chunks of 1,000, one transaction each, audit entry",
                spread(seconds["retention"]), f"{ratio:.2f}"),
            row("hand-written `SELECT count(*)` of the same records (anchor)", spread(seconds["count"], digits=3), "1.00"),
            row("`run_retention(dry_run=True)` (what `--dry-run` runs)", spread(seconds["dry"], digits=3),
                f"{dry_ratio:.2f}")]


def run(pg: str | None = None) -> list[str]:
    work = Path(tempfile.mkdtemp(prefix="bench-retention-"))
    (work / "schemas").mkdir()
    (work / "schemas" / "bench.yaml").write_text(SCHEMA, encoding="utf-8")
    app = _app(f"sqlite:///{work / 'retention.db'}", work / "schemas")
    lines = measure(app, "SQLite")
    release(app)
    if pg:
        with pg_schema(pg) as url:
            app = _app(url, work / "schemas")
            lines += ["", *measure(app, "PostgreSQL")]
            release(app)
    return lines


if __name__ == "__main__":
    print("\n".join(run()))
