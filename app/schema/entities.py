"""Check entities (names, list/search/order/title/unique_together) and names across modules and tables."""
from __future__ import annotations

import re

from app.schema.loader import YList, YMap
from app.schema.reserved import MAX_IDENTIFIER_BYTES, reserved_clash, reserved_table
from app.schema.fields import AUDIT_FIELDS, AUDIT_TYPES, check_field
from app.schema.formulas import check_rules
from app.schema.lifecycle import read_lifecycle
from app.schema.lines import read_lines
from app.schema.siblings import add_siblings
from app.schema.retention import read_retention
from app.schema.duplicates import read_duplicates
from app.schema.values import Check, did_you_mean, kind, short
from app.schema.spec import (
    EntitySpec,
    FieldSpec,
    ModuleSpec,
    humanize,
    snake_case,
)

ENTITY_KEYS = ("label", "title", "fields", "list", "search", "order", "unique_together", "rules", "lines",
               "workflow", "history", "comments", "attachments", "retention", "duplicates")

ENTITY_NAME = re.compile(r"^[A-Z][A-Za-z0-9]{0,59}$")

MAX_COLUMNS = 500       # per table; SQLite allows 2000, PostgreSQL 1600
MAX_ENTITIES = 500

def check_entity(run: Check, file, module, name, raw, line) -> EntitySpec | None:
    if not isinstance(name, str) or not ENTITY_NAME.match(name):
        run.error(file, line, "E301", f"entity name {short(repr(name))} must be CamelCase letters and digits (at most 60), e.g. FollowUp")
        return None
    clash = reserved_clash(name)
    if clash:
        run.error(file, line, "E901", f"entity name '{name}' is taken by the portal's own pages, API or permissions ('{clash}'); choose another name")
    elif reserved_table(snake_case(name)):
        run.error(file, line, "E902", f"entity name '{name}' clashes with the portal's own ab_* tables or the database's reserved names")
    raw = run.mapping(raw, file, line, f"entity '{name}'")
    if raw is None:
        return None
    run.keys(raw, ENTITY_KEYS, file, f"entity '{name}'", "E302")
    label, given = run.label(raw.get("label"), file, raw.line_of("label"), f"label of '{name}'", humanize(name))
    fields: list[FieldSpec] = []
    raw_fields = raw.get("fields")
    if raw_fields is None:
        run.error(file, line, "E303", f"entity '{name}' has no 'fields'")
    elif run.mapping(raw_fields, file, raw.line_of("fields"), f"fields of '{name}'") is not None:
        if not raw_fields:
            run.error(file, raw.line_of("fields"), "E303", f"entity '{name}' has no fields")
        for field_name, raw_field in raw_fields.items():
            spec = check_field(run, file, name, field_name, raw_field, raw_fields.line_of(field_name))
            if spec:
                fields.append(spec)
    fields = add_siblings(run, file, name, fields)  # an address's province, city ... (read-only, derived)
    by_name = {f.name: f for f in fields}
    columns = 2 + len(AUDIT_FIELDS) + sum(1 for f in fields if not f.kind.multiple)
    if columns > MAX_COLUMNS:
        run.error(file, line, "E801", f"entity '{name}' has {columns} columns (with id, row_version and the 4 audit columns); at most {MAX_COLUMNS} are allowed")
    for f in fields:
        if f.stores_link and f.column_name in by_name:
            run.error(file, f.line, "E310", f"field '{f.column_name}' clashes with the column that stores link '{f.name}'")
    where = f"entity '{name}'"

    def field_ref(field_name, ref_line, what, allowed=None, audit=True):
        """The field's name if it exists and its type passes `allowed` (a FieldType predicate), else None."""
        type_name = by_name[field_name].type if field_name in by_name else AUDIT_TYPES.get(field_name)
        if field_name in AUDIT_FIELDS and field_name not in by_name and not audit:
            run.error(file, ref_line, "E305", f"{what} cannot use '{field_name}' (an audit field)")
            return None
        if type_name is not None:
            field_kind = by_name[field_name].kind if field_name in by_name else run.types[type_name]
            if allowed is not None and not allowed(field_kind):
                run.error(file, ref_line, "E305", f"{what} cannot use '{field_name}' (a {type_name} field)")
                return None
            return field_name
        if isinstance(raw_fields, YMap) and field_name in raw_fields:
            return None  # the field itself is broken and already reported
        known = list(by_name) + list(AUDIT_FIELDS)
        run.error(file, ref_line, "E304", f"{what} names unknown field '{field_name}' of {where}{did_you_mean(field_name, known)}")
        return None

    title = None
    if "title" in raw:
        title_value = run.text(raw["title"], file, raw.line_of("title"), "title")
        if title_value:
            title = field_ref(title_value, raw.line_of("title"), "title", allowed=lambda t: t.can_be_title, audit=False)
    list_cols = tuple(f for f, ln in run.name_list(raw.get("list", YList()), file, raw.line_of("list"), "list")
                      if field_ref(f, ln, "list"))
    search_cols = tuple(f for f, ln in run.name_list(raw.get("search", YList()), file, raw.line_of("search"), "search")
                        if field_ref(f, ln, "search"))
    order = []
    for item, ln in run.name_list(raw.get("order", YList()), file, raw.line_of("order"), "order"):
        direction, field_name = ("desc", item[1:]) if item.startswith("-") else ("asc", item.lstrip("+"))
        if field_ref(field_name, ln, "order", allowed=lambda t: t.sortable):
            order.append((field_name, direction))
    unique_together = []
    if "unique_together" in raw:
        groups = raw["unique_together"]
        if not isinstance(groups, YList) or not groups:
            run.error(file, raw.line_of("unique_together"), "E306", f"unique_together must be a list of field lists, got {kind(groups)}")
        else:
            if all(isinstance(g, str) for g in groups):  # a single group written flat
                flat = YList([groups]); flat.line = groups.line; flat.item_lines = [groups.line]
                groups = flat
            for i, group in enumerate(groups):
                names = run.name_list(group, file, groups.line_of(i), "unique_together")
                if len(names) < 2:
                    run.error(file, groups.line_of(i), "E307", "a unique_together group needs at least two fields")
                    continue
                ok = [field_ref(f, ln, "unique_together", allowed=lambda t: not t.multiple, audit=False) for f, ln in names]
                if len(set(ok)) < len(ok):
                    run.error(file, groups.line_of(i), "E307", "a unique_together group names the same field twice")
                elif all(ok):
                    unique_together.append(tuple(ok))
    rules = check_rules(run, file, name, raw.get("rules"), raw.line_of("rules"))
    lines = read_lines(run, file, name, raw.get("lines"), raw.line_of("lines"))
    lifecycle = read_lifecycle(run, file, name, raw)
    duplicates = read_duplicates(run, file, name, raw.get("duplicates"), raw.line_of("duplicates"), by_name)
    return EntitySpec(
        name=name, module=module, label=label, file=file, line=line, fields=tuple(fields),
        title=title, list=list_cols, search=search_cols, order=tuple(order),
        unique_together=tuple(unique_together), label_given=given, rules=tuple(rules),
        lines=lines, lines_line=raw.line_of("lines") if lines else 0,
        workflow=lifecycle.workflow, history=lifecycle.history, comments=lifecycle.comments,
        attachments=lifecycle.attachments, duplicates=duplicates,
        retention=read_retention(run, file, name, raw.get("retention"), raw.line_of("retention")),
    )

def check_across_modules(run: Check, modules: list[ModuleSpec]) -> None:
    """Names must be unique across all modules and links must point to existing entities."""
    entities: dict[str, EntitySpec] = {}
    tables: dict[str, EntitySpec] = {}
    for module in modules:
        for entity in module.entities:
            if entity.name in entities:
                other = entities[entity.name]
                run.error(entity.file, entity.line, "E308", f"entity '{entity.name}' is already defined in {other.file}:{other.line}")
                continue
            if entity.table in tables:
                other = tables[entity.table]
                run.error(entity.file, entity.line, "E309", f"entity '{entity.name}' has the same table/API name '{entity.table}' as '{other.name}'")
                continue
            entities[entity.name] = entity
            tables[entity.table] = entity
    if len(entities) > MAX_ENTITIES:
        first = next(iter(entities.values()))
        run.error(first.file, first.line, "E803", f"the schemas define {len(entities)} entities; at most {MAX_ENTITIES} are allowed")
    for entity in entities.values():
        for f in entity.fields:
            if f.is_relation and f.to is not None and f.to not in entities:
                run.error(entity.file, f.line, "E503", f"field '{entity.name}.{f.name}' links to unknown entity '{short(f.to)}'{did_you_mean(f.to, entities)}")
    reports = {r.id: r for m in reversed(modules) for r in reversed(m.reports)}  # a repeated id is reported elsewhere
    _check_database_names(run, entities.values(), reports.values())
    return entities


def _database_names(entity: EntitySpec):
    """(name, what, line, explicit) for every table, index and constraint the build creates for an entity.

    Mirrors app/generate/models.py. `explicit` names are given by the portal; the others PostgreSQL
    picks itself (it avoids taken names for those, but a later explicit name can still collide).
    """
    table = entity.table
    yield table, f"table of entity '{entity.name}'", entity.line, True
    yield f"{table}_pkey", "primary key", entity.line, False
    yield f"{table}_id_seq", "id sequence", entity.line, False
    sorted_on = {name for name, _ in entity.order}
    for f in entity.fields:
        if f.kind.multiple:
            link_table = f"{table}_{f.name}"
            yield link_table, f"table of many field '{entity.name}.{f.name}'", f.line, True
            yield f"{link_table}_pkey", "primary key", f.line, False
            yield f"ix_{link_table}_right_id", f"index of many field '{entity.name}.{f.name}'", f.line, True
        elif f.stores_link:
            yield f"ix_{table}_{f.column_name}", f"index of field '{entity.name}.{f.name}'", f.line, True
        elif f.unique:
            yield f"{table}_{f.name}_key", "unique constraint", f.line, False
        elif f.index or f.name in entity.search or f.name in sorted_on or f.name == entity.title:
            yield f"ix_{table}_{f.name}", f"index of field '{entity.name}.{f.name}'", f.line, True
    yield f"ix_{table}_created_on", f"index of entity '{entity.name}'", entity.line, True
    if entity.order:
        yield f"ix_{table}_by_order", f"order index of entity '{entity.name}'", entity.line, True
    for group in entity.unique_together:
        yield f"uq_{table}_{'_'.join(group)}", f"unique_together of entity '{entity.name}'", entity.line, True


def _check_database_names(run: Check, entities, reports) -> None:
    """Every generated name fits PostgreSQL's 63 bytes, and no explicit name is taken twice.

    Tables, indexes and sequences share one namespace per schema (PostgreSQL) or database (SQLite).
    """
    taken: dict[str, tuple[str, str, int]] = {}  # explicit name -> (what, file, line)
    implicit = []
    named = [(name, what, entity.file, line, explicit) for entity in entities
             for name, what, line, explicit in _database_names(entity)]
    named += [(f"ix_report_{r.id}", f"index of report '{r.id}'", r.file, r.line, True) for r in reports]
    for name, what, file, line, explicit in named:
        if not explicit:
            implicit.append((name, what))
        elif len(name.encode()) > MAX_IDENTIFIER_BYTES:
            run.error(file, line, "E802", f"the {what} would be named '{name}' ({len(name.encode())} bytes); "
                                          f"PostgreSQL allows {MAX_IDENTIFIER_BYTES}: shorten the entity, field or report name")
        elif what.startswith("table") and reserved_table(name):
            run.error(file, line, "E902", f"the {what} would be named '{name}', a name kept for the portal's own ab_* tables or the database")
        elif name in taken:
            run.error(file, line, "E903", f"the {what} would be named '{name}', like the {taken[name][0]}; rename one of them")
        else:
            taken[name] = (what, file, line)
    for name, what in implicit:
        if name in taken:
            other, file, line = taken[name]
            run.error(file, line, "E903", f"the {other} would be named '{name}', like a {what} the database creates; rename it")
            del taken[name]


# -- roles -------------------------------------------------------------------------------------
