"""Report cache (issue 15): server time of a cached hit of `GET /api/v1/reports/<id>`, and what the change
signal costs a write.

The report is `labour_by_worker`: 2,000 groups (one per worker) over 20,000 labour entries. Server time is the
time spent inside the app's WSGI callable (the FAB test client calls it in-process; the body is fully built).
Anchor, same run and interleaved: the same request on an app with the cache off (a miss every time). Goal: a hit
<= 5 ms. Stores: in-process (SimpleCache) and Redis (a redis-server of our own on port 5711), on SQLite, and on
PostgreSQL when PORTAL_BENCH_PG is set.

Write path: `PUT /api/v1/worker/<id>` with the change signal installed vs the same app with its listeners
removed, interleaved; and the bump's own statement (one upsert into portal_table_versions, in a transaction then
rolled back) timed alone: under load the PUTs' spread is wider than the difference.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis
from sqlalchemy import event

from app import create_app
from app.portal import portal_of

from .common import interleaved, median, pg_schema, release, row, spread
from .reports import ROOT, fill

REPORT = "labour_by_worker"
ROWS = 20_000  # 10 entries per worker: 2,000 groups
REPEAT = 25
REDIS_PORT = 5711


def _app(url: str, **config):
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench", "WTF_CSRF_ENABLED": False,
                      "PORTAL_SCHEMA_DIR": str(ROOT / "schemas"), "REDIS_URL": "", **config})
    with app.app_context():
        sm = app.appbuilder.sm
        if not sm.find_user(username="bench"):
            sm.add_user("bench", "Bench", "Admin", "bench@example.com", sm.find_role("Admin"), "bench-pass")
    return app


def _server_timed(app) -> dict[str, list[float]]:
    """Wraps the app's WSGI callable; each request's server seconds are appended to the lists by path: wall
    time, and the thread's CPU time (what the request itself costs, whatever else the machine is doing)."""
    seconds, inner = {}, app.wsgi_app

    def timed(environ, start_response):
        wall, cpu = time.perf_counter(), time.thread_time()
        body = b"".join(inner(environ, start_response))  # the whole body, as a server would send it
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        seconds.setdefault(environ["PATH_INFO"], []).append(wall)
        seconds.setdefault("cpu " + environ["PATH_INFO"], []).append(cpu)
        return [body]
    app.wsgi_app = timed
    return seconds


def _client(app):
    client = app.test_client()
    assert client.post("/login/", data={"username": "bench", "password": "bench-pass"}).status_code == 302
    return client


def _get(client):
    response = client.get(f"/api/v1/reports/{REPORT}")
    assert response.status_code == 200 and len(response.json["rows"]) == 2000, response.status_code
    return response


def hits(url: str, label: str, redis_url: str = "") -> list[str]:
    cached, uncached = _app(url, REDIS_URL=redis_url), _app(url, PORTAL_REPORT_CACHE_SECONDS=0)
    cached_times, uncached_times = _server_timed(cached), _server_timed(uncached)
    cached_client, uncached_client = _client(cached), _client(uncached)
    _get(cached_client)  # the one miss that fills the entry
    cached_times.clear()
    uncached_times.clear()

    def floor():  # the smallest signed-in API request: the list of reports (no report run)
        assert cached_client.get("/api/v1/reports/").status_code == 200
    interleaved({"hit": lambda: _get(cached_client), "miss": lambda: _get(uncached_client), "floor": floor}, REPEAT)
    path = f"/api/v1/reports/{REPORT}"
    hit, hit_cpu, miss = cached_times[path], cached_times["cpu " + path], uncached_times[path]
    floor_wall, floor_cpu = cached_times["/api/v1/reports/"], cached_times["cpu /api/v1/reports/"]
    for app in (cached, uncached):
        release(app)
    return [row(label, spread(hit, 1000), spread(hit_cpu, 1000), spread(floor_wall, 1000), spread(floor_cpu, 1000),
                spread(miss, 1000),
                f"{median(miss) / median(hit):.1f}×", "yes" if median(hit_cpu) <= 0.005 else "no")]


def write_cost(url: str, label: str) -> list[str]:
    """PUT of one worker with and without the change signal, interleaved; and the bump statement alone."""
    app = _app(url)
    client = _client(app)
    signals = portal_of(app).change_signals
    with app.app_context():
        engine = app.appbuilder.session.get_bind()
    worker = client.get("/api/v1/worker/?q=(page_size:1)").json["ids"][0]
    names = iter(range(10**6))

    def put():
        response = client.put(f"/api/v1/worker/{worker}", json={"name": f"工人-{next(names)}"})
        assert response.status_code == 200, response.json

    def with_signal():
        put()

    def without_signal():
        listeners = (("before_cursor_execute", signals._executed), ("commit", signals._committing),
                     ("rollback", signals._forget))
        for name, fn in listeners:
            event.remove(engine, name, fn)
        try:
            put()
        finally:
            for name, fn in listeners:
                event.listen(engine, name, fn)

    times = interleaved({"with": with_signal, "without": without_signal}, REPEAT)

    bump = []
    for _ in range(REPEAT):  # the upsert alone, inside a transaction that is then rolled back
        with engine.connect() as connection:
            transaction = connection.begin()
            signals.note(connection, "worker")
            start = time.perf_counter()
            signals._committing(connection)
            bump.append(time.perf_counter() - start)
            transaction.rollback()
    release(app)
    return [row(label, spread(times["without"], 1000), spread(times["with"], 1000),
                f"{median(times['with']) / median(times['without']):.2f}", spread(bump, 1000, 3))]


def _redis(workdir: Path):
    server = subprocess.Popen(["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", str(workdir)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=REDIS_PORT)
    for _ in range(100):
        try:
            client.ping()
            return server
        except redis.ConnectionError:
            time.sleep(0.05)
    server.terminate()
    raise RuntimeError("redis-server did not start")


def run(pg: str | None = None) -> list[str]:
    work = Path(tempfile.mkdtemp(prefix="bench-report-cache-"))
    server = _redis(work)
    redis_url = f"redis://127.0.0.1:{REDIS_PORT}/0"
    hit_lines, write_lines = [], []
    try:
        sqlite = f"sqlite:///{work / 'labour.db'}"
        fill(_app(sqlite), ROWS)
        hit_lines += hits(sqlite, "SQLite, in-process") + hits(sqlite, "SQLite, Redis", redis_url)
        write_lines += write_cost(sqlite, "SQLite")
        if pg:
            with pg_schema(pg) as url:
                filler = _app(url)
                fill(filler, ROWS)
                release(filler)
                hit_lines += hits(url, "PostgreSQL, in-process") + hits(url, "PostgreSQL, Redis", redis_url)
                write_lines += write_cost(url, "PostgreSQL")
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    return ([f"### Report cache: `GET /api/v1/reports/{REPORT}` (2,000 groups), server ms, median (min–max) of {REPEAT}",
             "", row("database, store", "cached hit (wall)", "cached hit (CPU)", "floor: GET /api/v1/reports/ (wall)", "floor (CPU)",
                     "miss, cache off (wall, anchor)", "miss / hit", "hit CPU ≤ 5 ms"),
             row("---", "---", "---", "---", "---", "---", "---", "---"), *hit_lines, "",
             f"### Change signal on the write path: `PUT /api/v1/worker/<id>`, ms, median (min–max) of {REPEAT}", "",
             row("database", "without signal", "with signal", "with / without", "the upsert alone"),
             row("---", "---", "---", "---", "---"), *write_lines])


if __name__ == "__main__":
    print("\n".join(run()))
