"""Sync FAB permissions and the YAML roles at start-up, in a few bulk queries.

FAB's own per-view sync issues several queries per permission; with one view-menu per entity
we know the complete set up front, so we create what is missing and set each role's grants.
The YAML is the source of truth for the roles it declares: edits made to them in the Security
UI are replaced at the next start. Admin always gets every permission.
"""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from app.fab import Permission, PermissionView, Role, ViewMenu
from app.schema.spec import PortalSpec
from app.generate.permissions import (ACTIONS, DASHBOARDS_MENU, dashboard_view_menu, permission, report_view_menu, saved_view_menu,
                                      yaml_dashboard_menu)

# FAB pages every signed-in user needs: own profile and password
SELF_SERVICE = [
    ("can_userinfo", "UserDBModelView"), ("resetmypassword", "UserDBModelView"),
    ("can_this_form_get", "ResetMyPasswordView"), ("can_this_form_post", "ResetMyPasswordView"),
]


def entity_permission_pairs(spec: PortalSpec) -> set[tuple[str, str]]:
    """Every permission the portal's pages, APIs, reports and dashboards check."""
    pairs = set()
    for module in spec.modules:
        pairs.update({("menu_access", module.name), ("menu_access", dashboard_view_menu(module.name))})
        for entity in module.entities:
            pairs.update((permission(a), entity.name) for a in ACTIONS)
            pairs.add(("menu_access", entity.name))
        for report in module.reports:
            pairs.update({("can_read", report_view_menu(report.id)), ("menu_access", report_view_menu(report.id))})
        for view in module.views:
            pairs.update({("can_read", saved_view_menu(view.id)), ("menu_access", saved_view_menu(view.id))})
        for dashboard in module.dashboards:
            pairs.update({("can_read", yaml_dashboard_menu(dashboard.id)), ("menu_access", yaml_dashboard_menu(dashboard.id)),
                          ("menu_access", DASHBOARDS_MENU)})
    return pairs


def role_permission_pairs(spec: PortalSpec, role_name: str) -> set[tuple[str, str]]:
    role = spec.role(role_name)
    pairs = set()
    for module in spec.modules:
        for entity in module.entities:
            actions = role.actions(entity.name)
            pairs.update((permission(a), entity.name) for a in actions)
            if "read" in actions:
                pairs.update({("menu_access", entity.name), ("menu_access", module.name),
                              ("menu_access", dashboard_view_menu(module.name))})
        for report in module.reports:
            if report.id in role.reports:
                pairs.add(("can_read", report_view_menu(report.id)))
                if all("read" in role.actions(e) for e in report.entities):  # a source it cannot read: not offered
                    pairs.update({("menu_access", report_view_menu(report.id)), ("menu_access", module.name)})
        for view in module.views:
            if role_name in view.roles and "read" in role.actions(view.entity):
                pairs.update({("can_read", saved_view_menu(view.id)), ("menu_access", saved_view_menu(view.id)),
                              ("menu_access", module.name)})
        for dashboard in module.dashboards:  # its tiles are then shown only as far as the role may open them
            if role_name in dashboard.roles:
                pairs.update({("can_read", yaml_dashboard_menu(dashboard.id)), ("menu_access", yaml_dashboard_menu(dashboard.id)),
                              ("menu_access", DASHBOARDS_MENU)})
    return pairs


def _permission_views(session, pairs: set[tuple[str, str]]) -> dict[tuple[str, str], PermissionView]:
    """Existing permission-views for `pairs`, creating the missing ones."""
    query = select(PermissionView).options(joinedload(PermissionView.permission), joinedload(PermissionView.view_menu))
    existing = {(pv.permission.name, pv.view_menu.name): pv for pv in session.scalars(query).unique()
                if pv.permission and pv.view_menu}
    missing = pairs - existing.keys()
    if missing:
        permissions = {p.name: p for p in session.scalars(select(Permission))}
        menus = {v.name: v for v in session.scalars(select(ViewMenu))}
        for perm_name, menu_name in sorted(missing):
            perm = permissions.get(perm_name) or permissions.setdefault(perm_name, Permission(name=perm_name))
            menu = menus.get(menu_name) or menus.setdefault(menu_name, ViewMenu(name=menu_name))
            pv = PermissionView(permission=perm, view_menu=menu)
            session.add(pv)
            existing[(perm_name, menu_name)] = pv
    return existing


def sync_permissions(appbuilder, spec: PortalSpec) -> None:
    session = appbuilder.session
    sm = appbuilder.sm
    entity_pairs = entity_permission_pairs(spec)
    all_views = _permission_views(session, entity_pairs)

    admin = sm.find_role(sm.auth_role_admin)
    have = set(admin.permissions)
    admin.permissions.extend(all_views[p] for p in sorted(entity_pairs) if all_views[p] not in have)

    roles = {r.name: r for r in session.scalars(select(Role))}
    for role_spec in spec.roles:
        role = roles.get(role_spec.name) or Role(name=role_spec.name)
        session.add(role)
        wanted = [all_views[p] for p in sorted(role_permission_pairs(spec, role_spec.name))]
        wanted += [all_views[p] for p in SELF_SERVICE if p in all_views]
        if set(role.permissions) != set(wanted):
            role.permissions = wanted
    session.commit()
