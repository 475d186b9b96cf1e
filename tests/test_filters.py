"""The one filter language (app/schema/filters.py, app/rules/filters.py): the SQL agrees with a reference written
out in Python on every row, relative values are resolved at use, and a filter sent at run time is refused with the checker's code."""
from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from tiny_portal import MODELS, SPEC, Job, tiny_database

from app.rules.filters import FilterContext, filter_clause, resolve
from app.schema.filters import Condition, FilterProblem, Relative, filter_json, parse_filter
from app.schema.spec import FieldSpec

ENTITIES = {e.name: e for e in SPEC.entities}
NOW = dt.datetime(2026, 1, 15, 10, 30)
CTX = FilterContext(user_id=2, now=NOW)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    db = tiny_database(tmp_path_factory, "filters")
    yield db
    db.engine.dispose()


# -- the reference: each operator's meaning written out in Python, on loaded records -----------------------

def _python_value(record, names):
    for name in names:
        if record is None:
            return None
        record = getattr(record, name, None)
    return record


def matches(spec, entity_name: str, record, conditions, ctx: FilterContext) -> bool:
    """The filter's test on a loaded record, as the language defines it (an empty value is "not x")."""
    entity = spec.entity(entity_name)
    for c in conditions:
        f = entity.field(c.path[0])
        if len(c.path) == 2:
            target = spec.entity(f.to).field(c.path[1])
            value = _python_value(record, (f.name, target.column_name))
            f = target
        else:
            value = _python_value(record, (f.column_name,))
        if not _holds(value, f, c, ctx):
            return False
    return True


def _holds(value, f: FieldSpec, c: Condition, ctx: FilterContext) -> bool:
    if c.op == "null":
        return (value is None) == bool(c.value)
    wanted = resolve(c.value, f, ctx)
    if c.op == "ne":
        return value is None or (value not in wanted if isinstance(wanted, tuple) else value != wanted)
    if value is None:
        return False
    if isinstance(value, dt.datetime) and type(wanted) is dt.date:
        wanted = dt.datetime.combine(wanted, dt.time())
    if c.op == "eq":
        return value == wanted
    if c.op == "in":
        return value in wanted
    if c.op == "contains":
        return str(wanted).lower() in str(value).lower()
    return {"lt": value < wanted, "lte": value <= wanted, "gt": value > wanted, "gte": value >= wanted}[c.op]


def _ids_sql(tiny, conditions) -> set:
    with tiny.session() as session:
        return set(session.scalars(select(Job.id).where(filter_clause(SPEC, MODELS, "Job", conditions, CTX))))


def _ids_python(tiny, conditions) -> set:
    with tiny.session() as session:
        return {job.id for job in session.scalars(select(Job)) if matches(SPEC, "Job", job, conditions, CTX)}


# one strategy per field: (path, operators, values)
VALUES = {
    ("status",): (["eq", "ne", "in"], st.sampled_from(["open", "done"])),
    ("hours",): (["eq", "ne", "lt", "lte", "gt", "gte", "in"], st.integers(0, 12)),
    ("cost",): (["lt", "gte", "ne"], st.decimals(0, 500, places=2).map(str)),
    ("done_on",): (["lt", "lte", "gt", "gte", "eq"], st.one_of(
        st.dates(dt.date(2025, 12, 1), dt.date(2026, 4, 1)).map(str),
        st.integers(-90, 90).map(lambda n: f"$today{n:+d}d"))),
    ("started_at",): (["lt", "gte"], st.one_of(
        st.integers(-2000, 2000).map(lambda n: f"$now{n:+d}h"), st.integers(-60, 60).map(lambda n: f"$today{n:+d}d"))),
    ("title",): (["contains", "eq", "ne"], st.sampled_from(["job 1", "JOB 2", "7", "%", "_", "job"])),
    ("owner",): (["eq", "ne"], st.just("$user")),
    ("urgent",): (["eq", "ne"], st.booleans()),
    ("site", "region"): (["eq", "ne", "in"], st.sampled_from(["north", "south"])),
}


@st.composite
def conditions(draw):
    raw = {}
    for path in draw(st.lists(st.sampled_from(sorted(VALUES)), min_size=1, max_size=3, unique=True)):
        ops, values = VALUES[path]
        op = draw(st.sampled_from(ops + ["null"]))
        if op == "null":
            operand = draw(st.booleans())
        elif op == "in":
            operand = draw(st.lists(values, min_size=1, max_size=3))
        else:
            operand = draw(values)
        raw[".".join(path)] = {op: operand}
    return raw


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=conditions())
def test_sql_and_python_agree_on_every_row(tiny, raw):
    parsed = parse_filter(ENTITIES, "Job", raw)
    assert _ids_sql(tiny, parsed) == _ids_python(tiny, parsed)


def test_a_filter_selects_what_it_says(tiny):
    rows = {r["id"]: r for r in tiny.rows}
    f = parse_filter(ENTITIES, "Job", {"status": "open", "hours": {"gte": 8}, "owner": "$user"})
    expected = {i for i, r in rows.items() if r["status"] == "open" and (r["hours"] or -1) >= 8 and r["owner_id"] == 2}
    assert expected and _ids_sql(tiny, f) == expected
    f = parse_filter(ENTITIES, "Job", {"done_on": {"lt": "$today+10d"}, "cost": {"null": True}})
    expected = {i for i, r in rows.items() if r["done_on"] and r["done_on"] < NOW.date() + dt.timedelta(days=10)
                and r["cost"] is None}
    assert expected and _ids_sql(tiny, f) == expected
    f = parse_filter(ENTITIES, "Job", {"status": {"ne": "open"}})  # ne keeps nothing out but "open"
    assert _ids_sql(tiny, f) == {i for i, r in rows.items() if r["status"] != "open"}
    f = parse_filter(ENTITIES, "Job", {"site.region": "north"})
    assert _ids_sql(tiny, f) == {i for i, r in rows.items() if r["site_id"] == 1}


def test_relative_values_are_resolved_when_used():
    job = ENTITIES["Job"]
    assert resolve(Relative("today", 3), job.field("done_on"), CTX) == dt.date(2026, 1, 18)
    assert resolve(Relative("today", -1), job.field("started_at"), CTX) == dt.datetime(2026, 1, 14)  # midnight
    assert resolve(Relative("now", -2, "h"), job.field("started_at"), CTX) == dt.datetime(2026, 1, 15, 8, 30)
    assert resolve(Relative("now", 30, "m"), job.field("started_at"), CTX) == dt.datetime(2026, 1, 15, 11, 0)
    assert resolve(Relative("user"), job.field("owner"), CTX) == 2
    tomorrow = FilterContext(user_id=2, now=NOW + dt.timedelta(days=1))
    f = parse_filter(ENTITIES, "Job", {"done_on": {"lt": "$today"}})
    assert resolve(f[0].value, job.field("done_on"), tomorrow) == dt.date(2026, 1, 16)


@pytest.mark.parametrize("raw,code", [
    ({"nope": 1}, "E761"), ({"title.x": 1}, "E763"), ({"site.region.x": 1}, "E762"), ({"site": 1}, "E764"),
    ({"hours": "many"}, "E765"), ({"status": "closed"}, "E766"), ({"hours": {"like": 1}}, "E767"),
    ({"title": {"lt": "b"}}, "E768"), ({"status": {"contains": "o"}}, "E768"), ({"title": "$user"}, "E769"),
    ({"owner": 3}, "E770"), ({"done_on": {"lt": "$now"}}, "E771"), ({"title": "$today"}, "E771"),
    ({"done_on": "$today+2h"}, "E771"), ({"title": "$tomorrow"}, "E771"), ({"hours": {"in": 3}}, "E772"),
    ({"hours": {"lt": [1, 2]}}, "E772"), ({"hours": {"null": "yes"}}, "E765"), (["status"], "E760"),
    ({"hours": {"in": []}}, "E772"), ({"cost": {"gte": "1e999999"}}, "E765"),
])
def test_a_filter_sent_at_run_time_is_refused_with_its_code(raw, code):
    with pytest.raises(FilterProblem) as problem:
        parse_filter(ENTITIES, "Job", raw)
    assert problem.value.code == code, problem.value.message


def test_without_user_a_user_filter_matches_nothing(tiny):
    f = parse_filter(ENTITIES, "Job", {"owner": "$user"})
    anonymous = FilterContext(user_id=None, now=NOW)
    with tiny.session() as session:
        assert session.scalars(select(Job.id).where(filter_clause(SPEC, MODELS, "Job", f, anonymous))).all() == []
    with pytest.raises(FilterProblem):
        parse_filter(ENTITIES, "Job", {"owner": "$user"}, user=False)


def test_filter_json_reads_back_to_the_same_conditions():
    raw = {"status": ["open"], "hours": {"gte": 2, "lt": 9}, "done_on": {"lt": "$today+3d"}, "owner": "$user",
           "cost": {"null": False}, "title": {"contains": "job"}}
    parsed = parse_filter(ENTITIES, "Job", raw)
    assert filter_json(parsed) == raw
    again = parse_filter(ENTITIES, "Job", filter_json(parsed))
    assert [(c.path, c.op, c.value) for c in again] == [(c.path, c.op, c.value) for c in parsed]
    assert Condition(("owner",), "eq", Relative("user")).is_current_user
