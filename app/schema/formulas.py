"""Check `formula:` fields and `rules:` of entities: syntax (E311), names (E312), types (E313), cycles
between formulas (E314), rule `fields` (E315), formulas on fields that cannot be computed (E316).

Expressions are parsed once here (app/schema/expressions.py, pure Python: no Flask) and kept, compiled, in
the spec; names are typed after every module's entities are known, since `worker.day_rate` reads another
entity.
"""
from __future__ import annotations

import dataclasses

from app.schema.expressions import (
    BOOLEAN, DATE, DATETIME, NUMBER, TEXT, Expression, ExpressionError, ExpressionTypeError, infer,
)
from app.schema.loader import YList
from app.schema.spec import CheckRule, EntitySpec, FieldSpec
from app.schema.values import Check, did_you_mean, kind, short

RULE_KEYS = ("check", "fields", "message")


def parse_expression(run: Check, file, line, what, source) -> Expression | None:
    """The parsed expression, or None with E005 (not text) / E311 (syntax, with the column) reported."""
    text = run.text(source, file, line, what)
    if text is None:
        return None
    try:
        return Expression.of(text)
    except ExpressionError as exc:
        run.error(file, line, "E311", f"{what} {short(repr(text))}: {exc}")
        return None


def value_type(f: FieldSpec) -> str | None:
    """The expression type of a field's value (None: not usable in an expression, e.g. a link itself)."""
    k = f.kind
    if k.is_relation:
        return None
    if k.numeric:
        return NUMBER
    if k.is_moment:
        return DATETIME if k.has_time else DATE
    if k.truth_value:
        return BOOLEAN
    return TEXT


def check_rules(run: Check, file, entity_name, raw, line) -> list[CheckRule]:
    """The `rules:` list as parsed CheckRules (their names are checked later, see check_expressions)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        run.error(file, line, "E009", f"rules of entity '{entity_name}' must be a list, got {kind(raw)}")
        return []
    rules = []
    for i, item in enumerate(raw):
        item_line = raw.line_of(i) if hasattr(raw, "line_of") else line
        what = f"rule {i + 1} of entity '{entity_name}'"
        item = run.mapping(item, file, item_line, what)
        if item is None:
            continue
        run.keys(item, RULE_KEYS, file, what, "E302")
        expression = parse_expression(run, file, item.line_of("check"), f"check of {what}", item.get("check"))
        names = run.name_list(item.get("fields", YList()), file, item.line_of("fields"), f"fields of {what}")
        message, given = run.label(item.get("message"), file, item.line_of("message"), f"message of {what}", "")
        if not given:
            run.error(file, item_line, "E005", f"{what} needs a message, e.g. {{en: ..., zh: ...}}")
        if expression is not None and given:
            rules.append(CheckRule(expression, tuple(n for n, _ in names), message, item_line,
                                   tuple(ln for _, ln in names)))
    return rules


def check_expressions(run: Check, entity: EntitySpec, entities: dict[str, EntitySpec]) -> EntitySpec:
    """Type every formula and rule of an entity, sort its formulas (E314 on a cycle); returns the entity
    with `formula_order` set."""
    file = entity.file
    typed = expression_typer(run, entity, entities)
    by_name = {f.name: f for f in entity.fields}
    for f in entity.fields:
        if f.formula is None:
            continue
        what = f"formula of field '{entity.name}.{f.name}'"
        result = typed(f.formula, f.line, what)
        wanted = value_type(f)
        if result is not None and result not in ("any", "null") and result != wanted:
            run.error(file, f.line, "E313", f"{what} gives {result}, but the field is {f.type} ({wanted})")
    for i, rule in enumerate(entity.rules):
        what = f"check of rule {i + 1} of entity '{entity.name}'"
        result = typed(rule.check, rule.line, what)
        if result is not None and result not in ("any", "null", BOOLEAN):
            run.error(file, rule.line, "E313", f"{what} gives {result}, not true/false")
        lines = dict(zip(rule.fields, rule.field_lines))
        for name in rule.fields:
            if name not in by_name:
                run.error(file, lines.get(name, rule.line), "E315", f"rule {i + 1} of entity '{entity.name}' shows its message under unknown field '{name}'{did_you_mean(name, by_name)}")
    return dataclasses.replace(entity, formula_order=_formula_order(run, entity))


def expression_typer(run: Check, entity: EntitySpec, entities: dict[str, EntitySpec]):
    """typed(expression, line, what) -> its type, or None with E311/E312/E313 reported: names are the entity's
    fields and, through a link, the linked entity's (`worker.day_rate`)."""
    file = entity.file
    by_name = {f.name: f for f in entity.fields}

    def type_of_path(line, what):
        def type_of(path):
            first = by_name.get(path[0])
            if first is None:
                raise _Unknown(f"{what} names unknown field '{path[0]}'{did_you_mean(path[0], by_name)}")
            if len(path) == 1:
                t = value_type(first)
                if t is None:
                    raise ExpressionTypeError(f"'{path[0]}' is a {first.type} field; name one of its fields, like {path[0]}.name")
                return t
            if not first.stores_link or first.kind.to_users or first.to not in entities:
                raise ExpressionTypeError(f"'{path[0]}.{path[1]}' goes through '{path[0]}', which is not a link to an entity")
            target = entities[first.to]
            second = next((f for f in target.fields if f.name == path[1]), None)
            if second is None:
                raise _Unknown(f"{what} names unknown field '{path[1]}' of '{target.name}'"
                               f"{did_you_mean(path[1], target.field_names)}")
            t = value_type(second)
            if t is None:
                raise ExpressionTypeError(f"'{path[0]}.{path[1]}' is a {second.type} field, not a value")
            return t
        return type_of

    def typed(expression, line, what) -> str | None:
        try:
            return infer(expression.tree, type_of_path(line, what))
        except _Unknown as exc:
            run.error(file, line, "E312", str(exc))
        except ExpressionTypeError as exc:
            run.error(file, line, "E313", f"{what}: {exc}")
        except RecursionError:
            run.error(file, line, "E311", f"{what} nests too deeply")
        return None

    return typed


def _formula_order(run: Check, entity: EntitySpec) -> tuple[str, ...]:
    """Formula fields, each after the formulas of this record it reads; E314 names a cycle."""
    formulas = {f.name: f for f in entity.fields if f.formula is not None}
    reads = {name: {path[0] for path in f.formula.names if len(path) == 1 and path[0] in formulas}
             for name, f in formulas.items()}
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name, trail):
        if state.get(name) == "done":
            return True
        if state.get(name) == "busy":
            cycle = trail[trail.index(name):] + [name]
            run.error(entity.file, formulas[name].line, "E314", f"formulas of entity '{entity.name}' depend on each other: {' -> '.join(cycle)}")
            return False
        state[name] = "busy"
        ok = all(visit(other, trail + [name]) for other in sorted(reads[name]))
        state[name] = "done"
        order.append(name)
        return ok

    for name in formulas:
        if state.get(name) != "done" and not visit(name, []):
            break
    return tuple(order)


class _Unknown(KeyError):
    def __str__(self) -> str:
        return self.args[0]
