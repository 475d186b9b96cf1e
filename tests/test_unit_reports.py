"""Unit tests of the report SQL (app/data/reports/query.py): one GROUP BY statement per report, run on the
database of the run (SQLite or PostgreSQL) over known rows, every number computed again in Python here.
No Flask app: the spec of tests/fixtures/tiny and its tables (tests/tiny_portal.py)."""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from tiny_portal import MODELS, SITES, SPEC, User, tiny_database

from app.data.reports.query import ReportParams, ReportQuery, ReportRefused, bucket_expression, date_field_of
from app.rules.access import Viewer

SITE_NAME = {site_id: name for site_id, name, _ in SITES}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    database = tiny_database(tmp_path_factory, "unit_reports")
    yield database
    database.engine.dispose()


def run(tiny, report_id, params=ReportParams(), roles=("Admin",), user_id=1):
    with tiny.session() as session:
        query = ReportQuery(SPEC, MODELS, session, Viewer(SPEC, User.with_roles(user_id, *roles), "Admin"))
        return query.run(SPEC.report(report_id), params)


def money(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(float(sum(values, Decimal(0))), 2) if values else None


def total(values):
    """SQL's SUM: NULLs are skipped; no value at all gives NULL."""
    values = [v for v in values if v is not None]
    return sum(values) if values else None


def by(rows, key):
    groups = defaultdict(list)
    for row in rows:
        groups[key(row)].append(row)
    return groups


def table(result, *group_keys):
    """{group values: {measure: number}} of a report result."""
    measures = [c.key for c in result.columns if c.kind == "measure"]
    return {tuple(row[g]["value"] for g in group_keys): {m: row[m] for m in measures} for row in result.rows}


def test_group_by_enum_with_every_aggregate(tiny):
    result = run(tiny, "by_status")
    assert [c.key for c in result.columns] == ["status", "n", "total", "mean", "low", "high", "sites"]
    expected = {}
    for status, rows in by(tiny.rows, lambda r: r["status"]).items():
        hours = [r["hours"] for r in rows if r["hours"] is not None]
        expected[(status,)] = {"n": len(rows), "total": money(r["cost"] for r in rows),
                               "mean": pytest.approx(sum(hours) / len(hours), abs=0.006), "low": min(hours),
                               "high": max(hours), "sites": len({r["site_id"] for r in rows} - {None})}
    assert table(result, "status") == expected
    assert [row["status"]["value"] for row in result.rows] == ["done", "open"]  # ordered by the group key
    assert result.totals == {"n": len(tiny.rows), "total": money(r["cost"] for r in tiny.rows)}  # no avg/min/max totals
    assert result.date_field == "done_on"  # the first date field when the report names none


def test_group_by_link_and_boolean_joins_titles(tiny):
    result = run(tiny, "by_site")
    expected = {(site, urgent): {"n": len(rows), "total": money(r["cost"] for r in rows)}
                for (site, urgent), rows in by(tiny.rows, lambda r: (r["site_id"], r["urgent"])).items()}
    assert table(result, "site", "urgent") == expected
    labels = {row["site"]["value"]: row["site"]["label"] for row in result.rows}
    assert labels == {**{i: SITE_NAME[i] for i in SITE_NAME}, None: "(none)"}
    assert {row["urgent"]["label"] for row in result.rows} == {"Yes", "No"}


def test_report_filter_and_parameter_filters(tiny):
    open_rows = [r for r in tiny.rows if r["status"] == "open"]
    expected = {(site,): {"n": len(rows)} for site, rows in by(open_rows, lambda r: r["site_id"]).items()}
    assert table(run(tiny, "open_by_site"), "site") == expected
    only_site_2 = run(tiny, "open_by_site", ReportParams(filters=(("site", "2"),)))
    assert table(only_site_2, "site") == {(2,): expected[(2,)]}
    urgent = run(tiny, "by_status", ReportParams(filters=(("urgent", "true"),)))
    assert sum(row["n"] for row in urgent.rows) == sum(1 for r in tiny.rows if r["urgent"])
    no_status = run(tiny, "by_site", ReportParams(filters=(("status", ""),)))  # blank: rows without a value
    assert no_status.rows == []
    for bad in [("site", "abc"), ("site", "0"), ("status", "nope"), ("hours", "x")]:
        with pytest.raises(ReportRefused):
            run(tiny, "open_by_site", ReportParams(filters=(bad,)))


def iso_week_monday(day: dt.date) -> str:
    return (day - dt.timedelta(days=day.weekday())).isoformat()


BUCKETS = {
    "by_day": lambda d: d.isoformat(),
    "by_week": iso_week_monday,
    "by_month": lambda d: f"{d.year}-{d.month:02d}",
    "by_quarter": lambda d: f"{d.year}-Q{(d.month - 1) // 3 + 1}",
    "by_year": lambda d: str(d.year),
}


@pytest.mark.parametrize("report_id", list(BUCKETS))
def test_date_buckets(tiny, report_id):
    bucket = BUCKETS[report_id]
    result = run(tiny, report_id)
    groups = by(tiny.rows, lambda r: None if r["done_on"] is None else bucket(r["done_on"]))
    expected = {(key,): {"n": len(rows), "hours": total([r["hours"] for r in rows])} for key, rows in groups.items()}
    assert table(result, "done_on") == expected
    assert len(result.rows) > 2  # the rows span several buckets (they cross a year end)


def test_datetime_bucket_and_date_range(tiny):
    result = run(tiny, "started_by_month")
    expected = by(tiny.rows, lambda r: r["started_at"] and r["started_at"].strftime("%Y-%m"))
    assert table(result, "started_at") == {(k,): {"n": len(v)} for k, v in expected.items()}
    assert result.date_field == "started_at"  # the grouped date
    since = dt.date(2026, 1, 10)
    ranged = run(tiny, "started_by_month", ReportParams(date_from=since, date_to=dt.date(2026, 1, 31)))
    inside = [r for r in tiny.rows if r["started_at"] and since <= r["started_at"].date() <= dt.date(2026, 1, 31)]
    assert table(ranged, "started_at") == {("2026-01",): {"n": len(inside)}}
    no_end = run(tiny, "by_month", ReportParams(date_to=dt.date.max))  # 9999-12-31: no end, so no condition at all
    assert sum(row["n"] for row in no_end.rows) == len(tiny.rows)
    later = run(tiny, "by_month", ReportParams(date_from=dt.date(2026, 3, 1), date_to=dt.date.max))
    assert sum(row["n"] for row in later.rows) == sum(1 for r in tiny.rows if r["done_on"] and r["done_on"] >= dt.date(2026, 3, 1))


def test_average_hours_between_two_datetimes(tiny):
    pairs = [(r["ended_at"] - r["started_at"]).total_seconds() / 3600 for r in tiny.rows if r["started_at"] and r["ended_at"]]
    result = run(tiny, "duration")
    assert [{k: v for k, v in row.items() if k != "drill"} for row in result.rows] == [
        {"n": len(tiny.rows), "h": pytest.approx(sum(pairs) / len(pairs), abs=0.006)}]
    assert result.rows[0]["drill"] == "/job/list/?drill=%7B%7D"  # no group, no filter: every record


def test_row_scope_and_hidden_fields_of_the_viewer(tiny):
    north = {i for i, _, region in SITES if region == "north"}
    result = run(tiny, "by_status", roles=("North",))
    assert "total" not in [c.key for c in result.columns]  # sum(cost): cost is hidden from North
    assert sum(row["n"] for row in result.rows) == sum(1 for r in tiny.rows if r["site_id"] in north)
    own = run(tiny, "by_status", roles=("Owner",), user_id=2)
    assert sum(row["n"] for row in own.rows) == sum(1 for r in tiny.rows if r["owner_id"] == 2)
    with pytest.raises(ReportRefused):
        run(tiny, "by_site", roles=("Owner",))  # groups by `urgent`, hidden from Owner
    assert run(tiny, "by_status", roles=("Owner",), user_id=None).rows == []  # scoped and anonymous: no rows


def test_statement_compiles_for_both_dialects(tiny):
    """The same report builds PostgreSQL SQL (to_char/date_trunc) and SQLite SQL (strftime/date) from one spec."""
    pg = create_engine("postgresql+psycopg2://nobody@127.0.0.1:9/none")  # never connects: compile only
    texts = {}
    for name, engine in (("postgresql", pg), ("sqlite", create_engine("sqlite://"))):
        with Session(engine) as session:
            query = ReportQuery(SPEC, MODELS, session, Viewer(SPEC, User.with_roles(1, "North"), "Admin"))
            texts[name] = {rid: str(query.statement(SPEC.report(rid), ReportParams(date_from=dt.date(2026, 1, 1)))[0]
                                    .compile(engine)) for rid in ("by_week", "by_quarter", "duration", "by_site")}
    assert "date_trunc" in texts["postgresql"]["by_week"] and "to_char" in texts["postgresql"]["by_quarter"]
    assert "extract(epoch" in texts["postgresql"]["duration"].lower()
    assert "strftime" in texts["sqlite"]["by_quarter"] and "julianday" in texts["sqlite"]["duration"]
    for dialect in texts.values():
        for rid, sql in dialect.items():
            assert "EXISTS" in sql, sql  # North's row scope (site.region): a subquery
            assert ("GROUP BY" in sql) == (rid != "duration"), sql
    assert "LEFT OUTER JOIN site" in texts["sqlite"]["by_site"]  # titles joined onto the groups
    pg.dispose()
    with pytest.raises(KeyError):
        bucket_expression(MODELS["Job"].done_on, "fortnight", "sqlite")


def test_date_field_of():
    job = SPEC.entity("Job")
    assert date_field_of(SPEC.report("by_status"), job) == "done_on"
    assert date_field_of(SPEC.report("started_by_month"), job) == "started_at"


# -- what is done with a result: the chart -----------------------------------------------------------------------

def test_chart_config_of_a_report_without_groups(tiny):
    from app.data.reports.output import chart_config

    config = chart_config(run(tiny, "duration"))
    assert config["data"]["datasets"][0]["data"] == [len(tiny.rows)]  # the first measure (n), one bar
    by_site = chart_config(run(tiny, "by_site"))  # two groups: the second becomes stacked series
    assert len(by_site["data"]["datasets"]) == 2 and by_site["options"]["scales"]["x"]["stacked"] is True
