"""Record history: who changed which field of which record, when, by which path (entities with `history: true`).

Append-only rows in `portal_history` (app/generate/models.py `history_table`). Every path writes through
`write_history` (one multi-row INSERT per batch): ORM flushes (forms, API, transitions) through the session
listener, imports and bulk actions with their own batches.

`writing_as(path, transition)` names the path of the writes made inside it (a context variable, so it is
per request/thread); outside it, a request's path is "api" under /api/ and "form" otherwise, and "cli" with no
request at all.
"""
from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
from dataclasses import dataclass, field
from decimal import Decimal

from app.generate.models import HISTORY_TABLE
from app.schema.spec import EntitySpec

CREATE, UPDATE, TRANSITION, DELETE = "create", "update", "transition", "delete"

_path: contextvars.ContextVar[tuple[str, str | None] | None] = contextvars.ContextVar("history_path", default=None)


@dataclass
class Event:
    """One history row: `changes` maps a field name to (old, new) as stored (link ids, not records)."""

    record_id: int
    action: str
    changes: dict = field(default_factory=dict)
    transition: str | None = None


@contextlib.contextmanager
def writing_as(path: str, transition: str | None = None):
    """Writes inside are recorded as made by `path` ("import", "bulk", "transition", ...)."""
    token = _path.set((path, transition))
    try:
        yield
    finally:
        _path.reset(token)


def current_path() -> tuple[str, str | None]:
    """(path, transition) of the writes being made now."""
    given = _path.get()
    if given is not None:
        return given
    from flask import has_request_context, request

    if not has_request_context():
        return "cli", None
    return ("api" if request.path.startswith("/api/") else "form"), None


def json_value(value):
    """A stored value as JSON: numbers as text when they are decimals (exact), moments in ISO form."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (list, tuple, set, frozenset)):
        return sorted(json_value(v) for v in value)
    return str(value)


def write_history(connection, metadata, entity: EntitySpec, events: list[Event], user_id=None, username=None,
                  at: dt.datetime | None = None, path: str | None = None) -> None:
    """Insert `events` of one entity in one statement (executemany), stamped with the user, time and path."""
    if not events or not entity.history:
        return
    table = metadata.tables[HISTORY_TABLE]
    at = at or dt.datetime.now().replace(microsecond=0)
    given_path, given_transition = current_path()
    path = path or given_path
    dumped: dict[int, str] = {}  # events sharing one changes dict (a bulk action's rows) are encoded once

    def changes_json(changes: dict) -> str:
        text = dumped.get(id(changes))
        if text is None:
            text = dumped[id(changes)] = json.dumps(
                {name: [json_value(old), json_value(new)] for name, (old, new) in changes.items()},
                ensure_ascii=False, separators=(",", ":"))
        return text

    connection.execute(table.insert(), [
        {"entity": entity.name, "record_id": e.record_id, "at": at, "user_id": user_id, "username": username,
         "path": path, "action": e.action, "transition": e.transition or given_transition if e.action == TRANSITION
         else e.transition, "changes": changes_json(e.changes)}
        for e in events])
