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
    from .check import run_check

    directory = directory or current_app.config["PORTAL_SCHEMA_DIR"]
    sys.exit(run_check(directory, i18n, tuple(current_app.config["LANGUAGES"])))


@portal_cli.command("demo")
def demo_command():
    """Load demo data into an empty portal."""
    from .demo import load_demo

    summary = load_demo(current_app)
    click.echo(f"Loaded demo data: {summary}" if summary else "The portal already has data; nothing loaded.")


@portal_cli.command("import")
@click.argument("entity_name")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--key", default=None, help="Unique field to update existing records by (otherwise all rows are created).")
@click.option("--dry-run", is_flag=True, help="Check every row and report; write nothing.")
def import_command(entity_name, path, key, dry_run):
    """Import a CSV/XLSX file into ENTITY (name or snake_case); all rows or none."""
    from .access import current_viewer
    from .importer import Importer
    from .tabular import FileProblem, file_format

    spec, models = current_app.extensions["portal_spec"], current_app.extensions["portal_models"]
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
    verb = "Would import" if dry_run else "Imported"
    click.echo(f"{verb} {report.rows} rows into {entity.name}: {report.created} created, {report.updated} updated.")


def _count_rows(path: str, fmt: str) -> int:
    if fmt == "csv":
        with open(path, "rb") as handle:
            return max(sum(1 for _ in handle) - 1, 0)
    return 0
