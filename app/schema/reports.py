"""Check reports: entity, group_by (fields, links, date buckets), measures, filters and chart; cross-entity
`sources:` (joined on one shared group), `derived:` measures with formats and styles, pivots (`columns:`,
`cumulative:`). Codes E701-E720 and E730-E759."""
from __future__ import annotations

import dataclasses
import re

from app.schema.loader import YList, YMap
from app.schema.fields import FIELD_NAME
from app.schema.filters import check_filter, read_filter
from app.schema.expressions import BOOLEAN, NUMBER, Expression, ExpressionError, ExpressionTypeError, infer
from app.schema.formulas import value_type
from app.schema.values import Check, did_you_mean, kind, short
from app.schema.views import STYLES
from app.schema.spec import (
    AGGREGATES,
    CHARTS,
    DATE_BUCKETS,
    FORMATS,
    DerivedSpec,
    GroupBy,
    SourceSpec,
    Label,
    Measure,
    ModuleSpec,
    ReportSpec,
    humanize,
    snake_case,
)

REPORT_KEYS = ("label", "entity", "group_by", "measures", "filter", "chart", "chart_measure", "date_field",
               "sources", "derived", "columns", "cumulative")
SOURCE_KEYS = ("entity", "key", "measures", "filter", "date_field")
DERIVED_KEYS = ("expr", "format", "style", "label")
MEASURE_KEYS = ("expr", "label", "format")
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
    if "sources" in raw:
        return _check_cross_report(run, file, module, report_id, raw, line, where, label)
    entity = raw.get("entity")
    if not isinstance(entity, str):
        run.error(file, raw.line_of("entity") if "entity" in raw else line, "E702", f"{where} needs 'entity: <Entity>' or 'sources:'")
        return None
    group_by = _read_group_by(run, file, raw, where)
    raw_measures = raw.get("measures")
    if raw_measures is None:
        raw_measures = YMap({"count": "count"}); raw_measures.line = line; raw_measures.key_lines = {"count": line}
    measures = _read_measures(run, file, where, raw_measures, raw.line_of("measures"), {g.field for g, _ in group_by})
    filters = read_filter(run, file, raw.get("filter"), raw.line_of("filter"), f"filter of {where}") if "filter" in raw else ()
    chart = _read_chart(run, file, raw, where)
    date_field = raw.get("date_field")
    if date_field is not None and run.text(date_field, file, raw.line_of("date_field"), f"date_field of {where}") is None:
        date_field = None
    derived = _read_derived(run, file, where, raw)
    columns, columns_line = _read_columns(run, file, raw, where, group_by)
    cumulative = _read_cumulative(run, file, raw, where, columns)
    chart_measures = _read_chart_measures(run, file, raw, where, [m.name for m, _ in measures] + [d.name for d, _ in derived])
    run.later.append(_report_fields_check(run, file, line, where, raw, entity, group_by, measures, filters, date_field))
    run.later.append(_pivot_and_derived_check(run, file, where, entity, measures, derived, columns, columns_line))
    return ReportSpec(
        id=report_id, module=module, label=label, entity=entity, file=file, line=line,
        group_by=tuple(g for g, _ in group_by), measures=tuple(m for m, _ in measures),
        filter=filters, chart=chart, date_field=date_field, chart_measure=chart_measures[0] if chart_measures else None,
        chart_measures=chart_measures, derived=tuple(d for d, _ in derived), columns=columns, cumulative=cumulative)


def _read_group_by(run, file, raw, where) -> list:
    group_by = []
    for item, ln in run.name_list(raw.get("group_by", YList()), file, raw.line_of("group_by"), f"group_by of {where}"):
        field, _, bucket = item.partition(":")
        if any(g.field == field for g, _ in group_by):
            run.error(file, ln, "E705", f"group_by of {where} uses '{field}' twice; group by one bucket of it")
            continue
        group_by.append((GroupBy(field, bucket or None), ln))
    return group_by


def _read_measures(run, file, where, raw_measures, line, taken: set, known: dict | None = None) -> list:
    """(Measure, line) for each `name: sum(field)` of a measures mapping; `known` (name -> where) spots clashes
    across the sources of a cross-entity report."""
    measures = []
    if run.mapping(raw_measures, file, line, f"measures of {where}") is None:
        return measures
    for name, expression in raw_measures.items():
        ln = raw_measures.line_of(name)
        if not isinstance(name, str) or not FIELD_NAME.match(name):
            run.error(file, ln, "E720", f"measure name {short(repr(name))} of {where} must be lowercase letters, digits and _")
            continue
        if name in taken:
            run.error(file, ln, "E720", f"measure '{name}' of {where} has the name of a group_by field")
            continue
        if known is not None and name in known:
            run.error(file, ln, "E734", f"measure '{name}' of {where} is already a measure of {known[name]}; measure names are shared by all sources")
            continue
        measure = _check_measure(run, file, where, name, expression, ln)
        if measure:
            measures.append((measure, ln))
            if known is not None:
                known[name] = where
    return measures


def _read_chart(run, file, raw, where) -> str:
    chart = raw.get("chart", "bar")
    if chart not in CHARTS:
        run.error(file, raw.line_of("chart"), "E714", f"chart of {where} must be one of {', '.join(CHARTS)}, got {short(repr(chart))}{did_you_mean(chart, CHARTS)}")
        chart = "table"
    return chart


def _read_chart_measures(run, file, raw, where, names: list[str]) -> tuple[str, ...]:
    """`chart_measure: cost` or `chart_measure: [budget, cost]`: measures or derived measures."""
    given = raw.get("chart_measure")
    if given is None:
        return ()
    items = list(given) if isinstance(given, list) else [given]
    chosen = []
    for item in items:
        if item not in names:
            run.error(file, raw.line_of("chart_measure"), "E715", f"chart_measure of {where} names unknown measure {short(repr(item))}{did_you_mean(item, names)}")
        else:
            chosen.append(item)
    return tuple(dict.fromkeys(chosen))


def _read_format(run, file, line, what, value) -> str | None:
    if value is None:
        return None
    if value not in FORMATS:
        run.error(file, line, "E740", f"format of {what} must be one of {', '.join(FORMATS)}, got "
                  f"{short(repr(value)) if isinstance(value, str) else kind(value)}{did_you_mean(value, FORMATS)}")
        return None
    return value


def _parse(run, file, line, what, source, code) -> Expression | None:
    text = run.text(source, file, line, what)
    if text is None:
        return None
    try:
        return Expression.of(text)
    except ExpressionError as exc:
        run.error(file, line, code, f"{what} {short(repr(text))}: {exc}")
        return None


def _read_derived(run, file, where, raw) -> list:
    """(DerivedSpec, line) for each `derived:` entry: syntax, format and style names (names typed later)."""
    derived = []
    raw_derived = raw.get("derived")
    if raw_derived is None or run.mapping(raw_derived, file, raw.line_of("derived"), f"derived of {where}") is None:
        return derived
    for name, item in raw_derived.items():
        ln = raw_derived.line_of(name)
        what = f"derived measure '{name}' of {where}"
        if not isinstance(name, str) or not FIELD_NAME.match(name):
            run.error(file, ln, "E720", f"measure name {short(repr(name))} of {where} must be lowercase letters, digits and _")
            continue
        if isinstance(item, str):  # `cost: "labour + material"`
            item = YMap({"expr": item}); item.line = ln; item.key_lines = {"expr": ln}
        item = run.mapping(item, file, ln, what)
        if item is None:
            continue
        run.keys(item, DERIVED_KEYS, file, what, "E736")
        if "expr" not in item:
            run.error(file, ln, "E736", f"{what} needs 'expr:', e.g. \"labour + material\"")
            continue
        expr = _parse(run, file, item.line_of("expr"), f"expr of {what}", item.get("expr"), "E736")
        label, _ = run.label(item.get("label"), file, item.line_of("label"), f"label of {what}", humanize(name))
        fmt = _read_format(run, file, item.line_of("format"), what, item.get("format"))
        styles = []
        raw_style = item.get("style")
        if raw_style is not None and run.mapping(raw_style, file, item.line_of("style"), f"style of {what}") is not None:
            for style, condition in raw_style.items():
                sln = raw_style.line_of(style)
                if style not in STYLES:
                    run.error(file, sln, "E741", f"style of {what} must be one of {', '.join(STYLES)}, got {short(repr(style))}{did_you_mean(style, STYLES)}")
                    continue
                parsed = _parse(run, file, sln, f"{style} condition of {what}", condition, "E742")
                if parsed is not None:
                    styles.append((style, parsed, sln))
        if expr is not None:
            styles.sort(key=lambda s: STYLES.index(s[0]))  # danger, warning, info, success: the most severe wins
            derived.append((DerivedSpec(name, expr, label, fmt, tuple((s, e) for s, e, _ in styles)),
                            (ln, item.line_of("expr"), {s: l for s, _, l in styles})))
    return derived


def _read_columns(run, file, raw, where, group_by) -> tuple[GroupBy | None, int]:
    given = raw.get("columns")
    if given is None:
        return None, 0
    line = raw.line_of("columns")
    if run.text(given, file, line, f"columns of {where}") is None:
        return None, line
    field, _, bucket = given.partition(":")
    if any(g.field == field for g, _ in group_by):
        run.error(file, line, "E743", f"columns of {where} is '{field}', which is already in group_by")
        return None, line
    return GroupBy(field, bucket or None), line


def _read_cumulative(run, file, raw, where, columns) -> bool:
    if "cumulative" not in raw:
        return False
    cumulative = run.boolean(raw.get("cumulative"), file, raw.line_of("cumulative"), f"cumulative of {where}")
    if cumulative and columns is None and "columns" not in raw:
        run.error(file, raw.line_of("cumulative"), "E744", f"cumulative of {where} needs 'columns:' (running totals run along the pivot's columns)")
        return False
    return bool(cumulative)


def _check_cross_report(run, file, module, report_id, raw, line, where, label) -> ReportSpec | None:
    """`sources:`: each source {entity, key, measures, filter}, one shared group (checked once entities are known)."""
    for key in ("entity", "measures", "filter", "columns", "date_field"):
        if key in raw:
            run.error(file, raw.line_of(key), "E730", f"{where} has 'sources:', so '{key}' belongs in each source (or is not available across sources)")
    group_by = _read_group_by(run, file, raw, where)
    if len(group_by) != 1 or group_by[0][0].bucket:
        run.error(file, raw.line_of("group_by") if "group_by" in raw else line, "E735",
                  f"group_by of {where} must name one group: the entity the sources' keys link to, e.g. [project]")
        return None
    group = group_by[0][0].field
    cumulative = run.boolean(raw.get("cumulative"), file, raw.line_of("cumulative"), f"cumulative of {where}") if "cumulative" in raw else False
    raw_sources = run.mapping(raw.get("sources"), file, raw.line_of("sources"), f"sources of {where}")
    if not raw_sources:
        if raw_sources is not None:
            run.error(file, raw.line_of("sources"), "E730", f"sources of {where} is empty")
        return None
    sources, known = [], {}
    for name, item in raw_sources.items():
        ln = raw_sources.line_of(name)
        what = f"source '{name}' of {where}"
        item = run.mapping(item, file, ln, what)
        if item is None:
            continue
        run.keys(item, SOURCE_KEYS, file, what, "E730")
        entity, key = item.get("entity"), item.get("key")
        if not isinstance(entity, str) or not isinstance(key, str):
            run.error(file, ln, "E730", f"{what} needs 'entity: <Entity>' and 'key: <field>' (id, a link to the group, or a date bucket like paid_on:month)")
            continue
        raw_measures = item.get("measures")
        if raw_measures is None:
            raw_measures = YMap({f"{name}_count": "count"}); raw_measures.line = ln; raw_measures.key_lines = {f"{name}_count": ln}
        measures = _read_measures(run, file, where, raw_measures, item.line_of("measures"), {group}, known)
        filters = read_filter(run, file, item.get("filter"), item.line_of("filter"), f"filter of {what}") if "filter" in item else ()
        date_field = item.get("date_field")
        if date_field is False:
            date_field = ""  # `date_field: false`: the date range does not apply (a budget is read whole)
        elif date_field is not None and run.text(date_field, file, item.line_of("date_field"), f"date_field of {what}") is None:
            date_field = None
        sources.append((SourceSpec(str(name), entity, key, tuple(m for m, _ in measures), filters, date_field, ln),
                        item, measures))
    derived = _read_derived(run, file, where, raw)
    for d, (ln, _, _) in derived:
        if d.name in known:
            run.error(file, ln, "E734", f"derived measure '{d.name}' of {where} has the name of a measure")
    chart = _read_chart(run, file, raw, where)
    chart_measures = _read_chart_measures(run, file, raw, where, list(known) + [d.name for d, _ in derived])
    run.later.append(_sources_check(run, file, where, (group, raw.line_of("group_by")), sources, derived,
                                    raw.line_of("cumulative") if cumulative else 0))
    return ReportSpec(
        id=report_id, module=module, label=label, entity="", file=file, line=line,
        group_by=(GroupBy(group),), measures=tuple(m for s, _, _ in sources for m in s.measures),
        chart=chart, chart_measure=chart_measures[0] if chart_measures else None, chart_measures=chart_measures,
        sources=tuple(s for s, _, _ in sources), derived=tuple(d for d, _ in derived), cumulative=bool(cumulative))


def _check_measure(run, file, where, name, expression, line) -> Measure | None:
    label, fmt = Label.plain(humanize(name)), None
    if isinstance(expression, YMap):  # {expr: sum(hours), label: {...}, format: money}
        label, _ = run.label(expression.get("label"), file, expression.line_of("label"), f"label of measure '{name}'", humanize(name))
        run.keys(expression, MEASURE_KEYS, file, f"measure '{name}' of {where}", "E703")
        fmt = _read_format(run, file, expression.line_of("format"), f"measure '{name}' of {where}", expression.get("format"))
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
    return Measure(name, function, label, tuple(arguments), fmt)


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


def _measure_type(measure, fields: dict) -> str:
    """The expression type of a measure's value: numbers, except min/max of a date."""
    if measure.function in ("min", "max") and measure.fields and measure.fields[0] in fields:
        return value_type(fields[measure.fields[0]]) or NUMBER
    return NUMBER


def _check_derived(run, file, where, derived, measure_types: dict) -> None:
    """Derived expressions read measures and other derived measures (no cycle) and give numbers; style
    conditions read the same names and give true/false."""
    by_name = {d.name: (d, lines) for d, lines in derived}
    reads = {d.name: {p[0] for p in d.expr.names if len(p) == 1 and p[0] in by_name} for d, _ in derived}
    types: dict[str, str] = dict(measure_types)
    state: dict[str, str] = {}

    def type_of_name(what):
        def type_of(path):
            if len(path) != 1 or (path[0] not in types and path[0] not in by_name):
                name = ".".join(path)
                raise _Unknown(f"{what} names unknown measure '{name}'{did_you_mean(name, list(types) + list(by_name))}")
            if path[0] not in types:
                return "any"  # a derived measure in a cycle: reported as E738
            return types[path[0]]
        return type_of

    def visit(name, trail) -> bool:
        if state.get(name) == "done":
            return True
        if state.get(name) == "busy":
            cycle = trail[trail.index(name):] + [name]
            run.error(file, by_name[name][1][0], "E738", f"derived measures of {where} depend on each other: {' -> '.join(cycle)}")
            return False
        state[name] = "busy"
        ok = all(visit(other, trail + [name]) for other in sorted(reads[name]))
        state[name] = "done"
        d, (ln, expr_line, style_lines) = by_name[name]
        what = f"derived measure '{name}' of {where}"
        try:
            result = infer(d.expr.tree, type_of_name(what))
            if result not in (NUMBER, "any", "null"):
                raise ExpressionTypeError(f"it gives {result}, not a number")
            types[name] = NUMBER
        except _Unknown as exc:
            run.error(file, expr_line, "E737", str(exc))
        except ExpressionTypeError as exc:
            run.error(file, expr_line, "E739", f"{what}: {exc}")
        return ok

    ok = True
    for name in by_name:
        ok = visit(name, []) and ok
    for d, (ln, _, style_lines) in derived:
        for style, condition in d.styles:
            what = f"{style} condition of derived measure '{d.name}' of {where}"
            try:
                result = infer(condition.tree, type_of_name(what))
                if result not in (BOOLEAN, "any", "null"):
                    raise ExpressionTypeError(f"it gives {result}, not true/false")
            except _Unknown as exc:
                run.error(file, style_lines[style], "E737", str(exc))
            except ExpressionTypeError as exc:
                run.error(file, style_lines[style], "E742", f"{what}: {exc}")


def _pivot_and_derived_check(run, file, where, entity_name, measures, derived, columns, columns_line):
    def check(entities):
        entity = entities.get(entity_name)
        if entity is None:
            return  # E704, reported by _report_fields_check
        fields = {f.name: f for f in entity.fields}
        if columns is not None:
            f = fields.get(columns.field)
            if f is None:
                run.error(file, columns_line, "E743", f"columns of {where} names unknown field '{columns.field}' of {entity_name}{did_you_mean(columns.field, fields)}")
            elif f.kind.is_moment:
                if columns.bucket not in DATE_BUCKETS:
                    run.error(file, columns_line, "E743", f"columns '{columns.field}' of {where} needs a bucket: {', '.join(f'{columns.field}:{b}' for b in DATE_BUCKETS)}")
            elif columns.bucket or f.type != "enum":
                run.error(file, columns_line, "E743", f"columns of {where} must be a date bucket (like {columns.field}:month) or an enum field; '{columns.field}' is {f.type}")
        _check_derived(run, file, where, derived, {m.name: _measure_type(m, fields) for m, _ in measures})
    return check


def _sources_check(run, file, where, group, sources, derived, cumulative_line):
    """Each source's entity, key (id of the group entity, or a link to it: one group entity for all; or a date
    bucket of each source: one bucket for all), fields."""
    group, group_line = group

    def check(entities):
        group_entity, measure_types, buckets = None, {}, {}
        for source, item, measures in sources:
            what = f"source '{source.name}' of {where}"
            entity = entities.get(source.entity)
            if entity is None:
                run.error(file, item.line_of("entity"), "E731", f"{what} names unknown entity '{source.entity}'{did_you_mean(source.entity, entities)}")
                continue
            fields = {f.name: f for f in entity.fields}
            target = None
            key_field, bucket = source.key_field, source.key_bucket
            if bucket is not None or (key_field in fields and fields[key_field].kind.is_moment):
                f = fields.get(key_field)
                if f is None:
                    run.error(file, item.line_of("key"), "E732", f"key of {what} names unknown field '{key_field}' of {entity.name}{did_you_mean(key_field, fields)}")
                elif not f.kind.is_moment or bucket not in DATE_BUCKETS:
                    run.error(file, item.line_of("key"), "E733", f"key of {what} must be id, a link to the group's entity or a date bucket ({', '.join(f'{key_field}:{b}' for b in DATE_BUCKETS)})")
                else:
                    buckets.setdefault(bucket, source.name)
                    if len(buckets) > 1:
                        first, other = next(iter(buckets.items()))
                        run.error(file, item.line_of("key"), "E733", f"key of {what} is by {bucket}, but source '{other}' is by {first}; all sources need one bucket")
            elif source.key == "id":
                target = entity.name
            elif source.key not in fields:
                run.error(file, item.line_of("key"), "E732", f"key of {what} names unknown field '{source.key}' of {entity.name}{did_you_mean(source.key, list(fields) + ['id'])}")
            else:
                f = fields[source.key]
                if not f.stores_link or f.kind.to_users or f.kind.multiple:
                    run.error(file, item.line_of("key"), "E733", f"key of {what} must be id or a link to the group's entity; '{source.key}' is {f.type}")
                else:
                    target = f.to
            if target is not None:
                if group_entity is None:
                    group_entity = (target, source.name)
                elif target != group_entity[0]:
                    run.error(file, item.line_of("key"), "E733", f"key of {what} leads to {target}, but source '{group_entity[1]}' leads to {group_entity[0]}; all keys must link to one group entity")
            for measure, ln in measures:
                measure_types[measure.name] = _measure_type(measure, fields)
                for name in measure.fields:
                    f = fields.get(name)
                    if f is None:
                        run.error(file, ln, "E732", f"measure '{measure.name}' of {what} names unknown field '{name}' of {entity.name}{did_you_mean(name, fields)}")
                    elif measure.function in ("sum", "avg") and not f.kind.numeric:
                        run.error(file, ln, "E713", f"{measure.function}({name}) in {what} needs a number field, '{name}' is {f.type}")
                    elif measure.function == "avg_hours_between" and not f.kind.is_moment:
                        run.error(file, ln, "E713", f"avg_hours_between in {what} needs date or datetime fields, '{name}' is {f.type}")
                    elif measure.function in ("min", "max") and not f.kind.ordered:
                        run.error(file, ln, "E713", f"{measure.function}({name}) in {what} needs a number or date field")
            check_filter(run, file, source.line, f"filter of {what}", entities, entity.name, source.filter)
            if source.date_field:
                f = fields.get(source.date_field)
                if f is None or not f.kind.is_moment:
                    run.error(file, item.line_of("date_field"), "E718", f"date_field of {what} must be a date or datetime field of {entity.name}")
        if buckets and group_entity is not None:
            run.error(file, group_line, "E733", f"the sources of {where} mix date keys and keys linking to {group_entity[0]}; use one kind")
        elif cumulative_line and not buckets:
            run.error(file, cumulative_line, "E744", f"cumulative of {where} needs date keys (like paid_on:month): running totals run down the months")
        elif group_entity is not None:
            keys = {s.key for s, _, _ in sources if s.key != "id"}
            if group not in keys and group != snake_case(group_entity[0]):
                run.error(file, group_line, "E735", f"group_by of {where} is '{group}', but the keys link to {group_entity[0]}: name it {snake_case(group_entity[0])}")
        _check_derived(run, file, where, derived, measure_types)
    return check


def group_entity(report: ReportSpec, entities: dict) -> str:
    """The entity a cross-entity report's keys link to (the checker made sure all agree)."""
    source = report.sources[0]
    if report.time_bucket:
        return source.entity  # date keys: no group entity; the first source's stands in (drill, labels)
    return source.entity if source.key == "id" else entities[source.entity].field(source.key).to


def with_group_entities(modules: list[ModuleSpec], entities: dict) -> list[ModuleSpec]:
    """Cross-entity reports get `entity` = their group entity, once every entity is known."""
    def resolved(report):
        try:
            return dataclasses.replace(report, entity=group_entity(report, entities)) if report.sources else report
        except (KeyError, AttributeError):  # a bad source: reported already, and no spec is made
            return report
    return [dataclasses.replace(m, reports=tuple(resolved(r) for r in m.reports)) if any(r.sources for r in m.reports) else m
            for m in modules]


class _Unknown(KeyError):
    def __str__(self) -> str:
        return self.args[0]


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
