"""Backups: one archive with a database dump, the uploaded files and a manifest; restore into an empty portal.

Archive (`portal-backup-<UTC timestamp>.tar.gz`):
    manifest.json      format, database kind, created at, schema fingerprint, per-table row counts, files
    database.sqlite3   SQLite: a copy made with the online backup API (consistent while the portal serves)
    database.pgdump    PostgreSQL: `pg_dump -Fc -n <schema>` of the snapshot the row counts were taken in
    files/...          the uploaded files (PORTAL_FILES_DIR)

Every expected failure raises BackupError with one clear sentence; the CLI prints it and exits 1.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import json
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy.engine import Engine

from app.data.backup_databases import BackupError, database_for, find_client, schema_rewriter  # noqa: F401 (re-exported)

FORMAT = "portal-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FILES = "files"
TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
ARCHIVE_NAME = re.compile(r"^portal-backup-(\d{8}T\d{6}Z)(?:-(\d+))?\.tar\.gz$")


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
    ab_* tables (roles, permissions) at start-up, the portal its rollup fingerprints (portal_rollups); a restore
    replaces those anyway, and the audit log, retention runs and table versions too (a new portal's first sign-ins
    are there; its start-up writes FAB's permissions, which moves their version)."""
    from app.data.audit import AUDIT_TABLE
    from app.data.changes import TABLE as VERSIONS_TABLE
    from app.data.retention import RUNS_TABLE
    from app.generate.models import ROLLUPS_TABLE

    kept = {ROLLUPS_TABLE, AUDIT_TABLE, RUNS_TABLE, VERSIONS_TABLE}
    return [table for table, n in sorted(counts.items())
            if n and table not in kept and (not table.startswith("ab_") or table == "ab_user")]


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
