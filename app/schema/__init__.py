"""Schema language: load (YAML with positions) -> check (frozen spec objects)."""
from __future__ import annotations

from pathlib import Path

from .checker import check
from .loader import Problem, load_dir
from .spec import PortalSpec


class SchemaProblems(Exception):
    """Raised by create_app when the schema files do not check; carries every problem."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def load_portal(directory: str | Path) -> tuple[PortalSpec | None, list[Problem]]:
    files, problems = load_dir(Path(directory))
    spec, check_problems = check(files)
    problems = problems + check_problems
    return (None if problems else spec), problems
