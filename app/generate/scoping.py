"""Per-request trimming of FAB view/API settings to what the current viewer may see.

FAB computes columns, forms and filters once per view at start-up; these descriptors let
FAB keep doing that while every read during a request gets the viewer's version.
"""
from __future__ import annotations

from flask import has_request_context
from flask_appbuilder.models.filters import BaseFilter

from app.rules.access import current_viewer
from app.portal import current_portal
from app.runtime.request_cache import request_cached


class RowScopeFilter(BaseFilter):
    """FAB base filter limiting a query to the viewer's rows of an entity (the filter value)."""

    name = "Row scope"
    arg_name = "rowscope"

    def apply(self, query, entity_name):
        clause = current_viewer().row_clause(entity_name, current_portal().models)
        return query if clause is None else query.filter(clause)


def row_scope_filters(entity_name: str) -> list:
    return [["id", RowScopeFilter, entity_name]]


class PerViewer:
    """A view attribute that FAB sets in full at start-up and that reads back trimmed for the viewer.

    `trim(view, full_value)` makes the viewer's version; it is cached per request.
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
        return request_cached((id(view), self.name), lambda: self.trim(view, full))

    def __set__(self, view, value) -> None:
        view.__dict__[self.slot] = value


def _unreadable(view) -> frozenset:
    return current_viewer().unreadable(view.entity.name)


def _without(columns, fields: frozenset):
    return [c for c in columns if c.split(".")[0] not in fields] if fields else columns


def without_hidden(view, columns):
    """For displayed columns: masked fields stay (their formatter masks them)."""
    return _without(columns, current_viewer().hidden(view.entity.name))


def without_unreadable(view, columns):
    """For search, sort and forms: neither hidden nor masked fields."""
    return _without(columns, _unreadable(view))


def form_without_fields(view, form_class):
    """A subclass of a WTForms form with some fields removed (WTForms: set them to None)."""
    unreadable = _unreadable(view)
    if not unreadable:
        return form_class
    return current_portal().form_cache.get_or_make(  # app-owned, bounded (app/portal.py)
        (form_class, unreadable), lambda: type(form_class.__name__, (form_class,), {name: None for name in unreadable}))


def viewer_filters(view, filters):
    """A fresh Filters object per request (FAB shares one across threads), on the viewer's search columns."""
    return view.datamodel.get_filters(view.search_columns)


def readable_views(view, related_views):
    """Related-record panels only for entities the viewer may read (FAB shows them all)."""
    sm = view.appbuilder.sm
    return [v for v in related_views if sm.has_access("can_read", v.class_permission_name)]
