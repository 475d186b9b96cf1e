"""FAB's security manager with per-request caching of permission checks, fewer queries per request and
sign-in rate limits.

FAB asks the database once per menu item and button (about 40 queries per page here); the
answers cannot change within a request, so each user's permission set is read once per request,
in one statement for all of the user's roles. The signed-in user is loaded with roles and groups
in one statement, and the Public role's permissions (checked first by every API call) in one.
"""
from __future__ import annotations

from flask_appbuilder.security.sqla.manager import SecurityManager
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from app.fab import PermissionCheckHook, assoc_permissionview_role
from app.runtime import ratelimit
from app.runtime.request_cache import request_cached


class PortalSecurityManager(PermissionCheckHook, SecurityManager):
    def user_may(self, user, permission_name: str, view_name: str) -> bool:
        """Every permission check of FAB's `has_access` for a signed-in user (via PermissionCheckHook)."""
        granted = request_cached(("permissions", getattr(user, "id", None)), lambda: self.get_user_permissions(user))
        return (permission_name, view_name) in granted

    def is_item_public(self, permission_name, view_name) -> bool:
        public = request_cached("public permissions", self._public_permissions)
        return (permission_name, view_name) in public

    def get_user_by_id(self, pk):
        """The user with roles and groups (FAB lazy-loads each: three statements per request)."""
        user = self.user_model
        return self.session.get(user, pk, options=[
            joinedload(user.roles), joinedload(user.groups).joinedload(self.group_model.roles)])

    def get_user_permissions(self, user) -> set[tuple[str, str]]:
        """(permission, view menu) pairs of all the user's roles, in one statement (FAB: one per role)."""
        granted, role_ids = set(), []
        for role in self.get_user_roles(user):
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
