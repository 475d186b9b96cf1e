"""The inbox: `GET /api/v1/notifications` (+ `/<id>/read`, `/read_all`, `/settings`), the `/inbox/` page and its
settings page, and `portal_unread_count()` for the navbar bell (views/templates/portal/navbar_bell.html) and the
home card (portal/home_inbox.html).

Every signed-in user has an inbox; it shows only what their Viewer lets them read (app/rules/notifications.py).
"""
from __future__ import annotations

import datetime as dt
import json

from flask import abort, current_app, flash, redirect, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.api import BaseApi, expose as api_expose, safe
from flask_babel import format_datetime, gettext, lazy_gettext as _l
from flask_jwt_extended import verify_jwt_in_request
from sqlalchemy import select, update

from app.generate.input_errors import BadArgument, bounded_int_arg
from app.i18n import current_locale
from app.portal import current_portal
from app.rules.access import viewer_for
from app.rules.notifications import (NOTIFICATIONS_TABLE, SETTINGS_TABLE, inbox_counts, inbox_rows, render_text,
                                     unread_count)

PAGE_SIZE, MAX_PAGE_SIZE = 20, 100
CHANNELS = ("inbox", "email")


def _user():
    try:
        verify_jwt_in_request(optional=True)
    except Exception:  # a bad token: treated as not signed in (401)
        return None
    user = current_app.appbuilder.sm.current_user
    return user if user is not None and getattr(user, "id", None) is not None else None


def record_url_for(spec, entity_name: str, record_id: int) -> str:
    return f"/{spec.entity(entity_name).snake}/show/{record_id}"


def record_url(entity_name: str, record_id: int) -> str:
    return record_url_for(current_portal().spec, entity_name, record_id)


def inbox_page(user, unread_only: bool, page: int, page_size: int) -> dict:
    """The caller's notifications (newest first) in their language, through their Viewer: counted and paged in SQL,
    only the page rendered."""
    portal = current_portal()
    session = current_app.appbuilder.session
    viewer = viewer_for(user)
    total, unread = inbox_counts(session.connection(), portal, viewer, user.id)
    rows, records = inbox_rows(session, portal, viewer, user.id, unread_only, page_size, page * page_size)
    locale = current_locale()
    result = []
    for row in rows:
        record = records.get(row.entity, {}).get(row.record_id)
        result.append({"id": row.id, "reminder": row.reminder, "entity": row.entity, "record_id": row.record_id,
                       "event": row.event, "text": render_text(portal, viewer, locale, row, record),
                       "url": record_url(row.entity, row.record_id) if record is not None else None,
                       "created_on": row.created_on.isoformat(), "read": row.read_on is not None})
    return {"count": unread if unread_only else total, "unread": unread, "result": result}


def mark_read(user, notification_id: int | None) -> bool:
    """Marks one (or, with None, every) notification of the user read; False when it is not theirs."""
    session = current_app.appbuilder.session
    table = current_portal().metadata.tables[NOTIFICATIONS_TABLE]
    now = dt.datetime.now().replace(microsecond=0)
    query = update(table).where(table.c.user_id == user.id, table.c.read_on.is_(None))
    if notification_id is not None:
        owner = session.execute(select(table.c.user_id).where(table.c.id == notification_id)).scalar()
        if owner != user.id:
            return False
        query = query.where(table.c.id == notification_id)
    session.execute(query.values(read_on=now))
    session.commit()
    return True


def reminder_names() -> list[str]:
    return [r.name for r in current_portal().spec.reminders]


def channel_names() -> list[str]:
    return list(CHANNELS) + sorted({c for r in current_portal().spec.reminders for c in r.channels if c.startswith("webhook:")})


def reminder_choices(user) -> list[tuple[str, str]]:
    """(name, label in the reader's language) of the reminders about entities the user may read."""
    viewer, locale = viewer_for(user), current_locale()
    return [(r.name, r.title(locale)) for r in current_portal().spec.reminders if viewer.may_read(r.entity)]


def channel_choices() -> list[tuple[str, str]]:
    labels = {"inbox": gettext("Inbox"), "email": gettext("E-mail")}
    return [(name, labels.get(name) or gettext("Webhook %(name)s", name=name.partition(":")[2]))
            for name in channel_names()]


def read_settings(user) -> dict:
    from app.runtime.locale import UserLocale

    session = current_app.appbuilder.session
    table = current_portal().metadata.tables[SETTINGS_TABLE]
    row = session.execute(select(table.c.muted_reminders, table.c.muted_channels).where(table.c.user_id == user.id)).first()
    saved = session.get(UserLocale, user.id)
    return {"language": saved.locale if saved else current_app.config["BABEL_DEFAULT_LOCALE"],
            "muted_reminders": json.loads(row[0]) if row else [], "muted_channels": json.loads(row[1]) if row else []}


def _some(names: list) -> str:
    """The first few of a list of refused names (a junk payload of thousands makes no megabyte message)."""
    shown = ", ".join(str(n)[:60] for n in names[:5])
    return shown if len(names) <= 5 else gettext("%(names)s and %(count)d more", names=shown, count=len(names) - 5)


def save_settings(user, payload) -> dict:
    """Validates everything before writing anything; raises ValueError with a localized message."""
    from app.runtime.locale import UserLocale

    if not isinstance(payload, dict):
        raise ValueError(gettext("The body must be a JSON object."))
    unknown = sorted(set(payload) - {"language", "muted_reminders", "muted_channels"})
    if unknown:
        raise ValueError(gettext("Unknown setting: %(name)s.", name=_some(unknown)))
    current = read_settings(user)
    language = payload.get("language", current["language"])
    if not isinstance(language, str) or language not in current_app.config["LANGUAGES"]:
        raise ValueError(gettext("Unknown language: %(name)s.", name=str(language)[:40]))
    lists = {}
    for key, known, message in (("muted_reminders", reminder_names(), _l("Unknown reminder: %(name)s.")),
                                ("muted_channels", channel_names(), _l("Unknown channel: %(name)s."))):
        value = payload.get(key, current[key])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(gettext("%(name)s must be a list of names.", name=key))
        bad = [v for v in value if v not in known]
        if bad:
            raise ValueError(str(message) % {"name": _some(bad)})
        lists[key] = sorted(set(value))
    session = current_app.appbuilder.session
    table = current_portal().metadata.tables[SETTINGS_TABLE]
    values = {k: json.dumps(v) for k, v in lists.items()}
    if session.execute(select(table.c.user_id).where(table.c.user_id == user.id)).first():
        session.execute(update(table).where(table.c.user_id == user.id).values(**values))
    else:
        session.execute(table.insert().values(user_id=user.id, **values))
    saved = session.get(UserLocale, user.id)
    if saved is None:
        session.add(UserLocale(user_id=user.id, locale=language))
    else:
        saved.locale = language
    session.commit()
    return read_settings(user)


class NotificationsApi(BaseApi):
    """Every signed-in user's own inbox (no FAB permission: it only ever shows the caller's rows)."""

    resource_name = "notifications"
    class_permission_name = "Notifications"
    base_permissions = []
    openapi_spec_tag = "Notifications"

    @api_expose("", methods=["GET"])
    @safe
    def inbox(self):
        """The caller's notifications
        ---
        get:
          responses:
            200:
              description: count, unread and a page of notifications
        """
        user = _user()
        if user is None:
            return self.response_401()
        try:
            page = bounded_int_arg("page", 0, 0, 100_000)
            size = bounded_int_arg("page_size", PAGE_SIZE, 1, MAX_PAGE_SIZE)
        except BadArgument as exc:
            return self.response_400(message=str(exc))
        return self.response(200, **inbox_page(user, request.args.get("unread") in ("1", "true"), page, size))

    @api_expose("/<int:pk>/read", methods=["POST"])
    @safe
    def read_one(self, pk):
        """Mark one notification read
        ---
        post:
          responses:
            200:
              description: marked read
        """
        user = _user()
        if user is None:
            return self.response_401()
        if not mark_read(user, pk):
            return self.response_404()
        return self.response(200, message=gettext("Marked as read."))

    @api_expose("/read_all", methods=["POST"])
    @safe
    def read_all(self):
        """Mark every notification read
        ---
        post:
          responses:
            200:
              description: marked read
        """
        user = _user()
        if user is None:
            return self.response_401()
        mark_read(user, None)
        return self.response(200, message=gettext("Marked as read."))

    @api_expose("/settings", methods=["GET", "PUT"])
    @safe
    def settings(self):
        """The caller's language and mutes
        ---
        get:
          responses:
            200:
              description: language, muted_reminders, muted_channels
        put:
          responses:
            200:
              description: saved
            400:
              description: an unknown language, reminder or channel
        """
        user = _user()
        if user is None:
            return self.response_401()
        if request.method == "GET":
            return self.response(200, **read_settings(user))
        try:
            return self.response(200, **save_settings(user, request.get_json(silent=True)))
        except ValueError as exc:
            return self.response_400(message=str(exc))


class InboxView(BaseView):
    route_base = "/inbox"
    default_view = "index"
    base_permissions = []  # every signed-in user has their own inbox

    def _login(self):
        return redirect(url_for(self.appbuilder.sm.auth_view.__class__.__name__ + ".login", next=request.url))

    @expose("/")
    def index(self):
        user = _user()
        if user is None:
            return self._login()
        try:
            page = bounded_int_arg("page", 0, 0, 100_000)
        except BadArgument:
            abort(400)
        unread_only = request.args.get("unread") == "1"
        data = inbox_page(user, unread_only, page, PAGE_SIZE)
        for n in data["result"]:  # the page shows times in the reader's locale; the API keeps ISO
            n["when"] = format_datetime(dt.datetime.fromisoformat(n["created_on"]), "medium")
        pages = max(1, -(-data["count"] // PAGE_SIZE))
        return self.render_template("portal/inbox.html", title=_l("Inbox"), data=data, page=page, pages=pages,
                                    unread_only=unread_only)

    @expose("/<int:pk>/read", methods=["POST"])
    def read_one(self, pk):
        user = _user()
        if user is None:
            return self._login()
        if not mark_read(user, pk):
            abort(404)
        return redirect(_local(request.form.get("next")) or url_for("InboxView.index"))

    @expose("/read_all", methods=["POST"])
    def read_all(self):
        user = _user()
        if user is None:
            return self._login()
        mark_read(user, None)
        flash(gettext("Marked as read."), "info")
        return redirect(url_for("InboxView.index"))

    @expose("/settings", methods=["GET", "POST"])
    def settings(self):
        user = _user()
        if user is None:
            return self._login()
        if request.method == "POST":
            try:
                save_settings(user, {"language": request.form.get("language", ""),
                                     "muted_reminders": request.form.getlist("muted_reminders"),
                                     "muted_channels": request.form.getlist("muted_channels")})
                flash(gettext("Settings saved."), "info")
                return redirect(url_for("InboxView.settings"))
            except ValueError as exc:
                flash(str(exc), "danger")
        return self.render_template("portal/inbox_settings.html", title=_l("Notification settings"),
                                    settings=read_settings(user), reminders=reminder_choices(user),
                                    channels=channel_choices(), languages=current_app.config["LANGUAGES"])


def _local(target: str | None) -> str | None:
    """A path on this site only: `next` comes from a form anyone can post (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")) or "\\" in target:
        return None
    return target


def register(app, appbuilder) -> None:
    appbuilder.add_api(NotificationsApi)
    appbuilder.add_view_no_menu(InboxView)

    @app.context_processor
    def _bell():
        def portal_unread_count() -> int:
            user = current_app.appbuilder.sm.current_user
            if user is None or getattr(user, "id", None) is None:
                return 0
            return unread_count(user.id, viewer_for(user))

        def portal_latest_notifications(limit: int = 5) -> list:
            user = current_app.appbuilder.sm.current_user
            if user is None or getattr(user, "id", None) is None:
                return []
            return inbox_page(user, False, 0, limit)["result"]

        return {"portal_unread_count": portal_unread_count, "portal_latest_notifications": portal_latest_notifications}
