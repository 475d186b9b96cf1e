"""An edited export imported back as an update: which record each row is (`ImportKey`) and what it changes
(`Comparison`), for app/data/importer.py.

A key is `id` (the export's ID column), one unique field, or the fields of one `unique_together` set
(`key=work_date,worker,project`, in any order). A row whose key names an existing record of the viewer's is an
update; the record's stored values of the file's columns are read once per chunk (one IN (...) query per 1,000
rows, one more per many-field) and compared with the row's cleaned values: a row that changes nothing is
"unchanged" and not written; a changed one lists old → new per field. The file's columns are only fields the
viewer may write, so hidden and masked values are never compared or shown.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation

from flask_babel import lazy_gettext as _l
from sqlalchemy import select, tuple_

from app.i18n import lazy
from app.schema.spec import EntitySpec, FieldSpec

IDS_PER_QUERY = 1000


def record_id(cell) -> int | None:
    """An ID cell (text from CSV, a number from XLSX) as a record id, or None."""
    if isinstance(cell, float):
        return int(cell) if cell.is_integer() and cell > 0 else None
    if isinstance(cell, int) and not isinstance(cell, bool):
        return cell if cell > 0 else None
    text = str(cell).strip()
    return int(text) if text.isdecimal() and 0 < int(text) < 2 ** 63 else None


class ImportKey:
    """`key=` of an import: None (always create), `id`, a unique field, or a unique_together set."""

    def __init__(self, entity: EntitySpec, key: str | None) -> None:
        self.entity = entity
        self.raw = (key or "").strip() or None
        self.given = self.raw is not None
        names = tuple(n.strip() for n in self.raw.replace("，", ",").split(",")) if self.given else ()
        self.by_id = names == ("id",)
        self.fields = () if self.by_id or not self.given else self._resolve(names)

    def _resolve(self, names: tuple) -> tuple | None:
        if len(names) == 1:
            f = next((f for f in self.entity.fields if f.name == names[0]), None)  # any text may come in
            return names if f is not None and f.unique else None
        for group in self.entity.unique_together:
            if len(group) == len(names) and set(group) == set(names):
                return tuple(group)
        return None

    def problem(self, present: set, has_id_column: bool) -> tuple[str, str] | None:
        """(column, message) when the key cannot be used with this file."""
        if not self.given:
            return None
        if self.by_id:
            return None if has_id_column else ("ID", str(_l("The key column is missing.")))
        if self.fields is None:
            return (self.raw, str(_l("The key must be id, a unique field or fields that are unique together.")))
        missing = [n for n in self.fields if n not in present]
        return (missing[0], str(_l("The key column is missing."))) if missing else None

    def value(self, record: dict):
        values = tuple(record[n] for n in self.fields)
        return values if len(values) > 1 else values[0]

    def existing_ids(self, importer, chunk: list) -> dict:
        """key=id: id -> id for the chunk's ids that are records in the viewer's scope (others are absent)."""
        wanted = set()
        for _, cells in chunk:
            cell = cells[importer._id_index] if importer._id_index < len(cells) else None
            pk = None if cell is None else record_id(cell)
            if pk is not None:
                wanted.add(pk)
        model = importer.model
        scope = importer.viewer.row_clause(importer.entity.name, importer.models)
        found = {}
        ordered = sorted(wanted)
        for start in range(0, len(ordered), IDS_PER_QUERY):
            query = select(model.id).where(model.id.in_(ordered[start:start + IDS_PER_QUERY]))
            if scope is not None:
                query = query.where(scope)
            found.update((pk, pk) for pk in importer.session.scalars(query))
        return found

    def existing(self, importer, keys: set) -> dict:
        """key value -> id of the record holding it, or 'out of scope' when the viewer may not change it (a unique
        value is no secret: creating the row would be refused as a duplicate anyway)."""
        model = importer.model
        columns = [getattr(model, self.entity.field(n).column_name) for n in self.fields]
        scope = importer.viewer.row_clause(importer.entity.name, importer.models)
        single = len(columns) == 1
        extra = [] if scope is None else [scope.label("mine")]
        stored = {}
        ordered = sorted(keys, key=str)
        per_query = 500 // len(columns)
        for start in range(0, len(ordered), per_query):
            values = ordered[start:start + per_query]
            condition = columns[0].in_(values) if single else tuple_(*columns).in_(values)
            for row in importer.session.execute(select(model.id, *columns, *extra).where(condition)):
                value = row[1] if single else tuple(row[1:1 + len(columns)])
                stored[_key(value)] = row[0] if scope is None or row[-1] else "out of scope"
        return {key: stored[_key(key)] for key in keys if _key(key) in stored}


def _key(value):
    return tuple(_normal(v) for v in value) if isinstance(value, tuple) else _normal(value)


def _normal(value):
    if isinstance(value, dt.datetime):
        return value.replace(microsecond=0).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return value.normalize()
    return value


class Comparison:
    """Old → new of the file's columns for rows that update a record."""

    def __init__(self, importer, columns: list) -> None:
        self.importer = importer
        self.fields = [f for f in columns if f is not None]

    def compare(self, records: list[dict], columns) -> dict:
        """row number -> {column title: {"old": text, "new": text}} for each record the row updates (empty: the
        row changes nothing)."""
        keyed = [r for r in records if r.get("_id")]
        if not keyed:
            return {}
        stored = self._stored([r["_id"] for r in keyed])
        raw = {}
        for r in keyed:
            old = stored.get(r["_id"], {})
            raw[r["_row"]] = [(f, old.get(f.name), r.get(f.name)) for f in self.fields
                              if f.name in r and not same(f, old.get(f.name), r.get(f.name))]
        titles = self._titles([(f, v) for diffs in raw.values() for f, old, new in diffs for v in (old, new)])
        return {row: {str(lazy(f.label)): {"old": self._shown(f, old, titles), "new": self._shown(f, new, titles)}
                      for f, old, new in diffs} for row, diffs in raw.items()}

    def _stored(self, ids: list) -> dict:
        model = self.importer.model
        scalar = [f for f in self.fields if not f.kind.multiple]
        many = [f for f in self.fields if f.kind.multiple]
        stored: dict = {}
        session = self.importer.session
        for start in range(0, len(ids), IDS_PER_QUERY):
            part = ids[start:start + IDS_PER_QUERY]
            if scalar:
                query = select(model.id, *(getattr(model, f.column_name) for f in scalar)).where(model.id.in_(part))
                for row in session.execute(query):
                    stored[row[0]] = {f.name: value for f, value in zip(scalar, row[1:])}
            for f in many:
                secondary = getattr(model, f.name).property.secondary
                for pk in part:
                    stored.setdefault(pk, {})[f.name] = []
                for left, right in session.execute(select(secondary.c.left_id, secondary.c.right_id)
                                                   .where(secondary.c.left_id.in_(part))):
                    stored[left][f.name].append(right)
        return stored

    def _titles(self, values: list) -> dict:
        """(entity or 'user', id) -> the title the export shows for a linked record (read like the export)."""
        wanted: dict = {}
        for f, value in values:
            if not f.is_relation or value in (None, []):
                continue
            ids = value if isinstance(value, list) else [value]
            wanted.setdefault(("user" if f.kind.to_users else f.to, f), set()).update(ids)
        titles = {}
        for (target, f), ids in wanted.items():
            model = f.kind.target_model(f, self.importer.models)
            if f.kind.to_users:
                title = model.username
            else:
                name = self.importer.portal.entity(f.to).title
                title_field = self.importer.portal.entity(f.to).field(name) if name else None
                title = getattr(model, name) if title_field is not None and not title_field.is_relation else None
            if title is None:
                continue
            for pk, text in self.importer.session.execute(select(model.id, title).where(model.id.in_(sorted(ids)))):
                titles[(target, pk)] = "" if text is None else str(text)
        return titles

    def _shown(self, f: FieldSpec, value, titles: dict):
        if value is None or value == [] or value == "":
            return ""
        if f.is_relation:
            target = "user" if f.kind.to_users else f.to
            ids = value if isinstance(value, list) else [value]
            return ", ".join(titles.get((target, pk)) or f"#{pk}" for pk in sorted(ids))
        label = f.choice_label(value) if f.choices else None
        if label is not None:
            return str(lazy(label))
        if isinstance(value, bool):
            return str(_l("Yes")) if value else str(_l("No"))
        if isinstance(value, (dt.date, dt.datetime)):
            return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
        return str(value)


def same(f: FieldSpec, old, new) -> bool:
    """Whether a cleaned value from the file equals the stored one (as an export then import would see it)."""
    if f.kind.multiple:
        return set(old or ()) == set(new or ())
    if old in (None, "") or new in (None, ""):
        return old in (None, "") and new in (None, "")
    if isinstance(old, dt.datetime) and isinstance(new, dt.datetime):
        if new.microsecond == 0:  # an export shows seconds
            old = old.replace(microsecond=0)
        return old.replace(tzinfo=None) == new.replace(tzinfo=None)
    if isinstance(old, Decimal) or isinstance(new, Decimal):
        try:
            return Decimal(str(old)) == Decimal(str(new))
        except InvalidOperation:
            return False
    return old == new


def key_choices(entity: EntitySpec, unreadable: frozenset) -> list[tuple[str, str]]:
    """The import page's "Update records matching" choices: ID, each unique field, each unique_together set."""
    choices = [("id", "ID")]
    choices += [(f.name, str(lazy(f.label))) for f in entity.fields if f.unique and f.name not in unreadable]
    for group in entity.unique_together:
        if not set(group) & unreadable:
            choices.append((",".join(group), " + ".join(str(lazy(entity.field(n).label)) for n in group)))
    return choices
