"""`python -m app.check [--dir DIR] [--i18n]`: check the schema files and nothing else.

No Flask app is built, no database is opened and no secret key is written, so it is fast and
safe to run anywhere (CI, a pre-commit hook, a machine without the database). `flask --app run
portal check` runs the same code (run.py then skips create_app).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from app.fieldtypes import BUILTIN_TYPES, FieldTypes
from app.schema import load_portal
from app.schema.i18n_check import missing_translations
from app.schema.spec import LOCALES

ROOT = Path(__file__).resolve().parent.parent


def run_check(directory: str | Path, i18n: bool = False, locales=LOCALES, out=None, err=None,
              types: FieldTypes = BUILTIN_TYPES) -> int:
    """Print every problem as file:line: CODE message (stderr) or an OK line (stdout); returns the exit code.
    `types`: the field types the portal knows (an app's PORTAL_FIELD_TYPES added to the built-in ones)."""
    out, err = out or sys.stdout, err or sys.stderr
    spec, problems = load_portal(directory, types)
    if i18n and spec is not None:
        problems = missing_translations(spec, tuple(locales))
    for problem in problems:
        print(problem, file=err)
    if problems:
        print(f"{len(problems)} problem(s) found.", file=err)
        return 1
    print(f"OK: {len(spec.modules)} modules, {len(spec.entities)} entities.", file=out)
    return 0


def check_only_app():
    """A bare Flask app carrying the portal config and CLI, for `flask --app run portal check`."""
    from flask import Flask

    from app.cli import portal_cli

    app = Flask("app")
    app.config.from_object("config")
    app.cli.add_command(portal_cli)
    return app


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.check", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", dest="directory", default=os.environ.get("PORTAL_SCHEMA_DIR", str(ROOT / "schemas")),
                        help="schema directory (default: PORTAL_SCHEMA_DIR or schemas/)")
    parser.add_argument("--i18n", action="store_true", help="also list labels that lack a locale (en, zh)")
    args = parser.parse_args(argv)
    return run_check(args.directory, args.i18n)


if __name__ == "__main__":
    sys.exit(main())
