"""Shape a ReportResult for JSON, Chart.js and CSV/XLSX downloads."""
from __future__ import annotations

import csv
import io

from openpyxl import Workbook

from app.i18n import current_locale
from app.data.reports.query import ReportResult

MAX_SERIES = 12  # more second-level groups than this become unreadable as separate bars


def as_json(result: ReportResult) -> dict:
    return {
        "id": result.report.id,
        "label": result.report.label.get(current_locale()),
        "chart": result.report.chart,
        "columns": [{"key": c.key, "label": str(c.label), "kind": c.kind, "format": c.format} for c in result.columns],
        "rows": result.rows,
        "totals": result.totals,
        "pivot_columns": result.pivot_columns,
        "chart_measure": list(result.report.chart_measures) or None,
    }


def table_columns(result: ReportResult) -> list[tuple]:
    """(ReportColumn, pivot column key or None, header) of each table column: a pivot has, after its groups,
    every measure of every pivot column, then the row totals."""
    groups = [(c, None, str(c.label)) for c in result.columns if c.kind == "group"]
    values = [c for c in result.columns if c.kind != "group"]
    cells = [(c, p["key"], f"{p['label']} · {c.label}") for p in result.pivot_columns for c in values]
    totals = [(c, None, f"{c.label} ({_total_word()})" if result.pivot_columns else str(c.label)) for c in values]
    return groups + cells + totals


def _total_word() -> str:
    from flask_babel import gettext
    return gettext("Total")


def table(result: ReportResult) -> tuple[list[str], list[list]]:
    """Header and rows with display labels, as shown on the page and downloaded."""
    columns = table_columns(result)
    header = [title for _, _, title in columns]
    rows = []
    for row in result.rows:
        cells = []
        for c, pivot_key, _ in columns:
            if c.kind == "group":
                cells.append(row[c.key]["label"])
            elif pivot_key is not None:
                cells.append(row["pivot"][pivot_key].get(c.key))
            else:
                cells.append(row.get(c.key))
        rows.append(cells)
    return header, rows


def format_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def display_table(result: ReportResult) -> tuple[list[str], list[list[tuple[str, bool]]], list[tuple[str, bool]]]:
    """The page's table, formatted in Python (a Jinja loop over thousands of cells is slow)."""
    header, rows = table(result)
    columns = table_columns(result)
    numeric = [c.kind != "group" for c, _, _ in columns]
    shown = [[(format_cell(cell), is_number) for cell, is_number in zip(r, numeric)] for r in rows]
    totals = [(format_cell((result.totals.get("pivot", {}).get(key, {}) if key is not None else result.totals).get(c.key))
               if c.kind != "group" else "", c.kind != "group") for c, key, _ in columns]
    return header, shown, totals


def chart_measure(result: ReportResult):
    """The one measure a chart plots: `chart_measure` if set and visible, else the first one."""
    measures = [c for c in result.columns if c.kind == "measure"]
    wanted = result.report.chart_measure
    return next((m for m in measures if m.key == wanted), measures[0] if measures else None)


def chart_config(result: ReportResult) -> dict:
    """A Chart.js config: the first group along the axis, a second group (if any) as stacked series."""
    groups = [c for c in result.columns if c.kind == "group"]
    measure = chart_measure(result)
    kind = result.report.chart if result.report.chart != "table" else "bar"
    if measure is None:
        return {}
    if not groups:
        labels = [str(measure.label)]
        datasets = [{"label": str(measure.label), "data": [result.rows[0][measure.key] if result.rows else 0]}]
    elif len(groups) >= 2 and kind != "pie":
        first, second = groups[0], groups[1]
        labels = list(dict.fromkeys(r[first.key]["label"] for r in result.rows))
        series = list(dict.fromkeys(r[second.key]["label"] for r in result.rows))[:MAX_SERIES]
        values = {(r[first.key]["label"], r[second.key]["label"]): r[measure.key] for r in result.rows}
        datasets = [{"label": s, "data": [values.get((label, s)) or 0 for label in labels]} for s in series]
    else:
        first = groups[0]
        labels = [r[first.key]["label"] for r in result.rows]
        datasets = [{"label": str(measure.label), "data": [r[measure.key] or 0 for r in result.rows]}]
    stacked = len(groups) >= 2 and kind == "bar"
    options = {"responsive": True, "maintainAspectRatio": False, "animation": False,
               "plugins": {"title": {"display": True, "text": str(measure.label)}}}
    if kind in ("bar", "line"):
        options["scales"] = {"x": {"stacked": stacked}, "y": {"stacked": stacked, "beginAtZero": True}}
    return {"type": kind, "data": {"labels": labels, "datasets": datasets}, "options": options}


def csv_bytes(result: ReportResult) -> bytes:
    header, rows = table(result)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")  # BOM: Excel opens UTF-8 Chinese correctly


def xlsx_bytes(result: ReportResult) -> bytes:
    header, rows = table(result)
    book = Workbook(write_only=True)
    sheet = book.create_sheet(title=result.report.id[:31])
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()
