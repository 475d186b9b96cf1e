"""Column lists, labels and display formatting shared by the generated views and APIs."""
from __future__ import annotations

import phonenumbers
from flask_babel import lazy_gettext as _l

from app.rules.access import current_viewer, mask_value
from app.i18n import current_locale, lazy
from app.schema.spec import EntitySpec, FieldSpec

AUDIT_LABELS = {
    "created_on": _l("Created on"), "changed_on": _l("Changed on"),
    "created_by": _l("Created by"), "changed_by": _l("Changed by"),
}
DEFAULT_LIST_SIZE = 6


def list_columns(entity: EntitySpec) -> list[str]:
    if entity.list:
        return list(entity.list)
    return [f.name for f in entity.fields if f.type not in ("text", "many")][:DEFAULT_LIST_SIZE]


def show_columns(entity: EntitySpec) -> list[str]:
    return [f.name for f in entity.fields] + list(AUDIT_LABELS)


def form_columns(entity: EntitySpec) -> list[str]:
    return [f.name for f in entity.fields if not f.readonly]


def label_columns(entity: EntitySpec) -> dict:
    labels = {f.name: lazy(f.label) for f in entity.fields}
    labels.update(AUDIT_LABELS)
    return labels


def description_columns(entity: EntitySpec) -> dict:
    return {f.name: lazy(f.help) for f in entity.fields if f.help}


def display_phone(value) -> str:
    if not value:
        return ""
    try:
        return phonenumbers.format_number(phonenumbers.parse(value, None), phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    except phonenumbers.NumberParseException:
        return value


def enum_formatter(f: FieldSpec):
    def show(value):
        label = f.choice_label(value)
        return label.get(current_locale()) if label else (value or "")
    return show


def blank_if_none(show):
    """FAB prints None for empty values; people expect an empty cell."""
    return lambda value: "" if value is None else show(value)


def display_decimal(value) -> str:
    return f"{value:,}"


def display_boolean(value) -> str:
    return str(_l("Yes") if value else _l("No"))


def formatters(entity: EntitySpec) -> dict:
    by_type = {"enum": None, "phone": display_phone, "decimal": display_decimal, "boolean": display_boolean,
               "many": lambda items: ", ".join(str(i) for i in items)}
    result = {name: blank_if_none(str) for name in AUDIT_LABELS}
    for f in entity.fields:
        show = enum_formatter(f) if f.type == "enum" else by_type.get(f.type, str)
        result[f.name] = masked_for_viewer(entity.name, f.name, blank_if_none(show))
    return result


def masked_for_viewer(entity_name: str, field_name: str, show):
    def display(value):
        if field_name in current_viewer().masked(entity_name):
            return mask_value(value)
        return show(value)
    return display
