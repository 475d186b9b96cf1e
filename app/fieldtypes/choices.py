"""Choice types: boolean (yes/no) and enum (one key of the field's `choices`, shown by its label)."""
from __future__ import annotations

from app.fieldtypes.base import _l, FieldError, FieldType, LiteralError, yes_no
from app.fieldtypes.text import filter_text

TRUE_WORDS = {"true", "1", "yes", "y", "on", "是", "真", "x", "✓"}
FALSE_WORDS = {"false", "0", "no", "n", "off", "否", "假", ""}
KEY_OPERATORS = ("eq", "neq", "in", "not_in")  # on enums: the value is a key (sw/ct/... take any text)


class BooleanType(FieldType):
    name = "boolean"
    truth_value = True
    can_be_unique = False
    report_filterable = True
    export_raw = True

    def literal(self, value, options=None):
        if isinstance(value, bool):
            return value
        raise LiteralError()

    def column_type(self, field):
        from sqlalchemy import Boolean

        return Boolean()

    def clean(self, field, value) -> bool:
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

    def display(self, field):
        return yes_no

    def report_label(self, field, raw, title) -> str:
        return yes_no(raw)

    def report_filter_options(self, field) -> list:
        return [("true", _l("Yes")), ("false", _l("No"))]

    def export_converter(self, field):
        yes, no = str(_l("Yes")), str(_l("No"))
        return lambda v: "" if v is None else (yes if v else no)

    def export_sql(self, field, column):
        from sqlalchemy import case

        from app.data.tabular import safe_text

        return case((column.is_(True), safe_text(str(_l("Yes")))), (column.is_(False), safe_text(str(_l("No")))))


class EnumType(FieldType):
    """Stored as the choice's key (VARCHAR as long as the longest key); forms and exports show its label."""

    name = "enum"
    option_keys = ("choices",)
    text_search = True
    report_filterable = True

    def column_type(self, field):
        from sqlalchemy import String

        return String(max(len(c.key) for c in field.choices))

    def form_field(self, field, rule):
        from app.fieldtypes.forms import choice_select

        return choice_select(field, rule)

    def clean(self, field, value) -> str:
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

    def clean_filter(self, field, operator, value):
        if operator not in KEY_OPERATORS:
            return filter_text(value)
        return super().clean_filter(field, operator, value)

    def display(self, field):
        from app.i18n import current_locale

        def show(value):
            label = field.choice_label(value)
            return label.get(current_locale()) if label else (value or "")
        return show

    def report_label(self, field, raw, title) -> str:
        from app.i18n import current_locale

        label = field.choice_label(raw)
        return label.get(current_locale()) if label else str(raw)

    def report_filter_options(self, field) -> list:
        from app.i18n import lazy

        return [(c.key, lazy(c.label)) for c in field.choices]

    def export_converter(self, field):
        from app.data.tabular import safe_text
        from app.i18n import current_locale

        locale = current_locale()

        def choice(v):
            if v is None:
                return ""
            label = field.choice_label(v)
            return safe_text(label.get(locale) if label else str(v))
        return choice

    def export_sql(self, field, column):
        from sqlalchemy import case

        from app.data.tabular import safe_sql_text, safe_text
        from app.i18n import current_locale

        locale = current_locale()
        labels = [(c.key, safe_text(c.label.get(locale))) for c in field.choices]
        return case(*((column == key, text) for key, text in labels), else_=safe_sql_text(column))
