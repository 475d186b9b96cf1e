"""Files of records: attachments (`attachments:`) and `file` fields, on the API, the detail page and forms.

API (entities with `attachments:`; `field=<name>` also for a `file` field of any entity):
  GET    /api/v1/<entity>/<id>/attachments                  list {id, name, size, content_type, uploaded_by, uploaded_on, url}
  POST   /api/v1/<entity>/<id>/attachments                  multipart, one or more `file` parts (all stored or none)
  GET    /api/v1/<entity>/<id>/attachments/<attachment_id>  download
  DELETE /api/v1/<entity>/<id>/attachments/<attachment_id>
Pages: POST /<entity>/attachments/<pk> (upload), GET /<entity>/attachment/<aid> (download),
POST /<entity>/attachment/<aid>/delete; the detail page's "files" panel.

Reading needs READ on the entity and the record in the viewer's row scope (else 404, never 403); uploading and
deleting need UPDATE, the record in scope and not in a locked workflow state (409). Bytes are stored by
app/data/files.py; rows are in `portal_attachments`. Deleting a record deletes its files (`files_of_deleted`)
unless the entity keeps history: then Admin (only) still lists and downloads them at the same URLs.
A `file` field's file is changed only by a viewer who may write the field (not `readonly`, not hidden or masked:
else 422 "read-only", 404 when hidden); a `required` one cannot be deleted, only replaced (422).
"""
from __future__ import annotations

import datetime as dt
from urllib.parse import quote

from flask import abort, after_this_request, current_app, flash, g, jsonify, redirect, request, send_file, url_for
from flask_appbuilder import expose, has_access
from flask_appbuilder.api import protect, safe
from flask_babel import gettext, lazy_gettext as _l
from markupsafe import Markup
from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session
from wtforms import Field
from wtforms.validators import ValidationError

from app import fab
from app.data.files import FileRefused, Received, check_kind, store_of
from app.fieldtypes.base import record_id
from app.generate.models import ATTACHMENTS_TABLE
from app.generate.permissions import UPDATE, permission
from app.generate.show_panels import show_panel
from app.i18n import lazy
from app.portal import current_portal
from app.rules.access import current_viewer
from app.rules.workflows import is_locked
from app.schema.spec import EntitySpec, FieldSpec, snake_case

MAX_FILES_PER_REQUEST = 20


def _table():
    return current_portal().metadata.tables[ATTACHMENTS_TABLE]


def _session():
    return current_app.appbuilder.session


def file_fields(entity: EntitySpec) -> dict[str, FieldSpec]:
    return {f.name: f for f in entity.fields if f.files is not None}


def _current_user():
    user = current_app.appbuilder.sm.current_user
    return getattr(user, "id", None), getattr(user, "username", None)


# -- rows -------------------------------------------------------------------------------------------------
def _rows(entity: EntitySpec, record: int, field: str | None = None):
    t = _table()
    where = (t.c.entity == entity.name) & (t.c.record_id == record)
    where &= t.c.field.is_(None) if field is None else (t.c.field == field)
    return _session().execute(select(t).where(where).order_by(t.c.id)).all()


def _row(entity: EntitySpec, aid):
    try:
        aid = record_id(aid)
    except ValueError:
        return None
    t = _table()
    return _session().execute(select(t).where((t.c.id == aid) & (t.c.entity == entity.name))).first()


def _row_dict(entity: EntitySpec, row, url: str) -> dict:
    return {"id": row.id, "name": row.name, "size": row.size, "content_type": row.content_type,
            "uploaded_by": row.uploaded_by_name,
            "uploaded_on": row.uploaded_on.isoformat() if row.uploaded_on else None, "url": url}


def api_url(entity: EntitySpec, row) -> str:
    return f"/api/v1/{entity.snake}/{row.record_id}/attachments/{row.id}"


def page_url(entity: EntitySpec, row) -> str:
    return f"/{entity.snake}/attachment/{row.id}"


def _receive_one(store, upload, spec) -> Received:
    """One upload streamed and checked; its temporary file removed when it is refused."""
    received = store.receive(upload.stream, upload.filename, spec.max_bytes)
    try:
        return check_kind(received, spec.types)
    except BaseException:
        store.discard(received)
        raise


def receive_all(uploads, spec) -> list[Received]:
    """Every uploaded file streamed and checked before any is kept: all pass, or FileRefused for the first that
    does not (the others' temporary files removed). FileRefused(400) when no file was sent."""
    uploads = [u for u in uploads if u is not None and u.filename]
    if not uploads:
        raise FileRefused(400, _l("Choose a file to upload."))
    if len(uploads) > MAX_FILES_PER_REQUEST:
        raise FileRefused(400, _l("At most %(count)d files at once.", count=MAX_FILES_PER_REQUEST))
    store, received = store_of(), []
    try:
        for upload in uploads:
            received.append(_receive_one(store, upload, spec))
    except BaseException:
        for item in received:
            store.discard(item)
        raise
    return received


def receive_each(uploads, spec) -> tuple[list[Received], list[FileRefused]]:
    """The page's drop zone: each file on its own; (the files that passed, the refusal of each other one)."""
    uploads = [u for u in uploads if u is not None and u.filename][:MAX_FILES_PER_REQUEST]
    store, passed, refused = store_of(), [], []
    for upload in uploads:
        try:
            passed.append(_receive_one(store, upload, spec))
        except FileRefused as exc:
            refused.append(exc)
    return passed, refused


def keep_files(connection, entity: EntitySpec, record: int, received: list[Received], field: str | None = None) -> list[int]:
    """Blobs put in place and their rows inserted on `connection` (the caller's transaction); the new row ids."""
    store, (user_id, username) = store_of(), _current_user()
    now, t, ids = dt.datetime.now().replace(microsecond=0), _table(), []
    for item in received:
        store.keep(item)
        ids.append(connection.execute(insert(t).values(
            entity=entity.name, record_id=record, field=field, name=item.name, size=item.size,
            content_type=item.content_type, sha256=item.sha256, uploaded_by_id=user_id, uploaded_by_name=username,
            uploaded_on=now).returning(t.c.id)).scalar_one())
    return ids


def _remove_rows(connection, ids) -> list[str]:
    """Delete attachment rows; the sha256 of their blobs (dropped after the commit if nothing else names them)."""
    if not ids:
        return []
    t = _table()
    shas = list(connection.execute(select(t.c.sha256).where(t.c.id.in_(list(ids)))).scalars())
    connection.execute(delete(t).where(t.c.id.in_(list(ids))))
    return shas


def drop_after_commit(session_or_connection, shas: list[str]) -> None:
    """Remove the blobs once the session commits (a Session); a Connection's caller calls drop_blobs itself."""
    if not shas:
        return
    if isinstance(session_or_connection, Session) or hasattr(session_or_connection, "registry"):
        from sqlalchemy import event

        session = session_or_connection() if hasattr(session_or_connection, "registry") else session_or_connection
        app = current_app._get_current_object()

        def after_commit(_session):
            with app.app_context():
                drop_blobs(shas)

        event.listen(session, "after_commit", after_commit, once=True)


def drop_blobs(shas) -> list[str]:
    """Blobs of `shas` no attachment row names any more, removed (call after the commit that removed the rows)."""
    engine = _session().get_bind()
    with engine.connect() as connection:
        return store_of().drop_unreferenced(connection, shas, _table())


def files_of_deleted(session_or_connection, entity: EntitySpec, record_ids) -> list[str]:
    """Deleting records deletes their attachment rows (and `file` fields' files), in the caller's transaction,
    unless the entity keeps history (`history: true`: rows and blobs stay, Admin sees them from the history).
    Returns the sha256 of the blobs that may now be unused: with a Session they are removed after it commits;
    with a Connection call `drop_blobs(shas)` after committing."""
    record_ids = [int(r) for r in record_ids]
    if entity.history or not record_ids or not (entity.attachments or file_fields(entity)):
        return []
    t = _table()
    shas = []
    for start in range(0, len(record_ids), 1000):
        chunk = record_ids[start:start + 1000]
        where = (t.c.entity == entity.name) & t.c.record_id.in_(chunk)
        shas += session_or_connection.execute(select(t.c.sha256).where(where)).scalars().all()
        session_or_connection.execute(delete(t).where(where))
    drop_after_commit(session_or_connection, shas)
    return shas


# -- values of file fields (API records, pages, exports) -----------------------------------------------------
def _names(ids) -> dict:
    """{attachment id: row} for ids, memoised per request."""
    cache = g.setdefault("portal_file_rows", {})
    missing = [i for i in {int(i) for i in ids if i is not None} if i not in cache]
    if missing:
        t = _table()
        for row in _session().execute(select(t).where(t.c.id.in_(missing))).all():
            cache[row.id] = row
        for i in missing:
            cache.setdefault(i, None)
    return cache


def file_value(entity: EntitySpec, value) -> dict | None:
    """A file field's API value: {id, name, size, content_type, url} or None."""
    row = _names([value]).get(int(value)) if value is not None else None
    if row is None:
        return None
    return {"id": row.id, "name": row.name, "size": row.size, "content_type": row.content_type,
            "url": api_url(entity, row)}


def file_link(field: FieldSpec, value):
    """A file field on list and show pages: its name, a download link."""
    row = _names([value]).get(int(value))
    if row is None:
        return ""
    return Markup('<a class="portal-file" href="{}" download>{}</a>').format(
        f"/{snake_case(row.entity)}/attachment/{row.id}", row.name)


def file_names_converter(field: FieldSpec):
    def convert(value):
        if value is None:
            return ""
        row = _names([value]).get(int(value))
        from app.data.tabular import safe_text

        return "" if row is None else safe_text(row.name)
    return convert


def file_name_sql(column):
    from sqlalchemy import Text, cast

    from app.data.tabular import safe_sql_text

    t = _table()
    return safe_sql_text(cast(select(t.c.name).where(t.c.id == column).scalar_subquery(), Text))


def file_filters() -> list:
    return []  # a file field is not filtered or searched (its column is an attachment id)


# -- the form field ----------------------------------------------------------------------------------------
class FileInput:
    """The current file (a download link), a "remove" checkbox unless required, and a file input."""

    def __call__(self, field, **kwargs):
        parts = []
        row = _names([field.data]).get(int(field.data)) if isinstance(field.data, int) else None
        if row is not None:
            parts.append(Markup('<div class="portal-file-current"><a href="{}" download>{}</a></div>').format(
                f"/{snake_case(row.entity)}/attachment/{row.id}", row.name))
            if not field.spec.required:
                parts.append(Markup('<label class="checkbox-inline"><input type="checkbox" name="{0}-remove" '
                                    'id="{0}-remove" value="1"> {1}</label>').format(field.name, gettext("Remove")))
        accept = ",".join("." + ext for kind in field.spec.files.types for ext in _extensions(kind))
        parts.append(Markup('<input type="file" name="{0}" id="{0}" accept="{1}" class="form-control">').format(
            field.name, accept))
        return Markup("").join(parts)


def _extensions(kind: str):
    from app.fieldtypes.files import FILE_KINDS

    return FILE_KINDS[kind][1]


class FileUploadField(Field):
    """A `file` field on add/edit forms. Its data is the attachment id to keep (the stored one when no file is
    chosen), None when removed, or a Received file (checked while the form validates) that the save stores."""

    widget = FileInput()

    def __init__(self, spec: FieldSpec, label=None, validators=None, **kwargs):

        super().__init__(label or lazy(spec.label), validators, **kwargs)
        self.spec, self.upload, self.remove = spec, None, False

    def process(self, formdata, data=None, extra_filters=None):
        super().process(formdata, data, extra_filters)
        if formdata is not None:
            self.remove = bool(formdata.get(f"{self.name}-remove"))

    def process_formdata(self, valuelist):
        self.upload = next((v for v in valuelist if getattr(v, "filename", None)), None)
        self.data = None

    def process_data(self, value):
        self.data = value if isinstance(value, int) else None

    def pre_validate(self, form):
        pk = fab.edited_pk(form)
        if self.upload is not None:
            try:
                received = receive_all([self.upload], self.spec.files)[0]
            except FileRefused as exc:
                raise ValidationError(str(exc)) from None
            g.setdefault("portal_form_files", {})[self.name] = received
            self.data = received
            after_this_request(lambda response: _discard_after(received, response))  # a save that failed
        elif self.remove or pk is None:
            self.data = None
        else:  # nothing chosen on edit: keep the stored file
            model = current_portal().models[entity_of(self.spec).name]
            item = _session().get(model, pk)
            self.data = getattr(item, self.name, None) if item is not None else None
        if self.spec.required and self.data is None:
            raise ValidationError(gettext("This field is required."))

    def populate_obj(self, obj, name):
        if not isinstance(self.data, Received):  # an upload gets its id when the record is saved
            setattr(obj, name, self.data)


def _discard_after(received: Received, response):
    store_of().discard(received)  # nothing left when the save kept it (the file was moved into place)
    return response


def entity_of(spec: FieldSpec) -> EntitySpec:
    """The entity a field spec belongs to (a form field knows only its field)."""
    return next(e for e in current_portal().spec.entities if any(f is spec for f in e.fields))


# -- endpoint mixins ---------------------------------------------------------------------------------------
class FilesEndpoint:
    """What the API and pages share: the record and its files, as the viewer may see them."""

    entity: EntitySpec

    def _record(self, pk):
        try:
            pk = record_id(pk)
        except ValueError:
            return None
        return fab.scoped_get(self, pk)

    def _readable_record(self, pk) -> int | None:
        """The id of the record whose files the viewer may read: one in their row scope, or (Admin only) a
        deleted record of an entity that keeps history (its files stay, as its history does); else None."""
        item = self._record(pk)
        if item is not None:
            return item.id
        if not self.entity.history or not current_viewer().is_admin or not str(pk).isdigit():
            return None
        from app.generate.timeline import history_rows, record_exists

        pk, session = record_id(pk), _session()
        if record_exists(self.datamodel.obj, pk, session) or not history_rows(session, self.entity.name, pk, None, 1):
            return None  # a record out of scope, or one that never existed
        return pk

    def _spec_for(self, field: str | None):
        """The FilesSpec uploads are checked against (record attachments or a file field); None: not offered."""
        if field:
            f = file_fields(self.entity).get(field)
            if f is None or field in current_viewer().unreadable(self.entity.name):
                return None
            return f.files
        return self.entity.attachments

    def _field_refusal(self, field: str, deleting: bool = False) -> dict | None:
        """Why the viewer may not set (or delete) the file of `field`, as a 422 message {field: [text]}; else None.
        The same rule as the record's writes (app/rules/record_rules.py): readonly and masked fields are read-only."""
        f = file_fields(self.entity)[field]
        if f.readonly or field in current_viewer().unreadable(self.entity.name):
            return {field: [str(_l("This field is read-only."))]}
        if deleting and f.required:
            return {field: [str(_l("%(field)s is required: upload a replacement with field=%(name)s.",
                                   field=lazy(f.label), name=field))]}
        return None

    def _readable_row(self, record: int, row) -> bool:
        if row is None or row.record_id != record:
            return False
        if row.field is None:
            return self.entity.attachments is not None
        return row.field in file_fields(self.entity) and row.field not in current_viewer().hidden(self.entity.name)

    def _store(self, item, received: list[Received], field: str | None) -> list[int]:
        """Rows inserted and committed with the record's version untouched; a file field's old file replaced."""
        session = _session()
        try:
            ids = keep_files(session, self.entity, item.id, received, field)
            old_shas = []
            if field:
                previous = getattr(item, field, None)
                if not self.entity.history and previous is not None:
                    old_shas = _remove_rows(session, [previous])
                setattr(item, field, ids[0])
            session.commit()
        except BaseException:
            session.rollback()
            for r in received:
                store_of().discard(r)
            raise
        drop_blobs(old_shas)
        return ids

    def _delete_row(self, item, row) -> None:
        session = _session()
        if row.field is not None:
            setattr(item, row.field, None)
        shas = _remove_rows(session, [row.id])
        session.commit()
        drop_blobs(shas)

    @staticmethod
    def _download(row):
        path = store_of().path_of(row.sha256)
        if not path.exists():
            abort(404)
        response = send_file(path, mimetype=row.content_type, as_attachment=True, download_name=row.name,
                             conditional=True, max_age=0)
        ascii_name = row.name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
        response.headers["Content-Disposition"] = (f'attachment; filename="{ascii_name}"; '
                                                   f"filename*=UTF-8''{quote(row.name, safe='')}")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "private, max-age=0"
        response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
        return response

    def _locked_message(self):
        return _l("This record is locked in its current state; its files cannot be changed.")

    # -- file fields in API records ------------------------------------------------------------------------
    def viewer_record(self, record: dict) -> dict:
        record = super().viewer_record(record)
        for name in file_fields(self.entity):
            if name in record:
                record[name] = file_value(self.entity, record[name])
        return record

    def pre_get_list(self, data: dict) -> None:
        names = list(file_fields(self.entity))
        if names:  # one query for the page's files
            _names([r.get(n) for r in data.get("result", []) for n in names])
        super().pre_get_list(data)

    def pre_delete(self, item) -> None:
        super().pre_delete(item)
        files_of_deleted(_session(), self.entity, [item.id])


class AttachmentsApi(FilesEndpoint):
    """The attachment endpoints of an entity's REST API (a base of EntityApi)."""

    @expose("/<pk>/attachments", methods=["GET"])
    @protect()
    @safe
    def attachments_list(self, pk):
        """The record's attachments
        ---
        get:
          responses:
            200: {description: "{result: [{id, name, size, content_type, uploaded_by, uploaded_on, url}]}"}
            404: {description: no such record in your scope, or the entity has no attachments}
        """
        record = self._readable_record(pk)
        if record is None or self.entity.attachments is None:
            return self.response_404()
        rows = _rows(self.entity, record)
        return self.response(200, result=[_row_dict(self.entity, r, api_url(self.entity, r)) for r in rows])

    @expose("/<pk>/attachments", methods=["POST"])
    @protect()
    @safe
    def attachments_upload(self, pk):
        """Upload one or more files (multipart `file` parts; `field=<name>` sets a file field)
        ---
        post:
          requestBody:
            content:
              multipart/form-data:
                schema:
                  type: object
                  properties:
                    file: {type: array, items: {type: string, format: binary}}
                    field: {type: string, description: a file field to set (replacing its file)}
          responses:
            201: {description: the stored files}
            400: {description: no file}
            409: {description: the record is locked}
            413: {description: a file is too large}
            415: {description: a file is not of an accepted type}
        """
        item = self._record(pk)
        field = request.form.get("field") or None
        spec = self._spec_for(field) if item is not None else None
        if spec is None:
            return self.response_404()
        refusal = self._field_refusal(field) if field else None
        if refusal:
            return self.response_422(message=refusal)
        if is_locked(self.entity, item):
            return self.response(409, message=str(self._locked_message()))
        uploads = request.files.getlist("file")
        if field and len([u for u in uploads if u.filename]) > 1:
            return self.response_400(message=str(_l("A file field takes one file.")))
        try:
            received = receive_all(uploads, spec)
        except FileRefused as exc:
            return self.response(exc.status, message=str(exc))
        ids = self._store(item, received, field)
        rows = [_row(self.entity, i) for i in ids]
        return self.response(201, result=[_row_dict(self.entity, r, api_url(self.entity, r)) for r in rows])

    @expose("/<pk>/attachments/<aid>", methods=["GET"])
    @protect()
    @safe
    def attachment_download(self, pk, aid):
        """Download one attachment
        ---
        get:
          responses:
            200: {description: the file, with Content-Disposition attachment}
            404: {description: not found in your scope}
        """
        record = self._readable_record(pk)
        row = _row(self.entity, aid) if record is not None else None
        if row is None or not self._readable_row(record, row):
            return self.response_404()
        return self._download(row)

    @expose("/<pk>/attachments/<aid>", methods=["DELETE"])
    @protect()
    @safe
    def attachment_delete(self, pk, aid):
        """Delete one attachment
        ---
        delete:
          responses:
            200: {description: deleted}
            404: {description: not found in your scope}
            409: {description: the record is locked}
        """
        item = self._record(pk)
        row = _row(self.entity, aid) if item is not None else None
        if row is None or not self._readable_row(item.id, row):
            return self.response_404()
        refusal = self._field_refusal(row.field, deleting=True) if row.field else None
        if refusal:
            return self.response_422(message=refusal)
        if is_locked(self.entity, item):
            return self.response(409, message=str(self._locked_message()))
        self._delete_row(item, row)
        return self.response(200, message="OK")


class AttachmentsPages(FilesEndpoint):
    """The attachment pages of an entity (a base of EntityView) and its `file` fields on forms."""

    def _wants_json(self) -> bool:
        return request.accept_mimetypes.best == "application/json"

    @expose("/attachments/<pk>", methods=["POST"])
    @has_access
    def attachments_upload(self, pk):
        """The detail page's drop zone / file input: files that pass are stored, each refused one is named."""
        item = self._record(pk)
        if item is None or self.entity.attachments is None:
            abort(404)
        show = url_for(f"{self.endpoint}.show", pk=item.id)
        if is_locked(self.entity, item):
            if self._wants_json():
                return jsonify(message=str(self._locked_message())), 409
            flash(str(self._locked_message()), "danger")
            return redirect(show)
        uploads = request.files.getlist("file")
        if not [u for u in uploads if u.filename]:
            refused, stored = [FileRefused(400, _l("Choose a file to upload."))], []
        else:
            received, refused = receive_each(uploads, self.entity.attachments)
            stored = self._store(item, received, None) if received else []
        if self._wants_json():
            return (jsonify(stored=len(stored), refused=[str(r) for r in refused]),
                    200 if stored or not refused else refused[0].status)
        if stored:
            flash(str(_l("%(count)d file(s) uploaded.", count=len(stored))), "success")
        for refusal in refused:
            flash(str(refusal), "danger")
        return redirect(show)

    @expose("/attachment/<aid>")
    @has_access
    def attachment_download(self, aid):
        row = _row(self.entity, aid)
        record = self._readable_record(row.record_id) if row is not None else None
        if record is None or not self._readable_row(record, row):
            abort(404)
        return self._download(row)

    @expose("/attachment/<aid>/delete", methods=["POST"])
    @has_access
    def attachment_delete(self, aid):
        row = _row(self.entity, aid)
        item = self._record(row.record_id) if row is not None else None
        if item is None or not self._readable_row(item.id, row) or row.field is not None:
            abort(404)
        if is_locked(self.entity, item):
            flash(str(self._locked_message()), "danger")
        else:
            self._delete_row(item, row)
            flash(str(_l("File deleted.")), "success")
        return redirect(url_for(f"{self.endpoint}.show", pk=item.id))

    # -- file fields on forms: the checked upload is stored with the record ----------------------------------
    def pre_add(self, item) -> None:
        super().pre_add(item)
        self._store_form_files(item, creating=True)

    def pre_update(self, item) -> None:
        super().pre_update(item)
        self._store_form_files(item, creating=False)

    def _store_form_files(self, item, creating: bool) -> None:
        pending = g.pop("portal_form_files", None)
        if not pending:
            return
        session = _session()
        replaced = []
        for name, received in pending.items():
            previous = None if creating else session.execute(
                select(getattr(type(item), name)).where(type(item).id == item.id)).scalar()
            # a new record has no id yet: its rows get it in post_add
            ids = keep_files(session, self.entity, 0 if creating else item.id, [received], name)
            setattr(item, name, ids[0])
            g.setdefault("portal_new_file_rows", []).extend(ids)
            if previous is not None and not self.entity.history:
                replaced.append(previous)
        drop_after_commit(session, _remove_rows(session, replaced))

    def post_add(self, item) -> None:
        super().post_add(item)
        ids = g.pop("portal_new_file_rows", None)
        if ids and item.id is not None:
            t = _table()
            _session().execute(update(t).where(t.c.id.in_(ids) & (t.c.record_id == 0)).values(record_id=item.id))
            _session().commit()


# -- the detail page's panel --------------------------------------------------------------------------------
@show_panel("files", "bottom")
def files_panel(view, item) -> dict | None:
    entity = view.entity
    if entity.attachments is None or not isinstance(view, AttachmentsPages):
        return None
    sm = view.appbuilder.sm
    may_change = sm.has_access(permission(UPDATE), view.class_permission_name) and not is_locked(entity, item)
    rows = _rows(entity, item.id)
    return {
        "files": [_row_dict(entity, r, page_url(entity, r)) | {"delete_url": f"/{entity.snake}/attachment/{r.id}/delete"}
                  for r in rows],
        "may_change": may_change,
        "locked": is_locked(entity, item),
        "upload_url": f"/{entity.snake}/attachments/{item.id}",
        "types": entity.attachments.types,
        "accept": ",".join("." + ext for kind in entity.attachments.types for ext in _extensions(kind)),
        "max_mb": entity.attachments.max_mb,
    }
