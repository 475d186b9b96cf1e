"""Rate limits: failed sign-ins per username and per IP, API calls per user; Redis shared by gunicorn workers."""
from __future__ import annotations

import logging
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from conftest import ADMIN, database_url, jwt_headers, make_app
from services import Gunicorn, http, wait_until

PASSWORD = "Rate-pass-1"
LOCKED_EN = "Too many failed sign-in attempts"
LOCKED_ZH = "登录失败次数过多"


def add_users(app, *names):
    with app.app_context():
        sm = app.appbuilder.sm
        for name in names:
            if not sm.find_user(username=name):
                sm.add_user(name, name, "Test", f"{name}@example.com", sm.find_role("Admin"), PASSWORD)


def form_login(client, username, password, **kw):
    return client.post("/login/", data={"username": username, "password": password}, **kw)


def api_login(client, username, password, **kw):
    return client.post("/api/v1/security/login", json={"username": username, "password": password, "provider": "db"}, **kw)


@pytest.fixture(scope="module")
def limited_app(tmp_path_factory):
    app = make_app(tmp_path_factory, "ratelimit")
    add_users(app, "alice", "bob", "carol", "dave", "frank")
    return app


def test_five_failures_lock_the_username_not_the_office(limited_app, caplog):
    client = limited_app.test_client()
    caplog.set_level(logging.WARNING, logger="portal.audit")
    for _ in range(5):
        assert form_login(client, "alice", "wrong").status_code == 302  # FAB's "invalid login" redirect
    locked = form_login(client, "alice", PASSWORD, headers={"Accept-Language": "zh"})
    assert locked.status_code == 429
    assert 1 <= int(locked.headers["Retry-After"]) <= 61  # the window: one minute (rounded up)
    page = locked.get_data(as_text=True)
    assert LOCKED_ZH in page and 'name="password"' in page  # FAB's sign-in form, with the message
    audit = [r.getMessage() for r in caplog.records if r.name == "portal.audit"]
    assert audit.count("login failed user='alice' ip=127.0.0.1") == 5
    assert audit[-1] == "login locked (login-user) user='alice' ip=127.0.0.1"
    # the same username through the API shares the counter, case-insensitively (as FAB's lookup is)
    api_locked = api_login(client, "ALICE", PASSWORD)
    assert api_locked.status_code == 429 and LOCKED_EN in api_locked.json["message"]
    assert int(api_locked.headers["Retry-After"]) >= 1
    # a colleague behind the same NAT (same IP) still gets in, by form and by API
    assert form_login(limited_app.test_client(), "bob", PASSWORD).headers["Location"].endswith("/")
    assert api_login(client, "bob", PASSWORD).status_code == 200


def test_only_failures_count(limited_app):
    client = limited_app.test_client()
    for _ in range(8):
        assert api_login(client, "carol", PASSWORD).status_code == 200
    for _ in range(4):
        assert api_login(client, "carol", "wrong").status_code == 401
    assert api_login(client, "carol", PASSWORD).status_code == 200  # 4 failures: not locked yet
    assert api_login(client, "carol", "wrong").status_code == 401
    locked = api_login(client, "carol", PASSWORD, query_string={"_l_": "zh"})
    assert locked.status_code == 429 and LOCKED_ZH in locked.json["message"]


@contextmanager
def limits(app, **values):
    """Other limits for a while (the limits are read from the config at request time)."""
    saved = {name: app.config[name] for name in values}
    app.config.update(values)
    try:
        yield
    finally:
        app.config.update(saved)


def test_failures_per_ip(limited_app):
    office = {"REMOTE_ADDR": "10.0.0.7"}
    client = limited_app.test_client()
    with limits(limited_app, PORTAL_LOGIN_LIMIT_IP="3/minute"):
        for name in ("x1", "x2", "x3"):  # different usernames: only the per-IP counter adds up
            assert api_login(client, name, "wrong", environ_base=office).status_code == 401
        assert api_login(client, "dave", PASSWORD, environ_base=office).status_code == 429
        assert api_login(client, "dave", PASSWORD, environ_base={"REMOTE_ADDR": "10.0.0.8"}).status_code == 200


def test_api_calls_limited_per_user(limited_app):
    app, client = limited_app, limited_app.test_client()
    admin, frank = jwt_headers(client), jwt_headers(client, "frank", PASSWORD)
    with limits(app, PORTAL_API_LIMIT="3/minute"):
        for _ in range(3):
            assert client.get("/api/v1/customer/", headers=admin).status_code == 200
        refused = client.get("/api/v1/customer/", headers=admin, query_string={"_l_": "zh"})
        assert refused.status_code == 429 and "请求过于频繁" in refused.json["message"]
        assert int(refused.headers["Retry-After"]) >= 1
        assert client.get("/api/v1/customer/", headers=frank).status_code == 200  # frank has his own budget


def test_unknown_username_answers_as_slowly_as_a_wrong_password(tmp_path_factory):
    # real password hashes made with another method than FAB's built-in dummy hash (scrypt)
    app = make_app(tmp_path_factory, "ratelimit_timing", FAB_PASSWORD_HASH_METHOD="pbkdf2:sha256:1000000",
                   PORTAL_LOGIN_LIMIT_USER="100/minute", PORTAL_LOGIN_LIMIT_IP="100/minute")
    client = app.test_client()

    def seconds(username):
        start = time.perf_counter()
        assert api_login(client, username, "wrong").status_code == 401
        return time.perf_counter() - start

    known, unknown = [], []
    for i in range(4):  # interleaved, so machine load hits both alike
        known.append(seconds(ADMIN[0]))
        unknown.append(seconds(f"nobody{i}"))
    ratio = statistics.median(unknown) / statistics.median(known)
    assert 0.7 < ratio < 1.4, (known, unknown)


def test_redis_outage_falls_back_to_memory_and_recovers(tmp_path_factory, redis_server):
    app = make_app(tmp_path_factory, "ratelimit_redis", REDIS_URL=redis_server.url)
    add_users(app, "gina", "hank")
    client, redis = app.test_client(), redis_server.client()
    assert api_login(client, "gina", "wrong").status_code == 401
    assert any(b"gina" in key for key in redis.keys("*")), "the failure is counted in Redis"

    redis_server.stop()
    # no 500s while Redis is down: the limiter counts in memory (per process) meanwhile
    assert api_login(client, "hank", PASSWORD).status_code == 200
    for _ in range(5):
        assert api_login(client, "gina", "wrong").status_code == 401
    assert api_login(client, "gina", PASSWORD).status_code == 429
    assert form_login(client, "hank", PASSWORD).status_code == 302

    redis_server.start()  # empty again (no persistence)
    probe = iter(range(1000))

    def counted_in_redis():
        assert api_login(client, f"probe{next(probe)}", "wrong").status_code == 401
        return any(b"probe" in key for key in redis.keys("*"))
    wait_until(counted_in_redis, 45, "the limiter going back to Redis")  # Flask-Limiter retries with back-off


@pytest.fixture(scope="module")
def portal_server(tmp_path_factory):
    """gunicorn --preload -w 2 (sync) on the test database, counters in a real Redis, metrics across workers."""
    from services import RedisServer

    workdir = tmp_path_factory.mktemp("gunicorn")
    url = database_url(tmp_path_factory, "gunicorn")
    app = make_app(tmp_path_factory, "gunicorn", SQLALCHEMY_DATABASE_URI=url)
    add_users(app, "ivan", "judy")
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()
    redis_server = RedisServer(workdir)
    redis_server.start()
    (workdir / "metrics").mkdir()
    server = Gunicorn(workdir, {
        "DATABASE_URL": url, "SECRET_KEY": "test-secret-key-that-is-long-enough-for-hs256", "REDIS_URL": redis_server.url,
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"), "PORTAL_METRICS_TOKEN": "scrape-token"})
    try:
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            redis_server.stop()


def worker_pids(server, request_ids) -> set[str]:
    """Which workers answered these requests, from gunicorn's access log (`pid=... rid=...`)."""
    def logged():  # gunicorn writes the line just after sending the response
        lines = [line for line in server.access_lines() if any(f"rid={rid}" in line for rid in request_ids)]
        return lines if len(lines) == len(request_ids) else None
    return {line.split(" pid=")[1].split()[0] for line in wait_until(logged, 10, "access log lines")}


def test_sign_in_lock_holds_across_gunicorn_workers(portal_server):
    login_url = portal_server.url + "/api/v1/security/login"

    def attempt(tag, password):
        request_id = f"{tag}-{time.monotonic_ns()}"
        status, headers, _ = http("POST", login_url, {"username": "ivan", "password": password, "provider": "db"},
                                  {"X-Request-ID": request_id})
        return status, headers, request_id

    with ThreadPoolExecutor(2) as pool:  # two at a time, so both workers answer
        failures = list(pool.map(lambda i: attempt(f"fail{i}", "wrong"), range(5)))
        assert [s for s, _, _ in failures] == [401] * 5
        locked = []
        for _ in range(10):
            locked += pool.map(lambda i: attempt(f"locked{i}", PASSWORD), range(2))
            if len(worker_pids(portal_server, [rid for _, _, rid in locked])) == 2:
                break
    assert {s for s, _, _ in locked} == {429}
    assert all(int(h["Retry-After"]) >= 1 for _, h, _ in locked)
    assert len(worker_pids(portal_server, [rid for _, _, rid in locked])) == 2, "both workers refuse ivan"
    judy = http("POST", login_url, {"username": "judy", "password": PASSWORD, "provider": "db"})
    assert judy[0] == 200  # same IP, another user

    # /metrics adds up both workers' figures (PROMETHEUS_MULTIPROC_DIR), behind the bearer token
    assert http("GET", portal_server.url + "/metrics")[0] == 401
    assert http("GET", portal_server.url + "/metrics", headers={"Authorization": "Bearer nope"})[0] == 403
    status, _, body = http("GET", portal_server.url + "/metrics", headers={"Authorization": "Bearer scrape-token"})
    assert status == 200
    counted = {}
    for line in body.decode().splitlines():
        if line.startswith("flask_http_request_duration_seconds_count{") and 'endpoint="SecurityApi.login"' in line:
            status_label = line.split('status="')[1].split('"')[0]
            counted[status_label] = counted.get(status_label, 0) + float(line.rsplit(" ", 1)[1])
    assert counted.get("401") == 5 and counted.get("429") == len(locked), counted
