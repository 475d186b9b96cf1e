"""YAML dashboards (`dashboards:`, app/schema/dashboards.py): the page `/dashboards/<id>`, the JSON API
`/api/v1/dashboards/` and `/api/v1/dashboards/<id>`, the "Dashboards" menu and the home page's tiles.

A dashboard is offered to its roles (Admin: all), by the FAB permission `can_read` on `Dashboards:<id>`. Every
number is a report run through the same `run` as the report page (ReportQuery with the viewer: their row scope,
their hidden fields; cached per scope), or a saved view's COUNT in the viewer's scope. A tile whose report or view
the viewer may not open, or whose measure is hidden from them, is left out of their dashboard: it is never shown
with numbers computed for another scope.
"""
from __future__ import annotations

import datetime as dt

from flask import abort, current_app, flash, redirect, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.api import BaseApi, safe
from flask_babel import format_percent
from flask_babel import lazy_gettext as _l
from flask_jwt_extended import verify_jwt_in_request

from app.data.reports.output import as_json, chart_config, display_table, format_cell
from app.data.reports.query import ReportParams, ReportRefused
from app.generate.saved_views import ViewRefused, find_view, view_count
from app.i18n import lazy
from app.portal import can_open_yaml_dashboard, current_portal, dashboards_menu_name, yaml_dashboard_link_name
from app.rules.access import current_viewer
from app.rules.filters import context_for
from app.schema.dashboards import portal_dashboards
from views.report_pages import can_open, run, table_html


# -- the period ------------------------------------------------------------------------------------------------

def _month_start(day: dt.date, months_back: int = 0) -> dt.date:
    index = day.year * 12 + day.month - 1 - months_back
    return dt.date(index // 12, index % 12 + 1, 1)


def period_dates(period: str, today: dt.date) -> tuple[dt.date, dt.date]:
    """(first day, last day) of the dashboard's period, both included."""
    if period == "last_30_days":
        return today - dt.timedelta(days=29), today
    months = {"this_month": 1, "this_quarter": 3, "this_year": 12}[period]
    start = _month_start(today, (today.month - 1) % months)
    return start, _month_start(start, -months) - dt.timedelta(days=1)


def previous_dates(period: str, start: dt.date, end: dt.date) -> tuple[dt.date, dt.date]:
    """The period before, of the same length: the month, quarter or year before, or the 30 days before."""
    if period == "last_30_days":
        return start - dt.timedelta(days=30), start - dt.timedelta(days=1)
    months = {"this_month": 1, "this_quarter": 3, "this_year": 12}[period]
    return _month_start(start, months), start - dt.timedelta(days=1)


# -- who sees which dashboard ---------------------------------------------------------------------------------

def user_dashboards() -> list:
    """The signed-in user's dashboards, in schema order."""
    if not current_app.appbuilder.sm.current_user:
        return []
    return [d for d in portal_dashboards(current_portal().spec) if can_open_yaml_dashboard(d.id)]


def find_dashboard(dashboard_id: str):
    """The dashboard, or abort(404) when unknown, abort(403) when it is for other roles."""
    dashboard = next((d for d in portal_dashboards(current_portal().spec) if d.id == dashboard_id), None)
    if dashboard is None:
        abort(404)
    if not can_open_yaml_dashboard(dashboard.id):
        abort(403)
    return dashboard


# -- the tiles ------------------------------------------------------------------------------------------------

def _change(value, previous):
    """(ratio of change, direction): the ratio is None when there is nothing to compare with."""
    if value is None or previous is None:
        return None, "flat"
    direction = "up" if value > previous else "down" if value < previous else "flat"
    return (round((value - previous) / previous, 4) if previous else None), direction


class DashboardBuilder:
    """Computes one dashboard's tiles for the signed-in viewer; each report runs once per period."""

    def __init__(self, dashboard, today: dt.date | None = None, for_page: bool = False) -> None:
        self.dashboard, self.for_page = dashboard, for_page
        self.start, self.end = period_dates(dashboard.period, today or dt.date.today())
        self.results: dict = {}

    def result(self, report_id: str, start: dt.date, end: dt.date):
        """The report's result over [start, end] for this viewer, or None when they may not open it."""
        key = (report_id, start, end)
        if key not in self.results:
            report = current_portal().spec.report(report_id)
            try:
                self.results[key] = run(report, ReportParams(start, end)) if report and can_open(report) else None
            except ReportRefused:  # a field of the report is hidden from this viewer
                self.results[key] = None
        return self.results[key]

    def build(self) -> dict:
        tiles = []
        ctx = context_for(current_viewer().user_id)
        for tile in self.dashboard.tiles:
            made = self.view_tile(tile, ctx) if tile.kind == "view" else getattr(self, f"{tile.kind}_tile")(tile)
            if made is not None:
                tiles.append(made)
        return {"id": self.dashboard.id, "label": str(lazy(self.dashboard.label)),
                "period": {"from": self.start.isoformat(), "to": self.end.isoformat()}, "tiles": tiles}

    def _label(self, tile, default: str) -> str:
        return str(lazy(tile.label)) if tile.label else default

    def kpi_tile(self, tile):
        result = self.result(tile.target, self.start, self.end)
        column = next((c for c in result.columns if c.key == tile.measure), None) if result else None
        if column is None:  # the report or the measure is not for this viewer
            return None
        value = result.totals.get(tile.measure)
        previous = None
        if tile.compare and result.date_field:  # a report without a date field has no previous period
            before = self.result(tile.target, *previous_dates(self.dashboard.period, self.start, self.end))
            previous = before.totals.get(tile.measure) if before else None
        target = None
        if tile.goal:
            goal = self.result(tile.goal[0], self.start, self.end)
            if goal is None or not any(c.key == tile.goal[1] for c in goal.columns):
                return None  # the target's report or measure is not for this viewer
            target = goal.totals.get(tile.goal[1])
        change, direction = _change(value, previous)
        report = result.report
        made = {"kind": "kpi", "report": report.id, "measure": tile.measure,
                "label": self._label(tile, f"{lazy(report.label)} · {column.label}"), "value": value,
                "previous": previous, "change": change, "direction": direction, "target": target,
                "progress": round(value / target, 4) if value is not None and target else None,
                "url": url_for("ReportsView.show", report_id=report.id)}
        if self.for_page:
            made["shown"] = {"value": format_cell(value), "previous": format_cell(previous), "target": format_cell(target),
                             "change": format_percent(change, "+#,##0%;-#,##0%") if change is not None else "",
                             "progress": format_percent(made["progress"]) if made["progress"] is not None else "",
                             "bar": max(0, min(100, round((made["progress"] or 0) * 100)))}
        return made

    def chart_tile(self, tile):
        result = self.result(tile.target, self.start, self.end)
        if result is None:
            return None
        return {"kind": "chart", "report": result.report.id, "label": self._label(tile, str(lazy(result.report.label))),
                "config": chart_config(result), "url": url_for("ReportsView.show", report_id=result.report.id)}

    def table_tile(self, tile):
        result = self.result(tile.target, self.start, self.end)
        if result is None:
            return None
        data = as_json(result)
        made = {"kind": "table", "report": result.report.id, "label": self._label(tile, str(lazy(result.report.label))),
                "columns": data["columns"], "rows": data["rows"], "totals": data["totals"],
                "url": url_for("ReportsView.show", report_id=result.report.id)}
        if self.for_page:
            made["html"] = table_html(display_table(result))
        return made

    def view_tile(self, tile, ctx):
        try:
            view = find_view(tile.target)
        except ViewRefused:  # a view of other roles, or of an entity this viewer may not read
            return None
        return {"kind": "view", "view": view.id, "label": self._label(tile, str(view.label)),
                "count": view_count(view, ctx), "url": view.url}


def home_dashboard() -> dict | None:
    """The tiles of the user's first `home: true` dashboard, for the home page."""
    dashboard = next((d for d in user_dashboards() if d.home), None)
    return DashboardBuilder(dashboard, for_page=True).build() if dashboard else None


# -- page and API ---------------------------------------------------------------------------------------------

class DashboardsView(BaseView):
    route_base = "/dashboards"
    default_view = "index"
    base_permissions = []  # access is per dashboard: can_read on Dashboards:<id>

    def _signed_in_or_redirect(self):
        if self.appbuilder.sm.current_user:
            return None
        return redirect(url_for(self.appbuilder.sm.auth_view.__class__.__name__ + ".login", next=request.url))

    @expose("/")
    def index(self):
        """The first of the user's dashboards (the menu lists them all)."""
        login = self._signed_in_or_redirect()
        if login:
            return login
        dashboards = user_dashboards()
        if not dashboards:
            flash(str(_l("No dashboard is open to your role yet.")), "info")
            return redirect(self.appbuilder.get_url_for_index)
        return redirect(url_for(".show", dashboard_id=dashboards[0].id))

    @expose("/<dashboard_id>")
    def show(self, dashboard_id: str):
        login = self._signed_in_or_redirect()
        if login:
            return login
        board = DashboardBuilder(find_dashboard(dashboard_id), for_page=True).build()
        return self.render_template("portal/dashboard_page.html", board=board, title=board["label"])


class DashboardApi(BaseApi):
    """GET /api/v1/dashboards/ (the caller's dashboards) and /api/v1/dashboards/<id> (its tiles with their values)."""

    resource_name = "dashboards"
    class_permission_name = "DashboardApi"  # not "Dashboards": that is the menu category's view-menu
    base_permissions = []
    openapi_spec_tag = "Dashboards"

    def _signed_in(self) -> bool:
        verify_jwt_in_request(optional=True)
        return bool(self.appbuilder.sm.current_user)

    @expose("/", methods=["GET"])
    @safe
    def list_dashboards(self):
        """List the dashboards the caller may open
        ---
        get:
          responses:
            200:
              description: Dashboard ids, labels and periods
            401: {description: not signed in}
        """
        if not self._signed_in():
            return self.response_401()
        result = [{"id": d.id, "label": str(lazy(d.label)), "period": d.period, "home": d.home,
                   "url": f"/dashboards/{d.id}"} for d in user_dashboards()]
        return self.response(200, result=result, count=len(result))

    @expose("/<dashboard_id>", methods=["GET"])
    @safe
    def get_dashboard(self, dashboard_id: str):
        """One dashboard's tiles with their values, computed for the caller
        ---
        get:
          parameters:
          - in: path
            name: dashboard_id
            schema: {type: string}
          responses:
            200:
              description: id, label, period {from, to} and tiles
            401: {description: not signed in}
            403: {description: a dashboard of other roles}
            404: {description: no such dashboard}
        """
        if not self._signed_in():
            return self.response_401()
        dashboard = next((d for d in portal_dashboards(current_portal().spec) if d.id == dashboard_id), None)
        if dashboard is None:
            return self.response_404()
        if not can_open_yaml_dashboard(dashboard.id):
            return self.response_403()
        return self.response(200, **DashboardBuilder(dashboard).build())


def register_dashboards(appbuilder, spec) -> None:
    """The dashboard page and API, and a "Dashboards" menu listing each dashboard for its roles."""
    appbuilder.add_view_no_menu(DashboardsView)
    appbuilder.add_api(DashboardApi)
    for dashboard in portal_dashboards(spec):
        appbuilder.add_link(yaml_dashboard_link_name(dashboard.id), href=f"/dashboards/{dashboard.id}",
                            label=lazy(dashboard.label), icon="fa-tachometer", category=dashboards_menu_name(),
                            category_icon="fa-dashboard", category_label=_l("Dashboards"))
