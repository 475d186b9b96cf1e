"""FAB's security manager with per-request caching of permission checks.

FAB asks the database once per menu item and button (about 40 queries per page here); the
answers cannot change within a request, so each user's permission set is read once per request.
"""
from __future__ import annotations

from flask import has_request_context, request
from flask_appbuilder.security.sqla.manager import SecurityManager


class PortalSecurityManager(SecurityManager):
    def _cached(self, key, compute):
        if not has_request_context():
            return compute()
        cache = request.environ.setdefault("portal.permissions", {})
        if key not in cache:
            cache[key] = compute()
        return cache[key]

    def _has_view_access(self, user, permission_name: str, view_name: str) -> bool:
        granted = self._cached(("user", getattr(user, "id", None)), lambda: self.get_user_permissions(user))
        return (permission_name, view_name) in granted

    def is_item_public(self, permission_name, view_name) -> bool:
        public = self._cached("public", lambda: {(p.permission.name, p.view_menu.name) for p in self.get_public_permissions() or []})
        return (permission_name, view_name) in public
