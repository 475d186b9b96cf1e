"""Turn raw input (form data, JSON, spreadsheet cells) into clean values for one field.

One set of rules serves the UI forms, the REST API and imports, so every path accepts
and rejects exactly the same data with the same localized messages.
"""
from __future__ import annotations

import datetime as dt
import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from urllib.parse import urlparse

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from flask_babel import lazy_gettext as _l

from app.schema.spec import FieldSpec

DEFAULT_PHONE_REGION = "CN"
TRUE_WORDS = {"true", "1", "yes", "y", "on", "是", "真", "x", "✓"}
FALSE_WORDS = {"false", "0", "no", "n", "off", "否", "假", ""}
STRING_LENGTHS = {"string": 255, "email": 254, "url": 2048, "phone": 32}


class FieldError(ValueError):
    """A localized, user-facing reason why a value was rejected."""

    def __init__(self, message) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return str(self.message)


def is_blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def max_length(field: FieldSpec) -> int | None:
    return field.length or STRING_LENGTHS.get(field.type)


def clean_value(field: FieldSpec, value):
    """Return the value to store for a scalar field, or raise FieldError.

    Blank input gives None (the caller decides whether the field is required).
    Link, user and many fields are resolved by the caller, who has the database.
    """
    if is_blank(value):
        return None
    return clean_present(field, value)


def clean_present(field: FieldSpec, value):
    """clean_value for a value already known not to be blank (the importer's hot path)."""
    cleaner = _CLEANERS.get(field.type)
    return cleaner(field, value) if cleaner else value


def _text(field, value) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise FieldError(_l("Must be text."))
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a spreadsheet cell holding 13800138000
    text = str(value).strip() if field.type != "text" else str(value)
    limit = max_length(field)
    if limit and len(text) > limit:
        raise FieldError(_l("Must be at most %(max)d characters (got %(got)d).", max=limit, got=len(text)))
    if field.pattern and not re.fullmatch(field.pattern, text):
        raise FieldError(_l("Does not have the expected format."))
    return text


def _email(field, value) -> str:
    text = _text(field, value)
    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError:
        raise FieldError(_l("Not a valid email address.")) from None


def _url(field, value) -> str:
    text = _text(field, value)
    parts = urlparse(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or " " in text:
        raise FieldError(_l("Not a valid web address (it must start with http:// or https://)."))
    return text


def _phone(field, value) -> str:
    text = _text(field, value)
    try:
        number = phonenumbers.parse(text, DEFAULT_PHONE_REGION)
    except phonenumbers.NumberParseException:
        raise FieldError(_l("Not a valid phone number.")) from None
    if not phonenumbers.is_valid_number(number):
        raise FieldError(_l("Not a valid phone number."))
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _bounds(field, value):
    if field.min is not None and value < field.min:
        raise FieldError(_l("Must be at least %(min)s.", min=field.min))
    if field.max is not None and value > field.max:
        raise FieldError(_l("Must be at most %(max)s.", max=field.max))
    return value


def _integer(field, value) -> int:
    if isinstance(value, bool):
        raise FieldError(_l("Must be a whole number."))
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, Decimal) and value == value.to_integral_value():
        value = int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d{1,18}\s*", value):
        value = int(value)
    if not isinstance(value, int):
        raise FieldError(_l("Must be a whole number."))
    if abs(value) > 2**31 - 1:
        raise FieldError(_l("Number is too large."))
    return _bounds(field, value)


@lru_cache(maxsize=None)
def _decimal_limits(scale: int, precision: int) -> tuple[Decimal, Decimal]:
    return Decimal(1).scaleb(-scale), Decimal(10) ** (precision - scale)


def parse_number(value) -> Decimal:
    """A finite Decimal from a number or text like "1,234.5"; anything else is a FieldError."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise FieldError(_l("Must be a number."))
    try:
        number = Decimal(value.replace(",", "").strip() if isinstance(value, str) else str(value))
    except InvalidOperation:
        raise FieldError(_l("Must be a number.")) from None
    if not number.is_finite():
        raise FieldError(_l("Must be a number."))
    return number


def _decimal(field, value) -> Decimal:
    number = parse_number(value)
    quantum, too_large = _decimal_limits(field.scale, field.precision)
    if number.as_tuple().exponent < -field.scale and number.quantize(quantum, rounding=ROUND_HALF_UP) != number:
        raise FieldError(_l("At most %(scale)d decimal places.", scale=field.scale))
    if abs(number) >= too_large:
        raise FieldError(_l("Number is too large."))
    return _bounds(field, number.quantize(quantum))


def _boolean(field, value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise FieldError(_l("Must be yes or no."))


def _date(field, value) -> dt.date:
    if isinstance(value, dt.datetime):
        if value.time() != dt.time(0):
            raise FieldError(_l("Must be a date like 2026-01-31."))
        value = value.date()
    elif isinstance(value, str):
        text = value.strip().replace("/", "-").replace(".", "-")
        try:
            value = dt.date.fromisoformat(text) if len(text) == 10 else dt.datetime.strptime(text, "%Y-%m-%d").date()
        except ValueError:
            raise FieldError(_l("Must be a date like 2026-01-31.")) from None
    if not isinstance(value, dt.date):
        raise FieldError(_l("Must be a date like 2026-01-31."))
    return _bounds(field, value)


def _datetime(field, value) -> dt.datetime:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time(0))
    elif isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip().replace("/", "-"))
        except ValueError:
            raise FieldError(_l("Must be a date and time like 2026-01-31 14:30.")) from None
    if not isinstance(value, dt.datetime):
        raise FieldError(_l("Must be a date and time like 2026-01-31 14:30."))
    if value.tzinfo is not None:  # stored as naive local time, like the UI shows it
        value = value.astimezone().replace(tzinfo=None)
    return _bounds(field, value.replace(microsecond=0))


def _enum(field, value) -> str:
    """Accept the stored key or its label in any locale (spreadsheets carry labels)."""
    text = str(value).strip() if not isinstance(value, bool) else None
    for choice in field.choices:
        if text == choice.key:
            return choice.key
    for choice in field.choices:
        if text is not None and text in dict(choice.label.texts).values():
            return choice.key
    allowed = ", ".join(c.key for c in field.choices)
    raise FieldError(_l("Not a valid choice; use one of: %(allowed)s.", allowed=allowed))


_CLEANERS = {
    "string": _text, "text": _text, "email": _email, "url": _url, "phone": _phone,
    "integer": _integer, "decimal": _decimal, "boolean": _boolean,
    "date": _date, "datetime": _datetime, "enum": _enum,
}


MAX_ID = 2**31 - 1  # ids are INTEGER columns (32-bit on PostgreSQL)


def record_id(value) -> int:
    """A record id from a path, filter or payload; anything that cannot be one (junk, <= 0, past 32 bits) is a
    ValueError, so callers answer 4xx instead of letting the database or driver overflow."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, str):
        if not re.fullmatch(r"\s*\+?\d{1,10}\s*", value):
            raise ValueError(value)
        value = int(value)
    if not isinstance(value, int) or not 0 < value <= MAX_ID:
        raise ValueError(value)
    return value
