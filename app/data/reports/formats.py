"""Report numbers as text in the reader's language: money, percent, number and duration (Babel, pinned with flask-babel).

`format_value(value, fmt, locale)` is what the report page, the dashboards and the downloads' number formats use.
fmt None keeps the old look (integers grouped, decimals to cents). The patterns are parsed once per (format,
locale): a 2,000-group report formats thousands of cells, and Babel's per-call parsing would dominate.
"""
from __future__ import annotations

import functools
import re

from babel import Locale, UnknownLocaleError
from babel.numbers import get_currency_symbol, parse_pattern

FORMATS = ("money", "percent", "number", "duration")
DEFAULT_CURRENCY = "CNY"
# hours and minutes: Babel's unit names ("3 hr", "20分钟") read oddly in a table; these are the usual short forms
DURATION_UNITS = {"zh": ("{h}小时", "{m}分"), "en": ("{h} h", "{m} min")}
COUNTRY_PREFIX = re.compile(r"^[A-Z]{1,3}(?=\W)")  # "CN¥" -> "¥", "US$" -> "$"; "CHF" stays


def currency() -> str:
    """The portal's currency (config PORTAL_CURRENCY, ISO 4217), CNY outside an app."""
    try:
        from flask import current_app

        return current_app.config.get("PORTAL_CURRENCY") or DEFAULT_CURRENCY
    except RuntimeError:
        return DEFAULT_CURRENCY


@functools.lru_cache(maxsize=64)
def _locale(name: str) -> Locale:
    try:
        return Locale.parse(name or "en", sep="-" if "-" in (name or "") else "_")
    except (UnknownLocaleError, ValueError):
        return Locale.parse("en")


@functools.lru_cache(maxsize=256)
def formatter(fmt: str | None, locale: str, money: str = DEFAULT_CURRENCY):
    """value -> text for one format and locale (not None: callers skip empty values)."""
    return _lenient(_formatter(fmt, locale, money))


def _formatter(fmt: str | None, locale: str, money: str):
    loc = _locale(locale)
    if fmt == "money":
        pattern = parse_pattern(loc.currency_formats["standard"])
        symbol = get_currency_symbol(money, loc)
        symbol = COUNTRY_PREFIX.sub("", symbol) or symbol  # the narrow symbol: ¥1,234.50 rather than CN¥1,234.50
        return lambda v: pattern.apply(v, loc, currency=money).replace(get_currency_symbol(money, loc), symbol)
    if fmt == "percent":
        pattern = parse_pattern(loc.percent_formats[None])
        return lambda v: pattern.apply(v, loc)
    if fmt == "number":
        pattern = parse_pattern("#,##0.##")
        return lambda v: pattern.apply(v, loc)
    if fmt == "duration":
        hours_text, minutes_text = DURATION_UNITS.get(loc.language, DURATION_UNITS["en"])
        space = "" if loc.language == "zh" else " "

        def duration(v):
            minutes = round(float(v) * 60)
            sign, minutes = ("-" if minutes < 0 else ""), abs(minutes)
            h, m = divmod(minutes, 60)
            if not h:
                return sign + minutes_text.format(m=m)
            return sign + hours_text.format(h=h) + (space + minutes_text.format(m=m) if m else "")
        return duration
    if loc.number_symbols["latn"]["group"] == "," and loc.number_symbols["latn"]["decimal"] == ".":
        def fast(v):  # en, zh: Python's own grouping says the same, ten times faster than a Babel pattern
            kind = v.__class__  # exact classes: a bool is no number here, and this runs per cell
            if kind is float:
                return f"{v:,.2f}"
            if kind is int:
                return f"{v:,}"
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                return str(v)
            return f"{v:,.2f}" if isinstance(v, float) else f"{v:,}"
        return fast
    grouped = parse_pattern("#,##0")
    cents = parse_pattern("#,##0.00")

    def plain(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return str(v)
        return (cents if isinstance(v, float) else grouped).apply(v, loc)
    return plain


def python_specs(fmt: str | None, locale: str) -> tuple[str, str] | None:
    """(float spec, int spec) for `format()` when it writes exactly what `formatter(fmt, locale)` writes for a
    float or an int (a plain number in en/zh: Python's grouping), else None. The 2,000-group page formats 6,000
    cells: one built-in call each instead of two Python calls."""
    if fmt is None:
        symbols = _locale(locale).number_symbols["latn"]
        if symbols["group"] == "," and symbols["decimal"] == ".":
            return ",.2f", ","
    return None


def _lenient(show):
    """A formatter that shows a value it cannot format (a date text, say) as it is."""
    def formatted(v):
        try:
            return show(v)
        except (ArithmeticError, ValueError, TypeError):
            return str(v)
    return formatted


def format_value(value, fmt: str | None, locale: str) -> str:
    """One report value as shown to a reader of `locale` ("en", "zh"): "" for None."""
    if value is None:
        return ""
    return formatter(fmt, locale, currency() if fmt == "money" else DEFAULT_CURRENCY)(value)


def excel_format(fmt: str | None) -> str | None:
    """The XLSX number format of a report format: the cell keeps its number, Excel shows it formatted."""
    if fmt == "money":
        symbol = COUNTRY_PREFIX.sub("", get_currency_symbol(currency(), "en")) or currency()
        return f'"{symbol}"#,##0.00'
    return {"percent": "0%", "number": "#,##0.##", "duration": '0.00" h"'}.get(fmt)
