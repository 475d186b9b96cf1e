"""Per-request trimming of FAB view/API settings to what the current viewer may see.

FAB computes columns, forms and filters once per view at start-up; these descriptors let
FAB keep doing that while every read during a request gets the viewer's version.
"""
from __future__ import annotations

from flask import current_app, has_request_context, request
from flask_appbuilder.models.filters import BaseFilter

from ..access import current_viewer


class RowScopeFilter(BaseFilter):
    """FAB base filter limiting a query to the viewer's rows of an entity (the filter value)."""

    name = "Row scope"
    arg_name = "rowscope"

    def apply(self, query, entity_name):
        clause = current_viewer().row_clause(entity_name, current_app.extensions["portal_models"])
        return query if clause is None else query.filter(clause)


def row_scope_filters(entity_name: str) -> list:
    return [["id", RowScopeFilter, entity_name]]


def request_cached(key, make):
    if not has_request_context():
        return make()
    cache = request.environ.setdefault("portal.cache", {})
    if key not in cache:
        cache[key] = make()
    return cache[key]


class PerViewer:
    """A view attribute that FAB sets in full at start-up and that reads back trimmed for the viewer.

    `trim(view, full_value, unreadable_fields)` makes the viewer's version; it is cached per request.
    """

    def __init__(self, trim) -> None:
        self.trim = trim

    def __set_name__(self, owner, name) -> None:
        self.name, self.slot = name, f"_full_{name}"

    def __get__(self, view, owner=None):
        if view is None:
            return self
        full = view.__dict__.get(self.slot, getattr(owner or type(view), self.slot, None))
        if not has_request_context() or full is None:
            return full
        unreadable = current_viewer().unreadable(view.entity.name)
        if not unreadable:
            return full
        return request_cached((id(view), self.name), lambda: self.trim(view, full, unreadable))

    def __set__(self, view, value) -> None:
        view.__dict__[self.slot] = value


def without_fields(view, columns, unreadable):
    return [c for c in columns if c.split(".")[0] not in unreadable]


_form_cache: dict = {}


def form_without_fields(view, form_class, unreadable):
    """A subclass of a WTForms form with some fields removed (WTForms: set them to None)."""
    key = (form_class, frozenset(unreadable))
    if key not in _form_cache:
        _form_cache[key] = type(form_class.__name__, (form_class,), {name: None for name in unreadable})
    return _form_cache[key]


def viewer_filters(view, filters, unreadable):
    """A fresh Filters object per request, limited to the viewer's search columns."""
    return view.datamodel.get_filters(view.search_columns)
