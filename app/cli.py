"""`flask --app run portal ...` commands."""
from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import AppGroup

from .schema import load_portal
from .schema.i18n_check import missing_translations

portal_cli = AppGroup("portal", help="Schema-driven portal commands.")


@portal_cli.command("check")
@click.option("--dir", "directory", default=None, help="Schema directory (default: PORTAL_SCHEMA_DIR).")
@click.option("--i18n", is_flag=True, help="Also list labels that lack a locale (en, zh).")
def check_command(directory, i18n):
    """Validate every schema file; print each problem as file:line: message."""
    directory = directory or current_app.config["PORTAL_SCHEMA_DIR"]
    spec, problems = load_portal(directory)
    if i18n and spec is not None:
        problems = missing_translations(spec, tuple(current_app.config["LANGUAGES"]))
    for problem in problems:
        click.echo(str(problem), err=True)
    if problems:
        click.echo(f"{len(problems)} problem(s) found.", err=True)
        sys.exit(1)
    click.echo(f"OK: {len(spec.modules)} modules, {len(spec.entities)} entities.")


@portal_cli.command("demo")
def demo_command():
    """Load demo data into an empty portal."""
    from .demo import load_demo

    summary = load_demo(current_app)
    click.echo(f"Loaded demo data: {summary}" if summary else "The portal already has data; nothing loaded.")
