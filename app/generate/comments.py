"""Comments on records of `comments: true` entities: the API and the detail page's comment box.

Anyone who may read the record (row scope included) may comment; the author may edit or delete a comment within
`PORTAL_COMMENT_EDIT_MINUTES` (15) of writing it. Text is plain: trimmed, 1..COMMENT_MAX characters, escaped
wherever it is shown. `@username` of an active user who may read the record is a mention: their ids are stored (issue 14 notifies
them) and the API answers their usernames.

API: GET|POST /api/v1/<entity>/<id>/comments, PUT|DELETE /api/v1/<entity>/<id>/comments/<comment_id>.
Pages: POST /<entity>/comments/<pk> (add), POST /<entity>/comment/<cid>/edit|delete.
"""
from __future__ import annotations

import datetime as dt
import json
import re

from flask import abort, current_app, flash, redirect, request, url_for
from flask_appbuilder import expose, has_access
from flask_appbuilder.api import expose as api_expose, protect, safe
from flask_babel import lazy_gettext as _l
from sqlalchemy import inspect as sa_inspect, select

from app import fab
from app.fieldtypes.base import record_id
from app.generate.models import COMMENTS_TABLE
from app.generate.timeline import BadCursor, before_arg, page_size_arg
from app.portal import current_portal
from app.rules.access import viewer_for
from app.rules.history import current_author

COMMENT_MAX = 4000  # characters
MAX_MENTIONS = 20
MENTION = re.compile(r"(?<![\w@.])@([\w][\w.\-]{0,63})")


class CommentRefused(Exception):
    def __init__(self, status: int, message) -> None:
        super().__init__(str(message))
        self.status, self.message = status, str(message)


def _table():
    return current_portal().metadata.tables[COMMENTS_TABLE]


def _now() -> dt.datetime:
    return dt.datetime.now().replace(microsecond=0)


def edit_window() -> dt.timedelta:
    return dt.timedelta(minutes=current_app.config.get("PORTAL_COMMENT_EDIT_MINUTES", 15))


def clean_text(payload) -> str:
    text = payload.get("text") if isinstance(payload, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise CommentRefused(422, _l("Write a comment."))
    text = text.strip()
    if len(text) > COMMENT_MAX:
        raise CommentRefused(422, _l("A comment may have at most %(max)d characters.", max=COMMENT_MAX))
    if "\x00" in text:
        raise CommentRefused(422, _l("Write a comment."))
    return text


def mentioned_users(session, text: str, entity: str, pk: int) -> list[int]:
    """Ids of the active users the text names as @username (in the order named) who may read this record: a
    mention of anyone else is dropped, so it neither notifies them nor tells the author which usernames exist."""
    names = list(dict.fromkeys(name.rstrip(".-") for name in MENTION.findall(text)))[:MAX_MENTIONS]
    if not names:
        return []
    user = current_app.appbuilder.sm.user_model
    found = {u.username: u for u in session.scalars(select(user).where(user.username.in_(names), user.active.is_(True)))}
    return [found[n].id for n in names if n in found and _may_read_record(session, found[n], entity, pk)]


def _may_read_record(session, user, entity: str, pk: int) -> bool:
    """Whether `user` may read record `pk` of `entity`: a YAML role reading the entity, and the record in its row scope."""
    portal = current_portal()
    viewer = viewer_for(user)
    if not viewer.may_read(entity):
        return False
    clause = viewer.row_clause(entity, portal.models)
    if clause is None:
        return True
    model = portal.models[entity]
    key = sa_inspect(model).primary_key[0]
    return session.execute(select(key).where(key == pk, clause)).first() is not None


def usernames(session, ids: set) -> dict[int, str]:
    if not ids:
        return {}
    user = current_app.appbuilder.sm.user_model
    return dict(session.execute(select(user.id, user.username).where(user.id.in_(sorted(ids)))).all())


def may_change(row) -> bool:
    user_id, _ = current_author()
    return user_id is not None and row.author_id == user_id and _now() - row.created_on <= edit_window()


def check_may_change(row) -> None:
    user_id, _ = current_author()
    if user_id is None or row.author_id != user_id:
        raise CommentRefused(403, _l("Only the author may change or delete a comment."))
    if _now() - row.created_on > edit_window():
        raise CommentRefused(403, _l("A comment can only be changed or deleted within %(minutes)d minutes of writing it.",
                                     minutes=int(edit_window().total_seconds() // 60)))


def comment_entry(row) -> dict:
    """A comment on the timeline (the template escapes its text)."""
    return {"kind": "comment", "id": row.id, "at": row.created_on.isoformat(), "user": row.author_name,
            "text": row.text, "edited_on": row.edited_on.isoformat() if row.edited_on else None,
            "may_change": may_change(row)}


def comment_json(row, names: dict) -> dict:
    return {"id": row.id, "author": row.author_name, "created_on": row.created_on.isoformat(),
            "edited_on": row.edited_on.isoformat() if row.edited_on else None, "text": row.text,
            "mentions": [names[i] for i in json.loads(row.mentions or "[]") if i in names],
            "may_edit": may_change(row)}


class Comments:
    """The comments of one endpoint's entity: every check both the API and the pages make."""

    def __init__(self, endpoint) -> None:
        self.endpoint, self.entity = endpoint, endpoint.entity
        self.session = endpoint.datamodel.session

    def record(self, pk):
        """The record, if comments are on and it is in the viewer's scope; else 404 (no existence leak)."""
        if not self.entity.comments:
            raise CommentRefused(404, _l("Not found"))
        item = fab.scoped_get(self.endpoint, pk)
        if item is None:
            raise CommentRefused(404, _l("Not found"))
        return item

    def comment(self, cid, pk=None):
        """A comment of this entity on a record in the viewer's scope (and of record `pk` when given)."""
        try:
            cid = record_id(cid)  # an id past the column's range is no comment (not a driver overflow)
        except ValueError:
            raise CommentRefused(404, _l("Not found")) from None
        table = _table()
        row = self.session.execute(select(table).where(table.c.id == cid, table.c.entity == self.entity.name)).first()
        if row is None or (pk is not None and row.record_id != pk):
            raise CommentRefused(404, _l("Not found"))
        self.record(row.record_id)
        return row

    def add(self, pk, payload) -> int:
        self.record(pk)
        text = clean_text(payload)
        user_id, username = current_author()
        result = self.session.execute(_table().insert().values(
            entity=self.entity.name, record_id=pk, author_id=user_id, author_name=username, created_on=_now(),
            text=text, mentions=json.dumps(mentioned_users(self.session, text, self.entity.name, pk))))
        self.session.commit()
        return result.inserted_primary_key[0]

    def edit(self, cid, payload, pk=None) -> None:
        row = self.comment(cid, pk)
        check_may_change(row)
        text = clean_text(payload)
        table = _table()
        self.session.execute(table.update().where(table.c.id == row.id).values(
            text=text, edited_on=_now(), mentions=json.dumps(mentioned_users(self.session, text, self.entity.name, row.record_id))))
        self.session.commit()

    def delete(self, cid, pk=None) -> None:
        row = self.comment(cid, pk)
        check_may_change(row)
        table = _table()
        self.session.execute(table.delete().where(table.c.id == row.id))
        self.session.commit()

    def page(self, pk, before, size) -> tuple[list[dict], int | None]:
        self.record(pk)
        table = _table()
        query = select(table).where(table.c.entity == self.entity.name, table.c.record_id == pk)
        if before is not None:
            query = query.where(table.c.id < before)
        rows = list(self.session.execute(query.order_by(table.c.id.desc()).limit(size + 1)))
        more, rows = len(rows) > size, rows[:size]
        names = usernames(self.session, {i for r in rows for i in json.loads(r.mentions or "[]")})
        return [comment_json(r, names) for r in rows], (rows[-1].id if more else None)

    def one(self, cid) -> dict:
        row = self.comment(cid)
        return comment_json(row, usernames(self.session, set(json.loads(row.mentions or "[]"))))


class CommentsApiMixin:
    """GET|POST /api/v1/<entity>/<id>/comments and PUT|DELETE /api/v1/<entity>/<id>/comments/<comment_id>."""

    def _refused(self, exc: CommentRefused):
        if exc.status == 404:
            return self.response_404()
        return self.response(exc.status, message=exc.message)

    @api_expose("/<int:pk>/comments", methods=["GET"])
    @protect()
    @safe
    def get_comments(self, pk):
        """The record's comments, newest first
        ---
        get:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          - {in: query, name: before, schema: {type: integer}}
          - {in: query, name: page_size, schema: {type: integer, minimum: 1, maximum: 100}}
          responses:
            200: {description: 'comments: [{id, author, created_on, edited_on, text, mentions, may_edit}], next'}
        """
        try:
            before, size = before_arg(), page_size_arg()
            comments, cursor = Comments(self).page(pk, before, size)
        except BadCursor as exc:
            return self.response_400(message=str(exc))
        except CommentRefused as exc:
            return self._refused(exc)
        return self.response(200, comments=comments, next=None if cursor is None else str(cursor))

    @api_expose("/<int:pk>/comments", methods=["POST"])
    @protect()
    @safe
    def post_comment(self, pk):
        """Add a comment: {"text": ".."}; @username mentions an active user
        ---
        post:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          responses:
            201: {description: the comment}
            422: {description: empty or too long}
        """
        try:
            comments = Comments(self)
            comments.record(pk)
            payload, not_json = self._json_object()  # apis.py: 400 unless a JSON object
            if not_json is not None:
                return not_json
            cid = comments.add(pk, payload)
            return self.response(201, id=cid, result=comments.one(cid))
        except CommentRefused as exc:
            return self._refused(exc)

    @api_expose("/<int:pk>/comments/<int:cid>", methods=["PUT"])
    @protect()
    @safe
    def put_comment(self, pk, cid):
        """Edit an own comment within 15 minutes of writing it
        ---
        put:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          - {in: path, name: cid, required: true, schema: {type: integer}}
          responses:
            200: {description: the comment}
            403: {description: not the author, or too late}
        """
        try:
            comments = Comments(self)
            comments.comment(cid, pk)
            payload, not_json = self._json_object()
            if not_json is not None:
                return not_json
            comments.edit(cid, payload, pk)
            return self.response(200, id=cid, result=comments.one(cid))
        except CommentRefused as exc:
            return self._refused(exc)

    @api_expose("/<int:pk>/comments/<int:cid>", methods=["DELETE"])
    @protect()
    @safe
    def delete_comment(self, pk, cid):
        """Delete an own comment within 15 minutes of writing it
        ---
        delete:
          parameters:
          - {in: path, name: pk, required: true, schema: {type: integer}}
          - {in: path, name: cid, required: true, schema: {type: integer}}
          responses:
            200: {description: deleted}
            403: {description: not the author, or too late}
        """
        try:
            Comments(self).delete(cid, pk)
        except CommentRefused as exc:
            return self._refused(exc)
        return self.response(200, message="OK")


class CommentPagesMixin:
    """The detail page's comment box: add, and edit/delete an own recent comment (POST, then back to the record)."""

    def _back_to(self, pk):
        return redirect(url_for(f"{self.endpoint}.show", pk=pk) + "#timeline")

    def _page_refused(self, exc: CommentRefused, pk=None):
        if exc.status == 404 or pk is None:
            abort(exc.status if exc.status == 404 else 400, description=exc.message)
        flash(exc.message, "danger")
        return self._back_to(pk)

    @expose("/comments/<int:pk>", methods=["POST"])
    @has_access
    def add_comment(self, pk):
        try:
            Comments(self).add(pk, {"text": request.form.get("text")})
        except CommentRefused as exc:
            return self._page_refused(exc, pk)
        flash(str(_l("Comment added.")), "success")
        return self._back_to(pk)

    @expose("/comment/<int:cid>/edit", methods=["POST"])
    @has_access
    def edit_comment(self, cid):
        comments, row = Comments(self), None
        try:
            row = comments.comment(cid)
            comments.edit(cid, {"text": request.form.get("text")})
        except CommentRefused as exc:
            return self._page_refused(exc, row.record_id if row is not None else None)
        flash(str(_l("Comment saved.")), "success")
        return self._back_to(row.record_id)

    @expose("/comment/<int:cid>/delete", methods=["POST"])
    @has_access
    def delete_comment(self, cid):
        comments, row = Comments(self), None
        try:
            row = comments.comment(cid)
            comments.delete(cid)
        except CommentRefused as exc:
            return self._page_refused(exc, row.record_id if row is not None else None)
        flash(str(_l("Comment deleted.")), "success")
        return self._back_to(row.record_id)
