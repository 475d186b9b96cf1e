"""Build and run a report's single GROUP BY statement, with the viewer's row scope and hidden fields."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from flask_babel import lazy_gettext as _l
from sqlalchemy import Integer, cast, distinct, func, literal, select
from sqlalchemy.orm import aliased

from app.fieldtypes import type_of
from app.i18n import lazy
from app.rules.access import Viewer
from app.rules.filters import context_for, filter_clause
from app.rules.records import FieldError
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
    kind: str  # "group" or "measure"


@dataclass
class ReportResult:
    report: ReportSpec
    columns: list[ReportColumn]
    rows: list[dict] = field(default_factory=list)  # group key -> {"value", "label"}, measure -> number
    totals: dict = field(default_factory=dict)
    date_field: str | None = None


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
        statement, columns, entity = self.statement(report, params)
        result = ReportResult(report, columns, date_field=date_field_of(report, entity))
        rows = self.session.connection().execute(statement)  # Core: no ORM row machinery for plain tuples
        shape = self._row_shape(entity, columns, list(rows.keys()))
        result.rows = [{key: make(values) for key, make in shape} for values in rows]
        result.totals = _totals(report, columns, result.rows)
        return result

    def statement(self, report: ReportSpec, params: ReportParams):
        entity = self.portal.entity(report.entity)
        unreadable = self.viewer.unreadable(entity.name)
        used_for_grouping = {g.field for g in report.group_by} | {c.path[0] for c in report.filter} | {n for n, _ in params.filters}
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
        measures = []
        for measure in report.measures:
            if set(measure.fields) & unreadable:
                continue  # a measure over a hidden field is left out for this viewer
            measures.append(self._measure_expr(model, entity, measure, dialect).label(f"m_{measure.name}"))
            columns.append(ReportColumn(measure.name, lazy(measure.label), "measure"))
        grouped = select(*keys, *measures).select_from(model)
        grouped = grouped.where(*self._conditions(report, entity, model, params, date_field))
        if keys:
            grouped = grouped.group_by(*keys)
        grouped = grouped.subquery("grouped")
        statement = select(*grouped.c)
        for group in report.group_by:
            title = self._title_join(entity.field(group.field), grouped.c[f"g_{group.field}"])
            if title is not None:
                target, condition, expression = title
                statement = statement.outerjoin(target, condition).add_columns(expression.label(f"t_{group.field}"))
        order = [grouped.c[f"g_{g.field}"] for g in report.group_by]
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
        if date_field:
            column = getattr(model, date_field)
            is_datetime = type_of(entity.field(date_field)).has_time
            if params.date_from:
                start = dt.datetime.combine(params.date_from, dt.time(0)) if is_datetime else params.date_from
                conditions.append(column >= start)
            if params.date_to and params.date_to < dt.date.max:  # up to 9999-12-31 means no end
                end = params.date_to + dt.timedelta(days=1)
                end = dt.datetime.combine(end, dt.time(0)) if is_datetime else end
                conditions.append(column < end)
        scope = self.viewer.row_clause(entity.name, self.models)
        if scope is not None:
            conditions.append(scope)
        return conditions or [literal(True)]

    def _row_shape(self, entity, columns, names: list[str]) -> list:
        """(key, values -> cell) per report column, resolved once per result rather than once per row."""
        position = {name: i for i, name in enumerate(names)}
        shape = []
        for column in columns:
            if column.kind == "group":
                f = entity.field(column.key)
                at, title_at = position[f"g_{f.name}"], position.get(f"t_{f.name}")
                shape.append((column.key, lambda v, f=f, at=at, t=title_at: {
                    "value": v[at], "label": _display(f, v[at], v[t] if t is not None else None)}))
            else:
                at = position[f"m_{column.key}"]
                shape.append((column.key, lambda v, at=at: _number(v[at])))
        return shape


def _group_label(f: FieldSpec, group: GroupBy):
    return lazy(f.label)


def _display(f: FieldSpec, raw, title):
    if raw is None:
        return str(_l("(none)"))
    return type_of(f).report_label(f, raw, title)


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
            totals[measure.name] = _number(sum((r[measure.name] or 0) for r in rows))
    return totals
