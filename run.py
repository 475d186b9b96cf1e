"""Entry point: `gunicorn run:app`, `flask --app run ...`, or `python run.py` for a local portal."""
import sys

from app import create_app
from app.schema import SchemaProblems


def _checking_schemas(argv: list[str]) -> bool:
    """`flask --app run portal check ...` needs no database, tables or secret key: skip create_app."""
    return any(argv[i:i + 2] == ["portal", "check"] for i in range(len(argv)))


if __name__ == "__main__":  # `python run.py` / `make run` creates the admin itself after start-up
    from app.quickstart import quiet_missing_admin_warning
    quiet_missing_admin_warning()

try:
    if _checking_schemas(sys.argv[1:]):  # stays light: no Flask-AppBuilder, no database, nothing written
        from app.check import check_only_app
        app = check_only_app()
    else:
        app = create_app()
except SchemaProblems as problems:
    # start-up and `flask portal check` report schema problems the same way: file:line: CODE message
    for problem in problems.problems:
        print(problem, file=sys.stderr)
    print(f"{len(problems.problems)} problem(s) found in the schemas; the portal was not started.", file=sys.stderr)
    sys.exit(1)
except Exception as problem:
    from app.runtime.protection import ConfigurationProblem  # imported here: checking must not load FAB

    if not isinstance(problem, ConfigurationProblem):
        raise
    print(f"The portal was not started: {problem}", file=sys.stderr)
    sys.exit(1)

if __name__ == "__main__":
    from app.quickstart import serve
    serve(app)
