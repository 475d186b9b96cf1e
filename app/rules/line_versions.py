"""A parent's `row_version` counts its lines (`lines: [OrderLine]`): adding, changing, moving or removing a line
from any path (the parent's form or API, the line's own pages or API, an import of lines) moves the version of
every order whose lines changed. So a client holding an older order — an `If-Match` on `PUT` with its `lines`, an
edit form opened earlier — gets the usual conflict (409 / "Changed by … reload") instead of deleting a line it
never saw (app/generate/versions.py).

ORM writes: an `after_flush` listener notes the parents (old and new) of the flushed lines and bumps them after the
flush, in its transaction, except a parent whose own UPDATE in that flush already moved its version. Imports call
`bump` with the parents of the rows they wrote.
"""
from __future__ import annotations

from collections import defaultdict
from itertools import chain

from sqlalchemy import event, update

from app.rules.flushes import chunks, link_ids_in_history
from app.schema.spec import VERSION_COLUMN, PortalSpec

TOUCHED_KEY = "portal_line_parents"  # session.info: parent model -> ids, between the two events


class LineVersions:
    def __init__(self, spec: PortalSpec, models: dict) -> None:
        # line model -> (its link back to the parent, the parent's model)
        self.backs = {models[child]: (spec.back_link(child, parent.name), models[parent.name])
                      for parent in spec.entities for _, child in parent.lines_keys}

    def __bool__(self) -> bool:
        return bool(self.backs)

    def back_link(self, model):
        return self.backs.get(model, (None, None))

    def gather(self, session, flush_context=None) -> None:
        """after_flush (pre-flush state and history still there): the parents whose lines this flush changed."""
        touched = session.info.setdefault(TOUCHED_KEY, defaultdict(set))
        own = set()  # parents updated in this flush: the ORM already moved their version
        created_or_deleted = {id(obj) for obj in chain(session.new, session.deleted)}
        for obj in chain(session.new, session.dirty, session.deleted):
            back, parent_model = self.backs.get(type(obj), (None, None))
            if back is None:
                if id(obj) not in created_or_deleted and session.is_modified(obj, include_collections=False):
                    own.add((type(obj), getattr(obj, "id", None)))
                continue
            if id(obj) not in created_or_deleted and not session.is_modified(obj, include_collections=False):
                continue
            touched[parent_model].update(link_ids_in_history(obj, back.name, back.column_name))
        for model, ids in touched.items():
            ids -= {i for m, i in own if m is model}

    def after_flush(self, session, flush_context=None) -> None:
        """after_flush_postexec: bump what `gather` noted, in the flush's transaction; the in-memory version expires."""
        touched = session.info.pop(TOUCHED_KEY, None)
        for model, ids in (touched or {}).items():
            if ids:
                bump(session.connection(), model, ids)
                for obj in list(session.identity_map.values()):
                    if type(obj) is model and obj.id in ids:
                        session.expire(obj, [VERSION_COLUMN])


def bump(connection, parent_model, ids) -> None:
    table = parent_model.__table__
    for part in chunks(sorted(i for i in ids if i is not None)):
        connection.execute(update(table).where(table.c.id.in_(part)).values({VERSION_COLUMN: table.c[VERSION_COLUMN] + 1}))


def install(session, portal) -> None:
    """Keep the parents' versions on every ORM flush of `session` (the app's own scoped session)."""
    versions = LineVersions(portal.spec, portal.models)
    portal.line_versions = versions
    if versions:
        event.listen(session, "after_flush", versions.gather)
        event.listen(session, "after_flush_postexec", versions.after_flush)
