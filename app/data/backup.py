"""Backups: one archive with a database dump, the uploaded files and a manifest; restore into an empty portal.

Archive (`portal-backup-<UTC timestamp>.tar.gz`):
    manifest.json      format, database kind, created at, schema fingerprint, per-table row counts, files
    database.sqlite3   SQLite: a copy made with the online backup API (consistent while the portal serves)
    database.pgdump    PostgreSQL: `pg_dump -Fc -n <schema>` of the snapshot the row counts were taken in
    files/...          the uploaded files (PORTAL_FILES_DIR)

Every expected failure raises BackupError with one clear sentence; the CLI prints it and exits 1.
"""
from __future__ import annotations

import glob
import gzip
import hashlib
import io
import itertools
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url

FORMAT = "portal-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FILES = "files"
TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
ARCHIVE_NAME = re.compile(r"^portal-backup-(\d{8}T\d{6}Z)(?:-(\d+))?\.tar\.gz$")


class BackupError(Exception):
    """An expected failure (bad archive, missing pg_dump, non-empty target...): reported without a traceback."""


@dataclass
class BackupResult:
    path: Path
    manifest: dict
    pruned: list[Path] = field(default_factory=list)


@dataclass
class RestoreResult:
    manifest: dict
    rows: list[tuple[str, int, int | None]]  # table, in the manifest, in the restored database
    files: tuple[int, int]  # in the manifest, restored
    schema_changed: bool

    @property
    def ok(self) -> bool:
        return all(expected == actual for _, expected, actual in self.rows) and self.files[0] == self.files[1]


# --- backup -----------------------------------------------------------------------------------------------------

def create_backup(engine: Engine, metadata, files_dir: Path | str, to_dir: Path | str, keep: int | None = None) -> BackupResult:
    """Write one archive into to_dir (temp name, then an atomic rename); with keep, delete older archives beyond it."""
    database, files_dir, to_dir = database_for(engine), Path(files_dir), Path(to_dir)
    try:
        to_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".portal-backup-", dir=to_dir))  # same filesystem: the rename is atomic
    except OSError as exc:
        raise BackupError(f"cannot write backups to {to_dir}: {exc.strerror or exc}") from None
    created = datetime.now(timezone.utc).replace(microsecond=0)
    try:
        dump = work / database.dump_name
        counts, details = database.dump(dump)
        files = _list_files(files_dir)
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "database": database.kind,
            "created_at": created.isoformat().replace("+00:00", "Z"),
            "schema_fingerprint": schema_fingerprint(metadata),
            "tables": counts, "database_sha256": _sha256(dump),
            "files": {"count": len(files), "bytes": sum(size for _, size in files)}, **details,
        }
        partial = work / "archive.tar.gz"
        with tarfile.open(partial, "w:gz", compresslevel=6) as tar:
            _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False).encode())
            tar.add(dump, arcname=database.dump_name)
            for relative, _ in files:
                tar.add(files_dir / relative, arcname=f"{FILES}/{relative}", recursive=False)
        os.chmod(partial, 0o600)  # password hashes and business data: owner only
        _fsync(partial)
        path = _publish(partial, to_dir, created.strftime("%Y%m%dT%H%M%SZ"))
    except OSError as exc:
        raise BackupError(f"cannot write the backup in {to_dir}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return BackupResult(path, manifest, prune_backups(to_dir, keep) if keep else [])


def prune_backups(directory: Path, keep: int) -> list[Path]:
    """Delete the oldest archives beyond `keep`; only names this command gives are considered."""
    ours = []
    for entry in Path(directory).iterdir():
        match = ARCHIVE_NAME.match(entry.name)
        if match and entry.is_file() and not entry.is_symlink():
            ours.append(((match[1], int(match[2] or 0)), entry))
    doomed = [path for _, path in sorted(ours)[:-keep]]
    for path in doomed:
        path.unlink()
    return doomed


def _publish(partial: Path, directory: Path, stamp: str) -> Path:
    """Give the finished archive its final name without ever replacing another backup (two in one second)."""
    for n in itertools.count():
        final = directory / f"portal-backup-{stamp}{f'-{n}' if n else ''}.tar.gz"
        try:
            os.link(partial, final)  # fails if the name exists, unlike rename
        except FileExistsError:
            continue
        except OSError:  # no hard links on this filesystem
            if final.exists():
                continue
            os.replace(partial, final)
        _fsync_dir(directory)
        return final


def _list_files(files_dir: Path) -> list[tuple[str, int]]:
    """Regular files under files_dir (relative POSIX paths, sizes); symlinks are not followed."""
    if not files_dir.is_dir():
        return []
    found = []
    for root, dirs, names in os.walk(files_dir):
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            if path.is_file() and not path.is_symlink():
                found.append((path.relative_to(files_dir).as_posix(), path.stat().st_size))
    return found


def schema_fingerprint(metadata) -> str:
    """sha256 of every table's columns and types: equal fingerprints mean the same database layout."""
    layout = {table.name: [(c.name, str(c.type)) for c in table.columns] for table in metadata.sorted_tables}
    return hashlib.sha256(json.dumps(layout, sort_keys=True).encode()).hexdigest()


# --- restore ----------------------------------------------------------------------------------------------------

def restore_backup(engine: Engine, metadata, files_dir: Path | str, archive: Path | str) -> RestoreResult:
    """Restore an archive into an EMPTY portal (no entity rows, no users, no files), then count what arrived.

    Run it while the portal is stopped. Everything is checked before anything changes: the archive (manifest,
    checksum, the dump reads), the database kind and the target's emptiness.
    """
    database, files_dir, archive = database_for(engine), Path(files_dir), Path(archive)
    if not archive.is_file():
        raise BackupError(f"{archive} is not a file")
    occupied = rows_in_the_way(database.counts())
    if occupied:
        raise BackupError("refusing to restore into a portal that has data (rows in: " + ", ".join(occupied)
                          + "); restore needs an empty database")
    if files_dir.exists() and any(files_dir.iterdir()):
        raise BackupError(f"refusing to restore: the files directory {files_dir} is not empty")
    work = Path(tempfile.mkdtemp(prefix=".portal-restore-"))
    staged_files = None
    try:
        manifest, dump = _unpack_database(archive, work, database)
        database.check_dump(dump, manifest)
        staged_files = _stage_files(archive, files_dir, manifest)
        engine.dispose()  # this process's pooled connections must not hold the database during the swap
        database.restore(dump, manifest)
        engine.dispose()
        restored = database.counts()
        rows = [(table, expected, restored.get(table)) for table, expected in sorted(manifest["tables"].items())]
        restored_files = _place_files(staged_files, files_dir)
        staged_files = None
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if staged_files is not None:
            shutil.rmtree(staged_files.parent, ignore_errors=True)
    return RestoreResult(manifest, rows, (manifest["files"]["count"], restored_files),
                         manifest["schema_fingerprint"] != schema_fingerprint(metadata))


def rows_in_the_way(counts: dict[str, int]) -> list[str]:
    """Tables whose rows make a portal non-empty: any entity table, and users. FAB fills its other
    ab_* tables (roles, permissions) at start-up; a restore replaces those anyway."""
    return [table for table, n in sorted(counts.items()) if n and (not table.startswith("ab_") or table == "ab_user")]


def _read_manifest(archive: Path) -> dict:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            manifest = json.loads(tar.extractfile(MANIFEST).read())
    except (tarfile.TarError, OSError, EOFError, zlib.error, KeyError, AttributeError, ValueError) as exc:
        raise BackupError(f"{archive} is not a portal backup or is damaged ({_reason(exc)})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{archive} is not a portal backup (its manifest is not ours)")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(f"{archive} has backup format version {manifest.get('format_version')}; "
                          f"this portal reads version {FORMAT_VERSION}")
    if not _well_formed(manifest):
        raise BackupError(f"{archive} is damaged: its manifest is incomplete or malformed")
    return manifest


def _well_formed(manifest: dict) -> bool:
    """Names and numbers from an archive end up in SQL and paths: accept only plain ones."""
    def count(value):
        return type(value) is int and value >= 0

    tables, files = manifest.get("tables"), manifest.get("files")
    return (isinstance(tables, dict) and all(TABLE_NAME.fullmatch(t) and count(n) for t, n in tables.items())
            and isinstance(files, dict) and count(files.get("count")) and count(files.get("bytes"))
            and isinstance(manifest.get("schema_fingerprint"), str) and isinstance(manifest.get("created_at"), str)
            and isinstance(manifest.get("database_sha256"), str))


def _unpack_database(archive: Path, work: Path, database) -> tuple[dict, Path]:
    manifest = _read_manifest(archive)
    if manifest.get("database") != database.kind:
        raise BackupError(f"{archive} holds a {manifest.get('database')} database; this portal uses {database.kind}")
    dump = work / database.dump_name
    try:
        with tarfile.open(archive, "r:gz") as tar, tar.extractfile(database.dump_name) as source, open(dump, "wb") as target:
            shutil.copyfileobj(source, target)
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error, KeyError, AttributeError) as exc:
        raise BackupError(f"{archive} is damaged ({_reason(exc)})") from None
    except OSError as exc:
        raise BackupError(f"cannot unpack {archive}: {_reason(exc)}") from None
    if _sha256(dump) != manifest.get("database_sha256"):
        raise BackupError(f"{archive} is damaged: the database dump does not match its checksum")
    return manifest, dump


def _stage_files(archive: Path, files_dir: Path, manifest: dict) -> Path:
    """Extract files/ next to files_dir (same filesystem, so placing them is one rename); the data filter
    refuses absolute paths, '..', links and devices."""
    try:
        files_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".portal-restore-files-", dir=files_dir.parent))
    except OSError as exc:
        raise BackupError(f"cannot restore files into {files_dir}: {exc.strerror or exc}") from None
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(f"{FILES}/")]
            tar.extractall(staging, members=members, filter="data")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise BackupError(f"{archive}: cannot extract the files ({_reason(exc)})") from None
    staged = staging / FILES
    found = _list_files(staged)
    if (len(found), sum(size for _, size in found)) != (manifest["files"]["count"], manifest["files"]["bytes"]):
        shutil.rmtree(staging, ignore_errors=True)
        raise BackupError(f"{archive} is damaged: its files do not match the manifest")
    return staged


def _place_files(staged: Path, files_dir: Path) -> int:
    count = len(_list_files(staged))
    if staged.is_dir():
        if files_dir.exists():
            files_dir.rmdir()  # checked empty before the restore began
        staged.rename(files_dir)
    shutil.rmtree(staged.parent, ignore_errors=True)
    return count


# --- databases --------------------------------------------------------------------------------------------------

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


# --- small helpers ----------------------------------------------------------------------------------------------

def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(datetime.now(timezone.utc).timestamp()), 0o600
    tar.addfile(info, io.BytesIO(data))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(directory: Path) -> None:
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
