"""Hand-written views: the "my work" home page and report pages; generated CRUD views live in app/generate.

The factory loads this package by name (config PORTAL_PAGES), uses INDEX_VIEW as the home page and
calls `register(appbuilder, portal)` once the generated views exist.
"""
import datetime as dt

from flask import current_app
from flask_appbuilder import IndexView, expose
from sqlalchemy import select

from app.generate.models import HISTORY_TABLE
from app.generate.saved_views import highlight_url, highlight_view, user_views, view_count
from app.i18n import lazy
from app.portal import current_portal
from app.rules.access import current_viewer
from app.rules.filters import context_for
from app.schema.views import portal_highlights

RECENT = 10
RECENT_SCAN = 200  # history rows read to find the 10 newest distinct records


class PortalIndexView(IndexView):
    index_template = "portal/index.html"

    @expose("/")
    def index(self):
        spec = current_portal().spec
        sm = self.appbuilder.sm
        modules = []
        for module in spec.modules:
            entities = [(e, lazy(e.label)) for e in module.entities if sm.has_access("can_read", e.name)]
            if entities:
                modules.append((module, lazy(module.label), entities))
        work = my_work() if sm.current_user else {}
        return self.render_template(self.index_template, appbuilder=self.appbuilder, modules=modules, **work)


def my_work() -> dict:
    """The signed-in user's home: their `home: true` view counts, overdue counts (records a `danger` highlight
    marks), recent records they touched; every count and record in their scope, one COUNT per card."""
    sm = current_app.appbuilder.sm
    ctx = context_for(current_viewer().user_id)  # one clock for every card of the page
    cards = [(view, view_count(view, ctx)) for view in user_views() if view.home]
    overdue = []
    for rule in portal_highlights(current_portal().spec):
        if rule.style == "danger" and sm.has_access("can_read", rule.entity):
            count = view_count(highlight_view(rule), ctx)
            if count:
                entity_label = lazy(current_portal().spec.entity(rule.entity).label)
                overdue.append((rule, entity_label, lazy(rule.label), count, highlight_url(rule)))
    from views.dashboard_pages import home_dashboard

    return dict(home_cards=cards, overdue=overdue, recent=recent_records(), board=home_dashboard())


def recent_records() -> list[dict]:
    """The newest records the user changed (history rows by them), still readable by them, with titles."""
    portal = current_portal()
    user = current_app.appbuilder.sm.current_user
    table = portal.metadata.tables.get(HISTORY_TABLE)
    if table is None or not any(e.history for e in portal.spec.entities):
        return []
    session = current_app.appbuilder.session
    rows = session.execute(select(table.c.entity, table.c.record_id, table.c.at).where(table.c.user_id == user.id)
                           .order_by(table.c.id.desc()).limit(RECENT_SCAN)).all()
    newest: dict = {}
    for entity, record_id, at in rows:
        newest.setdefault((entity, record_id), at)
    by_entity: dict = {}
    for entity, record_id in newest:
        by_entity.setdefault(entity, []).append(record_id)
    sm, viewer = current_app.appbuilder.sm, current_viewer()
    titles: dict = {}
    for name, ids in by_entity.items():
        try:
            entity = portal.spec.entity(name)
        except KeyError:
            continue  # an entity removed from the schema since
        if not sm.has_access("can_read", name):
            continue
        model = portal.models[name]
        title = entity.field(entity.title) if entity.title in entity.field_names else None
        column = getattr(model, title.column_name) if title is not None and not title.is_relation else model.id
        statement = select(model.id, column).where(model.id.in_(ids))
        scope = viewer.row_clause(name, portal.models)
        if scope is not None:
            statement = statement.where(scope)
        for record_id, value in session.execute(statement):  # deleted and out-of-scope records drop out here
            shown = value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else str(value)
            titles[(name, record_id)] = (entity, shown if title is not None else f"#{record_id}")
    recent = []
    for key, at in newest.items():
        if key in titles and len(recent) < RECENT:
            entity, shown = titles[key]
            recent.append({"entity": lazy(entity.label), "title": shown, "at": at,
                           "url": f"/{entity.snake}/show/{key[1]}"})
    return recent


INDEX_VIEW = PortalIndexView


def register(appbuilder, portal) -> None:
    """Add the hand-written pages to a portal app (called by app/factory.py)."""
    from app.generate.quick_search import install_quick_search
    from views.dashboard_pages import register_dashboards
    from views.report_pages import register_reports

    register_reports(appbuilder, portal.spec)
    register_dashboards(appbuilder, portal.spec)
    install_quick_search(appbuilder)
