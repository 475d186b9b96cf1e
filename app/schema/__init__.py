"""Schema language: load (YAML with positions) -> check (frozen spec objects)."""
from __future__ import annotations

from pathlib import Path

from app.fieldtypes import BUILTIN_TYPES, FieldTypes
from app.schema.checker import check
from app.schema.loader import Problem, load_dir
from app.schema.spec import PortalSpec


class SchemaProblems(Exception):
    """Raised by create_app when the schema files do not check; carries every problem."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def load_portal(directory: str | Path, types: FieldTypes = BUILTIN_TYPES) -> tuple[PortalSpec | None, list[Problem]]:
    """Load and check every schema file against the field types given (the built-in ones by default);
    never raises for any content of the files."""
    files, problems = load_dir(Path(directory))
    try:
        spec, check_problems = check(files, types)
    except Exception as exc:  # a checker bug must still give a coded problem, not a traceback
        spec, check_problems = None, [Problem(str(directory), 0, "E099", f"internal checker error ({type(exc).__name__}: {exc}); please report it")]
    problems = problems + check_problems
    return (None if problems else spec), problems
