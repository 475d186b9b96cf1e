"""Which records still point at a record that is about to be deleted (on_delete: restrict)."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from app.i18n import lazy
from app.rules.workflows import locked_refusal
from app.schema.spec import EntitySpec, PortalSpec


def blocking_references(portal: PortalSpec, models: dict, session, entity: EntitySpec, item) -> str:
    """A readable summary like '3 Ticket, 1 Project', or '' when nothing blocks the delete."""
    parts = []
    for source, f in portal.links_to(entity.name):
        if f.on_delete != "restrict":
            continue
        model = models[source.name]
        count = session.scalar(select(func.count()).select_from(model).where(getattr(model, f.column_name) == item.id))
        if count:
            parts.append(f"{count} × {lazy(source.label)}")
    return ", ".join(parts)


def delete_refusal(portal: PortalSpec, models: dict, session, entity: EntitySpec, item):
    """The localized reason a delete is refused (pages and API say the same), or None."""
    locked = locked_refusal(entity, item)  # a locked workflow state: read-only but for transitions
    if locked:
        return locked
    blocking = blocking_references(portal, models, session, entity, item)
    return _l("Cannot delete: %(what)s still refer to this record.", what=blocking) if blocking else None
