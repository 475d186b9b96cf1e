"""The live add/edit form: formula fields shown read-only and recomputed as the user types, defaults from a link
filled when the link changes (views/static/portal/liveform.js).

`POST /<entity>/preview` takes the form's data and `_changed` (the field the user just changed) and runs the
same server code as a save, without saving: clean (record_rules.RecordRules.clean) -> defaults from links
(link_rules.default_value) -> formulas (ExpressionStep.compute). It answers
`{"values": {formula field: text}, "defaults": {field: text}}`: a value that does not clean is empty (null),
never an error; fields the viewer may not read (hidden or masked) are never in the answer.
"""
from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

from flask import jsonify, request, url_for
from flask_babel import gettext
from markupsafe import Markup
from wtforms import Field
from wtforms.widgets import html_params

from app import fab
from app.i18n import lazy
from app.rules.access import current_viewer
from app.rules.link_rules import default_value, link_default_fields, source_readable
from app.rules.record_rules import ExpressionStep
from app.rules.records import FieldError
from app.schema.spec import EntitySpec

ID = re.compile(r"[0-9]{1,18}")
MAX_VALUE = 10_000  # characters of one posted value read by a preview


def form_text(value):
    """A value as a form input shows it (JSON: text, true/false or null)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    return str(value)


class ComputedWidget:
    """A read-only input showing a formula's value; liveform.js keeps it current."""

    def __call__(self, field, **kwargs):
        value = form_text(field.data)
        attrs = {"id": kwargs.pop("id", field.id), "type": "text", "readonly": True, "tabindex": "-1",
                 "class": "form-control portal-computed", "value": "" if value is None else str(value),
                 "data-preview-url": url_for(f"{field.view_endpoint}.preview")}
        return Markup("<input %s>") % Markup(html_params(**attrs))


class ComputedField(Field):
    """A formula field on a form: shown, never read from the request nor written by the form (the rules compute it)."""

    widget = ComputedWidget()

    def __init__(self, spec, entity: EntitySpec, **kwargs) -> None:
        super().__init__(lazy(spec.label), description=lazy(spec.help) if spec.help else "", **kwargs)
        self.view_endpoint = f"{entity.name}View"

    def process_formdata(self, valuelist) -> None:
        pass

    def populate_obj(self, obj, name) -> None:
        pass


def formula_form_fields(entity: EntitySpec) -> dict:
    return {f.name: ComputedField(f, entity) for f in entity.formulas}


def form_columns(entity: EntitySpec) -> list[str]:
    """The add/edit form's fields: the writable ones and, read-only, the formula fields, in schema order."""
    return [f.name for f in entity.fields if not f.readonly or f.formula is not None]


def _posted(f, rules):
    """One posted value, cleaned like a save would; None when it is missing, malformed or refused."""
    values = [v for v in request.form.getlist(f.name) if len(v) <= MAX_VALUE]
    try:
        if f.is_relation:
            ids = [int(v) for v in values if ID.fullmatch(v.strip())]
            return rules.clean(f, ids if f.kind.multiple else (ids[0] if ids else None))
        return rules.clean(f, values[0] if values else None)
    except (FieldError, ValueError, ArithmeticError):
        return None


def preview_response(view):
    """The JSON a live form asks for (see the module docstring)."""
    sm = view.appbuilder.sm
    if not (sm.has_access("can_create", view.class_permission_name) or sm.has_access("can_update", view.class_permission_name)):
        return jsonify(message=gettext("Access is Denied")), 403
    entity = view.entity
    rules = view.writer()
    unreadable = current_viewer().unreadable(entity.name)
    values = {name: _posted(f, rules) for name, f in rules.writable.items() if name in request.form}
    current = None
    pk = request.form.get("_id", "")
    if ID.fullmatch(pk):  # an edit: fields not on the form (readonly, numbers) are read from the stored record
        current = fab.scoped_get(view, int(pk))
    ctx = rules.context(values, current is None, "form", current)
    changed = request.form.get("_changed", "")
    defaults = {}
    for f in link_default_fields(entity):
        link = f.default_from[0]
        if link != changed or values.get(link) is None or f.name in unreadable or not source_readable(rules, f):
            continue  # a cleared link leaves what the user typed
        try:
            value = default_value(rules, f, values[link])
        except FieldError:
            value = None
        defaults[f.name] = ctx.values[f.name] = value
    ExpressionStep().compute(ctx)
    return jsonify(values={f.name: form_text(ctx.values.get(f.name)) for f in entity.formulas if f.name not in unreadable},
                   defaults={name: form_text(value) for name, value in defaults.items()})
