"""Write validated import rows in bulk, in the caller's transaction, without holding them in memory.

The importer spools rows (already cleaned, as column values) to a temp file chunk by chunk while it
validates; only when every row is valid does `write` read them back: PostgreSQL gets one `COPY ... FROM
STDIN` (psycopg2 `copy_expert` on the session's own connection, so it is part of the same transaction),
SQLite one driver-level executemany per chunk. Updates (import by key) and many-field links go through
batched UPDATE/INSERT statements.
"""
from __future__ import annotations

import datetime as dt
import pickle
import tempfile
from dataclasses import dataclass, field
from typing import Iterator

from sqlalchemy import bindparam, delete, false, func, insert, select, text, update

from app.data.changes import note_written
from app.rules.record_rules import AUDIT_CHANGED, AUDIT_NEW
from app.schema.spec import VERSION_COLUMN

COPY_READ = 1024 * 1024  # bytes psycopg2 asks for per read of the COPY stream


@dataclass
class Chunk:
    new: list[tuple] = field(default_factory=list)      # values in `RowSpool.new_columns` order
    changed: list[tuple] = field(default_factory=list)  # values in `changed_columns` order, then the id
    new_links: list[dict] = field(default_factory=list)      # many-field name -> ids, per new row
    changed_links: list[tuple] = field(default_factory=list)  # (id, {many-field name -> ids})


class RowSpool:
    """Chunks of validated rows pickled to an anonymous temp file, read back in order."""

    def __init__(self, columns: list[str], many: list[str]) -> None:
        self.columns, self.many = columns, many
        self.new_columns = columns + list(AUDIT_NEW)  # values stamped by RecordRules.stamp_many
        self.changed_columns = columns + list(AUDIT_CHANGED)
        self.file = tempfile.TemporaryFile()
        self.count = 0

    def add(self, chunk: Chunk) -> None:
        pickle.dump(chunk, self.file, protocol=pickle.HIGHEST_PROTOCOL)
        self.count += 1

    def __iter__(self) -> Iterator[Chunk]:
        self.file.seek(0)
        for _ in range(self.count):
            yield pickle.load(self.file)

    def close(self) -> None:
        self.file.close()


def write(connection, table, spool: RowSpool, secondaries: dict, history=None) -> None:
    """Insert new rows, update matched ones and set many-field links; the caller commits or rolls back.

    `history` (app/rules/history.py ImportHistory, for `history: true` entities) hears of each chunk's new rows with
    their ids and of each chunk's updated rows before they are updated."""
    dialect = connection.dialect.name
    if spool.many:
        for chunk in spool:
            ids = _insert_returning(connection, table, spool, chunk, secondaries)
            if history is not None and ids:
                history.created(connection, chunk.new, chunk.new_links, ids)
    elif history is not None:  # ids taken first, so each chunk's history is one INSERT right after its rows
        next_ids = _id_source(connection, table)
        for chunk in spool:
            if chunk.new:
                ids = next_ids(len(chunk.new))
                if dialect == "postgresql":
                    _copy(connection, table, spool, [chunk], ids)
                else:
                    _insert_driver(connection, table, ["id"] + spool.new_columns,
                                   [(pk,) + row for pk, row in zip(ids, chunk.new)])
                history.created(connection, chunk.new, None, ids)
    elif dialect == "postgresql":
        _copy(connection, table, spool)
    else:
        for chunk in spool:
            if chunk.new:
                _insert_driver(connection, table, spool.new_columns, chunk.new)
    for chunk in spool:
        if chunk.changed:
            if history is not None:
                history.updating(connection, chunk.changed, chunk.changed_links)
            _update(connection, table, spool, chunk, secondaries)


def _id_source(connection, table):
    """`take(n)` -> n new ids for `table`, taken before the rows are written (COPY and executemany return none).

    PostgreSQL: from the id column's sequence (what the rows would have got). SQLite: the table is locked for
    writing first (one writer at a time), so the next ids are max(id)+1, ... (past sqlite_sequence for AUTOINCREMENT
    tables) as SQLite itself would number them."""
    if connection.dialect.name == "postgresql":
        def take(n: int) -> list[int]:
            return list(connection.scalars(
                text("SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"),
                {"t": connection.dialect.identifier_preparer.format_table(table), "n": n}))
        return take
    connection.execute(table.update().where(false()).values(id=table.c.id))  # the write lock, held until commit
    last = [connection.scalar(select(func.max(table.c.id))) or 0]
    if table.dialect_options["sqlite"]["autoincrement"]:  # ids of deleted rows are never given again
        used = connection.exec_driver_sql("SELECT seq FROM sqlite_sequence WHERE name = ?", (table.name,)).scalar()
        last[0] = max(last[0], used or 0)

    def take(n: int) -> list[int]:
        start = last[0] + 1
        last[0] += n
        return list(range(start, start + n))
    return take


def _defaults(table, given: list[str]) -> tuple[list[str], list]:
    """Columns the file does not set that have a Python-side default (e.g. approved=false), with that value."""
    defaults = {c.name: c.default for c in table.columns
                if c.name not in given and c.default is not None and not c.primary_key}
    return list(defaults), [(d.arg(None) if d.is_callable else d.arg) for d in defaults.values()]


def _insert_driver(connection, table, given: list[str], rows: list[tuple]) -> None:
    """INSERT many rows through the driver, with SQLAlchemy's own type conversions and column defaults.

    On SQLite, SQLAlchemy's generic per-row parameter handling costs about twice the insert itself;
    converting column by column gives the same stored values for a fraction of it.
    """
    dialect = connection.dialect
    extra, fillers = _defaults(table, given)
    names = given + extra
    converters = [table.c[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names]
    tail = tuple(fillers)
    tuples = [tuple(v if convert is None or v is None else convert(v) for v, convert in zip(row + tail, converters))
              for row in rows]
    columns = ", ".join(dialect.identifier_preparer.quote(n) for n in names)
    marks = ", ".join("?" if dialect.paramstyle == "qmark" else "%s" for _ in names)
    connection.exec_driver_sql(f"INSERT INTO {dialect.identifier_preparer.format_table(table)} ({columns}) VALUES ({marks})", tuples)


def _copy(connection, table, spool: RowSpool, chunks=None, ids: list[int] | None = None) -> None:
    """All new rows (of `chunks`, default the whole spool) in one COPY on the session's own psycopg2 connection
    (same transaction); with `ids`, the rows get those ids."""
    extra, fillers = _defaults(table, spool.new_columns)
    preparer = connection.dialect.identifier_preparer
    columns = ", ".join(preparer.quote(n) for n in (["id"] if ids else []) + spool.new_columns + extra)
    tail = "".join("\t" + _copy_text(v) for v in fillers) + "\n"

    def lines() -> Iterator[bytes]:
        for chunk in (spool if chunks is None else chunks):
            if chunk.new and ids:
                yield "".join(f"{pk}\t" + "\t".join(map(_copy_text, row)) + tail
                              for pk, row in zip(ids, chunk.new)).encode("utf-8")
            elif chunk.new:
                yield "".join("\t".join(map(_copy_text, row)) + tail for row in chunk.new).encode("utf-8")

    note_written(connection, table.name)  # SQLAlchemy does not see a COPY: the report cache must (app/data/changes.py)
    cursor = connection.connection.dbapi_connection.cursor()
    try:
        cursor.copy_expert(f"COPY {preparer.format_table(table)} ({columns}) FROM STDIN", _Reader(lines()), COPY_READ)
    finally:
        cursor.close()


def _copy_text(value) -> str:
    """One value in PostgreSQL's COPY text format."""
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, str):
        if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
            return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
        return value
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    return str(value)


class _Reader:
    """A file-like `read()` over a generator of byte chunks, for copy_expert."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks, self.buffer = chunks, b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self.buffer) < size:
            part = next(self.chunks, None)
            if part is None:
                break
            self.buffer += part
        if size < 0:
            size = len(self.buffer)
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def readline(self, size: int = -1) -> bytes:  # part of the file protocol psycopg2 may use
        return self.read(size)


def _insert_returning(connection, table, spool: RowSpool, chunk: Chunk, secondaries: dict) -> list[int]:
    """Rows of an entity with many-fields: INSERT ... RETURNING id, then their link rows; returns the new ids."""
    if not chunk.new:
        return []
    rows = [dict(zip(spool.new_columns, row)) for row in chunk.new]
    result = connection.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows)
    ids = [row[0] for row in result]
    for name in spool.many:
        links = [{"left_id": pk, "right_id": rid} for pk, wanted in zip(ids, chunk.new_links)
                 for rid in dict.fromkeys(wanted.get(name) or [])]
        if links:
            connection.execute(insert(secondaries[name]), links)
    return ids


def _update(connection, table, spool: RowSpool, chunk: Chunk, secondaries: dict) -> None:
    names = spool.changed_columns
    statement = update(table).where(table.c.id == bindparam("_pk")).values({n: bindparam(n) for n in names})
    if VERSION_COLUMN in table.c:  # an update by key is a save too: pages and API holding the old version get 409
        statement = statement.values({VERSION_COLUMN: table.c[VERSION_COLUMN] + 1})
    connection.execute(statement, [dict(zip(names + ["_pk"], row)) for row in chunk.changed])
    for name in spool.many:
        secondary = secondaries[name]
        connection.execute(delete(secondary).where(secondary.c.left_id.in_([pk for pk, _ in chunk.changed_links])))
        links = [{"left_id": pk, "right_id": rid} for pk, wanted in chunk.changed_links
                 for rid in dict.fromkeys(wanted.get(name) or [])]
        if links:
            connection.execute(insert(secondary), links)
