"""Load YAML schema files into plain Python values that remember their line numbers.

Only YAML parsing happens here; meaning is checked in `checker.py`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml


class YMap(dict):
    """A mapping that knows its own line and the line of each key."""

    line: int = 0
    key_lines: dict

    def line_of(self, key) -> int:
        return self.key_lines.get(key, self.line)


class YList(list):
    line: int = 0
    item_lines: list

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if index < len(self.item_lines) else self.line


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass(frozen=True)
class SourceFile:
    path: str
    data: object  # YMap for a well-formed file, None when parsing failed




def _scalar(node: yaml.ScalarNode):
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _convert(node, path: str, problems: list[Problem]):
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result = YMap()
        result.line, result.key_lines = line, {}
        for key_node, value_node in node.value:
            key = _convert(key_node, path, problems)
            key_line = key_node.start_mark.line + 1
            if not isinstance(key, (str, int, bool)) or isinstance(key, (YMap, YList)):
                problems.append(Problem(path, key_line, "a key must be plain text"))
                continue
            if key in result:
                problems.append(Problem(path, key_line, f"duplicate key '{key}' (first at line {result.key_lines[key]})"))
                continue
            result[key] = _convert(value_node, path, problems)
            result.key_lines[key] = key_line
        return result
    if isinstance(node, yaml.SequenceNode):
        result = YList(_convert(item, path, problems) for item in node.value)
        result.line = line
        result.item_lines = [item.start_mark.line + 1 for item in node.value]
        return result
    return _scalar(node)


def load_file(path: Path, display_name: str | None = None) -> tuple[SourceFile, list[Problem]]:
    """Parse one YAML file. Syntax errors become problems, never exceptions."""
    name = display_name or str(path)
    problems: list[Problem] = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return SourceFile(name, None), [Problem(name, 1, f"cannot read file: {exc}")]
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        return SourceFile(name, None), [Problem(name, line, f"YAML syntax error: {exc.problem or exc}")]
    except yaml.YAMLError as exc:
        return SourceFile(name, None), [Problem(name, 1, f"YAML error: {exc}")]
    if node is None:
        return SourceFile(name, None), [Problem(name, 1, "file is empty")]
    try:
        data = _convert(node, name, problems)
    except yaml.YAMLError as exc:  # e.g. a bad timestamp or an unknown tag
        mark = getattr(exc, "problem_mark", None)
        return SourceFile(name, None), [Problem(name, mark.line + 1 if mark else 1, f"YAML error: {getattr(exc, 'problem', exc)}")]
    return SourceFile(name, data), problems


def load_dir(directory: Path) -> tuple[list[SourceFile], list[Problem]]:
    """Load every *.yaml / *.yml file of a directory, sorted by name."""
    directory = Path(directory)
    if not directory.is_dir():
        return [], [Problem(str(directory), 0, "schema directory does not exist")]
    files, problems = [], []
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        source, file_problems = load_file(path, str(path))
        files.append(source)
        problems.extend(file_problems)
    return files, problems
