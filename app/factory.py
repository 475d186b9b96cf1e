"""Application factory: load -> check -> build the portal described by the YAML schemas.

Everything the portal builds for an app (spec, models, tables, rule steps, caches) is kept on one
`Portal` object (app/portal.py), so several apps can live in one process. Hand-written pages are not
imported from here: config `PORTAL_PAGES` names their package, whose `register(appbuilder, portal)`
is called once the generated views exist (views/ may import app/, never the other way round).
"""
from __future__ import annotations

import importlib
import logging
import os
import secrets
from pathlib import Path

from flask import Flask
from flask_appbuilder import AppBuilder, IndexView, Model
from flask_appbuilder.utils.legacy import get_sqla_class

from app.fieldtypes import field_types
from app.data.change_log import install_pruning as install_change_log_pruning
from app.data.changes import install_change_signals, versions_table
from app.data.dead_letters import register_dead_letters
from app.data.delivery import install as install_delivery
from app.data.retention import install as install_retention
from app.generate import register_portal
from app.generate.input_errors import install_input_checks
from app.generate.saved_views import install_saved_views, saved_views_table
from app.portal import Portal, install
from app.rules.history import install as install_history
from app.rules.notifications import install as install_notifications
from app.rules.notification_passes import install as install_notification_passes
from app.generate.inbox import register as register_inbox
from app.runtime.navbar import register as register_navbar
from app.generate.audit import register_audit
from app.rules.line_versions import install as install_line_versions
from app.rules.rollups import fill_new_rollups, install as install_rollups
from app.rules.siblings import fill_new_siblings
from app.runtime.database import configure_engine, ensure_tables, forget_connections, startup_lock
from app.runtime.locale import compile_catalogs, install_locale_handling
from app.runtime.operations import install_operations
from app.runtime.protection import protect_requests, require_secret_key
from app.runtime.security import PortalSecurityManager
from app.schema import SchemaProblems, load_portal

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger(__name__)


def create_app(config: dict | object | None = None) -> Flask:
    """Build a portal app; raises SchemaProblems (with every problem) if the schemas don't check."""
    app = Flask("app", template_folder=str(ROOT / "views" / "templates"),
                static_folder=str(ROOT / "views" / "static"), static_url_path="/portal-static")
    app.config.from_object("config")
    if isinstance(config, dict):
        app.config.update(config)
    elif config is not None:
        app.config.from_object(config)
    require_secret_key(app)
    app.config["SECRET_KEY"] = app.config.get("SECRET_KEY") or _local_secret_key(app)

    spec, problems = load_portal(app.config["PORTAL_SCHEMA_DIR"], field_types(app))
    if problems:
        raise SchemaProblems(problems)
    from app.generate.models import portal_metadata

    portal = install(app, Portal(spec=spec, metadata=portal_metadata()))
    saved_views_table(portal.metadata)  # personal views (app/generate/saved_views.py), created with the others
    versions_table(portal.metadata)  # a version per table, moved by every write (app/data/changes.py)

    db = get_sqla_class()()
    db.init_app(app)
    pages = importlib.import_module(app.config["PORTAL_PAGES"]) if app.config.get("PORTAL_PAGES") else None

    compile_catalogs(ROOT / "translations")
    appbuilder = AppBuilder(indexview=getattr(pages, "INDEX_VIEW", IndexView),
                            security_manager_class=PortalSecurityManager, base_template="portal/baselayout.html")
    with app.app_context():
        _create_database_dir(app.config["SQLALCHEMY_DATABASE_URI"])
        engine = db.engine
        configure_engine(engine)
        # tables, FAB's permissions and the YAML roles are written once, by one process at a time
        with startup_lock(engine):
            portal.models.update(register_models_and_tables(db, portal))
            install_change_signals(engine, portal, [Model.metadata, portal.metadata])  # report cache freshness
            install_rollups(db.session, portal)  # the app's own session: rollups kept on every flush
            install_line_versions(db.session, portal)  # a parent's row_version counts its lines
            install_history(db.session, portal)  # `history: true`: every flushed change recorded
            install_notifications(db.session, portal)  # event reminders: rows written with the change
            fill_new_rollups(engine, portal)  # a rollup field added to a database that has children
            fill_new_siblings(engine, portal)  # an address's parts, for stored addresses, when their columns are new
            appbuilder.init_app(app, db.session)
            register_portal(appbuilder, spec, portal.models)
            register_dead_letters(appbuilder)  # outbox messages that failed every attempt: Admin page + API
            register_audit(appbuilder)  # the access audit log: Admin page, API, permission-change listener
            register_inbox(app, appbuilder)  # /api/v1/notifications, /inbox/, the bell's count
            register_navbar(app)  # the navbar's menu, kept per permission set and language
            install_saved_views(appbuilder, portal)  # `views:` menu links, view pages and /api/v1/views/
            if pages is not None:
                pages.register(appbuilder, portal)
        install_locale_handling(app)
        protect_requests(app, appbuilder)
        install_input_checks(app)
        install_operations(app, appbuilder)
        install_delivery(app)  # the worker's "deliver" pass (app/data/delivery.py)
        install_change_log_pruning(app)  # the worker's "change-log" pass: retention of the change feed
        install_notification_passes(app)  # "reminders" (date reminders) and "notify" (email/webhooks to the outbox)
        install_retention(app)  # the worker's daily "retention" pass (app/data/retention.py)
        # nothing opened during start-up may be inherited by a forked worker (gunicorn --preload)
        db.session.remove()
        forget_connections(engine)

    from app.cli import portal_cli
    app.cli.add_command(portal_cli)
    return app


def register_models_and_tables(db, portal: Portal) -> dict:
    """The portal's models on its own MetaData; FAB's tables first (the portal's link to ab_user)."""
    from app.data.audit import audit_table
    from app.data import change_log
    from app.data.outbox import outbox_table
    from app.data.retention import retention_tables
    from app.generate.models import build_models

    models = build_models(portal.spec, portal.metadata)
    outbox_table(portal.metadata)  # notifications waiting for the worker (app/data/outbox.py)
    audit_table(portal.metadata)  # the access audit log (app/data/audit.py)
    retention_tables(portal.spec, portal.metadata)  # retention runs and `<table>_archive` (app/data/retention.py)
    portal.change_logs = change_log.log_tables(portal.spec, models, portal.metadata)  # the change feed's log
    change_log.horizon_table(portal.metadata)
    change_log.commit_tables(portal.metadata)  # PostgreSQL's commit numbers (commit order)
    ensure_tables(db.engine, Model.metadata)
    portal.schema_changes = ensure_tables(db.engine, portal.metadata)
    change_log.install_triggers(db.engine, portal.spec, models, portal.change_logs)  # every write path feeds it
    return models


def _create_database_dir(uri: str) -> None:
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:///:memory:"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def _local_secret_key(app: Flask) -> str:
    """No SECRET_KEY given: keep a random one in var/ so sessions survive restarts of a local portal."""
    path = ROOT / "var" / "secret_key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    path.write_text(key)
    os.chmod(path, 0o600)
    log.warning("SECRET_KEY not set; generated one in %s", path)
    return key
