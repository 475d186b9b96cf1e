"""Create and evolve the tables behind the schemas on start-up (additive changes only), safely across processes.

Start-up is the only time the portal writes schema and permission rows. Under gunicorn several
processes may start at once on an empty database, so that work runs under a cross-process lock;
afterwards the engine is disposed so that no pooled connection survives into a forked worker.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
from contextlib import contextmanager
from pathlib import Path

from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import event, exc, inspect, text
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)


def configure_engine(engine: Engine) -> None:
    """Per-engine settings: SQLite foreign keys, and no connection used in a process that did not open it."""
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_foreign_keys)
    event.listen(engine, "connect", _remember_pid)
    event.listen(engine, "checkout", _refuse_inherited_connection)


def _sqlite_foreign_keys(dbapi_connection, connection_record) -> None:
    """SQLite ignores ON DELETE CASCADE / RESTRICT unless asked per connection."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _remember_pid(dbapi_connection, connection_record) -> None:
    connection_record.info["pid"] = os.getpid()


def _refuse_inherited_connection(dbapi_connection, connection_record, connection_proxy) -> None:
    """SQLAlchemy's fork recipe: a pooled connection opened by another process is never reused here.

    Two processes reading one socket interleave each other's result sets (a request could read another
    request's rows). create_app disposes the pool and gunicorn's post_fork disposes it again; this
    guard makes any connection that still slipped through be replaced instead of shared.
    """
    pid = os.getpid()
    if connection_record.info.get("pid") != pid:
        connection_record.dbapi_connection = connection_proxy.dbapi_connection = None
        raise exc.DisconnectionError(f"connection opened by process {connection_record.info.get('pid')}, not {pid}")


def forget_connections(engine: Engine, close: bool = True) -> None:
    """Drop every pooled connection; in a forked child (close=False) without touching the parent's sockets."""
    if engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:"):
        return  # the single in-memory connection *is* the database
    engine.dispose(close=close)


@contextmanager
def startup_lock(engine: Engine):
    """Serialise start-up work (tables, permissions, roles) across every process on this database.

    PostgreSQL: a session advisory lock keyed by the database URL (so test schemas don't wait on each
    other); SQLite: an flock on a file beside the database. Released when the block ends or the process dies.
    """
    key = int.from_bytes(hashlib.sha256(str(engine.url).encode()).digest()[:8], "big", signed=True)
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                conn.commit()
        return
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    lock_path = Path(database).with_name(Path(database).name + ".startup-lock")
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_tables(engine: Engine, metadata) -> list[str]:
    """Create missing tables, then add the columns and indexes a schema gained since then.

    Columns are added as nullable (existing rows have no value); nothing is ever dropped,
    so removing a field from YAML keeps its data. Returns what was changed, for the log.
    """
    changes = []
    with engine.begin() as conn:
        existing = set(inspect(conn).get_table_names())
        metadata.create_all(conn)
        changes += [f"created table {t}" for t in metadata.tables if t not in existing]
        inspector = inspect(conn)
        operations = Operations(MigrationContext.configure(conn))
        for table in metadata.sorted_tables:
            if table.name not in existing:
                continue
            present = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name in present:
                    continue
                new_column = column._copy()
                # existing rows get the server default (row_version: 1), else the column stays empty
                new_column.nullable = column.nullable or column.server_default is None
                new_column.unique = None  # SQLite cannot ALTER a constraint in: a unique index instead (below)
                operations.add_column(table.name, new_column)
                changes.append(f"added column {table.name}.{column.name}")
                if column.unique:  # existing rows hold NULL, which a unique index allows many times
                    name = f"uq_{table.name}_{column.name}"[:63]
                    operations.create_index(name, table.name, [column.name], unique=True)
                    changes.append(f"created unique index {name}")
            indexes = _stored_indexes(conn, inspector, table.name)
            for index in table.indexes:
                if index.name in indexes and _plain_became_expression(indexes[index.name], index):
                    index.drop(conn)  # an older build indexed the whole text; long values did not fit
                    del indexes[index.name]
                    changes.append(f"dropped index {index.name}")
                if index.name not in indexes and not index.unique:
                    index.create(conn)
                    changes.append(f"created index {index.name}")
    for change in changes:
        log.info("database: %s", change)
    return changes


def _stored_indexes(conn, inspector, table_name: str) -> dict:
    """Index name -> reflected index. SQLAlchemy does not reflect SQLite's expression indexes: name them only."""
    if conn.dialect.name == "sqlite":
        rows = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = :t"),
                            {"t": table_name})
        return {name: {} for name, in rows}
    return {i["name"]: i for i in inspector.get_indexes(table_name)}


def _plain_became_expression(reflected: dict, index) -> bool:
    """A stored index on plain columns whose definition is now an expression (a prefix of a text)."""
    is_expression = any(not hasattr(e, "table") for e in index.expressions)
    return is_expression and all(reflected.get("column_names") or [None])
