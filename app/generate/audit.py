"""The access audit log for Admin (the table and `record_event` are app/data/audit.py):

- page `/audit/` (menu "Security" → "Audit log"): entries newest first, filtered by kind, user, entity and a date
  range, paged, with a capped count (PORTAL_COUNT_CAP);
- `GET /api/v1/audit` (JWT or session) with the same filters as query arguments (`?kind=login&user=ada&since=
  2026-01-01&until=2026-02-01&entity=Customer&page=0&page_size=25`) or as rison `?q=(kind:login,page:0)`, answering
  `{"count", "count_capped", "result": [{id, at, kind, user_id, username, entity, detail, remote_addr}]}`;
  `GET /api/v1/audit/<id>` one entry.
The log is append-only: there is no route that edits or deletes an entry (other methods answer 405).
Other users get 403 (401 / the sign-in page when not signed in).

Permission changes are recorded by a flush listener on the app's session (`install_permission_audit`): a user's
roles or active flag, a role's permissions, a role or user created or deleted, in the transaction of the change.
Only changes made in a request are recorded (start-up's permission sync is the schema's doing, not a person's).
"""
from __future__ import annotations

import datetime as dt

from flask import abort, current_app, flash, has_request_context, redirect, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.api import expose as api_expose, safe
from flask_babel import lazy_gettext as _l
from sqlalchemy import event, inspect

from app.data import audit
from app.data.dead_letters import BadPaging, MAX_PAGE_SIZE, PAGE_SIZE
from app.generate.paging import count_cap
from app.generate.admin_only import AdminOnlyApi
from app.generate.paged_api import rison
from app.rules.access import current_viewer

FILTER_KEYS = ("kind", "user", "entity", "since", "until")
KIND_LABELS = {audit.LOGIN: _l("Sign-in"), audit.LOGIN_FAILED: _l("Failed sign-in"), audit.EXPORT: _l("Export"),
               audit.IMPORT: _l("Import"), audit.MERGE: _l("Merge"), audit.RETENTION: _l("Retention"),
               audit.PERMISSION: _l("Permission change")}


class BadAuditQuery(ValueError):
    pass


def _moment(text: str, what: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(text) if "T" in text or " " in text else \
            dt.datetime.combine(dt.date.fromisoformat(text), dt.time())
    except ValueError:
        raise BadAuditQuery(str(_l("%(what)s must be a date like 2026-01-31 or a date and time like "
                                   "2026-01-31T08:00:00.", what=what))) from None


def read_query(args: dict) -> tuple[dict, int, int]:
    """(filters for audit.conditions, page, page size) from query arguments or a rison mapping; raises
    BadAuditQuery with a localized message."""
    unknown = sorted(set(args) - set(FILTER_KEYS) - {"page", "page_size", "q"})
    if unknown:
        raise BadAuditQuery(str(_l("Unknown argument: %(name)s.", name=unknown[0][:40])))
    found = {}
    for key in FILTER_KEYS:
        value = args.get(key)
        if value in (None, ""):
            continue
        if not isinstance(value, (str, int)) or isinstance(value, bool) or len(str(value)) > 256:
            raise BadAuditQuery(str(_l("%(name)s must be text.", name=key)))
        found[key] = str(value)
    if "kind" in found and found["kind"] not in audit.KINDS:
        raise BadAuditQuery(str(_l("kind must be one of %(kinds)s.", kinds=", ".join(audit.KINDS))))
    if "since" in found:
        found["since"] = _moment(found["since"], "since")
    if "until" in found:
        until = found["until"]
        found["until"] = _moment(until, "until") + (dt.timedelta(days=1) if len(until) == 10 else dt.timedelta())
    page, size = args.get("page", 0), args.get("page_size", PAGE_SIZE)
    try:
        page, size = int(page if page != "" else 0), int(size if size != "" else PAGE_SIZE)
    except (TypeError, ValueError):
        raise BadPaging(str(_l("page must be a whole number from 0."))) from None
    if not 0 <= page <= 100_000:
        raise BadPaging(str(_l("page must be a whole number from 0.")))
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise BadPaging(str(_l("page_size must be a number from 1 to %(max)d.", max=MAX_PAGE_SIZE)))
    return found, page, size


def _read(appbuilder, filters: dict, page: int, size: int):
    with appbuilder.session.get_bind().connect() as connection:
        return audit.read_events(connection, audit.conditions(**filters), page, size, count_cap())


class AuditApi(AdminOnlyApi):
    route_base = "/api/v1/audit"
    resource_name = "audit"
    class_permission_name = "AuditApi"
    openapi_spec_tag = "Audit log"

    @api_expose("", methods=["GET"])
    @api_expose("/", methods=["GET"])
    @rison({})  # the project's: a bad `q` ("(((" recurses in FAB's) is a 400
    @safe
    def list_events(self, **kwargs):
        """Audit entries, newest first (Admin)
        ---
        get:
          parameters:
          - {in: query, name: kind, schema: {type: string, enum: [login, login_failed, export, import, merge, retention, permission]}}
          - {in: query, name: user, schema: {type: string}, description: a username, or a user id}
          - {in: query, name: entity, schema: {type: string}}
          - {in: query, name: since, schema: {type: string}, description: 'date or date-time, inclusive'}
          - {in: query, name: until, schema: {type: string}, description: 'date (inclusive) or date-time (exclusive)'}
          - {in: query, name: page, schema: {type: integer, minimum: 0}}
          - {in: query, name: page_size, schema: {type: integer, minimum: 1, maximum: 100}}
          - {in: query, name: q, schema: {type: string}, description: 'the same keys as rison: (kind:login,page:0)'}
          responses:
            200: {description: 'count, count_capped, result: [{id, at, kind, user_id, username, entity, detail, remote_addr}]'}
            400: {description: bad argument}
            401: {description: not signed in}
            403: {description: not Admin}
        """
        refusal = self._refusal()
        if refusal is not None:
            return refusal
        args = request.args.to_dict()
        if "q" in args:  # rison: the same keys in one argument
            given = kwargs.get("rison")
            if not isinstance(given, dict) or len(args) > 1:
                return self.response_400(message=str(_l("q must be a rison mapping like (kind:login), "
                                                        "given without other arguments.")))
            args = given
        try:
            filters, page, size = read_query(args)
        except (BadAuditQuery, BadPaging) as problem:
            return self.response_400(message=str(problem))
        count, capped, rows = _read(self.appbuilder, filters, page, size)
        return self.response(200, count=count, count_capped=capped, result=[audit.event_json(r) for r in rows])

    @api_expose("/<int:event_id>", methods=["GET"])
    @safe
    def get_event(self, event_id: int):
        """One audit entry (Admin)
        ---
        get:
          parameters:
          - {in: path, name: event_id, required: true, schema: {type: integer}}
          responses:
            200: {description: 'result: {id, at, kind, user_id, username, entity, detail, remote_addr}'}
            404: {description: no such entry}
        """
        refusal = self._refusal()
        if refusal is not None:
            return refusal
        with self.appbuilder.session.get_bind().connect() as connection:
            row = connection.execute(audit.AUDIT.select().where(audit.AUDIT.c.id == event_id)).first()
        return self.response(200, result=audit.event_json(row)) if row is not None else self.response_404()


class AuditView(BaseView):
    route_base = "/audit"
    default_view = "index"
    base_permissions = []  # Admin only, checked per request

    @expose("/")
    def index(self):
        sm = self.appbuilder.sm
        if not sm.current_user:
            return redirect(url_for(sm.auth_view.__class__.__name__ + ".login", next=request.url))
        if not current_viewer().is_admin:
            abort(403)
        args = {k: v for k, v in request.args.items() if k in FILTER_KEYS + ("page", "page_size")}
        try:
            filters, page, size = read_query(args)
        except (BadAuditQuery, BadPaging) as problem:
            flash(str(problem), "danger")
            filters, page, size = {}, 0, PAGE_SIZE
        count, capped, rows = _read(self.appbuilder, filters, page, size)
        pages = max(1, -(-count // size))
        shown = {k: v for k, v in args.items() if k in FILTER_KEYS and v}
        return self.render_template("portal/audit.html", title=_l("Audit log"), rows=rows, count=count,
                                    capped=capped, page=page, size=size, pages=pages, kinds=KIND_LABELS,
                                    shown=shown, details={r.id: audit.event_json(r)["detail"] for r in rows})


# -- permission changes ------------------------------------------------------------------------------------------

def _names(objects) -> list[str]:
    return sorted(str(getattr(o, "name", None) or o) for o in objects if o is not None)


def _permission_names(objects) -> list[str]:
    return sorted(f"{getattr(pv.permission, 'name', '?')} on {getattr(pv.view_menu, 'name', '?')}"
                  for pv in objects if pv is not None)


def _changes(session, sm) -> list[dict]:
    """One entry per user or role the flush creates, deletes or whose roles / permissions / active flag it changes."""
    user_model, role_model = sm.user_model, sm.role_model
    found = []
    for obj in session.new:
        if isinstance(obj, user_model):
            found.append({"action": "user_created", "user": obj.username, "roles": _names(obj.roles or [])})
        elif isinstance(obj, role_model):
            found.append({"action": "role_created", "role": obj.name,
                          "permissions": _permission_names(obj.permissions or [])})
    for obj in session.dirty:
        state = inspect(obj)
        if isinstance(obj, user_model):
            roles, active = state.attrs.roles.history, state.attrs.active.history
            change = {}
            if roles.added or roles.deleted:
                change.update(added=_names(roles.added), removed=_names(roles.deleted))
            if active.added and active.deleted and bool(active.added[0]) != bool(active.deleted[0]):
                change["active"] = bool(active.added[0])
            if change:
                found.append({"action": "user_changed", "user": obj.username, **change})
        elif isinstance(obj, role_model):
            permissions, name = state.attrs.permissions.history, state.attrs.name.history
            change = {}
            if permissions.added or permissions.deleted:
                change.update(added=_permission_names(permissions.added),
                              removed=_permission_names(permissions.deleted))
            if name.added and name.deleted:
                change["renamed_from"] = str(name.deleted[0])
            if change:
                found.append({"action": "role_changed", "role": obj.name, **change})
    for obj in session.deleted:
        if isinstance(obj, user_model):
            found.append({"action": "user_deleted", "user": obj.username})
        elif isinstance(obj, role_model):
            found.append({"action": "role_deleted", "role": obj.name})
    return found


def install_permission_audit(session) -> None:
    """Record permission changes made in requests, in the flush's own transaction (the listener is on this app's
    own session class, so other apps in the process are not affected)."""
    def after_flush(flush_session, flush_context):
        if not has_request_context():
            return
        changes = _changes(flush_session, current_app.appbuilder.sm)
        for detail in changes:
            audit.record_event(audit.PERMISSION, detail=detail, session=flush_session.connection())

    event.listen(session, "after_flush", after_flush)


def register_audit(appbuilder) -> None:
    """The page (menu entry for Admin under Security), the API and the permission-change listener."""
    appbuilder.add_view_no_menu(AuditView)
    appbuilder.add_link("AuditLog", href="/audit/", label=_l("Audit log"), icon="fa-history", category="Security")
    appbuilder.add_api(AuditApi)
    install_permission_audit(appbuilder.session)
