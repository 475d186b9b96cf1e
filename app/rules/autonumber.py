"""Autonumbers (app/fieldtypes/autonumber.py) assigned on create, on every write path, as one rule step.

The numbers come from `portal_counters` (app/generate/models.py), advanced with one statement

    INSERT ... VALUES (entity, field, period, n) ON CONFLICT (entity, field, period)
        DO UPDATE SET value = portal_counters.value + n RETURNING value

in the session's own transaction, before the record is inserted: PostgreSQL holds the counter row's lock
(SQLite its write lock) until that transaction ends, so concurrent creates queue for it and get consecutive
numbers; a rolled-back create rolls its number back too (no gap), and a committed number is never handed out
again. An import takes one range per chunk (one statement per field and chunk).
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy.dialects import postgresql, sqlite

from app.fieldtypes.autonumber import is_autonumber
from app.fieldtypes.registry import type_of
from app.generate.models import COUNTERS_TABLE
from app.rules.record_rules import RuleStep, WriteContext


def autonumber_fields(entity) -> list:
    return [f for f in entity.fields if is_autonumber(f)]


def take_numbers(session, table, entity: str, field: str, period: str, count: int) -> range:
    """`count` consecutive numbers of one counter, advanced in the session's transaction."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(table).values(entity=entity, field=field, period=period, value=count)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.entity, table.c.field, table.c.period],
        set_={"value": table.c.value + statement.excluded.value},
    ).returning(table.c.value)
    last = session.execute(statement).scalar_one()
    return range(last - count + 1, last + 1)


class AutonumberStep(RuleStep):
    """Gives each new record of an entity with autonumber fields its numbers (never on edit)."""

    def applies(self, entity) -> bool:
        return bool(autonumber_fields(entity))

    def fields_written(self, entity) -> tuple[str, ...]:
        return tuple(f.name for f in autonumber_fields(entity))

    def edit_reads(self, rules, written):
        return frozenset()  # numbers are given to new records only

    def before_write(self, ctx: WriteContext) -> None:
        self.before_write_many([ctx])

    def before_write_many(self, batch: list[WriteContext]) -> None:
        new = [ctx for ctx in batch if ctx.creating]
        if not new:
            return
        rules = new[0].rules
        for name, numbers in new_numbers(rules.session, rules.entity, rules.model, len(new)).items():
            for ctx, number in zip(new, numbers):
                ctx.values[name] = number


def new_numbers(session, entity, model, count: int, today: dt.date | None = None) -> dict[str, list[str]]:
    """The next `count` numbers of each autonumber field of an entity: field name -> formatted numbers.

    One counter statement per field; `today` (one clock for the whole batch) picks the period.
    """
    table = model.__table__.metadata.tables[COUNTERS_TABLE]
    today = today or dt.date.today()
    result = {}
    for f in autonumber_fields(entity):
        pattern = type_of(f).pattern(f)
        numbers = take_numbers(session, table, entity.name, f.name, pattern.period_key(today), count)
        result[f.name] = [pattern.format(today, number) for number in numbers]
    return result
