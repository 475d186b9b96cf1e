"""Entry point: `gunicorn run:app`, `flask --app run ...`, or `python run.py` for a local portal."""
import sys

from app import create_app
from app.protection import ConfigurationProblem
from app.schema import SchemaProblems

try:
    app = create_app()
except SchemaProblems as problems:
    # start-up and `flask portal check` report schema problems the same way: file:line: message
    for problem in problems.problems:
        print(problem, file=sys.stderr)
    print(f"{len(problems.problems)} problem(s) found in the schemas; the portal was not started.", file=sys.stderr)
    sys.exit(1)
except ConfigurationProblem as problem:
    print(f"The portal was not started: {problem}", file=sys.stderr)
    sys.exit(1)

if __name__ == "__main__":
    from app.quickstart import serve
    serve(app)
