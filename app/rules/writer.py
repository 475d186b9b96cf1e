"""Validate a whole record and write it: the one path for API writes and imports.

Field values are cleaned by `records.clean_value`; here links are resolved and
record-level rules (required, unique, unique_together) are checked against the database.
"""
from __future__ import annotations

from flask_appbuilder.security.sqla.models import User
from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, func, select

from app.rules.access import current_viewer
from app.rules.records import FieldError, clean_value, is_blank, record_id
from app.schema.spec import EntitySpec, FieldSpec, PortalSpec


def writable_fields(entity: EntitySpec) -> list[FieldSpec]:
    return [f for f in entity.fields if not f.readonly]


def link_target(portal: PortalSpec, models: dict, f: FieldSpec):
    """(model, title column or None) a link/user/many field points at; users are named by username."""
    if f.type == "user":
        return User, User.username
    title = portal.entity(f.to).title
    return models[f.to], (getattr(models[f.to], title) if title else None)


class RecordWriter:
    def __init__(self, portal: PortalSpec, entity: EntitySpec, models: dict, session) -> None:
        self.portal = portal
        self.entity = entity
        self.model = models[entity.name]
        self.models = models
        self.session = session

    # -- links -----------------------------------------------------------------------------
    def _visible(self, f: FieldSpec, query):
        """Links may only point at records the user can see (a foreman books hours on own sites)."""
        if f.type == "user":
            return query
        clause = current_viewer().row_clause(f.to, self.models)
        return query if clause is None else query.where(clause)

    def resolve_link(self, f: FieldSpec, raw):
        """A link given as an id, {"id": n}, or as text: the target's title (spreadsheets carry titles)."""
        if isinstance(raw, dict):
            raw = raw.get("id")
        if isinstance(raw, float) and raw.is_integer():
            raw = int(raw)
        target, title_column = link_target(self.portal, self.models, f)
        if isinstance(raw, str) and title_column is None and raw.strip().isdigit():
            raw = int(raw)
        if isinstance(raw, int) and not isinstance(raw, bool):
            try:
                record_id(raw)
            except ValueError:  # past the id column's range: the database would overflow
                raise FieldError(_l("No record with id %(id)s.", id=raw)) from None
            record = self.session.scalar(self._visible(f, select(target).where(target.id == raw)))
            if record is None:
                raise FieldError(_l("No record with id %(id)s.", id=raw))
            return record
        if not isinstance(raw, str) or title_column is None:
            raise FieldError(_l("Must be the id of a record."))
        query = self._visible(f, select(target).where(title_column == raw.strip()).limit(2))
        matches = self.session.scalars(query).all()
        if not matches:
            raise FieldError(_l("No record named '%(title)s'.", title=raw.strip()))
        if len(matches) > 1:
            raise FieldError(_l("More than one record is named '%(title)s'; use its id.", title=raw.strip()))
        return matches[0]

    # -- whole record ----------------------------------------------------------------------
    def parse(self, data: dict, creating: bool) -> tuple[dict, dict]:
        """Return (values, errors); errors map a field name to a list of messages."""
        values, errors = {}, {}
        viewer = current_viewer()
        unreadable = viewer.unreadable(self.entity.name)
        fields = {f.name: f for f in writable_fields(self.entity) if f.name not in unreadable}
        readonly = {f.name for f in self.entity.fields if f.readonly or f.name in unreadable}
        for key in data:
            if key in readonly:
                errors[key] = [str(_l("This field is read-only."))]
            elif key not in fields:
                errors[key] = [str(_l("Unknown field."))]
        for name, f in fields.items():
            if name not in data:
                if creating and f.required and f.default is None:
                    errors[name] = [str(_l("This field is required."))]
                continue
            try:
                values[name] = self.clean(f, data[name])
            except FieldError as exc:
                errors[name] = [str(exc)]
        values.update(viewer.forced_values(self.entity.name))  # e.g. a salesperson's records are theirs
        return values, errors

    def clean(self, f: FieldSpec, raw):
        if f.type == "many":
            if is_blank(raw):
                return []
            items = raw if isinstance(raw, list) else [part for part in str(raw).split(",") if part.strip()]
            return [self.resolve_link(f, item) for item in items]
        if is_blank(raw):
            if f.required:
                raise FieldError(_l("This field is required."))
            return None
        if f.type in ("link", "user"):
            return self.resolve_link(f, raw)
        return clean_value(f, raw)

    def conflicts(self, values: dict, current=None) -> dict:
        """Unique and unique_together violations as field errors, checked before writing."""
        errors = {}
        for f in self.entity.fields:
            if f.unique and values.get(f.name) is not None:
                if self._exists({f.name: values[f.name]}, current):
                    errors[f.name] = [str(_l("Already exists."))]
        for group in self.entity.unique_together:
            merged = {name: values[name] if name in values else getattr(current, name, None) for name in group}
            if any(v is None for v in merged.values()):
                continue
            if self._exists(merged, current):
                errors.setdefault(group[0], []).append(
                    str(_l("A record with the same %(fields)s already exists.", fields=", ".join(group))))
        return errors

    def _exists(self, criteria: dict, current) -> bool:
        conditions = []
        for name, value in criteria.items():
            f = self.entity.field(name)
            column = getattr(self.model, f.column_name)
            conditions.append(column == (value.id if f.type in ("link", "user") else value))
        if current is not None and current.id is not None:
            conditions.append(self.model.id != current.id)
        query = select(func.count()).select_from(self.model).where(and_(*conditions))
        return self.session.scalar(query) > 0

    def apply(self, item, values: dict) -> None:
        for name, value in values.items():
            setattr(item, name, value)
