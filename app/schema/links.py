"""Check defaults from a link (`rate: {default: worker.day_rate}`, E460-E463) and filtered pickers
(`worker: {filter: {active: true, projects: $record.project}}`, E464-E473).

Both read another entity's fields, so they are checked once every module's entities are known (checker.py);
`parse_filter` only reads the YAML shape while the field itself is checked. Nothing here imports Flask.
"""
from __future__ import annotations

import dataclasses
import re

from app.fieldtypes import LiteralError
from app.schema.formulas import value_type
from app.schema.loader import YList, YMap
from app.schema.spec import CURRENT_USER, RECORD_PREFIX, EntitySpec, FieldSpec, PickerCondition, RoleSpec
from app.schema.values import Check, did_you_mean, kind, short

NAME = re.compile(r"^[a-z][a-z0-9_]{0,59}$")


def parse_filter(run: Check, file, line, where, raw) -> tuple[PickerCondition, ...]:
    """The `filter:` mapping as conditions; names and types are checked later (check_links)."""
    if not isinstance(raw, YMap) or not raw:
        run.error(file, line, "E464", f"filter of {where} must be a mapping of the linked entity's fields to values, got {kind(raw)}")
        return ()
    conditions = []
    for key, value in raw.items():
        at = raw.line_of(key)
        if not isinstance(key, str) or not NAME.match(key):
            run.error(file, at, "E465", f"filter of {where} names {short(repr(key))}, which is not a field name")
            continue
        if isinstance(value, str) and value.startswith("$"):
            if value == CURRENT_USER:
                conditions.append(PickerCondition(key, user=True, line=at))
            elif value.startswith(RECORD_PREFIX) and NAME.match(value[len(RECORD_PREFIX):]):
                conditions.append(PickerCondition(key, record_field=value[len(RECORD_PREFIX):], line=at))
            else:
                run.error(file, at, "E470", f"filter '{key}' of {where}: {short(repr(value))} is not $user or $record.<field>")
            continue
        values = tuple(value) if isinstance(value, YList) else (value,)
        if not values or any(v is None or isinstance(v, (YMap, YList)) or (isinstance(v, str) and v.startswith("$"))
                             for v in values):
            run.error(file, at, "E466", f"filter '{key}' of {where} must be a value or a list of values, got {kind(value)}")
            continue
        conditions.append(PickerCondition(key, values=values, line=at))
    return tuple(conditions)


def check_links(run: Check, entity: EntitySpec, entities: dict[str, EntitySpec],
                roles: tuple[RoleSpec, ...] = ()) -> EntitySpec:
    """Resolve defaults from links and check filters; returns the entity with its fields settled."""
    by_name = {f.name: f for f in entity.fields}
    fields = []
    for f in entity.fields:
        if f.default_from is not None:
            f = _link_default(run, entity, f, by_name, entities)
        if f.filter and f.to in entities:
            checked = (_condition(run, entity, f, c, by_name, entities[f.to], roles) for c in f.filter)
            f = dataclasses.replace(f, filter=tuple(c for c in checked if c is not None))
        fields.append(f)
    return dataclasses.replace(entity, fields=tuple(fields))


def _link_default(run: Check, entity: EntitySpec, f: FieldSpec, by_name, entities) -> FieldSpec:
    from app.schema.fields import literal_default

    link_name, source_name = f.default_from
    link = by_name.get(link_name)
    where = f"default of field '{entity.name}.{f.name}'"
    if link is None or not link.stores_link or link.kind.to_users:  # not a link: the text is a literal default
        return dataclasses.replace(f, default_from=None,
                                   default=literal_default(run, entity.file, f.line, entity.name, f, ".".join(f.default_from)))
    if f.kind.is_relation or f.formula is not None or f.kind.assigned:
        run.error(entity.file, f.line, "E463", f"{where}: a {'formula' if f.formula is not None else f.type} field cannot take a default from a link")
        return f
    target = entities.get(link.to)
    if target is None:
        return f  # the unknown entity is reported as E503
    source = next((s for s in target.fields if s.name == source_name), None)
    if source is None:
        run.error(entity.file, f.line, "E460", f"{where} names unknown field '{source_name}' of '{target.name}'{did_you_mean(source_name, target.field_names)}")
        return f
    if source.kind.is_relation:
        run.error(entity.file, f.line, "E461", f"{where}: '{link_name}.{source_name}' is a {source.type} field; copy a value field")
        return f
    fits = value_type(source) == value_type(f)
    if fits and f.choices:  # an enum takes only its own keys
        fits = bool(source.choices) and {c.key for c in source.choices} <= {c.key for c in f.choices}
    if not fits:
        run.error(entity.file, f.line, "E462", f"{where}: '{link_name}.{source_name}' is a {source.type} field; it does not fit a {f.type} field")
    return f


def _condition(run: Check, entity: EntitySpec, f: FieldSpec, c: PickerCondition, by_name,
               target: EntitySpec, roles: tuple[RoleSpec, ...]) -> PickerCondition | None:
    """The condition with its literals typed, or None when it is not sound (its problem is reported)."""
    file, where = entity.file, f"filter '{c.field}' of field '{entity.name}.{f.name}'"
    field = next((t for t in target.fields if t.name == c.field), None)
    if field is None:
        run.error(file, c.line, "E465", f"{where} names unknown field '{c.field}' of '{target.name}'{did_you_mean(c.field, target.field_names)}")
        return None
    # which records a picker offers (and which choices a write accepts) tells whoever may pick whether the field
    # meets the condition: a user who guesses `$record.<field>` values would read a field their role hides or masks
    shields = sorted(r.name for r in roles if c.field in r.hidden(target.name) | r.masked(target.name))
    if shields:
        run.error(file, c.line, "E473", f"{where}: '{target.name}.{c.field}' is hidden or masked for role {', '.join(shields)}; "
                                        f"a filter on it would let them find out its value")
        return None
    if c.user:
        if not field.kind.to_users:
            run.error(file, c.line, "E467", f"{where}: $user only compares a user field, '{target.name}.{c.field}' is {field.type}")
            return None
        return c
    if c.record_field is not None:
        mine = by_name.get(c.record_field)
        if mine is None:
            run.error(file, c.line, "E468", f"{where}: $record.{c.record_field} names unknown field '{c.record_field}' of '{entity.name}'"
                                            f"{did_you_mean(c.record_field, by_name)}")
            return None
        if mine.name == f.name:
            run.error(file, c.line, "E472", f"{where}: $record.{c.record_field} is the field being filtered")
            return None
        if field.kind.is_relation:  # a link or many field of the target: this record's link to the same entity
            fits = mine.stores_link and mine.kind.to_users == field.kind.to_users and (field.kind.to_users or mine.to == field.to)
        else:
            fits = not mine.kind.is_relation and value_type(mine) == value_type(field)
        if not fits:
            run.error(file, c.line, "E469", f"{where}: '{entity.name}.{mine.name}' ({mine.type}) cannot be compared with "
                                            f"'{target.name}.{c.field}' ({field.type}{' to ' + field.to if field.to else ''})")
            return None
        return c
    if field.kind.is_relation:
        run.error(file, c.line, "E471", f"{where}: a {field.type} field is compared with $record.<link field>{' or $user' if field.kind.to_users else ''}, not a value")
        return None
    options = {"choices": field.choices, "precision": field.precision, "scale": field.scale}
    for value in c.values:
        try:
            literal = field.kind.literal(value, options)
        except (LiteralError, ValueError, ArithmeticError):
            literal = None
        if literal is None or (field.choices and literal not in [ch.key for ch in field.choices]):
            run.error(file, c.line, "E466", f"{where}: {short(repr(value))} is not a {field.type} value of '{target.name}.{c.field}'")
            return None
    return dataclasses.replace(c, values=tuple(field.kind.literal(v, options) for v in c.values))
