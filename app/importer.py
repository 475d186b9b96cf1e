"""Validated, all-or-nothing import of CSV/XLSX rows into one entity.

Every cell goes through the same rules as forms and the API (`records.clean_value`); links are
resolved by title in bulk, uniqueness is checked against the file and the database, the viewer's
row scope and hidden fields apply. Nothing is written unless every row is valid.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Callable

from flask_babel import lazy_gettext as _l
from sqlalchemy import bindparam, delete, insert, select, tuple_, update

from .access import Viewer
from .i18n import lazy
from .records import FieldError, clean_present, clean_value, is_blank
from .schema.spec import EntitySpec, FieldSpec, PortalSpec
from .tabular import FileProblem, read_rows
from .writer import link_target

CHUNK = 500  # values per IN (...) lookup and rows per INSERT batch
MAX_ERRORS = 1000  # a file with more problems is reported up to here


@dataclass
class RowError:
    row: int  # spreadsheet row number (the header is row 1)
    field: str
    message: str

    def as_dict(self) -> dict:
        return {"row": self.row, "field": self.field, "message": self.message}


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    updated: int = 0
    errors: list[RowError] = field(default_factory=list)
    preview: list[dict] = field(default_factory=list)  # first rows: {"row", "action", "values"}
    written: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict:
        return {"rows": self.rows, "created": self.created, "updated": self.updated, "written": self.written,
                "errors": [e.as_dict() for e in self.errors], "preview": self.preview}


def _chunks(values: list, size: int = CHUNK):
    for start in range(0, len(values), size):
        yield values[start:start + size]


class Importer:
    def __init__(self, portal: PortalSpec, entity: EntitySpec, models: dict, session, viewer: Viewer,
                 key: str | None = None) -> None:
        self.portal, self.entity, self.models, self.session, self.viewer = portal, entity, models, session, viewer
        self.model = models[entity.name]
        self.key = key
        self._memo: dict[str, dict] = {}

    # -- public -------------------------------------------------------------------------------
    def run(self, stream, fmt: str, dry_run: bool = True, progress: Callable[[int], None] | None = None,
            preview_rows: int = 20) -> ImportReport:
        report = ImportReport()
        try:
            rows = list(read_rows(stream, fmt))
        except FileProblem as exc:
            report.errors.append(RowError(1, "", str(exc)))
            return report
        rows = [r for r in rows if any(not is_blank(c) for c in r)]
        if not rows:
            report.errors.append(RowError(1, "", str(_l("The file is empty."))))
            return report
        columns = self._columns(rows[0], report)
        if report.errors:
            return report
        data = rows[1:]
        report.rows = len(data)
        records = self._validate(columns, data, report, progress)
        titles = [str(c).strip() if c is not None else "" for c in rows[0]]
        report.preview = [{"row": r["_row"], "action": "update" if r.get("_id") else "create",
                           "values": {t: _show(c) for t, c in zip(titles, data[r["_row"] - 2]) if t}}
                          for r in records[:preview_rows]]
        report.created = sum(1 for r in records if not r.get("_id"))
        report.updated = len(records) - report.created
        if report.errors or dry_run:
            return report
        self._write(columns, records)
        report.written = True
        return report

    # -- header -------------------------------------------------------------------------------
    def _columns(self, header: list, report: ImportReport) -> list[FieldSpec | None]:
        """Match each header cell to a field by name or by its label in any language."""
        by_title: dict[str, FieldSpec] = {}
        for f in self.entity.fields:
            by_title[f.name.lower()] = f
            for _, text in f.label.texts:
                by_title.setdefault(text.strip().lower(), f)
        unreadable = self.viewer.unreadable(self.entity.name)
        columns, seen = [], set()
        for cell in header:
            title = "" if cell is None else str(cell).strip()
            if not title:
                columns.append(None)  # an unnamed, usually empty, column
                continue
            f = by_title.get(title.lower())
            if f is None:
                report.errors.append(RowError(1, title, str(_l("Unknown column."))))
            elif f.name in unreadable or f.readonly:
                report.errors.append(RowError(1, title, str(_l("This column cannot be imported."))))
            elif f.name in seen:
                report.errors.append(RowError(1, title, str(_l("This column appears twice."))))
            else:
                seen.add(f.name)
            columns.append(f if f is not None and f.name not in unreadable and not f.readonly else None)
        if self.key is not None:
            key_field = next((f for f in self.entity.fields if f.name == self.key), None)
            if key_field is None or not key_field.unique:
                report.errors.append(RowError(1, self.key or "", str(_l("The key must be a unique field."))))
            elif self.key not in seen:
                report.errors.append(RowError(1, self.key, str(_l("The key column is missing."))))
        return columns

    # -- rows ---------------------------------------------------------------------------------
    def _validate(self, columns, data: list[list], report: ImportReport, progress) -> list[dict]:
        resolvers = {f.name: self._link_map(f, columns.index(f), data) for f in columns if f is not None and f.is_relation}
        existing = self._existing_by_key(columns, data, report)
        forced = self.viewer.forced_values(self.entity.name)
        present = {f.name for f in columns if f is not None}
        missing_required = [f for f in self.entity.fields
                            if f.required and f.default is None and f.name not in present and f.name not in forced]
        records = []
        for number, cells in enumerate(data, start=2):
            record: dict = {"_row": number}
            errors_before = len(report.errors)
            if any(not is_blank(c) for c in cells[len(columns):]):
                report.errors.append(RowError(number, "", str(_l("This row has more cells than the header has columns."))))
            cells = cells[:len(columns)] + [None] * (len(columns) - len(cells))  # CSV rows may stop early
            for f, cell in zip(columns, cells, strict=True):
                if f is None:
                    continue
                try:
                    record[f.name] = self._value(f, cell, resolvers)
                except FieldError as exc:
                    self._error(report, number, f, str(exc))
            if self.key and record.get(self.key) is not None:
                record["_id"] = existing.get(record[self.key])
                if record["_id"] == "out of scope":
                    self._error(report, number, self.entity.field(self.key), str(_l("This record exists but is not yours to change.")))
            if not record.get("_id"):
                for f in missing_required:
                    self._error(report, number, f, str(_l("This field is required.")))
            for f in self.entity.fields:
                if f.required and f.name in record and record[f.name] in (None, []) and f.name not in forced:
                    self._error(report, number, f, str(_l("This field is required.")))
            record.update({name: (v.id if hasattr(v, "id") else v) for name, v in forced.items()})
            if len(report.errors) == errors_before:
                records.append(record)
            if progress and number % 1000 == 0:
                progress(1000)
        self._check_unique(records, report)
        return records

    def _error(self, report: ImportReport, row: int, f: FieldSpec, message: str) -> None:
        if len(report.errors) < MAX_ERRORS:
            report.errors.append(RowError(row, str(lazy(f.label)), message))

    def _value(self, f: FieldSpec, cell, resolvers):
        if cell is None or cell == "" or (isinstance(cell, str) and not cell.strip()):
            return [] if f.type == "many" else None
        if f.type == "many":
            return [resolvers[f.name](t.strip()) for t in str(cell).replace("，", ",").split(",") if t.strip()]
        if f.is_relation:
            return resolvers[f.name](cell)
        # spreadsheets repeat values (rates, hours, dates, choices): clean each distinct one once
        memo = self._memo.setdefault(f.name, {})
        key = (type(cell), cell)
        if key not in memo:
            try:
                memo[key] = clean_present(f, cell)
            except FieldError as exc:
                memo[key] = exc
        result = memo[key]
        if isinstance(result, FieldError):
            raise result
        return result

    # -- links by title, in bulk ----------------------------------------------------------------
    def _link_map(self, f: FieldSpec, index: int, data: list[list]):
        target, title = link_target(self.portal, self.models, f)
        if title is None:  # an entity without a title is linked by id
            title = target.id
        wanted = set()
        for cells in data:
            cell = cells[index] if index < len(cells) else None
            if not is_blank(cell):
                parts = str(cell).replace("，", ",").split(",") if f.type == "many" else [cell]
                wanted.update(_key_text(p) for p in parts if not is_blank(p))
        scope = None if f.type == "user" else self.viewer.row_clause(f.to, self.models)
        found: dict[str, list[int]] = {}
        for chunk in _chunks(sorted(wanted)):
            values = [int(v) for v in chunk if v.isdigit()] if title is target.id else chunk
            query = select(target.id, title).where(title.in_(values))
            if scope is not None:
                query = query.where(scope)
            for pk, text in self.session.execute(query):
                found.setdefault(_key_text(text), []).append(pk)

        def resolve(cell) -> int:
            text = _key_text(cell)
            ids = found.get(text, [])
            if not ids:
                raise FieldError(_l("No record named '%(title)s'.", title=text))
            if len(ids) > 1:
                raise FieldError(_l("More than one record is named '%(title)s'; use its id.", title=text))
            return ids[0]
        return resolve

    # -- keys and uniqueness ------------------------------------------------------------------
    def _existing_by_key(self, columns, data, report) -> dict:
        """key value -> id of the record to update (or 'out of scope' when it exists but is not the viewer's)."""
        if not self.key or report.errors:
            return {}
        f = self.entity.field(self.key)
        index = [c.name if c else None for c in columns].index(self.key)
        keys = set()
        for cells in data:
            try:
                value = clean_value(f, cells[index] if index < len(cells) else None)
            except FieldError:
                continue
            if value is not None:
                keys.add(value)
        column = getattr(self.model, f.column_name)
        scope = self.viewer.row_clause(self.entity.name, self.models)
        result = {}
        for chunk in _chunks(sorted(keys, key=str)):
            for pk, value in self.session.execute(select(self.model.id, column).where(column.in_(chunk))):
                result[value] = pk
            if scope is not None:
                mine = set(self.session.scalars(select(self.model.id).where(column.in_(chunk), scope)))
                result.update({v: "out of scope" for v, pk in list(result.items()) if v in chunk and pk not in mine})
        return result

    def _check_unique(self, records: list[dict], report: ImportReport) -> None:
        groups = [(f.name,) for f in self.entity.fields if f.unique] + list(self.entity.unique_together)
        for group in groups:
            seen: dict[tuple, int] = {}
            rows = [r for r in records if all(r.get(n) is not None for n in group)]
            for r in rows:
                value = tuple(r[n] for n in group)
                if value in seen:
                    self._error(report, r["_row"], self.entity.field(group[0]),
                                str(_l("Same %(fields)s as row %(row)d.", fields=", ".join(group), row=seen[value])))
                seen.setdefault(value, r["_row"])
            columns = [getattr(self.model, self.entity.field(n).column_name) for n in group]
            owners: dict[tuple, int] = {}
            values = list(seen) if self._table_has_rows() else []  # an empty table cannot conflict
            for chunk in _chunks(values, 3 * CHUNK // max(1, len(group))):
                condition = columns[0].in_([v[0] for v in chunk]) if len(group) == 1 else tuple_(*columns).in_(chunk)
                for row in self.session.execute(select(self.model.id, *columns).where(condition)):
                    owners[tuple(_normal(v) for v in row[1:])] = row[0]
            for r in rows:
                owner = owners.get(tuple(_normal(r[n]) for n in group))
                if owner is not None and owner != r.get("_id"):
                    self._error(report, r["_row"], self.entity.field(group[0]), str(
                        _l("Already exists.") if len(group) == 1 else
                        _l("A record with the same %(fields)s already exists.", fields=", ".join(group))))

    def _table_has_rows(self) -> bool:
        if not hasattr(self, "_has_rows"):
            self._has_rows = self.session.scalar(select(self.model.id).limit(1)) is not None
        return self._has_rows

    # -- writing --------------------------------------------------------------------------------
    def _write(self, columns, records: list[dict]) -> None:
        """Insert new rows and update matched ones in bulk, in one transaction."""
        now = dt.datetime.now().replace(microsecond=0)
        table = self.model.__table__
        scalar = [f for f in self.entity.fields if f.type != "many" and any(c is not None and c.name == f.name for c in columns)]
        scalar += [f for f in self.entity.fields if f.name in self.viewer.forced_values(self.entity.name) and f not in scalar]
        many = [f for f in self.entity.fields if f.type == "many" and any(c is not None and c.name == f.name for c in columns)]
        user_id = self.viewer.user_id
        new, changed = [], []
        for r in records:
            row = {f.column_name: r.get(f.name) for f in scalar}
            row.update(changed_on=now, changed_by_id=user_id)
            if r.get("_id"):
                row["_pk"] = r["_id"]
                changed.append(row)
            else:
                row.update(created_on=now, created_by_id=user_id)
                new.append(row)
        connection = self.session.connection()
        try:
            new_ids = []
            for chunk in _chunks(new, 5000):
                if many:
                    result = connection.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), chunk)
                    new_ids += [row[0] for row in result]
                elif connection.dialect.name == "sqlite":
                    _insert_sqlite(connection, table, chunk)
                else:
                    connection.execute(insert(table), chunk)  # PostgreSQL: SQLAlchemy batches these well
            if changed:
                values = {k: bindparam(k) for k in changed[0] if k != "_pk"}
                statement = update(table).where(table.c.id == bindparam("_pk")).values(values)
                for chunk in _chunks(changed, 5000):
                    connection.execute(statement, chunk)
            if many:
                ids = iter(new_ids)
                targets = [(r.get("_id") or next(ids), r) for r in records]
                for f in many:
                    secondary = getattr(self.model, f.name).property.secondary
                    connection.execute(delete(secondary).where(secondary.c.left_id.in_([pk for pk, r in targets if r.get("_id")])))
                    links = [{"left_id": pk, "right_id": rid} for pk, r in targets for rid in dict.fromkeys(r.get(f.name) or [])]
                    for chunk in _chunks(links, 5000):
                        connection.execute(insert(secondary), chunk)
            self.session.commit()
        except Exception:
            self.session.rollback()
            raise


def _insert_sqlite(connection, table, rows: list[dict]) -> None:
    """INSERT many rows through the driver, with SQLAlchemy's own type conversions and column defaults.

    On SQLite, SQLAlchemy's generic per-row parameter handling costs about twice the insert itself;
    converting column by column gives the same stored values for a fraction of it.
    """
    dialect = connection.dialect
    given = list(rows[0])
    defaults = {c.name: c.default for c in table.columns
                if c.name not in given and c.default is not None and not c.primary_key}
    names = given + list(defaults)
    converters = [table.c[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names]
    fillers = [(d.arg(None) if d.is_callable else d.arg) for d in defaults.values()]
    tuples = []
    for row in rows:
        values = [row[n] for n in given] + [f for f in fillers]
        tuples.append(tuple(v if convert is None or v is None else convert(v) for v, convert in zip(values, converters)))
    columns = ", ".join(dialect.identifier_preparer.quote(n) for n in names)
    marks = ", ".join("?" for _ in names)
    connection.exec_driver_sql(f"INSERT INTO {dialect.identifier_preparer.format_table(table)} ({columns}) VALUES ({marks})", tuples)


def _key_text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _normal(value):
    return value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else value


def _show(value):
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, list):
        return value
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)
