"""The production command under real gunicorn: cold start of several workers on an empty database, then
concurrent logged-in requests whose answers must each be exactly the record asked for (no mixed result sets)."""
from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from conftest import ADMIN, ROOT, database_url
from app.portal import portal_of

CONCURRENCY, REQUESTS = 24, 160


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def gunicorn(args: list[str], env: dict, log_path):
    port = free_port()
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "gunicorn", *args, "-b", f"127.0.0.1:{port}", "run:app"],
                                   cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"gunicorn exited:\n{log_path.read_text()[-3000:]}"
            try:
                urllib.request.urlopen(f"{base}/login/", timeout=5)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                assert time.monotonic() < deadline, f"gunicorn never answered:\n{log_path.read_text()[-3000:]}"
                time.sleep(0.3)
        yield base, process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def call(opener, method: str, url: str, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={**({"Content-Type": "application/json"} if data else {}), **(headers or {})})
    try:
        with opener.open(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def browser_login(base: str):
    """A cookie session through the login form, CSRF token included, as a browser does."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    status, page = call(opener, "GET", f"{base}/login/")
    token = re.search(rb'name="csrf_token"[^>]*value="([^"]+)"', page).group(1).decode()
    form = urllib.parse.urlencode({"username": ADMIN[0], "password": ADMIN[1], "csrf_token": token}).encode()
    with opener.open(urllib.request.Request(f"{base}/login/", data=form, method="POST"), timeout=60) as response:
        assert response.status == 200 and b"/logout" in response.read()
    return opener


def fire_concurrent_requests(base: str) -> list[str]:
    """Create customers, then read them back concurrently through API and pages; return every wrong answer."""
    api = urllib.request.build_opener()
    status, body = call(api, "POST", f"{base}/api/v1/security/login",
                        {"username": ADMIN[0], "password": ADMIN[1], "provider": "db"})
    assert status == 200, body
    auth = {"Authorization": f"Bearer {json.loads(body)['access_token']}"}
    expected = {}
    for n in range(12):
        name = f"并发客户 {n:02d} {time.monotonic_ns()}"
        status, body = call(api, "POST", f"{base}/api/v1/customer/", {"name": name}, auth)
        assert status == 201, body
        expected[json.loads(body)["id"]] = name
    browser = browser_login(base)
    ids = list(expected)

    def one(n: int) -> str | None:
        pk = ids[n % len(ids)]
        kind = n % 4
        if kind == 0:
            status, body = call(api, "GET", f"{base}/api/v1/customer/{pk}", headers=auth)
            ok = status == 200 and json.loads(body)["result"]["name"] == expected[pk]
        elif kind == 1:
            status, body = call(api, "GET", f"{base}/api/v1/customer/?q=(page_size:100)", headers=auth)
            ok = status == 200 and {r["name"] for r in json.loads(body)["result"]} >= set(expected.values())
        elif kind == 2:
            status, body = call(browser, "GET", f"{base}/customer/show/{pk}")
            ok = status == 200 and expected[pk].encode() in body
        else:
            status, body = call(browser, "GET", f"{base}/customer/list/?psize_CustomerView=100")
            ok = status == 200 and all(v.encode() in body for v in expected.values())
        return None if ok else f"request {n} (kind {kind}, id {pk}): {status} {body[:300]!r}"

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        return [problem for problem in pool.map(one, range(REQUESTS)) if problem]


def assert_clean_log(log_path) -> None:
    log = log_path.read_text()
    for sign in ("Traceback", "Worker exited", "failed to boot", "WORKER TIMEOUT", "Error handling request"):
        assert sign not in log, log[-4000:]


def test_cold_start_of_four_workers_then_preloaded_production_command(tmp_path, tmp_path_factory):
    env = {**os.environ, "DATABASE_URL": database_url(tmp_path_factory, "gunicorn"),
           "SECRET_KEY": "gunicorn-test-secret-key-long-enough-0123456789", "PORTAL_SCHEMA_DIR": str(ROOT / "schemas")}
    env.pop("WERKZEUG_RUN_MAIN", None)

    # four workers, each building the app at once on an empty database: tables and permissions exactly once
    with gunicorn(["-w", "4"], env, tmp_path / "cold.log") as (base, process):
        created = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "run", "fab", "create-admin", "--username", ADMIN[0],
             "--firstname", "Ada", "--lastname", "Admin", "--email", "admin@example.com", "--password", ADMIN[1]],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert created.returncode == 0, created.stderr
        problems = fire_concurrent_requests(base)
        assert process.poll() is None
    assert problems == []
    assert_clean_log(tmp_path / "cold.log")
    assert (tmp_path / "cold.log").read_text().count("Booting worker") == 4

    # the README's production command: app built once in the master, then forked
    with gunicorn(["--preload", "-w", "2"], env, tmp_path / "preload.log") as (base, process):
        problems = fire_concurrent_requests(base)
        assert process.poll() is None
    assert problems == []
    assert_clean_log(tmp_path / "preload.log")


def test_a_long_streamed_export_is_not_killed_by_the_worker_timeout(tmp_path, tmp_path_factory):
    """gunicorn kills a sync worker that does not check in for --timeout seconds, even mid-download; the export
    stream checks in between chunks, so an XLSX that takes several timeouts to write arrives whole."""
    import datetime as dt
    import io
    import zipfile

    from conftest import make_app
    from sqlalchemy import create_engine

    rows = 200_000  # several 1 s timeouts of XLSX writing (80,000 took 1.5 s on a quiet machine)
    url = database_url(tmp_path_factory, "longexport")
    app = make_app(tmp_path_factory, "longexport", SQLALCHEMY_DATABASE_URI=url)
    now = dt.datetime(2026, 1, 1)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(portal_of(app).models["Customer"].__table__.insert(),
                     [{"name": f"长导出客户{n:06d}", "kind": "company", "level": "normal", "created_on": now,
                       "changed_on": now} for n in range(rows)])
    engine.dispose()
    env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": "gunicorn-test-secret-key-long-enough-0123456789",
           "PORTAL_SCHEMA_DIR": str(ROOT / "schemas")}
    with gunicorn(["--preload", "-w", "1", "--timeout", "1"], env, tmp_path / "long.log") as (base, process):
        api = urllib.request.build_opener()
        status, body = call(api, "POST", f"{base}/api/v1/security/login",
                            {"username": ADMIN[0], "password": ADMIN[1], "provider": "db"})
        auth = {"Authorization": f"Bearer {json.loads(body)['access_token']}"}
        started = time.monotonic()
        status, body = call(api, "GET", f"{base}/api/v1/customer/export?format=xlsx", headers=auth)
        took = time.monotonic() - started
        # the CSV arrives whole too (on PostgreSQL one COPY into a spool file first; its check-ins are tested in test_dataio)
        csv_status, csv_body = call(api, "GET", f"{base}/api/v1/customer/export?format=csv", headers=auth)
        assert process.poll() is None
    assert status == 200
    assert took > 2, f"the export took {took:.1f} s: too fast to prove anything against a 1 s timeout"
    # a truncated file is not a zip; counting the sheet's rows in its XML is ~10x faster than openpyxl reading them
    with zipfile.ZipFile(io.BytesIO(body)) as xlsx:
        sheet = xlsx.read(next(n for n in xlsx.namelist() if n.startswith("xl/worksheets/")))
    assert sheet.count(b"<row ") == rows + 1 and "长导出客户199999".encode() in sheet
    assert csv_status == 200 and csv_body.decode("utf-8-sig").count("长导出客户") == rows
    assert "WORKER TIMEOUT" not in (tmp_path / "long.log").read_text()
