"""Turn raw input (form data, JSON, spreadsheet cells) into clean values for one field.

One set of rules serves the UI forms, the REST API and imports, so every path accepts and rejects
exactly the same data with the same localized messages. The rules of each type live in its FieldType
(app/fieldtypes); these are the entry points the rest of the app calls.
"""
from __future__ import annotations

from app.fieldtypes import BUILTIN_TYPES, FieldError, field_types, is_blank, record_id, type_of
from app.fieldtypes.base import MAX_ID
from app.fieldtypes.choices import FALSE_WORDS, TRUE_WORDS
from app.fieldtypes.numbers import parse_number
from app.fieldtypes.text import DEFAULT_PHONE_REGION
from app.schema.spec import FieldSpec

__all__ = ["DEFAULT_PHONE_REGION", "FALSE_WORDS", "MAX_ID", "STRING_LENGTHS", "TRUE_WORDS", "FieldError",
           "clean_present", "clean_value", "is_blank", "max_length", "parse_number", "record_id"]

# VARCHAR sizes of the text types without a `length` (read from the types; kept for callers of the old table)
STRING_LENGTHS = {name: t.default_length for name, t in BUILTIN_TYPES.items() if getattr(t, "default_length", None)}
# the importer's per-cell hot path: one dict lookup gives the bound method of a built-in type
_BUILTIN_CLEAN = {name: t.clean for name, t in BUILTIN_TYPES.items()}


def max_length(field: FieldSpec) -> int | None:
    return type_of(field).max_length(field)


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
    clean = _BUILTIN_CLEAN.get(field.type)
    if clean is None:  # an app's own type
        clean = field_types().of(field).clean
    return clean(field, value)
