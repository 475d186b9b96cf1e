"""The change log behind `GET /api/v1/<entity>/changes`: one log table per entity, written by database triggers.

Why triggers: every write path (forms, API, imports incl. PostgreSQL's COPY, bulk actions, workflow transitions,
set-based SQL, cascades the database does itself, psql) ends as an INSERT/UPDATE/DELETE on the entity's table,
and a trigger sees them all in the writing transaction: a change is logged exactly when it commits.

Each entity table `<t>` gets `portal_chg_<t>` (see `log_table`):

- `seq`  a counter (a sequence on PostgreSQL, AUTOINCREMENT on SQLite: never reused);
- `tx`   PostgreSQL: the writing transaction's id (`pg_current_xact_id()`); SQLite: always 0;
- `record_id`, `op` ('c' create, 'u' update, 'd' delete), `changed_at`;
- for deletes, a copy of the record's fields its row scopes read (`scope_fields`), so a reader's scope can be
  tested on a record that no longer exists (`Viewer.values_clause`).

Order handed out (`position` = (tx, seq)), and why an ERP polling with the cursor misses nothing and sees nothing
twice:

- SQLite has one writer at a time: a transaction takes the write lock before its first log row and keeps it to its
  commit, so `seq` order is commit order. tx is 0.
- PostgreSQL: a sequence value is taken when the row is written, not when it commits, so `seq` alone is not commit
  order (a long transaction commits a small seq after readers moved past it). The reader therefore hands out only
  rows whose transaction id is below `pg_snapshot_xmin(pg_current_snapshot())`, evaluated in the same statement:
  every transaction below that id has ended (committed, so visible to the statement, or rolled back, so gone),
  and any transaction that commits later has an id at or above it, so a later row always sorts after every row
  already handed out. Rows are handed out in (tx, seq) order. The price: a change becomes visible to the feed only
  once every transaction older than it has ended (a long transaction delays the feed, it never loses a change).
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import (BigInteger, Column, DateTime, Index, Integer, MetaData, String, Table, and_, delete,
                        select, text, tuple_)

from app.schema.spec import EntitySpec, PortalSpec

PREFIX = "portal_chg_"
HORIZON_TABLE = "portal_change_horizon"  # per log table: the last position pruned (older cursors answer 410)
DEFAULT_RETENTION_DAYS = 30
OPS = {"c": "create", "u": "update", "d": "delete"}


def log_table_name(entity_table: str) -> str:
    return (PREFIX + entity_table)[:63]


def scope_fields(spec: PortalSpec, entity: EntitySpec) -> list:
    """The entity's fields any role's row scope reads (the first step of each condition's path)."""
    names = []
    for role in spec.roles:
        for condition in role.row_rules(entity.name) or ():
            if condition.path[0] not in names:
                names.append(condition.path[0])
    return [entity.field(name) for name in names if entity.field(name) is not None
            and not entity.field(name).kind.multiple]


def log_tables(spec: PortalSpec, models: dict, metadata: MetaData) -> dict:
    """entity name -> its log Table on `metadata` (created with the portal's other tables)."""
    tables = {}
    for entity in spec.entities:
        model = models[entity.name]
        name = log_table_name(entity.table)
        if name in metadata.tables:
            tables[entity.name] = metadata.tables[name]
            continue
        copies = []
        for f in scope_fields(spec, entity):
            source = model.__table__.c[f.column_name]
            copies.append(Column(f.column_name, source.type, nullable=True))  # no foreign key: the target may go too
        tables[entity.name] = Table(
            name, metadata,
            Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
            Column("tx", BigInteger, nullable=False, server_default=text("0")),
            Column("record_id", Integer, nullable=False),
            Column("op", String(1), nullable=False),
            Column("changed_at", DateTime, nullable=False, server_default=text("CURRENT_TIMESTAMP")),
            *copies,
            Index(f"ix_{name}_position"[:63], "tx", "seq"),
            sqlite_autoincrement=True,  # a pruned log never hands out a seq again
        )
    return tables


def horizon_table(metadata: MetaData) -> Table:
    if HORIZON_TABLE in metadata.tables:
        return metadata.tables[HORIZON_TABLE]
    return Table(HORIZON_TABLE, metadata,
                 Column("name", String(128), primary_key=True),  # a log table
                 Column("tx", BigInteger, nullable=False),
                 Column("seq", BigInteger, nullable=False))


# -- triggers ---------------------------------------------------------------------------------------------------
def install_triggers(engine, spec: PortalSpec, models: dict, tables: dict) -> None:
    """(Re)create each entity's triggers; run at start-up under the start-up lock, after the tables exist."""
    with engine.begin() as conn:
        for entity in spec.entities:
            source, log = models[entity.name].__table__, tables[entity.name]
            copies = [c.name for c in log.columns if c.name not in ("seq", "tx", "record_id", "op", "changed_at")]
            statements = (_postgresql_triggers if conn.dialect.name == "postgresql" else _sqlite_triggers)(
                conn.dialect.identifier_preparer, source, log, copies)
            for statement in statements:
                conn.exec_driver_sql(statement)


def _sqlite_triggers(preparer, source, log, copies) -> list[str]:
    """Row triggers: SQLite has no statement triggers with transition tables."""
    table, log_name = preparer.format_table(source), preparer.format_table(log)
    kept = "".join(f", {preparer.quote(c)}" for c in copies)
    old = "".join(f", OLD.{preparer.quote(c)}" for c in copies)
    statements = []
    for op, event, row, extra_columns, extra_values in (("c", "INSERT", "NEW", "", ""), ("u", "UPDATE", "NEW", "", ""),
                                                         ("d", "DELETE", "OLD", kept, old)):
        trigger = preparer.quote(f"{log.name}_{op}"[:63])
        statements.append(f"DROP TRIGGER IF EXISTS {trigger}")
        statements.append(
            f"CREATE TRIGGER {trigger} AFTER {event} ON {table} FOR EACH ROW BEGIN "
            f"INSERT INTO {log_name} (record_id, op{extra_columns}) VALUES ({row}.id, '{op}'{extra_values}); END")
    return statements


def _postgresql_triggers(preparer, source, log, copies) -> list[str]:
    """Statement triggers over transition tables: one INSERT ... SELECT per statement, however many rows it wrote
    (a COPY of 100k rows is one statement)."""
    table, log_name = preparer.format_table(source), preparer.format_table(log)
    kept = "".join(f", {preparer.quote(c)}" for c in copies)
    tx = "pg_current_xact_id()::text::bigint"
    statements = []
    for op, event, rows, extra in (("c", "INSERT", "NEW", ""), ("u", "UPDATE", "NEW", ""), ("d", "DELETE", "OLD", kept)):
        function = preparer.quote(f"{log.name}_{op}"[:63])
        statements.append(
            f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"INSERT INTO {log_name} (tx, record_id, op, changed_at{extra}) "
            f"SELECT {tx}, id, '{op}', now() AT TIME ZONE 'utc'{extra} FROM changed_rows ORDER BY id; "
            "RETURN NULL; END $$")
        statements.append(
            f"CREATE OR REPLACE TRIGGER {function} AFTER {event} ON {table} REFERENCING {rows} TABLE AS changed_rows "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()")
    return statements


def drop_triggers(engine, spec: PortalSpec, models: dict, tables: dict) -> None:
    """For the bench's baseline (writes without the log) and for tests."""
    with engine.begin() as conn:
        preparer = conn.dialect.identifier_preparer
        for entity in spec.entities:
            source, log = models[entity.name].__table__, tables[entity.name]
            for op in "cud":
                name = preparer.quote(f"{log.name}_{op}"[:63])
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name} ON {preparer.format_table(source)}")
                else:
                    conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")


# -- reading ------------------------------------------------------------------------------------------------------
def committed_clause(log: Table, dialect: str):
    """Rows every earlier transaction of which has ended (see the module docstring); None on SQLite (all rows)."""
    if dialect != "postgresql":
        return None
    return log.c.tx < text("pg_snapshot_xmin(pg_current_snapshot())::text::bigint")


def after_clause(log: Table, dialect: str, position: tuple[int, int]):
    tx, seq = position
    if dialect != "postgresql":
        return log.c.seq > seq  # tx is always 0
    return tuple_(log.c.tx, log.c.seq) > tuple_(tx, seq)


def pruned_position(connection, metadata: MetaData, log: Table) -> tuple[int, int] | None:
    row = connection.execute(select(horizon_table(metadata).c.tx, horizon_table(metadata).c.seq)
                             .where(horizon_table(metadata).c.name == log.name)).first()
    return None if row is None else (row[0], row[1])


# -- retention ----------------------------------------------------------------------------------------------------
def prune(engine, metadata: MetaData, tables: dict, days: int, now: dt.datetime | None = None) -> int:
    """Delete log rows older than `days` (0: keep forever); remember the last position deleted, so a cursor from
    before it answers 410 instead of silently skipping what was pruned. Returns the rows deleted."""
    if days <= 0:
        return 0
    cutoff = (now or dt.datetime.utcnow()) - dt.timedelta(days=days)
    horizon = horizon_table(metadata)
    deleted = 0
    with engine.begin() as conn:
        for log in tables.values():
            last = conn.execute(select(log.c.tx, log.c.seq).where(log.c.changed_at < cutoff)
                                .order_by(log.c.tx.desc(), log.c.seq.desc()).limit(1)).first()
            if last is None:
                continue
            deleted += conn.execute(delete(log).where(~after_clause(log, conn.dialect.name, tuple(last)))).rowcount
            if conn.execute(select(horizon.c.name).where(horizon.c.name == log.name)).first() is None:
                conn.execute(horizon.insert().values(name=log.name, tx=last[0], seq=last[1]))
            else:
                conn.execute(horizon.update().where(horizon.c.name == log.name).values(tx=last[0], seq=last[1]))
    return deleted


def and_all(*clauses):
    present = [c for c in clauses if c is not None]
    return and_(*present) if present else None


def install_pruning(app) -> None:
    """The worker's "change-log" pass: prunes the log past PORTAL_CHANGE_LOG_DAYS (default 30; 0 keeps it all),
    at most once an hour per worker process."""
    import time

    from app.data.delivery import engine_of
    from app.data.worker import add_worker_pass
    from app.portal import portal_of

    last = {"at": None}

    def run(app) -> int:
        if last["at"] is not None and time.monotonic() - last["at"] < 3600:
            return 0
        last["at"] = time.monotonic()
        portal = portal_of(app)
        prune(engine_of(app), portal.metadata, portal.change_logs,
              int(app.config.get("PORTAL_CHANGE_LOG_DAYS", DEFAULT_RETENTION_DAYS)))
        return 0  # housekeeping: never keeps the worker from sleeping

    add_worker_pass(app, "change-log", run)
