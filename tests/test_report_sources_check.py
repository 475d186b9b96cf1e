"""`portal check` problems of cross-entity reports, derived measures, formats, styles and pivots (E730-E744)."""
from __future__ import annotations

import pytest
from test_check import coded, problems_for

HEAD = """version: 1
module: m
entities:
  P: {title: name, fields: {name: string, budget: decimal, start: date, kind: {type: enum, choices: [a, b]}}}
  L: {title: note, fields: {note: string, p: {type: link, to: P}, amount: decimal, day: date, who: user}}
  Q: {title: note, fields: {note: string, l: {type: link, to: L}, amount: decimal}}
reports:
"""
CROSS = HEAD + """  r:
    group_by: [p]
    sources:
      budget: {entity: P, key: id, measures: {budget: sum(budget), last: max(start)}}
      labour: {entity: L, key: p, measures: {labour: sum(amount)}}
"""

TIMED = HEAD + """  r:
    group_by: [month]
    sources:
      started: {entity: P, key: start:month, measures: {budget: sum(budget)}}
      spent: {entity: L, key: day:month, measures: {labour: sum(amount)}}
"""

# (yaml, line, code): one case per problem; the checker must name the file and the line
CASES = [
    (CROSS.replace("key: id,", "key: id, colour: red,"), 11, "E730"),                       # unknown source key
    (CROSS.replace("entity: L, key: p", "entity: Labour, key: p"), 12, "E731"),             # unknown source entity
    (CROSS.replace("sum(amount)", "sum(amont)"), 12, "E732"),                               # unknown measure field
    (CROSS.replace("key: p,", "key: pp,"), 12, "E732"),                                     # unknown key field
    (CROSS.replace("key: p,", "key: who,"), 12, "E733"),                                    # key is not a link to the group
    (CROSS.replace("labour: {entity: L, key: p", "labour: {entity: Q, key: l"), 12, "E733"),  # key links elsewhere
    (CROSS.replace("{labour: sum(amount)}", "{budget: sum(amount)}"), 12, "E734"),          # measure name clash
    (CROSS.replace("group_by: [p]", "group_by: [project]"), 9, "E735"),                     # group names nothing
    (CROSS + "    derived:\n      a: {expr: \"b + 1\"}\n      b: {expr: \"a * 2\"}\n", 14, "E738"),   # cycle A->B->A
    (CROSS + "    derived:\n      a: {expr: \"labour + materials\"}\n", 14, "E737"),        # unknown name
    (CROSS + "    derived:\n      a: {expr: \"labour / last\"}\n", 14, "E739"),             # division by a date
    (CROSS + "    derived:\n      a: {expr: \"labour +\"}\n", 14, "E736"),                  # syntax
    (CROSS + "    derived:\n      a: {expr: \"labour\", format: euro}\n", 14, "E740"),      # bad format
    (CROSS + "    derived:\n      a: {expr: \"labour\", style: {red: \"a < 0\"}}\n", 14, "E741"),  # bad style name
    (CROSS + "    derived:\n      a: {expr: \"labour\", style: {danger: \"a + 1\"}}\n", 14, "E742"),  # not true/false
    (CROSS + "    chart_measure: [budget, costs]\n", 13, "E715"),
    (HEAD + "  r: {entity: L, group_by: [p], measures: {s: {expr: sum(amount), format: cash}}}\n", 8, "E740"),
    (HEAD + "  r: {entity: L, group_by: [p], columns: note}\n", 8, "E743"),                # pivot on text
    (HEAD + "  r: {entity: L, group_by: [p], columns: day}\n", 8, "E743"),                 # date without bucket
    (HEAD + "  r: {entity: L, group_by: [p], cumulative: true}\n", 8, "E744"),             # cumulative without columns
    (CROSS + "    cumulative: true\n", 13, "E744"),                                      # running totals need date keys
    (TIMED.replace("day:month", "day:fortnight"), 12, "E733"),                              # unknown bucket
    (TIMED.replace("day:month", "note:month"), 12, "E733"),                                 # a bucket of a text field
    (TIMED.replace("day:month", "dy:month"), 12, "E732"),                                   # unknown date field
    (TIMED.replace("day:month", "day:week"), 12, "E733"),                                   # two buckets
    (TIMED.replace("key: start:month", "key: id"), 9, "E733"),                              # date keys mixed with a record key
]


@pytest.mark.parametrize("yaml_text,line,code", CASES)
def test_cross_report_problem(tmp_path, yaml_text, line, code):
    assert ("m.yaml", line, code) in coded(tmp_path, yaml_text), problems_for(tmp_path, yaml_text)


def test_good_cross_report_and_pivot_have_no_problem(tmp_path):
    good = CROSS + ('    derived:\n      cost: {expr: "labour * 2", format: money}\n'
                    '      used: {expr: "cost / budget", format: percent, style: {warning: "used > 0.9", danger: "used > 1"}}\n'
                    '    chart_measure: [budget, used]\n'
                    '  t: {entity: L, group_by: [p], columns: day:month, cumulative: true, measures: {s: {expr: sum(amount), format: money}}}\n'
                    '  k: {entity: P, group_by: [name], columns: kind}\n')
    assert problems_for(tmp_path, good) == []
    timed = TIMED + '    cumulative: true\n    derived:\n      net: {expr: "budget - labour", format: money}\n'
    assert problems_for(tmp_path, timed) == []
