"""`portal check` problems of `dashboards:` (E790–E799), each at the line of the dashboard or tile it is about."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from app.schema import load_portal
from app.schema.dashboards import portal_dashboards, report_measure_names
from app.schema.i18n_check import missing_translations

HEAD = """\
version: 1
module: m
entities:
  A: {title: x, fields: {x: string, n: decimal, d: date}}
reports:
  r: {entity: A, group_by: [x], measures: {t: sum(n), c: count, m: max(n), a: avg(n)}}
views:
  v: {entity: A, filter: {x: a}}
roles:
  Clerk: {can: {A: [read]}, reports: [r]}
dashboards:
"""  # dashboards start on line 12


def coded(tmp_path: Path, dashboards: str) -> list[tuple[int, str]]:
    (tmp_path / "m.yaml").write_text(HEAD + dashboards, encoding="utf-8")
    spec, problems = load_portal(tmp_path)
    assert (spec is None) == bool(problems)
    return sorted({(p.line, p.code) for p in problems})


@pytest.mark.parametrize("dashboards,expected", [
    ("  Bad-Id: {tiles: [{chart: r}]}\n", [(12, "E790")]),
    ("  d:\n    tiles: [{chart: r}]\n    colour: red\n", [(14, "E791")]),
    ("  d: {label: Board}\n", [(12, "E792")]),
    ("  d:\n    tiles: []\n", [(13, "E792")]),
    ("  d:\n    tiles:\n      - {chart: r, table: r}\n", [(14, "E793")]),
    ("  d:\n    tiles:\n      - {chart: r}\n      - {kpi: r.t, colour: red}\n", [(15, "E793")]),
    ("  d:\n    tiles:\n      - graph\n", [(14, "E793")]),
    ("  d:\n    tiles:\n      - {chart: r}\n      - {kpi: nope.t}\n", [(15, "E794")]),       # unknown report
    ("  d:\n    tiles:\n      - {kpi: r.cost}\n", [(14, "E794")]),                            # unknown measure
    ("  d:\n    tiles:\n      - {kpi: r.t, target: r.budget}\n", [(14, "E794")]),             # unknown target
    ("  d:\n    tiles:\n      - {kpi: r}\n", [(14, "E794")]),                                 # not report.measure
    ("  d:\n    tiles:\n      - {view: nope}\n", [(14, "E794")]),                             # unknown view
    ("  d:\n    tiles:\n      - {table: nope}\n", [(14, "E794")]),
    ("  d:\n    tiles:\n      - {kpi: r.m}\n", [(14, "E795")]),                               # max: no total
    ("  d:\n    tiles:\n      - {kpi: r.t, target: r.a}\n", [(14, "E795")]),                  # avg target
    ("  d:\n    tiles:\n      - {kpi: r.t, compare: last_year}\n", [(14, "E796")]),
    ("  d:\n    period: yesterday\n    tiles: [{chart: r}]\n", [(13, "E797")]),
    ("  d:\n    roles: [Clerk, Nobody]\n    tiles: [{chart: r}]\n", [(12, "E798")]),
    ("  d:\n    home: yes please\n    tiles: [{chart: r}]\n", [(13, "E002")]),
])
def test_dashboard_problems_have_their_code_and_line(tmp_path, dashboards, expected):
    assert coded(tmp_path, dashboards) == expected


def test_max_measure_problem_explains_why(tmp_path):
    (tmp_path / "m.yaml").write_text(HEAD + "  d:\n    tiles: [{kpi: r.a}]\n", encoding="utf-8")
    _, problems = load_portal(tmp_path)
    assert "avg(...), which has no total" in str(problems[0]) and "use a count, a sum or a derived measure" in str(problems[0])


def test_dashboard_defined_in_two_modules(tmp_path):
    (tmp_path / "b.yaml").write_text("version: 1\nmodule: b\nentities:\n  B: {fields: {y: string}}\n"
                                     "dashboards:\n  d: {tiles: [{chart: r}]}\n", encoding="utf-8")
    (tmp_path / "m.yaml").write_text(HEAD + "  d: {tiles: [{chart: r}]}\n", encoding="utf-8")
    _, problems = load_portal(tmp_path)
    assert [(Path(p.file).name, p.line, p.code) for p in problems] == [("m.yaml", 12, "E799")]


def test_a_good_dashboard_is_read_with_defaults(tmp_path):
    good = """\
      d:
        label: {en: Board, zh: 看板}
        roles: [Clerk]
        tiles:
          - {kpi: r.t, compare: previous_period, target: r.c, label: {en: Total, zh: 合计}}
          - {kpi: r.c}
          - {chart: r}
          - {table: r}
          - {view: v}
    """
    assert coded(tmp_path, textwrap.indent(textwrap.dedent(good), "  ")) == []
    spec, _ = load_portal(tmp_path)
    (board,) = portal_dashboards(spec)
    assert (board.period, board.home, board.roles) == ("this_month", False, ("Clerk",))
    assert [(t.kind, t.target, t.measure, t.compare, t.goal) for t in board.tiles] == [
        ("kpi", "r", "t", "previous_period", ("r", "c")), ("kpi", "r", "c", None, None), ("chart", "r", None, None, None),
        ("table", "r", None, None, None), ("view", "v", None, None, None)]
    assert report_measure_names(spec.report("r")) == ["t", "c", "m", "a"]
    # a dashboard label without zh, and a tile label without zh, are `check --i18n` problems
    assert {p.line for p in missing_translations(spec) if "dashboard" in p.message} == set()


def test_measure_names_include_derived_measures():
    class Derived:
        name = "variance"

    class Report:
        measures = ()
        derived = (Derived(),)

    assert report_measure_names(Report()) == ["variance"]


def test_missing_dashboard_translations_are_i18n_problems(tmp_path):
    (tmp_path / "m.yaml").write_text(HEAD + "  d:\n    label: Board\n    tiles:\n      - {chart: r, label: Chart}\n",
                                     encoding="utf-8")
    spec, problems = load_portal(tmp_path)
    assert problems == []
    lines = sorted(p.line for p in missing_translations(spec) if "dashboard 'd'" in p.message)
    assert lines == [12, 15]
