"""Start-up: tables appear for new modules and new fields; broken schemas stop the server cleanly."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from conftest import ROOT, database_url, jwt_headers, make_app
from sqlalchemy import create_engine, inspect


def test_new_yaml_file_becomes_a_module_after_restart(tmp_path, tmp_path_factory):
    schema_dir = tmp_path / "schemas"
    shutil.copytree(ROOT / "schemas", schema_dir)
    url = database_url(tmp_path_factory, "restart")
    first = make_app(tmp_path_factory, "restart", schema_dir=schema_dir, SQLALCHEMY_DATABASE_URI=url)
    client = first.test_client()
    customer = client.post("/api/v1/customer/", json={"name": "老客户"}, headers=jwt_headers(client)).json["id"]

    (schema_dir / "fleet.yaml").write_text(
        "version: 1\nmodule: fleet\nlabel: {en: Fleet, zh: 车辆}\nentities:\n"
        "  Vehicle:\n    title: plate\n    fields:\n"
        "      plate: {type: string, required: true, unique: true, label: {en: Plate, zh: 车牌}}\n"
        "      owner_customer: {type: link, to: Customer}\n"
        "      km: {type: integer, min: 0}\n", encoding="utf-8")
    crm = (schema_dir / "crm.yaml").read_text(encoding="utf-8")
    (schema_dir / "crm.yaml").write_text(
        crm.replace("      notes: {type: text", "      tax_no: {type: string, length: 20, label: {en: Tax no., zh: 税号}}\n      notes: {type: text"),
        encoding="utf-8")

    second = make_app(tmp_path_factory, "restart", schema_dir=schema_dir, SQLALCHEMY_DATABASE_URI=url)
    client = second.test_client()
    headers = jwt_headers(client)
    vehicle = client.post("/api/v1/vehicle/", json={"plate": "沪A12345", "owner_customer": customer, "km": 1200}, headers=headers)
    assert vehicle.status_code == 201, vehicle.json
    assert vehicle.json["result"]["owner_customer"] == {"id": customer, "name": "老客户"}
    old = client.get(f"/api/v1/customer/{customer}", headers=headers).json["result"]
    assert old["name"] == "老客户" and old["tax_no"] is None
    assert client.put(f"/api/v1/customer/{customer}", json={"tax_no": "91310000X"}, headers=headers).status_code == 200
    from conftest import login
    login(client)
    assert client.get("/vehicle/list/").status_code == 200
    engine = create_engine(url)
    assert "tax_no" in {c["name"] for c in inspect(engine).get_columns("customer")}
    engine.dispose()


def test_indexes_exist_for_search_sort_and_links(app):
    with app.app_context():
        inspector = inspect(app.appbuilder.session.get_bind())
        indexed = {tuple(i["column_names"]) for i in inspector.get_indexes("labour_entry")}
        unique = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("labour_entry")}
        for column in ("work_date", "worker_id", "project_id", "approved"):
            assert (column,) in indexed, (column, indexed)
        assert ("work_date", "worker_id", "project_id") in unique


def test_server_start_with_broken_schema_exits_with_problems(tmp_path):
    (tmp_path / "bad.yaml").write_text("version: 1\nmodule: bad\nentities:\n  A: {fields: {x: {type: strng}}}\n")
    env = {**os.environ, "PORTAL_SCHEMA_DIR": str(tmp_path), "DATABASE_URL": "sqlite:///:memory:"}
    result = subprocess.run([sys.executable, "run.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert re.search(rf"^{re.escape(str(tmp_path / 'bad.yaml'))}:4: E404 ", result.stderr, re.M), result.stderr
    assert "Traceback" not in result.stderr


def test_fab_user_commands_work_with_yaml_roles(app):
    from flask_appbuilder.cli import fab  # `flask fab ...` (a flask.commands entry point), run in-process

    args = ["create-user", "--role", "Sales", "--username", "cli_sales", "--firstname", "Cli", "--lastname", "Sales",
            "--email", "cli_sales@example.com", "--password", "Cli-pass-1"]
    result = app.test_cli_runner().invoke(fab, args)
    assert result.exit_code == 0 and "User cli_sales created." in result.stdout, result.output
    client = app.test_client()
    headers = jwt_headers(client, "cli_sales", "Cli-pass-1")
    assert client.get("/api/v1/customer/", headers=headers).status_code == 200
    assert client.get("/api/v1/ticket/", headers=headers).status_code == 403


def test_make_run_on_an_empty_database_creates_the_admin_without_fabs_no_user_warning(tmp_path):
    """`python run.py` (make run) creates the admin itself: Flask-AppBuilder's "No user yet created, use flask fab
    command to do it." printed just before "Created admin user …" told a first-time user to do what was done."""
    import socket
    import threading
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'portal.db'}", "PORTAL_PORT": str(port),
           "PORTAL_DEMO": "0", "PORTAL_RUN_WORKER": "0", "PORTAL_FILES_DIR": str(tmp_path / "files"),
           "SECRET_KEY": "test-secret-key-that-is-long-enough-for-hs256"}
    process = subprocess.Popen([sys.executable, "run.py"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines = []
    watchdog = threading.Timer(60, process.kill)  # a start-up that hangs fails the test instead of the run
    watchdog.start()
    try:
        for line in process.stdout:
            lines.append(line)
            if "Portal running at" in line:
                break
    finally:
        watchdog.cancel()
        process.terminate()
        process.wait(timeout=30)
    output = "".join(lines)
    assert "Created admin user 'admin'" in output, output
    assert "No user yet created" not in output, output
