"""`flask --app run portal ...` commands in-process (Flask's CliRunner), so coverage counts them.

portal check: tests/test_check.py; import: tests/test_dataio.py; backup/restore: tests/test_backup.py.
"""
from __future__ import annotations


import pytest
from conftest import jwt_headers, make_app
from openpyxl import Workbook


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """A portal with the shipped schemas, its admin user and no records."""
    return make_app(tmp_path_factory, "cli_fresh")


def test_demo_loads_once(fresh):
    runner = fresh.test_cli_runner()
    first = runner.invoke(args=["portal", "demo"])
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("Loaded demo data: ")
    client = fresh.test_client()
    headers = jwt_headers(client)
    customers = client.get("/api/v1/customer/", headers=headers).json["count"]
    assert customers > 0 and client.get("/api/v1/labour_entry/", headers=headers).json["count"] > 0
    again = runner.invoke(args=["portal", "demo"])
    assert again.exit_code == 0 and again.stdout == "The portal already has data; nothing loaded.\n"
    assert client.get("/api/v1/customer/", headers=headers).json["count"] == customers


def test_import_of_an_xlsx_file(fresh, tmp_path):
    book = Workbook()
    book.active.append(["Code", "Name"])
    for n in range(5):
        book.active.append([f"CLI-X{n}", f"表格项目{n}"])
    path = tmp_path / "projects.xlsx"
    book.save(path)
    result = fresh.test_cli_runner().invoke(args=["portal", "import", "project", str(path)])
    assert result.exit_code == 0, result.output
    assert "Imported 5 rows into Project: 5 created, 0 updated." in result.stdout
    client = fresh.test_client()
    found = client.get("/api/v1/project/", query_string={"q": "(filters:!((col:code,opr:sw,value:CLI-X)))"},
                       headers=jwt_headers(client)).json
    assert found["count"] == 5


def test_portal_group_help_lists_every_command(fresh):
    result = fresh.test_cli_runner().invoke(args=["portal", "--help"])
    assert result.exit_code == 0
    for command in ("check", "demo", "import", "backup", "restore"):
        assert f"  {command} " in result.stdout, result.stdout


def test_make_run_creates_the_admin_it_is_told_once(fresh, monkeypatch):
    """`python run.py` (make run) makes sure an admin exists before serving: as named by the environment, once."""
    from app.quickstart import ensure_admin

    monkeypatch.setenv("PORTAL_ADMIN_USER", "boss")
    monkeypatch.setenv("PORTAL_ADMIN_PASSWORD", "Boss-pass-1")
    with fresh.app_context():
        assert ensure_admin(fresh) == ("boss", "Boss-pass-1")
        assert ensure_admin(fresh) is None  # already there: left alone
    headers = jwt_headers(fresh.test_client(), "boss", "Boss-pass-1")
    assert fresh.test_client().get("/api/v1/ticket/", headers=headers).status_code == 200  # with the Admin role
    monkeypatch.setenv("PORTAL_ADMIN_USER", "boss2")
    monkeypatch.delenv("PORTAL_ADMIN_PASSWORD")
    with fresh.app_context():
        username, password = ensure_admin(fresh)  # no password given: a random one, printed by `make run`
    assert username == "boss2" and len(password) >= 16
    jwt_headers(fresh.test_client(), username, password)


def test_the_worker_started_beside_the_server_stops_when_its_parent_is_killed(tmp_path):
    """`make run` starts a notification worker; if the server process dies even by SIGKILL (no clean-up runs), the
    worker notices and stops rather than living on beside the next `make run`'s worker."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT

    parent_code = ("import sys, time\nfrom app import create_app\nfrom app.quickstart import start_worker\n"
                   "app = create_app()\nworker = start_worker(app)\nprint(worker.pid, flush=True)\ntime.sleep(600)\n")
    env = os.environ | {"DATABASE_URL": f"sqlite:///{tmp_path / 'orphan.db'}", "SECRET_KEY": "x" * 40,
                        "PORTAL_WORKER_POLL_SECONDS": "0.2"}
    parent = subprocess.Popen([sys.executable, "-c", parent_code], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        worker_pid = None
        for line in parent.stdout:
            if line.strip().isdigit():
                worker_pid = int(line)
                break
        assert worker_pid
        time.sleep(1.0)
        os.kill(worker_pid, 0)  # running
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                os.kill(worker_pid, 0)
                if open(f"/proc/{worker_pid}/stat").read().split()[2] == "Z":
                    break  # exited; waiting for init to reap it
            except (ProcessLookupError, FileNotFoundError):
                break
            time.sleep(0.2)
        else:
            os.kill(worker_pid, signal.SIGKILL)
            raise AssertionError("the worker outlived its parent")
    finally:
        if parent.poll() is None:
            parent.kill()
