"""FAB's security manager with per-request caching of permission checks and sign-in rate limits.

FAB asks the database once per menu item and button (about 40 queries per page here); the
answers cannot change within a request, so each user's permission set is read once per request.
"""
from __future__ import annotations

from flask_appbuilder.security.sqla.manager import SecurityManager

from . import ratelimit
from .request_cache import request_cached


class PortalSecurityManager(SecurityManager):
    def _has_view_access(self, user, permission_name: str, view_name: str) -> bool:
        granted = request_cached(("permissions", getattr(user, "id", None)), lambda: self.get_user_permissions(user))
        return (permission_name, view_name) in granted

    def is_item_public(self, permission_name, view_name) -> bool:
        public = request_cached("public permissions", lambda: {(p.permission.name, p.view_menu.name) for p in self.get_public_permissions() or []})
        return (permission_name, view_name) in public

    def create_limiter(self, app):
        return ratelimit.create_limiter(app)

    def auth_user_db(self, username, password):
        user = super().auth_user_db(username, password)
        if user is None:
            ratelimit.note_login_failure(username)
        return user
