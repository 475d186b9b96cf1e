"""Type-ahead pickers for link, user and many fields: a paged JSON lookup and the widgets that use it.

FAB renders such fields as a <select> holding every record of the linked table, on every list
page (search form) and add/edit form. Here a picker holds only the chosen record(s) and asks
`/<entity>/lookup/<field>?q=&page=` for more: at most PAGE_SIZE ids and titles per request,
in the viewer's row scope of the linked entity. Submitted ids are checked by RecordWriter,
the same rules as the API (unknown or out-of-scope ids are a field error).
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from flask import current_app, jsonify, request, url_for
from flask_appbuilder.security.sqla.models import User
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from sqlalchemy import String, cast, false, or_, select
from wtforms import Field
from wtforms.validators import StopValidation
from wtforms.widgets import html_params

from app.fieldtypes import type_of
from app.rules.access import current_viewer
from app.portal import current_portal
from app.i18n import lazy
from app.rules.records import FieldError
from app.schema.spec import EntitySpec, FieldSpec

PAGE_SIZE = 20
MAX_PAGE = 500
MAX_QUERY_LENGTH = 100


@dataclass(frozen=True)
class Target:
    """What a link/user/many field points at: which columns to read, search and order by."""

    model: type
    columns: tuple  # read for the title, after the id
    searched: tuple  # matched against the typed text
    order: tuple
    scoped_entity: str | None  # whose row scope applies (None: users)

    @property
    def id_column(self):
        return self.model.id

    def title(self, row) -> str:
        if self.model is User:
            return " ".join(part for part in row[1:] if part) or f"#{row[0]}"
        value = row[1] if len(row) > 1 else None
        if value is None or value == "":
            return f"#{row[0]}"
        return value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else str(value)


def link_target(field: FieldSpec) -> Target:
    """Users are found by username, first or last name and shown by name (as FAB shows them)."""
    if type_of(field).to_users:
        names = (User.first_name, User.last_name)
        return Target(User, names, (User.username, *names), (*names, User.id), None)
    portal = current_portal().spec
    model = current_portal().models[field.to]
    entity = portal.entity(field.to)
    title = entity.field(entity.title) if entity.title in entity.field_names else None
    if title is None or title.is_relation:  # no plain title column: records are "#id"
        return Target(model, (), (), (model.id,), field.to)
    column = getattr(model, title.column_name)
    searched = column if type_of(title).text_search else cast(column, String)
    return Target(model, (column,), (searched,), (column, model.id), field.to)


def _scoped(target: Target, statement):
    if target.scoped_entity is None:
        return statement
    clause = current_viewer().row_clause(target.scoped_entity, current_portal().models)
    return statement if clause is None else statement.where(clause)


def _session():
    return current_app.appbuilder.session


def search_titles(target: Target, text: str, page: int, condition=None) -> tuple[list[dict], bool]:
    """One page of {id, title} matching `text` (case-insensitive, anywhere in the title) and `condition` (the
    field's `filter:`), by title."""
    statement = select(target.id_column, *target.columns)
    if condition is not None:
        statement = statement.where(condition)
    text = text.strip()
    if text and target.searched:
        statement = statement.where(or_(*(c.icontains(text, autoescape=True) for c in target.searched)))
    elif text:  # records without a title are found by id
        statement = statement.where(target.id_column == int(text)) if text.isdecimal() else statement.where(false())
    statement = _scoped(target, statement).order_by(*target.order)
    rows = _session().execute(statement.limit(PAGE_SIZE + 1).offset((page - 1) * PAGE_SIZE)).all()
    return [{"id": row[0], "title": target.title(row)} for row in rows[:PAGE_SIZE]], len(rows) > PAGE_SIZE


def titles_by_id(target: Target, ids) -> list[tuple[int, str]]:
    """(id, title) of the given ids that the viewer may see, in the given order: one query."""
    ids = [i for i in dict.fromkeys(ids) if isinstance(i, int)]
    if not ids:
        return []
    statement = _scoped(target, select(target.id_column, *target.columns).where(target.id_column.in_(ids)))
    found = {row[0]: target.title(row) for row in _session().execute(statement)}
    return [(i, found[i]) for i in ids if i in found]


def lookup_fields(entity: EntitySpec) -> list[FieldSpec]:
    return [f for f in entity.fields if type_of(f).is_relation]


def lookup_response(view, field_name: str):
    """The JSON behind a picker: {"results": [{"id", "title"}], "more": bool}; 404/400 on bad input."""
    field = next((f for f in lookup_fields(view.entity) if f.name == field_name), None)
    if field is None or field.name in current_viewer().unreadable(view.entity.name):
        return jsonify(message=str(_l("Not found."))), 404
    page, text = request.args.get("page", "1"), request.args.get("q", "")
    if not re.fullmatch(r"[0-9]{1,4}", page) or not 1 <= int(page) <= MAX_PAGE:
        return jsonify(message=str(_l("page must be a whole number from 1 to %(max)d.", max=MAX_PAGE))), 400
    if "\x00" in text:  # PostgreSQL refuses NUL in text
        return jsonify(message=str(_l("Not a valid search text."))), 400
    if len(text) > MAX_QUERY_LENGTH:
        return jsonify(message=str(_l("Please type at most %(max)d characters.", max=MAX_QUERY_LENGTH))), 400
    try:
        condition = None if request.args.get("all") == "1" else picker_condition(view, field)
    except FieldError as exc:
        return jsonify(message=str(exc)), 400
    target = link_target(field)
    chosen = request.args.get("id", "")
    if chosen:  # is this one record (the form's current choice) still offered?
        if not re.fullmatch(r"[0-9]{1,18}", chosen):
            return jsonify(message=str(_l("Must be the id of a record."))), 400
        condition = target.id_column == int(chosen) if condition is None else (condition & (target.id_column == int(chosen)))
    results, more = search_titles(target, text, int(page), condition)
    return jsonify(results=results, more=more)


def picker_condition(view, field: FieldSpec):
    """The field's `filter:` as SQL, with the form's current values of the fields it reads (`record.<field>=`
    in the URL, checked like a form value: ids must be of records the viewer may see); None without a filter.
    FieldError (a 400) names the bad value."""
    if not field.filter:
        return None
    from app.rules.link_rules import filter_clause

    viewer = current_viewer()
    unreadable = viewer.unreadable(view.entity.name)
    params = {}
    for name in {c.record_field for c in field.filter if c.record_field is not None} - unreadable:
        raw = request.args.get(f"record.{name}", "")
        if not raw.strip():
            continue  # empty: the condition is dropped, as on save
        mine = view.entity.field(name)
        if len(raw) > MAX_QUERY_LENGTH or "\x00" in raw:
            raise FieldError(_l("Not a valid search text."))
        if mine.is_relation and not re.fullmatch(r"[0-9]{1,18}", raw.strip()):
            raise FieldError(_l("Must be the id of a record."))
        try:
            value = view.writer().clean(mine, int(raw) if mine.is_relation else raw)
        except FieldError as exc:
            raise FieldError(_l("%(field)s: %(problem)s", field=str(lazy(mine.label)), problem=str(exc))) from None
        params[name] = getattr(value, "id", value)
    return filter_clause(current_portal().spec, current_portal().models, field, params, viewer.user_id)


# -- form fields -----------------------------------------------------------------------------

def _ids(values) -> list[int]:
    """Submitted picker values as ids; anything else is refused before touching the database."""
    ids = []
    for value in values:
        value = str(value).strip()
        if not value:
            continue
        if not re.fullmatch(r"[0-9]{1,18}", value):
            raise FieldError(_l("Must be the id of a record."))
        ids.append(int(value))
    return ids


class LookupWidget:
    """A <select> holding only the chosen records; lookups.js turns it into an ajax Select2."""

    def __call__(self, field, **kwargs):
        chosen, multiple = field.chosen(), field.multiple
        attrs = {
            "id": kwargs.pop("id", field.id), "name": field.name,
            "class": "portal-lookup form-control", "multiple": multiple,
            "data-lookup-url": url_for(f"{field.view_endpoint}.lookup", field=field.spec.name,
                                       **({"all": 1} if getattr(field, "unfiltered", False) else {})),
            "data-placeholder": str(_l("Type to search")),
            "data-allow-clear": "true" if field.allow_clear else "false",
            "style": "width: 100%",
        }
        record_fields = getattr(field, "record_fields", ())
        if record_fields:  # a filtered picker: liveform.js sends these fields' values, and refreshes on their change
            attrs["data-record-fields"] = ",".join(record_fields)
        fills = getattr(field, "fills", ())
        if fills:  # defaults from this link: liveform.js asks the preview when it changes
            attrs["data-fills"] = ",".join(fills)
            attrs["data-preview-url"] = url_for(f"{field.view_endpoint}.preview")
        options = [] if multiple else [Markup('<option value=""></option>')]
        options += [Markup('<option selected value="%s">%s</option>') % (pk, title) for pk, title in chosen]
        return Markup("<select %s>%s</select>") % (Markup(html_params(**attrs)), Markup("").join(options))


class LookupField(Field):
    """A link, user or many field whose choices are looked up as the user types.

    `data` is the chosen record (or list of records for many); submitted ids are resolved when
    the form is built, so other fields' validators (unique_together) can read them, and any
    problem is reported when the form is validated.
    """

    widget = LookupWidget()

    def __init__(self, spec: FieldSpec, entity: EntitySpec, writer_factory, **kwargs) -> None:
        super().__init__(lazy(spec.label), description=lazy(spec.help) if spec.help else "", **kwargs)
        self.spec, self.entity, self.writer_factory = spec, entity, writer_factory
        self.view_endpoint = f"{entity.name}View"
        self.multiple = type_of(spec).multiple
        self.allow_clear = not (self.multiple or spec.required)
        self.flags.required = spec.required
        self.record_fields = tuple(dict.fromkeys(c.record_field for c in spec.filter if c.record_field))
        self.fills = tuple(f.name for f in entity.fields if f.default_from and f.default_from[0] == spec.name)
        self._problem = None
        self._resolved = None

    def process_formdata(self, valuelist) -> None:
        self._problem = None
        try:
            ids = _ids(valuelist)
            if self.multiple:
                self.data = self.writer_factory(self.entity).clean(self.spec, ids)
            else:
                self.data = self.writer_factory(self.entity).clean(self.spec, ids[0] if ids else None)
        except FieldError as exc:
            self.data = [] if self.multiple else None
            self._problem = exc
        self._resolved = self.data

    def pre_validate(self, form) -> None:
        if self.data is not self._resolved:  # set by FAB (the link of a related "add"): check it too
            self.process_formdata([str(r.id) for r in self._records()])
        if self._problem is not None:
            raise StopValidation(str(self._problem))

    def _records(self) -> list:
        if self.data is None:
            return []
        return list(self.data) if isinstance(self.data, (list, tuple, set)) else [self.data]

    def chosen(self) -> list[tuple[int, str]]:
        """(id, title) to show as chosen: the records in `data`, else the visible submitted ids."""
        if self._records():
            return [(r.id, str(r)) for r in self._records()]
        try:
            ids = _ids(self.raw_data or [])
        except FieldError:
            return []
        return titles_by_id(link_target(self.spec), ids)


class LookupFilterField(Field):
    """The value input of a list filter on a link: the records filtered by are read from the URL."""

    widget = LookupWidget()
    multiple = allow_clear = False  # one record per filter row (FAB's relation filters take one id)
    unfiltered = True  # a list is filtered by any record, not only those a new record may choose (`filter:`)

    def __init__(self, spec: FieldSpec, entity: EntitySpec, **kwargs) -> None:
        super().__init__(lazy(spec.label), **kwargs)
        self.spec = spec
        self.view_endpoint = f"{entity.name}View"

    def chosen(self) -> list[tuple[int, str]]:
        pattern = re.compile(rf"_flt_[0-9]+_{re.escape(self.spec.name)}")
        values = [v for key in request.args if pattern.fullmatch(key) for v in request.args.getlist(key)]
        try:
            ids = _ids(values)
        except FieldError:
            return []
        return titles_by_id(link_target(self.spec), ids)


def form_fields(entity: EntitySpec, writer_factory) -> dict:
    return {f.name: LookupField(f, entity, writer_factory) for f in lookup_fields(entity) if not f.readonly}


def search_fields(entity: EntitySpec) -> dict:
    return {f.name: LookupFilterField(f, entity) for f in lookup_fields(entity)}
