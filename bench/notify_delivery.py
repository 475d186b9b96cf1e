"""Notification delivery (issue 14): 10,000 due e-mails delivered by 2 `portal worker` processes vs a plain smtplib
loop (one connection) sending the same messages to the same local SMTP server. Goal: workers ≥ 0.5× the loop's rate.

The SMTP server (aiosmtpd, tests/mail_server.py) runs in a process of its own on port 5620-5629, the workers are
started once per database and wait idle; each run enqueues 10,000 messages in one transaction and is timed until
no message is pending. Median of interleaved runs with (min–max); every message is counted at the server by its
Message-ID (each delivered exactly once).
"""
from __future__ import annotations

import json
import logging
import os
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, func, select, text

from app.data.channels.email import build_email
from app.data.outbox import OUTBOX, enqueue

from .common import interleaved, median, pg_schema, row, spread

ROOT = Path(__file__).resolve().parent.parent
MESSAGES = 10_000
WORKERS = 2
REPEAT = int(os.environ.get("BENCH_NOTIFY_REPEAT", "5"))
PORTS = range(5620, 5630)
SCHEMA = "version: 1\nmodule: bench\nentities:\n  Note:\n    fields:\n      title: string\n"


def _free_port() -> int:
    for port in PORTS:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 5620-5629")


def _payload(n: int) -> dict:
    return {"to": f"user{n % 50}@example.com", "subject": f"Follow up customer {n}",
            "text": f"Please follow up customer {n} by tomorrow.\n\nhttp://portal.local/customer/show/{n}", "html": None}


class MailProcess:
    def __init__(self) -> None:
        self.port = _free_port()
        self.process = subprocess.Popen([sys.executable, str(ROOT / "tests" / "mail_server.py"), str(self.port)],
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "ready"

    def stop(self) -> dict:
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=60)
        return json.loads(out.strip().splitlines()[-1])


def plain_loop(port: int, run: list[int], label: str):
    """The anchor: one smtplib connection, the same messages (same builder), sent one after another."""
    def call():
        run[0] += 1
        with smtplib.SMTP("127.0.0.1", port) as connection:
            for n in range(MESSAGES):
                connection.send_message(build_email(_payload(n), "portal@example.com", f"loop-{label}-{run[0]}-{n}"))
    return call


def _pending(engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(OUTBOX).where(OUTBOX.c.status == "pending"))


def outbox_workers(engine):
    def call():
        with engine.begin() as conn:
            enqueue(conn, [{"channel": "email", "payload": _payload(n)} for n in range(MESSAGES)])
        while _pending(engine):
            time.sleep(0.05)
    return call


def measure(url: str, label: str, mail: MailProcess, work: Path) -> tuple[str, int]:
    schemas = work / "schemas"
    schemas.mkdir(exist_ok=True)
    (schemas / "bench.yaml").write_text(SCHEMA, encoding="utf-8")
    env = {**os.environ, "DATABASE_URL": url, "PORTAL_SCHEMA_DIR": str(schemas), "SECRET_KEY": "bench" * 8,
           "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": str(mail.port), "MAIL_DEFAULT_SENDER": "portal@example.com",
           "PORTAL_WORKER_POLL_SECONDS": "0.05", "PORTAL_LOG_LEVEL": "WARNING"}
    # the first worker creates the tables; then both wait for work
    workers = [subprocess.Popen([sys.executable, "-m", "flask", "--app", "run", "portal", "worker"], cwd=ROOT, env=env,
                                stderr=subprocess.DEVNULL)]
    engine = create_engine(url)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                _pending(engine)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        workers += [subprocess.Popen([sys.executable, "-m", "flask", "--app", "run", "portal", "worker"], cwd=ROOT,
                                     env=env, stderr=subprocess.DEVNULL) for _ in range(WORKERS - 1)]
        time.sleep(8)  # the second worker's start-up
        run = [0]
        times = interleaved({"loop": plain_loop(mail.port, run, label), "workers": outbox_workers(engine)}, REPEAT)
        with engine.connect() as conn:
            sent = conn.scalar(select(func.count()).select_from(OUTBOX).where(OUTBOX.c.status == "sent"))
            assert sent == MESSAGES * REPEAT, sent
            conn.execute(text("SELECT 1"))
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(60)
        engine.dispose()
    loop_rate = [MESSAGES / s for s in times["loop"]]
    worker_rate = [MESSAGES / s for s in times["workers"]]
    ratio = median(times["loop"]) / median(times["workers"])
    return row(label, spread(times["loop"]), f"{median(loop_rate):,.0f}", spread(times["workers"]),
               f"{median(worker_rate):,.0f}", f"{ratio:.2f}", "≥ 0.5"), 2 * MESSAGES * REPEAT


def run(pg: str | None = None) -> list[str]:
    logging.getLogger("flask_appbuilder").setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="bench-notify-"))
    mail = MailProcess()
    expected = 0
    try:
        lines = []
        line, count = measure(f"sqlite:///{work / 'portal.db'}", "SQLite", mail, work)
        lines.append(line)
        expected += count
        if pg:
            with pg_schema(pg) as url:
                line, count = measure(url, "PostgreSQL", mail, work)
                lines.append(line)
                expected += count
    finally:
        received = mail.stop()
    assert received == {"received": expected, "distinct": expected}, (received, expected)  # each message once
    return ([f"### Notification delivery: {MESSAGES:,} e-mails to a local SMTP server, {WORKERS} workers vs a plain "
             f"smtplib loop (median of {REPEAT} interleaved runs, min–max)", "",
             row("database", "plain loop (s)", "loop msg/s", f"{WORKERS} workers (s)", "workers msg/s",
                 "ratio (workers rate / loop rate)", "goal"),
             row("---", "---", "---", "---", "---", "---", "---")] + lines +
            ["", f"Every message arrived once at the server ({received['distinct']:,} distinct Message-IDs)."])
