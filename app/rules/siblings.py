"""Sibling fields kept on every write: an address's province, city, district, detail and parsed flag.

`SiblingStep` sets each sibling (FieldSpec.derived_from, added by app/schema/siblings.py) from its field's new value
through the type's `derive` whenever a write sets that field: forms, the API, imports (its `fields_written` makes
the bulk write carry the columns) and bulk transitions. It runs before the required, unique and formula steps, so
rules, formulas and duplicate checks read the parts of the value being written. A write that leaves the field
alone leaves its siblings alone.
"""
from __future__ import annotations

import logging

from sqlalchemy import and_, bindparam, select, update

from app.rules.record_rules import RuleStep, WriteContext
from app.schema.spec import EntitySpec

log = logging.getLogger(__name__)
FILL_BATCH = 1000


class SiblingStep(RuleStep):
    def applies(self, entity: EntitySpec) -> bool:
        return any(f.derived_from for f in entity.fields)

    def fields_written(self, entity: EntitySpec) -> tuple[str, ...]:
        return tuple(f.name for f in entity.fields if f.derived_from)

    def edit_reads(self, rules, written):
        return frozenset()  # the siblings depend on the written value alone

    def check(self, ctx: WriteContext) -> None:
        self._derive(ctx)  # now: the next steps (rules, formulas, duplicate checks) read the parts

    def before_write(self, ctx: WriteContext) -> None:
        self._derive(ctx)  # again, in case a step since the check changed the value (parses are cached)

    @staticmethod
    def _derive(ctx: WriteContext) -> None:
        with_siblings(ctx.rules.entity, ctx.values)


def with_siblings(entity: EntitySpec, values: dict) -> dict:
    """`values` (field -> new value) with the siblings of each field they set, e.g. the parts of a new address.
    For writers outside the record rules (demo data; a merge or an anonymisation that sets an address must clear or
    move its parts too)."""
    for f in _sources(entity):
        if f.name in values:
            for suffix, value in f.kind.derive(f, values[f.name]).items():
                values[f.name + suffix] = value
    return values


def _sources(entity: EntitySpec) -> tuple:
    """The fields of an entity that have siblings (kept on the frozen spec: asked for every record written)."""
    memo = entity.__dict__
    if "_sibling_sources" not in memo:
        memo["_sibling_sources"] = tuple(f for f in entity.fields if f.kind.siblings)
    return memo["_sibling_sources"]


def fill_new_siblings(engine, portal) -> None:
    """Start-up (under the start-up lock): when sibling columns were just added to a table that has rows (a string
    field became an address, as Customer.address did), derive them once for the stored values."""
    added = set(portal.schema_changes)
    for entity in portal.spec.entities:
        table = portal.models[entity.name].__table__ if entity.name in portal.models else None
        if table is None:
            continue
        for f in _sources(entity):
            names = [f"{f.name}{s.suffix}" for s in f.kind.siblings]
            if not any(f"added column {table.name}.{name}" in added for name in names):
                continue
            source = table.c[f.column_name]
            filled = 0
            with engine.begin() as connection:
                last = 0
                while True:  # keyset batches of rows, one executemany UPDATE each
                    rows = connection.execute(select(table.c.id, source).where(and_(table.c.id > last, source.is_not(None)))
                                              .order_by(table.c.id).limit(FILL_BATCH)).all()
                    if not rows:
                        break
                    values = []
                    for row_id, value in rows:
                        parts = with_siblings(entity, {f.name: value})
                        values.append({"row_id": row_id, **{f"new_{name}": parts[name] for name in names}})
                    connection.execute(update(table).where(table.c.id == bindparam("row_id"))
                                       .values({name: bindparam(f"new_{name}") for name in names}), values)
                    filled += len(rows)
                    last = rows[-1][0]
            log.info("siblings: derived %s for %d stored records of %s", ", ".join(names), filled, entity.name)
