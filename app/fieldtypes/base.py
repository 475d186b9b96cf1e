"""The base of every field type: what one type of field declares about itself, from YAML to export.

A field type is a stateless object (one instance per type); everything that differs between types lives on
it, so adding a type means writing one subclass (see docs/architecture.md, "Field types"). Each hook gets
the field's spec (`FieldSpec`: its options such as length, min/max, choices) as its first argument.

Importing this module must stay cheap and free of Flask-AppBuilder: `portal check` reads the spec-level
part (option keys, literals, flags) without building the app. SQLAlchemy and FAB are imported inside the
methods that need them.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Callable, ClassVar



def _l(text: str, **variables):
    """flask_babel's lazy_gettext, imported on first use: the spec level (`portal check`) needs no Flask."""
    from flask_babel import lazy_gettext

    return lazy_gettext(text, **variables)


class FieldError(ValueError):
    """A localized, user-facing reason why a value was rejected."""

    def __init__(self, message) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return str(self.message)


class LiteralError(ValueError):
    """A YAML literal (default, min, max, report filter value) that does not fit the type.

    `reason` is appended to the checker's message, e.g. " (it must be a finite number)" (may be empty).
    """

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


def is_blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


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


def check_bounds(field, value):
    """The field's min/max; values compare with the literals the checker parsed."""
    if field.min is not None and value < field.min:
        raise FieldError(_l("Must be at least %(min)s.", min=field.min))
    if field.max is not None and value > field.max:
        raise FieldError(_l("Must be at most %(max)s.", max=field.max))
    return value


def unbounded(field):
    """The field's type rules without min/max: a filter may ask for "hours > 0" when hours must be >= 1."""
    return dataclasses.replace(field, min=None, max=None)


def yes_no(value) -> str:
    return str(_l("Yes") if value else _l("No"))


@dataclass(frozen=True)
class OptionProblem:
    """Why a type refuses one of its YAML options (FieldType.check_option): a stable checker code and the reason."""

    code: str
    message: str


@dataclass(frozen=True)
class Sibling:
    """A read-only column a field type derives from a field's value (FieldType.siblings): `<field><suffix>` of
    type `type`, labelled with the field's label followed by `labels` (per locale)."""

    suffix: str
    type: str
    labels: tuple[tuple[str, str], ...]
    length: int | None = None

    def label_texts(self, field_texts, locales) -> tuple[tuple[str, str], ...]:
        """The sibling's label in each locale: the field's (its English one where it has none) and the part's,
        e.g. "Address province" / "地址省"."""
        own = dict(field_texts)
        fallback = own.get("en") or next(iter(own.values()), "")
        parts = dict(self.labels)
        out = []
        for locale in locales:
            base, part = own.get(locale, fallback), parts.get(locale, parts.get("en", self.suffix.strip("_")))
            out.append((locale, f"{base} {part}" if locale == "en" else f"{base}{part}"))
        return tuple(out)


class FieldType:
    """One type of field. Subclasses set `name` and override what differs; defaults suit a plain text column."""

    name: ClassVar[str] = ""

    # -- spec level (pure: the checker reads these without Flask) ------------------------------------
    option_keys: ClassVar[tuple[str, ...]] = ()  # YAML keys this type accepts besides the common ones
    dynamic_defaults: ClassVar[tuple[str, ...]] = ()  # of "now", "today", "current_user"
    can_be_unique: ClassVar[bool] = True
    sortable: ClassVar[bool] = True  # the list may be ordered by it (FAB cannot sort by a relationship)
    can_be_title: ClassVar[bool] = True  # a record may be shown by it (a column of the entity's own table)
    maskable: ClassVar[bool] = False  # roles may `mask` it (shown as ***)
    listed_by_default: ClassVar[bool] = True  # among the list's columns when the entity names none
    takes_literals: ClassVar[bool] = True  # may have a literal default / report filter values
    own_options: ClassVar[tuple[str, ...]] = ()  # option keys only check_option checks (not the common check)
    fixed_options: ClassVar[dict] = {}  # flags every field of the type has, e.g. {"readonly": True}
    assigned: ClassVar[bool] = False  # the portal sets the value: an import column for it is ignored, not refused
    long_values: ClassVar[bool] = False  # values may not fit one B-tree index entry: indexed on a prefix
    required_in_column: ClassVar[bool] = True  # `required` is NOT NULL; False: enforced by the portal (file fields)
    # -- relations ---------------------------------------------------------------------------------
    is_relation: ClassVar[bool] = False  # link, many, user: values are records, resolved with the database
    multiple: ClassVar[bool] = False  # many records (an association table instead of a column)
    to_users: ClassVar[bool] = False  # points at FAB's users rather than at an entity
    # -- lists, lookups, reports ---------------------------------------------------------------------
    text_search: ClassVar[bool] = False  # searched as text when it is a linked entity's title
    groupable: ClassVar[bool] = True  # a report may group by it
    report_filterable: ClassVar[bool] = False  # a report page offers a select box of its values
    numeric: ClassVar[bool] = False  # sum/avg apply
    whole: ClassVar[bool] = False  # whole numbers only (a computed value is rounded half up to one)
    truth_value: ClassVar[bool] = False  # true or false (a boolean in expressions)
    ordered: ClassVar[bool] = False  # min/max apply
    is_moment: ClassVar[bool] = False  # a date or date-time: reports bucket it and filter a date range on it
    has_time: ClassVar[bool] = False
    # -- export ----------------------------------------------------------------------------------------
    export_raw: ClassVar[bool] = False  # read untyped and converted per distinct value (see export_converter)
    # -- sibling columns (an address's province, city ...) ------------------------------------------------
    siblings: ClassVar[tuple[Sibling, ...]] = ()  # read-only fields the checker adds next to each field of the type

    def __repr__(self) -> str:
        return f"<field type {self.name}>"

    # -- spec level ------------------------------------------------------------------------------------
    def literal(self, value, options: dict | None = None):
        """A YAML literal (default, min, max, report filter value) as a value of this type; LiteralError if not."""
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise LiteralError()

    def check_option(self, key: str, value) -> OptionProblem | None:
        """The type's own check of one YAML option (called for each of `option_keys` the field gives, before the
        common check of that key, which keys in `own_options` skip); None when the type has nothing against it."""
        return None

    # -- storage ---------------------------------------------------------------------------------------
    def max_length(self, field) -> int | None:
        """Characters a value may have (the schema's `length`, else the type's own limit)."""
        return field.length

    def column_type(self, field):
        """The SQLAlchemy column type of the field's own column."""
        raise ValueError(self.name)

    # -- forms -------------------------------------------------------------------------------------------
    def form_field(self, field, rule):
        """A WTForms field for add/edit forms instead of the one FAB derives from the column, or None to keep
        FAB's (with `rule`, the validator applying the schema's rules, added to it). Relations use the
        type-ahead pickers of app/generate/lookups.py."""
        return None

    # -- input -----------------------------------------------------------------------------------------
    def clean(self, field, value):
        """The value to store for input that is not blank (form text, JSON, spreadsheet cell); FieldError if none.

        Runs once per imported cell: keep it free of per-call allocations beyond the value itself.
        """
        return value

    def filter_operators(self, field) -> list | None:
        """The FAB filter classes (flask_appbuilder.models.sqla.filters) list pages and the API offer on this field,
        or None to keep FAB's choice by SQL column type (app/generate/filters.py asks this first)."""
        return None

    def clean_filter(self, field, operator: str, value):
        """The value a list/API filter compares with (None: the filter is not applied); FieldError if unfit."""
        if is_blank(value):
            return None
        return self.clean(unbounded(field), value)

    def report_value(self, field, raw):
        """A report page's `f_<field>=` value, cleaned like form input (None for blank)."""
        return None if is_blank(raw) else self.clean(field, raw)

    # -- display -----------------------------------------------------------------------------------------
    def display(self, field) -> Callable[[Any], str]:
        """How a (non-empty) stored value is shown on list and show pages."""
        return str

    def report_label(self, field, raw, title) -> str:
        """A report group's label for a non-NULL key (`title`: the joined title of a link)."""
        return str(raw)

    def report_filter_options(self, field) -> list | None:
        """(value, label) pairs for a report's select box; None: the values that occur in the result."""
        return None

    # -- export ------------------------------------------------------------------------------------------
    def export_converter(self, field) -> Callable:
        """DB value (None included) -> spreadsheet cell; called once per distinct value of a column, in the request."""
        from app.data.tabular import safe_text

        return lambda v: "" if v is None else safe_text(str(v))

    def export_sql(self, field, column):
        """PostgreSQL SQL for the CSV cell `export_converter` gives (COPY writes the CSV), spreadsheet-safe."""
        from sqlalchemy import Text, cast

        from app.data.tabular import safe_sql_text

        return safe_sql_text(cast(column, Text))

    def warm_up(self) -> None:
        """Load what the type needs before the first request (registry.warm_up_types: gunicorn's master, before it
        forks the workers); nothing by default."""

    # -- sibling columns ---------------------------------------------------------------------------------
    def derive(self, field, value) -> dict:
        """{sibling suffix: value} for a field's new value (None included), kept on every write by
        app/rules/siblings.py; only types with `siblings` are asked."""
        return {}

    # -- OpenAPI -----------------------------------------------------------------------------------------
    def openapi_schema(self, field) -> dict | None:
        """The JSON schema of a value in the REST API, or None to keep what FAB derives from the column."""
        return None
