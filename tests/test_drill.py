"""Drill-down: every report cell links to the records behind it (`/<entity>/list/?drill=` and the list API), and
those records are exactly the cell's: their count is the count measure and their prices add up to the sum
measure, in the viewer's row scope; a drill that does not fit the entity or the viewer is a localized 400."""
from __future__ import annotations

import datetime as dt
import json
import random
import re
from decimal import Decimal
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from conftest import ASSETS, jwt_headers, login, make_app
from test_permissions import PASSWORD, make_user

REPORTS = ("assets_by_quarter", "assets_by_week", "assets_by_supplier", "in_service_assets", "assets_by_day_and_year")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    app = make_app(tmp_path_factory, "drill", schema_dir=ASSETS)
    client = app.test_client()
    h = jwt_headers(client)
    keeper = make_user(app, "keeper1", "Keeper")
    make_user(app, "auditor1", "Auditor")
    suppliers = {name: client.post("/api/v1/supplier/", json={"name": name}, headers=h).json["id"] for name in ("博世", "Makita")}
    rng = random.Random(7)
    for n in range(90):
        payload = {
            "code": f"A-{n:04d}", "quantity": rng.randrange(0, 50), "price": f"{rng.randrange(100, 100000) / 100:.2f}",
            "bought_on": (dt.date(2025, 1, 1) + dt.timedelta(days=rng.randrange(0, 500))).isoformat(),
            "condition": rng.choice(["good", "worn", "broken"]), "in_service": rng.random() < 0.7,
            "supplier": rng.choice([None, *suppliers.values()]), "keeper": rng.choice([1, keeper]),
        }
        assert client.post("/api/v1/asset/", json=payload, headers=h).status_code == 201
    return app, client, h, suppliers, keeper


def drilled(client, headers, url: str) -> tuple[int, Decimal]:
    """(count, sum of prices) of the records the list API returns for a cell's drill URL."""
    parts = urlsplit(url)
    assert parts.path == "/asset/list/"
    drill = parse_qs(parts.query)["drill"][0]
    total, count, page = Decimal(0), None, 0
    while True:
        q = f"(columns:!(price),page:{page},page_size:100)"
        response = client.get(f"/api/v1/asset/?drill={quote(drill)}&q={quote(q)}", headers=headers)
        assert response.status_code == 200, response.json
        count = response.json["count"]
        total += sum(Decimal(str(r["price"])) for r in response.json["result"] if r["price"] is not None)
        page += 1
        if page * 100 >= count:
            return count, total


@pytest.mark.parametrize("report", REPORTS)
def test_every_cell_drills_to_exactly_its_records(world, report):
    app, client, h, *_ = world
    for query in ("", "?from=2025-03-10&to=2025-11-20"):
        data = client.get(f"/api/v1/reports/{report}{query}", headers=h).json
        assert data["rows"]
        for row in data["rows"]:
            count, total = drilled(client, h, row["drill"])
            measure = "assets"
            assert count == row[measure], (report, query, row)
            if "value" in row:
                assert float(total) == pytest.approx(row["value"] or 0, abs=0.01)


def test_drill_follows_chosen_filters_and_the_viewers_scope(world):
    app, client, h, suppliers, keeper = world
    data = client.get(f"/api/v1/reports/assets_by_supplier?f_supplier={suppliers['Makita']}", headers=h).json
    for row in data["rows"]:
        assert row["supplier"]["label"] == "Makita"
        assert drilled(client, h, row["drill"])[0] == row["assets"]
    kh = jwt_headers(client, "keeper1", PASSWORD)
    mine = client.get("/api/v1/asset/", headers=kh).json["count"]
    assert 0 < mine < 90
    data = client.get("/api/v1/reports/assets_by_supplier", headers=kh).json
    assert sum(r["assets"] for r in data["rows"]) == mine
    for row in data["rows"]:
        assert drilled(client, kh, row["drill"])[0] == row["assets"]
    # the admin's drill of the keeper's cells, opened by the keeper, still shows only the keeper's rows
    everything = quote(json.dumps({}))
    assert client.get(f"/api/v1/asset/?drill={everything}", headers=kh).json["count"] == mine


def test_bad_drills_are_a_localized_400(world):
    app, client, h, suppliers, _ = world
    bad = ["not json", "[1]", json.dumps({"nope": 1}), json.dumps({"price": {"around": 3}}),
           json.dumps({"supplier": "Makita"}), json.dumps({"supplier": {"gt": 1}}), json.dumps({"bought_on": {"gte": "soon"}}),
           json.dumps({"condition": "shiny"}), json.dumps({"code": {"contains": "A\x00"}}), "x" * 5000]
    for text in bad:
        response = client.get(f"/api/v1/asset/?drill={quote(text)}", headers=h)
        assert response.status_code == 400, text
        assert response.json["message"]
    zh = client.get(f"/api/v1/asset/?drill={quote(json.dumps({'nope': 1}))}", headers={**h, "Accept-Language": "zh"})
    assert zh.status_code == 400 and "钻取条件与资产不符" in zh.json["message"]
    # a field hidden from the viewer: filtering on it would tell them its values
    ah = jwt_headers(client, "auditor1", PASSWORD)
    response = client.get(f"/api/v1/asset/?drill={quote(json.dumps({'condition': 'good'}))}", headers=ah)
    assert response.status_code == 400 and "condition" in response.json["message"]
    assert client.get(f"/api/v1/asset/?drill={quote(json.dumps({'quantity': {'gt': 3}}))}", headers=ah).status_code == 200
    # the page says it on a page
    page = app.test_client()
    login(page)
    response = page.get(f"/asset/list/?drill={quote(json.dumps({'nope': 1}))}")
    assert response.status_code == 400 and "nope" in response.get_data(as_text=True)


def test_the_list_page_shows_the_drill_in_words_and_removes_it(world):
    app, client, h, suppliers, _ = world
    data = client.get(f"/api/v1/reports/assets_by_supplier?f_supplier={suppliers['博世']}", headers=h).json
    row = data["rows"][0]
    page = app.test_client()
    login(page)
    html = page.get(row["drill"]).get_data(as_text=True)
    bar = re.search(r'<div class="alert alert-info portal-drill-bar".*?</div>', html, re.S).group(0)
    assert "Supplier = 博世" in bar
    assert 'id="drill-remove"' in bar and 'href="/asset/list/?view=all"' in bar
    assert f"Record Count: <strong>{row['assets']}</strong>" in html or f"Record Count: {row['assets']}" in re.sub(r"<[^>]+>", "", html)
    # an attacker's text in a drill comes back escaped
    evil = quote(json.dumps({"code": {"contains": "<script>alert(1)</script>"}}))
    html = page.get(f"/asset/list/?drill={evil}").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from app.demo import load_demo

    app = make_app(tmp_path_factory, "drill_demo")
    with app.app_context():
        load_demo(app, labour_days=12)
    client = app.test_client()
    return app, client, jwt_headers(client)


def api_records(client, headers, url: str, entity: str, column: str | None):
    parts = urlsplit(url)
    assert parts.path == f"/{entity}/list/"
    drill = parse_qs(parts.query)["drill"][0]
    records, page = [], 0
    while True:
        q = f"(columns:!({column or 'id'}),page:{page},page_size:100)"
        response = client.get(f"/api/v1/{entity}/?drill={quote(drill)}&q={quote(q)}", headers=headers)
        assert response.status_code == 200, response.json
        records += response.json["result"]
        page += 1
        if page * 100 >= response.json["count"]:
            assert len(records) == response.json["count"]
            return records


@pytest.mark.parametrize("report, entity, count, sums", [
    ("labour_cost_by_month", "labour_entry", "entries", {"cost": "amount", "hours": "hours"}),  # month + link + fixed filter
    ("follow_ups_by_month", "follow_up", "follow_ups", {}),  # a date-time field in month buckets
    ("tickets_by_month", "ticket", "opened", {}),
])
def test_demo_reports_drill_to_their_counts_and_sums(demo, report, entity, count, sums):
    app, client, h = demo
    today = dt.date.today()
    for query in ("", f"?from={today - dt.timedelta(days=9)}&to={today - dt.timedelta(days=3)}"):
        data = client.get(f"/api/v1/reports/{report}{query}", headers=h).json
        assert data["rows"], (report, query)
        for row in data["rows"]:
            for measure, field in sums.items() or [(None, None)]:
                records = api_records(client, h, row["drill"], entity, field)
                assert len(records) == row[count], (report, row)
                if field:
                    assert float(sum(Decimal(str(r[field])) for r in records)) == pytest.approx(row[measure], abs=0.01)


def test_fast_row_drills_equal_drill_url_of_each_rows_conditions(demo):
    """The engine cuts one URL into pieces per report; each row's URL must be byte for byte the one a reference
    (tests/drill_reference.py) builds from that row's conditions."""
    from drill_reference import base_conditions, drill_url, row_conditions
    from app.data.reports.query import ReportParams
    from app.portal import portal_of

    app, client, h = demo
    spec = portal_of(app).spec
    today = dt.date.today()
    for report_id, query, params in [
            ("labour_cost_by_month", f"?from={today - dt.timedelta(days=9)}", ReportParams(today - dt.timedelta(days=9))),
            ("follow_ups_by_month", "", ReportParams())]:
        report = spec.report(report_id)
        entity = spec.entity(report.entity)
        data = client.get(f"/api/v1/reports/{report_id}{query}", headers=h).json
        assert data["rows"]
        with app.test_request_context():
            base = base_conditions(report, entity, params, data["rows"] and (report.date_field or report.group_by[0].field))
            for row in data["rows"]:
                assert row["drill"] == drill_url(entity, row_conditions(report, entity, base, row))
