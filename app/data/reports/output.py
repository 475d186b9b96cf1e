"""Shape a ReportResult for JSON, Chart.js and CSV/XLSX downloads."""
from __future__ import annotations

import copy
import csv
import io
import re
import zlib

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell

from flask_babel import lazy_gettext as _l
from markupsafe import Markup, escape

from app.i18n import current_locale
from app.data.reports.formats import DEFAULT_CURRENCY, currency, excel_format, format_value, formatter, python_specs
from app.data.reports.query import ReportResult
from app.data.tabular import safe_text

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
    """A number as the page shows it without a format (dashboard cards)."""
    return format_value(value, None, current_locale())


MEASURE_KINDS = ("measure", "derived")
STYLES = frozenset({"danger", "warning", "success", "info"})  # the list highlights' palette (Bootstrap's)
NUMBER_CLASS = "report-number"  # right-aligned by charts_js.html's CSS (short: 2,000 rows × every measure)

# One table cell for the page: (text, CSS classes, link or None). Built in Python: a Jinja loop over thousands of
# cells is slow, and the per-cell work here is kept to a dict lookup and one formatter call.
Cell = tuple


def _is_measure(column) -> bool:
    return column.kind in MEASURE_KINDS


def _formatters(result: ReportResult, locale: str) -> dict:
    return {c.key: formatter(getattr(c, "format", None), locale, currency() if getattr(c, "format", None) == "money"
                             else DEFAULT_CURRENCY) for c in result.columns if _is_measure(c)}


def _style_class(styles, key) -> str:
    style = styles.get(key) if styles else None
    return f"{NUMBER_CLASS} report-{style} {style}" if style in STYLES else NUMBER_CLASS


def display_table(result: ReportResult, locale: str | None = None) -> tuple[list[Cell], list[list[Cell]], list[Cell]]:
    """The page's table: header, rows and totals as cells, numbers formatted per column format and locale,
    styled per the rows' "styles", linked to the rows' (or pivot cells') "drill". A pivot ("pivot" in the rows,
    `result.pivot_columns`) has one column per pivot column and measure, then the row totals."""
    locale = locale or current_locale()
    groups = [c for c in result.columns if c.kind == "group"]
    measures = [c for c in result.columns if _is_measure(c)]
    fmt = _formatters(result, locale)
    pivot_columns = getattr(result, "pivot_columns", None) or []
    total_label = str(_l("Total"))
    header = [(str(c.label), "", None) for c in groups]
    if pivot_columns:
        def title(label, m):
            return str(label) if len(measures) == 1 else f"{label} · {m.label}"
        header += [(title(pc["label"], m), NUMBER_CLASS, None) for pc in pivot_columns for m in measures]
        header += [(title(total_label, m), NUMBER_CLASS, None) for m in measures]
    else:
        header += [(str(m.label), NUMBER_CLASS, None) for m in measures]

    def measure_cells(values: dict, drill, styles) -> list[Cell]:
        cells = []
        if pivot_columns:
            pivot = values.get("pivot") or {}
            for pc in pivot_columns:
                cell = pivot.get(pc["key"]) or pivot.get(str(pc["key"])) or {}
                for m in measures:
                    v = cell.get(m.key)
                    cells.append(("" if v is None else fmt[m.key](v), _style_class(cell.get("styles"), m.key),
                                  cell.get("drill")))
        for m in measures:
            v = values.get(m.key)
            cells.append(("" if v is None else fmt[m.key](v), _style_class(styles, m.key), drill.get(m.key) if isinstance(drill, dict) else drill))
        return cells

    rows = []
    for row in result.rows:
        cells = [(row[g.key]["label"], "", None) for g in groups]
        rows.append(cells + measure_cells(row, row.get("drills", row.get("drill")), row.get("styles")))
    totals = []
    if result.totals:
        t = result.totals
        totals = [(total_label if i == 0 else "", "", None) for i in range(len(groups))]
        cells = measure_cells(t, t.get("drill"), t.get("styles"))
        if not groups and cells:
            cells[0] = (cells[0][0] or total_label, cells[0][1], cells[0][2])
        totals += cells
    return header, rows, totals


_UNSAFE = re.compile(r"[&<>\"']").search


def html_text(text) -> str:
    """HTML-escaped text; most cells are numbers with nothing to escape, and a regex test is 5x cheaper than escape()."""
    text = str(text)
    return str(escape(text)) if _UNSAFE(text) else text


def report_table_html(result: ReportResult, locale: str | None = None, drill_title: str = "") -> Markup:
    """`table_html(display_table(result))`, the same HTML, in one pass for a table without pivot columns: the
    2,000-group report page spends its Python time here (no cell tuples, one f-string per cell, formatted numbers
    not escaped: Babel's patterns and Python's grouping make digits, separators, signs and symbols only)."""
    if getattr(result, "pivot_columns", None) or not result.rows:
        return table_html(display_table(result, locale), drill_title)
    header, _, totals = display_table(_without_rows(result), locale)
    locale = locale or current_locale()
    groups = [c.key for c in result.columns if c.kind == "group"]
    fmt = _formatters(result, locale)
    # per measure: its key, its formatter, the format() specs (float, int) that write the same text (or None),
    # and the texts already written with those specs: sums of days, hours and rates repeat across groups
    memos: dict = {}
    measures = [(c.key, fmt[c.key], specs, memos.setdefault(specs, ({}, {})))
                for c in result.columns if _is_measure(c)
                for specs in (python_specs(getattr(c, "format", None), locale),)]
    plain_td = f'<td class="{NUMBER_CLASS}">'
    empty_td = f"{plain_td}</td>"
    number = (int, float)
    parts = [str(table_html((header, [], []), drill_title)).split("<tbody>")[0], "<tbody>"]
    append = parts.append
    for row in result.rows:
        drill, styles, drills = row.get("drill"), row.get("styles"), row.get("drills")
        append("<tr>")
        for g in groups:
            append(f"<td>{html_text(row[g]['label'])}</td>")
        link = f'<a href="{html_text(drill)}">' if drill else ""
        for key, show, specs, (floats, ints) in measures:
            value = row[key]
            if drills is not None:  # a cross-entity report: each measure opens its own source's records
                link = f'<a href="{html_text(drills[key])}">' if key in drills else ""
            td = f'<td class="{_style_class(styles, key)}">' if styles else plain_td
            if value is None:
                append(f"{td}</td>" if styles else empty_td)
                continue
            kind = value.__class__
            if specs is not None and (kind is float or kind is int):  # most cells: a built-in call, or none
                seen = floats if kind is float else ints  # apart: 1 == 1.0 but "1" != "1.00"
                text = seen.get(value)
                if text is None:
                    text = seen[value] = format(value, specs[0] if kind is float else specs[1])
            else:  # a formatted number is digits, separators and symbols; other text (a date, say) is escaped
                text = show(value) if kind in number else html_text(show(value))
            append(f"{td}{link}{text}</a></td>" if link else f"{td}{text}</td>")
        append("</tr>")
    parts.append("</tbody>")
    if totals:
        foot = str(table_html((header, [[]], totals), drill_title))
        parts.append(foot[foot.index("<tfoot>"):foot.index("</table>")])
    parts.append("</table>")
    return Markup("".join(parts))


def _without_rows(result: ReportResult) -> ReportResult:
    empty = copy.copy(result)
    empty.rows = []
    return empty


def _table_start(drill_title: str) -> str:
    title = f' title="{escape(drill_title)}"' if drill_title else ""  # one hint for the table, not one per cell
    return f'<table class="table table-condensed table-striped report-table"{title}><thead><tr>'


def table_html(table, drill_title: str = "") -> Markup:
    """The report table as one HTML string (one join, no template loop: 2,000 groups render in milliseconds)."""
    header, rows, totals = table
    links: dict = {}  # a row's cells share its drill URL: escape it once

    def cell(c, tag="td"):
        text, classes, href = c
        body = html_text(text)
        if href and text != "":
            link = links.get(href) or links.setdefault(href, f'<a href="{html_text(href)}">')
            body = f"{link}{body}</a>"
        return f'<{tag} class="{classes}">{body}</{tag}>' if classes else f"<{tag}>{body}</{tag}>"
    parts = [_table_start(drill_title)]
    parts += [cell((text, classes, None), "th") for text, classes, _ in header]
    parts.append("</tr></thead><tbody>")
    parts += ["<tr>" + "".join(map(cell, row)) + "</tr>" for row in rows]
    if not rows:
        no_data = escape(_l("No data for this selection."))
        parts.append(f'<tr><td colspan="{len(header)}">{no_data}</td></tr>')
    parts.append("</tbody>")
    if rows and totals:
        parts.append('<tfoot><tr class="report-totals">' + "".join(cell(c, "th") for c in totals) + "</tr></tfoot>")
    parts.append("</table>")
    return Markup("".join(parts))


# Series colours: a colour per series name (a hash, not the position), so "Tower A" or "cost" has the same colour
# in every chart and dashboard, whatever else is plotted beside it. Colour-blind-safe Tableau 10.
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")


def series_colour(name) -> str:
    return PALETTE[zlib.crc32(str(name).encode("utf-8")) % len(PALETTE)]


def chart_measures(result: ReportResult) -> list:
    """The measures a chart plots: `chart_measure` (a name or a list) where visible, else the first measure."""
    measures = [c for c in result.columns if _is_measure(c)]
    wanted = result.report.chart_measures or result.report.chart_measure  # `chart_measure: [a, b]`: every one
    wanted = [wanted] if isinstance(wanted, str) else list(wanted or ())
    chosen = [m for name in wanted for m in measures if m.key == name]
    return chosen or measures[:1]


def chart_measure(result: ReportResult):
    """The first measure a chart plots (a dashboard card's headline number)."""
    measures = chart_measures(result)
    return measures[0] if measures else None


def _coloured(dataset: dict, key, kind: str) -> dict:
    colour = series_colour(key)
    dataset.update(backgroundColor=colour, borderColor=colour)
    if kind == "line":
        dataset["fill"] = False
    return dataset


CHART_MAX_GROUPS = 50  # more bars (or slices) than this are unreadable: the chart shows the largest


def _top_groups(result: ReportResult, first, measure, rows: list) -> tuple[list, str | None]:
    """The rows a one-group chart plots, and a note when some are left out: of more than CHART_MAX_GROUPS
    groups, the CHART_MAX_GROUPS largest by the (first) chart measure, largest first, as a BI tool charts a
    "top N" (the table beside the chart keeps every group). A date axis (`work_date:month`) keeps its order:
    its latest periods."""
    if len(rows) <= CHART_MAX_GROUPS:
        return rows, None
    from flask_babel import gettext

    report = result.report
    if any(g.field == first.key and g.bucket for g in getattr(report, "group_by", ()) or ()) or any(
            getattr(source, "key_bucket", None) for source in getattr(report, "sources", ()) or ()):
        return rows[-CHART_MAX_GROUPS:], gettext("The latest %(shown)d of %(total)d periods; the table lists all.",
                                                  shown=CHART_MAX_GROUPS, total=len(rows))
    ranked = sorted(rows, key=lambda r: r.get(measure.key) or 0, reverse=True)[:CHART_MAX_GROUPS]
    return ranked, gettext("The %(shown)d largest of %(total)d groups by %(measure)s; the table lists all.",
                           shown=CHART_MAX_GROUPS, total=len(rows), measure=str(measure.label))


def chart_config(result: ReportResult) -> dict:
    """A Chart.js config: the first group along the axis, a second group (if any) as stacked series, or one
    series per chart measure. Each dataset carries `drill`: per bar, the URL of its records (charts.js opens it)."""
    groups = [c for c in result.columns if c.kind == "group"]
    measures = chart_measures(result)
    kind = result.report.chart if result.report.chart != "table" else "bar"
    if not measures:
        return {}
    measure = measures[0]
    rows, note = result.rows, None
    if not groups:
        labels = [str(m.label) for m in measures]
        data = [rows[0][m.key] if rows else 0 for m in measures]
        datasets = [_coloured({"label": str(measure.label), "data": data,
                               "drill": [rows[0].get("drill") if rows else None] * len(measures)}, measure.key, kind)]
    elif len(groups) >= 2 and kind != "pie":
        first, second = groups[0], groups[1]
        labels = list(dict.fromkeys(r[first.key]["label"] for r in rows))
        series = list(dict.fromkeys(r[second.key]["label"] for r in rows))[:MAX_SERIES]
        by_cell = {(r[first.key]["label"], r[second.key]["label"]): r for r in rows}
        datasets = [_coloured({"label": s, "data": [(by_cell.get((label, s)) or {}).get(measure.key) or 0 for label in labels],
                               "drill": [(by_cell.get((label, s)) or {}).get("drill") for label in labels]}, s, kind)
                    for s in series]
    else:
        first = groups[0]
        rows, note = _top_groups(result, first, measure, rows)
        labels = [r[first.key]["label"] for r in rows]
        drills = [r.get("drill") for r in rows]

        def drills_of(m):  # a cross-entity report's bars open their own source's records
            return [r["drills"].get(m.key) for r in rows] if rows and "drills" in rows[0] else drills
        datasets = [_coloured({"label": str(m.label), "data": [r.get(m.key) or 0 for r in rows], "drill": drills_of(m)}, m.key, kind)
                    for m in (measures[:1] if kind == "pie" else measures)]
        if kind == "pie":
            datasets[0]["backgroundColor"] = [series_colour(label) for label in labels]
    stacked = len(groups) >= 2 and kind == "bar"
    options = {"responsive": True, "maintainAspectRatio": False, "animation": False,
               "plugins": {"title": {"display": True, "text": " · ".join(str(m.label) for m in measures)}}}
    if note:  # some groups left out: said under the title
        options["plugins"]["subtitle"] = {"display": True, "text": note}
    if kind in ("bar", "line"):
        options["scales"] = {"x": {"stacked": stacked}, "y": {"stacked": stacked, "beginAtZero": True}}
    return {"type": kind, "data": {"labels": labels, "datasets": datasets}, "options": options}


def download_table(result: ReportResult) -> tuple[list[str], list[list]]:
    """`table` with its text cells spreadsheet-safe: a group title or label starting with = + - @ (a project
    named "=HYPERLINK(...)") is not run as a formula by whoever opens the download."""
    header, rows = table(result)
    safe = lambda v: safe_text(v) if isinstance(v, str) else v  # noqa: E731
    return [safe(h) for h in header], [[safe(v) for v in row] for row in rows]


def csv_bytes(result: ReportResult) -> bytes:
    header, rows = download_table(result)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")  # BOM: Excel opens UTF-8 Chinese correctly


def _excel_cell(sheet, value, number_format):
    cell = WriteOnlyCell(sheet, value=value)
    cell.number_format = number_format
    return cell


def xlsx_bytes(result: ReportResult) -> bytes:
    header, rows = download_table(result)
    book = Workbook(write_only=True)
    sheet = book.create_sheet(title=result.report.id[:31])
    sheet.append(header)
    formats = [excel_format(getattr(c, "format", None)) if _is_measure(c) else None for c in result.columns]
    if len(formats) != len(header) or not any(formats):
        formats = []  # a table shaped otherwise (a pivot): plain numbers
    for row in rows:
        if formats:
            row = [_excel_cell(sheet, v, f) if f and v is not None else v for v, f in zip(row, formats)]
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()
