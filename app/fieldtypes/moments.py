"""Moments: date (DATE) and datetime (DATETIME, naive local time to the second)."""
from __future__ import annotations

import datetime as dt

from app.fieldtypes.base import _l, FieldError, FieldType, LiteralError, check_bounds

LOCAL_DATETIME = "local date and time without a zone, e.g. 2026-01-31T14:30:00"


class DateType(FieldType):
    name = "date"
    option_keys = ("min", "max")
    dynamic_defaults = ("today",)
    ordered = is_moment = True
    export_raw = True

    def literal(self, value, options=None):
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                pass
        raise LiteralError()

    def column_type(self, field):
        from sqlalchemy import Date

        return Date()

    def clean(self, field, value) -> dt.date:
        if isinstance(value, dt.datetime):  # a spreadsheet date cell arrives as midnight
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
        return check_bounds(field, value)

    def export_converter(self, field):
        return lambda v: "" if v is None else (dt.date.fromisoformat(v) if isinstance(v, str) else v)

    def export_sql(self, field, column):
        from sqlalchemy import Text, cast

        return cast(column, Text)


class DatetimeType(FieldType):
    name = "datetime"
    option_keys = ("min", "max")
    dynamic_defaults = ("now",)
    ordered = is_moment = has_time = True
    export_raw = True

    def literal(self, value, options=None):
        try:
            if isinstance(value, (str, dt.date)) and not isinstance(value, dt.datetime):
                value = dt.datetime.fromisoformat(str(value))
        except ValueError:
            raise LiteralError() from None
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                return value
            raise LiteralError(" (write it without a time zone: times are stored as local time)")
        raise LiteralError()

    def column_type(self, field):
        from sqlalchemy import DateTime

        return DateTime()

    def clean(self, field, value) -> dt.datetime:
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
        return check_bounds(field, value.replace(microsecond=0))

    def export_converter(self, field):
        return lambda v: "" if v is None else (dt.datetime.fromisoformat(v) if isinstance(v, str) else v)

    def export_sql(self, field, column):
        """2026-01-31 14:30:00 (and .ffffff only when there are fractions), as Python's str() writes it."""
        from sqlalchemy import case, func

        seconds = func.to_char(column, "YYYY-MM-DD HH24:MI:SS")
        return seconds + case((func.date_trunc("second", column) == column, ""), else_=func.to_char(column, ".US"))

    def openapi_schema(self, field) -> dict:
        return {"type": "string", "description": LOCAL_DATETIME}
