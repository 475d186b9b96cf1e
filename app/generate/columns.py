"""Column lists, labels and display formatting shared by the generated views and APIs."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l

from app.fieldtypes import type_of
from app.i18n import lazy
from app.rules.access import current_viewer, mask_value
from app.schema.spec import EntitySpec

AUDIT_LABELS = {
    "created_on": _l("Created on"), "changed_on": _l("Changed on"),
    "created_by": _l("Created by"), "changed_by": _l("Changed by"),
}
DEFAULT_LIST_SIZE = 6


def list_columns(entity: EntitySpec) -> list[str]:
    if entity.list:
        return list(entity.list)
    # an address's province, city ... are listed when `list:` names them (the address itself is listed)
    return [f.name for f in entity.fields if type_of(f).listed_by_default and f.derived_from is None][:DEFAULT_LIST_SIZE]


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


def blank_if_none(show):
    """FAB prints None for empty values; people expect an empty cell."""
    return lambda value: "" if value is None else show(value)


def formatters(entity: EntitySpec) -> dict:
    """How each column shows on list and show pages: its type's display, blank for None, masked per viewer."""
    result = {name: blank_if_none(str) for name in AUDIT_LABELS}
    for f in entity.fields:
        result[f.name] = masked_for_viewer(entity.name, f.name, blank_if_none(type_of(f).display(f)))
    return result


def masked_for_viewer(entity_name: str, field_name: str, show):
    def display(value):
        if field_name in current_viewer().masked(entity_name):
            return mask_value(value)
        return show(value)
    return display
