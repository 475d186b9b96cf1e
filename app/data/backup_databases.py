"""The two database kinds a backup knows: SQLite (online backup API) and PostgreSQL (pg_dump / pg_restore of
the portal's schema), each able to dump into an archive, check it is restorable and restore it (app/data/backup.py)."""
from __future__ import annotations

import glob
import os
import re
import sqlite3
import subprocess
import tempfile
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url



class BackupError(Exception):
    """An expected failure (bad archive, missing pg_dump, non-empty target...): reported without a traceback."""


def database_for(engine: Engine):
    backend = engine.url.get_backend_name()
    if backend == "sqlite":
        return SqliteDatabase(engine)
    if backend == "postgresql":
        return PostgresDatabase(engine)
    raise BackupError(f"backups support SQLite and PostgreSQL, not {backend}")


class SqliteDatabase:
    kind, dump_name = "sqlite", "database.sqlite3"

    def __init__(self, engine: Engine):
        database = engine.url.database
        if not database or database == ":memory:" or engine.url.query.get("mode") == "memory":
            raise BackupError("an in-memory SQLite database cannot be backed up or restored")
        self.path = Path(database).resolve()

    def dump(self, target: Path) -> tuple[dict[str, int], dict]:
        try:
            source = _sqlite_read_only(self.path)
            try:
                copy = sqlite3.connect(target)
                try:
                    source.backup(copy)  # one step: a consistent snapshot (retries while a writer commits)
                finally:
                    copy.close()
            finally:
                source.close()
            return _sqlite_counts(target), {}
        except sqlite3.Error as exc:
            raise BackupError(f"cannot back up {self.path}: {exc}") from None

    def counts(self) -> dict[str, int]:
        try:
            return _sqlite_counts(self.path)
        except sqlite3.Error as exc:
            raise BackupError(f"cannot read {self.path}: {exc}") from None

    def check_dump(self, dump: Path, manifest: dict) -> None:
        try:
            connection = _sqlite_read_only(dump)
            try:
                healthy = connection.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            finally:
                connection.close()
            counts = _sqlite_counts(dump)
        except sqlite3.Error:
            healthy, counts = False, None
        if not healthy or counts != manifest.get("tables"):
            raise BackupError("the archive is damaged: its database copy does not check out")

    def restore(self, dump: Path, manifest: dict) -> None:
        """Copy the backup over the database page by page with the backup API (replaces every table)."""
        try:
            source = _sqlite_read_only(dump)
            try:
                target = sqlite3.connect(self.path, timeout=30)
                try:
                    source.backup(target)
                finally:
                    target.close()
            finally:
                source.close()
        except sqlite3.Error as exc:
            raise BackupError(f"cannot restore into {self.path}: {exc} (is the portal still running?)") from None


def _sqlite_read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=30)


def _sqlite_counts(path: Path) -> dict[str, int]:
    connection = _sqlite_read_only(path)
    try:
        tables = [row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")]
        return {t: connection.execute(f'SELECT count(*) FROM "{t.replace(chr(34), chr(34) * 2)}"').fetchone()[0]
                for t in sorted(tables)}
    finally:
        connection.close()


class PostgresDatabase:
    """pg_dump/pg_restore/psql of the one schema the portal's connection uses (search_path in the URL)."""
    kind, dump_name = "postgresql", "database.pgdump"

    def __init__(self, engine: Engine):
        self.engine = engine

    def dump(self, target: Path) -> tuple[dict[str, int], dict]:
        pg_dump = find_client("pg_dump")
        env = client_env(self.engine.url)
        # rows are counted in the very snapshot pg_dump dumps, so the manifest matches the dump exactly
        with self.engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
            snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
            schema = _current_schema(conn)
            counts = _pg_counts(conn, schema)
            _run([pg_dump, "--format=custom", f"--snapshot={snapshot}", "--schema", _pattern(schema),
                  "--file", str(target)], env, "pg_dump")
        return counts, {"pg_schema": schema}

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return _pg_counts(conn, _current_schema(conn))

    def check_dump(self, dump: Path, manifest: dict) -> None:
        if not isinstance(manifest.get("pg_schema"), str):
            raise BackupError("the archive is damaged: its manifest names no PostgreSQL schema")
        self._contents(dump)  # pg_restore reads the dump's table of contents, or says what is wrong

    def _contents(self, dump: Path) -> str:
        return _run([find_client("pg_restore"), "--list", str(dump)], client_env(self.engine.url), "pg_restore --list")

    def restore(self, dump: Path, manifest: dict) -> None:
        """In ONE transaction: drop the target schema's tables, then replay the dump into that schema.

        pg_dump writes schema-qualified names, so a dump of schema A restores into A only; the script
        pg_restore prints is rewritten to the target schema on the way to psql (data lines untouched).
        Nothing is committed unless pg_restore produced the whole script and psql ran all of it.
        """
        pg_restore, env = find_client("pg_restore"), client_env(self.engine.url)
        psql = Path(pg_restore).with_name("psql")  # the same release as pg_restore understands its script
        psql = str(psql) if psql.is_file() else find_client("psql")
        with self.engine.connect() as conn:
            target = _current_schema(conn)
            drops = _drop_statements(conn, target)
        listing = dump.with_suffix(".list")
        # the schema itself already exists (and keeps its owner and grants): leave out its own entries
        listing.write_text("".join(line + "\n" for line in self._contents(dump).splitlines()
                                   if not re.match(r"^\d+; \d+ \d+ (SCHEMA - |COMMENT - SCHEMA |ACL - SCHEMA )", line)))
        rewrite = schema_rewriter(manifest["pg_schema"], target)
        with tempfile.TemporaryFile() as producer_err, tempfile.TemporaryFile() as consumer_err:
            producer = subprocess.Popen(
                [pg_restore, "--no-owner", "--no-privileges", "--use-list", str(listing), "--file", "-", str(dump)],
                stdout=subprocess.PIPE, stderr=producer_err, env=env)
            consumer = subprocess.Popen([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"],
                                        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=consumer_err, env=env)
            try:
                consumer.stdin.write(b"SET client_min_messages = warning;\nBEGIN;\n" + drops)
                for line in rewrite(producer.stdout):
                    consumer.stdin.write(line)
                if producer.wait() == 0:
                    consumer.stdin.write(_count_check(target, manifest["tables"]) + b"COMMIT;\n")
            except BrokenPipeError:
                pass  # psql stopped at an error; its message is read below
            finally:
                producer.stdout.close()
                producer.wait()
                try:
                    consumer.stdin.close()  # without COMMIT the session ends and the transaction rolls back
                except BrokenPipeError:
                    pass
                consumer.wait()
            for process, errors, name in ((producer, producer_err, "pg_restore"), (consumer, consumer_err, "psql")):
                if process.returncode:
                    errors.seek(0)
                    message = errors.read().decode(errors="replace").strip()[-2000:]
                    raise BackupError(f"restore failed, nothing was changed ({name}: {message})")


def _count_check(schema: str, tables: dict[str, int]) -> bytes:
    """A DO block that aborts the restore transaction if any table's row count differs from the manifest."""
    checks = "".join(
        f"  SELECT count(*) INTO n FROM {_ident(schema)}.{_ident(table)};\n"
        f"  IF n <> {int(expected)} THEN RAISE EXCEPTION 'table %: % rows, the backup says {int(expected)}', "
        f"{_literal(table)}, n; END IF;\n"
        for table, expected in sorted(tables.items()))
    return f"\nDO $check$\nDECLARE n bigint;\nBEGIN\n{checks}END\n$check$;\n".encode()


def _current_schema(conn) -> str:
    schema = conn.execute(text("SELECT current_schema()")).scalar_one()
    if schema is None:
        raise BackupError("the database connection has no schema (does the search_path schema exist?)")
    return schema


def _pg_counts(conn, schema: str) -> dict[str, int]:
    tables = conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = :schema"), {"schema": schema}).scalars()
    return {t: conn.execute(text(f"SELECT count(*) FROM {_ident(schema)}.{_ident(t)}")).scalar_one() for t in sorted(tables)}


def _drop_statements(conn, schema: str) -> bytes:
    """DROP everything restorable in the schema (tables, views, sequences, enum/domain types), CASCADE."""
    relations = conn.execute(text(
        "SELECT c.relkind, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = :schema AND c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S')"), {"schema": schema}).all()
    types = conn.execute(text(
        "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
        "WHERE n.nspname = :schema AND t.typtype IN ('e', 'd')"), {"schema": schema}).scalars().all()
    kinds = {"v": "VIEW", "m": "MATERIALIZED VIEW", "r": "TABLE", "p": "TABLE", "f": "FOREIGN TABLE", "S": "SEQUENCE"}
    statements = []
    for kind, word in kinds.items():
        names = [f"{_ident(schema)}.{_ident(name)}" for relkind, name in relations if relkind == kind]
        if names:
            statements.append(f"DROP {word} IF EXISTS {', '.join(names)} CASCADE;\n")
    if types:
        statements.append(f"DROP TYPE IF EXISTS {', '.join(f'{_ident(schema)}.{_ident(t)}' for t in types)} CASCADE;\n")
    functions = conn.execute(text(  # the change log's trigger functions (app/data/change_log.py): in the dump too
        "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = :schema AND p.prokind = 'f' AND p.proname LIKE 'portal\\_%'"), {"schema": schema}).scalars().all()
    for name in functions:
        statements.append(f"DROP FUNCTION IF EXISTS {_ident(schema)}.{_ident(name)}() CASCADE;\n")
    return "".join(statements).encode()


def schema_rewriter(source: str, target: str):
    """Yield the lines of a pg_restore script with the schema `source` renamed to `target`.

    Only schema qualifiers (`src.` / `"src".`, also inside 'src.seq'::regclass literals) outside COPY data
    blocks are rewritten; table data passes through byte for byte.
    """
    if "'" in source + target:  # the name also appears inside string literals ('schema.seq'::regclass)
        raise BackupError("PostgreSQL schema names with a quote (') cannot be restored into")
    forms = [re.escape(_ident(source).encode())]
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", source):
        forms.append(re.escape(source.encode()))
    qualifier = re.compile(rb'(?<![\w$".\x80-\xff])(?:' + b"|".join(forms) + rb")(?=\.)")
    replacement = _ident(target).encode().replace(b"\\", b"\\\\")

    def rewrite(lines):
        in_data = False
        for line in lines:
            if in_data:
                in_data = line != b"\\.\n"
            elif source != target:
                if line.startswith(b"COPY ") and line.rstrip().endswith(b"FROM stdin;"):
                    in_data = True
                line = qualifier.sub(replacement, line)
            yield line
    return rewrite


def find_client(name: str, search_dirs: list[str] | None = None) -> str:
    """The newest `name` (pg_dump, pg_restore, psql) among /usr/lib/postgresql/*/bin and PATH."""
    if search_dirs is None:
        search_dirs = glob.glob("/usr/lib/postgresql/*/bin") + os.environ.get("PATH", "").split(os.pathsep)
    best = None
    for directory in search_dirs:
        candidate = Path(directory or ".") / name
        if not (candidate.is_file() and os.access(candidate, os.X_OK)):
            continue
        try:
            output = subprocess.run([str(candidate), "--version"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        found = re.search(r"(\d+)(?:\.(\d+))?", output)
        if found:
            version = (int(found[1]), int(found[2] or 0))
            if best is None or version > best[0]:
                best = (version, str(candidate))
    if best is None:
        raise BackupError(f"{name} was not found (install the PostgreSQL client tools, e.g. "
                          f"`apt-get install postgresql-client`; searched /usr/lib/postgresql/*/bin and PATH)")
    return best[1]


# libpq reads these from the environment; the password goes there too, never onto a command line
LIBPQ_ENV = {
    "host": "PGHOST", "port": "PGPORT", "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY", "sslcrl": "PGSSLCRL", "connect_timeout": "PGCONNECT_TIMEOUT", "application_name": "PGAPPNAME",
    "options": "PGOPTIONS", "target_session_attrs": "PGTARGETSESSIONATTRS", "passfile": "PGPASSFILE",
    "service": "PGSERVICE", "client_encoding": "PGCLIENTENCODING", "gssencmode": "PGGSSENCMODE",
    "channel_binding": "PGCHANNELBINDING",
}


def client_env(url) -> dict[str, str]:
    url = make_url(url)
    env = dict(os.environ)
    for key, value in (("PGHOST", url.host), ("PGPORT", url.port), ("PGUSER", url.username),
                       ("PGPASSWORD", url.password), ("PGDATABASE", url.database)):
        if value is not None:
            env[key] = str(value)
    for key, value in url.query.items():
        if key not in LIBPQ_ENV:
            raise BackupError(f"the database URL parameter '{key}' cannot be passed to the PostgreSQL tools")
        env[LIBPQ_ENV[key]] = ",".join(value) if isinstance(value, tuple) else value
    return env


def _run(command: list[str], env: dict, name: str) -> str:
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True, errors="replace")
    except OSError as exc:
        raise BackupError(f"cannot run {command[0]}: {exc.strerror or exc}") from None
    if result.returncode:
        raise BackupError(f"{name} failed: {result.stderr.strip()[-2000:]}")
    return result.stdout


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _pattern(schema: str) -> str:
    """pg_dump -n takes a pattern; double quotes make every character (*, ?, capitals) literal."""
    return _ident(schema)
