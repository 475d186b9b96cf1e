"""A malformed number in the environment stops start-up (and `portal check`) with one line naming the variable,
never a traceback; PORTAL_BASE_URL follows PORTAL_HOST / PORTAL_PORT unless set."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT


def run(env: dict, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", *args], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if not k.startswith(("PORTAL_", "MAIL_"))} | env)


@pytest.mark.parametrize("name,value,kind", [("PORTAL_RETRY_MAX", "abc", "whole number"),
                                             ("MAIL_PORT", "25.5", "whole number"),
                                             ("PORTAL_SESSION_HOURS", "12h", "number")])
def test_malformed_number_is_one_line(name, value, kind):
    done = run({name: value}, "import config")
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert done.stderr.strip() == f"{name} must be a {kind}, got {value!r}"


def test_portal_check_says_it_too():
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "run", "portal", "check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env=os.environ | {"PORTAL_OUTBOX_BATCH": "many"})
    assert done.returncode != 0 and "Traceback" not in done.stderr + done.stdout
    assert "PORTAL_OUTBOX_BATCH must be a whole number, got 'many'" in done.stderr


def test_base_url_follows_host_and_port_unless_set():
    show = "import config; print(config.PORTAL_BASE_URL)"
    assert run({"PORTAL_PORT": "8097"}, show).stdout.strip() == "http://127.0.0.1:8097"
    assert run({"PORTAL_HOST": "portal.lan", "PORTAL_PORT": "80"}, show).stdout.strip() == "http://portal.lan:80"
    assert run({"PORTAL_BASE_URL": "https://portal.example.com", "PORTAL_PORT": "8097"}, show).stdout.strip() == \
        "https://portal.example.com"
