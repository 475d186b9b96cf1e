"""The change log behind `GET /api/v1/<entity>/changes`: one log table per entity, written by database triggers.

Why triggers: every write path (forms, API, imports incl. PostgreSQL's COPY, bulk actions, workflow transitions,
set-based SQL, cascades the database does itself, psql) ends as an INSERT/UPDATE/DELETE on the entity's table,
and a trigger sees them all in the writing transaction: a change is logged exactly when it commits.

Each entity table `<t>` gets `portal_chg_<t>` (see `log_table`):

- `seq`  a counter (a sequence on PostgreSQL, AUTOINCREMENT on SQLite: never reused);
- `tx`   PostgreSQL: the writing transaction's id (`pg_current_xact_id()`), joined to its commit number; SQLite: 0;
- `record_id`, `op` ('c' create, 'u' update, 'd' delete), `changed_at`;
- for deletes, a copy of the record's fields its row scopes read (`scope_fields`), so a reader's scope can be
  tested on a record that no longer exists (`Viewer.values_clause`);
- for deletes, the values a scope reads *through a link* (`customer.owner`), as they were at delete time
  (`scope_paths`): read from the linked record by the delete trigger. When the linked record is already gone —
  the database deleting the record by its link's ON DELETE CASCADE, which runs after the linked record's row is
  removed — they come from the linked record's own delete row (its log keeps the fields others' scopes read) if
  that is already written (PostgreSQL fires the parent's statement trigger first); else the row is marked
  `<link>__pending` and the linked record's delete trigger fills them in a moment later, in the same statement
  (SQLite fires the cascaded child's row triggers first). So a contact deleted with its customer is still in the
  feed of the customer's owner, and of no one else.

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
from dataclasses import dataclass

from sqlalchemy import (BigInteger, Boolean, Column, DateTime, Index, Integer, MetaData, String, Table, delete, func,
                        select, text, tuple_)

from app.schema.spec import EntitySpec, FieldSpec, PortalSpec

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
    """The entity's fields a delete's log row keeps: those any role's row scope of it reads (the first step of each
    condition's path), and those another entity's scope reads through a link to it (`customer.owner` keeps
    Customer's owner: a contact deleted by the customer's cascade takes the value from here, `ScopePath`)."""
    names = []
    for role in spec.roles:
        for condition in role.row_rules(entity.name) or ():
            if condition.path[0] not in names:
                names.append(condition.path[0])
    for other in spec.entities:
        for path in scope_paths(spec, other):
            if path.link.to == entity.name and path.target.name not in names:
                names.append(path.target.name)
    return [entity.field(name) for name in names if entity.field(name) is not None
            and not entity.field(name).kind.multiple]


@dataclass(frozen=True)
class ScopePath:
    """A row scope's hop through a link (`customer.owner` on Contact), kept in the delete's log row."""
    link: FieldSpec  # on the entity (the log keeps its column too: `scope_fields`)
    target: FieldSpec  # on the linked entity
    target_table: str

    @property
    def column(self) -> str:  # the kept value
        return f"{self.link.column_name}__{self.target.column_name}"[:63]

    @property
    def pending(self) -> str:  # true while the linked record's delete has yet to fill the value in
        return f"{self.link.column_name}__pending"[:63]


def scope_paths(spec: PortalSpec, entity: EntitySpec) -> list[ScopePath]:
    """The (link, linked field) pairs any role's row scope of `entity` reads."""
    found = []
    for role in spec.roles:
        for condition in role.row_rules(entity.name) or ():
            if len(condition.path) != 2:
                continue
            link = entity.field(condition.path[0])
            if link is None or link.kind.multiple or not link.is_relation or spec.entity(link.to) is None:
                continue
            linked = spec.entity(link.to)
            target = linked.field(condition.path[1])
            if target is None or target.kind.multiple:
                continue
            path = ScopePath(link, target, linked.table)
            if all(p.column != path.column for p in found):
                found.append(path)
    return found


def log_tables(spec: PortalSpec, models: dict, metadata: MetaData) -> dict:
    """entity name -> its log Table on `metadata` (created with the portal's other tables)."""
    tables = {}
    linked = {path.link.to for entity in spec.entities for path in scope_paths(spec, entity)}
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
        pending_columns = []
        for path in scope_paths(spec, entity):
            source = models[path.link.to].__table__.c[path.target.column_name]
            copies.append(Column(path.column, source.type, nullable=True))
            if path.pending not in pending_columns:
                pending_columns.append(path.pending)
                copies.append(Column(path.pending, Boolean, nullable=True))
                # the linked record's delete trigger finds the rows waiting for it (a handful, briefly)
                copies.append(Index(f"ix_{name}_{path.pending}"[:63], path.link.column_name,
                                    sqlite_where=text(f'"{path.pending}"'), postgresql_where=text(f'"{path.pending}"')))
        if entity.name in linked:  # a cascaded delete of a record linking here looks up this one's delete row
            copies.append(Index(f"ix_{name}_deleted"[:63], "record_id", sqlite_where=text("op = 'd'"),
                                postgresql_where=text("op = 'd'")))
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
    paths = {entity.name: scope_paths(spec, entity) for entity in spec.entities}
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            for statement in _postgresql_commit_clock(conn.dialect.identifier_preparer):
                conn.exec_driver_sql(statement)
        for entity in spec.entities:
            source, log = models[entity.name].__table__, tables[entity.name]
            kept = [f.column_name for f in scope_fields(spec, entity)]
            waiting = [(tables[other], [p for p in other_paths if p.link.to == entity.name])  # logs it fills in
                       for other, other_paths in paths.items() if any(p.link.to == entity.name for p in other_paths)]
            statements = (_postgresql_triggers if conn.dialect.name == "postgresql" else _sqlite_triggers)(
                conn.dialect.identifier_preparer, source, log, kept, paths[entity.name], waiting)
            for statement in statements:
                conn.exec_driver_sql(statement)


def _by_link(paths: list[ScopePath]) -> dict:
    """pending column -> the paths through that link."""
    grouped: dict = {}
    for path in paths:
        grouped.setdefault(path.pending, []).append(path)
    return grouped


def _sqlite_triggers(preparer, source, log, kept, paths, waiting) -> list[str]:
    """Row triggers: SQLite has no statement triggers with transition tables."""
    q = preparer.quote
    table, log_name = preparer.format_table(source), preparer.format_table(log)
    names, values = [q(c) for c in kept], [f"OLD.{q(c)}" for c in kept]
    for pending, through in _by_link(paths).items():
        link, linked = through[0].link.column_name, q(through[0].target_table)
        for path in through:
            names.append(q(path.column))
            values.append(f"(SELECT {q(path.target.column_name)} FROM {linked} WHERE id = OLD.{q(link)})")
        names.append(q(pending))
        values.append(f"(OLD.{q(link)} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {linked} WHERE id = OLD.{q(link)}))")
    fill = "".join(_fill_waiting(preparer, other, through, "OLD") for other, through in waiting)
    statements = []
    for op, event, row, extra_columns, extra_values, after in (
            ("c", "INSERT", "NEW", "", "", ""), ("u", "UPDATE", "NEW", "", "", ""),
            ("d", "DELETE", "OLD", "".join(", " + n for n in names), "".join(", " + v for v in values), fill)):
        trigger = q(f"{log.name}_{op}"[:63])
        statements.append(f"DROP TRIGGER IF EXISTS {trigger}")
        statements.append(
            f"CREATE TRIGGER {trigger} AFTER {event} ON {table} FOR EACH ROW BEGIN "
            f"INSERT INTO {log_name} (record_id, op{extra_columns}) VALUES ({row}.id, '{op}'{extra_values}); "
            f"{after}END")
    return statements


def _fill_waiting(preparer, other_log, through: list[ScopePath], old: str, from_clause: str = "") -> str:
    """The UPDATE a deleted record's trigger runs on another entity's log: rows deleted by the cascade a moment
    before, still waiting for this record's values (`old` its old row: `OLD`, or the transition table's alias)."""
    q = preparer.quote
    statements = []
    for pending, paths in _by_link(through).items():
        sets = ", ".join(f"{q(p.column)} = {old}.{q(p.target.column_name)}" for p in paths)
        statements.append(
            f"UPDATE {preparer.format_table(other_log)} SET {sets}, {q(pending)} = FALSE{from_clause} "
            f"WHERE {q(pending)} AND {preparer.format_table(other_log)}.{q(paths[0].link.column_name)} = {old}.id; ")
    return "".join(statements)


def _postgresql_triggers(preparer, source, log, kept, paths, waiting) -> list[str]:
    """Statement triggers over transition tables: one INSERT ... SELECT per statement, however many rows it wrote
    (a COPY of 100k rows is one statement)."""
    q = preparer.quote
    table, log_name = preparer.format_table(source), preparer.format_table(log)
    names, values, joins = [q(c) for c in kept], [f"changed_rows.{q(c)}" for c in kept], []
    tx = "pg_current_xact_id()::text::bigint"
    for n, (pending, through) in enumerate(_by_link(paths).items()):
        link, alias, gone = q(through[0].link.column_name), f"linked_{n}", f"gone_{n}"
        joins.append(f" LEFT JOIN {q(through[0].target_table)} AS {alias} ON {alias}.id = changed_rows.{link}"
                     f" LEFT JOIN {q(log_table_name(through[0].target_table))} AS {gone} ON {alias}.id IS NULL"
                     f" AND {gone}.op = 'd' AND {gone}.record_id = changed_rows.{link} AND {gone}.tx = {tx}")
        for path in through:
            column = q(path.target.column_name)
            names.append(q(path.column))
            values.append(f"CASE WHEN {alias}.id IS NULL THEN {gone}.{column} ELSE {alias}.{column} END")
        names.append(q(pending))
        values.append(f"(changed_rows.{link} IS NOT NULL AND {alias}.id IS NULL AND {gone}.seq IS NULL)")
    fill = "".join(_fill_waiting(preparer, other, through, "changed_rows", " FROM changed_rows")
                   for other, through in waiting)
    statements = []
    for op, event, rows, extra_columns, extra_values, from_joins, after in (
            ("c", "INSERT", "NEW", "", "", "", ""), ("u", "UPDATE", "NEW", "", "", "", ""),
            ("d", "DELETE", "OLD", "".join(", " + n for n in names), "".join(", " + v for v in values),
             "".join(joins), fill)):
        function = q(f"{log.name}_{op}"[:63])
        statements.append(
            f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"INSERT INTO {log_name} (tx, record_id, op, changed_at{extra_columns}) "
            f"SELECT {tx}, changed_rows.id, '{op}', now() AT TIME ZONE 'utc'{extra_values} "
            f"FROM changed_rows{from_joins} ORDER BY changed_rows.id; "
            f"{after}"
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
def commit_order(log: Table, number, dialect: str) -> list:
    """ORDER BY columns of commit order. SQLite: seq alone, its rowid (the number is always 0, and ordering by
    (number, seq) walks the position index from its start past every earlier row: 20–40 ms a page at 1M)."""
    return [log.c.seq] if dialect != "postgresql" else [number, log.c.seq]


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
                                .order_by(*(c.desc() for c in commit_order(log, number, dialect))).limit(1)).first()
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
