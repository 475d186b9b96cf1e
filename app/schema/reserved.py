"""Names an entity may not take, and the database object names each entity produces.

An entity `Foo` becomes the model class `Foo`, the page `/foo/` (blueprint `FooView`), the API
`/api/v1/foo/` (blueprint `FooApi`) and the permission view-menu `Foo`. Any of those that equals
(case-insensitively) something Flask-AppBuilder or the portal registers itself would shadow it or
crash start-up, so those names are refused. tests/test_check_contract.py boots an app and
checks that this list still covers every route, endpoint, view-menu and model class it finds.
"""
from __future__ import annotations

from app.schema.spec import snake_case

# lowercase; compared with the entity name, its snake_case form, and name+"view" / name+"api"
RESERVED_NAMES = frozenset({
    # first path segments and API resources of FAB, Flask and the portal
    "api", "v1", "_openapi", "openapi", "swagger", "static", "portal-static", "appbuilder", "lang", "back",
    "login", "logout", "register", "registeruser", "users", "user", "roles", "role", "groups", "group",
    "permissions", "permission", "permissionviews", "viewmenus", "viewmenu", "menu", "security",
    "resetmypassword", "resetpassword", "userinfo", "userinfoeditview", "userstatschartview", "locale",
    "reports", "report", "dashboard", "healthz", "readyz", "metrics",
    "views", "saved_views", "savedviewpages", "savedviewsapi", "search", "searchpage", "searchapi",  # issue 14
    "dashboards", "dashboardsview", "dashboardapi",  # issue 15: YAML dashboards (views/dashboard_pages.py)
    # blueprint / endpoint names (view classes), compared with <Entity>View and <Entity>Api
    "authdbview", "authldapview", "authoauthview", "authremoteuserview", "menuapi", "openapi",
    "securityapi", "swaggerview", "localeview", "utilview", "dashboardview", "reportsview", "reportapi",
    "portalindexview", "indexview", "permissionmodelview", "permissionviewmodelview", "viewmenumodelview",
    "resetmypasswordview", "resetpasswordview", "rolemodelview", "userdbmodelview", "userldapmodelview",
    "useroauthmodelview", "userremoteusermodelview", "usergroupmodelview", "groupmodelview",
    "userinfoeditview", "userstatschartview", "registeruserdbview", "registeruseroauthview",
    "registerusermodelview", "healthview", "metricsview", "health", "prometheus_metrics",
    # FAB's permission view-menus (menu entries and categories) that an entity name could spell
    "base permissions", "views/menus", "list users", "list roles", "list groups", "user's statistics",
    "permission on views/menus",
    # FAB's own SQLAlchemy model classes (a second class of the same name breaks their relationships)
    "apikey", "permissionview", "registeruser", "userlocale",
    # notifications: the dead-letter page, API and their permission view-menus (app/data/dead_letters.py)
    "deadletters", "deadletterview", "deadletterapi", "deadlettersapi", "notifications",
    "notificationsapi", "inbox", "inboxview",  # issue 14: the inbox page and API
    "audit", "auditview", "auditapi", "auditlog",  # issue 16: the audit log page, API and menu entry
})

# table names the database or the stack keep for themselves
RESERVED_TABLE_PREFIXES = ("ab_", "sqlite_", "pg_")
# the portal's own tables: autonumber counters, rollup fingerprints, record history, comments, attachments, outbox
RESERVED_TABLES = frozenset({"ab", "alembic_version", "portal_counters", "portal_rollups", "portal_history",
                             "portal_comments", "portal_attachments", "portal_outbox", "portal_saved_views",
                             "portal_notifications", "portal_reminder_fired", "portal_notification_settings",
                             "portal_audit", "portal_retention_runs"})  # issue 16: audit log, retention runs

MAX_IDENTIFIER_BYTES = 63  # PostgreSQL truncates longer names silently


def entity_name_forms(name: str) -> set[str]:
    """The forms of an entity name that must not meet a reserved name."""
    lower = name.lower()
    return {lower, snake_case(name), f"{lower}view", f"{lower}api"}


def reserved_clash(name: str) -> str | None:
    """The reserved name an entity name clashes with, or None."""
    return next((form for form in sorted(entity_name_forms(name)) if form in RESERVED_NAMES), None)


def reserved_table(table: str) -> bool:
    return table in RESERVED_TABLES or table.startswith(RESERVED_TABLE_PREFIXES)
