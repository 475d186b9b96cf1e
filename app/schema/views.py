"""Check saved views (`views:`) and row highlights (`highlight:`); their spec dataclasses live here.

    views:
      my_open_tickets:
        entity: Ticket
        label: {en: My open tickets, zh: 我的待办工单}
        filter: {assignee: $user, status: [open, in_progress]}   # the filter language (app/schema/filters.py)
        columns: [number, subject, priority]
        order: [-priority, due_date]                              # `-field`: descending
        roles: [SupportAgent]
        home: true                                                # a count card on the home page
        default: true                                             # the list opens on it for these roles
    highlight:
      Ticket: {overdue: {when: {due_date: {lt: $today}}, style: danger, label: {en: Overdue, zh: 逾期}}}

A column a role of the view may not see is not a problem here: it is left out for that role at run time (the
same view serves roles that see more). Ordering or filtering by a field a role of the view may not see (hidden or
masked) is a problem (E577): the order, the count and the rows would leak its values; so is a highlight whose `when`
uses a field some role reading the entity may not see (E586): the row colours would. Filter problems use the filter language's codes (E760–E772).
Nothing here imports Flask.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from app.schema.filters import check_filter, read_filter
from app.schema.loader import YList
from app.schema.spec import Label, humanize
from app.schema.values import Check, did_you_mean, kind, short

VIEW_KEYS = ("entity", "label", "filter", "columns", "order", "roles", "home", "default")
HIGHLIGHT_KEYS = ("when", "style", "label")
STYLES = ("danger", "warning", "info", "success")
VIEW_ID = re.compile(r"^[a-z][a-z0-9_]{0,59}$")


@dataclass(frozen=True)
class ViewSpec:
    id: str
    module: str
    entity: str
    label: Label
    file: str
    line: int
    filter: tuple = ()                           # conditions of the filter language
    columns: tuple[str, ...] = ()                # () : the entity's list columns
    order: tuple[tuple[str, str], ...] = ()      # (field, "asc" | "desc")
    roles: tuple[str, ...] = ()
    home: bool = False
    default: bool = False


@dataclass(frozen=True)
class HighlightSpec:
    entity: str
    name: str
    module: str
    when: tuple
    style: str
    label: Label
    file: str
    line: int


def portal_views(spec) -> tuple[ViewSpec, ...]:
    return tuple(v for m in spec.modules for v in m.views)


def portal_highlights(spec, entity: str | None = None) -> tuple[HighlightSpec, ...]:
    return tuple(h for m in spec.modules for h in m.highlights if entity is None or h.entity == entity)


def read_order(items) -> tuple[tuple[str, str], ...]:
    """`[-due_date, number]` as ((due_date, desc), (number, asc))."""
    return tuple((item[1:], "desc") if item.startswith("-") else (item, "asc") for item in items)


def check_views(run: Check, file, module: str, raw, line) -> tuple[ViewSpec, ...]:
    if run.mapping(raw, file, line, "views") is None:
        return ()
    views = []
    for view_id, body in raw.items():
        view = _check_view(run, file, module, view_id, body, raw.line_of(view_id))
        if view:
            views.append(view)
    return tuple(views)


def _check_view(run: Check, file, module, view_id, raw, line) -> ViewSpec | None:
    if not isinstance(view_id, str) or not VIEW_ID.match(view_id):
        run.error(file, line, "E570", f"view id {short(repr(view_id))} must be lowercase letters, digits and _ "
                                      f"(starting with a letter; it is part of the URL)")
        return None
    where = f"view '{view_id}'"
    raw = run.mapping(raw, file, line, where)
    if raw is None:
        return None
    run.keys(raw, VIEW_KEYS, file, where, "E571")
    entity = raw.get("entity")
    if not isinstance(entity, str):
        run.error(file, raw.line_of("entity") if "entity" in raw else line, "E572", f"{where} needs 'entity: <Entity>'")
        return None
    label, _ = run.label(raw.get("label"), file, raw.line_of("label"), f"label of {where}", humanize(view_id))
    conditions = ()
    if "filter" in raw:
        conditions = read_filter(run, file, raw["filter"], raw.line_of("filter"), f"filter of {where}")
    columns = run.name_list(raw.get("columns", YList()), file, raw.line_of("columns"), f"columns of {where}")
    order_items = run.name_list(raw.get("order", YList()), file, raw.line_of("order"), f"order of {where}")
    roles = run.name_list(raw.get("roles", YList()), file, raw.line_of("roles"), f"roles of {where}")
    home = run.boolean(raw["home"], file, raw.line_of("home"), f"home of {where}") if "home" in raw else False
    default = run.boolean(raw["default"], file, raw.line_of("default"), f"default of {where}") if "default" in raw else False
    order = read_order(name for name, _ in order_items)

    def check_against_entities(entities):
        spec = entities.get(entity)
        if spec is None:
            run.error(file, raw.line_of("entity"), "E573", f"{where} names unknown entity '{entity}'{did_you_mean(entity, entities)}")
            return
        check_filter(run, file, raw.line_of("filter"), f"filter of {where}", entities, entity, conditions)
        seen = set()
        for name, ln in columns:
            if name not in spec.field_names:
                run.error(file, ln, "E574", f"column '{short(name)}' of {where} is not a field of {entity}"
                                            f"{did_you_mean(name, spec.field_names)}")
            elif name in seen:
                run.error(file, ln, "E574", f"column '{name}' of {where} is listed twice")
            seen.add(name)
        for (name, _), (_, ln) in zip(order, order_items):
            if name not in spec.field_names:
                run.error(file, ln, "E574", f"order of {where} names '{short(name)}', not a field of {entity}"
                                            f"{did_you_mean(name, spec.field_names)}")
            elif spec.field(name).is_relation or not spec.field(name).kind.sortable:
                run.error(file, ln, "E578", f"{where} cannot be ordered by '{name}' (a {spec.field(name).type} field)")

    run.later.append(check_against_entities)
    return ViewSpec(view_id, module, entity, label, file, line, conditions, tuple(n for n, _ in columns), order,
                    tuple(r for r, _ in roles), home, default)


def check_highlights(run: Check, file, module: str, raw, line) -> tuple[HighlightSpec, ...]:
    if run.mapping(raw, file, line, "highlight") is None:
        return ()
    result = []
    for entity, rules in raw.items():
        ln = raw.line_of(entity)
        if run.mapping(rules, file, ln, f"highlight of {entity}") is None:
            continue
        for name, body in rules.items():
            spec = _check_highlight(run, file, module, str(entity), name, body, rules.line_of(name))
            if spec:
                result.append(spec)
        run.later.append(_highlight_entity_check(run, file, ln, str(entity), [h for h in result if h.entity == entity]))
    return tuple(result)


def _highlight_entity_check(run, file, line, entity, highlights):
    def check(entities):
        if entity not in entities:
            run.error(file, line, "E580", f"highlight names unknown entity '{entity}'{did_you_mean(entity, entities)}")
            return
        for h in highlights:
            check_filter(run, file, h.line, f"when of highlight '{h.name}'", entities, entity, h.when)
    return check


def _check_highlight(run: Check, file, module, entity, name, raw, line) -> HighlightSpec | None:
    if not isinstance(name, str) or not VIEW_ID.match(name):
        run.error(file, line, "E581", f"highlight name {short(repr(name))} must be lowercase letters, digits and _")
        return None
    where = f"highlight '{name}' of {entity}"
    raw = run.mapping(raw, file, line, where)
    if raw is None:
        return None
    run.keys(raw, HIGHLIGHT_KEYS, file, where, "E582")
    if "when" not in raw:
        run.error(file, line, "E584", f"{where} needs 'when: <filter>'")
        return None
    when = read_filter(run, file, raw["when"], raw.line_of("when"), f"when of {where}")
    style = raw.get("style")
    if style not in STYLES:
        run.error(file, raw.line_of("style") if "style" in raw else line, "E583",
                  f"style of {where} must be one of {', '.join(STYLES)}, got "
                  f"{short(style) if isinstance(style, str) else kind(style)}{did_you_mean(style, STYLES)}")
        return None
    label, _ = run.label(raw.get("label"), file, raw.line_of("label"), f"label of {where}", humanize(name))
    return HighlightSpec(entity, name, module, when, style, label, file, line)


def check_views_across(run: Check, modules, roles, entities: dict) -> None:
    """Ids unique across modules, roles known and able to read the entity, an order a role may see, one
    default view per role and entity; highlight names unique per entity."""
    seen: dict[str, ViewSpec] = {}
    known_roles = {r.name: r for r in roles}
    defaults: dict[tuple[str, str], str] = {}
    for module in modules:
        for view in module.views:
            where = f"view '{view.id}'"
            if view.id in seen:
                run.error(view.file, view.line, "E576", f"{where} is already defined in {seen[view.id].file}")
            seen[view.id] = view
            if view.entity not in entities:
                continue
            for role_name in view.roles:
                role = known_roles.get(role_name)
                if role is None:
                    run.error(view.file, view.line, "E575", f"{where} names unknown role '{role_name}'"
                                                            f"{did_you_mean(role_name, known_roles)}")
                    continue
                if "read" not in role.actions(view.entity):
                    run.error(view.file, view.line, "E577", f"{where} is for role '{role_name}', which cannot read {view.entity}")
                    continue
                unseen = role.hidden(view.entity) | role.masked(view.entity)
                for name, _ in view.order:
                    if name in unseen:
                        run.error(view.file, view.line, "E577",
                                  f"{where} is ordered by '{name}', which role '{role_name}' may not see")
                filtered = unseen_filter_field(role, entities, view.entity, view.filter)
                if filtered:
                    run.error(view.file, view.line, "E577", f"{where} filters on '{filtered}', which role "
                                                            f"'{role_name}' may not see: its count and rows would tell them")
                if view.default:
                    key = (role_name, view.entity)
                    if key in defaults:
                        run.error(view.file, view.line, "E579", f"{where} and view '{defaults[key]}' are both the "
                                                                f"default of {view.entity} for role '{role_name}'")
                    defaults[key] = view.id
    lit: dict[tuple[str, str], HighlightSpec] = {}
    for module in modules:
        for h in module.highlights:
            if (h.entity, h.name) in lit:
                run.error(h.file, h.line, "E585", f"highlight '{h.name}' of {h.entity} is already defined in "
                                                  f"{lit[(h.entity, h.name)].file}")
            lit[(h.entity, h.name)] = h
            if h.entity not in entities:
                continue
            for role in roles:  # every role reading the entity sees the row colours and the home page's counts
                if "read" in role.actions(h.entity):
                    filtered = unseen_filter_field(role, entities, h.entity, h.when)
                    if filtered:
                        run.error(h.file, h.line, "E586", f"highlight '{h.name}' of {h.entity} uses '{filtered}', "
                                                          f"which role '{role.name}' may not see: the row colours "
                                                          f"would tell them")


def unseen_filter_field(role, entities: dict, entity_name: str, conditions) -> str | None:
    """The first field path of a filter that the role may not see (hidden or masked, through a link too)."""
    entity = entities[entity_name]
    for c in conditions:
        if not c.path or c.path[0] not in entity.field_names:
            continue  # an unknown field: the filter language's own problem
        if c.path[0] in role.hidden(entity_name) | role.masked(entity_name):
            return ".".join(c.path)
        if len(c.path) == 2:
            target = entity.field(c.path[0]).to
            if target and c.path[1] in role.hidden(target) | role.masked(target):
                return ".".join(c.path)
    return None
