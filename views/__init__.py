"""Hand-written views: the home page (module tiles); generated CRUD views live in app/generate."""
from flask import current_app
from flask_appbuilder import IndexView, expose

from app.i18n import lazy


class PortalIndexView(IndexView):
    index_template = "portal/index.html"

    @expose("/")
    def index(self):
        spec = current_app.extensions["portal_spec"]
        sm = self.appbuilder.sm
        modules = []
        for module in spec.modules:
            entities = [(e, lazy(e.label)) for e in module.entities if sm.has_access("can_read", e.name)]
            if entities:
                modules.append((module, lazy(module.label), entities))
        return self.render_template(self.index_template, appbuilder=self.appbuilder, modules=modules)
