"""The change log behind `GET /api/v1/<entity>/changes`: one log table per entity, written by database triggers.

Why triggers: every write path (forms, API, imports incl. PostgreSQL's COPY, bulk actions, workflow transitions,
set-based SQL, cascades the database does itself, psql) ends as an INSERT/UPDATE/DELETE on the entity's table,
and a trigger sees them all in the writing transaction: a change is logged exactly when it commits.

Each entity table `<t>` gets `portal_chg_<t>` (see `log_table`):

- `seq`  a counter (a sequence on PostgreSQL, AUTOINCREMENT on SQLite: never reused);
- `tx`   PostgreSQL: the writing transaction's id (`pg_current_xact_id()`), joined to its commit number; SQLite: 0;
- `record_id`, `op` ('c' create, 'u' update, 'd' delete), `changed_at`;
- for deletes, a copy of the record's fields its row scopes read (`scope_fields`), so a reader's scope can be
  tested on a record that no longer exists (`Viewer.values_clause`).

Order handed out: commit order, as `position` = (commit number, seq), and why an ERP polling with the cursor misses
nothing and sees nothing twice:

- SQLite has one writer at a time: a transaction takes the write lock before its first log row and keeps it to its
  commit, so `seq` order is commit order. The commit number is always 0.
- PostgreSQL: a sequence value is taken when a row is written, not when it commits, so `seq` alone is not commit
  order (a long transaction commits a small seq after a reader moved past it), and neither is the transaction id.
  So each writing transaction also takes a *commit number* as it commits: the statement trigger notes the transaction
  in `portal_change_pending` (once per transaction, ON CONFLICT DO NOTHING), and a DEFERRABLE INITIALLY DEFERRED
  constraint trigger on that table runs at COMMIT: it increments the one row of `portal_change_clock` and records
  (transaction id, number) in `portal_change_commits`. The clock row stays locked until the transaction has
  committed (PostgreSQL releases locks after the commit is visible), so numbers are handed out in commit order and a
  reader that sees number k committed also sees every number below k. The reader joins the log to
  `portal_change_commits` (only committed transactions have a row there) and pages by (number, seq). Nothing waits
  on unrelated transactions: a long transaction takes its number when it commits and is read after everything that
  committed before it. The cost: writers of logged tables take turns for the instant between that update and their
  commit (like the `portal_table_versions` upsert of app/data/changes.py); a REPEATABLE READ or SERIALIZABLE writer
  may get a serialization failure at commit and must retry.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import (BigInteger, Column, DateTime, Index, Integer, MetaData, String, Table, delete, func,
                        select, text, tuple_)

from app.schema.spec import EntitySpec, PortalSpec

PREFIX = "portal_chg_"
HORIZON_TABLE = "portal_change_horizon"  # per log table: the last position pruned (older cursors answer 410)
COMMITS_TABLE = "portal_change_commits"  # PostgreSQL: transaction id -> commit number
CLOCK_TABLE = "portal_change_clock"  # PostgreSQL: the last commit number handed out (one row)
PENDING_TABLE = "portal_change_pending"  # PostgreSQL: transactions that wrote a log row and have not committed yet
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
                 Column("tx", BigInteger, nullable=False),  # the commit number
                 Column("seq", BigInteger, nullable=False))


def commit_tables(metadata: MetaData) -> Table:
    """The commit-number tables (used on PostgreSQL; created everywhere, empty on SQLite). Returns the commits."""
    if COMMITS_TABLE not in metadata.tables:
        Table(CLOCK_TABLE, metadata, Column("id", Integer, primary_key=True, autoincrement=False),
              Column("n", BigInteger, nullable=False))
        Table(PENDING_TABLE, metadata, Column("tx", BigInteger, primary_key=True, autoincrement=False))
        Table(COMMITS_TABLE, metadata, Column("tx", BigInteger, primary_key=True, autoincrement=False),
              Column("n", BigInteger, nullable=False, unique=True))
    return metadata.tables[COMMITS_TABLE]


def ordered_source(log: Table, metadata: MetaData, dialect: str):
    """(FROM clause, the commit-number column) to page the log in commit order: (number, seq)."""
    if dialect != "postgresql":
        return log, log.c.tx  # always 0: seq order is commit order
    commits = commit_tables(metadata)
    return log.join(commits, commits.c.tx == log.c.tx), commits.c.n


# -- triggers ---------------------------------------------------------------------------------------------------
def install_triggers(engine, spec: PortalSpec, models: dict, tables: dict) -> None:
    """(Re)create each entity's triggers; run at start-up under the start-up lock, after the tables exist."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            for statement in _postgresql_commit_clock(conn.dialect.identifier_preparer):
                conn.exec_driver_sql(statement)
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
            f"INSERT INTO {PENDING_TABLE} (tx) VALUES ({tx}) ON CONFLICT DO NOTHING; "  # the commit number, at COMMIT
            "RETURN NULL; END $$")
        statements.append(
            f"CREATE OR REPLACE TRIGGER {function} AFTER {event} ON {table} REFERENCING {rows} TABLE AS changed_rows "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()")
    return statements


def _postgresql_commit_clock(preparer) -> list[str]:
    """At COMMIT of a transaction that wrote a log row: the next commit number, under the clock row's lock."""
    return [  # an upsert: no row is written at start-up (an empty portal stays empty, e.g. for a restore)
        "CREATE OR REPLACE FUNCTION portal_change_commit() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "DECLARE number bigint; BEGIN "
        f"INSERT INTO {CLOCK_TABLE} AS clock (id, n) VALUES (1, 1) "
        "ON CONFLICT (id) DO UPDATE SET n = clock.n + 1 RETURNING n INTO number; "
        f"INSERT INTO {COMMITS_TABLE} (tx, n) VALUES (NEW.tx, number); "
        f"DELETE FROM {PENDING_TABLE} WHERE tx = NEW.tx; RETURN NULL; END $$",
        f"DROP TRIGGER IF EXISTS portal_change_commit ON {PENDING_TABLE}",
        f"CREATE CONSTRAINT TRIGGER portal_change_commit AFTER INSERT ON {PENDING_TABLE} "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION portal_change_commit()",
    ]


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
def after_clause(number, seq, dialect: str, position: tuple):
    """Log rows after `position` = (commit number, seq)."""
    if dialect != "postgresql":
        return seq > position[1]  # the number is always 0
    return tuple_(number, seq) > tuple_(*position)


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
        dialect = conn.dialect.name
        for log in tables.values():
            source, number = ordered_source(log, metadata, dialect)
            last = conn.execute(select(number, log.c.seq).select_from(source).where(log.c.changed_at < cutoff)
                                .order_by(number.desc(), log.c.seq.desc()).limit(1)).first()
            if last is None:
                continue
            gone = select(log.c.seq).select_from(source).where(~after_clause(number, log.c.seq, dialect, tuple(last)))
            deleted += conn.execute(delete(log).where(log.c.seq.in_(gone))).rowcount
            if conn.execute(select(horizon.c.name).where(horizon.c.name == log.name)).first() is None:
                conn.execute(horizon.insert().values(name=log.name, tx=last[0], seq=last[1]))
            else:
                conn.execute(horizon.update().where(horizon.c.name == log.name).values(tx=last[0], seq=last[1]))
        if dialect == "postgresql":  # commit numbers no log row refers to any more, below every horizon
            lowest = conn.execute(select(func.min(horizon.c.tx))).scalar()
            if lowest is not None and len(tables) == conn.execute(select(func.count()).select_from(horizon)).scalar():
                commits = commit_tables(metadata)
                conn.execute(delete(commits).where(commits.c.n < lowest))
    return deleted


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
