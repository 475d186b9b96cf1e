"""The expression language (app/schema/expressions.py): parsing, SQL-like null rules, static types, and
`portal check` codes for formulas and rules."""
from __future__ import annotations

import datetime as dt
import textwrap
from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st

from app.schema.expressions import (
    Expression, ExpressionError, ExpressionTypeError, NUMBER, TEXT, DATE, BOOLEAN, infer, parse,
)
from app.schema import load_portal

D = Decimal


def run(source, **values):
    return Expression.of(source).evaluate_values({k.replace("__", "."): v for k, v in values.items()})


@pytest.mark.parametrize("source,values,expected", [
    ("round(days * rate, 2)", {"days": D("1.5"), "rate": D("333.335")}, D("500.00")),
    ("round(2.5)", {}, D("3")),
    ("round(-2.5)", {}, D("-3")),
    ("round(0.125, 2)", {}, D("0.13")),  # half up, not banker's rounding
    ("1 + 2 * 3 - 4 / 2", {}, D("5")),
    ("(1 + 2) * 3", {}, D("9")),
    ("-x + 1", {"x": 3}, D("-2")),
    ("x / 0", {"x": 1}, None),
    ("x * 2", {"x": None}, None),
    ("hours <= days * 12", {"hours": D(13), "days": D(1)}, False),
    ("hours <= days * 12", {"hours": D(12), "days": D(1)}, True),
    ("hours <= days * 12", {"hours": None, "days": D(1)}, None),
    ("end_date == null or end_date >= start_date", {"end_date": None, "start_date": dt.date(2026, 1, 1)}, True),
    ("end_date == null or end_date >= start_date", {"end_date": dt.date(2025, 1, 1), "start_date": dt.date(2026, 1, 1)}, False),
    ("end_date != null", {"end_date": None}, False),
    ("a and b", {"a": True, "b": None}, None),
    ("a and b", {"a": False, "b": None}, False),
    ("a or b", {"a": None, "b": True}, True),
    ("not a", {"a": None}, None),
    ("not a", {"a": False}, True),
    ("coalesce(x, y, 0)", {"x": None, "y": D(4)}, D(4)),
    ("if(x > 1, 'big', 'small')", {"x": 5}, "big"),
    ("if(x > 1, 'big', 'small')", {"x": None}, "small"),
    ("min(a, b)", {"a": D(2), "b": 1}, D(1)),
    ("max(a, b)", {"a": D(2), "b": None}, None),
    ("abs(x)", {"x": D("-2.5")}, D("2.5")),
    ("'TK-' + code", {"code": "7"}, "TK-7"),
    ('concat("n=", n, " ", flag, missing)', {"n": D("1.50"), "flag": True, "missing": None}, "n=1.50 true"),
    ("len(name)", {"name": "张伟"}, D(2)),
    ("year(d) * 10000 + month(d) * 100 + day(d)", {"d": dt.date(2026, 3, 9)}, D(20260309)),
    ("days_between(a, b)", {"a": dt.date(2026, 1, 1), "b": dt.datetime(2026, 1, 31, 12)}, D(30)),
    ("worker.day_rate * 2", {"worker__day_rate": D("300")}, D("600")),
    ("x == y", {"x": 1, "y": D("1.0")}, True),
    ("x < y", {"x": "a", "y": 1}, None),  # values of the wrong kind give null, not an exception
])
def test_evaluation(source, values, expected):
    result = run(source, **values)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize("source,column", [("x *", 3), ("round(x,, 2)", 9), ("x = 1", 3), ("a.b.c", 4), ("", 1),
                                           ("`rm`", 1), ("x; y", 2)])
def test_syntax_errors_name_the_column(source, column):
    with pytest.raises(ExpressionError) as caught:
        parse(source)
    assert caught.value.column == column


FIELD_TYPES = {("n",): NUMBER, ("t",): TEXT, ("d",): DATE, ("b",): BOOLEAN, ("w", "rate"): NUMBER}


@pytest.mark.parametrize("source,expected", [
    ("n * 2", NUMBER), ("t + 'x'", TEXT), ("n > 1 and b", BOOLEAN), ("days_between(d, d)", NUMBER),
    ("if(b, n, null)", NUMBER), ("concat(n, t)", TEXT), ("w.rate + n", NUMBER), ("coalesce(t, 'x')", TEXT),
])
def test_static_types(source, expected):
    assert infer(parse(source), FIELD_TYPES.__getitem__) == expected


@pytest.mark.parametrize("source", ["t * 2", "n + t", "d < n", "b + 1", "not n", "round(t)", "len(n)",
                                    "year(n)", "if(n, 1, 2)", "if(b, 1, 'x')", "min(n, t)", "round(1, 2, 3)",
                                    "nosuch(1)", "n == t"])
def test_type_mismatches(source):
    with pytest.raises(ExpressionTypeError):
        infer(parse(source), FIELD_TYPES.__getitem__)


VALUES = st.one_of(st.none(), st.integers(-10**30, 10**30), st.decimals(allow_nan=True, allow_infinity=True, places=4),
                   st.floats(), st.text(max_size=5), st.booleans(), st.dates())
EXPRESSIONS = ["round(a * b, 2)", "a / b", "a - b + a * b", "min(a, b)", "max(a, b)", "abs(a)", "a <= b * 12",
               "a == null or a >= b", "coalesce(a, b)", "if(a > b, a, b)", "concat(a, b)", "len(a)", "year(a)",
               "days_between(a, b)", "not (a and b)", "round(a, b)", "a + b"]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(EXPRESSIONS), VALUES, VALUES)
def test_evaluation_never_raises(source, a, b):
    """Whatever the stored values (nulls, huge numbers, NaN, text where a number is expected), an
    expression gives a value or null: a record never fails to save because a formula raised."""
    run(source, a=a, b=b)


def _check(tmp_path, entities: str):
    (tmp_path / "m.yaml").write_text("version: 1\nmodule: m\nentities:\n" + textwrap.indent(textwrap.dedent(entities), "  "),
                                     encoding="utf-8")
    return load_portal(tmp_path)


def test_a_good_schema_gets_typed_formulas_in_dependency_order(tmp_path):
    spec, problems = _check(tmp_path, """\
        Worker:
          fields:
            name: string
            day_rate: decimal
        Entry:
          fields:
            worker: {type: link, to: Worker}
            days: decimal
            total: {type: decimal, formula: "amount + 1"}
            amount: {type: decimal, formula: "round(days * worker.day_rate, 2)"}
          rules:
            - {check: "days <= 3", fields: [days], message: {en: Too many, zh: 太多}}
            - {check: "days != null", message: {en: Say how many days}}
        """)
    assert problems == []
    entry = spec.entity("Entry")
    assert entry.formula_order == ("amount", "total")
    assert entry.field("amount").readonly and [r.fields for r in entry.rules] == [("days",), ()]


@pytest.mark.parametrize("fields,rules,code,line", [
    ('x: integer\ny: {type: integer, formula: "x *"}', "", "E311", 5),
    ('x: integer\ny: {type: integer, formula: "xx * 2"}', "", "E312", 5),
    ('w: {type: link, to: A}\ny: {type: integer, formula: "w.nosuch"}', "", "E312", 5),
    ('x: string\ny: {type: integer, formula: "x * 2"}', "", "E313", 5),
    ('x: integer\ny: {type: string, formula: "x * 2"}', "", "E313", 5),
    ('x: integer\ny: {type: integer, formula: "z + 1"}\nz: {type: integer, formula: "y + 1"}', "", "E314", 5),
    ('x: integer', "rules: [{check: 'x > 0', fields: [y], message: {en: Positive}}]", "E315", 5),
    ('x: integer', "rules: [{check: 'x + 1', fields: [x], message: {en: Positive}}]", "E313", 5),
    ('x: integer', "rules: [{check: 'x >', fields: [x], message: {en: Positive}}]", "E311", 5),
    ('x: string\np: {type: link, to: A, formula: "x"}', "", "E316", 5),
])
def test_problem_codes(tmp_path, fields, rules, code, line):
    body = "A:\n  fields:\n" + textwrap.indent(fields, "    ") + "\n" + textwrap.indent(rules, "  ")
    spec, problems = _check(tmp_path, body)
    assert spec is None
    assert code in [p.code for p in problems], [str(p) for p in problems]
