"""Report pages, downloads, per-module dashboards and the report JSON API."""
from __future__ import annotations

import datetime as dt

from flask import Response, abort, current_app, flash, redirect, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.api import BaseApi, safe
from flask_babel import lazy_gettext as _l
from flask_jwt_extended import verify_jwt_in_request
from markupsafe import Markup
from sqlalchemy import func, select

from app.fieldtypes import type_of
from app.rules.access import current_viewer
from app.portal import can_open_dashboard, can_open_report, current_portal, dashboard_link_name, report_link_name
from app.i18n import lazy
from app.runtime.observability import timed
from app.data.reports.cache import cached_run
from app.data.reports.output import (as_json, chart_config, chart_measure, csv_bytes, display_table, format_cell,
                                     html_text, report_table_html, table_html, xlsx_bytes)
from app.generate.drill import conditions_in_words
from app.data.reports.query import ReportParams, ReportQuery, ReportRefused


def _portal():
    return current_portal().spec, current_portal().models


def can_open(report) -> bool:
    return can_open_report(report)


def open_reports(module: str | None = None) -> list:
    spec, _ = _portal()
    return [r for r in spec.reports if (module is None or r.module == module) and can_open(r)]


def parse_params(report) -> ReportParams:
    """from/to (ISO dates) and f_<field>=value filters on the report's group fields."""
    spec, _ = _portal()
    entity = spec.entity(report.entity)
    group = report.group_by[0].field if report.sources else None  # a cross-entity report's group: a record id

    def date(name):
        text = request.args.get(name, "").strip()
        if not text:
            return None
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            raise ReportRefused(_l("Not a valid date: %(value)s (use 2026-01-31).", value=text)) from None

    filters = []
    groupable = {g.field for g in report.group_by}
    for key, value in request.args.items():
        if key.startswith("f_") and value != "":
            name = key[2:]
            if name == group:
                filters.append((name, value))
                continue
            if name not in groupable or report.sources or not type_of(entity.field(name)).report_filterable:
                raise ReportRefused(_l("This report cannot be filtered by %(field)s.", field=name))
            filters.append((name, value))
    params = ReportParams(date("from"), date("to"), tuple(filters))
    if params.date_from and params.date_to and params.date_from > params.date_to:
        raise ReportRefused(_l("The start date is after the end date."))
    return params


def run(report, params: ReportParams, render=None):
    """The report's result (or `render(result)`): from the cache while its tables are unchanged
    (app/data/reports/cache.py), else queried."""
    spec, models = _portal()
    session, viewer = current_app.appbuilder.session, current_viewer()

    def query():
        with timed("report"):
            return ReportQuery(spec, models, session, viewer).run(report, params)
    return cached_run(report, params, viewer, session, query, render)


def json_body(result) -> bytes:
    """The API's body for a result, as FAB's `response` (jsonify) writes it."""
    return current_app.json.response(as_json(result)).get_data()


def fixed_filters_in_words(report) -> list[str]:
    """The report's fixed filter in words; a cross-entity report's per source, named by its entity
    ("Labour entry: State = Approved")."""
    if not report.sources:
        return conditions_in_words(report.entity, report.filter)
    spec, _ = _portal()
    return [str(_l("%(source)s: %(conditions)s", source=lazy(spec.entity(s.entity).label), conditions=words))
            for s in report.sources if s.filter for words in conditions_in_words(s.entity, s.filter)]


def _date_label(report, entity, result):
    if not (result and result.date_field):
        return None
    # a cross-entity report's range applies to each source's own date (paid on, received on, work date)
    return _l("Date") if report.sources else lazy(entity.field(result.date_field).label)


class ReportsView(BaseView):
    route_base = "/reports"
    default_view = "index"
    base_permissions = []  # access is per report: can_read on Report:<id>

    def _report_or_abort(self, report_id: str):
        spec, _ = _portal()
        report = spec.report(report_id)
        if report is None:
            abort(404)
        if not self.appbuilder.sm.current_user:
            return redirect(url_for(self.appbuilder.sm.auth_view.__class__.__name__ + ".login", next=request.url))
        if not can_open(report):
            flash(str(_l("Access is Denied")), "danger")
            return redirect(self.appbuilder.get_url_for_index)
        return report

    @expose("/")
    def index(self):
        if not self.appbuilder.sm.current_user:
            return redirect(url_for(self.appbuilder.sm.auth_view.__class__.__name__ + ".login"))
        reports = [(r, lazy(r.label)) for r in open_reports()]
        return self.render_template("portal/reports_index.html", reports=reports, title=_l("Reports"))

    @expose("/<report_id>")
    def show(self, report_id: str):
        report = self._report_or_abort(report_id)
        if not hasattr(report, "id"):
            return report
        spec, _ = _portal()
        entity = spec.entity(report.entity)
        try:
            params = parse_params(report)
            result = run(report, params)
        except ReportRefused as exc:
            flash(str(exc), "danger")
            params, result = ReportParams(), None
        table = report_table_html(result, drill_title=str(_l("Click a number to see its records"))) if result else None
        return self.render_template(
            "portal/report.html", report=report, title=lazy(report.label), result=result, table=table, chart=chart_config(result) if result and report.chart != "table" else None,
            fixed_filters=fixed_filters_in_words(report),
            filters=self._filter_choices(entity, report, result, params), params=params,
            date_label=_date_label(report, entity, result),
            query=request.query_string.decode())

    def _filter_choices(self, entity, report, result, params):
        """Select boxes for the report's enum/link/user/boolean groups, with the values that occur: (field, label,
        options HTML, lookup URL). A link group with more values than PORTAL_REPORT_LOOKUP_FROM (2,000 workers)
        is a type-ahead instead: the link pickers' lookup (app/generate/lookups.py, lookups.js) asks the server
        as the user types, and the page holds only the chosen record, not 2,000 options."""
        chosen = dict(params.filters)
        choices = []
        rows = result.rows if result else []
        for group in report.group_by if not report.sources else ():  # a cross-entity group is no field of one entity
            f = entity.field(group.field)
            if not type_of(f).report_filterable or group.field in current_viewer().unreadable(entity.name):
                continue
            selected = chosen.get(group.field, "")
            options, lookup = type_of(f).report_filter_options(f), None
            if options is None and len(rows) > current_app.config.get("PORTAL_REPORT_LOOKUP_FROM", 100) \
                    and self.appbuilder.sm.has_access("can_read", entity.name):  # the lookup is read access
                # any record of the link in the viewer's scope (all=1: not the form's picker filter, say active
                # workers only); the chosen one is the result's own group value
                lookup = url_for(f"{entity.name}View.lookup", field=f.name, all=1)
                options = [(selected, r[group.field]["label"]) for r in rows[:1] if str(r[group.field]["value"]) == selected]
            elif options is None:  # links: the records that occur in the result
                seen = {(str(r[group.field]["value"]), r[group.field]["label"]) for r in rows
                        if r[group.field]["value"] is not None}
                options = sorted(seen, key=lambda o: o[1])
            html = Markup("".join(f'<option value="{html_text(v)}"{" selected" if str(v) == selected else ""}>{html_text(t)}</option>'
                                  for v, t in options))  # one string: thousands of options through Jinja are slow
            choices.append((group.field, lazy(f.label), html, lookup))
        return choices

    @expose("/<report_id>/download.<fmt>")
    def download(self, report_id: str, fmt: str):
        report = self._report_or_abort(report_id)
        if not hasattr(report, "id"):
            return report
        if fmt not in ("csv", "xlsx"):
            abort(404)
        try:
            result = run(report, parse_params(report))
        except ReportRefused as exc:
            flash(str(exc), "danger")
            return redirect(url_for(".show", report_id=report_id))
        body, mime = (csv_bytes(result), "text/csv; charset=utf-8") if fmt == "csv" else (
            xlsx_bytes(result), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        filename = f"{report.id}-{dt.date.today().isoformat()}.{fmt}"
        return Response(body, mimetype=mime, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


class DashboardView(BaseView):
    route_base = "/dashboard"
    base_permissions = []

    @expose("/<module_name>")
    def module(self, module_name: str):
        spec, models = _portal()
        module = next((m for m in spec.modules if m.name == module_name), None)
        if module is None:
            abort(404)
        sm = self.appbuilder.sm
        if not sm.current_user:
            return redirect(url_for(sm.auth_view.__class__.__name__ + ".login", next=request.url))
        if not can_open_dashboard(module.name):
            flash(str(_l("Access is Denied")), "danger")
            return redirect(self.appbuilder.get_url_for_index)
        viewer, session = current_viewer(), self.appbuilder.session
        cards = []
        for entity in module.entities:
            if sm.has_access("can_read", entity.name):
                model = models[entity.name]
                query = select(func.count()).select_from(model)
                scope = viewer.row_clause(entity.name, models)
                count = session.scalar(query.where(scope) if scope is not None else query)
                cards.append((lazy(entity.label), format_cell(count), f"/{entity.snake}/list/"))
        charts = []
        for report in open_reports(module.name):
            try:
                result = run(report, ReportParams())
            except ReportRefused:
                continue
            measure = chart_measure(result)
            if measure is not None and measure.key in result.totals:  # one headline number per report
                cards.append((f"{lazy(report.label)} · {measure.label}", format_cell(result.totals[measure.key]),
                              url_for("ReportsView.show", report_id=report.id)))
            charts.append((report, lazy(report.label), chart_config(result) if report.chart != "table" else None,
                           table_html(display_table(result))))
        return self.render_template("portal/dashboard.html", module=module, title=lazy(module.label), cards=cards, charts=charts)


class ReportApi(BaseApi):
    """GET /api/v1/reports/ (the reports you may open) and /api/v1/reports/<id> (its data as JSON)."""

    resource_name = "reports"
    class_permission_name = "Reports"
    base_permissions = []
    openapi_spec_tag = "Reports"

    def _signed_in(self) -> bool:
        verify_jwt_in_request(optional=True)
        return bool(self.appbuilder.sm.current_user)

    @expose("/", methods=["GET"])
    @safe
    def list_reports(self):
        """List the reports the caller may open
        ---
        get:
          responses:
            200:
              description: Report ids and labels
        """
        if not self._signed_in():
            return self.response_401()
        reports = [{"id": r.id, "label": str(lazy(r.label)), "module": r.module, "entity": r.entity, "chart": r.chart}
                   for r in open_reports()]
        return self.response(200, result=reports, count=len(reports))

    @expose("/<report_id>", methods=["GET"])
    @safe
    def get_report(self, report_id: str):
        """One report's rows and totals; query args from, to (ISO dates) and f_<group field>
        ---
        get:
          parameters:
          - in: path
            name: report_id
            schema: {type: string}
          responses:
            200:
              description: columns, rows and totals
            400: {description: bad parameter}
            403: {description: not allowed}
            404: {description: no such report}
        """
        if not self._signed_in():
            return self.response_401()
        spec, _ = _portal()
        report = spec.report(report_id)
        if report is None:
            return self.response_404()
        if not can_open(report):
            return self.response_403()
        try:
            body = run(report, parse_params(report), render=json_body)  # a cached hit: the stored body as is
        except ReportRefused as exc:
            return self.response_400(message=str(exc))
        return Response(body, status=200, content_type="application/json; charset=utf-8")


def register_reports(appbuilder, spec) -> None:
    """Report pages, dashboards and the report API, with menu links under each module."""
    appbuilder.add_view_no_menu(ReportsView)
    appbuilder.add_view_no_menu(DashboardView)
    appbuilder.add_api(ReportApi)
    for module in spec.modules:
        appbuilder.add_link(dashboard_link_name(module.name), href=f"/dashboard/{module.name}", label=_l("Dashboard"),
                            icon="fa-dashboard", category=module.name)
        for report in module.reports:
            appbuilder.add_link(report_link_name(report.id), href=f"/reports/{report.id}", label=lazy(report.label),
                                icon="fa-bar-chart", category=module.name)
