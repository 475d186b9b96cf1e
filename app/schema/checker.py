"""Check loaded YAML and turn it into frozen spec objects: modules, then each topic's module.

Topics: entities.py (entities and names across modules), fields.py (fields), formulas.py (formulas and
rules, typed once every entity is known), rollups.py (rollup fields: read with their field, checked against the
child entity through `run.later`), roles.py, reports.py, i18n_check.py; values.py reads YAML values. Every problem is collected (never raised) so that one run
reports all of them as `file:line: E123 message`. Nothing here imports Flask.
"""
from __future__ import annotations

import dataclasses
import re

from app.fieldtypes import BUILTIN_TYPES, FieldTypes
from app.schema.loader import Problem, SourceFile, YMap
from app.schema.duplicates import check_duplicates
from app.schema.dashboards import check_dashboards, check_dashboards_across
from app.schema.entities import check_across_modules, check_entity
from app.schema.formulas import check_expressions
from app.schema.lifecycle import check_lifecycle
from app.schema.lines import check_lines
from app.schema.links import check_links
from app.schema.reminders import check_reminders, check_webhook_channels, read_reminders
from app.schema.retention import check_retention
from app.schema.reports import check_report, check_report_ids, with_group_entities
from app.schema.roles import check_role, merge_roles
from app.schema.values import Check, kind, short
from app.schema.webhooks import check_webhook_names, check_webhooks
from app.schema.views import check_highlights, check_views, check_views_across
from app.schema.spec import (
    ModuleSpec,
    PortalSpec,
    humanize,
)

MODULE_KEYS = ("version", "module", "label", "entities", "roles", "reports", "webhooks", "reminders", "views",
               "highlight", "dashboards")

MODULE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

def check(files: list[SourceFile], types: FieldTypes = BUILTIN_TYPES) -> tuple[PortalSpec | None, list[Problem]]:
    """Check all loaded files together; returns the spec only when there is no problem."""
    run = Check(types)
    modules: list[ModuleSpec] = []
    module_seen: dict[str, str] = {}
    for source in files:
        if source.data is None:
            continue
        module = _check_module(run, source, module_seen)
        if module:
            modules.append(module)
    entities = check_across_modules(run, modules)
    for check_later in run.later:
        check_later(entities)
    check_lines(run, entities)
    # formulas and rules read other entities' fields (worker.day_rate): typed once all are known
    modules = [dataclasses.replace(m, entities=tuple(check_expressions(run, e, entities) for e in m.entities))
               for m in modules]
    roles = merge_roles(run, modules)
    # defaults from links and picker filters read the linked entity's fields too (filters: and the roles' hide/mask)
    modules = [dataclasses.replace(m, entities=tuple(check_links(run, e, entities, roles) for e in m.entities))
               for m in modules]
    # a workflow's transitions name roles and its `when` reads the record like a rule
    modules = [dataclasses.replace(m, entities=tuple(check_lifecycle(run, e, entities, roles) for e in m.entities))
               for m in modules]
    for entity in entities.values():
        check_duplicates(run, entity, roles)  # save_anyway roles; rules no writing role can see
    check_report_ids(run, modules, roles)
    modules = with_group_entities(modules, entities)  # a cross-entity report counts its group entity's records
    check_webhook_names(run, modules)
    reminders = [r for m in modules for r in m.reminders]
    check_reminders(run, reminders, {e.name: e for m in modules for e in m.entities}, roles)
    check_webhook_channels(run, reminders, {w.name for m in modules for w in m.webhooks})
    check_views_across(run, modules, roles, entities)
    check_dashboards_across(run, modules, roles)
    for entity in (e for m in modules for e in m.entities if e.retention):
        check_retention(run, entity.file, entity, entities)
    if run.problems:
        return None, run.problems
    return PortalSpec(tuple(modules), roles), []


def _check_module(run: Check, source: SourceFile, module_seen: dict) -> ModuleSpec | None:
    file, data = source.path, source.data
    if not isinstance(data, YMap):
        run.error(file, getattr(data, "line", 1), "E201", f"a schema file must be a mapping with module and entities, got {kind(data)}")
        return None
    run.keys(data, MODULE_KEYS, file, "module", "E202")
    if "version" not in data:
        run.error(file, data.line, "E203", "missing 'version: 1'")
    elif isinstance(data["version"], bool) or data["version"] != 1:
        run.error(file, data.line_of("version"), "E204", f"unsupported version {short(data['version'])}; this portal reads version 1")
    name = data.get("module")
    if name is None:
        run.error(file, data.line, "E205", "missing 'module' (the module's name, e.g. crm)")
        name = "?"
    elif not isinstance(name, str) or not MODULE_NAME.match(name):
        run.error(file, data.line_of("module"), "E206", f"module name {short(repr(name))} must be lowercase letters, digits and _ (starting with a letter)")
    elif name in module_seen:
        run.error(file, data.line_of("module"), "E207", f"module '{name}' is already defined in {module_seen[name]}")
    else:
        module_seen[name] = file
    label, given = run.label(data.get("label"), file, data.line_of("label"), "module label", humanize(str(name)))
    entities = []
    raw_entities = data.get("entities")
    if raw_entities is None:
        run.error(file, data.line, "E208", "missing 'entities'")
    elif run.mapping(raw_entities, file, data.line_of("entities"), "entities") is not None:
        if not raw_entities:
            run.error(file, data.line_of("entities"), "E209", "entities is empty")
        for entity_name, raw in raw_entities.items():
            entity = check_entity(run, file, str(name), entity_name, raw, raw_entities.line_of(entity_name))
            if entity:
                entities.append(entity)
    roles = []
    if "roles" in data and run.mapping(data["roles"], file, data.line_of("roles"), "roles") is not None:
        for role_name, raw in data["roles"].items():
            role = check_role(run, file, role_name, raw, data["roles"].line_of(role_name))
            if role:
                roles.append(role)
    reports = []
    if "reports" in data and run.mapping(data["reports"], file, data.line_of("reports"), "reports") is not None:
        for report_id, raw in data["reports"].items():
            report = check_report(run, file, str(name), report_id, raw, data["reports"].line_of(report_id))
            if report:
                reports.append(report)
    webhooks = check_webhooks(run, file, data["webhooks"], data.line_of("webhooks")) if "webhooks" in data else ()
    reminders = read_reminders(run, file, data["reminders"], data.line_of("reminders")) if "reminders" in data else []
    views = check_views(run, file, str(name), data["views"], data.line_of("views")) if "views" in data else ()
    highlights = check_highlights(run, file, str(name), data["highlight"], data.line_of("highlight")) if "highlight" in data else ()
    dashboards = check_dashboards(run, file, str(name), data["dashboards"], data.line_of("dashboards")) if "dashboards" in data else ()
    return ModuleSpec(str(name), label, file, tuple(entities), given, tuple(roles), tuple(reports), webhooks,
                      tuple(reminders), views, highlights, dashboards)
