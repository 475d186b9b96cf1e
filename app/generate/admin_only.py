"""APIs only Admin may call (the dead letters, the audit log): signed in by session or JWT, checked per call.

FAB's permission per method is not used (`base_permissions = []`): Admin's role is what decides, so a role edited
in the Security pages cannot be granted these by accident.
"""
from __future__ import annotations

from flask_appbuilder.api import BaseApi
from flask_jwt_extended import verify_jwt_in_request

from app.rules.access import current_viewer


class AdminOnlyApi(BaseApi):
    base_permissions = []  # Admin only, checked per call (`_refusal`)

    def _refusal(self):
        """None for Admin, else the 401 (not signed in) or 403 response to return."""
        verify_jwt_in_request(optional=True)
        if not self.appbuilder.sm.current_user:
            return self.response_401()
        if not current_viewer().is_admin:
            return self.response_403()
        return None
