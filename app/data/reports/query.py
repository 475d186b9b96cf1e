"""Build and run a report's one SQL statement, with the viewer's row scope and hidden fields.

- one entity: one GROUP BY;
- a pivot (`columns:`): one GROUP BY (row groups, column bucket), pivoted here with row, column and grand totals;
- cross-entity (`sources:`): each source grouped by its key (its own row scope, filter and date range), the
  groups stacked with UNION ALL and grouped again by key: still one statement.
Derived measures and styles are evaluated here, per row (and pivot cell) and on the totals; each row and cell
gets a drill-down URL (app/data/reports/drill.py).
"""
from __future__ import annotations

import datetime as dt
import re
from operator import itemgetter
from dataclasses import dataclass, field
from decimal import Decimal

from flask_babel import lazy_gettext as _l
from sqlalchemy import Float, Integer, Numeric, cast, distinct, func, literal, null, select, union_all
from sqlalchemy.types import NullType
from sqlalchemy.orm import aliased

from app.fieldtypes import type_of
from app.fieldtypes.base import record_id
from app.i18n import lazy
from app.rules.access import Viewer
from app.rules.filters import context_for, filter_clause
from app.rules.records import FieldError
from app.data.reports.drill import UPTO, Drill, bucket_range
from app.schema.spec import EntitySpec, FieldSpec, GroupBy, PortalSpec, ReportSpec


class ReportRefused(Exception):
    """The viewer may not run this report as asked (a hidden field, a bad parameter)."""


@dataclass(frozen=True)
class ReportParams:
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    filters: tuple[tuple[str, object], ...] = ()  # group-by field -> raw value chosen by the user


@dataclass
class ReportColumn:
    key: str
    label: object  # str or lazy string
    kind: str  # "group", "measure" or "derived" (a measure computed from the others)
    format: str | None = None  # None, "money", "percent", "number", "duration"


@dataclass
class ReportResult:
    report: ReportSpec
    columns: list[ReportColumn]
    rows: list[dict] = field(default_factory=list)  # group key -> {"value", "label"}, measure -> number
    totals: dict = field(default_factory=dict)
    date_field: str | None = None
    pivot_columns: list = field(default_factory=list)  # [{"key": column value, "label": its label}] of a pivot


def date_field_of(report: ReportSpec, entity: EntitySpec) -> str | None:
    """The field the user's date range applies to: as declared, else the grouped date, else the first date."""
    if report.date_field:
        return report.date_field
    for group in report.group_by:
        if group.bucket:
            return group.field
    return next((f.name for f in entity.fields if type_of(f).is_moment), None)


def bucket_expression(column, bucket: str, dialect: str):
    """A text key per date bucket, the same on SQLite and PostgreSQL: 2026-11-22, 2026-11-16 (Monday), 2026-11, 2026-Q4, 2026."""
    if dialect == "postgresql":
        if bucket == "week":
            return func.to_char(func.date_trunc("week", column), "YYYY-MM-DD")
        pattern = {"day": "YYYY-MM-DD", "month": "YYYY-MM", "quarter": 'YYYY-"Q"Q', "year": "YYYY"}[bucket]
        return func.to_char(column, pattern)
    if bucket == "week":
        return func.date(column, "weekday 0", "-6 days")
    if bucket == "quarter":
        quarter = (cast(func.strftime("%m", column), Integer) + 2) / 3
        return func.strftime("%Y", column).concat("-Q").concat(cast(quarter, Integer))
    pattern = {"day": "%Y-%m-%d", "month": "%Y-%m", "year": "%Y"}[bucket]
    return func.strftime(pattern, column)


def hours_between(start, end, dialect: str):
    if dialect == "postgresql":
        return func.extract("epoch", end - start) / 3600.0
    return (func.julianday(end) - func.julianday(start)) * 24.0


class ReportQuery:
    """Turns a ReportSpec + parameters + viewer into one SELECT ... GROUP BY and runs it."""

    def __init__(self, portal: PortalSpec, models: dict, session, viewer: Viewer) -> None:
        self.portal, self.models, self.session, self.viewer = portal, models, session, viewer

    def run(self, report: ReportSpec, params: ReportParams = ReportParams()) -> ReportResult:
        if report.sources:
            return self._run_cross(report, params)
        statement, columns, entity = self.statement(report, params)
        result = ReportResult(report, columns, date_field=date_field_of(report, entity))
        cursor = self.session.connection().execute(statement)  # Core: no ORM row machinery for plain tuples
        names = list(cursor.keys())
        rows = cursor.fetchall()  # one driver call: iterating the result fetches (in Python) row by row
        floats = {c.name for c in statement.selected_columns if c.type._type_affinity is Float}  # rounded() in SQL
        shape = self._row_shape(entity, columns, names, floats)
        groups = [(g.field, g.bucket) for g in report.group_by]
        drill = self._drill(report, entity, report.filter, params, result.date_field, groups)
        if report.columns:
            column_bucket = report.columns.bucket
            if report.cumulative and column_bucket:
                column_bucket = UPTO + column_bucket  # a running total's cell opens every record up to its month
            cell_drill = self._drill(report, entity, report.filter, params, result.date_field,
                                     groups + [(report.columns.field, column_bucket)])
            _pivot(self, report, entity, result, rows, names, shape, cell_drill, drill)
        else:
            group_keys = [c.key for c in columns if c.kind == "group"]
            url = drill.url
            out = result.rows = []
            append = out.append
            if len(group_keys) == 1:  # most reports: the drill URL from the one group's value, no list per row
                key = group_keys[0]
                for values in rows:
                    row = {name: make(values) for name, make in shape}
                    row["drill"] = url((row[key]["value"],))
                    append(row)
            else:
                for values in rows:
                    row = {name: make(values) for name, make in shape}
                    row["drill"] = url([row[k]["value"] for k in group_keys])
                    append(row)
            result.totals = _totals(report, columns, out)
        _add_derived(report, result)
        return result

    def _drill(self, report, entity, conditions, params: ReportParams, date_field, varying):
        """The Drill of the records behind the rows: fixed filter, date range, chosen group values."""
        fixed = {}
        if date_field and (params.date_from or params.date_to):
            rng = {}
            if params.date_from:
                rng["gte"] = params.date_from.isoformat()
            if params.date_to and params.date_to < dt.date.max:
                rng["lt"] = (params.date_to + dt.timedelta(days=1)).isoformat()
            if rng:
                fixed[date_field] = rng
        for name, raw in params.filters:
            if any(name == v for v, _ in varying):
                continue  # the row's own value says it
            fixed[name] = raw
        return Drill(entity.snake, conditions, fixed, varying)

    # -- cross-entity reports ---------------------------------------------------------------------------
    def _run_cross(self, report: ReportSpec, params: ReportParams) -> ReportResult:
        statement, columns, group = self.cross_statement(report, params)
        # the page offers a date range when any source has a date it applies to
        dates = [d for s in report.sources if (d := _source_date_field(s, self.portal.entity(s.entity)))]
        result = ReportResult(report, columns, date_field=dates[0] if dates else None)
        cursor = self.session.connection().execute(statement)
        position = {name: i for i, name in enumerate(cursor.keys())}
        rows = cursor.fetchall()
        at, title_at = position["g"], position.get("t")
        measures = [(c.key, position[f"m_{c.key}"]) for c in columns if c.kind == "measure"]
        label = (lambda raw, title: _display_group(group, raw, title))
        # each measure's cell drills into its own source's records (a source keyed by id has no list to open);
        # the row's "drill" is the first such source's
        drills, measure_drill = [], {}
        for source in report.sources:
            if source.key == "id":
                continue
            entity = self.portal.entity(source.entity)
            # the chosen group (f_<group>) is the row's own key value: not carried as a field of the source
            source_drill = self._drill(report, entity, source.filter, ReportParams(params.date_from, params.date_to),
                                       _source_date_field(source, entity),
                                       [(source.key_field, (UPTO if report.cumulative else "") + source.key_bucket
                                         if source.key_bucket else None)])
            drills.append(source_drill)
            measure_drill.update((m.name, source_drill) for m in source.measures if any(c.key == m.name for c in columns))
        drill = drills[0] if drills else None
        key_name = report.group_by[0].field
        running = {m.name: 0 for m in report.measures if report.cumulative and m.function in ("count", "sum")}
        out = []
        for values in rows:
            raw = values[at]
            raw = None if raw == NO_KEY else raw
            row = {key_name: {"value": raw, "label": label(raw, values[title_at] if title_at is not None else None)}}
            for name, i in measures:
                row[name] = _number(values[i])
            if drill is not None:
                urls = {d: d.url([raw]) for d in drills}
                row["drill"] = urls[drill]
                row["drills"] = {name: urls[d] for name, d in measure_drill.items()}
            out.append(row)
        result.rows = out
        result.totals = _totals(report, columns, out)
        if running:  # running totals down the rows (months in order); the totals row is the last running total
            for row in out:
                for name in running:
                    running[name] = row[name] = _number(running[name] + (row[name] or 0))
            chosen = dict(params.filters).get(key_name)
            if chosen is not None:  # one bucket asked for: its running total (and its drill: every record up to it)
                result.rows = [row for row in out if row[key_name]["value"] == chosen]
                result.totals = {name: (result.rows[0][name] if result.rows else 0) for name in result.totals}
        _add_derived(report, result)
        return result

    def cross_statement(self, report: ReportSpec, params: ReportParams):
        """Each source grouped by its key (scope, filter, date range), stacked and grouped again by key."""
        group = self.portal.entity(report.entity)
        dialect = self.session.get_bind().dialect.name
        chosen = dict(params.filters).get(report.group_by[0].field)
        group_label = _BUCKET_LABELS[report.time_bucket] if report.time_bucket else lazy(group.label)
        arms, columns = [], [ReportColumn(report.group_by[0].field, group_label, "group")]
        measure_columns = []
        for source in report.sources:
            if not self.viewer.may_read(source.entity):
                raise ReportRefused(_l("This report reads records you may not see."))
            entity, model = self.portal.entity(source.entity), self.models[source.entity]
            unreadable = self.viewer.unreadable(entity.name)
            date_field = _source_date_field(source, entity)
            used = {c.path[0] for c in source.filter} | ({source.key_field} - {"id"})
            if (params.date_from or params.date_to) and date_field:
                used.add(date_field)
            if used & unreadable:
                raise ReportRefused(_l("This report uses fields that are hidden from you."))
            key_column = model.id if source.key == "id" else getattr(model, entity.field(source.key_field).column_name)
            if source.key_bucket:  # sources meeting on months (weeks…) of their own dates
                key = bucket_expression(key_column, source.key_bucket, dialect)
            else:  # an empty link is its own group ("(none)"), joined through a key no record has
                key = key_column if source.key == "id" else func.coalesce(key_column, NO_KEY)
            measures = []
            for measure in source.measures:
                if set(measure.fields) & unreadable:
                    continue
                measures.append(self._measure_expr(model, entity, measure, dialect).label(f"m_{measure.name}"))
                measure_columns.append((source.name, measure))
                columns.append(ReportColumn(measure.name, lazy(measure.label), "measure", measure.format))
            conditions = self._source_conditions(source, entity, model, params, date_field)
            if chosen is not None and report.time_bucket:  # a bucket's text key, as the rows carry it
                # running totals: every bucket up to the chosen one counts (the other rows are dropped after)
                wanted = bucket_key(report, chosen)
                conditions.append(key <= wanted if report.cumulative else key == wanted)
            elif chosen is not None:
                try:
                    value = None if str(chosen).strip() == "" else record_id(chosen)  # past 32 bits: no overflow
                except ValueError:
                    raise ReportRefused(_l("Not a valid value for %(field)s.", field=report.group_by[0].field)) from None
                conditions.append(key_column.is_(None) if value is None else key_column == value)
            arms.append((model, key, {m.name: m for m in measures}, conditions))
        # each source grouped by its key, stacked (UNION ALL, the other sources' measures null) and grouped
        # again by key: one row per group, linear in the groups on both databases (a join of grouped
        # subqueries on their keys is a nested loop on SQLite)
        names = [f"m_{measure.name}" for _, measure in measure_columns]
        # typed nulls: PostgreSQL types a UNION column from its first arms (an untyped null would be text)
        types = {name: (expr.type if not isinstance(expr.type, NullType) else Float()) for _, _, own, _ in arms
                 for name, expr in own.items()}
        stacked = union_all(*(
            select(key.label("k"), *(own[name] if name in own else cast(null(), types[name]).label(name) for name in names))
            .select_from(model).where(*conditions).group_by(key)
            for model, key, own, conditions in arms)).subquery("stacked")
        values = []
        for (_, measure), name in zip(measure_columns, names):
            value = func.max(stacked.c[name])  # one row per source and key: its value
            if measure.function in ("count", "count_distinct", "sum"):
                value = func.coalesce(value, 0)  # a source with no records for the group counts 0
            values.append(value.label(name))
        grouped = select(stacked.c.k.label("g"), *values).group_by(stacked.c.k).subquery("grouped")
        if report.time_bucket:  # text keys in time order; records without a date last
            return select(*grouped.c).order_by(grouped.c.g.is_(None), grouped.c.g), columns, group
        target = aliased(self.models[group.name])
        title = getattr(target, group.title) if group.title else cast(target.id, Integer)
        statement = (select(*grouped.c, title.label("t")).select_from(grouped)
                     .outerjoin(target, grouped.c.g == target.id).order_by(grouped.c.g))
        return statement, columns, group

    def _source_conditions(self, source, entity, model, params: ReportParams, date_field) -> list:
        conditions = [filter_clause(self.portal, self.models, entity.name, source.filter, context_for(self.viewer.user_id))]
        conditions += _date_conditions(entity, model, params, date_field)
        scope = self.viewer.row_clause(entity.name, self.models)
        if scope is not None:
            conditions.append(scope)
        return conditions

    def statement(self, report: ReportSpec, params: ReportParams):
        entity = self.portal.entity(report.entity)
        unreadable = self.viewer.unreadable(entity.name)
        used_for_grouping = {g.field for g in report.group_by} | {c.path[0] for c in report.filter} | {n for n, _ in params.filters}
        if report.columns:
            used_for_grouping.add(report.columns.field)
        date_field = date_field_of(report, entity)
        if (params.date_from or params.date_to) and date_field:
            used_for_grouping.add(date_field)
        if used_for_grouping & unreadable:
            raise ReportRefused(_l("This report uses fields that are hidden from you."))
        model = self.models[entity.name]
        dialect = self.session.get_bind().dialect.name
        # aggregate on the entity's own columns first, then join link titles onto the (few) groups:
        # the GROUP BY key stays narrow and the planner can estimate it
        keys, columns = [], []
        for group in report.group_by:
            f = entity.field(group.field)
            column = getattr(model, f.column_name)
            key = bucket_expression(column, group.bucket, dialect) if group.bucket else column
            keys.append(key.label(f"g_{f.name}"))
            columns.append(ReportColumn(group.field, _group_label(f, group), "group"))
        if report.columns:  # the pivot's column bucket: one more GROUP BY key
            f = entity.field(report.columns.field)
            column = getattr(model, f.column_name)
            key = bucket_expression(column, report.columns.bucket, dialect) if report.columns.bucket else column
            keys.append(key.label(f"c_{f.name}"))
        measures = []
        for measure in report.measures:
            if set(measure.fields) & unreadable:
                continue  # a measure over a hidden field is left out for this viewer
            measures.append(self._measure_expr(model, entity, measure, dialect).label(f"m_{measure.name}"))
            if report.columns and measure.function in ("avg", "avg_hours_between"):
                # a pivot's row and column totals of an average: the sum and count it came from
                fields = [getattr(model, entity.field(n).column_name) for n in measure.fields]
                inner = fields[0] if measure.function == "avg" else hours_between(fields[0], fields[1], dialect)
                measures += [func.sum(inner).label(f"s_{measure.name}"), func.count(inner).label(f"n_{measure.name}")]
            columns.append(ReportColumn(measure.name, lazy(measure.label), "measure", measure.format))
        grouped = select(*keys, *measures).select_from(model)
        grouped = grouped.where(*self._conditions(report, entity, model, params, date_field))
        if keys:
            grouped = grouped.group_by(*keys)
        grouped = grouped.subquery("grouped")
        averages = {f"m_{m.name}" for m in report.measures if m.function in ("avg", "avg_hours_between")}
        statement = select(*(rounded(c, dialect, c.name in averages) if c.name.startswith("m_") else c for c in grouped.c))
        for group in report.group_by:
            title = self._title_join(entity.field(group.field), grouped.c[f"g_{group.field}"])
            if title is not None:
                target, condition, expression = title
                statement = statement.outerjoin(target, condition).add_columns(expression.label(f"t_{group.field}"))
        order = [grouped.c[f"g_{g.field}"] for g in report.group_by]
        if report.columns:
            order.append(grouped.c[f"c_{report.columns.field}"])
        return (statement.order_by(*order) if order else statement), columns, entity

    def _title_join(self, f: FieldSpec, key):
        """(table, join condition, title expression) for link and user groups, else None."""
        ftype = type_of(f)
        if not ftype.is_relation or ftype.multiple:
            return None
        target = aliased(ftype.target_model(f, self.models))
        if ftype.to_users:
            return target, key == target.id, target.first_name.concat(" ").concat(target.last_name)
        title_name = self.portal.entity(f.to).title
        return target, key == target.id, getattr(target, title_name) if title_name else cast(target.id, Integer)

    def _measure_expr(self, model, entity: EntitySpec, measure, dialect: str):
        columns = [getattr(model, entity.field(name).column_name) for name in measure.fields]
        if measure.function == "count":
            return func.count(columns[0]) if columns else func.count()
        if measure.function == "count_distinct":
            return func.count(distinct(columns[0]))
        if measure.function == "avg_hours_between":
            return func.avg(hours_between(columns[0], columns[1], dialect))
        return getattr(func, measure.function)(columns[0])

    def _conditions(self, report, entity, model, params: ReportParams, date_field) -> list:
        conditions = [filter_clause(self.portal, self.models, entity.name, report.filter, context_for(self.viewer.user_id))]
        for name, raw in params.filters:
            f = entity.field(name)
            column = getattr(model, f.column_name)
            try:
                value = type_of(f).report_value(f, raw)
            except (FieldError, ValueError):
                raise ReportRefused(_l("Not a valid value for %(field)s.", field=name)) from None
            conditions.append(column.is_(None) if value is None else column == value)
        conditions += _date_conditions(entity, model, params, date_field)
        scope = self.viewer.row_clause(entity.name, self.models)
        if scope is not None:
            conditions.append(scope)
        return conditions or [literal(True)]

    def _row_shape(self, entity, columns, names: list[str], floats=frozenset()) -> list:
        """(key, values -> cell) per report column, resolved once per result rather than once per row."""
        position = {name: i for i, name in enumerate(names)}
        shape = []
        for column in columns:
            if column.kind == "group":
                f = entity.field(column.key)
                at, title_at = position[f"g_{f.name}"], position.get(f"t_{f.name}")
                # resolved once: the type's labeller and the "(none)" text (this runs per group, 2,000 times)
                none, label_of = str(_l("(none)")), type_of(f).report_label
                shape.append((column.key, lambda v, f=f, at=at, t=title_at, none=none, label_of=label_of: {
                    "value": (raw := v[at]),
                    "label": none if raw is None else label_of(f, raw, v[t] if t is not None else None)}))
            elif f"m_{column.key}" in floats:
                shape.append((column.key, itemgetter(position[f"m_{column.key}"])))  # a float or None already
            else:
                at = position[f"m_{column.key}"]
                shape.append((column.key, lambda v, at=at: _number(v[at])))
        return shape


_BUCKET_LABELS = {"day": _l("Day"), "week": _l("Week"), "month": _l("Month"), "quarter": _l("Quarter"), "year": _l("Year")}

def rounded(column, dialect: str, average: bool = False):
    """A decimal or float measure rounded to cents in SQL (on the few grouped rows) and read as a float: the
    driver hands Python plain floats, with no Decimal per value and no Python round() per cell (a 2,000-group
    report has 6,000 of them). Counts, integer sums and dates pass unchanged."""
    if not average and (not isinstance(column.type, Numeric) or column.type._type_affinity is Integer):
        return column
    inner = cast(column, Numeric) if dialect == "postgresql" else column  # PostgreSQL rounds numeric, not double
    return cast(func.round(inner, 2), Float).label(column.name)


NO_KEY = -1  # the key of a cross-entity report's "(none)" group: no record has this id


BUCKET_KEYS = {"day": r"\d{4}-\d{2}-\d{2}", "week": r"\d{4}-\d{2}-\d{2}", "month": r"\d{4}-\d{2}",
               "quarter": r"\d{4}-Q[1-4]", "year": r"\d{4}"}


def bucket_key(report: ReportSpec, raw: str) -> str:
    """A chosen date bucket (`f_month=2026-03`) as bucket_expression writes it, else ReportRefused: junk never
    reaches the database (a NUL is an error on PostgreSQL)."""
    try:
        if not re.fullmatch(BUCKET_KEYS[report.time_bucket], raw, flags=re.ASCII):
            raise ValueError(raw)
        bucket_range(report.time_bucket, raw)  # a real date: no month 13
    except ValueError:
        raise ReportRefused(_l("Not a valid value for %(field)s.", field=report.group_by[0].field)) from None
    return raw


def _source_date_field(source, entity: EntitySpec) -> str | None:
    if source.date_field is not None:
        return source.date_field or None  # "": `date_field: false`, no date range on this source
    return next((f.name for f in entity.fields if type_of(f).is_moment), None)


def _date_conditions(entity, model, params: ReportParams, date_field) -> list:
    """The user's date range on `date_field` (a whole day at each end; a datetime from midnight)."""
    conditions = []
    if date_field:
        column = getattr(model, entity.field(date_field).column_name)
        is_datetime = type_of(entity.field(date_field)).has_time
        if params.date_from:
            start = dt.datetime.combine(params.date_from, dt.time(0)) if is_datetime else params.date_from
            conditions.append(column >= start)
        if params.date_to and params.date_to < dt.date.max:  # up to 9999-12-31 means no end
            end = params.date_to + dt.timedelta(days=1)
            end = dt.datetime.combine(end, dt.time(0)) if is_datetime else end
            conditions.append(column < end)
    return conditions


def _display_group(entity: EntitySpec, raw, title):
    if raw is None:
        return str(_l("(none)"))
    return str(title if title is not None else raw)


def _group_label(f: FieldSpec, group: GroupBy):
    return lazy(f.label)


def _number(value):
    """JSON-friendly measure values: floats rounded to cents, dates as ISO text."""
    if value is None:
        return None
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float):
        return round(value, 2)
    return value


def _totals(report, columns, rows) -> dict:
    """Sums and counts add up across groups; averages, minimums and maximums do not, so they have none."""
    totals = {}
    for measure in report.measures:
        if measure.function in ("count", "sum") and any(c.key == measure.name for c in columns):
            totals[measure.name] = _number(sum(filter(None, map(itemgetter(measure.name), rows))))  # None: 0
    return totals


# -- pivots ---------------------------------------------------------------------------------------------
def _combine(function: str, values: list, sums=None, counts=None):
    """A total over cells: sums and counts add up, min/max of the cells, an average from its sums and counts."""
    if function in ("count", "sum"):
        return _number(sum(v or 0 for v in values))
    if function in ("min", "max"):
        present = [v for v in values if v is not None]
        return (min if function == "min" else max)(present) if present else None
    if function in ("avg", "avg_hours_between") and sums is not None:
        n = sum(counts)
        return _number(sum(float(s or 0) for s in sums) / n) if n else None
    return None  # count_distinct: not additive


def _pivot(query: ReportQuery, report: ReportSpec, entity: EntitySpec, result: ReportResult, rows, names, shape, drill, row_drill):
    """Rows of (groups, column bucket) -> one row per group with "pivot": {column: cell}, row totals under the
    measure names, column totals and the grand total in `totals`; `cumulative` runs the sums along the columns."""
    position = {name: i for i, name in enumerate(names)}
    column_field = entity.field(report.columns.field)
    at_column = position[f"c_{column_field.name}"]
    measures = [(m, position[f"m_{m.name}"], position.get(f"s_{m.name}"), position.get(f"n_{m.name}"))
                for m in report.measures if f"m_{m.name}" in position]
    group_shape = [(key, make) for key, make in shape if key in {g.field for g in report.group_by}]
    by_group: dict = {}
    seen_columns = set()
    for values in rows:
        group_key = tuple(values[position[f"g_{g.field}"]] for g in report.group_by)
        entry = by_group.get(group_key)
        if entry is None:
            entry = by_group[group_key] = ({key: make(values) for key, make in group_shape}, {})
        column = values[at_column]
        seen_columns.add(column)
        entry[1][column] = {m.name: (_number(values[at]), values[s] if s is not None else None, values[n] if n is not None else None)
                            for m, at, s, n in measures}
    order = _column_order(column_field, seen_columns)
    result.pivot_columns = [{"key": _column_key(c), "label": _column_label(column_field, report.columns, c)} for c in order]
    empty = {m.name: (0 if m.function in ("count", "sum") else None, None, 0) for m, *_ in measures}
    running = [m.name for m, *_ in measures if report.cumulative and m.function in ("count", "sum")]

    def cells_of(by_column, drill_values):
        """{column key: cell} and the row's totals from {column: {measure: (value, sum, count)}}."""
        cells, totals = {}, {}
        for m, *_ in measures:
            got = [by_column.get(c, empty)[m.name] for c in order]
            totals[m.name] = _combine(m.function, [g[0] for g in got], [g[1] for g in got], [g[2] or 0 for g in got])
        carried = dict.fromkeys(running, 0)
        for c in order:
            cell = {name: values[0] for name, values in by_column.get(c, empty).items()}
            for name in running:
                carried[name] = _number((carried[name] or 0) + (cell[name] or 0))
                cell[name] = carried[name]
            if drill_values is not None:
                cell["drill"] = drill.url([*drill_values, c])
            cells[_column_key(c)] = cell
        return cells, totals

    out = []
    for group_key, (row, by_column) in by_group.items():
        cells, totals = cells_of(by_column, list(group_key))
        row.update(totals)
        row["pivot"] = cells
        row["drill"] = row_drill.url(list(group_key))
        out.append(row)
    # column totals: the cells of all rows, combined per column (from the raw sums and counts)
    per_column: dict = {}
    for _, by_column in by_group.values():
        for c, cell in by_column.items():
            bucket = per_column.setdefault(c, {m.name: [] for m, *_ in measures})
            for name, values in cell.items():
                bucket[name].append(values)
    functions = {m.name: m.function for m, *_ in measures}
    column_totals = {c: {name: (_combine(functions[name], [v[0] for v in got], [v[1] for v in got], [v[2] or 0 for v in got]),
                                sum(float(v[1] or 0) for v in got), sum(v[2] or 0 for v in got))
                         for name, got in cell.items()} for c, cell in per_column.items()}
    cells, grand = cells_of(column_totals, None)
    result.totals = {**grand, "pivot": cells}
    result.rows = out


def _column_order(f: FieldSpec, values: set) -> list:
    """Date buckets in time order, enum values in the order of their choices; the empty value last."""
    present = [v for v in values if v is not None]
    if f.choices:
        keys = [c.key for c in f.choices]
        present.sort(key=lambda v: (keys.index(v) if v in keys else len(keys), str(v)))
    else:
        present.sort(key=str)
    return present + ([None] if None in values else [])


def _column_key(value) -> str:
    return "" if value is None else str(value)


def _column_label(f: FieldSpec, column: GroupBy, value) -> str:
    if value is None:
        return str(_l("(none)"))
    return str(value) if column.bucket else type_of(f).report_label(f, value, None)


# -- derived measures and styles ------------------------------------------------------------------------
def _add_derived(report: ReportSpec, result: ReportResult) -> None:
    """Derived measures per row, per pivot cell and on the totals (so a ratio's total is the ratio of totals),
    and each container's "styles": {derived name: the most severe style whose condition holds}."""
    if not report.derived:
        return
    for d in report.derived:
        result.columns.append(ReportColumn(d.name, lazy(d.label), "derived", d.format))
    steps = _derived_steps(report)
    rounding = [(d.name, 4 if d.format == "percent" else 2) for d in steps[0]]

    def fill(values: dict) -> None:
        for (name, digits), compute in zip(rounding, steps[1]):
            value = compute(values)
            values[name] = None if value is None else round(float(value), digits)
        styles = {}
        for name, conditions in steps[2]:
            style = next((style for style, holds in conditions if holds(values) is True), None)
            if style:
                styles[name] = style
        if styles:
            values["styles"] = styles

    for row in result.rows:
        fill(row)
        for cell in row.get("pivot", {}).values():
            fill(cell)
    fill(result.totals)
    for cell in result.totals.get("pivot", {}).values():
        fill(cell)


_STEPS: dict = {}


def _derived_steps(report: ReportSpec):
    """(derived in dependency order, their compiled values -> number, (name, [(style, values -> bool)])),
    compiled once per report definition."""
    key = (report.id, tuple((d.name, d.expr.source, tuple((st, c.source) for st, c in d.styles)) for d in report.derived))
    steps = _STEPS.get(key)
    if steps is None:
        by_name = {d.name: d for d in report.derived}
        order: list = []

        def visit(d):
            if d in order:
                return
            for path in d.expr.names:
                if path[0] in by_name and by_name[path[0]] is not d:
                    visit(by_name[path[0]])
            order.append(d)
        for d in report.derived:
            visit(d)
        steps = _STEPS[key] = (order, [_compiled(d.expr) for d in order],
                               [(d.name, [(st, _compiled(c)) for st, c in d.styles]) for d in report.derived if d.styles])
    return steps


def _compiled(expression):
    """A closure values -> result over plain floats for arithmetic, comparisons and logic (fast: it runs per
    row and cell); anything else (functions) through the expression language's own evaluator."""
    fast = _float_closure(expression.tree)
    if fast is not None:
        return fast
    run = expression.run
    return lambda values: run(lambda path: values.get(path[0]))


def _float_closure(tree):
    tag = tree[0]
    if tag == "num":
        constant = float(tree[1])
        return lambda v: constant
    if tag == "null":
        return lambda v: None
    if tag == "bool":
        constant = tree[1]
        return lambda v: constant
    if tag == "name":
        if len(tree[1]) != 1:
            return None
        name = tree[1][0]
        return lambda v: v.get(name)
    if tag == "neg":
        inner = _float_closure(tree[1])
        return None if inner is None else (lambda v: None if (x := inner(v)) is None else -x)
    if tag == "not":
        inner = _float_closure(tree[1])
        return None if inner is None else (lambda v: None if not isinstance(x := inner(v), bool) else not x)
    if tag in ("and", "or"):
        parts = [_float_closure(p) for p in tree[1]]
        if any(p is None for p in parts):
            return None
        decisive = tag == "or"

        def logic(v):
            unknown = False
            for part in parts:
                x = part(v)
                if not isinstance(x, bool):
                    unknown = True
                elif x is decisive:
                    return decisive
            return None if unknown else not decisive
        return logic
    if tag == "op":
        op, a, b = tree[1], _float_closure(tree[2]), _float_closure(tree[3])
        if a is None or b is None or ("null",) in (tree[2], tree[3]):
            return None  # `x == null` and the like: the general evaluator
        import operator
        function = {"+": operator.add, "-": operator.sub, "*": operator.mul, "<": operator.lt, "<=": operator.le,
                    ">": operator.gt, ">=": operator.ge, "==": operator.eq, "!=": operator.ne}.get(op)
        if op == "/":
            return lambda v: None if (x := a(v)) is None or not (y := b(v)) else x / y  # 0 or null: null
        if function is None:
            return None

        def apply(v):
            x, y = a(v), b(v)
            if x is None or y is None or isinstance(x, str) or isinstance(y, str):
                return None
            return function(x, y)
        return apply
    return None


def _derived_number(value, fmt):
    if value is None:
        return None
    value = float(value)
    return round(value, 4 if fmt == "percent" else 2)
