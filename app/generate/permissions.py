"""One FAB permission view-menu per entity, with the portal's action names.

FAB would create can_list/can_show/can_add/... for the UI view and can_get/can_post/...
for the API; collapsing both onto `can_<action> on <Entity>` keeps boot fast and makes
one grant mean the same thing on every path.
"""
READ, CREATE, UPDATE, DELETE, IMPORT, EXPORT = "read", "create", "update", "delete", "import", "export"
ACTIONS = (READ, CREATE, UPDATE, DELETE, IMPORT, EXPORT)

VIEW_METHODS = {
    "list": READ, "show": READ, "download": READ, "lookup": READ, "preview": READ,
    "add": CREATE, "edit": UPDATE, "delete": DELETE,
    "export_data": EXPORT, "import_data": IMPORT,
    "transition": READ,  # workflows: who may take a transition is its `roles:` (app/rules/workflows.py)
    "bulk": READ,  # each row is then checked against the action's own permission (bulk_actions.py)
    # history, comments (app/generate/timeline.py, comments.py): whoever reads the record
    "timeline": READ, "add_comment": READ, "edit_comment": READ, "delete_comment": READ,
    "attachment_download": READ, "attachments_upload": UPDATE, "attachment_delete": UPDATE,
    "merge_page": UPDATE, "merge_lookup": UPDATE,  # merging also needs DELETE, checked by app/generate/merge.py
    "duplicates": READ,  # the duplicates page lists only pairs of records the user reads (app/generate/duplicates.py)
}
API_METHODS = {
    "get_list": READ, "get": READ, "info": READ,
    "post": CREATE, "put": UPDATE, "delete": DELETE,
    "export_data": EXPORT, "import_data": IMPORT,
    "transitions": READ, "take_transition": READ,  # workflows: a transition's `roles:` say who may take it
    "bulk": READ,
    "changes": READ,  # the change feed (change_feed.py)
    "get_history": READ, "get_comments": READ, "post_comment": READ, "put_comment": READ, "delete_comment": READ,
    "attachments_list": READ, "attachment_download": READ, "attachments_upload": UPDATE, "attachment_delete": UPDATE,
    "merge_records": UPDATE,  # and DELETE (app/generate/merge.py)
}


def permission(action: str) -> str:
    return f"can_{action}"


def entity_permissions() -> list[str]:
    """The permission list of both the view and the API of an entity (they share one view-menu).

    menu_access is included because FAB deletes, from every role, any permission on a
    view-menu that the class being registered does not list.
    """
    return [permission(action) for action in ACTIONS] + ["menu_access"]


def report_view_menu(report_id: str) -> str:
    """FAB view-menu of one report: `can_read` on it opens the report, `menu_access` lists it."""
    return f"Report:{report_id}"


def saved_view_menu(view_id: str) -> str:
    """FAB view-menu of one YAML view (`views:`): `can_read` opens it, `menu_access` lists it (its roles only)."""
    return f"View:{view_id}"


def dashboard_view_menu(module: str) -> str:
    return f"Dashboard:{module}"


DASHBOARDS_MENU = "Dashboards"  # the menu category of the YAML dashboards


def yaml_dashboard_menu(dashboard_id: str) -> str:
    """FAB view-menu of one YAML dashboard (`dashboards:`): `can_read` opens it, `menu_access` lists it (its roles)."""
    return f"Dashboards:{dashboard_id}"
