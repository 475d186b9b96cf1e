"""autonumber: a text number the portal assigns on create from a pattern, e.g. "TK-{YYYY}{MM}-{####}".

Tokens: `{YYYY}` `{YY}` `{MM}` `{DD}` (the creation date) and one counter `{#…}` (width = number of #; a
larger number grows past the width, it is never cut). The counter restarts each period: the smallest date
token in the pattern (day, month or year); a pattern without a date token never restarts.

The pattern is parsed here (pure, no Flask: `portal check` uses it); the numbers are taken from the
`portal_counters` table by app/rules/autonumber.py `AutonumberStep`, in the same transaction as the insert.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import lru_cache

from app.fieldtypes.base import OptionProblem
from app.fieldtypes.text import StringType, filter_text

MAX_PATTERN = 60  # characters of the pattern itself
COUNTER_DIGITS = 19  # a counter may grow to a BIGINT: room for its digits whatever the width

DATE_TOKENS = {"YYYY": "%Y", "YY": "%y", "MM": "%m", "DD": "%d"}
# the period a date token starts again at, smallest last
PERIOD_OF = {"YYYY": "year", "YY": "year", "MM": "month", "DD": "day"}
PERIOD_KEY = {"year": "%Y", "month": "%Y-%m", "day": "%Y-%m-%d", None: ""}
_TOKEN = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class Pattern:
    parts: tuple  # literal text, a date token name, or an int (the counter's width)
    period: str | None  # "year", "month", "day" or None (never restarts)

    def period_key(self, day: dt.date) -> str:
        """The counter row this date counts in: "2026-11" for a monthly pattern, "" if it never restarts."""
        return day.strftime(PERIOD_KEY[self.period])

    def format(self, day: dt.date, number: int) -> str:
        out = []
        for part in self.parts:
            if isinstance(part, int):
                out.append(str(number).zfill(part))
            elif _is_token(part):
                out.append(day.strftime(DATE_TOKENS[part]))
            else:
                out.append(part)
        return "".join(out)

    @property
    def max_length(self) -> int:
        fixed = sum(len(p) if not _is_token(p) else (4 if p == "YYYY" else 2) for p in self.parts if not isinstance(p, int))
        width = next(p for p in self.parts if isinstance(p, int))
        return fixed + max(width, COUNTER_DIGITS)


class _Token(str):
    """A date token among the parts (plain str parts are literal text, which may itself read "YYYY")."""


def _is_token(part) -> bool:
    return isinstance(part, _Token)


class PatternError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@lru_cache(maxsize=256)
def parse_pattern(text: str) -> Pattern:
    """The parsed pattern; PatternError(code, message) if it is not one."""
    if not isinstance(text, str) or not text:
        raise PatternError("E440", "must be text with one counter such as {####}")
    if len(text) > MAX_PATTERN:
        raise PatternError("E442", f"is longer than {MAX_PATTERN} characters")
    parts: list = []
    counters = 0
    periods = []
    at = 0
    for match in _TOKEN.finditer(text):
        parts.append(text[at:match.start()])
        token = match.group(1)
        if token in DATE_TOKENS:
            parts.append(_Token(token))
            periods.append(PERIOD_OF[token])
        elif token and set(token) == {"#"}:
            counters += 1
            parts.append(len(token))
        else:
            raise PatternError("E441", f"has an unknown token {{{token}}}; tokens are {{YYYY}} {{YY}} {{MM}} {{DD}} and a counter {{###}}")
        at = match.end()
    parts.append(text[at:])
    if any("{" in p or "}" in p for p in parts if isinstance(p, str) and not _is_token(p)):
        raise PatternError("E441", "has a { or } that opens or closes no token")
    if counters != 1:
        raise PatternError("E440", f"must have exactly one counter such as {{####}}, found {counters}")
    period = min(periods, key=["day", "month", "year"].index) if periods else None
    return Pattern(tuple(p for p in parts if p != ""), period)


class AutonumberType(StringType):
    name = "autonumber"
    option_keys = ("pattern",)
    own_options = ("pattern",)  # `pattern` is a number pattern here, not the regex of string fields
    fixed_options = {"readonly": True, "unique": True}  # assigned by the portal, never typed
    assigned = True  # import: a column for it is reported and ignored
    takes_literals = False
    maskable = False

    def check_option(self, key: str, value) -> OptionProblem | None:
        if key == "pattern":
            if not isinstance(value, str):  # YAML may give a number, a list or nothing
                return OptionProblem("E440", "must be text with one counter such as {####}")
            try:
                parse_pattern(value)
            except PatternError as exc:
                return OptionProblem(exc.code, exc.message)
        return None

    def pattern(self, field) -> Pattern:
        return parse_pattern(field.pattern)

    def max_length(self, field) -> int:
        return self.pattern(field).max_length

    def clean(self, field, value) -> str:
        return filter_text(value).strip()  # only filters and report values are cleaned: the field is never typed

    def number(self, field, day: dt.date, counter: int) -> str:
        return self.pattern(field).format(day, counter)


def is_autonumber(field) -> bool:
    from app.fieldtypes.registry import type_of

    return isinstance(type_of(field), AutonumberType)


