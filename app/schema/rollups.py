"""Check `rollup:` fields: `{of: Child.link, measure: sum(field), where: {field: value}}` (E450-E459).

The shape is read with the field (`parse_rollup`); the child entity, its link and fields are checked once
every module's entities are known (`Check.later`). The measure syntax and the literal `where:` are the
report's (`reports.MEASURE_SYNTAX`, `read_filter`, `check_filter`). Nothing here imports Flask.
"""
from __future__ import annotations

from app.schema.filters import check_filter, read_filter
from app.schema.reports import MEASURE_SYNTAX
from app.schema.spec import ROLLUP_FUNCTIONS, EntitySpec, FieldSpec, RollupSpec
from app.schema.values import Check, did_you_mean, short

ROLLUP_KEYS = ("of", "measure", "where")
NOT_WITH_ROLLUP = ("formula", "default", "required", "unique")  # a rollup is computed, never entered
# published before the filter language was shared (app/schema/filters.py)
WHERE_CODES = {"unknown": "E456", "relation": "E456", "value": "E457", "choice": "E457", "list": "E457"}


def parse_rollup(run: Check, file, entity_name: str, name: str, field_raw) -> RollupSpec | None:
    """The `rollup:` of a field as a RollupSpec; its names are checked once every entity is known (run.later)."""
    where = f"field '{entity_name}.{name}'"
    for key in NOT_WITH_ROLLUP:
        if key in field_raw:
            run.error(file, field_raw.line_of(key), "E459", f"{where} is a rollup; it cannot also have '{key}'")
    raw = field_raw["rollup"]
    line = field_raw.line_of("rollup")
    what = f"rollup of {where}"
    if run.mapping(raw, file, line, what) is None:
        return None
    run.keys(raw, ROLLUP_KEYS, file, what, "E450")
    of = raw.get("of")
    child, _, link = of.partition(".") if isinstance(of, str) else ("", "", "")
    if not child or not link:
        run.error(file, raw.line_of("of") if "of" in raw else line, "E450",
                  f"{what} needs 'of: <ChildEntity>.<link field>', got {short(repr(of)) if of is not None else 'nothing'}")
        return None
    measure = raw.get("measure")
    match = MEASURE_SYNTAX.match(measure.strip()) if isinstance(measure, str) else None
    at = raw.line_of("measure") if "measure" in raw else line
    if not match:
        run.error(file, at, "E454", f"measure of {what} must look like count, sum(field), avg(field), min(field) or "
                                    f"max(field), got {short(repr(measure)) if measure is not None else 'nothing'}")
        return None
    function, arguments = match.group(1), [a.strip() for a in (match.group(2) or "").split(",") if a.strip()]
    if function not in ROLLUP_FUNCTIONS:
        run.error(file, at, "E454", f"unknown measure '{function}' in {what}{did_you_mean(function, ROLLUP_FUNCTIONS)}; "
                                    f"use {', '.join(ROLLUP_FUNCTIONS)}")
        return None
    if len(arguments) != (0 if function == "count" else 1):
        wanted = "no field" if function == "count" else "one field"
        run.error(file, at, "E454", f"{function} in {what} takes {wanted}, got {len(arguments)}")
        return None
    conditions = read_filter(run, file, raw["where"], raw.line_of("where"), f"where of {what}") if "where" in raw else ()
    rollup = RollupSpec(child, link, function, arguments[0] if arguments else None, conditions, line)

    def check(entities):
        parent = entities.get(entity_name)
        if parent is not None and name in parent.field_names:
            _rollup_ok(run, parent, parent.field(name), entities, conditions)
    run.later.append(check)
    return rollup


def _rollup_ok(run: Check, entity: EntitySpec, f: FieldSpec, entities: dict, conditions) -> bool:
    rollup, file, line = f.rollup, entity.file, f.rollup.line
    what = f"rollup of field '{entity.name}.{f.name}'"
    child = entities.get(rollup.child)
    if child is None:
        run.error(file, line, "E451", f"{what} counts unknown entity '{rollup.child}'{did_you_mean(rollup.child, entities)}")
        return False
    fields = {c.name: c for c in child.fields}
    link = fields.get(rollup.link)
    if link is None:
        run.error(file, line, "E452", f"{what} names unknown field '{rollup.link}' of {child.name}{did_you_mean(rollup.link, fields)}")
        return False
    if not link.stores_link or link.kind.to_users or link.to != entity.name:
        points = f"a link to {link.to}" if link.stores_link and link.to else f"a {link.type} field"
        run.error(file, line, "E453", f"{what}: '{child.name}.{rollup.link}' is {points}, not a link to {entity.name}")
        return False
    ok = True
    measured = None
    if rollup.field is not None:
        measured = fields.get(rollup.field)
        if measured is None:
            run.error(file, line, "E455", f"{what} measures unknown field '{rollup.field}' of {child.name}{did_you_mean(rollup.field, fields)}")
            return False
        dates = rollup.function in ("min", "max") and measured.kind.is_moment
        if not (measured.kind.numeric or dates) or measured.is_relation:
            also = " or date" if rollup.function in ("min", "max") else ""
            run.error(file, line, "E455", f"{rollup.function}({rollup.field}) in {what} needs a number{also} field, "
                                          f"'{rollup.field}' is {measured.type}")
            return False
    fit = _fit_problem(rollup, f, measured)
    if fit:
        run.error(file, f.line, "E458", f"field '{entity.name}.{f.name}' is {f.type}, but its rollup {fit}")
        ok = False
    before = len(run.problems)
    check_filter(run, file, line, f"where of {what}", entities, child.name, conditions, WHERE_CODES,
                 user=False, relative=False, links=False)
    for c in conditions:  # would match no child at all: a rollup that is always empty
        values = c.value if isinstance(c.value, tuple) else (c.value,)
        if c.op in ("eq", "in") and any(isinstance(v, str) and not v.strip() for v in values):
            run.error(file, c.line, "E457", f"where of {what} gives '{'.'.join(c.path)}' empty text, which matches nothing")
    return ok and len(run.problems) == before


def _fit_problem(rollup: RollupSpec, f: FieldSpec, measured: FieldSpec | None) -> str | None:
    """Why the rollup's values do not fit the field's type (None: they fit)."""
    own = f.kind
    if rollup.function == "count":
        return None if own.numeric else "counts records (use integer or decimal)"
    if measured.kind.is_moment:
        same = own.is_moment and own.has_time == measured.kind.has_time
        return None if same else f"gives a {measured.type} (use {measured.type})"
    if not own.numeric:
        return "gives a number (use decimal)"
    if own.whole and (rollup.function == "avg" or not measured.kind.whole):
        return f"{rollup.function}({rollup.field}) may have decimals (use decimal)"
    return None
