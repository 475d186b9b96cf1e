"""The durable outbox: enqueue in the caller's transaction, the worker, e-mail over a real SMTP server (aiosmtpd),
signed webhooks to a real HTTP server, retries with back-off, dead letters (API and page), rq with a real Redis,
and several worker processes on PostgreSQL."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import text

from conftest import ROOT, jwt_headers, login, make_app
from mail_server import MailServer
from services import free_port, wait_until

from app.data.outbox import counts, enqueue
from app.data.worker import run_worker

SCHEMA = """version: 1
module: desk
entities:
  Note:
    fields:
      title: {type: string, required: true}
roles:
  Clerk: {can: {Note: [read]}}
webhooks:
  erp: {url: $TEST_ERP_WEBHOOK_URL, secret: $TEST_ERP_WEBHOOK_SECRET}
  chat: {url: "http://127.0.0.1:9/never", secret: literal-secret}
"""
CLERK = ("clerk", "Clerk-pass-1")


@pytest.fixture(scope="module")
def mail(tmp_path_factory):
    server = MailServer(free_port()).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def schema_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("outbox_schema")
    (directory / "desk.yaml").write_text(SCHEMA, encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def app(tmp_path_factory, schema_dir, mail):
    app = make_app(tmp_path_factory, "outbox", schema_dir, PORTAL_WORKER_POLL_SECONDS=0.05, **mail.config())
    with app.app_context():
        sm = app.appbuilder.sm
        sm.add_user(CLERK[0], "Cleo", "Clerk", "clerk@example.com", [sm.find_role("Clerk")], CLERK[1])
    return app


@pytest.fixture(autouse=True)
def fresh_outbox(app, mail):
    """Each test starts with an empty outbox, an accepting mail server and the default retry settings."""
    with app.app_context(), engine(app).begin() as conn:
        conn.execute(text("DELETE FROM portal_outbox"))
    mail.handler.refuse = False
    app.config.update(PORTAL_RETRY_BASE_SECONDS=60, PORTAL_RETRY_MAX=8, PORTAL_QUEUE="", MAIL_SERVER="127.0.0.1")
    with mail.handler.lock:
        mail.handler.messages.clear()
        mail.handler.ids.clear()


def engine(app):
    with app.app_context():
        return app.appbuilder.session.get_bind()


def email(n=0, to="someone@example.com", **payload):
    return {"channel": "email", "user_id": None, "notification_id": None,
            "payload": {"to": to, "subject": f"Subject {n}", "text": f"Body {n}", "html": None, **payload}}


def rows(app):
    from app.data.outbox import OUTBOX

    with engine(app).connect() as conn:
        return [dict(r._mapping) for r in conn.execute(OUTBOX.select().order_by(OUTBOX.c.id))]


def status_counts(app):
    with engine(app).connect() as conn:
        return counts(conn)


def test_enqueue_is_part_of_the_callers_transaction(app, mail):
    with pytest.raises(RuntimeError):
        with engine(app).begin() as conn:
            enqueue(conn, [email(1)])
            raise RuntimeError("the change that caused it failed")
    run_worker(app, once=True)
    assert rows(app) == [] and mail.messages == []

    with engine(app).begin() as conn:
        enqueue(conn, [email(2, subject="Café <b>&</b>", text="Line one\n\n<script>x</script>")])
    run_worker(app, once=True)
    run_worker(app, once=True)  # nothing left: sent once
    [message] = mail.messages
    [row] = rows(app)
    assert row["status"] == "sent" and row["attempts"] == 0
    assert message["Subject"] == "Café <b>&</b>" and message["To"] == "someone@example.com"
    assert message["Message-ID"] == f"<{row['delivery_id']}@portal.outbox>"
    assert message.get_body(("plain",)).get_content().strip().startswith("Line one")
    html = message.get_body(("html",)).get_content()
    assert "&lt;script&gt;x&lt;/script&gt;" in html and "<script>" not in html  # the text part, escaped


def test_header_injection_is_flattened(app, mail):
    with engine(app).begin() as conn:
        enqueue(conn, [email(1, subject="Hi\r\nBcc: victim@example.com")])
    run_worker(app, once=True)
    [message] = mail.messages
    assert message["Bcc"] is None and "\n" not in message["Subject"]


def test_smtp_down_then_up_retries_with_backoff_and_delivers_once(app, mail):
    app.config.update(PORTAL_RETRY_BASE_SECONDS=0.3, PORTAL_RETRY_MAX=5)
    mail.handler.refuse = True
    with engine(app).begin() as conn:
        enqueue(conn, [email(1)])
    started = time.time()
    run_worker(app, once=True)
    [row] = rows(app)
    assert row["status"] == "pending" and row["attempts"] == 1 and row["last_error"].startswith("SMTP 451")
    waited = row["next_attempt_at"].timestamp() - started
    assert 0.25 <= waited <= 0.6, waited  # base * 2^0, plus at most 10 % jitter
    run_worker(app, once=True)  # not due yet: not tried again
    assert rows(app)[0]["attempts"] == 1 and mail.handler.refused == 1
    time.sleep(0.4)
    run_worker(app, once=True)
    [row] = rows(app)
    assert row["attempts"] == 2 and row["next_attempt_at"].timestamp() - time.time() > 0.4  # base * 2^1
    mail.handler.refuse = False
    time.sleep(max(0.0, row["next_attempt_at"].timestamp() - time.time()) + 0.05)
    run_worker(app, once=True)
    assert [r["status"] for r in rows(app)] == ["sent"]
    assert list(mail.ids.values()) == [1]


def _fail_until_dead(app, mail, message):
    app.config.update(PORTAL_RETRY_BASE_SECONDS=0.02, PORTAL_RETRY_MAX=3)
    mail.handler.refuse = True
    with engine(app).begin() as conn:
        enqueue(conn, [message])
    deadline = time.time() + 10
    while status_counts(app).get("dead") != 1:
        assert time.time() < deadline, rows(app)
        run_worker(app, once=True)
        time.sleep(0.05)


def test_dead_letters_for_admin_only_and_retry(app, mail):
    _fail_until_dead(app, mail, {**email(7), "user_id": 5, "notification_id": 42})
    [row] = rows(app)
    assert row["attempts"] == 3 and "451" in row["last_error"]

    client = app.test_client()
    admin = jwt_headers(client)
    listed = client.get("/api/v1/notifications/dead?page=0&page_size=10", headers=admin)
    assert listed.status_code == 200
    assert listed.json["count"] == 1
    [item] = listed.json["result"]
    assert {k: item[k] for k in ("id", "channel", "user_id", "notification_id", "attempts")} == {
        "id": row["id"], "channel": "email", "user_id": 5, "notification_id": 42, "attempts": 3}
    assert "451" in item["last_error"] and item["created_on"]
    assert client.get("/api/v1/notifications/dead?page_size=0", headers=admin).status_code == 400
    assert client.get("/api/v1/notifications/dead?page=1&page_size=1", headers=admin).json["result"] == []

    clerk = jwt_headers(client, *CLERK)
    assert client.get("/api/v1/notifications/dead", headers=clerk).status_code == 403
    assert client.post(f"/api/v1/notifications/dead/{row['id']}/retry", headers=clerk).status_code == 403
    assert client.post("/api/v1/notifications/dead/retry_all", headers=clerk).status_code == 403
    assert client.get("/api/v1/notifications/dead").status_code == 401

    page = login(app.test_client()).get("/deadletters/")
    assert page.status_code == 200 and b"451" in page.data and b'class="dead-letter"' in page.data
    clerk_page = login(app.test_client(), *CLERK)
    assert clerk_page.get("/deadletters/").status_code == 403
    assert clerk_page.post(f"/deadletters/{row['id']}/retry").status_code == 403
    assert status_counts(app) == {"dead": 1}

    mail.handler.refuse = False
    assert client.post("/api/v1/notifications/dead/999999/retry", headers=admin).status_code == 404
    retried = client.post(f"/api/v1/notifications/dead/{row['id']}/retry", headers=admin)
    assert retried.status_code == 200 and retried.json["retried"] == 1
    assert rows(app)[0]["status"] == "pending" and rows(app)[0]["attempts"] == 0
    run_worker(app, once=True)
    assert rows(app)[0]["status"] == "sent" and list(mail.ids.values()) == [1]


def test_dead_letter_page_retry_buttons(app, mail):
    _fail_until_dead(app, mail, email(1))
    admin = login(app.test_client())
    page = admin.get("/deadletters/")
    [row] = rows(app)
    assert f'/deadletters/{row["id"]}/retry'.encode() in page.data and b'id="dead-retry-all"' in page.data
    assert b"someone@example.com: Subject 1" in page.data  # what the message was, not its bare ids
    assert b"Dead letters" in admin.get("/").data  # the menu entry
    assert admin.post("/deadletters/retry_all").status_code == 302
    assert rows(app)[0]["status"] == "pending"
    mail.handler.refuse = False
    run_worker(app, once=True)
    assert status_counts(app) == {"sent": 1}
    assert b"Dead letters" not in login(app.test_client(), *CLERK).get("/").data


def test_dead_letter_page_in_chinese(app, mail):
    _fail_until_dead(app, mail, email(1))
    admin = login(app.test_client())
    admin.get("/lang/zh")
    page = admin.get("/deadletters/").get_data(as_text=True)
    assert "死信" in page and "全部重试" in page


def test_mail_not_configured_waits_without_counting_attempts(app, mail):
    app.config["MAIL_SERVER"] = ""
    with engine(app).begin() as conn:
        enqueue(conn, [email(1)])
    run_worker(app, once=True)
    [row] = rows(app)
    assert (row["status"], row["attempts"], row["last_error"]) == ("pending", 0, "mail not configured")
    app.config["MAIL_SERVER"] = "127.0.0.1"
    run_worker(app, once=True)
    assert rows(app)[0]["status"] == "sent" and len(mail.messages) == 1


def test_refused_recipient_is_a_failed_attempt(app, mail):
    with engine(app).begin() as conn:
        enqueue(conn, [email(1, to="not-an-address"), email(2)])
    run_worker(app, once=True)
    first, second = rows(app)
    assert first["status"] == "pending" and first["attempts"] == 1 and "recipient" in first["last_error"]
    assert second["status"] == "sent"


# -- webhooks -----------------------------------------------------------------------------------------------------

class Receiver(BaseHTTPRequestHandler):
    answers: list[int] = []
    seen: list[tuple[dict, bytes]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.seen.append((dict(self.headers), body))
        code = Receiver.answers.pop(0) if Receiver.answers else 200
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture()
def receiver(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Receiver)
    Receiver.answers, Receiver.seen = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("TEST_ERP_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/hook")
    monkeypatch.setenv("TEST_ERP_WEBHOOK_SECRET", "s3cret")
    yield Receiver
    server.shutdown()
    server.server_close()


def test_webhook_signed_retried_then_delivered_once(app, receiver):
    app.config.update(PORTAL_RETRY_BASE_SECONDS=0.05)
    receiver.answers = [500, 200]
    with engine(app).begin() as conn:
        enqueue(conn, [{"channel": "webhook:erp", "payload": {"event": "ticket.assigned", "data": {"id": 3, "t": "é"}},
                        "user_id": None, "notification_id": 9}])
    run_worker(app, once=True)
    [row] = rows(app)
    assert row["status"] == "pending" and row["last_error"] == "webhook erp answered HTTP 500"
    time.sleep(0.12)
    run_worker(app, once=True)
    assert rows(app)[0]["status"] == "sent"
    assert len(receiver.seen) == 2
    for headers, body in receiver.seen:
        expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Portal-Signature"], expected)
        assert headers["X-Portal-Delivery"] == row["delivery_id"] and headers["X-Portal-Event"] == "ticket.assigned"
        assert json.loads(body) == {"delivery_id": row["delivery_id"], "event": "ticket.assigned",
                                    "data": {"id": 3, "t": "é"}}


def test_webhook_missing_environment_ends_dead_with_a_clear_error(app, receiver, monkeypatch):
    monkeypatch.delenv("TEST_ERP_WEBHOOK_SECRET")
    app.config.update(PORTAL_RETRY_BASE_SECONDS=0.01, PORTAL_RETRY_MAX=2)
    with engine(app).begin() as conn:
        enqueue(conn, [{"channel": "webhook:erp", "payload": {"event": "e", "data": {}}},
                       {"channel": "webhook:nope", "payload": {"event": "e", "data": {}}}])
    for _ in range(20):
        run_worker(app, once=True)
        if status_counts(app) == {"dead": 2}:
            break
        time.sleep(0.03)
    erp, nope = rows(app)
    assert erp["status"] == "dead" and erp["last_error"] == "environment variable TEST_ERP_WEBHOOK_SECRET (secret) is not set"
    assert nope["status"] == "dead" and "no webhook named 'nope'" in nope["last_error"]
    assert receiver.seen == []


# -- rq with a real Redis -----------------------------------------------------------------------------------------

def test_rq_workers_deliver_claimed_messages_once(app, mail, redis_server):
    from rq import Queue

    from app.data import outbox
    from app.data.rq_queue import QUEUE_NAME, deliver_job, run_rq_worker

    app.config.update(PORTAL_QUEUE="rq", REDIS_URL=redis_server.url, PORTAL_OUTBOX_BATCH=4)
    with engine(app).begin() as conn:
        enqueue(conn, [email(n) for n in range(10)])
    run_worker(app, once=True)  # the deliver pass only hands claimed ids to rq
    assert mail.messages == [] and len(Queue(QUEUE_NAME, connection=redis_server.client())) == 3
    # a stale job (its claim since taken over) must send nothing: enqueue one by hand with a wrong token
    Queue(QUEUE_NAME, connection=redis_server.client()).enqueue(deliver_job, "0" * 32, "2099-01-01T00:00:00",
                                                                [r["id"] for r in rows(app)])
    run_rq_worker(app, burst=True)
    assert status_counts(app) == {"sent": 10}
    assert sorted(mail.ids.values()) == [1] * 10


CALLBACKS_RUN = []


def planted_callback(*args):
    """A callback someone planted on a job in Redis: the rq worker must never call it."""
    CALLBACKS_RUN.append(args)


class PlantedOnUnpickling:
    """Unpickling it creates a file: a pickled job carrying it shows whether the worker unpickled the job."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_rq_worker_runs_only_the_portals_own_jobs(app, mail, redis_server, tmp_path):
    """Whoever can write to Redis must not run code through the rq worker: a job naming another function (JSON, as
    the portal writes jobs) fails without running; a pickled job (rq's default format) is never unpickled; a
    callback on a job is never called. The portal's own jobs still deliver."""
    from rq import Callback, Queue
    from rq.serializers import JSONSerializer

    from app.data.rq_queue import QUEUE_NAME, deliver_job, run_rq_worker

    app.config.update(PORTAL_QUEUE="rq", REDIS_URL=redis_server.url, PORTAL_OUTBOX_BATCH=10)
    redis = redis_server.client()
    made, unpickled = tmp_path / "json-job", tmp_path / "pickled-job"
    Queue(QUEUE_NAME, connection=redis, serializer=JSONSerializer).enqueue("os.mkdir", str(made))
    Queue(QUEUE_NAME, connection=redis).enqueue("os.getcwd", PlantedOnUnpickling(str(unpickled)))  # pickled
    callback = Callback(f"{__name__}.planted_callback")
    Queue(QUEUE_NAME, connection=redis, serializer=JSONSerializer).enqueue(
        deliver_job, "0" * 32, "2099-01-01T00:00:00", [], on_success=callback, on_failure=callback)
    Queue(QUEUE_NAME, connection=redis, serializer=JSONSerializer).enqueue("os.getcwd", on_failure=callback)
    assert not unpickled.exists()  # (enqueueing pickles, it does not unpickle)
    with engine(app).begin() as conn:
        enqueue(conn, [email(n) for n in range(3)])
    run_worker(app, once=True)  # the portal's own job
    run_rq_worker(app, burst=True)
    assert not made.exists() and not unpickled.exists() and CALLBACKS_RUN == []
    assert status_counts(app) == {"sent": 3} and sorted(mail.ids.values()) == [1] * 3


# -- several worker processes on PostgreSQL -----------------------------------------------------------------------

def _worker_process(app, mail, *args, **env):
    environment = {**os.environ, "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
                   "PORTAL_SCHEMA_DIR": app.config["PORTAL_SCHEMA_DIR"], "SECRET_KEY": app.config["SECRET_KEY"],
                   "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": str(mail.port), "PORTAL_WORKER_POLL_SECONDS": "0.1",
                   "PORTAL_OUTBOX_BATCH": "10", "PORTAL_LOG_LEVEL": "WARNING", **env}
    return subprocess.Popen([sys.executable, "-m", "flask", "--app", "run", "portal", "worker", *args], cwd=ROOT,
                            env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.skipif(not os.environ.get("PORTAL_TEST_DATABASE_URL"), reason="row locking across processes: PostgreSQL")
def test_four_worker_processes_deliver_each_message_once_and_survive_a_kill(app, mail):
    with engine(app).begin() as conn:
        enqueue(conn, [email(n) for n in range(400)])
    workers = [_worker_process(app, mail, "--once") for _ in range(4)]
    for worker in workers:
        assert worker.wait(120) == 0, worker.stderr.read().decode()[-2000:]
    assert status_counts(app) == {"sent": 400}
    ids = mail.ids
    assert len(ids) == 400 and set(ids.values()) == {1}, [i for i, n in ids.items() if n > 1]

    # a worker killed mid-delivery: another one takes over once its claim's lease ends; nothing is lost
    mail.handler.delay = 0.01
    with mail.handler.lock:
        mail.handler.ids.clear()
    with engine(app).begin() as conn:
        enqueue(conn, [email(n) for n in range(400, 700)])
    lease = {"PORTAL_OUTBOX_LEASE_SECONDS": "3", "PORTAL_DELIVERY_TIMEOUT_SECONDS": "0.5"}
    victim, other = _worker_process(app, mail, **lease), _worker_process(app, mail, **lease)
    try:
        wait_until(lambda: len(mail.ids) >= 60, 60, "delivery")
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        killed_at = len(mail.ids)
        assert killed_at < 300
        replacement = _worker_process(app, mail, **lease)
        wait_until(lambda: status_counts(app) == {"sent": 700}, 60, "all delivered")
    finally:
        mail.handler.delay = 0
        for worker in (victim, other, locals().get("replacement")):
            if worker is not None and worker.poll() is None:
                worker.send_signal(signal.SIGTERM)  # stops after its current message
                assert worker.wait(30) == 0
    ids = mail.ids
    assert len(ids) == 300  # every message arrived
    assert sum(ids.values()) - len(ids) <= 1  # at most the one the killed worker sent but had not marked


def _children(pid: int) -> list[int]:
    children = []
    for stat in os.listdir("/proc"):
        if stat.isdigit():
            try:
                with open(f"/proc/{stat}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                children.append(int(stat))
    return children


def test_run_py_serves_with_a_worker_and_stops_it(tmp_path, schema_dir, mail):
    """`python run.py` (make run) starts one worker process beside the server; stopping the server stops it."""
    import urllib.request

    from sqlalchemy import create_engine

    port, database = free_port(), f"sqlite:///{tmp_path / 'portal.db'}"
    env = {**os.environ, "PORTAL_PORT": str(port), "DATABASE_URL": database, "PORTAL_SCHEMA_DIR": str(schema_dir),
           "PORTAL_DEMO": "0", "SECRET_KEY": "x" * 40, "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": str(mail.port),
           "PORTAL_WORKER_POLL_SECONDS": "0.2"}
    env.pop("PORTAL_TEST_DATABASE_URL", None)
    server = subprocess.Popen([sys.executable, "run.py"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200,
                   60, "run.py")
        [worker] = _children(server.pid)
        local = create_engine(database)
        with local.begin() as conn:
            enqueue(conn, [email(1, subject="from run.py")])
        wait_until(lambda: any(m["Subject"] == "from run.py" for m in mail.messages), 30, "the worker's delivery")
        local.dispose()
    finally:
        server.terminate()
        output = server.communicate(timeout=40)[0].decode()
    assert "Notification worker running" in output, output[-2000:]
    assert not os.path.exists(f"/proc/{worker}") or open(f"/proc/{worker}/stat").read().split()[2] == "Z"
