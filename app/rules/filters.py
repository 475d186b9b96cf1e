"""The filter language at run time: a filter's SQL condition (highlights too are decided in SQL, per page).

The conditions come from app/schema/filters.py (checked there). Relative values (`$user`, `$today+3d`,
`$now-2h`) are resolved against a FilterContext made when the filter is used, so a saved view or a reminder's
`when` means "today" on the day it runs. Literal values go through the field's type (`FieldType.literal`), so
a date written as text in a personal view compares as a date.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import and_, case, exists, false, literal, or_, select, true
from sqlalchemy.sql.elements import ClauseElement

from app.schema.filters import Condition, Relative
from app.schema.spec import FieldSpec


UNITS = {"d": "days", "h": "hours", "m": "minutes"}


@dataclass(frozen=True)
class FilterContext:
    user_id: int | None
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now().replace(microsecond=0))

    @property
    def today(self) -> dt.date:
        return self.now.date()


def context_for(user_id) -> FilterContext:
    return FilterContext(user_id)


def resolve(value, f: FieldSpec, ctx: FilterContext):
    """A condition's value as a Python value of the field (relative values evaluated now)."""
    if isinstance(value, tuple):
        return tuple(resolve(v, f, ctx) for v in value)
    if isinstance(value, Relative):
        if value.base == "user":
            return ctx.user_id
        step = dt.timedelta(**{UNITS[value.unit]: value.amount})
        if value.base == "today":
            day = ctx.today + step
            return dt.datetime.combine(day, dt.time()) if f.kind.has_time else day
        return ctx.now + step
    return f.kind.literal(value, vars(f))


def column_condition(column, f: FieldSpec, c: Condition, ctx: FilterContext):
    """The SQL of one condition on `column` (the field's own column, or a linked record's)."""
    if c.op == "null":
        return column.is_(None) if c.value else column.isnot(None)
    value = resolve(c.value, f, ctx)
    if f.kind.to_users and value is None:
        return false() if c.op == "eq" else true()  # no signed-in user: "mine" is nothing
    if c.op == "eq":
        return column == value
    if c.op == "in":
        return column.in_(value)
    if c.op == "ne":  # an empty value is "not x" too
        return or_(column.notin_(value) if isinstance(value, tuple) else column != value, column.is_(None))
    if c.op == "contains":
        return column.icontains(value, autoescape=True)
    return {"lt": column < value, "lte": column <= value, "gt": column > value, "gte": column >= value}[c.op]


def filter_clause(spec, models: dict, entity_name: str, conditions, ctx: FilterContext):
    """The SQL condition of a filter on `entity_name`'s model (links followed with EXISTS)."""
    model, entity = models[entity_name], spec.entity(entity_name)
    clauses = []
    for c in conditions:
        f = entity.field(c.path[0])
        if len(c.path) == 2:
            target = spec.entity(f.to).field(c.path[1])
            inner = getattr(model, f.name).has(column_condition(getattr(models[f.to], target.column_name), target, c, ctx))
            # no linked record: its field is empty, as `ne` and `null: true` count an empty value in
            clauses.append(or_(getattr(model, f.column_name).is_(None), inner) if _holds_for_empty(c) else inner)
        else:
            clauses.append(column_condition(getattr(model, f.column_name), f, c, ctx))
    return and_(true(), *clauses)


def values_clause(spec, models: dict, entity_name: str, conditions, ctx: FilterContext, values: dict):
    """The filter's SQL evaluated on given field values (a deleted record's last ones: `values` field name -> value)
    instead of a stored row. A link hop reads the linked record, which may exist, unless `values` holds the hop's
    value as it was: `values[(link, field)] = (value column, pending column)` (app/data/change_log.py)."""
    model, entity = models[entity_name], spec.entity(entity_name)
    clauses = []
    for c in conditions:
        f = entity.field(c.path[0])
        own = getattr(model, f.column_name)
        value = values.get(f.name)
        if not isinstance(value, ClauseElement):  # a value, or a column holding it (the change log's copy)
            value = literal(value, type_=own.type)
        if len(c.path) == 2:
            target = spec.entity(f.to).field(c.path[1])
            linked = models[f.to]
            inner = exists(select(linked.id).where(
                linked.id == value, column_condition(getattr(linked, target.column_name), target, c, ctx)))
            if tuple(c.path) in values:
                # the change log's copy of the linked value at delete time; a log row written before copies were
                # kept (its pending flag NULL) still reads the linked record as it is now
                kept, pending = values[tuple(c.path)]
                inner = case((pending.is_(None), inner), else_=column_condition(kept, target, c, ctx))
            clauses.append(or_(value.is_(None), inner) if _holds_for_empty(c) else inner)
        else:
            clauses.append(column_condition(value, f, c, ctx))
    return and_(true(), *clauses)


def _holds_for_empty(c: Condition) -> bool:
    return c.op == "ne" or (c.op == "null" and bool(c.value))


def table_conditions(entity, columns, conditions, ctx: FilterContext) -> list:
    """The SQL conditions of a filter without links on a table's columns (`table.c`): rollups' `where`."""
    return [column_condition(columns[entity.field(c.path[0]).column_name], entity.field(c.path[0]), c, ctx)
            for c in conditions]
