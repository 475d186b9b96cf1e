"""Hand-written views: the home page (module tiles) and report pages; generated CRUD views live in app/generate.

The factory loads this package by name (config PORTAL_PAGES), uses INDEX_VIEW as the home page and
calls `register(appbuilder, portal)` once the generated views exist.
"""
from flask_appbuilder import IndexView, expose

from app.i18n import lazy
from app.portal import current_portal


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
        return self.render_template(self.index_template, appbuilder=self.appbuilder, modules=modules)


INDEX_VIEW = PortalIndexView


def register(appbuilder, portal) -> None:
    """Add the hand-written pages to a portal app (called by app/factory.py)."""
    from views.report_pages import register_reports

    register_reports(appbuilder, portal.spec)
