"""Build the running portal from a checked spec: models, then views, APIs and menus."""
from __future__ import annotations

from app.i18n import lazy
from app.schema.spec import PortalSpec
from app.rules.writer import RecordWriter
from app.fab import perms_sync_suppressed
from app.generate.apis import build_api
from app.generate.roles import sync_permissions
from app.generate.pages import build_view


def register_portal(appbuilder, spec: PortalSpec, models: dict[str, type]) -> None:
    """Create and register every view and API for the models built from the spec."""

    def writer_factory(entity):
        return RecordWriter(spec, entity, models, appbuilder.session)

    views = {e.name: build_view(spec, e, models, writer_factory) for e in spec.entities}
    for entity in spec.entities:
        # related-record panels on the detail page: every entity that links here
        views[entity.name].related_views = [views[source.name] for source, _ in spec.links_to(entity.name)
                                            if source.name != entity.name]
    # FAB would sync permissions view by view (several queries each); sync_permissions does it in bulk
    with perms_sync_suppressed(appbuilder) as sync_wanted:
        for module in spec.modules:
            for entity in module.entities:
                appbuilder.add_view(
                    views[entity.name], entity.name, label=lazy(entity.label), icon="fa-table",
                    category=module.name, category_label=lazy(module.label),
                )
                appbuilder.add_api(build_api(spec, entity, models, writer_factory))
    if sync_wanted:
        sync_permissions(appbuilder, spec)
