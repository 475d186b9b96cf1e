"""Operations: /healthz, /readyz, /metrics (guarded), request ids, and a clean 503 while the database is down."""
from __future__ import annotations

import gc
import io
import json
import logging
import re

import pytest
from conftest import ROOT, jwt_headers, login, make_app
from sqlalchemy import text
from services import PostgresCluster

from app.runtime.requestid import LOG_FORMAT, REQUEST_ID_FILTER
from app.portal import portal_of


def metric(body: bytes, name: str, **labels) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total, found = 0.0, False
    for line in body.decode().splitlines():
        match = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if not match or match[1] != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', match[2] or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total, found = total + float(match[3]), True
    assert found, f"no sample {name} {labels}"
    return total


def test_health_and_readiness(app):
    client = app.test_client()
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["status"] == "ok" and ready.json["schema"] == "ok"


def test_readiness_fails_when_a_column_is_missing(tmp_path_factory):
    app = make_app(tmp_path_factory, "readyz", PORTAL_READYZ_CACHE_SECONDS=0)
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    table = portal_of(app).models["Contact"].__table__.name
    with app.app_context(), app.extensions["sqlalchemy"].engine.begin() as conn:
        conn.execute(text(f'ALTER TABLE "{table}" DROP COLUMN position'))
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json == {"status": "unavailable", "database": "ok", "schema": "out of sync", "missing": 1}
    assert client.get("/healthz").status_code == 200  # the process itself is fine


def test_metrics_are_not_public(tmp_path_factory, app):
    client = app.test_client()
    assert client.get("/metrics").status_code == 200  # the test client calls from 127.0.0.1
    remote = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"}, headers={"Accept-Language": "zh"})
    assert remote.status_code == 403 and "本机" in remote.json["message"]

    guarded = make_app(tmp_path_factory, "metrics_token", PORTAL_METRICS_TOKEN="s3cret-token").test_client()
    missing = guarded.get("/metrics")
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    assert guarded.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert guarded.get("/metrics", headers={"Authorization": "s3cret-token"}).status_code == 401
    scraped = guarded.get("/metrics", headers={"Authorization": "Bearer s3cret-token"},
                          environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert scraped.status_code == 200 and b"flask_http_request_duration_seconds" in scraped.data


def test_metrics_count_requests_jobs_and_pool(app, api):
    client = app.test_client()
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    assert client.get("/nowhere-at-all").status_code == 404
    assert api.get("/api/v1/reports/customers_by_level").status_code == 200
    csv = "Name,Phone\n指标客户,+8613900000001\n".encode()
    headers = jwt_headers(client)
    imported = client.post("/api/v1/customer/import", data={"file": (io.BytesIO(csv), "m.csv"), "dry_run": "1"},
                           headers=headers, content_type="multipart/form-data")
    assert imported.status_code == 200, imported.json
    exported = client.get("/api/v1/customer/export?format=csv", headers=headers)
    assert exported.status_code == 200 and exported.data  # streamed to the end
    exported.close()  # ends the streamed request: its session gives the connection back

    body = client.get("/metrics").data
    assert metric(body, "flask_http_request_duration_seconds_count", endpoint="health.healthz", status="200") >= 3
    assert metric(body, "flask_http_request_duration_seconds_count", endpoint="None", status="404") >= 1
    for kind in ("report", "import", "export"):
        assert metric(body, "portal_job_duration_seconds_count", kind=kind, outcome="ok") >= 1
    assert metric(body, "portal_db_pool_size") >= 1
    # the gauge follows the pool's own count (other tests' finished responses may still hold one)
    gc.collect()
    with app.app_context():
        pool = app.extensions["sqlalchemy"].engine.pool
        with app.extensions["sqlalchemy"].engine.connect():
            held = pool.checkedout()
            assert held >= 1 and metric(client.get("/metrics").data, "portal_db_pool_checked_out") == held
    assert metric(client.get("/metrics").data, "portal_db_pool_checked_out") == pool.checkedout() == held - 1


def test_grafana_dashboard_uses_metrics_the_portal_exports(app, api):
    assert api.get("/api/v1/reports/customers_by_level").status_code == 200  # a job figure exists
    exported = {re.sub(r"_(bucket|count|sum)$", "", line.split("{")[0].split(" ")[0])
                for line in app.test_client().get("/metrics").get_data(as_text=True).splitlines() if not line.startswith("#")}
    dashboard = json.loads((ROOT / "docs" / "grafana-portal.json").read_text())
    used = {re.sub(r"_(bucket|count|sum)$", "", name) for panel in dashboard["panels"] for target in panel["targets"]
            for name in re.findall(r"\b((?:flask|portal)_[a-z_]+)\b", target["expr"])}
    assert used and used <= exported, used - exported


def test_request_ids(app):
    client = app.test_client()
    given = client.get("/healthz", headers={"X-Request-ID": "lb-7f3a.01_x"})
    assert given.headers["X-Request-ID"] == "lb-7f3a.01_x"
    made = client.get("/healthz").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert client.get("/healthz").headers["X-Request-ID"] != made
    for unsafe in ("x" * 65, "a b", "<script>", "id;rm"):  # replaced, never echoed
        answered = client.get("/healthz", headers={"X-Request-ID": unsafe}).headers["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", answered)

    # log lines carry the id: the audit line of a failed sign-in
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(REQUEST_ID_FILTER)
    audit = logging.getLogger("portal.audit")
    audit.addHandler(handler)
    try:
        client.post("/api/v1/security/login", json={"username": "rid-user", "password": "x", "provider": "db"},
                    headers={"X-Request-ID": "trace-42"})
    finally:
        audit.removeHandler(handler)
    assert "WARNING [trace-42] portal.audit: login failed user='rid-user'" in stream.getvalue()


@pytest.mark.skipif(not PostgresCluster.available(), reason="PostgreSQL server binaries are not installed")
def test_database_outage_gives_503_and_recovers(tmp_path_factory):
    cluster = PostgresCluster()
    cluster.init()
    cluster.start()
    try:
        app = make_app(tmp_path_factory, "outage", SQLALCHEMY_DATABASE_URI=cluster.url, PORTAL_READYZ_CACHE_SECONDS=0)
        browser = login(app.test_client())
        api_client = app.test_client()
        headers = jwt_headers(api_client)
        assert browser.get("/customer/list/").status_code == 200
        assert api_client.get("/api/v1/customer/", headers=headers).status_code == 200

        cluster.stop()
        page = browser.get("/customer/list/", headers={"Accept-Language": "zh"})
        assert page.status_code == 503 and int(page.headers["Retry-After"]) > 0
        html = page.get_data(as_text=True)
        assert "服务暂时不可用" in html and "暂时无法连接数据库" in html and "Traceback" not in html
        english = browser.get("/customer/list/?_l_=en")
        assert english.status_code == 503 and "The database cannot be reached" in english.get_data(as_text=True)
        listed = api_client.get("/api/v1/customer/", headers=headers)
        assert listed.status_code == 503 and "database" in listed.json["message"]
        one = api_client.get("/api/v1/customer/1", headers=headers)
        assert one.status_code == 503
        signin = api_client.post("/api/v1/security/login", json={"username": "admin", "password": "x", "provider": "db"})
        assert signin.status_code == 503
        assert app.test_client().get("/readyz").json == {"status": "unavailable", "database": "unreachable"}
        assert app.test_client().get("/healthz").status_code == 200

        cluster.start()  # back: the same app recovers by itself
        assert browser.get("/customer/list/").status_code == 200
        assert api_client.get("/api/v1/customer/", headers=headers).status_code == 200
        assert app.test_client().get("/readyz").status_code == 200
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()
    finally:
        cluster.remove()
