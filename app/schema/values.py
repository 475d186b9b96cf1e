"""Reading YAML values for the checker: the problem collector and its typed readers.

Every reader reports a coded problem and returns None (or a fallback) on a bad value, so one run
reports every problem at once. Nothing here imports Flask.
"""
from __future__ import annotations

import difflib
import re
from decimal import Decimal

from app.fieldtypes import BUILTIN_TYPES, FieldTypes
from app.schema.loader import Problem, YList, YMap
from app.schema.spec import (
    Label,
)

LOCALE_CODE = re.compile(r"^[a-z]{2}(_[A-Z]{2})?$")

def did_you_mean(word, options) -> str:
    options = [str(o) for o in options]
    if len(options) > 2000:  # difflib is quadratic; no hint beats a slow check
        return ""
    close = difflib.get_close_matches(str(word)[:200], options, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def short(value, limit: int = 60) -> str:
    """A value quoted for a message, cut to a readable length."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def kind(value) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, (float, Decimal)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, YMap):
        return "a mapping"
    if isinstance(value, YList):
        return "a list"
    if value is None:
        return "empty"
    return type(value).__name__


class Check:
    """Collects problems for one run; helper methods return None on a bad value."""

    def __init__(self, types: FieldTypes = BUILTIN_TYPES) -> None:
        self.types = types  # the field types this portal knows (app/fieldtypes; an app may add its own)
        self.problems: list[Problem] = []
        self.later: list = []  # checks that need every module's entities: f(entities) -> None

    def error(self, file: str, line: int, code: str, message: str) -> None:
        self.problems.append(Problem(file, line, code, message))

    def keys(self, mapping: YMap, allowed, file: str, what: str, code: str) -> None:
        for key in mapping:
            if key not in allowed:
                self.error(file, mapping.line_of(key), code, f"unknown key '{key}' in {what}{did_you_mean(key, allowed)}")

    def mapping(self, value, file, line, what) -> YMap | None:
        if isinstance(value, YMap):
            return value
        self.error(file, line, "E001", f"{what} must be a mapping, got {kind(value)}")
        return None

    def boolean(self, value, file, line, what) -> bool:
        if isinstance(value, bool):
            return value
        self.error(file, line, "E002", f"{what} must be true or false, got {kind(value)}")
        return False

    def integer(self, value, file, line, what, low=None, high=None) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(file, line, "E003", f"{what} must be a whole number, got {kind(value)}")
            return None
        if (low is not None and value < low) or (high is not None and value > high):
            self.error(file, line, "E004", f"{what} must be between {low} and {high}, got {short(value)}")
            return None
        return value

    def text(self, value, file, line, what) -> str | None:
        if isinstance(value, str) and value.strip():
            return value
        self.error(file, line, "E005", f"{what} must be non-empty text, got {kind(value)}")
        return None

    def label(self, value, file, line, what, fallback: str) -> tuple[Label, bool]:
        """A label is text or a locale -> text map; returns (label, given)."""
        if value is None:
            return Label.plain(fallback), False
        if isinstance(value, str) and value.strip():
            return Label.plain(value), True
        if isinstance(value, YMap) and value:
            texts = []
            for locale, text in value.items():
                if not isinstance(locale, str) or not LOCALE_CODE.match(locale):
                    self.error(file, value.line_of(locale), "E006", f"'{short(locale)}' in {what} is not a locale code like en or zh")
                elif not isinstance(text, str) or not text.strip():
                    self.error(file, value.line_of(locale), "E007", f"{what} for '{locale}' must be non-empty text, got {kind(text)}")
                else:
                    texts.append((locale, text))
            if texts:
                return Label(tuple(texts)), True
            return Label.plain(fallback), False
        self.error(file, line, "E008", f"{what} must be text or a map like {{en: ..., zh: ...}}, got {kind(value)}")
        return Label.plain(fallback), False

    def name_list(self, value, file, line, what) -> list[tuple[str, int]]:
        if isinstance(value, str):
            return [(value, line)]
        if not isinstance(value, YList):
            self.error(file, line, "E009", f"{what} must be a list of names, got {kind(value)}")
            return []
        result = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                result.append((item, value.line_of(i)))
            else:
                self.error(file, value.line_of(i), "E010", f"{what} entries must be names, got {kind(item)}")
        return result
