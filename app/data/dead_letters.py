"""Dead letters: outbox messages that failed PORTAL_RETRY_MAX times. Admin only.

- page `/deadletters/` (menu "Security" → "Dead letters"): each message with its last error, a retry button per
  row and "Retry all" (POST forms, CSRF-checked like every form of the portal);
- `GET /api/v1/notifications/dead?page=&page_size=` → {"count", "result": [{id, channel, user_id,
  notification_id, attempts, last_error, created_on}]}, `POST /api/v1/notifications/dead/<id>/retry` and
  `POST /api/v1/notifications/dead/retry_all` (JWT).
Retry puts a message back to pending with no attempts counted; the worker sends it on its next turn.
Other users get 403 (401 / the sign-in page when not signed in).
"""
from __future__ import annotations

import re

from flask import abort, flash, redirect, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.api import expose as api_expose, safe
from flask_babel import lazy_gettext as _l

from app.data import outbox
from app.generate.admin_only import AdminOnlyApi
from app.rules.access import current_viewer

PAGE_SIZE, MAX_PAGE_SIZE = 25, 100
_DIGITS = re.compile(r"[0-9]{1,9}")


class BadPaging(ValueError):
    pass


def paging_args() -> tuple[int, int]:
    """`?page=` (from 0) and `?page_size=` (1–100), both optional."""
    page, size = request.args.get("page", ""), request.args.get("page_size", "")
    if page and not _DIGITS.fullmatch(page):
        raise BadPaging(str(_l("page must be a whole number from 0.")))
    if size and (not _DIGITS.fullmatch(size) or not 1 <= int(size) <= MAX_PAGE_SIZE):
        raise BadPaging(str(_l("page_size must be a number from 1 to %(max)d.", max=MAX_PAGE_SIZE)))
    return int(page or 0), int(size or PAGE_SIZE)


def _is_admin(appbuilder) -> bool:
    return bool(appbuilder.sm.current_user) and current_viewer().is_admin


def _engine(appbuilder):
    return appbuilder.session.get_bind()


def _described(conn, rows) -> tuple[dict, dict]:
    """For the page: user id -> username, message id -> what it was (e-mail: to and subject; webhook: event)."""
    import json

    from flask_appbuilder.security.sqla.models import User
    from sqlalchemy import select

    user_ids = sorted({r.user_id for r in rows if r.user_id is not None})
    names = {uid: name for uid, name in conn.execute(select(User.id, User.username).where(User.id.in_(user_ids)))}
    summaries = {}
    ids = [r.id for r in rows]
    for message_id, payload in (conn.execute(select(outbox.OUTBOX.c.id, outbox.OUTBOX.c.payload)
                                             .where(outbox.OUTBOX.c.id.in_(ids))) if ids else ()):
        try:
            data = json.loads(payload) if isinstance(payload, str) else payload
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        if "subject" in data:
            summaries[message_id] = f"{data.get('to', '')}: {data.get('subject', '')}"[:200]
        elif "event" in data:
            record = data.get("data") or {}
            summaries[message_id] = f"{data['event']} {record.get('entity', '')} #{record.get('record_id', '')}"[:200]
    return names, summaries


def dead_json(row) -> dict:
    item = dict(row._mapping)
    item["created_on"] = item["created_on"].isoformat() if item["created_on"] else None
    return item


class DeadLetterApi(AdminOnlyApi):
    route_base = "/api/v1/notifications/dead"
    resource_name = "notifications_dead"
    class_permission_name = "DeadLettersApi"  # not the menu entry's name: FAB prunes a class's other permissions
    openapi_spec_tag = "Notifications: dead letters"

    @api_expose("", methods=["GET"])
    @api_expose("/", methods=["GET"])
    @safe
    def list_dead(self):
        """Messages that will not be retried any more (Admin)
        ---
        get:
          parameters:
          - {in: query, name: page, schema: {type: integer, minimum: 0}}
          - {in: query, name: page_size, schema: {type: integer, minimum: 1, maximum: 100}}
          responses:
            200: {description: 'count, result: [{id, channel, user_id, notification_id, attempts, last_error, created_on}]'}
            400: {description: bad paging argument}
            401: {description: not signed in}
            403: {description: not Admin}
        """
        refusal = self._refusal()
        if refusal is not None:
            return refusal
        try:
            page, size = paging_args()
        except BadPaging as problem:
            return self.response_400(message=str(problem))
        with _engine(self.appbuilder).connect() as conn:
            count, rows = outbox.dead_letters(conn, page, size)
        return self.response(200, count=count, result=[dead_json(r) for r in rows])

    @api_expose("/<int:message_id>/retry", methods=["POST"])
    @safe
    def retry_one(self, message_id: int):
        """Put one dead message back to pending (Admin)
        ---
        post:
          parameters:
          - {in: path, name: message_id, required: true, schema: {type: integer}}
          responses:
            200: {description: 'retried: 1'}
            404: {description: no dead message with this id}
        """
        refusal = self._refusal()
        if refusal is not None:
            return refusal
        with _engine(self.appbuilder).begin() as conn:
            retried = outbox.retry_dead(conn, message_id)
        return self.response(200, retried=retried) if retried else self.response_404()

    @api_expose("/retry_all", methods=["POST"])
    @safe
    def retry_all(self):
        """Put every dead message back to pending (Admin)
        ---
        post:
          responses:
            200: {description: 'retried: how many'}
        """
        refusal = self._refusal()
        if refusal is not None:
            return refusal
        with _engine(self.appbuilder).begin() as conn:
            retried = outbox.retry_dead(conn)
        return self.response(200, retried=retried)


class DeadLetterView(BaseView):
    route_base = "/deadletters"
    default_view = "index"
    base_permissions = []  # Admin only, checked per request

    def _guard(self):
        sm = self.appbuilder.sm
        if not sm.current_user:
            return redirect(url_for(sm.auth_view.__class__.__name__ + ".login", next=request.url))
        if not current_viewer().is_admin:
            abort(403)
        return None

    @expose("/")
    def index(self):
        refusal = self._guard()
        if refusal is not None:
            return refusal
        try:
            page, size = paging_args()
        except BadPaging as problem:
            flash(str(problem), "danger")
            page, size = 0, PAGE_SIZE
        with _engine(self.appbuilder).connect() as conn:
            count, rows = outbox.dead_letters(conn, page, size)
            names, summaries = _described(conn, rows)
        return self.render_template("portal/dead_letters.html", title=_l("Dead letters"), rows=rows, count=count,
                                    names=names, summaries=summaries, page=page, size=size,
                                    pages=max(1, -(-count // size)))

    @expose("/<int:message_id>/retry", methods=["POST"])
    def retry_one(self, message_id: int):
        refusal = self._guard()
        if refusal is not None:
            return refusal
        with _engine(self.appbuilder).begin() as conn:
            retried = outbox.retry_dead(conn, message_id)
        if retried:
            flash(str(_l("Message %(id)d will be sent again.", id=message_id)), "success")
        else:
            flash(str(_l("Message %(id)d is not a dead letter.", id=message_id)), "warning")
        return redirect(url_for(".index"))

    @expose("/retry_all", methods=["POST"])
    def retry_all(self):
        refusal = self._guard()
        if refusal is not None:
            return refusal
        with _engine(self.appbuilder).begin() as conn:
            retried = outbox.retry_dead(conn)
        flash(str(_l("%(count)d messages will be sent again.", count=retried)), "success")
        return redirect(url_for(".index"))


def register_dead_letters(appbuilder) -> None:
    """The page (menu entry for Admin under Security) and the API."""
    appbuilder.add_view_no_menu(DeadLetterView)
    appbuilder.add_link("DeadLetters", href="/deadletters/", label=_l("Dead letters"), icon="fa-exclamation-triangle",
                        category="Security")
    appbuilder.add_api(DeadLetterApi)
