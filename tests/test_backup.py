"""`portal backup` / `portal restore` through the real CLI, on the database the suite runs on (SQLite or PostgreSQL).

One source portal with records made through the API and an uploaded file is backed up once; the archive is
restored into fresh databases, refused by non-empty ones, and damaged on purpose.
"""
from __future__ import annotations

import io
import json
import re
import shutil
import sqlite3
import tarfile
import threading
from contextlib import closing
from pathlib import Path

import pytest
from conftest import ROOT, database_url, jwt_headers, make_app
from sqlalchemy import make_url

from app import create_app
from app.data.backup import BackupError, find_client, schema_rewriter

SECRET = "test-secret-key-that-is-long-enough-for-hs256"
RECORDS = ["customer", "contact", "project", "worker", "ticket"]
ATTACHMENT = ("2026/11/合同 v1.pdf", b"%PDF-1.4 \x00\xff binary attachment")


def portal_cli(app, *args):
    """`flask --app run portal ARGS` on APP's database and files, in-process (so coverage counts it)."""
    return app.test_cli_runner().invoke(args=["portal", *args])


def schema_of(url: str) -> str:
    """The PostgreSQL schema a test URL points at ('' on SQLite)."""
    options = make_url(url).query.get("options", "")
    return options.partition("search_path=")[2]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A portal with linked records (tricky text included), an uploaded file, and one backup of it."""
    files_dir = tmp_path_factory.mktemp("bk_src_files")
    app = make_app(tmp_path_factory, "bk_src", PORTAL_FILES_DIR=str(files_dir))
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    client = app.test_client()
    headers = jwt_headers(client)

    def post(entity, **payload):
        response = client.post(f"/api/v1/{entity}/", json=payload, headers=headers)
        assert response.status_code == 201, (entity, response.json)
        return response.json["id"]

    # data that looks like a schema qualifier or a COPY terminator must come back byte for byte
    tricky = f"{schema_of(url) or 'main'}.customer stays;\nline two \\. tab\there"
    customer = post("customer", name="华东建设", phone="13700000011", level="vip", credit_limit="12345.60", notes=tricky)
    contact = post("contact", customer=customer, name="王经理", phone="13700000012", is_primary=True)
    project = post("project", code="P-BK-1", name="张江二期", customer=customer)
    worker = post("worker", name="李木工", trade="carpenter", day_rate="380.00", projects=[project])
    ticket = post("ticket", subject="配电箱跳闸", customer=customer, contact=contact,
                  priority="urgent", due_date="2026-11-25")
    ids = dict(zip(RECORDS, (customer, contact, project, worker, ticket)))
    records = {entity: client.get(f"/api/v1/{entity}/{pk}", headers=headers).json["result"] for entity, pk in ids.items()}
    assert records["customer"]["notes"] == tricky and records["worker"]["projects"]

    attachment = files_dir / ATTACHMENT[0]
    attachment.parent.mkdir(parents=True)
    attachment.write_bytes(ATTACHMENT[1])

    backups = tmp_path_factory.mktemp("bk_archives")
    result = portal_cli(app, "backup", "--to", str(backups))
    assert result.exit_code == 0, result.output
    archive = Path(re.search(r"^Backup written: (\S+) ", result.stdout, re.M)[1])
    assert archive.parent == backups and re.fullmatch(r"portal-backup-\d{8}T\d{6}Z\.tar\.gz", archive.name)
    assert re.search(r"^customer\s+1$", result.stdout, re.M) and re.search(r"^ab_user\s+1$", result.stdout, re.M)
    assert re.search(r"^\(files\)\s+1$", result.stdout, re.M)
    return dict(app=app, url=url, files_dir=files_dir, ids=ids, records=records, archive=archive)


def empty_portal(tmp_path_factory, name: str):
    """What `flask --app run` makes of a fresh database: tables, roles and permissions, no users, no rows."""
    files_dir = tmp_path_factory.mktemp(name) / "files"
    app = create_app({"TESTING": True, "SECRET_KEY": SECRET, "SQLALCHEMY_DATABASE_URI": database_url(tmp_path_factory, name),
                      "PORTAL_SCHEMA_DIR": str(ROOT / "schemas"), "PORTAL_FILES_DIR": str(files_dir)})
    return app, files_dir


def table_counts(app) -> dict[str, int]:
    from app.data.backup import database_for

    with app.app_context():
        return database_for(app.extensions["sqlalchemy"].engine).counts()


def test_archive_holds_manifest_database_and_files(source):
    with tarfile.open(source["archive"], "r:gz") as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())
        assert tar.extractfile(f"files/{ATTACHMENT[0]}").read() == ATTACHMENT[1]
    kind = "postgresql" if source["url"].startswith("postgresql") else "sqlite"
    assert names[0] == "manifest.json" and ("database.pgdump" if kind == "postgresql" else "database.sqlite3") in names
    assert manifest["format"] == "portal-backup" and manifest["format_version"] == 1 and manifest["database"] == kind
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", manifest["created_at"])
    assert re.fullmatch(r"[0-9a-f]{64}", manifest["schema_fingerprint"])
    assert manifest["tables"]["customer"] == 1 and manifest["tables"]["worker_projects"] == 1
    assert manifest["files"] == {"count": 1, "bytes": len(ATTACHMENT[1])}
    assert oct(source["archive"].stat().st_mode & 0o777) == "0o600"  # password hashes inside


def test_restore_into_fresh_database_gives_back_the_same_records_and_files(source, tmp_path_factory):
    target, files_dir = empty_portal(tmp_path_factory, "bk_dst")
    url = target.config["SQLALCHEMY_DATABASE_URI"]
    result = portal_cli(target, "restore", str(source["archive"]))
    assert result.exit_code == 0, result.output
    assert re.search(r"^customer\s+1\s+1\s+ok$", result.stdout, re.M), result.stdout
    assert re.search(r"^ab_user\s+1\s+1\s+ok$", result.stdout, re.M)
    assert "MISMATCH" not in result.stdout and "every count matches the backup" in result.stdout
    assert (files_dir / ATTACHMENT[0]).read_bytes() == ATTACHMENT[1]

    restored = make_app(tmp_path_factory, "bk_dst", SQLALCHEMY_DATABASE_URI=url, PORTAL_FILES_DIR=str(files_dir))
    client = restored.test_client()
    headers = jwt_headers(client)  # the admin user came back with the data
    for entity, pk in source["ids"].items():
        response = client.get(f"/api/v1/{entity}/{pk}", headers=headers)
        assert response.status_code == 200 and response.json["result"] == source["records"][entity], entity
    # sequences came back too: new records get fresh ids
    created = client.post("/api/v1/customer/", json={"name": "新客户"}, headers=headers)
    assert created.status_code == 201 and created.json["id"] > source["ids"]["customer"], created.json


def test_restore_into_non_empty_database_is_refused_and_changes_nothing(source):
    app, client = source["app"], source["app"].test_client()
    headers = jwt_headers(client)
    before = client.get("/api/v1/customer/", headers=headers).json["result"]
    counts = table_counts(app)
    result = portal_cli(app, "restore", str(source["archive"]))
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "refusing to restore into a portal that has data" in result.stderr and "customer" in result.stderr
    assert client.get("/api/v1/customer/", headers=headers).json["result"] == before
    assert table_counts(app) == counts


def test_a_portal_with_only_a_user_is_not_empty(source, tmp_path_factory):
    app = make_app(tmp_path_factory, "bk_user_only")  # make_app adds the admin user, nothing else
    result = app.test_cli_runner().invoke(args=["portal", "restore", str(source["archive"])])
    assert result.exit_code == 1 and "rows in: ab_user" in result.output
    assert table_counts(app)["ab_user"] == 1


def _repack(archive: Path, target: Path, edit_manifest=None, extra: tuple[str, bytes] | None = None) -> Path:
    with tarfile.open(archive, "r:gz") as old, tarfile.open(target, "w:gz") as new:
        for member in old.getmembers():
            data = old.extractfile(member).read()
            if member.name == "manifest.json" and edit_manifest:
                manifest = json.loads(data)
                edit_manifest(manifest)
                data = json.dumps(manifest).encode()
                member.size = len(data)
            new.addfile(member, io.BytesIO(data))
        if extra:
            info = tarfile.TarInfo(extra[0])
            info.size = len(extra[1])
            new.addfile(info, io.BytesIO(extra[1]))
    return target


def test_damaged_or_foreign_archives_are_refused_and_change_nothing(source, tmp_path, tmp_path_factory):
    app, files_dir = empty_portal(tmp_path_factory, "bk_damaged")
    data = source["archive"].read_bytes()
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(data[: len(data) // 2])
    flipped = tmp_path / "flipped.tar.gz"
    flipped.write_bytes(data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF]) + data[len(data) // 2 + 1:])
    not_gzip = tmp_path / "notes.tar.gz"
    not_gzip.write_text("hello")
    other_kind = "sqlite" if source["url"].startswith("postgresql") else "postgresql"
    cases = {
        truncated: "damaged",
        flipped: "damaged",
        not_gzip: "not a portal backup",
        tmp_path / "missing.tar.gz": "is not a file",
        _repack(source["archive"], tmp_path / "foreign.tar.gz", lambda m: m.update(format="other")): "not a portal backup",
        _repack(source["archive"], tmp_path / "kind.tar.gz", lambda m: m.update(database=other_kind)): f"holds a {other_kind} database",
        _repack(source["archive"], tmp_path / "counts.tar.gz", lambda m: m["tables"].update(customer=7)):
            "nothing was changed.*table customer: 1 rows, the backup says 7" if other_kind == "sqlite" else "damaged",
        # path traversal through the files part must not write outside the files directory
        _repack(source["archive"], tmp_path / "escape.tar.gz", extra=("files/../../escaped.txt", b"x")): "cannot extract the files",
    }
    before = table_counts(app)
    runner = app.test_cli_runner()
    for archive, message in cases.items():
        result = runner.invoke(args=["portal", "restore", str(archive)])
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (archive.name, result.output)
        assert "Error:" in result.output and re.search(message, result.output, re.S), (archive.name, result.output)
        assert table_counts(app) == before, archive.name
        assert not files_dir.exists() or not any(files_dir.iterdir()), archive.name
    assert not (files_dir.parent.parent / "escaped.txt").exists() and not (files_dir.parent / "escaped.txt").exists()
    assert sum(before[t] for t in ("ab_user", "customer")) == 0


def test_backup_while_the_portal_writes_then_keep_prunes_only_our_oldest(source, tmp_path):
    for stamp in ("20200101T000000Z", "20200102T000000Z", "20200102T000000Z-1"):
        shutil.copy(source["archive"], tmp_path / f"portal-backup-{stamp}.tar.gz")
    decoys = [tmp_path / "notes.txt", tmp_path / "portal-backup-latest.tar.gz", tmp_path / "db-20190101T000000Z.tar.gz"]
    for decoy in decoys:
        decoy.write_text("not a backup of ours")

    client = source["app"].test_client()
    headers = jwt_headers(client)
    stop, statuses = threading.Event(), []

    def keep_writing():
        while not stop.is_set():
            statuses.append(client.post("/api/v1/customer/", json={"name": f"并发客户 {len(statuses)}"}, headers=headers).status_code)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        result = portal_cli(source["app"], "backup", "--to", str(tmp_path), "--keep", "2")
    finally:
        stop.set()
        writer.join()
    assert result.exit_code == 0, result.output
    assert statuses and set(statuses) == {201}  # the portal kept serving writes during the backup
    with tarfile.open(re.search(r"^Backup written: (\S+) ", result.stdout, re.M)[1], "r:gz") as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
        if manifest["database"] == "sqlite":  # the copy is one consistent snapshot: its counts are the manifest's
            tar.extract("database.sqlite3", tmp_path / "copy", filter="data")
            with closing(sqlite3.connect(tmp_path / "copy" / "database.sqlite3")) as copy:
                assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
                assert copy.execute("SELECT count(*) FROM customer").fetchone()[0] == manifest["tables"]["customer"]
    assert 1 <= manifest["tables"]["customer"] <= 1 + len(statuses)
    newest = Path(re.search(r"^Backup written: (\S+) ", result.stdout, re.M)[1])
    ours = sorted(p.name for p in tmp_path.glob("portal-backup-2*.tar.gz"))
    assert ours == ["portal-backup-20200102T000000Z-1.tar.gz", newest.name]
    assert result.stdout.count("Deleted old backup:") == 2
    assert all(decoy.exists() for decoy in decoys)
    assert not list(tmp_path.glob(".portal-backup-*"))  # no temporary leftovers


def test_unwritable_backup_directory_is_a_clear_error(source, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = source["app"].test_cli_runner().invoke(args=["portal", "backup", "--to", str(blocker / "backups")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert f"Error: cannot write backups to {blocker / 'backups'}" in result.output


def test_missing_postgresql_client_is_a_clear_error(tmp_path):
    with pytest.raises(BackupError, match="pg_dump was not found .*postgresql-client"):
        find_client("pg_dump", search_dirs=[str(tmp_path)])
    fake = tmp_path / "pg_dump"
    fake.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 99.1'\n")
    fake.chmod(0o755)
    assert find_client("pg_dump", search_dirs=[str(tmp_path), "/usr/lib/postgresql/15/bin"]) == str(fake)  # newest wins


def test_schema_rewrite_touches_qualifiers_not_data():
    script = [b"CREATE TABLE t_src.customer (\n", b"ALTER TABLE ONLY t_src.c ALTER COLUMN id SET DEFAULT nextval('t_src.c_id_seq'::regclass);\n",
              b"COPY t_src.customer (id, notes) FROM stdin;\n", b"1\tt_src.customer stays\n", b"\\.\n",
              b"CREATE INDEX ix ON t_src.customer USING btree (xt_src.a, \"t_src\".b);\n"]
    out = list(schema_rewriter("t_src", 'New"Schema')(iter(script)))
    assert out == [b'CREATE TABLE "New""Schema".customer (\n',
                   b"ALTER TABLE ONLY \"New\"\"Schema\".c ALTER COLUMN id SET DEFAULT nextval('\"New\"\"Schema\".c_id_seq'::regclass);\n",
                   b'COPY "New""Schema".customer (id, notes) FROM stdin;\n', b"1\tt_src.customer stays\n", b"\\.\n",
                   b'CREATE INDEX ix ON "New""Schema".customer USING btree (xt_src.a, "New""Schema".b);\n']
    assert list(schema_rewriter("same", "same")(iter(script))) == script
