"""Pages of an entity's change log (app/data/change_log.py) as one viewer may see them.

One keyset SELECT per page: the log rows after the cursor, in commit order (commit number, seq), left-joined to the live record and
to the titles its links show, limited in SQL to the viewer's rows (a create/update: the record as it is now, in
the viewer's row scope; a delete: the scope's values kept at delete time, `Viewer.values_clause`). Records are
rendered from that row as the API's list shows them (links `{id, title}`, users `{id, username}`, many-fields
`[{id}]`, decimals as text, dates ISO; hidden fields left out, masked ones masked), without building ORM objects.

Cursors are `<commit number>-<seq>-<mac>` (hex), the mac an HMAC of the entity and position under the app's SECRET_KEY: opaque
to the client, and a tampered, foreign or malformed cursor is refused (400) rather than read as a position.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import operator
import hmac  # compare_digest
import re
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import (BigInteger, Date, DateTime, Float, Integer, Numeric, String, and_, bindparam, case, cast,
                        func, or_, select, type_coerce)
from sqlalchemy.orm import aliased
from sqlalchemy.types import NullType

from app.data.change_log import OPS, after_clause, commit_order, ordered_source, pruned_position, scope_paths
from app.portal import current_portal
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
    """A keyed BLAKE2b (a MAC) of (entity, position) under the app's SECRET_KEY, 16 hex digits: a cursor from another
    feed, an edited one or a made-up one fails the check. One C call per change (a page of 1,000 signs 1,000)."""
    key = hashlib.sha256(("portal-changes:" + current_app.config["SECRET_KEY"]).encode()).digest()
    prefix = entity.name.encode() + b":"
    blake2b = hashlib.blake2b

    def sign(tx: int, seq: int) -> str:
        return blake2b(prefix + b"%d:%d" % (tx, seq), key=key, digest_size=8).hexdigest()

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
        self._has_many = any(f.kind.multiple for f in self.fields)

    def page(self, session, since: str | None, limit: int = DEFAULT_LIMIT) -> Page:
        position = START if since is None else decode_cursor(self.entity, since)
        connection = session.connection()
        pruned = pruned_position(connection, self.metadata, self.log)
        if since is not None and pruned is not None and position < pruned:
            raise CursorExpired(since)
        statement, render = self.prepared(connection.dialect.name)
        rows = connection.execute(statement, {"after_tx": position[0], "after_seq": position[1],
                                              "page_limit": limit}).all()
        many = self._many_values(connection, [r[3] for r in rows if r[2] != "d"]) if self._has_many else {}
        changes = []
        sign = _signer(self.entity)
        for row in rows:  # (seq, tx, op, record_id, ...the record's columns)
            seq, tx, op, pk = row[0], row[1], row[2], row[3]
            changes.append({"op": OPS[op], "id": pk, "record": None if op == "d" else render(row, many),
                            "cursor": f"{tx:x}-{seq:x}-{sign(tx, seq)}"})
        last = (rows[-1][1], rows[-1][0]) if rows else position
        return Page(changes, encode_cursor(self.entity, last, sign))

    # -- the one SELECT --------------------------------------------------------------------------------------
    def prepared(self, dialect: str):
        """(SELECT of a page with parameters after_tx, after_seq, page_limit; row -> record), built once per entity,
        viewer rule set and day (a scope may say $today) and kept in the portal's bounded cache."""
        viewer = self.viewer
        key = ("change_feed", self.entity.name, dialect, viewer.is_admin, tuple(sorted(r.name for r in viewer.roles)),
               viewer.user_id, dt.date.today())
        return current_portal().form_cache.get_or_make(key, lambda: self.statement(dialect))

    def statement(self, dialect: str):
        """(SELECT of one page, row -> record)."""
        log, model = self.log, self.model
        ordered, number = ordered_source(log, self.metadata, dialect)  # commit order (change_log.py)
        columns = [log.c.seq, number.label("number"), log.c.op, log.c.record_id]
        joins, shown, converters = [], [], {}  # shown: (name, how to read it off the row); converters: label -> f

        def add(column, label: str) -> None:
            expression, converters[label] = _api_text(column, dialect)
            columns.append(expression.label(label))

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
                    add(title, label)
                shown.append((f.name, "link", title_name if title is not None else None))
            else:
                add(getattr(model, f.column_name), f.name)
                shown.append((f.name, "value", None))
        for name in ("created_on", "changed_on", "row_version"):
            add(getattr(model, name), name)
            shown.append((name, "value", None))
        source = ordered.outerjoin(model, and_(model.id == log.c.record_id, log.c.op != "d"))
        for target, onclause in joins:
            source = source.outerjoin(target, onclause)
        conditions = [after_clause(number, log.c.seq, dialect, (bindparam("after_tx", type_=BigInteger),
                                                                bindparam("after_seq", type_=BigInteger))),
                      self._scope(log, model)]
        statement = (select(*columns).select_from(source).where(*conditions)
                     .order_by(*commit_order(log, number, dialect)).limit(bindparam("page_limit", type_=Integer)))
        return statement, self._renderer(shown, columns, converters)

    def _scope(self, log, model):
        """Creates and updates of live records in the viewer's scope; deletes whose kept values were in it."""
        live = model.id.isnot(None)
        rows = self.viewer.row_clause(self.entity.name, self.models)
        if rows is not None:
            live = and_(live, rows)
        kept = {c.name: c for c in log.columns}
        values = {f.name: kept[f.column_name] for f in self.entity.fields  # fields not kept: NULL
                  if not f.kind.multiple and f.column_name in kept}
        for path in scope_paths(self.spec, self.entity):  # a hop through a link: its value at delete time
            values[(path.link.name, path.target.name)] = (kept[path.column], kept[path.pending])
        gone = self.viewer.values_clause(self.entity.name, self.models, values)
        deleted = log.c.op == "d" if gone is None else and_(log.c.op == "d", gone)
        return or_(and_(log.c.op != "d", live), deleted)

    def _renderer(self, shown, columns, converters: dict):
        """row -> the record dict: the plain columns in one dict(zip(...)) (C speed), then only the fields that need
        a change (decimals and dates to text, links to {id, title}, many-fields, masks): this runs for every change
        of a page."""
        index = {c.name: n for n, c in enumerate(columns)}
        masked = self.masked
        plain, fixes = [], []  # plain: (name, position); fixes: (name, kind, position, title position, title, convert)
        for name, how, title in shown:
            if how == "value":
                convert = converters.get(name)
                if convert is None and name not in masked:
                    plain.append((name, index[name]))
                else:
                    fixes.append((name, 0, index[name], None, None, convert))
            elif how == "link":
                title_at = index.get(f"{name}__t")
                fixes.append((name, 1, index[f"{name}__id"], title_at, title,
                              None if title_at is None else converters.get(f"{name}__t")))
            else:
                fixes.append((name, 2, None, None, None, None))
        names = ("id",) + tuple(name for name, _ in plain)
        pick = operator.itemgetter(3, *(at for _, at in plain))

        def render(row, many: dict) -> dict:
            record = dict(zip(names, pick(row)))
            for name, kind, at, title_at, title, convert in fixes:
                if kind == 0:
                    value = row[at]
                    if convert is not None and value is not None:
                        value = convert(value)
                elif kind == 1:
                    value = row[at]
                    if value is not None:
                        if title_at is None:
                            value = {"id": value}
                        else:
                            text = row[title_at]
                            value = {"id": value, title: convert(text) if convert is not None and text is not None else text}
                else:
                    value = [{"id": linked} for linked in many.get(name, {}).get(row[3], ())]
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


def _api_text(column, dialect: str):
    """(expression, Python converter or None): a date, datetime or decimal column read as the text the API's schema
    writes (ISO dates, `2026-01-02T03:04:05` with microseconds only when there are some, decimals with their scale),
    never parsed into a Python object only to be written out again. SQLite stores them as text and REAL: they are
    read as stored and cut or formatted by one string operation in Python (a SQL CASE per datetime cost more: it
    doubled the query's time). PostgreSQL formats them in SQL (psycopg2 would otherwise build datetime and Decimal
    objects). Other columns as they are."""
    kind = column.type
    if isinstance(kind, DateTime):
        if dialect == "sqlite":  # stored as 'YYYY-MM-DD HH:MM:SS[.ffffff]'
            return type_coerce(column, NullType()), _sqlite_datetime_text
        seconds = type_coerce(func.to_char(column, 'YYYY-MM-DD"T"HH24:MI:SS'), String)
        text_ = case((cast(func.extract("microseconds", column), Integer) % 1000000 == 0, seconds),
                     else_=seconds + type_coerce(func.to_char(column, ".US"), String))
        return type_coerce(text_, String), None
    if isinstance(kind, Date):
        return type_coerce(column if dialect == "sqlite" else cast(column, String), String), None
    if isinstance(kind, Numeric) and not isinstance(kind, Float) and kind.scale is not None:
        if dialect == "sqlite":  # REAL: formatted as SQLAlchemy's Numeric does ('%.<scale>f')
            return type_coerce(column, NullType()), f"%.{kind.scale}f".__mod__
        return type_coerce(cast(column, String), String), None
    return column, None


def _sqlite_datetime_text(stored: str) -> str:
    if len(stored) <= 19 or stored.endswith(".000000"):
        return stored[:10] + "T" + stored[11:19]
    return stored[:10] + "T" + stored[11:]
