"""The Flask-AppBuilder boundary: every use of FAB's private or undocumented API, in this one module.

The rest of the portal calls the named functions and mixins below and never touches `_x` on a FAB
object. `CONTRACT` lists each FAB attribute we rely on with the signature we rely on;
tests/test_fab_contract.py checks them (and the behaviour where it is cheap), so a FAB upgrade
that renames, removes or reshapes one fails there with the attribute's name, not somewhere deep in a page.

Private / undocumented FAB API used (FAB 5.3), and why:

- `BaseModelView._filters` / `ModelRestApi._filters`: the search `Filters` object, built once at start-up and
  shared by every request and thread. `ModelViewBoundary`/`RestApiBoundary` make it a fresh object per request,
  on the viewer's search columns (`request_filters`). `search_filters(view)` reads it.
- `_base_filters`: the row-scope `Filters` FAB builds from `base_filters`; `row_scope(view)`, `scoped_get(view, pk)`.
- `BaseCRUDView._related_views`: the related-record panels FAB's `show`/`edit` read; trimmed per viewer
  (`readable_related_views`).
- `BaseCRUDView._get_add_widget(form, exclude_cols, widgets)`: the only point where the add form exists before it
  is drawn; `prefill_add_form(form)` sets `default: current_user` fields.
- `BaseCRUDView._list(**kwargs)`, `_get_list_widget(filters, ...)` (also called by FAB for related-record panels,
  via `_get_view_widget`) and `_get_search_widget(form, widgets)`: the list page; replaced by `list_page` and
  `list_widgets` (capped count, keyset paging: paged_pages.py).
- `form._id`: FAB sets it on the edit form to the record's pk before validating ("trick to pass unique
  validation"); `edited_pk(form)`.
- `database_error_message` read inside FAB's `except Exception:` around a save, with no exception passed:
  `ModelViewBoundary.save_error_message(error)` gets it (sys.exc_info), so the message can say "someone else
  saved first" (versions.py).
- `ModelRestApi._handle_filters_args(rison_args)` (returns the joined `Filters`), `_handle_order_args`,
  `_handle_columns_args`: the API's parsing of `q`; `rest_filters`, `rest_order`, `rest_columns`.
  `check_request_filters(filters)` is our hook on every parse.
- `post_headless()`, `put_headless(pk)`, `delete_headless(pk)`, `get_headless(pk, **kwargs)`, `info_headless(**kwargs)`:
  what FAB's POST/PUT/DELETE/GET/_info endpoints call after auth and rison; mapped onto `create_record`,
  `update_record`, `delete_record`, `after_get`, `info_payload` + `viewer_info`.
- `set_response_key_mappings(response, func, rison_args, **kwargs)`, `merge_response_func` and the
  `API_*_RIS_KEY` constants, `get_list_schema`: the list/info response metadata (`list_metadata`, `response_metadata`).
- `AppBuilder.update_perms`: the toggle that makes `add_view`/`add_api` sync permissions view by view;
  `perms_sync_suppressed(appbuilder)` turns it off while we register (roles.py syncs in bulk).
- `SecurityManager._has_view_access(user, permission_name, view_name)`: every `has_access` ends there;
  `PermissionCheckHook` routes it to `user_may` (permissions cached per request, runtime/security.py), and its
  `has_access` keeps the signed-in user FAB's `_get_safe_user(user)` settles on for the rest of the request.
- FAB's permission tables (`Permission`, `ViewMenu`, `PermissionView`, `Role`, `assoc_permissionview_role`)
  for the bulk sync (roles.py) and the one-statement permission read (security.py).
- apispec `APISpec._paths` (not FAB, same kind of risk): no public accessor for the paths; `apispec_paths(spec)`.

Still used outside this module, by files owned elsewhere (in `CONTRACT`, so an upgrade is caught; to be routed
here): `SQLAInterface.apply_filters`/`get_inner_filters` (paging.py), `apply_all` (dataio.py),
`filter_converter_class` and `Filters.filters`/`.values` (input_errors.py), `get_values`/`get_keys`
(paged_pages.py), `AppBuilder.baseviews` (runtime/protection.py, ratelimit.py), `sm.limiter` and `sm.auth_view`
(ratelimit.py, views/report_pages.py), `flask_appbuilder.utils.legacy.get_sqla_class` (app/__init__.py).

Public but fragile hooks we override or rely on (checked by the contract test too): `pre_get_list(data)`,
`pre_get(data)`, `add_api_spec(api_spec)`, `list_widget` (a `ListWidget` with our template), `BaseFilter.apply(query,
value)`, `datamodel.get_filters(search_columns)`, `Filters.get_joined_filters(filters)`, FAB assigning
`list_columns`/`show_columns`/`search_columns`/`order_columns`/`add_columns`/`edit_columns`/`add_form`/`edit_form`/
`_filters`/`_related_views` on the instance in `__init__` (what `PerRequest` relies on), `method_permission_name`,
`get_filter_args(filters)`; on the security manager `has_access`, `is_item_public`, `get_user_permissions`,
`get_user_roles`, `get_role_permissions`, `builtin_roles`, `create_limiter`, `auth_user_db`, `get_user_by_id`.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager

from flask import g, has_app_context, has_request_context
from flask_login import current_user, user_logged_in, user_logged_out
from flask_appbuilder import ModelView
from flask_appbuilder.api import BaseApi, ModelRestApi, get_list_schema, merge_response_func
from flask_appbuilder.baseviews import BaseCRUDView, BaseModelView
from flask_appbuilder.base import AppBuilder
from flask_appbuilder.const import (
    API_DESCRIPTION_COLUMNS_RIS_KEY,
    API_LABEL_COLUMNS_RIS_KEY,
    API_LIST_COLUMNS_RIS_KEY,
    API_LIST_TITLE_RIS_KEY,
    API_ORDER_COLUMNS_RIS_KEY,
    API_SELECT_COLUMNS_RIS_KEY,
    API_URI_RIS_KEY,
)
from flask_appbuilder.models.filters import BaseFilter, Filters
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.manager import BaseSecurityManager
from flask_appbuilder.security.sqla.manager import SecurityManager as SqlaSecurityManager
from flask_appbuilder.security.sqla.models import Permission, PermissionView, Role, ViewMenu, assoc_permissionview_role
from flask_appbuilder.urltools import get_filter_args
from flask_appbuilder.utils import legacy

from app.runtime.request_cache import request_cached

__all__ = [
    "RISON_ARG", "SELECT_COLUMNS_KEY", "LIST_ARGS_SCHEMA_BASE", "Permission", "PermissionView", "Role", "ViewMenu",
    "assoc_permissionview_role", "PerRequest", "ModelViewBoundary", "RestApiBoundary", "PermissionCheckHook",
    "search_filters", "filters_from_url", "row_scope", "scoped_get", "joined_filters", "search_page", "edited_pk",
    "exception_being_handled", "rest_filters", "rest_order", "rest_columns", "response_metadata", "info_payload",
    "list_metadata", "perms_sync_suppressed", "apispec_paths",
]

RISON_ARG = API_URI_RIS_KEY  # `q`
SELECT_COLUMNS_KEY = API_SELECT_COLUMNS_RIS_KEY
LIST_ARGS_SCHEMA_BASE = get_list_schema  # FAB's JSON schema of the list arguments (copied, then extended)


class PerRequest:
    """A view attribute that FAB sets in full in `__init__` and that reads back trimmed for the current request.

    `trim(view, full_value)` makes the request's version; it is cached per request. Outside a request (FAB's
    start-up) the full value is read, so FAB builds its forms, schemas and filters from everything.
    """

    def __init__(self, trim) -> None:
        self.trim = trim

    def __set_name__(self, owner, name) -> None:
        self.name, self.slot = name, f"full_{name.lstrip('_')}"  # e.g. full_list_columns

    def __get__(self, view, owner=None):
        if view is None:
            return self
        full = view.__dict__.get(self.slot, getattr(owner or type(view), self.slot, None))
        if not has_request_context() or full is None:
            return full
        return request_cached((id(view), self.name), lambda: self.trim(view, full))

    def __set__(self, view, value) -> None:
        view.__dict__[self.slot] = value


# -- ModelView (pages) ----------------------------------------------------------------------------

class ModelViewBoundary:
    """FAB ModelView private hooks mapped onto named methods (put before ModelView in the bases).

    The class using it provides `request_filters()`, `readable_related_views(full)`, `prefill_add_form(form)`,
    `list_page(**kwargs)` and `list_widgets(filters, ...)`, and may override `save_error_message(error)`.
    """

    # FAB's search filters are one object shared by all requests: a fresh one per request
    _filters = PerRequest(lambda view, full: view.request_filters())
    # the related-record panels FAB's show/edit draw
    _related_views = PerRequest(lambda view, full: view.readable_related_views(full))

    @property
    def database_error_message(self):
        """FAB flashes this when a save raises, inside its `except`, without the error: `save_error_message(error)`."""
        return self.save_error_message(exception_being_handled())

    def save_error_message(self, error: BaseException | None):
        return BaseCRUDView.database_error_message

    def _get_add_widget(self, form, exclude_cols=None, widgets=None):
        self.prefill_add_form(form)
        return super()._get_add_widget(form, exclude_cols=exclude_cols, widgets=widgets)

    def _list(self, **kwargs):
        return self.list_page(**kwargs)

    def _get_list_widget(self, filters, actions=None, order_column="", order_direction="", page=None,
                         page_size=None, widgets=None, **kwargs):
        """FAB calls this for the list and, with a plain page number, for each related-record panel."""
        return self.list_widgets(filters, actions=actions, order_column=order_column,
                                 order_direction=order_direction, page=page, page_size=page_size,
                                 widgets=widgets, **kwargs)


def search_filters(view) -> Filters:
    """The view's search filters for this request (FAB's `_filters`)."""
    return view._filters


def filters_from_url(view) -> Filters:
    """The view's search filters, filled from the URL's `_flt_*` arguments as FAB's list does."""
    get_filter_args(view._filters)
    return view._filters


def row_scope(view) -> Filters:
    """The filters FAB built from the view's `base_filters` (the viewer's row scope)."""
    return view._base_filters


def joined_filters(view, filters: Filters) -> Filters:
    """Search filters plus the row scope: what a list or an export may show."""
    return filters.get_joined_filters(view._base_filters)


def scoped_get(view, pk):
    """The record `pk` if it is inside the view's row scope, else None (as FAB's own show/edit do)."""
    return view.datamodel.get(pk, view._base_filters)


def search_page(view, form, widgets: dict):
    """FAB's search widget added to `widgets` and the list page rendered from them."""
    return view._get_search_widget(form=form, widgets=widgets)


def edited_pk(form):
    """The pk of the record an edit form saves (FAB sets `form._id` before validating); None on add."""
    return getattr(form, "_id", None)


def exception_being_handled() -> BaseException | None:
    """The error FAB is handling when it reads `database_error_message` (it passes none to the hook)."""
    return sys.exc_info()[1]


# -- ModelRestApi -----------------------------------------------------------------------------------

class RestApiBoundary:
    """FAB ModelRestApi undocumented override points mapped onto named methods (put before ModelRestApi).

    The class using it provides `request_filters()`, `check_request_filters(filters)`, `create_record()`,
    `update_record(pk)`, `delete_record(pk)`, `after_get(response)` and `viewer_info(payload)`.
    """

    _filters = PerRequest(lambda api, full: api.request_filters())

    def _handle_filters_args(self, rison_args):
        filters = super()._handle_filters_args(rison_args)
        self.check_request_filters(filters)
        return filters

    def post_headless(self):
        return self.create_record()

    def put_headless(self, pk):
        return self.update_record(pk)

    def delete_headless(self, pk):
        return self.delete_record(pk)

    def get_headless(self, pk, **kwargs):
        return self.after_get(super().get_headless(pk, **kwargs))

    def info_headless(self, **kwargs):
        """FAB's `/_info` payload, then `viewer_info` (FAB 5.3 never calls `pre_info`)."""
        payload = info_payload(self, kwargs.get("rison", {}))
        self.viewer_info(payload)
        return self.response(200, **payload)


def rest_filters(api, rison_args: dict) -> Filters:
    """The search filters of `q` joined with the row scope (may raise FABException on a bad filter)."""
    return api._handle_filters_args(rison_args)


def rest_order(api, rison_args: dict) -> tuple[str, str]:
    return api._handle_order_args(rison_args)


def rest_columns(api, rison_args: dict) -> tuple[list, list]:
    """(columns to select, columns to answer with) of a list request's `select_columns`."""
    return api._handle_columns_args(rison_args, api.list_select_columns, api.list_columns)


def response_metadata(api, response: dict, endpoint, rison_args: dict, **kwargs) -> None:
    """Fill `response` with the metadata keys (labels, columns, ...) declared on `endpoint` by `list_metadata`."""
    api.set_response_key_mappings(response, endpoint, rison_args, **kwargs)


def info_payload(api, rison_args: dict) -> dict:
    payload: dict = {}
    api.set_response_key_mappings(payload, api.info, rison_args, **rison_args)
    return payload


def list_metadata(endpoint):
    """The metadata keys FAB's own list endpoint answers with (and lets `q.keys` select)."""
    for func, key in ((ModelRestApi.merge_list_title, API_LIST_TITLE_RIS_KEY),
                      (ModelRestApi.merge_list_columns, API_LIST_COLUMNS_RIS_KEY),
                      (ModelRestApi.merge_description_columns, API_DESCRIPTION_COLUMNS_RIS_KEY),
                      (ModelRestApi.merge_list_label_columns, API_LABEL_COLUMNS_RIS_KEY),
                      (ModelRestApi.merge_order_columns, API_ORDER_COLUMNS_RIS_KEY)):
        endpoint = merge_response_func(func, key)(endpoint)
    return endpoint


# -- security and start-up ----------------------------------------------------------------------------

class PermissionCheckHook:
    """Every FAB `has_access` ends in `_has_view_access`; routed to `user_may(user, permission, view_menu)`."""

    def _has_view_access(self, user, permission_name: str, view_name: str) -> bool:
        return self.user_may(user, permission_name, view_name)

    def has_access(self, permission_name: str, view_name: str) -> bool:
        """FAB's `has_access` works out who is asking on every call (flask-login's proxy, an ORM detached-instance
        check): ~10 µs, and a page's navbar asks ~120 times. The signed-in, active user it settles on is kept in
        `g` for the rest of the request (forgotten when someone signs in or out during it); every other case (an
        API key, a JWT, nobody) goes through FAB's own each time, in FAB's order."""
        user = self.signed_in_user()
        if user is _REFUSED:
            return False  # what FAB answers for a signed-in user it cannot resolve or who is inactive
        if user is None:
            return super().has_access(permission_name, view_name)
        return self._has_view_access(user, permission_name, view_name)

    def signed_in_user(self):
        """The active user signed in to this session (kept for the request), None when nobody is or the request
        authenticates otherwise (API key, JWT: FAB's own path), `_REFUSED` for a user FAB would refuse."""
        user = g.get(_ASKING)
        if user is None:
            if getattr(g, "_api_key_user", False) or not current_user.is_authenticated:
                return None
            user = self._get_safe_user(g.user)
            if user is None or not user.is_active:
                return _REFUSED
            setattr(g, _ASKING, user)
        return user


_REFUSED = object()


_ASKING = "_portal_access_user"


def _forget_asking_user(*args, **kwargs) -> None:
    if has_app_context():
        g.pop(_ASKING, None)


user_logged_in.connect(_forget_asking_user)
user_logged_out.connect(_forget_asking_user)


@contextmanager
def perms_sync_suppressed(appbuilder):
    """While registering views, keep FAB from syncing permissions view by view (several queries each).

    Yields whether FAB would have synced (then the caller syncs in bulk, after the block).
    """
    wanted, appbuilder.update_perms = appbuilder.update_perms, False
    try:
        yield wanted
    finally:
        appbuilder.update_perms = wanted


def apispec_paths(spec) -> dict:
    """{path: {method: operation}} of an apispec document (apispec keeps them in `_paths`; no public accessor)."""
    return spec._paths


# -- the contract: (owner, attribute, parameters we pass or receive, or None for a plain attribute) --------

CONTRACT = (
    (BaseModelView, "_filters", None),
    (BaseModelView, "_base_filters", None),
    (ModelRestApi, "_filters", None),
    (ModelRestApi, "_base_filters", None),
    (BaseCRUDView, "_related_views", None),
    (BaseCRUDView, "database_error_message", None),
    (BaseCRUDView, "_get_add_widget", ("self", "form", "exclude_cols", "widgets")),
    (BaseCRUDView, "_list", ("self", "kwargs")),
    (BaseCRUDView, "_get_list_widget", ("self", "filters", "actions", "order_column", "order_direction", "page",
                                        "page_size", "widgets")),
    (BaseCRUDView, "_get_view_widget", ("self", "kwargs")),
    (BaseModelView, "_get_search_widget", ("self", "form", "exclude_cols", "widgets")),
    (BaseCRUDView, "list_widget", None),
    (ModelView, "show", ("self", "pk")),
    (ModelRestApi, "_handle_filters_args", ("self", "rison_args")),
    (ModelRestApi, "_handle_order_args", ("self", "rison_args")),
    (ModelRestApi, "_handle_columns_args", ("self", "args", "default_select_columns", "default_response_columns")),
    (ModelRestApi, "post_headless", ("self",)),
    (ModelRestApi, "put_headless", ("self", "pk")),
    (ModelRestApi, "delete_headless", ("self", "pk")),
    (ModelRestApi, "get_headless", ("self", "pk", "kwargs")),
    (ModelRestApi, "info_headless", ("self", "kwargs")),
    (ModelRestApi, "info", None),
    (ModelRestApi, "pre_get_list", ("self", "data")),
    (ModelRestApi, "pre_get", ("self", "data")),
    (ModelRestApi, "list_select_columns", None),
    (ModelRestApi, "list_outer_default_load", None),
    (ModelRestApi, "merge_list_title", None),
    (ModelRestApi, "merge_list_columns", None),
    (ModelRestApi, "merge_description_columns", None),
    (ModelRestApi, "merge_list_label_columns", None),
    (ModelRestApi, "merge_order_columns", None),
    (BaseApi, "set_response_key_mappings", ("self", "response", "func", "rison_args", "kwargs")),
    (BaseApi, "add_api_spec", ("self", "api_spec")),
    (BaseFilter, "apply", ("self", "query", "value")),
    (SQLAInterface, "get_filters", ("self", "search_columns", "search_filters")),
    (SQLAInterface, "get", ("self", "id", "filters", "select_columns", "outer_default_load")),
    (Filters, "get_joined_filters", ("self", "filters")),
    (AppBuilder, "add_view", None),
    (AppBuilder, "add_api", None),
    (BaseSecurityManager, "_has_view_access", ("self", "user", "permission_name", "view_name")),
    (BaseSecurityManager, "_get_safe_user", ("self", "user")),  # PermissionCheckHook.has_access
    # security manager hooks runtime/security.py overrides or calls
    (BaseSecurityManager, "has_access", ("self", "permission_name", "view_name")),
    (BaseSecurityManager, "is_item_public", ("self", "permission_name", "view_name")),
    (BaseSecurityManager, "get_user_permissions", ("self", "user")),
    (BaseSecurityManager, "get_user_roles", ("self", "user")),
    (BaseSecurityManager, "get_role_permissions", ("self", "role")),
    (BaseSecurityManager, "builtin_roles", None),
    (BaseSecurityManager, "create_limiter", ("self", "app")),
    (BaseSecurityManager, "auth_user_db", ("self", "username", "password")),
    (SqlaSecurityManager, "get_user_by_id", ("self", "pk")),
    (Permission, "name", None),
    (ViewMenu, "name", None),
    (PermissionView, "permission", None),
    (PermissionView, "view_menu", None),
    (Role, "name", None),
    (Role, "permissions", None),
    # used by modules that do not go through this one yet (owned by others; to be routed here):
    # paging.py (PagedInterface subclasses SQLAInterface), dataio.py, input_errors.py, paged_pages.py, app/__init__.py
    (SQLAInterface, "apply_filters", ("self", "query", "filters")),
    (SQLAInterface, "get_inner_filters", ("self", "filters")),
    (SQLAInterface, "apply_all", ("self", "query", "filters", "order_column", "order_direction")),
    (SQLAInterface, "filter_converter_class", None),
    (SQLAInterface, "get_values", ("self", "lst", "list_columns")),
    (SQLAInterface, "get_keys", ("self", "lst")),
    (legacy, "get_sqla_class", ()),
)
# attributes of FAB instances (set in __init__, not on the class): checked on a built app by the test
INSTANCE_CONTRACT = (
    (AppBuilder, "update_perms"),
    (AppBuilder, "baseviews"),  # runtime/protection.py, runtime/ratelimit.py
    (BaseSecurityManager, "limiter"),  # runtime/ratelimit.py
    (BaseSecurityManager, "auth_view"),  # runtime/ratelimit.py, views/report_pages.py
    (Filters, "filters"),  # input_errors.py: the parsed filters and their values, rewritten in place
    (Filters, "values"),
)
TABLE_CONTRACT = (
    (assoc_permissionview_role, ("permission_view_id", "role_id")),
)
