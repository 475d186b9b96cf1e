"""Text-like types: string, text, email, phone, url (a bounded or unbounded string column)."""
from __future__ import annotations

import re
from decimal import Decimal
from urllib.parse import urlparse

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from app.fieldtypes.base import _l, FieldError, FieldType

DEFAULT_PHONE_REGION = "CN"

# full-width forms (U+FF01..U+FF5E: ＡＢＣ１２３（），) and the ideographic space (U+3000) -> their ASCII twins
_HALF_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}


def half_width(text: str) -> str:
    """Full-width forms and ideographic spaces as their ASCII twins (ＡＢＣ１２３ -> ABC123)."""
    return text if text.isascii() else text.translate(_HALF_WIDTH)


def standard_text(text: str) -> str:
    """A single-line name or code as the portal stores it: full-width letters, digits, punctuation and spaces
    folded to half-width, surrounding spaces trimmed and inner runs of whitespace made one space, so that
    "ＡＢＣ１２３ " is "ABC123" and "张三  " is "张三" (docs/schema.md "Address fields and standardisation").
    Forms, the API, imports and filters all reach it through StringType.clean; duplicate checks compare these."""
    return " ".join(half_width(text).split())


def filter_text(value) -> str:
    """A text filter compares with any text (sw/ct/eq on strings, non-key operators on enums)."""
    if not isinstance(value, (str, int, float)):
        raise FieldError(_l("Must be text."))
    return str(value)


class StringType(FieldType):
    name = "string"
    option_keys = ("length", "pattern")
    maskable = True
    text_search = True
    default_length: int | None = 255  # VARCHAR size when the schema gives no `length`
    strip = True  # standardised (standard_text: trimmed, full-width folded); text keeps its spaces: they may be layout

    def max_length(self, field) -> int | None:
        return field.length or self.default_length

    def column_type(self, field):
        from sqlalchemy import String

        return String(self.max_length(field))

    def clean(self, field, value) -> str:
        if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
            raise FieldError(_l("Must be text."))
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # a spreadsheet cell holding 13800138000
        text = standard_text(str(value)) if self.strip else str(value)
        limit = field.length or self.default_length
        if limit and len(text) > limit:
            raise FieldError(_l("Must be at most %(max)d characters (got %(got)d).", max=limit, got=len(text)))
        if field.pattern and not re.fullmatch(field.pattern, text):
            raise FieldError(_l("Does not have the expected format."))
        return text

    def clean_filter(self, field, operator: str, value):
        text = filter_text(value)  # spaces as typed ("contains ' Ltd'"); full-width folded: "ＡＢＣ" finds "ABC"
        return half_width(text) if self.strip else text


class TextType(StringType):
    name = "text"
    option_keys = ("length",)
    can_be_unique = False
    listed_by_default = False
    groupable = False
    long_values = True
    default_length = None
    strip = False

    def column_type(self, field):
        from sqlalchemy import Text

        return Text()


class EmailType(StringType):
    name = "email"
    option_keys = ("length",)
    default_length = 254

    def clean(self, field, value) -> str:
        text = StringType.clean(self, field, value)
        try:
            return validate_email(text, check_deliverability=False).normalized
        except EmailNotValidError:
            raise FieldError(_l("Not a valid email address.")) from None


class UrlType(StringType):
    name = "url"
    option_keys = ("length",)
    default_length = 2048

    def clean(self, field, value) -> str:
        text = StringType.clean(self, field, value)
        parts = urlparse(text)
        if parts.scheme not in ("http", "https") or not parts.netloc or " " in text:
            raise FieldError(_l("Not a valid web address (it must start with http:// or https://)."))
        return text


class PhoneType(StringType):
    """Stored as E.164 (+8613800138000); numbers without a country code are read as Chinese ones."""

    name = "phone"
    option_keys = ()
    default_length = 32

    def clean(self, field, value) -> str:
        text = StringType.clean(self, field, value)
        try:
            number = phonenumbers.parse(text, DEFAULT_PHONE_REGION)
        except phonenumbers.NumberParseException:
            raise FieldError(_l("Not a valid phone number.")) from None
        if not phonenumbers.is_valid_number(number):
            raise FieldError(_l("Not a valid phone number."))
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)

    def display(self, field):
        return display_phone


def display_phone(value) -> str:
    """+86 138 0013 8000 (international format); a value that is not a number is shown as stored."""
    if not value:
        return ""
    try:
        return phonenumbers.format_number(phonenumbers.parse(value, None), phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    except phonenumbers.NumberParseException:
        return value
