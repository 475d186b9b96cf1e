"""Check dashboards (`dashboards:`): tiles of report totals, charts, tables and saved-view counts, per role.

    dashboards:
      management:
        label: {en: Management, zh: 经营看板}
        roles: [Manager]                      # Admin sees every dashboard
        period: this_month                    # this_month (default), this_quarter, this_year, last_30_days
        home: true                            # the user's first home dashboard is shown on the home page
        tiles:
          - {kpi: project_cost.cost, compare: previous_period, target: project_cost.budget}
          - {chart: labour_by_month_pivot}
          - {table: labour_by_worker, label: {en: Per worker, zh: 按工人}}
          - {view: my_open_tickets}

A KPI is a report's total of one measure over the period, so it must be a measure with a total (a count, a sum,
or a derived measure, which is evaluated on the totals); an average, minimum or maximum has none (E795). Reports,
measures and views are looked up once every module is read. Codes E790–E799. Nothing here imports Flask.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from app.schema.loader import YList, YMap
from app.schema.spec import Label, humanize
from app.schema.values import Check, did_you_mean, kind, short

DASHBOARD_KEYS = ("label", "roles", "tiles", "period", "home")
TILE_KINDS = ("kpi", "chart", "table", "view")
TILE_KEYS = {"kpi": ("kpi", "compare", "target", "label"), "chart": ("chart", "label"),
             "table": ("table", "label"), "view": ("view", "label")}
COMPARES = ("previous_period",)
PERIODS = ("this_month", "this_quarter", "this_year", "last_30_days")
WITH_TOTAL = ("count", "sum")  # the aggregates whose report total is the sum over groups
DASHBOARD_ID = re.compile(r"^[a-z][a-z0-9_]{0,59}$")


@dataclass(frozen=True)
class TileSpec:
    kind: str                     # kpi, chart, table, view
    target: str                   # the report id (kpi, chart, table) or the view id
    line: int
    measure: str | None = None    # kpi: the measure of the report
    compare: str | None = None    # kpi: "previous_period" or None
    goal: tuple[str, str] | None = None  # kpi: (report, measure) whose total is the target
    label: Label | None = None


@dataclass(frozen=True)
class DashboardSpec:
    id: str
    module: str
    label: Label
    file: str
    line: int
    tiles: tuple[TileSpec, ...]
    roles: tuple[str, ...] = ()
    period: str = "this_month"
    home: bool = False


def portal_dashboards(spec) -> tuple[DashboardSpec, ...]:
    return tuple(d for m in spec.modules for d in m.dashboards)


def report_measure_names(report) -> list[str]:
    """The names a KPI may take from a report: its measures and its derived measures (when the engine has them)."""
    return [m.name for m in report.measures] + [d.name for d in getattr(report, "derived", ())]


def measure_without_total(report, name: str):
    """The aggregate of `name` when the report has no total for it (avg, min, max, ...), else None."""
    measure = next((m for m in report.measures if m.name == name), None)
    return measure.function if measure is not None and measure.function not in WITH_TOTAL else None


def check_dashboards(run: Check, file, module: str, raw, line) -> tuple[DashboardSpec, ...]:
    if run.mapping(raw, file, line, "dashboards") is None:
        return ()
    result = []
    for dashboard_id, body in raw.items():
        dashboard = _check_dashboard(run, file, module, dashboard_id, body, raw.line_of(dashboard_id))
        if dashboard:
            result.append(dashboard)
    return tuple(result)


def _check_dashboard(run: Check, file, module, dashboard_id, raw, line) -> DashboardSpec | None:
    if not isinstance(dashboard_id, str) or not DASHBOARD_ID.match(dashboard_id):
        run.error(file, line, "E790", f"dashboard id {short(repr(dashboard_id))} must be lowercase letters, digits "
                                      f"and _ (starting with a letter; it is part of the URL)")
        return None
    where = f"dashboard '{dashboard_id}'"
    raw = run.mapping(raw, file, line, where)
    if raw is None:
        return None
    run.keys(raw, DASHBOARD_KEYS, file, where, "E791")
    label, _ = run.label(raw.get("label"), file, raw.line_of("label"), f"label of {where}", humanize(dashboard_id))
    roles = run.name_list(raw.get("roles", YList()), file, raw.line_of("roles"), f"roles of {where}")
    home = run.boolean(raw["home"], file, raw.line_of("home"), f"home of {where}") if "home" in raw else False
    period = raw.get("period", "this_month")
    if period not in PERIODS:
        run.error(file, raw.line_of("period"), "E797", f"period of {where} must be one of {', '.join(PERIODS)}, got "
                                                      f"{short(period) if isinstance(period, str) else kind(period)}"
                                                      f"{did_you_mean(period, PERIODS)}")
        period = "this_month"
    tiles = raw.get("tiles")
    if not isinstance(tiles, YList) or not tiles:
        run.error(file, raw.line_of("tiles") if "tiles" in raw else line, "E792",
                  f"{where} needs 'tiles:', a list like [{{kpi: report.measure}}, {{chart: report}}]")
        return None
    checked = [_check_tile(run, file, where, item, tiles.line_of(i)) for i, item in enumerate(tiles)]
    return DashboardSpec(dashboard_id, module, label, file, line, tuple(t for t in checked if t),
                         tuple(r for r, _ in roles), period, home)


def _report_measure(run, file, line, what, value) -> tuple[str, str] | None:
    if isinstance(value, str) and value.count(".") == 1 and all(value.split(".")):
        report, measure = value.split(".")
        return report, measure
    run.error(file, line, "E794", f"{what} must be <report>.<measure>, got {short(value) if isinstance(value, str) else kind(value)}")
    return None


def _check_tile(run: Check, file, where, raw, line) -> TileSpec | None:
    kinds = [k for k in TILE_KINDS if isinstance(raw, YMap) and k in raw]
    if len(kinds) != 1:
        run.error(file, line, "E793", f"each tile of {where} is a mapping with one of {', '.join(TILE_KINDS)}, "
                                      f"got {kind(raw) if not isinstance(raw, YMap) else ', '.join(kinds) or 'none'}")
        return None
    tile_kind = kinds[0]
    what = f"{tile_kind} tile of {where}"
    run.keys(raw, TILE_KEYS[tile_kind], file, what, "E793")
    label = run.label(raw["label"], file, raw.line_of("label"), f"label of {what}", "")[0] if "label" in raw else None
    line = raw.line_of(tile_kind)
    value = raw[tile_kind]
    if tile_kind == "kpi":
        named = _report_measure(run, file, line, what, value)
        if named is None:
            return None
        compare = raw.get("compare")
        if "compare" in raw and compare not in COMPARES:
            run.error(file, raw.line_of("compare"), "E796", f"compare of {what} must be previous_period, got "
                                                            f"{short(compare) if isinstance(compare, str) else kind(compare)}")
            compare = None
        goal = _report_measure(run, file, raw.line_of("target"), f"target of {what}", raw["target"]) if "target" in raw else None
        return TileSpec("kpi", named[0], line, named[1], compare, goal, label)
    if not isinstance(value, str) or not value:
        run.error(file, line, "E793", f"{what} must name a {'view' if tile_kind == 'view' else 'report'}, got {kind(value)}")
        return None
    return TileSpec(tile_kind, value, line, label=label)


def check_dashboards_across(run: Check, modules, roles) -> None:
    """Ids unique across modules; reports, measures (with a total), views and roles that exist."""
    reports = {r.id: r for m in modules for r in m.reports}
    views = {v.id for m in modules for v in m.views}
    known_roles = {r.name for r in roles}
    seen: dict[str, DashboardSpec] = {}
    for module in modules:
        for dashboard in module.dashboards:
            where = f"dashboard '{dashboard.id}'"
            if dashboard.id in seen:
                run.error(dashboard.file, dashboard.line, "E799", f"{where} is already defined in {seen[dashboard.id].file}")
            seen[dashboard.id] = dashboard
            for role in dashboard.roles:
                if role not in known_roles:
                    run.error(dashboard.file, dashboard.line, "E798",
                              f"{where} names unknown role '{role}'{did_you_mean(role, known_roles)}")
            for tile in dashboard.tiles:
                _check_tile_names(run, dashboard, tile, reports, views)


def _check_tile_names(run, dashboard, tile, reports, views) -> None:
    file, what = dashboard.file, f"{tile.kind} tile of dashboard '{dashboard.id}'"
    if tile.kind == "view":
        if tile.target not in views:
            run.error(file, tile.line, "E794", f"{what} names unknown view '{short(tile.target)}'{did_you_mean(tile.target, views)}")
        return
    named = [(tile.target, tile.measure)] + ([tile.goal] if tile.goal else []) if tile.kind == "kpi" else [(tile.target, None)]
    for report_id, measure in named:
        report = reports.get(report_id)
        if report is None:
            run.error(file, tile.line, "E794", f"{what} names unknown report '{short(report_id)}'{did_you_mean(report_id, reports)}")
            continue
        if measure is None:
            continue
        names = report_measure_names(report)
        if measure not in names:
            run.error(file, tile.line, "E794", f"{what}: report '{report_id}' has no measure '{short(measure)}'"
                                               f"{did_you_mean(measure, names)}")
        elif measure_without_total(report, measure):
            run.error(file, tile.line, "E795",
                      f"{what}: '{report_id}.{measure}' is {measure_without_total(report, measure)}(...), which has no "
                      f"total over the period (the {measure_without_total(report, measure)} of the groups is not the "
                      f"{measure_without_total(report, measure)} of the records); use a count, a sum or a derived measure")
