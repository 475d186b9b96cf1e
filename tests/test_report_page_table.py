"""The report page's table and chart from a ReportResult shaped as the engine's contract says (formats, "styles",
"drill", pivots), built here in Python; and format_value in English and Chinese."""
from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from flask import Flask
from flask_babel import Babel

from app.data.reports.formats import format_value
from app.data.reports.output import chart_config, display_table, report_table_html, series_colour, table_html
from app.data.reports.query import ReportColumn, ReportResult


@pytest.fixture(scope="module")
def ctx():
    app = Flask(__name__)
    Babel(app)
    with app.test_request_context():
        yield app


@pytest.mark.parametrize("value, fmt, en, zh", [
    (1234.5, "money", "¥1,234.50", "¥1,234.50"),
    (-20, "money", "-¥20.00", "-¥20.00"),
    (0.934, "percent", "93%", "93%"),
    (1.5, "percent", "150%", "150%"),
    (1234567.891, "number", "1,234,567.89", "1,234,567.89"),
    (3 + 1 / 3, "duration", "3 h 20 min", "3小时20分"),
    (0.5, "duration", "30 min", "30分"),
    (2, "duration", "2 h", "2小时"),
    (1234, None, "1,234", "1,234"),
    (12.5, None, "12.50", "12.50"),
    (None, "money", "", ""),
])
def test_format_value(value, fmt, en, zh):
    assert format_value(value, fmt, "en") == en
    assert format_value(value, fmt, "zh") == zh


def test_format_value_follows_the_locales_separators():
    assert format_value(1234.5, "money", "de") == "1.234,50\xa0¥"
    assert format_value(0.934, "percent", "de") == "93\xa0%"
    assert format_value(1234.5, None, "de") == "1.234,50"


def column(key, label, kind, fmt=None):
    c = ReportColumn(key, label, kind)
    c.format = fmt  # the engine's ReportColumn.format (money, percent, number, duration or None)
    return c


def project_cost(pivot=False):
    report = SimpleNamespace(id="project_cost", label={"en": "Cost"}, chart="bar", chart_measure="budget",
                             chart_measures=("budget", "cost"))  # as the checker makes it
    columns = [column("project", "Project", "group"), column("budget", "Budget", "measure", "money"),
               column("cost", "Cost", "measure", "money"), column("used", "Used", "derived", "percent")]
    result = ReportResult(report, columns)
    result.rows = [
        {"project": {"value": 1, "label": "Tower <A>"}, "budget": 1000.0, "cost": 1234.5, "used": 1.2345,
         "styles": {"used": "danger", "cost": "evil\" onmouseover=\"x"}, "drill": "/labour_entry/list/?drill=%7B%22project%22%3A1%7D"},
        {"project": {"value": 2, "label": "Bridge"}, "budget": 2000.0, "cost": 1000.0, "used": 0.5,
         "drill": "/labour_entry/list/?drill=%7B%22project%22%3A2%7D"},
        {"project": {"value": None, "label": "(none)"}, "budget": None, "cost": 0, "used": None},
    ]
    result.totals = {"budget": 3000.0, "cost": 2234.5, "used": 0.7448, "styles": {"used": "warning"}}
    result.pivot_columns = []
    return result


def cells(html: str, tag="td"):
    return re.findall(rf'<{tag}( class="[^"]*")?>(.*?)</{tag}>', html)


def test_cells_are_formatted_styled_linked_and_right_aligned(ctx):
    html = str(table_html(display_table(project_cost(), "en"), "Show these records"))
    body = html.split("<tbody>")[1].split("</tbody>")[0]
    first = cells(body.split("</tr>")[0])
    assert first[0] == ("", "Tower &lt;A&gt;")  # group labels escaped, left-aligned
    budget, cost, used = first[1:]
    assert 'report-number' in budget[0] and ">¥1,000.00</a>" in budget[1]
    assert 'href="/labour_entry/list/?drill=%7B%22project%22%3A1%7D"' in budget[1]
    assert "report-danger" in used[0] and ">123%</a>" in used[1]
    assert "evil" not in cost[0] and "onmouseover" not in html  # an unknown style is no class at all
    last = cells(body.split("</tr>")[2])
    assert last[1] == (' class="report-number"', "") and "<a" not in last[2][1]  # no drill: no link
    foot = cells(html.split("<tfoot>")[1], "th")
    assert foot[0][1] == "Total" and "¥3,000.00" in foot[1][1] and "report-warning" in foot[3][0] and "74%" in foot[3][1]
    zh = str(table_html(display_table(project_cost(), "zh")))
    assert "¥1,234.50" in zh and "123%" in zh


def test_a_pivot_has_a_column_per_pivot_column_row_totals_and_column_totals(ctx):
    report = SimpleNamespace(id="labour_pivot", label={"en": "Pivot"}, chart="table", chart_measure=None, chart_measures=())
    result = ReportResult(report, [column("project", "Project", "group"), column("cost", "Cost", "measure", "money")])
    result.pivot_columns = [{"key": "2026-01", "label": "2026-01"}, {"key": "2026-02", "label": "2026-02"}]
    result.rows = [{"project": {"value": 1, "label": "Tower"}, "cost": 300.0,
                    "pivot": {"2026-01": {"cost": 100.0, "drill": "/labour_entry/list/?drill=jan"},
                              "2026-02": {"cost": 200.0, "drill": "/labour_entry/list/?drill=feb", "styles": {"cost": "success"}}},
                    "drill": "/labour_entry/list/?drill=tower"},
                   {"project": {"value": 2, "label": "Bridge"}, "cost": 50.0,
                    "pivot": {"2026-02": {"cost": 50.0, "drill": "/labour_entry/list/?drill=bridge-feb"}}}]
    result.totals = {"cost": 350.0, "pivot": {"2026-01": {"cost": 100.0}, "2026-02": {"cost": 250.0}}}
    html = str(table_html(display_table(result, "en")))
    assert [h[1] for h in cells(html.split("</thead>")[0], "th")] == ["Project", "2026-01", "2026-02", "Total"]
    rows = [cells(r) for r in html.split("<tbody>")[1].split("</tbody>")[0].split("</tr>")[:2]]
    assert [re.sub("<[^>]+>", "", c[1]) for c in rows[0]] == ["Tower", "¥100.00", "¥200.00", "¥300.00"]
    assert "drill=jan" in rows[0][1][1] and "drill=feb" in rows[0][2][1] and "drill=tower" in rows[0][3][1]
    assert "report-success" in rows[0][2][0]
    assert [re.sub("<[^>]+>", "", c[1]) for c in rows[1]] == ["Bridge", "", "¥50.00", "¥50.00"]
    assert [c[1] for c in cells(html.split("<tfoot>")[1], "th")] == ["Total", "¥100.00", "¥250.00", "¥350.00"]


def test_chart_has_a_drill_per_bar_and_a_colour_per_series_name(ctx):
    config = chart_config(project_cost())
    budget, cost = config["data"]["datasets"]
    assert [budget["label"], cost["label"]] == ["Budget", "Cost"]
    assert budget["drill"][:2] == ["/labour_entry/list/?drill=%7B%22project%22%3A1%7D",
                                   "/labour_entry/list/?drill=%7B%22project%22%3A2%7D"]
    assert budget["backgroundColor"] == series_colour("budget") != cost["backgroundColor"] == series_colour("cost")
    # the colour is the name's, not the position's: alone in another chart, cost keeps its colour
    alone = project_cost()
    alone.report.chart_measure, alone.report.chart_measures = "cost", ("cost",)
    assert chart_config(alone)["data"]["datasets"][0]["backgroundColor"] == series_colour("cost")


@pytest.mark.parametrize("locale", ["en", "zh"])
def test_the_one_pass_table_is_the_same_html(ctx, locale):
    """The page's one-pass renderer (report_table_html) must say exactly what table_html(display_table()) says."""
    for result in (project_cost(), project_cost()):
        assert str(report_table_html(result, locale, "hint")) == str(table_html(display_table(result, locale), "hint"))
    result = project_cost()
    result.rows[1]["cost"] = "<b>"  # not a number: escaped on both paths
    assert "&lt;b&gt;" in str(report_table_html(result, locale)) == str(table_html(display_table(result, locale)))


def many_workers(n: int, bucket=None):
    report = SimpleNamespace(id="by_worker", label={"en": "By worker"}, chart="bar", chart_measure="cost",
                             chart_measures=("cost",), group_by=(SimpleNamespace(field="worker", bucket=bucket),))
    result = ReportResult(report, [column("worker", "Worker", "group"), column("cost", "Wages", "measure", "money")])
    result.rows = [{"worker": {"value": i, "label": f"W{i}"}, "cost": float(i % 97),
                    "drill": f"/labour_entry/list/?drill=w{i}"} for i in range(1, n + 1)]
    return result


def test_a_chart_of_many_groups_shows_the_largest_and_says_so(ctx):
    """2,000 bars are unreadable: the 50 largest by the chart measure, largest first, each bar still opening its
    own records, and a note under the title; the table keeps every group."""
    result = many_workers(2000)
    config = chart_config(result)
    data = config["data"]["datasets"][0]
    by_cost = sorted(result.rows, key=lambda r: r["cost"], reverse=True)[:50]
    assert config["data"]["labels"] == [r["worker"]["label"] for r in by_cost]
    assert data["data"] == [r["cost"] for r in by_cost] and data["drill"] == [r["drill"] for r in by_cost]
    assert config["options"]["plugins"]["subtitle"]["text"] == \
        "The 50 largest of 2000 groups by Wages; the table lists all."
    assert report_table_html(result).count("<tr>") == 2000 + 1  # every group in the table, and the header
    months = chart_config(many_workers(60, bucket="month"))  # a date axis keeps its order: the latest periods
    assert months["data"]["labels"] == [f"W{i}" for i in range(11, 61)] and "60 periods" in \
        months["options"]["plugins"]["subtitle"]["text"]
    few = chart_config(many_workers(50))
    assert len(few["data"]["labels"]) == 50 and "subtitle" not in few["options"]["plugins"]


def test_the_chart_note_in_chinese():
    from pathlib import Path

    from app.runtime.locale import compile_catalogs

    translations = Path(__file__).resolve().parent.parent / "translations"
    compile_catalogs(translations)  # as the app factory does
    app = Flask(__name__)
    Babel(app, locale_selector=lambda: "zh", default_translation_directories=str(translations))
    with app.test_request_context():
        note = chart_config(many_workers(60))["options"]["plugins"]["subtitle"]["text"]
    assert note == "按Wages列出 60 组中最大的 50 组，表格列出全部。"  # the measure label as the report gives it


@pytest.mark.parametrize("locale", ["en", "zh", "de"])
def test_plain_numbers_on_the_one_pass_table_read_as_the_formatter_writes_them(ctx, locale):
    """Plain measures (no format) take format() with a memo per value on the page's table: the same text as
    table_html(display_table()); 1 and 1.0 stay apart ("1" and "1.00")."""
    report = SimpleNamespace(id="by_worker", label={"en": "By worker"}, chart="table", chart_measure=None,
                             chart_measures=())
    result = ReportResult(report, [column("worker", "Worker", "group"), column("days", "Days", "measure"),
                                   column("entries", "Entries", "measure")])
    values = [(1.0, 1), (1, 1.0), (1234567.891, 1234), (1.0, None), (-2.5, 0)]
    result.rows = [{"worker": {"value": i, "label": f"W{i}"}, "days": d, "entries": n, "drill": f"/x/list/?drill={i}"}
                   for i, (d, n) in enumerate(values)]
    result.totals = {"days": 1234568.391, "entries": 1236}
    html = str(report_table_html(result, locale))
    assert html == str(table_html(display_table(result, locale)))
    if locale == "en":
        assert ">1.00</a>" in html and ">1</a>" in html and ">1,234,567.89</a>" in html and ">-2.50</a>" in html
