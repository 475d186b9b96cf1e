"""The durable outbox: messages (e-mails, webhook calls) written in the same transaction as the change that caused
them, delivered later by the worker (app/data/worker.py, app/data/delivery.py).

A row is `pending` until a channel delivers it (`sent`) or it has failed PORTAL_RETRY_MAX times (`dead`, shown to
Admin on the dead-letter page and API, which can put it back to pending).

Claiming (docs/architecture.md "Outbox: delivering notifications exactly once"): a worker claims a few due rows in one short transaction — PostgreSQL
`FOR UPDATE SKIP LOCKED`, SQLite `BEGIN IMMEDIATE` — by giving them a claim token and pushing `next_attempt_at` one
lease ahead, so no other worker sees them; it delivers them outside any transaction and marks each one (sent, or
retry later) by its token as soon as it is done. A worker that dies leaves its unsent rows to become due again when
the lease ends; a message it sent but had not yet marked is sent again (the webhook delivery id lets the receiver
drop the repeat).
"""
from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from dataclasses import dataclass

from sqlalchemy import (BigInteger, Column, DateTime, Index, Integer, MetaData, String, Table, Text, and_, func,
                        select, update)

OUTBOX_TABLE = "portal_outbox"
PENDING, SENT, DEAD = "pending", "sent", "dead"
_SERIAL = BigInteger().with_variant(Integer(), "sqlite")  # SQLite numbers only INTEGER PRIMARY KEY rows itself


def outbox_table(metadata: MetaData) -> Table:
    """portal_outbox on `metadata` (created with the portal's other tables at start-up)."""
    if OUTBOX_TABLE in metadata.tables:
        return metadata.tables[OUTBOX_TABLE]
    return Table(
        OUTBOX_TABLE, metadata,
        Column("id", _SERIAL, primary_key=True, autoincrement=True),
        Column("channel", String(80), nullable=False),          # "email" or "webhook:<name>"
        Column("user_id", Integer),                              # the recipient, when a user (no FK: users may go)
        Column("notification_id", BigInteger),                   # portal_notifications row that caused it, if any
        Column("payload", Text, nullable=False),                 # JSON
        Column("status", String(10), nullable=False, server_default=PENDING),
        Column("attempts", Integer, nullable=False, server_default="0"),
        Column("next_attempt_at", DateTime, nullable=False),
        Column("last_error", Text),
        Column("delivery_id", String(32), nullable=False),       # uuid4 hex, sent as X-Portal-Delivery
        Column("claim", String(32)),                             # token of the worker delivering it now
        Column("created_on", DateTime, nullable=False),
        Column("sent_on", DateTime),
        Index("ix_portal_outbox_due", "status", "next_attempt_at"),
    )


# The statements below name the table only; every portal's portal_outbox has these columns.
OUTBOX = outbox_table(MetaData())


def now() -> dt.datetime:
    """Naive local time, like every other timestamp of the portal."""
    return dt.datetime.now()


def enqueue(connection, messages: list[dict]) -> None:
    """Add messages to the outbox in the caller's transaction (a Connection or Session): one executemany INSERT.

    Each message: {"channel": "email" | "webhook:<name>", "payload": {...}, "user_id": int|None,
    "notification_id": int|None}. Nothing is sent unless that transaction commits.
    """
    if not messages:
        return
    at = now()
    rows = [{"channel": m["channel"], "payload": json.dumps(m["payload"], ensure_ascii=False, default=str),
             "user_id": m.get("user_id"), "notification_id": m.get("notification_id"), "status": PENDING,
             "attempts": 0, "next_attempt_at": at, "delivery_id": uuid.uuid4().hex, "created_on": at}
            for m in messages]
    connection.execute(OUTBOX.insert(), rows)


@dataclass
class Message:
    id: int
    channel: str
    payload: dict
    user_id: int | None
    notification_id: int | None
    attempts: int
    delivery_id: str


@dataclass
class Claim:
    token: str
    until: dt.datetime          # the lease: unmarked rows become due again then
    messages: list[Message]


def claim(engine, limit: int, lease_seconds: float, channels_excluded: tuple[str, ...] = (),
          ids: list[int] | None = None) -> Claim:
    """Claim up to `limit` due pending messages (oldest first) for this worker, in one short transaction."""
    token, at = uuid.uuid4().hex, now()
    until = at + dt.timedelta(seconds=lease_seconds)
    due = and_(OUTBOX.c.status == PENDING, OUTBOX.c.next_attempt_at <= at)
    if ids is not None:
        due = and_(due, OUTBOX.c.id.in_(ids))
    for channel in channels_excluded:
        due = and_(due, OUTBOX.c.channel != channel)
    query = select(OUTBOX.c.id, OUTBOX.c.channel, OUTBOX.c.payload, OUTBOX.c.user_id, OUTBOX.c.notification_id,
                   OUTBOX.c.attempts, OUTBOX.c.delivery_id).where(due).order_by(OUTBOX.c.id).limit(limit)
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # one claimer at a time; SQLite has no row locks
        else:
            query = query.with_for_update(skip_locked=True)
        rows = conn.execute(query).all()
        if rows:
            conn.execute(update(OUTBOX).where(OUTBOX.c.id.in_([r.id for r in rows]))
                         .values(claim=token, next_attempt_at=until))
        conn.commit()
    messages = [Message(r.id, r.channel, json.loads(r.payload), r.user_id, r.notification_id, r.attempts,
                        r.delivery_id) for r in rows]
    return Claim(token, until, messages)


def claimed(conn, token: str, message_ids: list[int]) -> list[Message]:
    """The messages among `message_ids` still held by claim `token` (an rq job checks its claim before sending)."""
    rows = conn.execute(select(OUTBOX.c.id, OUTBOX.c.channel, OUTBOX.c.payload, OUTBOX.c.user_id,
                               OUTBOX.c.notification_id, OUTBOX.c.attempts, OUTBOX.c.delivery_id)
                        .where(OUTBOX.c.id.in_(message_ids), OUTBOX.c.claim == token, OUTBOX.c.status == PENDING)
                        .order_by(OUTBOX.c.id)).all()
    return [Message(r.id, r.channel, json.loads(r.payload), r.user_id, r.notification_id, r.attempts, r.delivery_id)
            for r in rows]


def mark_sent(conn, token: str, message_ids: list[int]) -> None:
    if message_ids:
        conn.execute(update(OUTBOX).where(OUTBOX.c.id.in_(message_ids), OUTBOX.c.claim == token)
                     .values(status=SENT, sent_on=now(), claim=None, last_error=None))


def retry_delay(attempts: int, base_seconds: float) -> float:
    """Seconds before the next try after `attempts` failures: base * 2^(attempts-1), plus up to 10 % jitter."""
    delay = base_seconds * 2 ** (attempts - 1)
    return delay * (1 + random.random() * 0.1)


def mark_failed(conn, token: str, message: Message, error: str, base_seconds: float, max_attempts: int) -> None:
    """One more failed attempt: due again after the back-off, or dead after the last allowed attempt."""
    attempts = message.attempts + 1
    values = {"attempts": attempts, "last_error": error[:2000], "claim": None}
    if attempts >= max_attempts:
        values["status"] = DEAD
    else:
        values["next_attempt_at"] = now() + dt.timedelta(seconds=retry_delay(attempts, base_seconds))
    conn.execute(update(OUTBOX).where(OUTBOX.c.id == message.id, OUTBOX.c.claim == token).values(**values))


def release(conn, token: str, message_ids: list[int], error: str | None = None) -> None:
    """Give claimed messages back, due now (a worker stopping, or a channel that cannot run here yet)."""
    if message_ids:
        values = {"claim": None, "next_attempt_at": now()}
        if error is not None:
            values["last_error"] = error
        conn.execute(update(OUTBOX).where(OUTBOX.c.id.in_(message_ids), OUTBOX.c.claim == token).values(**values))


def counts(conn) -> dict:
    """{status: number of messages} (tests, the bench, an operator's shell)."""
    return dict(conn.execute(select(OUTBOX.c.status, func.count()).group_by(OUTBOX.c.status)).all())


# -- dead letters (app/data/dead_letters.py: the Admin page and API) ----------------------------------------------

DEAD_COLUMNS = ("id", "channel", "user_id", "notification_id", "attempts", "last_error", "created_on")


def dead_letters(conn, page: int, page_size: int) -> tuple[int, list]:
    """(how many are dead, one page of them, newest first)."""
    dead = OUTBOX.c.status == DEAD
    count = conn.scalar(select(func.count()).select_from(OUTBOX).where(dead))
    rows = conn.execute(select(*(OUTBOX.c[name] for name in DEAD_COLUMNS)).where(dead)
                        .order_by(OUTBOX.c.id.desc()).limit(page_size).offset(page * page_size)).all()
    return count, rows


def retry_dead(conn, message_id: int | None = None) -> int:
    """Put one dead message (or all) back to pending, due now, with no attempts counted; how many."""
    query = update(OUTBOX).where(OUTBOX.c.status == DEAD)
    if message_id is not None:
        query = query.where(OUTBOX.c.id == message_id)
    return conn.execute(query.values(status=PENDING, attempts=0, next_attempt_at=now(), claim=None)).rowcount
