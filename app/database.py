"""Create and evolve the tables behind the schemas on start-up (additive changes only)."""
from __future__ import annotations

import logging

from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import event, inspect
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)


@event.listens_for(Engine, "connect")
def _sqlite_foreign_keys(dbapi_connection, connection_record) -> None:
    """SQLite ignores ON DELETE CASCADE / RESTRICT unless asked per connection."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


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
                new_column.nullable = True
                operations.add_column(table.name, new_column)
                changes.append(f"added column {table.name}.{column.name}")
            indexes = {i["name"] for i in inspector.get_indexes(table.name)}
            for index in table.indexes:
                if index.name not in indexes and not index.unique:
                    index.create(conn)
                    changes.append(f"created index {index.name}")
    for change in changes:
        log.info("database: %s", change)
    return changes
