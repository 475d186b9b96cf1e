"""Reports: aggregates match the data, on SQLite and PostgreSQL, with the viewer's scope and hidden fields."""
from __future__ import annotations

import csv
import datetime as dt
import io
import random
from collections import defaultdict
from decimal import Decimal

import pytest
from conftest import ASSETS, jwt_headers, login, make_app, sql_statements
from app.portal import portal_of
from openpyxl import load_workbook
from test_permissions import PASSWORD, make_user


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """An assets portal with 120 random assets; returns (app, admin api client, headers, the payloads)."""
    app = make_app(tmp_path_factory, "reports", schema_dir=ASSETS)
    client = app.test_client()
    h = jwt_headers(client)
    keeper = make_user(app, "keeper1", "Keeper")
    make_user(app, "auditor1", "Auditor")
    suppliers = {name: client.post("/api/v1/supplier/", json={"name": name}, headers=h).json["id"] for name in ("博世", "Makita")}
    rng = random.Random(42)
    assets = []
    for n in range(120):
        payload = {
            "code": f"A-{n:04d}", "quantity": rng.randrange(0, 50), "price": f"{rng.randrange(100, 100000) / 100:.2f}",
            "bought_on": (dt.date(2024, 1, 1) + dt.timedelta(days=rng.randrange(0, 800))).isoformat(),
            "condition": rng.choice(["good", "worn", "broken"]), "in_service": rng.random() < 0.7,
            "supplier": rng.choice([None, *suppliers.values()]), "keeper": rng.choice([1, keeper]),
        }
        response = client.post("/api/v1/asset/", json=payload, headers=h)
        assert response.status_code == 201, response.json
        assets.append(payload)
    return app, client, h, assets, suppliers, keeper


def quarter(day: str) -> str:
    d = dt.date.fromisoformat(day)
    return f"{d.year}-Q{(d.month + 2) // 3}"


def monday(day: str) -> str:
    d = dt.date.fromisoformat(day)
    return (d - dt.timedelta(days=d.weekday())).isoformat()


def test_quarter_buckets_sums_and_averages(world):
    app, client, h, assets, *_ = world
    data = client.get("/api/v1/reports/assets_by_quarter", headers=h).json
    expected = defaultdict(list)
    for a in assets:
        expected[quarter(a["bought_on"])].append(Decimal(a["price"]))
    got = {row["bought_on"]["value"]: row for row in data["rows"]}
    assert list(got) == sorted(expected)
    for key, prices in expected.items():
        assert got[key]["assets"] == len(prices)
        assert got[key]["value"] == pytest.approx(float(sum(prices)), abs=0.01)
        assert got[key]["avg_price"] == pytest.approx(float(sum(prices) / len(prices)), abs=0.01)
    assert data["totals"] == {"assets": 120, "value": pytest.approx(float(sum(Decimal(a["price"]) for a in assets)), abs=0.01)}
    assert [c["key"] for c in data["columns"]] == ["bought_on", "assets", "value", "avg_price"]


def test_week_buckets_start_on_monday_and_second_group(world):
    app, client, h, assets, *_ = world
    rows = client.get("/api/v1/reports/assets_by_week", headers=h).json["rows"]
    expected = defaultdict(int)
    for a in assets:
        expected[(monday(a["bought_on"]), a["condition"])] += 1
    got = {(r["bought_on"]["value"], r["condition"]["value"]): r["assets"] for r in rows}
    assert got == dict(expected)
    assert {r["condition"]["label"] for r in rows} <= {"Good", "Worn", "Broken"}


def test_link_user_and_boolean_groups_show_titles(world):
    app, client, h, assets, suppliers, keeper = world
    rows = client.get("/api/v1/reports/assets_by_supplier", headers=h).json["rows"]
    names = {v: k for k, v in suppliers.items()}
    expected = defaultdict(lambda: [0, Decimal(0), ""])
    for a in assets:
        bucket = expected[(a["supplier"], a["keeper"], a["in_service"])]
        bucket[0] += 1
        bucket[1] += Decimal(a["price"])
        bucket[2] = max(bucket[2], a["bought_on"])
    assert len(rows) == len(expected)
    for r in rows:
        key = (r["supplier"]["value"], r["keeper"]["value"], r["in_service"]["value"])
        count, value, newest = expected[key]
        assert r["assets"] == count and r["value"] == pytest.approx(float(value), abs=0.01)
        assert str(r["newest"])[:10] == newest
        assert r["supplier"]["label"] == (names[key[0]] if key[0] else "(none)")
        assert r["keeper"]["label"] == ("Ada Admin" if key[1] == 1 else "keeper1 Test")
        assert r["in_service"]["label"] == ("Yes" if key[2] else "No")


def test_report_filter_and_user_date_range_and_group_filter(world):
    app, client, h, assets, *_ = world
    rows = client.get("/api/v1/reports/in_service_assets", headers=h).json["rows"]
    expected = defaultdict(int)
    for a in assets:
        if a["in_service"] and a["condition"] in ("good", "worn"):
            expected[a["condition"]] += 1
    assert {r["condition"]["value"]: r["assets"] for r in rows} == dict(expected)
    ranged = client.get("/api/v1/reports/assets_by_quarter?from=2024-04-01&to=2024-09-30", headers=h).json
    inside = [a for a in assets if "2024-04-01" <= a["bought_on"] <= "2024-09-30"]
    assert ranged["totals"]["assets"] == len(inside)
    assert {r["bought_on"]["value"] for r in ranged["rows"]} == {"2024-Q2", "2024-Q3"}
    worn = client.get("/api/v1/reports/assets_by_week?f_condition=worn", headers=h).json
    assert worn["totals"]["assets"] == sum(1 for a in assets if a["condition"] == "worn")


def test_bad_parameters_are_clear_errors(world):
    app, client, h, *_ = world
    for query, fragment in (("from=yesterday", "Not a valid date"), ("from=2025-01-02&to=2025-01-01", "start date is after"),
                            ("f_price=3", "cannot be filtered by price"), ("f_condition=lost", "Not a valid value")):
        response = client.get(f"/api/v1/reports/assets_by_week?{query}", headers=h)
        assert response.status_code == 400 and fragment in response.json["message"], (query, response.json)
    assert client.get("/api/v1/reports/nope", headers=h).status_code == 404
    assert app.test_client().get("/api/v1/reports/assets_by_week").status_code == 401


def test_row_scope_applies_to_reports(world):
    app, _, _, assets, suppliers, keeper = world
    client = app.test_client()
    h = jwt_headers(client, "keeper1", PASSWORD)
    data = client.get("/api/v1/reports/assets_by_supplier", headers=h).json
    assert data["totals"]["assets"] == sum(1 for a in assets if a["keeper"] == keeper)
    assert {r["keeper"]["value"] for r in data["rows"]} == {keeper}
    assert client.get("/api/v1/reports/assets_by_quarter", headers=h).status_code == 403  # not granted
    listed = {r["id"] for r in client.get("/api/v1/reports/", headers=h).json["result"]}
    assert listed == {"assets_by_supplier"}


def test_hidden_fields_are_left_out_or_refused(world):
    app, _, _, assets, *_ = world
    client = app.test_client()
    h = jwt_headers(client, "auditor1", PASSWORD)
    data = client.get("/api/v1/reports/assets_by_quarter", headers=h).json
    assert [c["key"] for c in data["columns"]] == ["bought_on", "assets"], "measures over the hidden price are dropped"
    assert "value" not in data["totals"] and data["totals"]["assets"] == 120
    grouped = client.get("/api/v1/reports/assets_by_week", headers=h)
    assert grouped.status_code == 400 and "hidden" in grouped.json["message"]
    page = login(app.test_client(), "auditor1", PASSWORD).get("/reports/assets_by_week", follow_redirects=True)
    assert "hidden from you" in page.text


def test_page_and_downloads_match_the_json(world):
    app, client, h, assets, *_ = world
    data = client.get("/api/v1/reports/assets_by_quarter", headers=h).json
    ui = login(app.test_client())
    page = ui.get("/reports/assets_by_quarter").text
    assert 'data-chart=' in page and "/portal-static/vendor/chartjs/chart.umd.min.js" in page
    assert "http://" not in page.replace("http://localhost", "") and "https://" not in page
    for row in data["rows"]:
        assert row["bought_on"]["label"] in page
    download = ui.get("/reports/assets_by_quarter/download.csv")
    assert download.status_code == 200 and "attachment" in download.headers["Content-Disposition"]
    lines = list(csv.reader(io.StringIO(download.data.decode("utf-8-sig"))))
    assert lines[0] == ["Bought on", "Assets", "Value", "Avg price"]
    assert [line[0] for line in lines[1:]] == [r["bought_on"]["label"] for r in data["rows"]]
    assert [int(line[1]) for line in lines[1:]] == [r["assets"] for r in data["rows"]]
    book = load_workbook(io.BytesIO(ui.get("/reports/assets_by_quarter/download.xlsx?from=2024-01-01&to=2024-12-31").data))
    sheet = book.active
    values = list(sheet.iter_rows(values_only=True))
    assert values[0] == ("Bought on", "Assets", "Value", "Avg price")
    assert sum(v[1] for v in values[1:]) == sum(1 for a in assets if a["bought_on"].startswith("2024"))


def test_report_permissions_on_pages(world):
    app, *_ = world
    keeper = login(app.test_client(), "keeper1", PASSWORD)
    assert keeper.get("/reports/assets_by_supplier").status_code == 200
    denied = keeper.get("/reports/assets_by_quarter")
    assert denied.status_code == 302
    assert keeper.get("/reports/assets_by_quarter/download.csv").status_code == 302
    index = keeper.get("/reports/").text
    assert "/reports/assets_by_supplier" in index and "/reports/assets_by_quarter" not in index
    assert app.test_client().get("/reports/assets_by_supplier").status_code == 302  # anonymous: to login


def test_dashboard_cards_are_scoped(world):
    app, _, _, assets, _, keeper = world
    page = login(app.test_client(), "keeper1", PASSWORD).get("/dashboard/assets").text
    mine = sum(1 for a in assets if a["keeper"] == keeper)
    assert f">{mine:,}<" in page.replace(" ", "").replace("\n", "")
    assert "data-chart" in page


def test_every_shipped_report_runs_on_page_api_and_dashboard(app, admin_client, api):
    spec = portal_of(app).spec
    for report in spec.reports:
        assert admin_client.get(f"/reports/{report.id}").status_code == 200, report.id
        data = api.get(f"/api/v1/reports/{report.id}")
        assert data.status_code == 200, (report.id, data.json)
        assert [c["key"] for c in data.json["columns"]] == ([g.field for g in report.group_by] + [m.name for m in report.measures]
                                                           + [d.name for d in report.derived])
    for module in spec.modules:
        assert admin_client.get(f"/dashboard/{module.name}").status_code == 200


def test_ticket_resolution_time_average(app, api):
    customer = api.post("/api/v1/customer/", json={"name": "报表客户"}).json["id"]
    for n, resolved in enumerate((True, True, False)):
        opened = dt.datetime(2025, 3, 3 + n, 9, 0)
        payload = {"subject": "报表", "customer": customer, "opened_at": opened.isoformat()}
        created = api.post("/api/v1/ticket/", json=payload)
        assert created.status_code == 201
        if resolved:  # resolved_at is stamped by the workflow's resolve (now)
            pk = created.json["id"]
            assert api.post(f"/api/v1/ticket/{pk}/transitions/start", json={}).status_code == 200
            assert api.post(f"/api/v1/ticket/{pk}/transitions/resolve", json={"resolution": "ok"}).status_code == 200
    tickets = api.get("/api/v1/ticket/", query_string={"q": "(page_size:100)"}).json["result"]
    march = [t for t in tickets if t["opened_at"].startswith("2025-03")]
    durations = [(dt.datetime.fromisoformat(t["resolved_at"]) - dt.datetime.fromisoformat(t["opened_at"])).total_seconds() / 3600
                 for t in march if t["resolved_at"]]
    data = api.get("/api/v1/reports/tickets_by_month?from=2025-03-01&to=2025-03-31").json
    assert [r["opened_at"]["value"] for r in data["rows"]] == ["2025-03"]
    assert data["rows"][0]["opened"] == len(march)
    assert data["rows"][0]["avg_resolution_hours"] == pytest.approx(sum(durations) / len(durations), abs=0.01)


def test_import_forces_the_row_scope_owner(world):
    app, admin, h, assets, suppliers, keeper = world
    client = app.test_client()
    kh = jwt_headers(client, "keeper1", PASSWORD)
    content = "code,keeper,price\nA-7001,admin,10\n".encode()
    result = client.post("/api/v1/asset/import", data={"file": (io.BytesIO(content), "a.csv")}, headers=kh,
                         content_type="multipart/form-data")
    assert result.status_code == 200, result.json
    got = admin.get("/api/v1/asset/", headers=h, query_string={"q": "(filters:!((col:code,opr:eq,value:A-7001)))"}).json
    assert got["result"][0]["keeper"]["id"] == keeper


def test_report_parameters_at_the_edges_are_answered_not_crashed(api):
    """Extreme dates are a valid range (9999-12-31 = no end); ids past 32 bits or junk are a clear 400."""
    edge = api.get("/api/v1/reports/labour_by_project?from=9999-12-31&to=9999-12-31")
    assert edge.status_code == 200 and edge.json["rows"] == []
    assert api.get("/api/v1/reports/labour_by_project?from=0001-01-01&to=9999-12-31").status_code == 200
    for junk in ("99999999999999999999999", "9223372036854775808", "-1", "1e3", "abc"):
        refused = api.get(f"/api/v1/reports/labour_by_project?f_project={junk}")
        assert refused.status_code == 400, (junk, refused.status_code)
        assert "project" in refused.json["message"]
    assert api.get("/api/v1/reports/labour_by_project?from=2026-02-30").status_code == 400


def _grouping_queries(app, call) -> int:
    """How many GROUP BY statements `call()` ran (the report's own query)."""
    with sql_statements(app) as seen:
        call()
    return sum("GROUP BY" in statement for statement in seen)


def test_report_results_are_reused_until_data_changes_and_never_shared_across_scopes(world):
    app, client, h, assets, suppliers, keeper = world
    url = "/api/v1/reports/assets_by_supplier"
    first = {}
    assert _grouping_queries(app, lambda: first.update(client.get(url, headers=h).json)) == 1
    again = {}
    assert _grouping_queries(app, lambda: again.update(client.get(url, headers=h).json)) == 0  # reused
    assert again == first
    assert _grouping_queries(app, lambda: client.get(f"{url}?_l_=zh", headers=h)) == 1  # another language
    # the keeper's row scope gets a result of its own, never the admin's
    keeper_headers = jwt_headers(app.test_client(), "keeper1", PASSWORD)
    mine = client.get(url, headers=keeper_headers).json
    own = client.get("/api/v1/asset/", headers=keeper_headers).json["count"]  # the keeper's rows, as the API scopes them
    assert mine["totals"]["assets"] == own < first["totals"]["assets"]
    # a committed change shows at once, on both databases
    created = client.post("/api/v1/asset/", json={"code": "A-9999", "quantity": 1, "price": "10.00", "keeper": 1}, headers=h)
    assert created.status_code == 201
    after = {}
    assert _grouping_queries(app, lambda: after.update(client.get(url, headers=h).json)) == 1
    assert after["totals"]["assets"] == first["totals"]["assets"] + 1
    assert client.delete(f"/api/v1/asset/{created.json['id']}", headers=h).status_code == 200
    assert client.get(url, headers=h).json["totals"]["assets"] == first["totals"]["assets"]


def test_report_cache_can_be_turned_off(tmp_path_factory):
    app = make_app(tmp_path_factory, "nocache", schema_dir=ASSETS, PORTAL_REPORT_CACHE_SECONDS=0)
    client = app.test_client()
    h = jwt_headers(client)
    for _ in range(2):
        assert _grouping_queries(app, lambda: client.get("/api/v1/reports/assets_by_quarter", headers=h)) == 1
