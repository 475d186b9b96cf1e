"""Merging duplicates on the API and on pages (app/data/merge.py does the merge).

- API (`MergeApiMixin`): `POST /api/v1/<entity>/<survivor_id>/merge` with `{"loser": id, "fields": {"phone":
  "loser", ...}}`; fields not named keep the survivor's value. 400 a bad body (unknown or hidden field, a computed
  field, a choice other than "survivor"/"loser", loser == survivor), 403 without update and delete permission, 404 a
  record outside the caller's row scope ("Not found", whichever it is), 409 a locked record, a stale If-Match or a
  unique conflict of the records moving over, 422 a rule the chosen values break; 200 the merged record.
- Pages (`MergeViewMixin`): `/<entity>/merge/<survivor_id>?loser=<id>` (GET: both records side by side, a radio per
  field whose values differ, a link that swaps the two, a confirmation; POST: merge), the picker's lookup
  `/<entity>/merge_lookup/<pk>`, and the detail page's "Merge…" panel (a record picker for the loser).

Both load the records with `fab.scoped_get`: a record outside the row scope is a 404, never a 403. Hidden fields are
neither shown nor choosable; masked ones are shown masked.
"""
from __future__ import annotations

import re

from flask import abort, current_app, flash, jsonify, redirect, request, url_for
from flask_appbuilder import expose, has_access
from flask_appbuilder.api import expose as api_expose, protect, safe
from flask_appbuilder.exceptions import DatabaseException
from flask_babel import lazy_gettext as _l
from sqlalchemy import String, cast
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm.exc import ObjectDeletedError

from app import fab
from app.data.merge import SURVIVOR, MergeRefused, check_choices, choosable_fields, merge, merge_refusal, record_title
from app.generate import versions
from app.generate.permissions import DELETE, UPDATE, permission
from app.generate.show_panels import show_panel
from app.i18n import current_locale, lazy
from app.rules.access import current_viewer, mask_value

ID = re.compile(r"[0-9]{1,18}")
BODY_KEYS = {"loser", "fields"}


def may_merge(class_permission_name: str) -> bool:
    """Merging edits the survivor and deletes the loser: update and delete permission on the entity."""
    sm = current_app.appbuilder.sm
    return sm.has_access(permission(UPDATE), class_permission_name) and sm.has_access(permission(DELETE),
                                                                                     class_permission_name)


def _not_found():
    return MergeRefused(404, _l("Not found."))


def _record_id(raw):
    """An id given as a JSON number or decimal text; None for anything else."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw if 0 < raw < 2 ** 63 else None
    if isinstance(raw, str) and ID.fullmatch(raw.strip()):
        return int(raw.strip())
    return None


def _load_pair(endpoint, survivor_id: int, loser_raw):
    """(survivor, loser) inside the caller's row scope; MergeRefused 400/403/404."""
    if not may_merge(endpoint.class_permission_name):
        raise MergeRefused(403, _l("Your role may not merge %(entity)s records (it needs update and delete).",
                                   entity=lazy(endpoint.entity.label)))
    loser_id = _record_id(loser_raw)
    if loser_id is None:
        raise MergeRefused(400, _l("'loser' must be the id of a record."))
    if loser_id == survivor_id:
        raise MergeRefused(400, _l("A record cannot be merged into itself."))
    survivor = fab.scoped_get(endpoint, survivor_id)
    loser = fab.scoped_get(endpoint, loser_id) if survivor is not None else None
    if survivor is None or loser is None:
        raise _not_found()
    return survivor, loser


def _run_merge(endpoint, survivor, loser, choices: dict) -> dict:
    """The merge, committed; MergeRefused (rolled back) on any refusal, a lost race or a database error."""
    session = endpoint.datamodel.session
    try:
        detail = merge(endpoint.writer(), survivor, loser, choices)
        session.commit()
        return detail
    except MergeRefused:
        session.rollback()
        raise
    except ObjectDeletedError:  # the other record went meanwhile (merged into a third one, say)
        session.rollback()
        raise MergeRefused(404, _l("Not found.")) from None
    except (DatabaseException, SQLAlchemyError) as exc:
        session.rollback()
        if versions.is_stale(exc):
            raise MergeRefused(409, _l("One of the records was changed meanwhile; load them again and retry.")) from None
        reason = getattr(exc, "orig", None) or exc
        raise MergeRefused(409, _l("The database refused the change: %(reason)s", reason=reason)) from None


# -- API ---------------------------------------------------------------------------------------------------------

class MergeApiMixin:
    """On EntityApi: POST /<survivor_id>/merge."""

    @api_expose("/<int:pk>/merge", methods=["POST"])
    @protect()
    @safe
    def merge_records(self, pk):
        """Merge another record (the loser) into this one (the survivor)
        ---
        post:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}, description: the survivor}
          - {in: header, name: If-Match, required: false, schema: {type: string}, description: 'The survivor''s ETag as read; stale: 409'}
          requestBody:
            content:
              application/json:
                schema:
                  type: object
                  required: [loser]
                  properties:
                    loser: {type: integer, description: the record merged into the survivor and deleted}
                    fields: {type: object, additionalProperties: {type: string, enum: [survivor, loser]}, description: 'per field, whose value survives; fields not named keep the survivor''s'}
          responses:
            200: {description: 'merged: {"result": the survivor as GET returns it, "id", "merged": {"id", "title", "fields"}}'}
            400: {description: 'a bad body: {"message", "errors": {field: [..]}}'}
            403: {description: the caller's role may not update and delete records of this entity}
            404: {description: either record is not in the caller's scope}
            409: {description: a locked record, a stale If-Match, or records moving over would break a unique rule}
            422: {description: 'the chosen values break a rule: {"message", "errors": {field: [..]}}'}
        """
        payload, error = self._json_object()
        if error:
            return error
        try:
            unknown = sorted(set(payload) - BODY_KEYS)
            if unknown:
                raise MergeRefused(400, _l("Unknown keys: %(keys)s.", keys=", ".join(map(str, unknown))))
            survivor, loser = _load_pair(self, pk, payload.get("loser"))
            choices = check_choices(self.entity, current_viewer(), payload.get("fields"))
            stale = versions.refuse_if_stale(self, survivor)
            if stale:
                return stale
            title = record_title(self.entity, loser, current_viewer())  # hidden or masked: "#id"
            detail = _run_merge(self, survivor, loser, choices)
        except MergeRefused as refused:
            body = {"message": refused.message}
            if refused.errors:
                body["errors"] = refused.errors
            return self.response(refused.status, **body)
        item = self.datamodel.session.get(self.datamodel.obj, pk)
        merged = {**detail, "title": title}
        body = {"result": self.viewer_record(self.show_model_schema.dump(item)), "id": item.id, "merged": merged}
        return versions.with_etag(self.response(200, **body), item)


# -- pages -------------------------------------------------------------------------------------------------------

def _shown(f, value, masked: bool) -> str:
    """A value as text for the choice page (escaped by the template)."""
    if masked:
        return mask_value(value)
    if value is None or value == "" or value == []:
        return ""
    if f.kind.multiple:
        return ", ".join(str(v) for v in value)
    if f.kind.name == "file":
        from app.generate.attachments import _names  # the file's name (memoised per request)

        row = _names([value]).get(int(value))
        return row.name if row is not None else f"#{value}"
    if f.kind.truth_value:
        return str(_l("Yes") if value else _l("No"))
    label = f.choice_label(value) if f.choices else None
    if label is not None:
        return label.get(current_locale())
    if hasattr(value, "isoformat"):
        return value.isoformat(sep=" ") if hasattr(value, "hour") else value.isoformat()
    return str(value)


def _comparable(f, value):
    if f.kind.multiple:
        return sorted(v.id for v in value or [])
    return getattr(value, "id", value)


def choice_rows(entity, viewer, survivor, loser) -> list[dict]:
    """One row per field the user may choose: label, both values as shown, whether they differ."""
    masked = viewer.masked(entity.name)
    rows = []
    for f in choosable_fields(entity, viewer):
        ours, theirs = getattr(survivor, f.name), getattr(loser, f.name)
        rows.append({"name": f.name, "label": f.label.get(current_locale()), "masked": f.name in masked,
                     "survivor": _shown(f, ours, f.name in masked), "loser": _shown(f, theirs, f.name in masked),
                     "differ": _comparable(f, ours) != _comparable(f, theirs)})
    return rows


class MergeViewMixin:
    """On EntityView: the merge page, its picker's lookup."""

    @expose("/merge/<int:pk>", methods=["GET", "POST"])
    @has_access
    def merge_page(self, pk):
        entity, viewer = self.entity, current_viewer()
        try:
            survivor, loser = _load_pair(self, pk, request.values.get("loser", ""))
        except MergeRefused as refused:
            if refused.status == 400 and fab.scoped_get(self, pk) is not None:
                flash(refused.message, "danger")
                return redirect(url_for(f"{self.endpoint}.show", pk=pk))
            abort(refused.status)
        show_url = url_for(f"{self.endpoint}.show", pk=pk)
        if request.method == "POST":
            try:
                if request.form.get("confirm") != "1":
                    raise MergeRefused(400, _l("Tick the box to confirm that the other record will be deleted."))
                wanted = {f.name: request.form.get(f"field.{f.name}", SURVIVOR)
                          for f in choosable_fields(entity, viewer) if f"field.{f.name}" in request.form}
                choices = check_choices(entity, viewer, wanted)
                title = record_title(entity, loser, viewer)
                detail = _run_merge(self, survivor, loser, choices)
            except MergeRefused as refused:
                flash(refused.message, "danger")
                self._flash_merge_errors(refused.errors)
                return redirect(url_for(f"{self.endpoint}.merge_page", pk=pk, loser=loser.id))
            flash(str(_l("Merged %(title)s (#%(id)s) into this record.", title=title, id=detail["id"])),
                  "success")
            return redirect(show_url)
        refusal = merge_refusal(entity, survivor, loser)
        if refusal is not None:
            flash(refusal.message, "danger")
        title = f"{_l('Merge')} — {lazy(entity.label)}"
        return self.render_template(
            "portal/merge.html", title=title, refusal=refusal, rows=choice_rows(entity, viewer, survivor, loser),
            survivor={"id": survivor.id, "title": record_title(entity, survivor, viewer), "url": show_url},
            loser={"id": loser.id, "title": record_title(entity, loser, viewer),
                   "url": url_for(f"{self.endpoint}.show", pk=loser.id)},
            swap_url=url_for(f"{self.endpoint}.merge_page", pk=loser.id, loser=survivor.id),
            form_action=url_for(f"{self.endpoint}.merge_page", pk=pk, loser=loser.id))

    @expose("/merge_lookup/<int:pk>")
    @has_access
    def merge_lookup(self, pk):
        """The detail page's picker: records of this entity (in scope, not this one) by title."""
        from app.generate.lookups import MAX_PAGE, MAX_QUERY_LENGTH, Target, search_titles

        page, text = request.args.get("page", "1"), request.args.get("q", "")
        if not re.fullmatch(r"[0-9]{1,4}", page) or not 1 <= int(page) <= MAX_PAGE:
            return jsonify(message=str(_l("page must be a whole number from 1 to %(max)d.", max=MAX_PAGE))), 400
        if "\x00" in text or len(text) > MAX_QUERY_LENGTH:
            return jsonify(message=str(_l("Not a valid search text."))), 400
        if fab.scoped_get(self, pk) is None:
            return jsonify(message=str(_l("Not found."))), 404
        entity, model = self.entity, self.datamodel.obj
        title = entity.field(entity.title) if entity.title else None
        if title is None or title.is_relation or title.name in current_viewer().unreadable(entity.name):
            target = Target(model, (), (), (model.id,), entity.name)  # found and shown by id
        else:
            column = getattr(model, title.column_name)
            searched = column if title.kind.text_search else cast(column, String)
            target = Target(model, (column,), (searched,), (column, model.id), entity.name)
        results, more = search_titles(target, text, int(page), model.id != pk)
        return jsonify(results=results, more=more)

    def _flash_merge_errors(self, errors: dict) -> None:
        for name, messages in errors.items():
            f = self.entity.field(name)
            label = f.label.get(current_locale()) if f is not None else name
            for message in messages:
                flash(f"{label}: {message}", "danger")


@show_panel("merge", "bottom")
def merge_panel(view, item) -> dict | None:
    """"Merge…": pick the duplicate to merge into this record (update and delete permission, not locked)."""
    if item is None or not hasattr(view, "merge_page") or not may_merge(view.class_permission_name):
        return None
    if merge_refusal(view.entity, item, item) is not None:
        return None
    return {"action": url_for(f"{view.endpoint}.merge_page", pk=item.id),
            "lookup_url": url_for(f"{view.endpoint}.merge_lookup", pk=item.id)}
