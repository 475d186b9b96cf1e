"""Sibling fields kept on every write: an address's province, city, district, detail and parsed flag.

`SiblingStep` sets each sibling (FieldSpec.derived_from, added by app/schema/siblings.py) from its field's new value
through the type's `derive` whenever a write sets that field: forms, the API, imports (its `fields_written` makes
the bulk write carry the columns) and bulk transitions. It runs before the required, unique and formula steps, so
rules, formulas and duplicate checks read the parts of the value being written. A write that leaves the field
alone leaves its siblings alone.
"""
from __future__ import annotations

from app.rules.record_rules import RuleStep, WriteContext
from app.schema.spec import EntitySpec


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
