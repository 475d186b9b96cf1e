"""Pages of an entity's change log (app/data/change_log.py) as one viewer may see them.

One keyset SELECT per page: the log rows after the cursor, in (tx, seq) order, left-joined to the live record and
to the titles its links show, limited in SQL to the viewer's rows (a create/update: the record as it is now, in
the viewer's row scope; a delete: the scope's values kept at delete time, `Viewer.values_clause`). Records are
rendered from that row as the API's list shows them (links `{id, title}`, users `{id, username}`, many-fields
`[{id}]`, decimals as text, dates ISO; hidden fields left out, masked ones masked), without building ORM objects.

Cursors are `<tx>-<seq>-<mac>` (hex), the mac an HMAC of the entity and position under the app's SECRET_KEY: opaque
to the client, and a tampered, foreign or malformed cursor is refused (400) rather than read as a position.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from dataclasses import dataclass
from decimal import Decimal

from flask import current_app
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import aliased

from app.data.change_log import OPS, after_clause, committed_clause, pruned_position
from app.rules.access import Viewer, mask_value
from app.schema.spec import EntitySpec, PortalSpec

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
START = (0, 0)
_HEX = re.compile(r"[0-9a-f]{1,16}")


class CursorRefused(ValueError):
    """A cursor this feed did not hand out (400)."""


class CursorExpired(ValueError):
    """A cursor from before the log's retention horizon (410): changes after it were pruned."""


def _signer(entity: EntitySpec):
    """HMAC-SHA256 of (entity, position) under the app's SECRET_KEY, 16 hex digits: a cursor from another feed, an
    edited one or a made-up one fails the check. One hmac call per change (a page of 1,000 signs 1,000 cursors)."""
    key = hashlib.sha256(("portal-changes:" + current_app.config["SECRET_KEY"]).encode()).digest()
    prefix = entity.name.encode() + b":"

    def sign(tx: int, seq: int) -> str:
        return hmac.new(key, prefix + b"%d:%d" % (tx, seq), hashlib.sha256).hexdigest()[:16]

    return sign


def encode_cursor(entity: EntitySpec, position: tuple[int, int], sign=None) -> str:
    tx, seq = int(position[0]), int(position[1])
    return f"{tx:x}-{seq:x}-{(sign or _signer(entity))(tx, seq)}"


def decode_cursor(entity: EntitySpec, cursor: str) -> tuple[int, int]:
    parts = cursor.split("-")
    if len(parts) != 3 or len(cursor) > 64 or not all(parts) or not all(_HEX.fullmatch(p) for p in parts):
        raise CursorRefused(cursor)
    tx, seq = int(parts[0], 16), int(parts[1], 16)
    if tx >= 2 ** 63 or seq >= 2 ** 63 or not hmac.compare_digest(_signer(entity)(tx, seq), parts[2]):
        raise CursorRefused(cursor)
    return tx, seq


@dataclass
class Page:
    changes: list
    next: str


class ChangeFeed:
    """The feed of one entity for one viewer."""

    def __init__(self, spec: PortalSpec, entity: EntitySpec, models: dict, log, metadata, viewer: Viewer) -> None:
        self.spec, self.entity, self.models, self.log, self.metadata, self.viewer = \
            spec, entity, models, log, metadata, viewer
        self.model = models[entity.name]
        hidden = viewer.hidden(entity.name)
        self.fields = [f for f in entity.fields if f.name not in hidden]
        self.masked = viewer.masked(entity.name)

    def page(self, session, since: str | None, limit: int = DEFAULT_LIMIT) -> Page:
        position = START if since is None else decode_cursor(self.entity, since)
        connection = session.connection()
        pruned = pruned_position(connection, self.metadata, self.log)
        if since is not None and pruned is not None and position < pruned:
            raise CursorExpired(since)
        statement, render = self.statement(connection.dialect.name, position, limit)
        rows = connection.execute(statement).all()
        many = self._many_values(connection, [r.record_id for r in rows if r.op != "d"])
        changes = []
        sign = _signer(self.entity)
        for row in rows:
            cursor = f"{row.tx:x}-{row.seq:x}-{sign(row.tx, row.seq)}"
            record = None if row.op == "d" else render(row, many)
            changes.append({"op": OPS[row.op], "id": row.record_id, "record": record, "cursor": cursor})
        last = (rows[-1].tx, rows[-1].seq) if rows else position
        return Page(changes, encode_cursor(self.entity, last, sign))

    # -- the one SELECT --------------------------------------------------------------------------------------
    def statement(self, dialect: str, position: tuple[int, int], limit: int):
        """(SELECT of one page, row -> record). Public so the bench can time exactly what the endpoint runs."""
        log, model = self.log, self.model
        columns = [log.c.seq, log.c.tx, log.c.op, log.c.record_id]
        joins, shown = [], []  # shown: (name, how to read it off the row)
        for f in self.fields:
            kind = f.kind
            if kind.multiple:
                shown.append((f.name, "many", None))
            elif kind.is_relation:
                fk = getattr(model, f.column_name)
                target = aliased(kind.target_model(f, self.models))
                label = f"{f.name}__t"
                if kind.to_users:
                    title_name, title = "username", target.username
                else:
                    title_name = self.spec.entity(f.to).title
                    title_field = self.spec.entity(f.to).field(title_name) if title_name else None
                    title = getattr(target, title_name) if title_field is not None and not title_field.is_relation else None
                columns.append(fk.label(f"{f.name}__id"))
                if title is not None:
                    joins.append((target, target.id == fk))
                    columns.append(title.label(label))
                shown.append((f.name, "link", title_name if title is not None else None))
            else:
                columns.append(getattr(model, f.column_name).label(f.name))
                shown.append((f.name, "value", None))
        for name in ("created_on", "changed_on", "row_version"):
            columns.append(getattr(model, name).label(name))
            shown.append((name, "value", None))
        source = log.outerjoin(model, and_(model.id == log.c.record_id, log.c.op != "d"))
        for target, onclause in joins:
            source = source.outerjoin(target, onclause)
        conditions = [after_clause(log, dialect, position)]
        committed = committed_clause(log, dialect)
        if committed is not None:
            conditions.append(committed)
        conditions.append(self._scope(log, model))
        statement = (select(*columns).select_from(source).where(*conditions)
                     .order_by(log.c.tx, log.c.seq).limit(limit))
        return statement, self._renderer(shown)

    def _scope(self, log, model):
        """Creates and updates of live records in the viewer's scope; deletes whose kept values were in it."""
        live = model.id.isnot(None)
        rows = self.viewer.row_clause(self.entity.name, self.models)
        if rows is not None:
            live = and_(live, rows)
        kept = {c.name: c for c in log.columns}
        values = {f.name: kept[f.column_name] for f in self.entity.fields  # fields not kept: NULL
                  if not f.kind.multiple and f.column_name in kept}
        gone = self.viewer.values_clause(self.entity.name, self.models, values)
        deleted = log.c.op == "d" if gone is None else and_(log.c.op == "d", gone)
        return or_(and_(log.c.op != "d", live), deleted)

    def _renderer(self, shown):
        masked = self.masked

        def render(row, many: dict) -> dict:
            mapping = row._mapping
            record = {"id": row.record_id}
            for name, how, title in shown:
                if how == "value":
                    value = _json(mapping[name])
                elif how == "link":
                    pk = mapping[f"{name}__id"]
                    value = None if pk is None else (
                        {"id": pk} if title is None else {"id": pk, title: _json(mapping[f"{name}__t"])})
                else:
                    value = [{"id": pk} for pk in many.get(name, {}).get(row.record_id, ())]
                record[name] = mask_value(value) if name in masked else value
            return record

        return render

    def _many_values(self, connection, ids: list) -> dict:
        """many-field name -> record id -> linked ids, for the page's records (one query per many-field)."""
        result = {}
        for f in self.fields:
            if not f.kind.multiple or not ids:
                continue
            secondary = getattr(self.model, f.name).property.secondary
            found: dict = {}
            query = (select(secondary.c.left_id, secondary.c.right_id)
                     .where(secondary.c.left_id.in_(sorted(set(ids)))).order_by(secondary.c.left_id, secondary.c.right_id))
            for left, right in connection.execute(query):
                found.setdefault(left, []).append(right)
            result[f.name] = found
        return result


def _json(value):
    """A column value as the API's marshmallow schema writes it."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value
