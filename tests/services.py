"""Real servers for the operations tests: redis-server, a throw-away PostgreSQL cluster, gunicorn.

Each one listens on a free port in 18400-18499 (PORTAL_TEST_PORTS) and is stopped by its fixture.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
# the newest installed PostgreSQL server, as .ci/postgres.sh picks it (Debian: /usr/lib/postgresql/15/bin)
PG_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
             default=Path("/usr/lib/postgresql/15/bin"))
# `.ci/suite.sh` gives the SQLite and PostgreSQL runs, which run side by side, ranges of their own
_FIRST, _LAST = (int(n) for n in os.environ.get("PORTAL_TEST_PORTS", "18400-18499").split("-"))
PORTS = range(_FIRST, _LAST + 1)


def free_port() -> int:
    for port in PORTS:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_FIRST}-{_LAST}")


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except (OSError, redis.RedisError):  # not up yet
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not come up in {timeout} s")
        time.sleep(0.1)


class RedisServer:
    def __init__(self, workdir: Path):
        self.port, self.workdir, self.process = free_port(), workdir, None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: self.client().ping(), 10, "redis-server")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class PostgresCluster:
    """initdb + pg_ctl on a port of our own (as user postgres when we are root, like .ci/postgres.sh)."""

    def __init__(self):
        # not under pytest's tmp_path: user postgres cannot enter root's private directories
        self.port, self.data = free_port(), Path(tempfile.mkdtemp(prefix="portal-pg-")) / "data"

    @staticmethod
    def available() -> bool:
        return (PG_BIN / "initdb").exists() and (PG_BIN / "pg_ctl").exists()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = list(args)
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--"] + command
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def init(self) -> None:
        self.data.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.data.parent, "postgres")
            shutil.chown(self.data, "postgres")
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--locale=C.UTF-8")

    def start(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.data / "server.log"), "-w", "-o",
                  f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.data.parent, ignore_errors=True)


class Gunicorn:
    """`gunicorn --preload -w 2 run:app` with the repository's gunicorn.conf.py, access log in a file."""

    def __init__(self, workdir: Path, env: dict):
        self.port, self.workdir, self.env, self.process = free_port(), workdir, env, None
        self.access_log = workdir / "access.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, **self.env, "GUNICORN_ACCESS_LOG": str(self.access_log)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--preload", "-w", "2", "-k", "sync", "-b", f"127.0.0.1:{self.port}", "run:app"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(self.workdir / "gunicorn.err", "wb"),
            start_new_session=True)  # its own process group: the workers can be stopped with it

        def up():
            if self.process.poll() is not None:
                raise RuntimeError("gunicorn exited: " + (self.workdir / "gunicorn.err").read_text()[-2000:])
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        wait_until(up, 60, "gunicorn")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:  # a stuck worker: end the whole group we started
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)

    def access_lines(self) -> list[str]:
        return self.access_log.read_text().splitlines() if self.access_log.exists() else []


def http(method: str, url: str, json_body=None, headers: dict | None = None):
    """One request with the standard library (no redirects followed): (status, headers, body bytes)."""
    import http.client
    import json
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = dict(headers or {})
    body = None
    if json_body is not None:
        body, headers["Content-Type"] = json.dumps(json_body), "application/json"
    try:
        connection.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=body, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()
