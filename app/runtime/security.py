"""FAB's security manager with per-request caching of permission checks, fewer queries per request and
sign-in rate limits.

FAB asks the database once per menu item and button (about 40 queries per page here); the
answers cannot change within a request, so each user's permission set is read once per request,
in one statement for all of the user's roles, and kept per set of roles until FAB's permission tables change
(their version is read with the user). The signed-in user is loaded with roles, groups, saved language and
that version in one statement, and the Public role's permissions (checked first by every API call) in one.
"""
from __future__ import annotations

import time

from flask_appbuilder.security.sqla.manager import SecurityManager
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from app.data.changes import SECURITY, TABLE as VERSIONS
from app.fab import PermissionCheckHook, assoc_permissionview_role
from app.runtime import ratelimit
from app.runtime.request_cache import request_cached


PERMISSIONS_SECONDS = 60


def _versions_table():
    from app.portal import current_portal

    return current_portal().metadata.tables[VERSIONS]


class PortalSecurityManager(PermissionCheckHook, SecurityManager):
    def __init__(self, appbuilder):
        self._kept_permissions: dict = {}  # (roles, security version) -> (until, pairs)
        super().__init__(appbuilder)
    def user_may(self, user, permission_name: str, view_name: str) -> bool:
        """Every permission check of FAB's `has_access` for a signed-in user (via PermissionCheckHook)."""
        return (permission_name, view_name) in self._granted(user)

    def _granted(self, user):
        """The user's permission set, read once per request."""
        return request_cached(("permissions", getattr(user, "id", None)), lambda: self.get_user_permissions(user))

    def signed_in_permissions(self) -> frozenset | None:
        """The permission set `user_may` reads for the user signed in to this session, when it is one kept per
        set of roles and permission version (the navbar's menu is cached by it, app/runtime/navbar.py); else None."""
        user = self.signed_in_user()
        if user is None or getattr(user, "id", None) is None:
            return None
        granted = self._granted(user)
        return granted if isinstance(granted, frozenset) else None

    def is_item_public(self, permission_name, view_name) -> bool:
        public = request_cached("public permissions", self._public_permissions)
        return (permission_name, view_name) in public

    def get_user_by_id(self, pk):
        """The user with roles, groups and saved language in one statement (FAB lazy-loads each: four
        statements per request). The language rides on the user as `portal_locale` (app/runtime/locale.py)."""
        from app.runtime.locale import UserLocale

        user = self.user_model
        try:
            pk = int(pk)
        except (TypeError, ValueError):
            return None
        saved = select(UserLocale.locale).where(UserLocale.user_id == user.id).scalar_subquery()
        versions = _versions_table()
        security = select(versions.c.version).where(versions.c.name == SECURITY).scalar_subquery()
        row = self.session.execute(
            select(user, saved.label("locale"), func.coalesce(security, 0).label("security"))
            .where(user.id == pk)
            .options(joinedload(user.roles), joinedload(user.groups).joinedload(self.group_model.roles))).unique().first()
        if row is None:
            return None
        row[0].portal_locale, row[0].portal_security_version = row[1], row[2]
        return row[0]

    def get_user_permissions(self, user) -> set[tuple[str, str]]:
        """(permission, view menu) pairs of all the user's roles, in one statement (FAB: one per role), kept per
        set of roles while FAB's permission tables keep their version (read with the user, get_user_by_id): a
        permission change anywhere is seen by every process at its next request. PERMISSIONS_SECONDS bounds
        writes made outside SQLAlchemy (no version moved)."""
        roles = self.get_user_roles(user)
        version = getattr(user, "portal_security_version", None)
        if version is None:  # a user loaded some other way (signing in): no version to trust
            return self._user_permissions(roles)
        key = (tuple(sorted((role.id, role.name) for role in roles)), version)
        kept = self._kept_permissions.get(key)
        if kept is None or kept[0] < time.monotonic():
            if len(self._kept_permissions) > 1000:  # old versions: nothing reads them again
                self._kept_permissions.clear()
            kept = self._kept_permissions[key] = (time.monotonic() + PERMISSIONS_SECONDS, frozenset(self._user_permissions(roles)))
        return kept[1]

    def _user_permissions(self, roles) -> set[tuple[str, str]]:
        granted, role_ids = set(), []
        for role in roles:
            if role.name in self.builtin_roles:
                granted |= self.get_role_permissions(role)
            else:
                role_ids.append(role.id)
        if role_ids:
            granted |= self._permission_pairs(assoc_permissionview_role.c.role_id.in_(role_ids))
        return granted

    def _public_permissions(self) -> set[tuple[str, str]]:
        role = self.role_model
        public_ids = select(role.id).where(role.name == self.auth_role_public).scalar_subquery()
        return self._permission_pairs(assoc_permissionview_role.c.role_id == public_ids)

    def _permission_pairs(self, role_condition) -> set[tuple[str, str]]:
        pv, permission, view_menu = self.permissionview_model, self.permission_model, self.viewmenu_model
        statement = (
            select(permission.name, view_menu.name)
            .select_from(assoc_permissionview_role)
            .join(pv, pv.id == assoc_permissionview_role.c.permission_view_id)
            .join(permission, permission.id == pv.permission_id)
            .join(view_menu, view_menu.id == pv.view_menu_id)
            .where(role_condition)
        )
        return {(p, v) for p, v in self.session.execute(statement)}

    def create_limiter(self, app):
        return ratelimit.create_limiter(app)

    def auth_user_db(self, username, password):
        user = super().auth_user_db(username, password)
        if user is None:
            ratelimit.note_login_failure(username)
        _audit_login(user, username)
        return user


def _audit_login(user, username) -> None:
    """A sign-in (form or API) in the audit log. A failure is recorded the same way whether or not the username
    exists (no user id, the name as typed), so the log does not tell which names are real either."""
    from flask import has_request_context, request

    from app.data import audit

    method = "api" if has_request_context() and request.path.startswith("/api/") else "form"
    if user is not None:
        audit.record_event(audit.LOGIN, user_id=user.id, username=user.username, detail={"method": method})
    else:
        audit.record_event(audit.LOGIN_FAILED, username=str(username or "")[:256], detail={"method": method})
