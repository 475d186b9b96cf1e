"""The drill-down target: `/<entity>/list/?drill=<JSON>` and `/api/v1/<entity>/?drill=<JSON>` list the records
behind a report cell (app/data/reports/drill.py makes the URLs).

The JSON is an object in the filter language (docs/schema.md "Filters") plus what a report group needs and the
language does not say: a link or user field equal to a record id (`{"project": 3}`, `{"project": [3, 4]}`,
`{"project": {"null": true}}`). It adds to the viewer's row scope (the FAB base filters keep it), never replaces
it. An unknown field or operator, or a field the viewer may not see, is a localized 400 before the list runs.
The list page shows the drill as a bar of conditions in words with a link that removes it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from flask import current_app, g, has_request_context, jsonify, render_template, request
from flask_appbuilder.models.filters import BaseFilter
from flask_babel import gettext
from flask_jwt_extended import verify_jwt_in_request
from markupsafe import Markup, escape
from sqlalchemy import and_, true

from app.fieldtypes import type_of
from app.i18n import current_locale, lazy
from app.portal import current_portal
from app.rules.access import current_viewer
from app.rules.filters import context_for, filter_clause
from app.rules.records import record_id
from app.schema.filters import Condition, FilterProblem, Relative, parse_filter

DRILL_ARG = "drill"
MAX_DRILL_LENGTH = 4000  # a drill names a handful of conditions; longer is not one of ours
LINK_OPERATORS = ("eq", "in", "null")
OPERATOR_WORDS = {"eq": "=", "ne": "≠", "lt": "<", "lte": "≤", "gt": ">", "gte": "≥", "in": "∈"}


class DrillRefused(ValueError):
    """A drill that does not fit the entity or the viewer; the message is localized."""


@dataclass(frozen=True)
class Drill:
    entity: str
    conditions: tuple  # filter-language Conditions (parse_filter), plus Conditions on link/user ids


def _link_condition(f, value) -> Condition:
    """A link or user field compared with record ids: a number, a list of numbers, null, or {eq|in|null: ...}."""
    ops = value if isinstance(value, dict) else {"null": True} if value is None else {
        "in" if isinstance(value, list) else "eq": value}
    if len(ops) != 1 or next(iter(ops)) not in LINK_OPERATORS:
        raise DrillRefused(gettext("%(field)s takes a record id, a list of record ids or null.", field=f.name))
    op, operand = next(iter(ops.items()))
    try:
        if op == "null":
            if not isinstance(operand, bool):
                raise ValueError(operand)
            return Condition((f.name,), "null", operand)
        if op == "in":
            if not isinstance(operand, list) or not operand or len(operand) > 1000:
                raise ValueError(operand)
            return Condition((f.name,), "in", tuple(record_id(v) for v in operand))
        return Condition((f.name,), "eq", record_id(operand))
    except (ValueError, TypeError):
        raise DrillRefused(gettext("%(field)s takes a record id, a list of record ids or null.", field=f.name)) from None


def parse_drill(entity_name: str, text: str) -> Drill:
    """The drill argument as conditions on `entity_name`, checked against the schema and the viewer."""
    from app.generate.saved_views import filter_unreadable_field  # saved_views imports this module

    spec = current_portal().spec
    entity = spec.entity(entity_name)
    if len(text) > MAX_DRILL_LENGTH:
        raise DrillRefused(gettext("The drill-down is too long."))
    if "\x00" in text or "\\u0000" in text:  # PostgreSQL can neither store nor compare NUL
        raise DrillRefused(gettext("The drill-down must be a JSON object of field: condition."))
    try:
        raw = json.loads(text)
    except ValueError:
        raw = None
    if not isinstance(raw, dict):
        raise DrillRefused(gettext("The drill-down must be a JSON object of field: condition."))
    ids, rest = [], {}
    for name, value in raw.items():
        f = entity.field(name) if name in entity.field_names else None
        if f is not None and f.stores_link:
            ids.append(_link_condition(f, value))
        else:
            rest[name] = value
    try:
        conditions = parse_filter({e.name: e for e in spec.entities}, entity_name, rest) if rest else ()
    except FilterProblem as exc:
        raise DrillRefused(gettext("The drill-down does not fit %(entity)s: %(problem)s", entity=lazy(entity.label),
                                   problem=exc.message)) from None
    conditions = tuple(ids) + tuple(conditions)
    hidden = filter_unreadable_field(entity_name, conditions)
    if hidden:
        raise DrillRefused(gettext("The drill-down may not use %(field)s.", field=hidden))
    return Drill(entity_name, conditions)


def drill_clause(drill: Drill):
    """The drill's SQL condition (without the row scope, which the list's base filters add)."""
    portal = current_portal()
    model, entity = portal.models[drill.entity], portal.spec.entity(drill.entity)
    ids = [c for c in drill.conditions if len(c.path) == 1 and entity.field(c.path[0]).stores_link]
    rest = tuple(c for c in drill.conditions if c not in ids)
    clauses = []
    for c in ids:
        column = getattr(model, entity.field(c.path[0]).column_name)
        clauses.append((column.is_(None) if c.value else column.isnot(None)) if c.op == "null"
                       else column.in_(c.value) if c.op == "in" else column == c.value)
    clause = filter_clause(portal.spec, portal.models, drill.entity, rest, context_for(current_viewer().user_id))
    return and_(true(), clause, *clauses)


# -- per request ------------------------------------------------------------------------------------------------

def _drilled_endpoints(entity_name: str) -> tuple[str, ...]:
    # the list, its export and bulk actions ("all N matching") mean the same rows; the API's list too
    return (f"{entity_name}View.list", f"{entity_name}View.export_data", f"{entity_name}View.bulk",
            f"{entity_name}Api.get_list")


def _entity_of_endpoint() -> str | None:
    endpoint = request.endpoint or ""
    for entity in current_portal().spec.entities:
        if endpoint in _drilled_endpoints(entity.name):
            return entity.name
    return None


def active_drill(entity_name: str) -> Drill | None:
    """The drill of this request's list of `entity_name` (checked before the view ran: see `check_drill`)."""
    if not has_request_context() or not request.args.get(DRILL_ARG) or request.endpoint not in _drilled_endpoints(entity_name):
        return None
    cache = g.setdefault("portal_drills", {})
    if entity_name not in cache:
        cache[entity_name] = parse_drill(entity_name, request.args[DRILL_ARG])
    return cache[entity_name]


def check_drill():
    """before_request: a drill that does not fit is a 400 with its reason (JSON under /api/, else a page)."""
    if not request.args.get(DRILL_ARG):
        return None
    entity_name = _entity_of_endpoint()
    if entity_name is None:
        return None
    if request.path.startswith("/api/"):
        verify_jwt_in_request(optional=True)  # before anything asks who the viewer is (it is cached per request)
    if not current_app.appbuilder.sm.current_user:
        return None  # the list answers 401 or sends them to sign in, before any drill is read
    try:
        active_drill(entity_name)
    except DrillRefused as exc:
        if request.path.startswith("/api/"):
            return jsonify(message=str(exc)), 400
        return render_template("portal/error.html", title=gettext("Bad request"), message=str(exc)), 400
    return None


class DrillFilter(BaseFilter):
    """FAB base filter: the request's drill on a list page, its export and bulk actions, and the list API."""

    name = "Drill-down"
    arg_name = "drill"

    def apply(self, query, entity_name):
        drill = active_drill(entity_name)
        return query if drill is None else query.filter(drill_clause(drill))


def drill_filters(entity) -> list:
    return [["id", DrillFilter, entity.name]]


def install_drill(app) -> None:
    app.before_request(check_drill)


# -- in words ---------------------------------------------------------------------------------------------------

def _value_words(f, value, titles: dict) -> str:
    if isinstance(value, tuple):
        return ", ".join(_value_words(f, v, titles) for v in value)
    if isinstance(value, Relative):  # "today + 7 days", "今天 + 7 天"
        base = {"user": gettext("me"), "today": gettext("today"), "now": gettext("now")}.get(value.base, str(value))
        if not value.amount:
            return base
        unit = {"d": gettext("days"), "h": gettext("hours"), "m": gettext("minutes")}.get(value.unit, value.unit)
        return f"{base} {'+' if value.amount > 0 else '−'} {abs(value.amount)} {unit}"
    if f is not None and f.stores_link:
        return titles.get(value, f"#{value}")
    if f is not None and (f.choices or isinstance(value, bool)):
        return type_of(f).report_label(f, value, None)
    return str(value)


def conditions_in_words(entity_name: str, conditions) -> list[str]:
    """Each field's conditions as "Project = Tower A", "Work date ≥ 2026-01-01 and < 2026-02-01": link ids by
    their titles (those the viewer may see; others as #id), choices by their labels."""
    from app.generate.lookups import link_target, titles_by_id

    spec = current_portal().spec
    entity = spec.entity(entity_name)
    by_field: dict[str, list] = {}
    for c in conditions:
        by_field.setdefault(".".join(c.path), []).append(c)
    words = []
    for name, given in by_field.items():
        path = name.split(".")
        f = entity.field(path[0])
        label = str(lazy(f.label))
        if len(path) == 2:
            f = spec.entity(f.to).field(path[1])
            label += " · " + str(lazy(f.label))
        titles = {}
        if f.stores_link and not (f.kind.to_users and all(isinstance(c.value, Relative) for c in given)):
            ids = [v for c in given for v in (c.value if isinstance(c.value, tuple) else (c.value,)) if isinstance(v, int)]
            titles = dict(titles_by_id(link_target(f), ids))
        parts = []
        for c in given:
            if c.op == "null":
                parts.append(gettext("is empty") if c.value else gettext("is filled"))
            elif c.op == "contains":
                parts.append(gettext("contains %(text)s", text=_value_words(f, c.value, titles)))
            elif c.op == "in" or isinstance(c.value, tuple):
                parts.append(("∈ " if c.op == "in" else "∉ ") + _value_words(f, c.value, titles))
            else:
                parts.append(f"{OPERATOR_WORDS[c.op]} {_value_words(f, c.value, titles)}")
        joiner = " " + gettext("and") + " "
        words.append(f"{label} " + joiner.join(parts))
    return words


def drill_bar(entity_name: str, list_url: str) -> Markup | None:
    """The list page's "Showing: … ×" bar of the active drill, or None."""
    try:
        drill = active_drill(entity_name)
    except DrillRefused:
        return None
    if drill is None:
        return None
    words = "".join(f'<span class="label label-info portal-drill-condition">{escape(w)}</span> '
                    for w in conditions_in_words(entity_name, drill.conditions))
    remove, showing = escape(gettext("Remove this filter")), escape(gettext("Showing:"))
    return Markup(f'<div class="alert alert-info portal-drill-bar" id="drill-bar" lang="{escape(current_locale())}">'
                  f'{showing} {words}'
                  f'<a href="{escape(list_url)}" id="drill-remove" class="close" style="float: none;" title="{remove}" '
                  f'aria-label="{remove}">&times;</a></div>')
