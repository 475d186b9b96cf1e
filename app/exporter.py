"""Export an entity's (filtered, scoped) records as spreadsheet rows, streamed in batches."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Iterator

from flask_babel import lazy_gettext as _l

from .access import Viewer, mask_value
from .i18n import current_locale, lazy
from .schema.spec import EntitySpec, FieldSpec

BATCH = 1000


def export_fields(entity: EntitySpec, viewer: Viewer) -> list[FieldSpec]:
    hidden = viewer.hidden(entity.name)
    return [f for f in entity.fields if f.name not in hidden]


def header(fields: list[FieldSpec]) -> list[str]:
    """Column titles are the labels in the user's language; imports accept them in any language."""
    return [str(lazy(f.label)) for f in fields]


def _cell(f: FieldSpec, value, masked: bool):
    if value is None:
        return ""
    if masked:
        return mask_value(value)
    if f.type == "user":
        return value.username  # what imports resolve users by
    if f.type == "link":
        return str(value)
    if f.type == "many":
        return ", ".join(str(v) for v in value)
    if f.type == "enum":
        label = f.choice_label(value)
        return label.get(current_locale()) if label else value
    if f.type == "boolean":
        return str(_l("Yes") if value else _l("No"))
    if isinstance(value, (Decimal, dt.date, int)):
        return value
    return str(value)


def export_rows(entity: EntitySpec, query, viewer: Viewer) -> Iterator[list]:
    """The header, then one row per record; the query is read `BATCH` rows at a time."""
    fields = export_fields(entity, viewer)
    masked = viewer.masked(entity.name)
    yield header(fields)
    for item in query.yield_per(BATCH):
        yield [_cell(f, getattr(item, f.name), f.name in masked) for f in fields]
