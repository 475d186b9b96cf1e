"""Which filters a column offers: FAB picks them by SQL column type; a field type may name its own.

`FieldType.filter_operators(field)` (app/fieldtypes) is asked first; None keeps FAB's conversion table.
FAB's documented extension point for this is the datamodel's `filter_converter_class`.
"""
from __future__ import annotations

from flask_appbuilder.models.sqla.filters import SQLAFilterConverter

ENTITY_ATTRIBUTE = "__portal_entity__"  # set on each generated model (models.py): its EntitySpec


class TypedFilterConverter(SQLAFilterConverter):
    def convert(self, col_name):
        entity = getattr(self.datamodel.obj, ENTITY_ATTRIBUTE, None)
        try:
            field = entity.field(col_name) if entity is not None else None
        except KeyError:  # id, audit columns: not fields of the schema
            field = None
        own = field.kind.filter_operators(field) if field is not None else None
        if own is not None:
            return [operator(col_name, self.datamodel) for operator in own]
        return super().convert(col_name)
