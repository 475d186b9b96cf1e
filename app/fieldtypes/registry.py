"""Which field types exist: the built-in table (immutable) plus an app's own (`PORTAL_FIELD_TYPES`).

The registry is a value, not module state: `BUILTIN_TYPES` never changes, and an app's registry lives on
the app (`field_types(app)`), built on first use from its config. Two apps in one process may know
different types.
"""
from __future__ import annotations

from importlib import import_module
from types import MappingProxyType
from typing import Iterable, Iterator, Mapping

from app.fieldtypes.address import AddressType
from app.fieldtypes.autonumber import AutonumberType
from app.fieldtypes.base import FieldType
from app.fieldtypes.choices import BooleanType, EnumType
from app.fieldtypes.files import FileType
from app.fieldtypes.links import LinkType, ManyType, UserType
from app.fieldtypes.moments import DateType, DatetimeType
from app.fieldtypes.numbers import DecimalType, IntegerType
from app.fieldtypes.text import EmailType, PhoneType, StringType, TextType, UrlType

CONFIG_KEY = "PORTAL_FIELD_TYPES"  # a list of FieldType subclasses (or their dotted paths)
_EXTENSION = "portal_field_types"


class FieldTypes(Mapping):
    """An immutable name -> FieldType table. Built-in names cannot be redefined (their cleaning is the
    importer's per-cell fast path, see app.rules.records.clean_present)."""

    def __init__(self, types: Iterable[FieldType | type | str] = ()) -> None:
        table: dict[str, FieldType] = {}
        for item in types:
            ftype = _instance(item)
            if not ftype.name:
                raise ValueError(f"field type {type(ftype).__name__} has no name")
            if ftype.name in table:
                raise ValueError(f"field type '{ftype.name}' is defined twice")
            table[ftype.name] = ftype
        self._table = MappingProxyType(table)
        self.names = tuple(table)

    def with_types(self, types: Iterable) -> "FieldTypes":
        """A new registry: these types plus the new ones."""
        return FieldTypes([*self._table.values(), *types])

    def __getitem__(self, name: str) -> FieldType:
        return self._table[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)

    def of(self, field) -> FieldType:
        """The type of a field spec; a ValueError naming the type if this registry does not know it."""
        try:
            return self._table[field.type]
        except KeyError:
            raise ValueError(f"unknown field type '{field.type}' of field '{field.name}'") from None

    def dynamic_defaults(self) -> dict[str, tuple[str, ...]]:
        """{"now": ("datetime",), ...}: the types that accept each dynamic default (for the checker)."""
        table: dict[str, tuple[str, ...]] = {}
        for ftype in self._table.values():
            for default in ftype.dynamic_defaults:
                table[default] = table.get(default, ()) + (ftype.name,)
        return table

    def __repr__(self) -> str:
        return f"FieldTypes({', '.join(self.names)})"


def _instance(item) -> FieldType:
    if isinstance(item, str):
        module, _, name = item.rpartition(".")
        item = getattr(import_module(module), name)
    if isinstance(item, type):
        item = item()
    if not isinstance(item, FieldType):
        raise TypeError(f"{item!r} is not a FieldType")
    return item


BUILTIN_TYPES = FieldTypes([
    StringType(), TextType(), IntegerType(), DecimalType(), BooleanType(), DateType(), DatetimeType(),
    EnumType(), EmailType(), PhoneType(), UrlType(), LinkType(), ManyType(), UserType(),
    AutonumberType(), FileType(), AddressType(),
])


def field_types(app=None) -> FieldTypes:
    """The app's registry (the current app's by default; the built-in table outside an app context)."""
    if app is None:
        from flask import current_app, has_app_context

        if not has_app_context():
            return BUILTIN_TYPES
        app = current_app
    registry = app.extensions.get(_EXTENSION)
    if registry is None:  # built once per app; two threads racing build equal registries
        extra = app.config.get(CONFIG_KEY) or ()
        registry = app.extensions[_EXTENSION] = BUILTIN_TYPES.with_types(extra) if extra else BUILTIN_TYPES
    return registry


def current_field_types() -> FieldTypes:
    return field_types()


def type_of(field) -> FieldType:
    """The FieldType of a field spec: the one the checker resolved (FieldSpec.field_type), else a dict lookup for
    built-in types, else the current app's registry (specs made by hand in tests)."""
    ftype = getattr(field, "field_type", None) or BUILTIN_TYPES._table.get(field.type)
    return ftype if ftype is not None else field_types().of(field)


def warm_up_types(spec) -> None:
    """Load what the field types of a portal's schema need (FieldType.warm_up: the address parser's dictionary).
    gunicorn.conf.py calls it in the master with --preload, so the workers share it; elsewhere (the CLI, tests)
    a type loads on first use, and a command that parses no address never pays for the parser."""
    for field_type in {f.kind for entity in spec.entities for f in entity.fields}:
        field_type.warm_up()
