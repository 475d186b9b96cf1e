"""Load YAML schema files into plain Python values that remember their line numbers.

Only YAML parsing happens here; meaning is checked in `checker.py`. Every way a file can be
unreadable (size, encoding, syntax, alias bombs, deep nesting, odd keys) becomes a coded
Problem, never an exception, and loading stays bounded in time and memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

MAX_FILE_BYTES = 256 * 1024   # the shipped modules are a few KB each; parsing 256 KB takes about a second
MAX_TOTAL_BYTES = 1024 * 1024  # all files together
MAX_NODES = 200_000          # values after alias expansion ("billion laughs" stops here)
MAX_DEPTH = 40               # a schema needs about 8 levels
MAX_FILES = 200


class YMap(dict):
    """A mapping that knows its own line and the line of each key."""

    line: int = 0
    key_lines: dict

    def line_of(self, key) -> int:
        try:
            return self.key_lines.get(key, self.line)
        except TypeError:  # an unhashable key never made it into the map
            return self.line


class YList(list):
    line: int = 0
    item_lines: list

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if index < len(self.item_lines) else self.line


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    code: str  # see codes.py
    message: str

    def __str__(self) -> str:
        # one problem, one line: newlines or control characters from the YAML are shown escaped
        message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in self.message)
        return f"{self.file}:{self.line}: {self.code} {message}"


@dataclass(frozen=True)
class SourceFile:
    path: str
    data: object  # YMap for a well-formed file, None when parsing failed


class _Unreadable(Exception):
    """Stops converting one file: (line, code, message)."""

    def __init__(self, line: int, code: str, message: str) -> None:
        super().__init__(message)
        self.line, self.code, self.message = line, code, message


def _scalar(node: yaml.ScalarNode):
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError as exc:  # an unknown tag, a bad !!binary, ...
        raise _Unreadable(node.start_mark.line + 1, "E106", f"YAML value error: {getattr(exc, 'problem', None) or exc}") from None
    except (ValueError, OverflowError, TypeError) as exc:  # 2026-13-45, a 5000-digit number, ...
        raise _Unreadable(node.start_mark.line + 1, "E106", f"cannot read value {str(node.value)[:40]!r}: {exc}") from None
    finally:
        loader.dispose()


class _Converter:
    """Turns a composed node graph into YMap/YList/scalars, counting what aliases expand to."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.nodes = 0
        self.problems: list[Problem] = []

    def convert(self, node, depth: int = 0):
        line = node.start_mark.line + 1
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _Unreadable(line, "E108", f"the file expands to more than {MAX_NODES:,} values (YAML aliases repeated too often?)")
        if depth > MAX_DEPTH:
            raise _Unreadable(line, "E109", f"values are nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, yaml.MappingNode):
            result = YMap()
            result.line, result.key_lines = line, {}
            for key_node, value_node in node.value:
                key_line = key_node.start_mark.line + 1
                if not isinstance(key_node, yaml.ScalarNode):
                    self.problems.append(Problem(self.path, key_line, "E110", "a key must be plain text, not a list or mapping"))
                    continue
                key = self.convert(key_node, depth + 1)
                if key is None and key_node.value in ("null", "Null", "NULL"):
                    key = "null"  # `{null: true}` (the filter operator): YAML reads a bare null key as nothing
                if not isinstance(key, (str, int, bool)):
                    self.problems.append(Problem(self.path, key_line, "E110", f"a key must be plain text, got {key!r:.40}"))
                    continue
                if key in result:
                    self.problems.append(Problem(self.path, key_line, "E111", f"duplicate key '{key}' (first at line {result.key_lines[key]})"))
                    continue
                result[key] = self.convert(value_node, depth + 1)
                result.key_lines[key] = key_line
            return result
        if isinstance(node, yaml.SequenceNode):
            result = YList(self.convert(item, depth + 1) for item in node.value)
            result.line = line
            result.item_lines = [item.start_mark.line + 1 for item in node.value]
            return result
        return _scalar(node)


def _line_of_byte(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def load_file(path: Path, display_name: str | None = None) -> tuple[SourceFile, list[Problem]]:
    """Parse one YAML file. Every failure becomes a problem, never an exception."""
    name = display_name or str(path)

    def unreadable(line: int, code: str, message: str):
        return SourceFile(name, None), [Problem(name, line, code, message)]

    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return unreadable(1, "E104", f"file is {size:,} bytes; a schema file may have at most {MAX_FILE_BYTES:,}")
        data = path.read_bytes()
    except OSError as exc:
        return unreadable(1, "E102", f"cannot read file: {exc.strerror or exc}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return unreadable(_line_of_byte(data, exc.start), "E103", f"not UTF-8 text (byte {exc.start}: {exc.reason}); save the file as UTF-8")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        return unreadable(mark.line + 1 if mark else 1, "E105", f"YAML syntax error: {exc.problem or exc.context or exc}")
    except yaml.YAMLError as exc:  # e.g. a control character (ReaderError)
        return unreadable(getattr(exc, "line", 0) + 1 if hasattr(exc, "line") else 1, "E105", f"YAML error: {exc}")
    except RecursionError:
        return unreadable(1, "E109", f"values are nested too deeply (at most {MAX_DEPTH} levels)")
    if node is None:
        return unreadable(1, "E107", "file is empty")
    converter = _Converter(name)
    try:
        value = converter.convert(node)
    except _Unreadable as exc:
        return unreadable(exc.line, exc.code, exc.message)
    except RecursionError:
        return unreadable(1, "E109", f"values are nested too deeply (at most {MAX_DEPTH} levels)")
    return SourceFile(name, value), converter.problems


def load_dir(directory: Path) -> tuple[list[SourceFile], list[Problem]]:
    """Load every *.yaml / *.yml file of a directory, sorted by name."""
    directory = Path(directory)
    if not directory.is_dir():
        return [], [Problem(str(directory), 0, "E101", "schema directory does not exist")]
    paths = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    if len(paths) > MAX_FILES:
        return [], [Problem(str(directory), 0, "E104", f"{len(paths)} schema files; at most {MAX_FILES} are read")]
    files, problems, total = [], [], 0
    for path in paths:
        total += path.stat().st_size if path.is_file() else 0
        if total > MAX_TOTAL_BYTES:
            problems.append(Problem(str(path), 1, "E104", f"the schema files together exceed {MAX_TOTAL_BYTES:,} bytes; this file was not read"))
            files.append(SourceFile(str(path), None))
            continue
        source, file_problems = load_file(path, str(path))
        files.append(source)
        problems.extend(file_problems)
    return files, problems
