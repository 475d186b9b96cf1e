"""The one filter language: row scopes, report filters, rollup `where`, views, reminders and highlights.

    {status: open}                      equal
    {status: [open, in_progress]}       any of
    {due_on: {lt: $today+3d, gte: 2024-01-01}}   operators, all must hold: lt lte gt gte ne in contains null
    {assignee: $user}                   the signed-in user (user fields)
    {customer.owner: $user}             one hop through a link
    {closed_at: {null: true}}           empty (false: filled)

Values are literals of the field's type, lists, `$user`, `$today` / `$now` with an optional `±N` and a unit
`d`, `h` or `m` (`$today-1d`, `$now+2h`), evaluated when the filter is used, never when the schema is read.

`read_filter` reads the syntax (nothing about entities yet); `check_filter` checks it against the entities
(called from a `run.later` check); `parse_filter` does both at run time for a filter sent by a user (a personal
view), raising `FilterProblem`. The SQL and the Python test are in app/rules/filters.py. Nothing here imports Flask.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from app.schema.loader import YList, YMap
from app.schema.values import Check, did_you_mean, kind, short

OPERATORS = ("eq", "ne", "lt", "lte", "gt", "gte", "in", "contains", "null")
ORDERING = frozenset({"lt", "lte", "gt", "gte"})
RELATIVE = re.compile(r"^\$(user|today|now)(?:([+-])(\d{1,5})([dhm]))?$")

# Problem kinds -> codes. Each use may map kinds to its own published codes (row scopes and reports had theirs
# before the language was shared); the rest fall back to these.
CODES = {
    "mapping": "E760", "unknown": "E761", "path": "E762", "not_link": "E763", "relation": "E764",
    "value": "E765", "choice": "E766", "operator": "E767", "operator_type": "E768", "user": "E769",
    "user_needed": "E770", "relative": "E771", "list": "E772",
}


@dataclass(frozen=True)
class Relative:
    """`$user`, `$today`, `$now`, with an optional offset (`$today+3d`, `$now-30m`)."""

    base: str  # "user" | "today" | "now"
    amount: int = 0
    unit: str = "d"  # "d" | "h" | "m"

    def __str__(self) -> str:
        return f"${self.base}" + (f"{self.amount:+d}{self.unit}" if self.amount else "")

    __repr__ = __str__  # as written in the YAML: a spec's repr shows `$now-1h`, not the dataclass's fields


def mentions(thing, base: str) -> bool:
    """Whether a spec object (a report, a scope's conditions) uses `$<base>` anywhere in its filters."""
    return f"${base}" in repr(thing)


@dataclass(frozen=True)
class Condition:
    """One test on a field, or on a field one link away: all conditions of a filter must hold."""

    path: tuple[str, ...]
    op: str
    value: object  # a YAML literal, a Relative, a tuple (in / ne with a list), or a bool (null)
    line: int = 0

    @property
    def is_current_user(self) -> bool:
        return self.op == "eq" and self.value == Relative("user")


Filter = tuple[Condition, ...]


class FilterProblem(ValueError):
    """A filter sent at run time does not fit its entity; `message` is the checker's text, `code` its code."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.field = code, message, field  # field: the dotted path it is about, if any


def relative(value) -> Relative | None:
    """`$today+3d` as a Relative; None for anything else (a `$…` text that is no relative value too)."""
    match = RELATIVE.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    base, sign, amount, unit = match.groups()
    return Relative(base, int(amount) * (-1 if sign == "-" else 1) if amount else 0, unit or "d")


def _value(raw):
    """A YAML value as a condition value: relative values become Relative, lists tuples."""
    if isinstance(raw, (YList, list, tuple)):
        return tuple(_value(v) for v in raw)
    return relative(raw) or raw


def read_filter(run: Check, file, raw, line, what) -> Filter:
    """The conditions of a filter mapping, syntax only (field names and values are checked by check_filter)."""
    if not isinstance(raw, YMap):
        run.error(file, line, CODES["mapping"], f"{what} must be a mapping of field: condition, got {kind(raw)}")
        return ()
    conditions = []
    for name, value in raw.items():
        ln = raw.line_of(name)
        path = tuple(str(name).split("."))
        if isinstance(value, YMap):
            if not value:
                run.error(file, ln, CODES["operator"], f"{what} gives '{name}' no operator; use one of {', '.join(OPERATORS)}")
            for op, operand in value.items():
                if op not in OPERATORS:
                    run.error(file, value.line_of(op), CODES["operator"],
                              f"unknown operator '{short(op)}' for '{name}' in {what}{did_you_mean(op, OPERATORS)}; "
                              f"use {', '.join(OPERATORS)}")
                    continue
                conditions.append(Condition(path, op, _value(operand), value.line_of(op)))
        elif value is None:
            conditions.append(Condition(path, "null", True, ln))
        elif isinstance(value, YList):
            conditions.append(Condition(path, "in", _value(value), ln))
        else:
            conditions.append(Condition(path, "eq", _value(value), ln))
    return tuple(conditions)


def filter_json(conditions: Filter) -> dict:
    """The conditions back in the YAML/JSON shape (a personal view's stored filter, the API's answer)."""
    def plain(value):
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, Relative):
            return str(value)
        return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)

    result: dict = {}
    for c in conditions:
        key = ".".join(c.path)
        if c.op == "eq" and key not in result:
            result[key] = plain(c.value)
        elif c.op == "in" and key not in result:
            result[key] = plain(c.value)
        else:
            given = result.get(key)
            if given is not None and not isinstance(given, dict):
                given = {"in" if isinstance(given, list) else "eq": given}
            result[key] = {**(given or {}), c.op: plain(c.value)}
    return result


def check_filter(run: Check, file, line, what, entities: dict, entity_name: str, conditions: Filter,
                 codes: dict | None = None, *, user: bool = True, relative: bool = True, links: bool = True) -> None:
    """Each condition names a field of the entity (or link.field when `links`) and compares it in a way its
    type allows, with values of its type. Reports problems with `codes` (kind -> code) over CODES."""
    codes = {**CODES, **(codes or {})}
    entity = entities.get(entity_name)
    if entity is None:
        return
    for c in conditions:
        _check_condition(run, file, c.line or line, what, entities, entity, c, codes, user, relative, links)


def _check_condition(run, file, line, what, entities, entity, c: Condition, codes, user, relative_ok, links):
    from app.schema.fields import parse_literal  # fields imports this package's neighbours; keep the cycle out

    name = ".".join(c.path)
    if len(c.path) > (2 if links else 1) or not all(c.path):
        if not links:
            run.error(file, line, codes["unknown"], f"{what} names unknown field '{name}' of {entity.name}"
                                                    f"{did_you_mean(name, entity.field_names)}")
        else:
            run.error(file, line, codes["path"], f"path '{name}' of {what} must be a field or link.field")
        return
    if c.path[0] not in entity.field_names:
        run.error(file, line, codes["unknown"], f"{what} names unknown field '{c.path[0]}' of {entity.name}"
                                                f"{did_you_mean(c.path[0], entity.field_names)}")
        return
    f = entity.field(c.path[0])
    if len(c.path) == 2:
        if not (f.stores_link and f.to) or f.kind.to_users:
            run.error(file, line, codes["not_link"], f"path '{name}' of {what}: '{c.path[0]}' is not a link")
            return
        target = entities.get(f.to)
        if target is None:
            return  # the link's unknown target is reported with the field
        if c.path[1] not in target.field_names:
            run.error(file, line, codes["unknown"], f"{what} names unknown field '{c.path[1]}' of {target.name}"
                                                    f"{did_you_mean(c.path[1], target.field_names)}")
            return
        f = target.field(c.path[1])
    if c.op == "null":
        if not isinstance(c.value, bool):
            run.error(file, line, codes["value"], f"null of '{name}' in {what} must be true or false, got {kind(c.value)}")
        return
    values = c.value if isinstance(c.value, tuple) else (c.value,)
    if c.op == "in" and not isinstance(c.value, tuple):
        run.error(file, line, codes["list"], f"in of '{name}' in {what} needs a list, got {kind(c.value)}")
        return
    if isinstance(c.value, tuple) and c.op not in ("in", "ne"):
        run.error(file, line, codes["list"], f"{c.op} of '{name}' in {what} takes one value, not a list")
        return
    if f.kind.to_users:
        if not user:
            run.error(file, line, codes["relation"], f"{what} cannot compare '{name}' (a {f.type} field)")
        elif Relative("user") in values and len(values) > 1:
            run.error(file, line, codes["user"], f"$user in {what} only fits a single user field, not a list ('{name}')")
        elif c.op not in ("eq", "ne") or values != (Relative("user"),):
            run.error(file, line, codes["user_needed"], f"{what} compares the user field '{name}' with $user only (or null)")
        return
    if f.is_relation:
        hint = "; use link.field" if links else ""
        run.error(file, line, codes["relation"], f"{what} cannot compare '{name}' (a {f.type} field){hint}")
        return
    if c.op in ORDERING and not f.kind.ordered:
        run.error(file, line, codes["operator_type"], f"{c.op} in {what} needs a number, date or time field; '{name}' is {f.type}")
        return
    if c.op == "contains" and (not f.kind.text_search or f.choices):
        run.error(file, line, codes["operator_type"], f"contains in {what} needs a text field; '{name}' is {f.type}")
        return
    if c.op in ("in", "ne") and isinstance(c.value, tuple) and not c.value:
        run.error(file, line, codes["list"], f"{what} gives '{name}' an empty list, which matches nothing")
        return
    for value in values:
        if isinstance(value, Relative):
            problem = _relative_problem(value, f, user, relative_ok)
            if problem:
                run.error(file, line, codes["user" if value.base == "user" else "relative"], f"{value} in {what}: {problem}")
            continue
        if isinstance(value, str) and value.startswith("$"):
            run.error(file, line, codes["relative"], f"'{short(value)}' in {what} is not a value this language knows: "
                                                     f"use $user, $today or $now with ±N and d, h or m (e.g. $today+3d)")
            continue
        before = len(run.problems)
        literal = parse_literal(run, file, line, f"value of '{name}' in {what}", f.kind, value, vars(f), codes["value"])
        if len(run.problems) == before and f.choices and literal not in [ch.key for ch in f.choices]:
            run.error(file, line, codes["choice"], f"value '{short(str(literal))}' of {what} is not a choice of '{name}'")


def _relative_problem(value: Relative, f, user: bool, relative_ok: bool) -> str | None:
    if value.base == "user":
        return "only fits a user field" if user else "is not allowed here"
    if not relative_ok:
        return "is not allowed here (the result is stored; it cannot depend on the day)"
    if not f.kind.is_moment:
        return f"fits a date or time field only, not a {f.type}"
    if value.base == "now" and not f.kind.has_time:
        return "fits a date-time field; use $today for a date"
    if value.base == "today" and value.unit != "d":
        return "moves by days only (d); use $now with h or m"
    return None


class _Collect(Check):
    def error(self, file, line, code, message) -> None:
        raise FilterProblem(code, message)


MAX_RUNTIME_VALUES = 1000  # values in one list of a filter sent at run time: each is an SQL parameter on every use


def parse_filter(entities: dict, entity_name: str, raw, *, user: bool = True) -> Filter:
    """A filter sent at run time (JSON), read and checked as the checker would; FilterProblem on the first
    problem. Values are kept as sent (the runtime converts them through the field's type)."""
    if not isinstance(raw, dict) or len(raw) > 50:
        raise FilterProblem(CODES["mapping"], "a filter must be a mapping of at most 50 fields")
    run = _Collect()
    conditions = []
    for name, value in raw.items():  # one field at a time: a problem names the field it is about
        try:
            conditions += read_filter(run, "", _ymap({name: value}), 0, "the filter")
        except FilterProblem as exc:
            exc.field = str(name)[:60]
            raise
    for c in conditions:
        path = ".".join(c.path)
        if isinstance(c.value, tuple) and len(c.value) > MAX_RUNTIME_VALUES:
            raise FilterProblem(CODES["list"], f"'{path}' lists {len(c.value)} values; at most "
                                               f"{MAX_RUNTIME_VALUES} are allowed", path)
        try:
            check_filter(run, "", 0, "the filter", entities, entity_name, (c,), user=user)
        except FilterProblem as exc:
            exc.field = path[:60]
            raise
    return tuple(conditions)


def _ymap(raw: dict) -> YMap:
    """A JSON mapping as the loader's YMap/YList (line 0), so read_filter reads both alike."""
    def convert(value):
        if isinstance(value, dict):
            return _ymap(value)
        if isinstance(value, list):
            items = YList(convert(v) for v in value)
            items.item_lines = []
            return items
        return value

    result = YMap()
    result.key_lines = {}
    for key, value in raw.items():
        result[str(key)] = convert(value)
    return result
