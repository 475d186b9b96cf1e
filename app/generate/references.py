"""Which records stop a record from being deleted: records still pointing at it (on_delete: restrict), and locked
records the delete would change (pointing at it through set_null or cascade, or its locked `lines:` parent)."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from app.i18n import lazy
from app.rules.workflows import lines_parents, locked_parent_message, locked_refusal
from app.schema.spec import EntitySpec, PortalSpec

CHUNK = 1000


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


def locked_dependents(portal: PortalSpec, models: dict, session, entity: EntitySpec, ids) -> dict:
    """{id: localized reason} for each of `ids` whose delete would change a locked record: a record in a locked
    workflow state links to it with on_delete set_null or cascade, or it is a line of a locked parent (its
    rollups would move). Pages, the API and bulk delete refuse those ids."""
    ids = list(ids)
    found: dict = {}
    model = models[entity.name]
    for parent, back in lines_parents(portal, entity):
        parent_model = models[parent.name]
        state = getattr(parent_model, parent.workflow.field)
        for start in range(0, len(ids), CHUNK):
            rows = session.execute(
                select(model.id, state).join(parent_model, getattr(model, back.column_name) == parent_model.id)
                .where(model.id.in_(ids[start:start + CHUNK]), state.in_(parent.workflow.locked)))
            for pk, value in rows:
                found.setdefault(pk, []).append(locked_parent_message(entity, parent, value))
    for source, f in portal.links_to(entity.name):
        if f.on_delete not in ("set_null", "cascade") or source.workflow is None or not source.workflow.locked:
            continue
        source_model = models[source.name]
        link = getattr(source_model, f.column_name)
        for start in range(0, len(ids), CHUNK):
            rows = session.execute(
                select(link, func.count()).where(link.in_(ids[start:start + CHUNK]),
                                                 getattr(source_model, source.workflow.field).in_(source.workflow.locked))
                .group_by(link))
            for pk, count in rows:
                found.setdefault(pk, []).append(str(_l(
                    "Cannot delete: %(what)s in a locked state refer to this record.",
                    what=f"{count} × {lazy(source.label)}")))
    return {pk: " ".join(reasons) for pk, reasons in found.items()}


def delete_refusal(portal: PortalSpec, models: dict, session, entity: EntitySpec, item):
    """The localized reason a delete is refused (pages and API say the same), or None."""
    locked = locked_refusal(entity, item)  # a locked workflow state: read-only but for transitions
    if locked:
        return locked
    blocking = blocking_references(portal, models, session, entity, item)
    if blocking:
        return _l("Cannot delete: %(what)s still refer to this record.", what=blocking)
    return locked_dependents(portal, models, session, entity, [item.id]).get(item.id)
