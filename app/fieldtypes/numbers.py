"""Number types: integer (a 32-bit INTEGER column) and decimal (NUMERIC with the field's precision and scale)."""
from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache

from app.fieldtypes.base import _l, FieldError, FieldType, LiteralError, check_bounds, is_blank

INT_RANGE = (-(2**31), 2**31 - 1)  # PostgreSQL INTEGER
_WHOLE = re.compile(r"\s*[-+]?\d{1,18}\s*")


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


@lru_cache(maxsize=None)
def decimal_limits(scale: int, precision: int) -> tuple[Decimal, Decimal]:
    """(the smallest step, the first value too large) of NUMERIC(precision, scale)."""
    return Decimal(1).scaleb(-scale), Decimal(10) ** (precision - scale)


class IntegerType(FieldType):
    name = "integer"
    option_keys = ("min", "max")
    maskable = True
    numeric = ordered = whole = True

    def literal(self, value, options=None):
        if isinstance(value, int) and not isinstance(value, bool):
            if INT_RANGE[0] <= value <= INT_RANGE[1]:
                return value
            raise LiteralError(f" (whole numbers are stored as INTEGER: {INT_RANGE[0]} to {INT_RANGE[1]})")
        raise LiteralError()

    def column_type(self, field):
        from sqlalchemy import Integer

        return Integer()

    def clean(self, field, value) -> int:
        if isinstance(value, bool):
            raise FieldError(_l("Must be a whole number."))
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, Decimal) and value == value.to_integral_value():
            value = int(value)
        if isinstance(value, str) and _WHOLE.fullmatch(value):
            value = int(value)
        if not isinstance(value, int):
            raise FieldError(_l("Must be a whole number."))
        if abs(value) > 2**31 - 1:
            raise FieldError(_l("Number is too large."))
        return check_bounds(field, value)

    def export_converter(self, field):
        return lambda v: "" if v is None else v

    def export_sql(self, field, column):
        from sqlalchemy import Text, cast

        return cast(column, Text)


class DecimalType(FieldType):
    name = "decimal"
    option_keys = ("min", "max", "precision", "scale")
    maskable = True
    groupable = False
    numeric = ordered = True
    export_raw = True

    def literal(self, value, options=None):
        options = options or {}
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise LiteralError()
        try:
            literal = Decimal(str(value))
        except InvalidOperation:
            raise LiteralError() from None
        precision, scale = options.get("precision") or 12, options.get("scale") or 0
        if not literal.is_finite():
            raise LiteralError(" (it must be a finite number)")
        if abs(literal) >= Decimal(10) ** (precision - scale) or -literal.as_tuple().exponent > scale:
            raise LiteralError(f" (precision {precision}, scale {scale}: at most {precision - scale} digits before "
                               f"the point and {scale} after)")
        return literal

    def column_type(self, field):
        from sqlalchemy import Numeric

        return Numeric(field.precision, field.scale, asdecimal=True)

    def clean(self, field, value) -> Decimal:
        number = parse_number(value)
        quantum, too_large = decimal_limits(field.scale, field.precision)
        if number.as_tuple().exponent < -field.scale and number.quantize(quantum, rounding=ROUND_HALF_UP) != number:
            raise FieldError(_l("At most %(scale)d decimal places.", scale=field.scale))
        if abs(number) >= too_large:
            raise FieldError(_l("Number is too large."))
        return check_bounds(field, number.quantize(quantum))

    def clean_filter(self, field, operator, value):
        """A number that fits the column (decimal places do not matter for a comparison)."""
        if is_blank(value):
            return None
        number = parse_number(value)
        if abs(number) >= Decimal(10) ** (field.precision - field.scale):
            raise FieldError(_l("Number is too large."))
        return number

    def display(self, field):
        return display_decimal

    def export_converter(self, field):
        scale = field.scale  # SQLite hands NUMERIC back as a float
        return lambda v: "" if v is None else (v if isinstance(v, Decimal) else Decimal(f"{v:.{scale}f}"))

    def export_sql(self, field, column):
        from sqlalchemy import Text, cast

        return cast(column, Text)

    def openapi_schema(self, field) -> dict:
        return {"oneOf": [{"type": "string"}, {"type": "number"}], "description": "a decimal; sent as a string"}


def display_decimal(value) -> str:
    return f"{value:,}"
