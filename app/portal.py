"""Everything one portal app owns, in one object: `app.extensions["portal"]`, read with `current_portal()`.

Nothing about a portal lives in module globals, so several apps (tests, or two portals in one process)
never see each other's spec, models, tables, caches or rules.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flask import Flask, current_app
from sqlalchemy import MetaData

from app.schema.spec import PortalSpec

if TYPE_CHECKING:  # record_rules imports access, which imports this module
    from app.rules.record_rules import RuleStep

EXTENSION = "portal"
FORM_CACHE_SIZE = 256  # per-viewer form classes (scoping.form_without_fields): few distinct field sets per app


class BoundedCache(OrderedDict):
    """A small LRU dict: keeps the `limit` most recently used entries; safe to share between request threads."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.lock = threading.Lock()

    def get_or_make(self, key, make):
        with self.lock:
            if key in self:
                self.move_to_end(key)
                return self[key]
        value = make()  # outside the lock: two threads may both make it; the first one kept wins
        with self.lock:
            value = self.setdefault(key, value)
            self.move_to_end(key)
            if len(self) > self.limit:
                self.popitem(last=False)
        return value


@dataclass
class Portal:
    spec: PortalSpec
    metadata: MetaData  # the generated tables of this app only (FAB's own tables are on Model.metadata)
    models: dict = field(default_factory=dict)
    rule_steps: list["RuleStep"] = field(default_factory=lambda: _default_steps())  # record_rules.py: the write path
    form_cache: BoundedCache = field(default_factory=lambda: BoundedCache(FORM_CACHE_SIZE))
    rollups: object = None  # app/rules/rollups.py Rollups, set by its install() when the app is made
    line_versions: object = None  # app/rules/line_versions.py LineVersions, set by its install()
    history: object = None  # app/rules/history.py HistoryRecorder, set by its install()
    notifier: object = None  # app/rules/notifications.py Notifier, set by its install()
    schema_changes: list = field(default_factory=list)  # what start-up added to the database (database.ensure_tables)
    report_cache: object = None  # app/data/reports/cache.py: a flask_caching Cache made on first use (False: off)
    change_signals: object = None  # app/data/changes.py ChangeSignals, set by install_change_signals
    metrics: object = None  # app/runtime/observability.py PortalMetrics, set by install_operations
    change_logs: dict = field(default_factory=dict)  # entity -> its change log Table (app/data/change_log.py)

    def all_tables(self) -> MetaData:
        """FAB's tables and this portal's in one MetaData (copies), for backup and restore."""
        from flask_appbuilder import Model

        combined = MetaData()
        for metadata in (Model.metadata, self.metadata):
            for table in metadata.sorted_tables:
                if table.name not in combined.tables:
                    table.to_metadata(combined)
        return combined

    def add_rule_step(self, step: "RuleStep") -> None:
        """Add a rule to every write of this portal (forms, API, import); it runs before the audit stamp."""
        from app.rules.record_rules import AuditStep

        at = next((i for i, s in enumerate(self.rule_steps) if isinstance(s, AuditStep)), len(self.rule_steps))
        self.rule_steps.insert(at, step)

    def remove_rule_step(self, step: "RuleStep") -> None:
        self.rule_steps.remove(step)


def _default_steps() -> list:
    from app.rules.record_rules import default_steps

    return default_steps()


def install(app: Flask, portal: Portal) -> Portal:
    app.extensions[EXTENSION] = portal
    return portal


def current_portal() -> Portal:
    return current_app.extensions[EXTENSION]


def portal_of(app: Flask) -> Portal:
    return app.extensions[EXTENSION]


# -- for hand-written pages (views/): who may open a report or dashboard, without FAB's permission names --

def report_link_name(report_id: str) -> str:
    """The menu link (and permission view-menu) name of a report."""
    from app.generate.permissions import report_view_menu

    return report_view_menu(report_id)


def dashboard_link_name(module: str) -> str:
    from app.generate.permissions import dashboard_view_menu

    return dashboard_view_menu(module)


def can_open_report(report) -> bool:
    """The signed-in user may read the report and every entity it counts (each source of a cross-entity report)."""
    sm = current_app.appbuilder.sm
    return sm.has_access("can_read", report_link_name(report.id)) and all(sm.has_access("can_read", e) for e in report.entities)


def can_open_dashboard(module: str) -> bool:
    return current_app.appbuilder.sm.has_access("menu_access", dashboard_link_name(module))


def yaml_dashboard_link_name(dashboard_id: str) -> str:
    """The menu link (and permission view-menu) name of a YAML dashboard (`dashboards:`)."""
    from app.generate.permissions import yaml_dashboard_menu

    return yaml_dashboard_menu(dashboard_id)


def dashboards_menu_name() -> str:
    from app.generate.permissions import DASHBOARDS_MENU

    return DASHBOARDS_MENU


def can_open_yaml_dashboard(dashboard_id: str) -> bool:
    """The signed-in user holds one of the dashboard's roles (or is Admin)."""
    return current_app.appbuilder.sm.has_access("can_read", yaml_dashboard_link_name(dashboard_id))
