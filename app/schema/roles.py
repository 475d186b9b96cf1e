"""Check roles: what each role can do, which rows it sees, which fields it may not see, which reports."""
from __future__ import annotations

import re

from app.schema.loader import YList, YMap
from app.schema.filters import check_filter, read_filter
from app.schema.values import Check, did_you_mean
from app.schema.spec import (
    ACTIONS,
    ModuleSpec,
    RoleSpec,
)

ROLE_KEYS = ("label", "can", "rows", "hide", "mask", "reports")
RESERVED_ROLES = ("Admin", "Public")

def _entity_map(run, raw, file, line, what) -> list[tuple[str, object, int]]:
    """Entries of an `Entity: ...` mapping, with their lines; entity names are checked later."""
    if run.mapping(raw, file, line, what) is None:
        return []
    return [(str(name), value, raw.line_of(name)) for name, value in raw.items()]


def _require_entity(run, file, line, name, what):
    def check_entity(entities):
        if name not in entities:
            run.error(file, line, "E604", f"{what} names unknown entity '{name}'{did_you_mean(name, entities)}")
    run.later.append(check_entity)


def check_role(run: Check, file, name, raw, line) -> RoleSpec | None:
    if not isinstance(name, str) or not re.match(r"^[A-Za-z][A-Za-z0-9_\- ]{0,63}$", name):
        run.error(file, line, "E601", f"role name {name!r} must start with a letter and use letters, digits, space, _ or -")
        return None
    if name.lower() in {r.lower() for r in RESERVED_ROLES}:
        run.error(file, line, "E602", f"role '{name}' is built in and cannot be redefined (Admin always has every permission)")
        return None
    raw = run.mapping(raw, file, line, f"role '{name}'")
    if raw is None:
        return None
    run.keys(raw, ROLE_KEYS, file, f"role '{name}'", "E603")
    where = f"role '{name}'"
    label, _ = run.label(raw.get("label"), file, raw.line_of("label"), f"label of {where}", name)
    grants = []
    for entity, actions, ln in _entity_map(run, raw.get("can", YMap()), file, raw.line_of("can"), f"'can' of {where}"):
        _require_entity(run, file, ln, entity, f"'can' of {where}")
        if actions == "all":
            grants.append((entity, frozenset(ACTIONS)))
            continue
        names = run.name_list(actions, file, ln, f"actions of {where} on {entity}")
        for action, action_line in names:
            if action not in ACTIONS:
                run.error(file, action_line, "E605", f"unknown action '{action}' for {entity} in {where}{did_you_mean(action, ACTIONS)}; actions are {', '.join(ACTIONS)} or all")
        granted = frozenset(a for a, _ in names if a in ACTIONS)
        if granted - {"read"} and "read" not in granted:
            run.error(file, ln, "E606", f"{where} grants {', '.join(sorted(granted))} on {entity} without read")
        grants.append((entity, granted))
    granted_entities = {e for e, _ in grants}
    rows = []
    for entity, conditions, ln in _entity_map(run, raw.get("rows", YMap()), file, raw.line_of("rows"), f"'rows' of {where}"):
        if entity not in granted_entities:
            run.error(file, ln, "E607", f"{where} limits rows of {entity} but grants nothing on it")
        if run.mapping(conditions, file, ln, f"row scope of {where} on {entity}") is None or not conditions:
            continue
        scope = read_filter(run, file, conditions, ln, f"row scope of {where}")
        run.later.append(_row_scope_check(run, file, ln, where, entity, scope))
        rows.append((entity, scope))
    hide = _field_sets(run, raw, "hide", file, where, granted_entities)
    mask = _field_sets(run, raw, "mask", file, where, granted_entities)
    reports = tuple(r for r, _ in run.name_list(raw.get("reports", YList()), file, raw.line_of("reports"), f"reports of {where}"))
    return RoleSpec(name, label, file, line, tuple(grants), tuple(rows), hide, mask, reports)


def _field_sets(run, raw, key, file, where, granted_entities):
    result = []
    for entity, fields, ln in _entity_map(run, raw.get(key, YMap()), file, raw.line_of(key), f"'{key}' of {where}"):
        if entity not in granted_entities:
            run.error(file, ln, "E607", f"{where} has '{key}' for {entity} but grants nothing on it")
        names = run.name_list(fields, file, ln, f"{key} of {where}")
        run.later.append(_field_set_check(run, file, key, where, entity, names))
        result.append((entity, frozenset(n for n, _ in names)))
    return tuple(result)


def _field_set_check(run, file, key, where, entity_name, names):
    def check(entities):
        entity = entities.get(entity_name)
        if entity is None:
            return
        for name, ln in names:
            if name not in entity.field_names:
                run.error(file, ln, "E615", f"{key} of {where} names unknown field '{name}' of {entity_name}{did_you_mean(name, entity.field_names)}")
            elif name == entity.title:
                run.error(file, ln, "E616", f"{key} of {where} cannot use '{name}': it is {entity_name}'s title, shown wherever the record is linked")
            elif key == "mask" and not entity.field(name).kind.maskable:
                run.error(file, ln, "E617", f"cannot mask '{name}' (a {entity.field(name).type} field); mask works on text, phone, email, url and numbers")
    return check


# the row scope's codes, published before the filter language was shared (app/schema/filters.py)
ROW_SCOPE_CODES = {"unknown": "E609", "path": "E608", "not_link": "E610", "relation": "E611", "user": "E612",
                   "user_needed": "E613", "choice": "E614"}


def _row_scope_check(run, file, line, where, entity_name, scope):
    def check(entities):
        check_filter(run, file, line, f"row scope of {where}", entities, entity_name, scope, ROW_SCOPE_CODES)
    return check


def merge_roles(run: Check, modules: list[ModuleSpec]) -> tuple[RoleSpec, ...]:
    """A role may take grants from several modules; the same entity may not be set twice."""
    merged: dict[str, RoleSpec] = {}
    for module in modules:
        for role in module.roles:
            if role.name not in merged:
                merged[role.name] = role
                continue
            first = merged[role.name]
            for attr in ("grants", "rows", "hide", "mask"):
                clash = set(dict(getattr(first, attr))) & set(dict(getattr(role, attr)))
                for entity in sorted(clash):
                    run.error(role.file, role.line, "E618", f"role '{role.name}' sets {attr} for {entity} again (also in {first.file})")
            label = first.label if first.label.texts != ((("en", first.name),)) else role.label
            merged[role.name] = RoleSpec(
                first.name, label, first.file, first.line, first.grants + role.grants, first.rows + role.rows,
                first.hide + role.hide, first.mask + role.mask, first.reports + role.reports)
    return tuple(merged.values())


# -- reports -----------------------------------------------------------------------------------
