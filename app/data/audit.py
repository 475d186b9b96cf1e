"""The access audit log: who signed in (or failed to), exported, imported, merged, ran retention or changed
permissions, when and from where. Append-only table `portal_audit`; Admin reads it on `/audit/` and
`GET /api/v1/audit` (app/generate/audit.py).

`record_event(kind, ...)` is the one way in. With `session` the row is written in that session's transaction (it
commits or rolls back with the change it describes: a permission edit); without, in a short transaction of its own
(a failed sign-in has no transaction to join, and an export writes nothing else). The signed-in user and the
request's remote address are filled in when not given. Nothing here updates or deletes a row.
"""
from __future__ import annotations

import datetime as dt
import json
import logging

from sqlalchemy import (BigInteger, Column, DateTime, Index, Integer, MetaData, String, Table, Text, and_, func,
                        select)

log = logging.getLogger(__name__)

AUDIT_TABLE = "portal_audit"
LOGIN, LOGIN_FAILED, EXPORT, IMPORT, MERGE, RETENTION, PERMISSION = (
    "login", "login_failed", "export", "import", "merge", "retention", "permission")
KINDS = (LOGIN, LOGIN_FAILED, EXPORT, IMPORT, MERGE, RETENTION, PERMISSION)
MAX_DETAIL = 20_000  # characters of detail JSON kept per row (a filter of a thousand ids is cut, not refused)
_SERIAL = BigInteger().with_variant(Integer(), "sqlite")


def audit_table(metadata: MetaData) -> Table:
    """portal_audit on `metadata` (created with the portal's other tables at start-up). No foreign keys: a deleted
    user keeps their entries (the username is copied)."""
    if AUDIT_TABLE in metadata.tables:
        return metadata.tables[AUDIT_TABLE]
    return Table(
        AUDIT_TABLE, metadata,
        Column("id", _SERIAL, primary_key=True, autoincrement=True),
        Column("at", DateTime, nullable=False),
        Column("kind", String(20), nullable=False),
        Column("user_id", Integer),
        Column("username", String(256)),
        Column("entity", String(60)),
        Column("detail", Text, nullable=False, server_default="{}"),
        Column("remote_addr", String(64)),
        Index("ix_portal_audit_at", "at"),
        Index("ix_portal_audit_kind", "kind", "id"),
        Index("ix_portal_audit_user", "username", "id"),
        Index("ix_portal_audit_entity", "entity", "id"),
    )


AUDIT = audit_table(MetaData())


def record_event(kind: str, *, user_id=None, username=None, entity=None, detail: dict | None = None,
                 session=None) -> None:
    """Append one entry. `session`: in that session's transaction (the caller commits); else committed now.
    Outside a request (CLI, worker) the user is whoever is given (None: the system)."""
    from flask import current_app, has_request_context, request

    remote_addr = None
    if has_request_context():
        remote_addr = (request.remote_addr or "")[:64] or None
        if user_id is None and username is None:
            user = current_app.appbuilder.sm.current_user
            user_id, username = getattr(user, "id", None), getattr(user, "username", None)
    text = json.dumps(detail or {}, ensure_ascii=False, default=str, separators=(",", ":"))
    if len(text) > MAX_DETAIL:
        text = json.dumps({"truncated": text[:MAX_DETAIL]}, ensure_ascii=False)
    row = {"at": dt.datetime.now().replace(microsecond=0), "kind": kind[:20], "user_id": user_id,
           "username": None if username is None else str(username)[:256], "entity": entity and str(entity)[:60],
           "detail": text, "remote_addr": remote_addr}
    if session is not None:
        session.execute(AUDIT.insert(), [row])
        return
    engine = current_app.appbuilder.session.get_bind()
    with engine.begin() as connection:
        connection.execute(AUDIT.insert(), [row])


def record_import(entity_name: str, report, key: str | None, via: str | None = None) -> None:
    """An import that was meant to write (pages, API, `portal import`; a check alone is not recorded): the entity,
    its key and the report's counts."""
    detail = {"rows": report.rows, "created": report.created, "updated": report.updated,
              "errors": len(report.errors), "written": bool(report.written), "key": key or None}
    if via:
        detail["via"] = via
    record_event(IMPORT, entity=entity_name, detail=detail)


# -- reading (Admin) ---------------------------------------------------------------------------------------------

def conditions(kind=None, user=None, entity=None, since: dt.datetime | None = None, until: dt.datetime | None = None):
    """The WHERE of a filtered read: exact kind, username (or a user id given as digits), entity; `at` in
    [since, until)."""
    t = AUDIT.c
    where = []
    if kind:
        where.append(t.kind == kind)
    if user:
        where.append(t.user_id == int(user) if str(user).isdigit() else t.username == user)
    if entity:
        where.append(t.entity == entity)
    if since is not None:
        where.append(t.at >= since)
    if until is not None:
        where.append(t.at < until)
    return and_(True, *where)


def read_events(connection, where, page: int, size: int, cap: int) -> tuple[int, bool, list]:
    """(count up to `cap`, whether more match, one page of entries newest first)."""
    counted = connection.scalar(select(func.count()).select_from(
        select(AUDIT.c.id).where(where).limit(cap + 1).subquery()))
    rows = connection.execute(select(AUDIT).where(where).order_by(AUDIT.c.id.desc())
                              .limit(size).offset(page * size)).all()
    return min(counted, cap), counted > cap, rows


def event_json(row) -> dict:
    item = dict(row._mapping)
    item["at"] = item["at"].isoformat() if item["at"] else None
    try:
        item["detail"] = json.loads(item["detail"] or "{}")
    except ValueError:
        item["detail"] = {}
    return item
