"""Which tables changed: a version per table, moved in the transaction that writes the table.

Cached report results (app/data/reports/cache.py) are keyed by the versions of the tables they read, so a write
retires exactly the results that read what it wrote, in every process that shares the database.

How a write is seen, once for every write path (forms, API, imports, bulk actions, transitions, deletes, rollups,
CLI): an engine listener (before_cursor_execute) notes the table of every INSERT/UPDATE/DELETE SQLAlchemy sends
(ORM flushes, Core statements and `exec_driver_sql` alike) on the connection; a PostgreSQL COPY (imports) calls `note_written`.
A delete also notes the tables whose foreign keys the database cascades or nulls. Just before the transaction
commits, one statement stores a new random version for each noted table in `portal_table_versions`, on the same
DB-API connection, so the new versions become visible exactly when the data does (no window in which a reader
sees a new version with old data, nothing to lose if the process dies after the commit). Random rather than
counted: a database restored from a backup cannot hand out a version some cached result was already stored under.

Cost on the write path: one upsert per transaction that wrote a watched table (rows: the tables written), measured
in bench/report_cache.py. A row lock on PostgreSQL is held only from that upsert to the commit right after it.
Writes made outside SQLAlchemy (psql, a raw DB-API connection) are not seen; the cache's time-to-live bounds them.
"""
from __future__ import annotations

import re
import secrets

from sqlalchemy import BigInteger, Column, MetaData, String, Table, event, select

TABLE = "portal_table_versions"
NOTED = "portal_written_tables"  # connection.info: tables written in the current transaction
_WRITES = {"INSERT", "UPDATE", "DELETE"}
_WRITE = re.compile(r'^(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(?:"?\w+"?\.)?"?(\w+)"?', re.IGNORECASE)


def versions_table(metadata: MetaData) -> Table:
    return Table(TABLE, metadata,
                 Column("name", String(128), primary_key=True),  # a table name
                 Column("version", BigInteger, nullable=False))


class ChangeSignals:
    """Notes the watched tables each transaction writes and moves their versions as it commits."""

    def __init__(self, watched: set[str], cascades: dict[str, set[str]], aliases: dict[str, str] | None = None) -> None:
        self.watched = frozenset(watched)
        self.cascades = cascades  # table -> tables the database changes when one of its rows is deleted
        self.aliases = aliases or {}  # table -> the one name its version is kept under (several tables, one version)

    def install(self, engine) -> None:
        event.listen(engine, "before_cursor_execute", self._executed)
        event.listen(engine, "commit", self._committing)
        event.listen(engine, "rollback", self._forget)

    def note(self, connection, table: str, deleted: bool = False) -> None:
        names = {table} | (self.cascades.get(table, set()) if deleted else set())
        names &= self.watched
        if names:
            connection.info.setdefault(NOTED, set()).update(self.aliases.get(n, n) for n in names)

    def _executed(self, connection, cursor, statement: str, *args) -> None:
        """before_cursor_execute: every statement SQLAlchemy sends (ORM, Core, exec_driver_sql); a few string
        operations per statement, the regular expression only for writes."""
        if statement[:6].upper() in _WRITES:
            match = _WRITE.match(statement)
            if match:
                self.note(connection, match.group(1), statement[:6].upper() == "DELETE")

    def _committing(self, connection) -> None:
        """ConnectionEvents.commit runs just before the DB-API commit: the upsert joins the committing transaction
        on the raw connection (SQLAlchemy's own transaction is already ending)."""
        names = connection.info.pop(NOTED, None)
        if not names:
            return
        mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
        cursor = connection.connection.dbapi_connection.cursor()
        try:
            cursor.executemany(
                f"INSERT INTO {TABLE} (name, version) VALUES ({mark}, {mark}) "
                "ON CONFLICT (name) DO UPDATE SET version = excluded.version",
                [(name, secrets.randbits(62)) for name in sorted(names)])  # sorted: writers lock rows in one order
        finally:
            cursor.close()

    def _forget(self, connection) -> None:
        connection.info.pop(NOTED, None)


def cascades_of(metadata_list) -> dict[str, set[str]]:
    """table -> every table whose rows the database deletes or updates (ON DELETE CASCADE / SET NULL) when one
    of its rows is deleted, transitively."""
    direct: dict[str, set[str]] = {}
    for metadata in metadata_list:
        for table in metadata.tables.values():
            for fk in table.foreign_keys:
                if fk.ondelete:
                    direct.setdefault(fk.column.table.name, set()).add(table.name)
    closed = {}
    for start in direct:
        seen, todo = set(), [start]
        while todo:
            for child in direct.get(todo.pop(), ()):
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
        closed[start] = seen
    return closed


# FAB's tables that decide what a role may do: one version for all of them, read with the signed-in user in the
# statement that loads it (app/runtime/security.py), so each process keeps the permissions of a set of roles
# until any of these tables is written
SECURITY = "portal:security"
SECURITY_TABLES = ("ab_permission_view_role", "ab_permission_view", "ab_permission", "ab_view_menu", "ab_role")


def install_change_signals(engine, portal, metadata_list) -> ChangeSignals:
    """Watch the portal's entity tables, FAB's user table (user fields show names) and its permission tables."""
    watched = {model.__table__.name for model in portal.models.values()} | {"ab_user"} | set(SECURITY_TABLES)
    signals = ChangeSignals(watched, cascades_of(metadata_list), dict.fromkeys(SECURITY_TABLES, SECURITY))
    signals.install(engine)
    portal.change_signals = signals
    return signals


def note_written(connection, table_name: str) -> None:
    """For writes SQLAlchemy does not execute itself (a COPY on the raw DB-API cursor)."""
    from flask import has_app_context

    from app.portal import current_portal

    signals = getattr(current_portal(), "change_signals", None) if has_app_context() else None
    if signals is not None:
        signals.note(connection, table_name)


def table_versions(connection, metadata: MetaData, names) -> tuple:
    """The current version of each named table (0: never written since versions were kept), in `names` order."""
    names = tuple(names)
    table = metadata.tables[TABLE]
    found = dict(connection.execute(select(table.c.name, table.c.version).where(table.c.name.in_(names))).all())
    return tuple(found.get(name, 0) for name in names)
