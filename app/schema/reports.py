"""Check reports: entity, group_by (fields, links, date buckets), measures, filters and chart."""
from __future__ import annotations

import re

from app.schema.loader import YList, YMap
from app.schema.fields import FIELD_NAME
from app.schema.filters import check_filter, read_filter
from app.schema.values import Check, did_you_mean, short
from app.schema.spec import (
    AGGREGATES,
    CHARTS,
    DATE_BUCKETS,
    GroupBy,
    Label,
    Measure,
    ModuleSpec,
    ReportSpec,
    humanize,
)

REPORT_KEYS = ("label", "entity", "group_by", "measures", "filter", "chart", "chart_measure", "date_field")
REPORT_ID = re.compile(r"^[a-z][a-z0-9_]{0,59}$")

MEASURE_SYNTAX = re.compile(r"^(\w+)(?:\(\s*([\w\s,]*)\))?$")


def check_report(run: Check, file, module, report_id, raw, line) -> ReportSpec | None:
    if not isinstance(report_id, str) or not REPORT_ID.match(report_id):
        run.error(file, line, "E701", f"report id {short(repr(report_id))} must be lowercase letters, digits and _ (it is part of the URL)")
        return None
    raw = run.mapping(raw, file, line, f"report '{report_id}'")
    if raw is None:
        return None
    where = f"report '{report_id}'"
    run.keys(raw, REPORT_KEYS, file, where, "E703")
    label, _ = run.label(raw.get("label"), file, raw.line_of("label"), f"label of {where}", humanize(report_id))
    entity = raw.get("entity")
    if not isinstance(entity, str):
        run.error(file, raw.line_of("entity") if "entity" in raw else line, "E702", f"{where} needs 'entity: <Entity>'")
        return None
    group_by = []
    for item, ln in run.name_list(raw.get("group_by", YList()), file, raw.line_of("group_by"), f"group_by of {where}"):
        field, _, bucket = item.partition(":")
        if any(g.field == field for g, _ in group_by):
            run.error(file, ln, "E705", f"group_by of {where} uses '{field}' twice; group by one bucket of it")
            continue
        group_by.append((GroupBy(field, bucket or None), ln))
    measures = []
    raw_measures = raw.get("measures")
    if raw_measures is None:
        raw_measures = YMap({"count": "count"}); raw_measures.line = line; raw_measures.key_lines = {"count": line}
    if run.mapping(raw_measures, file, raw.line_of("measures"), f"measures of {where}") is not None:
        for name, expression in raw_measures.items():
            if not isinstance(name, str) or not FIELD_NAME.match(name):
                run.error(file, raw_measures.line_of(name), "E720", f"measure name {short(repr(name))} of {where} must be lowercase letters, digits and _")
                continue
            if any(g.field == name for g, _ in group_by):
                run.error(file, raw_measures.line_of(name), "E720", f"measure '{name}' of {where} has the name of a group_by field")
                continue
            measure = _check_measure(run, file, where, name, expression, raw_measures.line_of(name))
            if measure:
                measures.append((measure, raw_measures.line_of(name)))
    filters = read_filter(run, file, raw.get("filter"), raw.line_of("filter"), f"filter of {where}") if "filter" in raw else ()
    chart = raw.get("chart", "bar")
    if chart not in CHARTS:
        run.error(file, raw.line_of("chart"), "E714", f"chart of {where} must be one of {', '.join(CHARTS)}, got {short(repr(chart))}{did_you_mean(chart, CHARTS)}")
        chart = "table"
    date_field = raw.get("date_field")
    if date_field is not None and run.text(date_field, file, raw.line_of("date_field"), f"date_field of {where}") is None:
        date_field = None
    chart_measure = raw.get("chart_measure")
    if chart_measure is not None and chart_measure not in [m.name for m, _ in measures]:
        run.error(file, raw.line_of("chart_measure"), "E715", f"chart_measure of {where} names unknown measure {short(repr(chart_measure))}{did_you_mean(chart_measure, [m.name for m, _ in measures])}")
    run.later.append(_report_fields_check(run, file, line, where, raw, entity, group_by, measures, filters, date_field))
    return ReportSpec(
        id=report_id, module=module, label=label, entity=entity, file=file, line=line,
        group_by=tuple(g for g, _ in group_by), measures=tuple(m for m, _ in measures),
        filter=filters, chart=chart, date_field=date_field, chart_measure=chart_measure)


def _check_measure(run, file, where, name, expression, line) -> Measure | None:
    label = Label.plain(humanize(name))
    if isinstance(expression, YMap):  # {expr: sum(hours), label: {...}}
        label, _ = run.label(expression.get("label"), file, expression.line_of("label"), f"label of measure '{name}'", humanize(name))
        run.keys(expression, ("expr", "label"), file, f"measure '{name}' of {where}", "E703")
        expression = expression.get("expr")
    match = MEASURE_SYNTAX.match(expression.strip()) if isinstance(expression, str) else None
    if not match:
        run.error(file, line, "E710", f"measure '{name}' of {where} must look like count, sum(field) or avg(field), got {expression!r}")
        return None
    function, arguments = match.group(1), [a.strip() for a in (match.group(2) or "").split(",") if a.strip()]
    if function not in AGGREGATES:
        run.error(file, line, "E711", f"unknown aggregate '{function}' in {where}{did_you_mean(function, AGGREGATES)}; use {', '.join(AGGREGATES)}")
        return None
    wanted = {"count": (0, 1), "avg_hours_between": (2, 2)}.get(function, (1, 1))
    if not wanted[0] <= len(arguments) <= wanted[1]:
        run.error(file, line, "E712", f"{function} in measure '{name}' of {where} takes {wanted[1]} field(s), got {len(arguments)}")
        return None
    return Measure(name, function, label, tuple(arguments))


def _report_fields_check(run, file, line, where, raw, entity_name, group_by, measures, filters, date_field):
    def check(entities):
        entity = entities.get(entity_name)
        if entity is None:
            run.error(file, raw.line_of("entity"), "E704", f"{where} names unknown entity '{entity_name}'{did_you_mean(entity_name, entities)}")
            return
        fields = {f.name: f for f in entity.fields}

        def known(name, ln, what):
            if name in fields:
                return fields[name]
            run.error(file, ln, "E706", f"{what} of {where} names unknown field '{name}' of {entity_name}{did_you_mean(name, fields)}")
            return None

        for group, ln in group_by:
            f = known(group.field, ln, "group_by")
            if f is None:
                continue
            if f.kind.is_moment:
                if group.bucket not in DATE_BUCKETS:
                    run.error(file, ln, "E707", f"group_by '{group.field}' of {where} needs a bucket: {', '.join(f'{group.field}:{b}' for b in DATE_BUCKETS)}")
            elif group.bucket:
                run.error(file, ln, "E708", f"group_by '{group.field}:{group.bucket}' of {where}: buckets only apply to date fields")
            elif not f.kind.groupable:
                run.error(file, ln, "E709", f"{where} cannot group by '{group.field}' (a {f.type} field)")
        for measure, ln in measures:
            for name in measure.fields:
                f = known(name, ln, f"measure '{measure.name}'")
                if f is None:
                    continue
                numeric = f.kind.numeric
                if measure.function in ("sum", "avg") and not numeric:
                    run.error(file, ln, "E713", f"{measure.function}({name}) in {where} needs a number field, '{name}' is {f.type}")
                elif measure.function == "avg_hours_between" and not f.kind.is_moment:
                    run.error(file, ln, "E713", f"avg_hours_between in {where} needs date or datetime fields, '{name}' is {f.type}")
                elif measure.function in ("min", "max") and not f.kind.ordered:
                    run.error(file, ln, "E713", f"{measure.function}({name}) in {where} needs a number or date field")
        check_filter(run, file, line, f"filter of {where}", entities, entity_name, filters)
        if date_field is not None:
            f = known(date_field, raw.line_of("date_field"), "date_field")
            if f is not None and not f.kind.is_moment:
                run.error(file, raw.line_of("date_field"), "E718", f"date_field of {where} must be a date or datetime field")
    return check


def check_report_ids(run: Check, modules: list[ModuleSpec], roles) -> None:
    seen: dict[str, ReportSpec] = {}
    for module in modules:
        for report in module.reports:
            if report.id in seen:
                run.error(report.file, report.line, "E719", f"report '{report.id}' is already defined in {seen[report.id].file}")
            seen[report.id] = report
    for module in modules:
        for role in module.roles:
            for report_id in role.reports:
                if report_id not in seen:
                    run.error(role.file, role.line, "E619", f"role '{role.name}' names unknown report '{report_id}'{did_you_mean(report_id, seen)}")
