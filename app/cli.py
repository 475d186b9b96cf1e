"""`flask --app run portal ...` commands."""
from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import AppGroup


portal_cli = AppGroup("portal", help="Schema-driven portal commands.")


@portal_cli.command("check")
@click.option("--dir", "directory", default=None, help="Schema directory (default: PORTAL_SCHEMA_DIR).")
@click.option("--i18n", is_flag=True, help="Also list labels that lack a locale (en, zh).")
def check_command(directory, i18n):
    """Validate every schema file; print each problem as file:line: CODE message. Opens no database."""
    from app.check import run_check
    from app.fieldtypes import field_types

    directory = directory or current_app.config["PORTAL_SCHEMA_DIR"]
    sys.exit(run_check(directory, i18n, tuple(current_app.config["LANGUAGES"]), types=field_types(current_app)))


@portal_cli.command("demo")
def demo_command():
    """Load demo data into an empty portal."""
    from app.demo import load_demo

    summary = load_demo(current_app)
    click.echo(f"Loaded demo data: {summary}" if summary else "The portal already has data; nothing loaded.")


@portal_cli.command("import")
@click.argument("entity_name")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--key", default=None, help="Unique field to update existing records by (otherwise all rows are created).")
@click.option("--dry-run", is_flag=True, help="Check every row and report; write nothing.")
def import_command(entity_name, path, key, dry_run):
    """Import a CSV/XLSX file into ENTITY (name or snake_case); all rows or none."""
    from app.portal import current_portal
    from app.rules.access import current_viewer
    from app.data.importer import Importer
    from app.data.tabular import FileProblem, file_format

    spec, models = current_portal().spec, current_portal().models
    entity = next((e for e in spec.entities if entity_name in (e.name, e.snake)), None)
    if entity is None:
        raise click.ClickException(f"unknown entity '{entity_name}'; entities: {', '.join(e.name for e in spec.entities)}")
    try:
        fmt = file_format(path)
    except FileProblem as exc:
        raise click.ClickException(str(exc)) from None
    importer = Importer(spec, entity, models, current_app.appbuilder.session, current_viewer(), key)
    with open(path, "rb") as stream, click.progressbar(length=_count_rows(path, fmt), label="Checking rows") as bar:
        report = importer.run(stream, fmt, dry_run=dry_run, progress=bar.update)
    for error in report.errors:
        click.echo(f"{path}: row {error.row}, {error.field}: {error.message}", err=True)
    if report.errors:
        click.echo(f"Nothing imported: {len(report.errors)} problem(s) in {report.rows} rows.", err=True)
        sys.exit(1)
    if not dry_run:
        from app.data.audit import record_import

        record_import(entity.name, report, key, via="cli")
    verb = "Would import" if dry_run else "Imported"
    click.echo(f"{verb} {report.rows} rows into {entity.name}: {report.created} created, {report.updated} updated.")


@portal_cli.command("recompute")
@click.argument("entity_name", required=False)
def recompute_command(entity_name):
    """Rebuild every rollup field (of ENTITY and the rollups over it, or of all entities), then the formulas that
    read them."""
    from app.portal import current_portal

    portal = current_portal()
    if entity_name is not None:
        entity = next((e for e in portal.spec.entities if entity_name in (e.name, e.snake)), None)
        if entity is None:
            raise click.ClickException(f"unknown entity '{entity_name}'; entities: {', '.join(e.name for e in portal.spec.entities)}")
        read = any(f.rollup is not None and entity.name in (e.name, f.rollup.child) for e in portal.spec.entities for f in e.fields)
        if not read:  # neither has rollups nor is read by one
            click.echo(f"{entity.name} has no rollup fields; nothing to do.")
            return
        entity_name = entity.name
    session = current_app.appbuilder.session
    try:
        done = portal.rollups.recompute(session.connection(), entity_name) if portal.rollups else []
        session.commit()
    except Exception:
        session.rollback()
        raise
    for name, field, rows in done:
        click.echo(f"{name}.{field}: {rows} records")
    click.echo(f"Recomputed {len(done)} field(s)." if done else "No rollup fields; nothing to do.")


def _count_rows(path: str, fmt: str) -> int:
    if fmt == "csv":
        with open(path, "rb") as handle:
            return max(sum(1 for _ in handle) - 1, 0)
    return 0


@portal_cli.command("retention")
@click.option("--dry-run", is_flag=True, help="Count what each policy would touch; change nothing.")
def retention_command(dry_run):
    """Apply the entities' `retention:` policies (anonymize, delete, archive old records); irreversible."""
    from app.data.retention import run_retention

    results = run_retention(current_app._get_current_object(), dry_run=dry_run)
    if not results:
        click.echo("No entity has a retention policy; nothing to do.")
        return
    verb = "would touch" if dry_run else "touched"
    _echo_table(("entity", "policy", "action", verb, "refused"),
                [(r.entity, f"#{r.index} {r.policy.label}", r.policy.action, r.touched, r.refused) for r in results])
    for r in results:
        for record_id, reason in r.reasons:
            click.echo(f"{r.entity} #{record_id}: {reason}", err=True)
        if r.refused > len(r.reasons):
            click.echo(f"{r.entity}: {r.refused - len(r.reasons)} more refused", err=True)
    total = sum(r.touched for r in results)
    click.echo(f"Dry run: {total} record(s) would be touched; nothing changed." if dry_run
               else f"Retention applied: {total} record(s) touched.")


@portal_cli.command("backup")
@click.option("--to", "directory", default=None, help="Directory for the archive (default: PORTAL_BACKUP_DIR).")
@click.option("--keep", type=click.IntRange(min=1), default=None, help="Keep only the newest N backups in that directory.")
def backup_command(directory, keep):
    """Back up the database and the uploaded files into one archive."""
    from app.data.backup import BackupError, create_backup
    from app.portal import current_portal

    engine = current_app.extensions["sqlalchemy"].engine
    try:
        result = create_backup(engine, current_portal().all_tables(), current_app.config["PORTAL_FILES_DIR"],
                               directory or current_app.config["PORTAL_BACKUP_DIR"], keep)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    manifest = result.manifest
    click.echo(f"Backup written: {result.path} ({result.path.stat().st_size} bytes)")
    _echo_table(("table", "rows"), [(table, rows) for table, rows in manifest["tables"].items()]
                + [("(files)", manifest["files"]["count"])])
    for path in result.pruned:
        click.echo(f"Deleted old backup: {path}")


@portal_cli.command("restore")
@click.argument("path", type=click.Path(dir_okay=False))
def restore_command(path):
    """Restore a backup archive into an EMPTY portal; stop the portal first."""
    from app.data.backup import BackupError, restore_backup
    from app.portal import current_portal

    current_app.appbuilder.session.remove()
    engine = current_app.extensions["sqlalchemy"].engine
    try:
        result = restore_backup(engine, current_portal().all_tables(), current_app.config["PORTAL_FILES_DIR"], path)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    rows = [(table, expected, "-" if actual is None else actual, "ok" if expected == actual else "MISMATCH")
            for table, expected, actual in result.rows]
    expected_files, restored_files = result.files
    rows.append(("(files)", expected_files, restored_files, "ok" if expected_files == restored_files else "MISMATCH"))
    _echo_table(("table", "backup", "restored", "check"), rows)
    if result.schema_changed:
        click.echo("Note: the backup was made with different schemas; the portal adds missing tables and columns "
                   "when it starts.")
    if not result.ok:
        click.echo(f"Restored {path}, but the row counts do not match the backup.", err=True)
        sys.exit(1)
    click.echo(f"Restored {path} (made {result.manifest['created_at']}): every count matches the backup.")


def _echo_table(header: tuple, rows: list[tuple]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    for row in (header, *rows):
        click.echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


@portal_cli.command("worker")
@click.option("--once", is_flag=True, help="Run every pass until all are idle, then exit (tests, cron).")
def worker_command(once):
    """Deliver notifications (e-mail, webhooks) from the outbox and run the other background passes."""
    from app.data.worker import run_worker

    run_worker(current_app._get_current_object(), once=once)


@portal_cli.command("rq-worker")
@click.option("--burst", is_flag=True, help="Exit once the queue is empty.")
def rq_worker_command(burst):
    """Deliver outbox messages handed to rq (PORTAL_QUEUE=rq, REDIS_URL); run as many as needed."""
    from app.data.rq_queue import run_rq_worker

    run_rq_worker(current_app._get_current_object(), burst=burst)
