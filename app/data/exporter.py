"""Export an entity's (filtered, scoped) records as spreadsheet rows, fast enough for a million of them.

One Core SELECT reads the rows: the list's filters, row scope and order come from FAB's query, the link
titles are joined in (many-fields aggregated), so no ORM object is built. Cells are converted column by
column; a converted value is remembered per column (`_Memo`), so labels, choice texts, dates and titles
are worked out once per distinct value, not once per cell. Hidden fields are left out, masked ones
masked, and every text cell made safe for spreadsheets (`tabular.safe_text`). What a cell of each field
type looks like is the type's `export_converter` / `export_sql` (app/fieldtypes).
"""
from __future__ import annotations

import csv
import io
import tempfile
from typing import Callable, Iterator

from sqlalchemy import String, case, cast, func, literal, null, select, type_coerce
from sqlalchemy.sql.elements import Label
from sqlalchemy.types import NullType
from sqlalchemy.orm import aliased

from app.data.tabular import safe_text
from app.fieldtypes import type_of
from app.i18n import lazy
from app.rules.access import Viewer, mask_value
from app.schema.spec import EntitySpec, FieldSpec, PortalSpec
from app.data.xlsx_stream import cell_xml

BATCH = 2000  # rows fetched (server-side cursor on PostgreSQL) and sent per chunk
MEMO_LIMIT = 50_000  # distinct values remembered per column before the memo starts over


def export_fields(entity: EntitySpec, viewer: Viewer) -> list[FieldSpec]:
    hidden = viewer.hidden(entity.name)
    return [f for f in entity.fields if f.name not in hidden]


ID_HEADER = "ID"  # the first column of every export: the record's id, so an edited file imports back by `key=id`


def header(fields: list[FieldSpec]) -> list[str]:
    """Column titles are the labels in the user's language; imports accept them in any language."""
    return [ID_HEADER] + [str(lazy(f.label)) for f in fields]


class Export:
    """The rows of one export: `header`, then `batches(session, fmt)` of converted rows."""

    def __init__(self, portal: PortalSpec, entity: EntitySpec, models: dict, viewer: Viewer, query) -> None:
        self.portal, self.entity, self.models = portal, entity, models
        self.fields = export_fields(entity, viewer)
        self.masked = viewer.masked(entity.name)
        self.header = header(self.fields)
        self.statement = self._statement(query)

    # -- one SELECT --------------------------------------------------------------------------
    def _statement(self, query):
        """FAB's filtered, ordered ORM query, selecting the export's columns with link titles joined."""
        model = self.models[self.entity.name]
        columns, joins = [model.id], []
        for f in self.fields:
            ftype = type_of(f)
            if ftype.multiple:
                columns.append(self._many_titles(model, f))
            elif ftype.is_relation:
                fk = getattr(model, f.column_name)
                alias = aliased(ftype.target_model(f, self.models))
                joins.append((alias, fk == alias.id))
                title = alias.username if ftype.to_users else self._title(f.to, alias, joins)
                columns.append(_title_or_id(title, fk))
            elif ftype.export_raw:  # read as the driver gives them (SQLite: text, float, 0/1), converted once
                # per distinct value by the type's `export_converter`, not per cell by SQLAlchemy
                columns.append(type_coerce(getattr(model, f.column_name), NullType()).label(f.name))
            else:
                columns.append(getattr(model, f.column_name))
        statement = query.statement.with_only_columns(*columns, maintain_column_froms=False).select_from(model)
        for alias, onclause in joins:
            statement = statement.outerjoin(alias, onclause)
        self.columns = columns
        return statement

    def _title(self, entity_name: str, alias, joins: list):
        """The column a linked record is shown by (its title; a link title is followed one more join)."""
        target = self.portal.entity(entity_name)
        if not target.title:
            return None
        f = target.field(target.title)
        ftype = type_of(f)
        if ftype.is_relation and not ftype.multiple:
            inner = aliased(ftype.target_model(f, self.models))
            joins.append((inner, getattr(alias, f.column_name) == inner.id))
            return inner.username if ftype.to_users else _title_or_id(self._title(f.to, inner, joins), inner.id)
        return getattr(alias, f.name)

    def _many_titles(self, model, f: FieldSpec):
        """`title, title, ...` of a many-field's records, one correlated aggregate per row."""
        secondary = getattr(model, f.name).property.secondary
        target = aliased(self.models[f.to])  # its own table when the field points at its own entity
        title_name = self.portal.entity(f.to).title
        title_field = self.portal.entity(f.to).field(title_name) if title_name else None
        title = getattr(target, title_name) if title_field is not None and not title_field.is_relation else None
        shown = _title_or_id(title, target.id)
        return (select(func.aggregate_strings(shown, ", "))  # in no set order: SQLite < 3.44 cannot sort it
                .select_from(secondary.join(target, secondary.c.right_id == target.id))
                .where(secondary.c.left_id == model.id).scalar_subquery())

    # -- rows ----------------------------------------------------------------------------------
    def batches(self, session, fmt: str) -> Iterator[list]:
        """Lists of up to BATCH converted rows: values for CSV, `cell_xml` fragments for XLSX."""
        convert = [_same] + [self._converter(f) for f in self.fields]
        if fmt == "xlsx":
            convert = [_compose(cell_xml, fn) for fn in convert]
        memos = [_Memo(fn) for fn in convert]
        result = session.execute(self.statement, execution_options={"stream_results": True, "yield_per": BATCH})
        try:
            for rows in result.partitions():
                columns = zip(*rows)
                converted = [list(map(memo.__getitem__, column)) for memo, column in zip(memos, columns)]
                yield list(zip(*converted))
        finally:
            result.close()

    def _converter(self, f: FieldSpec) -> Callable:
        """DB value -> exported value: the type's export cell, or the mask."""
        if f.name in self.masked:
            return lambda v: "" if v is None else safe_text(mask_value(v))
        return type_of(f).export_converter(f)

    # -- CSV written by PostgreSQL -------------------------------------------------------------
    def can_format_in_database(self, dialect: str) -> bool:
        """PostgreSQL can render every cell itself unless a field is masked (masking rules live in Python)."""
        return dialect == "postgresql" and not self.masked

    def csv_chunks(self, session, spool_bytes: int = 1024 * 1024, progress: Callable[[], None] = lambda: None
                   ) -> Iterator[bytes]:
        """The CSV (BOM, header, rows) written by PostgreSQL's own `COPY ... TO STDOUT (FORMAT csv)`.

        Converting a million rows cell by cell in Python costs ~10x a `COPY` of the same SELECT. Here the
        SELECT already yields each cell as `_converter` shows it (labels, Yes/No, titles, spreadsheet-safe
        text by `tabular.safe_text`'s rules) and PostgreSQL quotes and writes the lines. The COPY runs in the
        request's transaction into a temporary file (disk, not memory), which is then streamed.
        """
        cells = [cast(self.columns[0], String)]  # the id
        for f, column in zip(self.fields, self.columns[1:]):
            column = column.element if isinstance(column, Label) else column
            cells.append(type_of(f).export_sql(f, column))
        statement = self.statement.with_only_columns(*cells)
        connection = session.connection()
        compiled = statement.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
        cursor = connection.connection.dbapi_connection.cursor()
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerow(self.header)  # PostgreSQL ends its lines with \n too
        yield ("\ufeff" + out.getvalue()).encode("utf-8")
        with tempfile.TemporaryFile() as spool:
            from psycopg2.extensions import encodings  # only PostgreSQL gets here

            codec = encodings[cursor.connection.encoding]  # mogrify answers in the client encoding
            select_sql = cursor.mogrify(str(compiled), compiled.params).decode(codec)
            cursor.copy_expert(f"COPY ({select_sql}) TO STDOUT WITH (FORMAT csv)", _Progressing(spool, progress))
            cursor.close()
            spool.seek(0)
            while chunk := spool.read(spool_bytes):
                yield chunk


class _Progressing:
    """A file that calls `progress()` on every write (psycopg2's COPY writes once per row)."""

    def __init__(self, file, progress: Callable[[], None]) -> None:
        self.file, self.progress = file, progress

    def write(self, data) -> int:
        self.progress()
        return self.file.write(data)


class _Memo(dict):
    """fn(value), computed once per distinct value (and forgotten past MEMO_LIMIT values)."""

    def __init__(self, fn: Callable) -> None:
        super().__init__()
        self.fn = fn

    def __missing__(self, value):
        if len(self) >= MEMO_LIMIT:
            self.clear()
        result = self[value] = self.fn(value)
        return result


def _same(value):
    return value


def _compose(outer: Callable, inner: Callable) -> Callable:
    return lambda v: outer(inner(v))


def _title_or_id(title, fk):
    """A linked record's title as text, or `#<id>` when it has none (what the record's __str__ shows)."""
    shown_id = literal("#") + cast(fk, String)
    if title is None:
        return case((fk.is_(None), null()), else_=shown_id)
    return case((fk.is_(None), null()), else_=func.coalesce(func.nullif(cast(title, String), ""), shown_id))
