"""Field types: everything about one type of field (YAML options, column, cleaning, display, filters, export,
OpenAPI, reports) in one class; see base.FieldType and docs/architecture.md."""
from app.fieldtypes.base import FieldError, FieldType, LiteralError, is_blank, record_id
from app.fieldtypes.registry import BUILTIN_TYPES, CONFIG_KEY, FieldTypes, current_field_types, field_types, type_of

__all__ = ["BUILTIN_TYPES", "CONFIG_KEY", "FieldError", "FieldType", "FieldTypes", "LiteralError", "current_field_types",
           "field_types", "is_blank", "record_id", "type_of"]
