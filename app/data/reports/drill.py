"""Drill-down links of report rows and pivot cells: `/<entity_snake>/list/?drill=<filter JSON>`.

The JSON is a filter of the filter language (docs/schema.md "Filters"): the report's (or source's) fixed filter,
the user's date range and group filters, and the row's group values (a date bucket as a range, an empty value
as `{"null": true}`). The list page applies it on top of the viewer's row scope, so its count is the cell's.

A 2,000-group report makes 2,000 links: the fixed part is serialized once, and each row's values are encoded
alone and put in place of placeholders (URL-quoting is per character, so the pieces quote the same as the whole).
"""
from __future__ import annotations

import datetime as dt
import json
from urllib.parse import quote

from app.schema.filters import filter_json

UPTO = "upto:"  # a bucket prefix in `varying`: the cell is a running total (cumulative)
MARK = "\ue000"  # a private-use character: JSON writes it \ue000, quoted %5Cue000
QUOTED_MARK = "%5Cue000"


def encode(obj) -> str:
    return quote(json.dumps(obj, separators=(",", ":"), sort_keys=True))


def drill_url(entity_snake: str, obj: dict) -> str:
    return f"/{entity_snake}/list/?drill={encode(obj)}"


def bucket_range(bucket: str, key: str) -> tuple[str, str | None]:
    """The [gte, lt) dates of a bucket key as query.bucket_expression writes it (2026-11-16, 2026-11, 2026-Q4...);
    no end (None) for the last bucket a date can be in (9999-12: no 10000-01-01 to stop before)."""
    try:
        return _bucket_range(bucket, key)
    except OverflowError:
        return _bucket_start(bucket, key), None


def _bucket_start(bucket: str, key: str) -> str:
    if bucket in ("day", "week"):
        return dt.date.fromisoformat(key).isoformat()
    if bucket == "year":
        return f"{int(key):04d}-01-01"
    month = 3 * (int(key[-1]) - 1) + 1 if bucket == "quarter" else int(key[5:7])
    return dt.date(int(key[:4]), month, 1).isoformat()


def _bucket_range(bucket: str, key: str) -> tuple[str, str]:
    if bucket == "day":
        start = dt.date.fromisoformat(key)
        return start.isoformat(), (start + dt.timedelta(days=1)).isoformat()
    if bucket == "week":
        start = dt.date.fromisoformat(key)
        return start.isoformat(), (start + dt.timedelta(days=7)).isoformat()
    if bucket == "year":
        year = int(key)
        if year >= dt.MAXYEAR:
            raise OverflowError(key)
        return f"{year:04d}-01-01", f"{year + 1:04d}-01-01"
    if bucket == "quarter":
        year, quarter = int(key[:4]), int(key[-1])
        month = 3 * (quarter - 1) + 1
    else:
        year, month = int(key[:4]), int(key[5:7])
        quarter = 0
    start = dt.date(year, month, 1)
    months = 3 if quarter else 1
    end_month = month + months
    end_year = year + (end_month - 1) // 12
    if end_year > dt.MAXYEAR:
        raise OverflowError(key)
    end = dt.date(end_year, (end_month - 1) % 12 + 1, 1)
    return start.isoformat(), end.isoformat()


def _json_value(value):
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


class Drill:
    """The drill URLs of one report (or one source): `url(values)` with values for the `varying` fields."""

    def __init__(self, entity_snake: str, conditions, fixed: dict, varying: list[tuple[str, str | None]]) -> None:
        """`conditions`: the fixed filter (filter-language Conditions); `fixed`: more field -> JSON condition
        (date range, chosen group values); `varying`: (field, date bucket or None) given per row."""
        self.prefix = f"/{entity_snake}/list/?drill="
        base = filter_json(conditions)
        for name, condition in fixed.items():
            base[name] = _merge(base.get(name), condition)
        self.base, self.varying = base, varying
        # fields whose per-row condition must be merged with a fixed one take the slow path
        self.clashing = any(name in base for name, _ in varying)
        placeholders = {name: f"{MARK}{i}{MARK}" for i, (name, _) in enumerate(varying)}
        self.template = encode({**base, **placeholders}).split(QUOTED_MARK) if not self.clashing else None
        # one varying field (most reports): the URL around its value, for the common case of a record id
        self.around = None
        if self.template is not None and len(self.template) == 3:
            self.around = (self.prefix + self.template[0][:-3], self.template[2][3:])

    def condition(self, name: str, bucket: str | None, value):
        if value is None:
            return {"null": True}
        if bucket:
            # "upto:month": a running total's records, everything before the bucket's end
            running = bucket.startswith(UPTO)
            start, end = bucket_range(bucket[len(UPTO):] if running else bucket, value)
            if end is None:  # the last bucket a date can be in: everything from its start on
                return {"lte": dt.date.max.isoformat()} if running else {"gte": start}
            return {"lt": end} if running else {"gte": start, "lt": end}
        return _json_value(value)

    def url(self, values) -> str:
        if self.clashing:
            obj = dict(self.base)
            for (name, bucket), value in zip(self.varying, values):
                obj[name] = _merge(obj.get(name), self.condition(name, bucket, value))
            return self.prefix + encode(obj)
        # the template: [text ending in %22, "0", %22 + text, "1", ...]: each placeholder's digits at odd places,
        # its JSON quotes (%22) on either side; a value goes in their place
        if self.around is not None and values[0].__class__ is int:  # a record id: its digits in place
            return f"{self.around[0]}{values[0]}{self.around[1]}"
        parts, varying = self.template, self.varying
        if len(parts) == 1:  # nothing varies (a report without groups)
            return self.prefix + parts[0]
        out = [self.prefix, parts[0][:-3]]
        for i in range(1, len(parts), 2):
            at = int(parts[i])
            value = values[at]
            if value.__class__ is int:  # a record id: its digits
                out.append(str(value))
            else:
                name, bucket = varying[at]
                out.append(encode(self.condition(name, bucket, value)))
            out.append(parts[i + 1][3:-3] if i + 2 < len(parts) else parts[i + 1][3:])
        return "".join(out)


def _merge(given, condition):
    """Two conditions on one field, both to hold: operator mappings merged (the narrower range kept)."""
    if given is None:
        return condition
    as_ops = lambda c: c if isinstance(c, dict) else {"in": c} if isinstance(c, list) else {"eq": c}  # noqa: E731
    merged = dict(as_ops(given))
    for op, value in as_ops(condition).items():
        if op in merged and op in ("gte", "gt"):
            merged[op] = max(merged[op], value)
        elif op in merged and op in ("lt", "lte"):
            merged[op] = min(merged[op], value)
        else:
            merged[op] = value
    return merged
