"""What the flush listeners of rollups (rollups.py) and line versions (line_versions.py) both need: which records
a link pointed at before and after a flush, and the link values of stored rows, read in chunks (optionally under a
lock, so that what is read is what the transaction's write replaces)."""
from __future__ import annotations

from itertools import chain

from sqlalchemy import false, inspect, select

CHUNK = 500  # ids per statement (SQLite's old limit is 999 bound values)


def chunks(ids: list, size: int = CHUNK):
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def link_ids_in_history(obj, link, column: str) -> set:
    """The ids a link of a flushed record pointed at, before and after (its `<name>_id` column or its relationship
    may have been set); pre-flush history, so for `after_flush` or `before_flush`."""
    attrs = inspect(obj).attrs
    ids = {v for v in chain(*attrs[column].history) if v is not None}
    ids |= {getattr(v, "id", None) for v in chain(*attrs[link].history) if v is not None}
    return {i for i in ids if i is not None}


def lock_rows(connection, table, ids) -> None:
    """PostgreSQL: lock the rows (in id order); a later statement of the transaction sees what another committed
    meanwhile. SQLite locks the whole database for writing: a write matching nothing takes that lock."""
    if connection.dialect.name == "postgresql":
        for part in chunks(sorted(ids)):
            connection.execute(select(table.c.id).where(table.c.id.in_(part)).order_by(table.c.id)
                               .with_for_update(key_share=True))
    else:
        connection.execute(table.update().where(false()).values(id=table.c.id))


def link_values(connection, table, column, ids, lock: bool = False) -> set:
    """The distinct non-null values of `column` in the rows `ids` of `table` (the records they link to)."""
    if lock and ids:
        lock_rows(connection, table, ids)
    found = set()
    for part in chunks(sorted(ids)):
        found.update(connection.scalars(select(column).where(table.c.id.in_(part), column.isnot(None)).distinct()))
    return found
