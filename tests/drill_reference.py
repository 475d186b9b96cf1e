"""A reference for tests/test_drill.py: a single-entity report row's drill URL built from its conditions, written
apart from the engine's (app/data/reports/drill.py), which must give the same URL byte for byte.

A row's drill is its group values + the report's fixed filter + the page's date range + the chosen filters, in
the filter language; a date bucket becomes a gte/lt range, a NULL group `{"null": true}`, a link or user group
the record id.
"""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from urllib.parse import quote

from app.fieldtypes import type_of
from app.schema.filters import filter_json

RANGE_KEEP = {"gte": max, "gt": max, "lt": min, "lte": min}  # two bounds on one field: the narrower holds


def drill_url(entity_spec, conditions: dict) -> str:
    """`/<entity_snake>/list/?drill=<JSON>`, the JSON compact and with sorted keys (stable URLs)."""
    return f"/{entity_spec.snake}/list/?drill={quote(_dumps(conditions))}"


def _plain(value):
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(type(value))


def bucket_range(bucket: str, key: str) -> tuple[str, str]:
    """The [start, end) dates of a date bucket key as the report query writes them (2026-11, 2026-Q4, ...)."""
    if bucket == "year":
        start = dt.date(int(key), 1, 1)
        return start.isoformat(), dt.date(start.year + 1, 1, 1).isoformat()
    if bucket == "quarter":
        year, quarter = key.split("-Q")
        start = dt.date(int(year), 3 * int(quarter) - 2, 1)
    elif bucket == "month":
        start = dt.date.fromisoformat(key + "-01")
    else:
        start = dt.date.fromisoformat(key[:10])
        return start.isoformat(), (start + dt.timedelta(days=7 if bucket == "week" else 1)).isoformat()
    months = 3 if bucket == "quarter" else 1
    year, month = divmod(start.month - 1 + months, 12)
    return start.isoformat(), dt.date(start.year + year, month + 1, 1).isoformat()


def merge(conditions: dict, name: str, condition) -> None:
    """Add one field's condition to a drill: both must hold (bounds on one field keep the narrower)."""
    if name not in conditions:
        conditions[name] = condition
        return
    ops = lambda c: c if isinstance(c, dict) else {"null": True} if c is None else {  # noqa: E731
        "in" if isinstance(c, list) else "eq": c}
    given, new = ops(conditions[name]), ops(condition)
    for op, value in new.items():
        given[op] = RANGE_KEEP[op](given[op], value) if op in given and op in RANGE_KEEP else value
    conditions[name] = given


def base_conditions(report, entity, params, date_field: str | None) -> dict:
    """What every cell of a single-entity report shares: the fixed filter, the date range and the chosen filters."""
    conditions = filter_json(report.filter)
    if date_field and params.date_from:
        merge(conditions, date_field, {"gte": params.date_from.isoformat()})
    if date_field and params.date_to and params.date_to < dt.date.max:
        merge(conditions, date_field, {"lt": (params.date_to + dt.timedelta(days=1)).isoformat()})
    for name, raw in params.filters:
        f = entity.field(name)
        value = type_of(f).report_value(f, raw)
        merge(conditions, name, {"null": True} if value is None else _plain_value(value))
    return conditions


def _plain_value(value):
    return _plain(value) if isinstance(value, (dt.date, dt.datetime, Decimal)) else value


def _group_condition(entity, group, value):
    """A group value as a drill condition: a bucket as its date range, NULL as null, a boolean as true/false."""
    if value is None:
        return {"null": True}
    if group.bucket:
        start, end = bucket_range(group.bucket, str(value))
        return {"gte": start, "lt": end}
    if entity.field(group.field).type == "boolean":
        return bool(value)  # SQLite answers 0/1
    return _plain_value(value)


def row_conditions(report, entity, base: dict, row: dict) -> dict:
    """One result row's drill: `base` and the row's group values."""
    conditions = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for group in report.group_by:
        merge(conditions, group.field, _group_condition(entity, group, row[group.field]["value"]))
    return conditions


def _dumps(value) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=_plain)  # as the contract spells it
