"""The viewer's row scope as a FAB filter, and the trimming of columns, forms and related views to what
the viewer may see; app.generate.endpoint.ViewerScopedEndpoint applies them per request."""
from __future__ import annotations

from flask_appbuilder.models.filters import BaseFilter

from app.portal import current_portal
from app.rules.access import current_viewer


class RowScopeFilter(BaseFilter):
    """FAB base filter limiting a query to the viewer's rows of an entity (the filter value)."""

    name = "Row scope"
    arg_name = "rowscope"

    def apply(self, query, entity_name):
        clause = current_viewer().row_clause(entity_name, current_portal().models)
        return query if clause is None else query.filter(clause)


def row_scope_filters(entity_name: str) -> list:
    return [["id", RowScopeFilter, entity_name]]


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
    """A subclass of a WTForms form with some fields removed (WTForms: set them to None).

    Kept on the view, one per set of removed fields (so per role combination: bounded, and gone with the app).
    """
    unreadable = _unreadable(view)
    if not unreadable:
        return form_class
    return current_portal().form_cache.get_or_make(  # app-owned, bounded (app/portal.py)
        (form_class, unreadable), lambda: type(form_class.__name__, (form_class,), {name: None for name in unreadable}))



def readable_views(view, related_views):
    """Related-record panels only for entities the viewer may read (FAB shows them all). The edit page leaves out
    the record's own lines (`lines:`): its grid edits them, and a second editor beside it invites lost edits."""
    from flask import request

    sm = view.appbuilder.sm
    editing = (request.endpoint or "").endswith(".edit")
    lines = set(view.entity.lines) if editing else set()
    return [v for v in related_views
            if v.entity.name not in lines and sm.has_access("can_read", v.class_permission_name)]
