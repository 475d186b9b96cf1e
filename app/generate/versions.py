"""Optimistic locking: a save based on an older `row_version` of a record is refused, nothing is overwritten.

Every entity model maps `row_version` as SQLAlchemy's `version_id_col` (see models.py): each ORM UPDATE
or DELETE adds `AND row_version = <loaded>` to its WHERE and raises StaleDataError when another save got
there first, so of two concurrent saves exactly one wins. On top of that the client says which version it
edited — the API's `If-Match: "<version>"` (or `row_version` in the body), the edit form's hidden field —
and it is compared with the record re-read under a row lock (PostgreSQL `FOR UPDATE`; SQLite writes are
serialised anyway and the WHERE above still guards them). A mismatch gets 409 (API) or the form back with
the user's input and a flash (pages). No If-Match, `If-Match: *`, or no version in the form: last save wins.
"""
from __future__ import annotations

import datetime as dt
import json

from apispec import yaml_utils
from flask import flash, request, url_for
from flask_appbuilder.api import ModelRestApi
from flask_babel import gettext
from markupsafe import Markup
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm.exc import StaleDataError
from wtforms import HiddenField
from wtforms.validators import StopValidation

from app import fab
from app.schema.spec import VERSION_COLUMN

NO_CHECK = None  # the client named no version: today's last-save-wins


class StaleVersion(ValueError):
    """A version sent back by a client that is not a whole number: it can never match."""


def stale_message(item) -> str:
    """'Changed by <user> at <time> — reload and try again.' about the record as it is now."""
    user = getattr(item, "changed_by", None)
    when = getattr(item, "changed_on", None)
    return gettext("Changed by %(user)s at %(time)s — reload and try again.",
                   user=user.username if user is not None else gettext("someone else"),
                   time=when.strftime("%Y-%m-%d %H:%M:%S") if isinstance(when, dt.datetime) else "?")


def is_stale(exc: BaseException) -> bool:
    """The error (or the one it wraps, e.g. FAB's DatabaseException) is a lost race on row_version."""
    while exc is not None:
        if isinstance(exc, StaleDataError):
            return True
        exc = exc.__cause__
    return False


def reread_locked(session, item) -> bool:
    """Reload the record, holding its row until the transaction ends; False when it was deleted meanwhile."""
    try:
        session.refresh(item, with_for_update=True)
    except InvalidRequestError:
        return False
    return True


def _version_number(value) -> int:
    if isinstance(value, bool):
        raise StaleVersion(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdecimal():
        return int(value.strip())
    raise StaleVersion(value)


# -- REST API ---------------------------------------------------------------------------------

def expected_versions(payload: dict | None = None):
    """Versions the caller says it edited: If-Match tags, else `row_version` in the body (popped); NO_CHECK if none."""
    body_version = payload.pop(VERSION_COLUMN, None) if payload is not None else None
    if_match = request.if_match
    if if_match.star_tag:
        return NO_CHECK
    tags = if_match.as_set(include_weak=True)
    if tags:
        return {_tag_version(tag) for tag in tags}
    if body_version is not None:
        return {_tag_version(body_version)}
    return NO_CHECK


def _tag_version(tag):
    if not isinstance(tag, (int, str)) or isinstance(tag, bool):  # a list or object in the body: kept out of the set
        return "not-a-version"
    try:
        return _version_number(tag)
    except StaleVersion:
        return tag  # compared with an integer: never equal, so the save is refused as stale


def refuse_if_stale(api, item, payload: dict | None = None):
    """None when the save may go on; else the 409 (or 404 if the record went away) to send."""
    expected = expected_versions(payload)
    if expected is NO_CHECK:
        return None
    session = api.datamodel.session
    if not reread_locked(session, item):
        return api.response_404()
    if getattr(item, VERSION_COLUMN) in expected:
        return None
    return conflict(api, item)


def conflict(api, item):
    """409 with the message and the record as it is now, as the caller may see it (hidden fields dropped)."""
    session = api.datamodel.session
    session.rollback()
    current = session.get(type(item), item.id)
    if current is None:
        return api.response_404()
    body = api.viewer_record(api.show_model_schema.dump(current))
    return with_etag(api.response(409, message=stale_message(current), current=body), current)


def with_etag(response, item=None):
    """`ETag: "<row_version>"` on a response carrying one record (from the item, or the JSON `result`)."""
    if item is not None:
        version = getattr(item, VERSION_COLUMN, None)
    elif response.status_code == 200 and isinstance(response.get_json(silent=True), dict):
        version = (response.get_json().get("result") or {}).get(VERSION_COLUMN)
    else:
        version = None
    if isinstance(version, int):
        response.set_etag(str(version))
    return response


_IF_MATCH = {
    "in": "header", "name": "If-Match", "required": False, "schema": {"type": "string"},
    "description": 'The ETag ("<row_version>") of the record as read; stale: 409, nothing written. '
                   "Omitted or *: no check. PUT also accepts row_version in the body.",
}
_ETAG = {"ETag": {"description": 'The record\'s row_version, quoted: "3"', "schema": {"type": "string"}}}
_CONFLICT = {
    "description": "The record was changed since the version sent (If-Match / row_version); nothing was written",
    "headers": _ETAG,
    "content": {"application/json": {"schema": {"type": "object", "properties": {
        "message": {"type": "string", "example": "Changed by ada at 2026-01-05 10:00:00 — reload and try again."},
        "current": {"type": "object", "description": "the record as it is now, as the caller may see it"},
    }}}},
}


def openapi_spec_methods(api_class_name: str) -> dict:
    """FAB's get/put/delete operation docs with ETag, If-Match and 409 added (FAB merges them shallowly)."""
    specs = {}
    for method in ("get", "put", "delete"):
        doc = yaml_utils.load_operations_from_docstring(getattr(ModelRestApi, method).__doc__)
        # FAB resolves this placeholder in docstrings only, not in these overrides
        text = json.dumps(doc[method]).replace("{{self.__class__.__name__}}", api_class_name)
        operation = json.loads(text)
        responses = operation.setdefault("responses", {})
        if method == "get":
            responses["200"]["headers"] = _ETAG
        else:
            operation["parameters"] = operation.get("parameters", []) + [_IF_MATCH]
            responses["409"] = _CONFLICT
            if method == "put":
                responses["200"]["headers"] = _ETAG
        specs[method] = {method: operation}
    return specs


# -- pages --------------------------------------------------------------------------------------

class VersionField(HiddenField):
    """The edit form's hidden row_version: read from the record, checked on save, never written to it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.type = "HiddenField"  # FAB's form template renders hidden fields once, without a label row

    def populate_obj(self, obj, name) -> None:
        pass


class VersionRule:
    """Validator of VersionField: the record must still be at the version the form was opened with."""

    def __init__(self, view_class) -> None:
        self.view_class = view_class

    def __call__(self, form, field) -> None:
        pk = fab.edited_pk(form)
        if pk is None or field.data in (None, ""):
            return  # no version sent: last save wins, as before
        view = self.view_class
        session = view.datamodel.session
        item = session.get(view.datamodel.obj, pk)
        if item is None or not reread_locked(session, item):
            return  # deleted meanwhile: the save itself reports it
        try:
            fresh = _version_number(field.data) == getattr(item, VERSION_COLUMN)
        except StaleVersion:
            fresh = False
        if not fresh:
            flash(stale_flash(view, item), "danger")
            raise StopValidation(stale_message(item))


def stale_flash(view_class, item) -> Markup:
    """The message with a link that reloads the record; both parts escaped (the message holds a user name)."""
    link = url_for(f"{view_class.__name__}.edit", pk=item.id)
    return Markup('{} <a href="{}">{}</a>').format(stale_message(item), link, gettext("Reload"))


def lost_race_flash(view, error: BaseException | None) -> Markup | None:
    """Called while FAB handles a failed save (`error`): the stale flash if the UPDATE lost the race on row_version."""
    if not is_stale(error):
        return None
    session = view.datamodel.session
    session.rollback()
    try:
        item = session.get(view.datamodel.obj, int(request.view_args.get("pk")))
    except (TypeError, ValueError):
        return None
    return stale_flash(type(view), item) if item is not None else None
