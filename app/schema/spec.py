"""Plain, frozen description of the portal that the checker produces and the builders consume.

Nothing here imports Flask or SQLAlchemy: a spec can be checked and tested on its own.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from app.fieldtypes import BUILTIN_TYPES, FieldType

LOCALES = ("en", "zh")
DEFAULT_LOCALE = "en"

FIELD_TYPES = BUILTIN_TYPES.names  # an app may add its own (PORTAL_FIELD_TYPES, app/fieldtypes)
ON_DELETE = ("cascade", "restrict", "set_null")
VERSION_COLUMN = "row_version"  # every entity table's optimistic-locking counter (a reserved field name)


def snake_case(name: str) -> str:
    """CustomerContact -> customer_contact (used for tables and API paths)."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def humanize(name: str) -> str:
    """next_follow_up -> Next follow up; FollowUp -> Follow up."""
    words = snake_case(name).replace("_", " ").strip()
    return words[:1].upper() + words[1:]


@dataclass(frozen=True)
class Label:
    """A text in several locales; falls back to English, then to any locale."""

    texts: tuple[tuple[str, str], ...]

    def get(self, locale: str | None) -> str:
        table = dict(self.texts)
        if locale:
            base = locale.replace("-", "_").split("_")[0]
            if base in table:
                return table[base]
        return table.get(DEFAULT_LOCALE) or next(iter(table.values()), "")

    def missing(self, locales=LOCALES) -> tuple[str, ...]:
        have = dict(self.texts)
        return tuple(loc for loc in locales if loc not in have)

    @classmethod
    def plain(cls, text: str) -> "Label":
        return cls(((DEFAULT_LOCALE, text),))


@dataclass(frozen=True)
class Choice:
    key: str
    label: Label


ROLLUP_FUNCTIONS = ("count", "sum", "avg", "min", "max")


@dataclass(frozen=True)
class RollupSpec:
    """`rollup: {of: Child.link, measure: sum(field), where: {field: value}}` of a parent's field: the
    `function` of the child's `field` (None for count) over the child records whose `link` points at the
    parent and that match `where` (field -> accepted literal values, as a report's `filter`)."""

    child: str
    link: str
    function: str
    field: str | None = None
    where: tuple = ()  # conditions of the filter language (app/schema/filters.py), without $user, $today or links
    line: int = 0

    @property
    def empty(self):
        """The value over no child records: 0 for count and sum, null for avg, min and max."""
        return 0 if self.function in ("count", "sum") else None

    @property
    def fields_read(self) -> frozenset:
        """The child's fields whose change may change the value."""
        return frozenset({self.link, *((self.field,) if self.field else ()), *(c.path[0] for c in self.where)})


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str
    label: Label
    line: int = 0
    label_given: bool = False
    required: bool = False
    unique: bool = False
    default: Any = None
    min: Any = None
    max: Any = None
    length: int | None = None
    pattern: str | None = None
    help: Label | None = None
    index: bool = False
    readonly: bool = False
    choices: tuple[Choice, ...] = ()
    to: str | None = None  # target entity of link / many
    on_delete: str = "restrict"
    precision: int = 12
    scale: int = 2
    # `formula:` (app/schema/expressions.py Expression, parsed and typed by the checker): computed on every
    # write, stored, read-only
    formula: Any = None
    # `rollup:` (RollupSpec): an aggregate over child records, stored, read-only (app/rules/rollups.py keeps it)
    rollup: "RollupSpec | None" = None
    # `default: worker.day_rate`: (link field of this entity, field of the linked entity) copied when the link
    # is set or changed and no value is given (app/schema/links.py checks it, app/rules/link_rules.py fills it)
    default_from: tuple[str, str] | None = None
    # `filter:` of a link/many field: the conditions a chosen record must meet (all of them)
    filter: tuple["PickerCondition", ...] = ()
    # a `file` field's `max_mb` and `types` (app/fieldtypes/files.py FileType; None for other types)
    files: "FilesSpec | None" = None
    # a sibling column derived from another field of the entity (an address's `<field>_province` ...; the type's
    # `siblings`): that field's name. Read-only, kept on every write by app/rules/siblings.py
    derived_from: str | None = None
    # the FieldType the checker resolved `type` to (the app's registry may add types); everything that
    # differs between types is asked of it: `f.kind.clean(f, value)`, `f.kind.is_relation`, ...
    field_type: FieldType | None = field(default=None, compare=False, repr=False)

    @property
    def kind(self) -> FieldType:
        return self.field_type if self.field_type is not None else BUILTIN_TYPES[self.type]

    @property
    def is_relation(self) -> bool:
        return self.kind.is_relation

    @property
    def stores_link(self) -> bool:
        """A link or user field: one record, kept in a `<name>_id` column (many fields use a table of pairs)."""
        return self.kind.is_relation and not self.kind.multiple

    @property
    def column_name(self) -> str:
        """The real column: link and user fields store `<name>_id`; many fields have none."""
        return f"{self.name}_id" if self.stores_link else self.name

    def choice_label(self, key) -> Label | None:
        for choice in self.choices:
            if choice.key == key:
                return choice.label
        return None


@dataclass(frozen=True)
class EntitySpec:
    name: str
    module: str
    label: Label
    file: str
    line: int
    fields: tuple[FieldSpec, ...]
    title: str | None = None
    list: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    order: tuple[tuple[str, str], ...] = ()  # (field, "asc"|"desc")
    unique_together: tuple[tuple[str, ...], ...] = ()
    label_given: bool = False
    rules: tuple["CheckRule", ...] = ()
    formula_order: tuple[str, ...] = ()  # formula fields, each after the formulas it reads (the checker sorts them)
    # `lines: [OrderLine]`: child entities edited as a grid on this entity's form and nested in its API records
    lines: tuple[str, ...] = ()
    lines_line: int = field(default=0, compare=False)  # where `lines:` is written (the checker's codes point there)
    # record lifecycle (issue 13): a workflow over one enum field, field-change history, comments, attachments
    workflow: "WorkflowSpec | None" = None
    history: bool = False
    comments: bool = False
    attachments: "FilesSpec | None" = None
    # `retention:` (issue 16): policies that anonymize, delete or archive old records (app/schema/retention.py)
    retention: tuple["RetentionSpec", ...] = ()
    # `duplicates:` (issue 16): rules that make two records candidate duplicates (app/data/duplicates.py)
    duplicates: tuple["DuplicateRule", ...] = ()

    @property
    def lines_keys(self) -> tuple[tuple[str, str], ...]:
        """(key, child entity) of each lines entity: the first is `lines`, others their snake_case name."""
        return tuple(("lines" if i == 0 else snake_case(child), child) for i, child in enumerate(self.lines))

    @cached_property  # read for every record written (an import asks per row)
    def formulas(self) -> tuple[FieldSpec, ...]:
        """Formula fields in the order they must be computed."""
        return tuple(self.field(name) for name in self.formula_order)

    @cached_property
    def formula_inputs(self) -> tuple[str, ...]:
        """The fields (first part of each name) the formulas read, other than formula fields."""
        read = {path[0] for f in self.formulas for path in f.formula.names}
        return tuple(sorted(read - set(self.formula_order)))

    @property
    def snake(self) -> str:
        return snake_case(self.name)

    @property
    def table(self) -> str:
        return self.snake

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


@dataclass(frozen=True)
class DuplicateRule:
    """One `duplicates:` rule: `match` fields equal (exact, on the stored normalised value) or, with `fuzzy`, similar
    by at least that score (0-100, one text field); `same` fields equal too. Null never equals null. `save_anyway`:
    the roles that may save a record despite this rule's candidates (empty: whoever may create/edit the entity)."""

    match: tuple[str, ...]
    fuzzy: int | None = None
    same: tuple[str, ...] = ()
    save_anyway: tuple[str, ...] = ()
    line: int = 0

    @property
    def fields(self) -> tuple[str, ...]:
        return self.match + self.same

    @property
    def id(self) -> str:
        """A stable name for the rule in API answers: `phone`, `name~90=address_city`."""
        text = "+".join(self.match) + (f"~{self.fuzzy}" if self.fuzzy is not None else "")
        return text + ("=" + "+".join(self.same) if self.same else "")


@dataclass(frozen=True)
class TransitionSpec:
    """One named step of a workflow: `resolve: {from: in_progress, to: resolved, roles: [Agent], ...}`."""

    name: str
    sources: tuple[str, ...]          # `from`: the states it may start in
    target: str                       # `to`
    roles: tuple[str, ...]            # who may take it (Admin always may)
    label: Label
    require: tuple[str, ...] = ()     # fields the user must fill in when taking it
    set: tuple[tuple[str, Any], ...] = ()  # field -> "now" | "today" | "current_user" | a literal of its type
    when: Any = None                  # app/schema/expressions.py Expression over the record, or None
    line: int = 0


@dataclass(frozen=True)
class WorkflowSpec:
    """`workflow:` of an entity: its enum `field` only changes through `transitions`; `locked` states are
    read-only (edits and deletes refused) except through transitions."""

    field: str
    transitions: tuple[TransitionSpec, ...]
    locked: tuple[str, ...] = ()
    line: int = 0

    def transition(self, name: str) -> TransitionSpec | None:
        return next((t for t in self.transitions if t.name == name), None)


@dataclass(frozen=True)
class FilesSpec:
    """Which files a record (`attachments:`) or a `file` field takes: at most `max_mb` megabytes, of `types`
    (names from app/fieldtypes/files.py FILE_KINDS, checked by content, not only by extension)."""

    max_mb: int = 20
    types: tuple[str, ...] = ()
    line: int = 0

    @property
    def max_bytes(self) -> int:
        return self.max_mb * 1024 * 1024


@dataclass(frozen=True)
class PickerCondition:
    """One condition of a link's `filter:`: the linked record's `field` is one of `values` (literals), the
    signed-in user (`$user`) or the value of this record's `record_field` (`$record.<field>`; "contains" when
    `field` is a many field). An empty `$record` value drops the condition."""

    field: str
    values: tuple = ()
    user: bool = False
    record_field: str | None = None
    line: int = 0


RECORD_PREFIX = "$record."


@dataclass(frozen=True)
class CheckRule:
    """One `rules:` entry: `check` must not be false; else `message` is shown under `fields`."""

    check: Any  # app/schema/expressions.py Expression
    fields: tuple[str, ...]
    message: Label
    line: int = 0
    field_lines: tuple[int, ...] = field(default=(), compare=False)  # where each of `fields` is written


ACTIONS = ("read", "create", "update", "delete", "import", "export")
CURRENT_USER = "$user"


@dataclass(frozen=True)
class RoleSpec:
    name: str
    label: Label
    file: str
    line: int
    grants: tuple[tuple[str, frozenset], ...] = ()       # entity -> actions
    rows: tuple[tuple[str, tuple], ...] = ()  # entity -> a filter (app/schema/filters.py): all conditions hold
    hide: tuple[tuple[str, frozenset], ...] = ()
    mask: tuple[tuple[str, frozenset], ...] = ()
    reports: tuple[str, ...] = ()

    def actions(self, entity: str) -> frozenset:
        return dict(self.grants).get(entity, frozenset())

    def row_rules(self, entity: str) -> tuple | None:
        return dict(self.rows).get(entity)

    def hidden(self, entity: str) -> frozenset:
        return dict(self.hide).get(entity, frozenset())

    def masked(self, entity: str) -> frozenset:
        return dict(self.mask).get(entity, frozenset())


DATE_BUCKETS = ("day", "week", "month", "quarter", "year")
AGGREGATES = ("count", "sum", "avg", "min", "max", "count_distinct", "avg_hours_between")
CHARTS = ("bar", "line", "pie", "table")
FORMATS = ("money", "percent", "number", "duration")  # how a measure's number is shown (duration: from hours)


@dataclass(frozen=True)
class GroupBy:
    field: str
    bucket: str | None = None  # for date/datetime fields


@dataclass(frozen=True)
class Measure:
    name: str
    function: str
    label: Label
    fields: tuple[str, ...] = ()  # () for count; (start, end) for avg_hours_between
    format: str | None = None  # one of FORMATS


@dataclass(frozen=True)
class SourceSpec:
    """One entity aggregated by a cross-entity report, joined to the others on the shared group."""
    name: str
    entity: str
    key: str  # "id" when `entity` is the group entity, else a link field of `entity` to it
    measures: tuple[Measure, ...]
    filter: tuple = ()
    date_field: str | None = None  # what the user's date range applies to (default: the entity's first date)
    line: int = field(default=0, compare=False)

    @property
    def key_field(self) -> str:
        return self.key.partition(":")[0]

    @property
    def key_bucket(self) -> str | None:
        """`paid_on:month`: the sources meet on months of their own dates (no group entity)."""
        return self.key.partition(":")[2] or None


@dataclass(frozen=True)
class DerivedSpec:
    """A measure computed from other measures (`expr`), per row and on the totals; styles colour its cells."""
    name: str
    expr: object  # app/schema/expressions.Expression
    label: Label
    format: str | None = None
    styles: tuple[tuple[str, object], ...] = ()  # (style, Expression giving true/false), most severe first


@dataclass(frozen=True)
class ReportSpec:
    id: str
    module: str
    label: Label
    entity: str
    file: str
    line: int
    group_by: tuple[GroupBy, ...]
    measures: tuple[Measure, ...]
    filter: tuple = ()  # conditions of the filter language (app/schema/filters.py)
    chart: str = "bar"
    date_field: str | None = None  # what the user's date range applies to
    chart_measure: str | None = None  # the measure the chart plots (default: the first)
    chart_measures: tuple[str, ...] = ()  # every measure the chart plots (`chart_measure: [a, b]`); [0] is chart_measure
    sources: tuple[SourceSpec, ...] = ()  # cross-entity: `entity` is then the group entity the keys link to
    derived: tuple[DerivedSpec, ...] = ()
    columns: GroupBy | None = None  # pivot: one column per date bucket or enum value
    cumulative: bool = False  # pivot cells as running totals along the columns

    @property
    def time_bucket(self) -> str | None:
        """A cross-entity report whose sources meet on date buckets (month, week…) rather than on a record."""
        return self.sources[0].key_bucket if self.sources else None

    @property
    def entities(self) -> tuple[str, ...]:
        """Every entity the report reads: the viewer must be able to read each."""
        return tuple(dict.fromkeys(s.entity for s in self.sources)) if self.sources else (self.entity,)

    def fields_used(self) -> set[str]:
        used = {g.field for g in self.group_by} | {c.path[0] for c in self.filter}
        used |= {f for m in self.measures for f in m.fields}
        return used | ({self.date_field} if self.date_field else set())


@dataclass(frozen=True)
class ModuleSpec:
    name: str
    label: Label
    file: str
    entities: tuple[EntitySpec, ...]
    label_given: bool = False
    roles: tuple[RoleSpec, ...] = ()  # as written in this file; PortalSpec.roles merges them
    reports: tuple[ReportSpec, ...] = ()
    webhooks: tuple = ()  # app/schema/webhooks.py WebhookSpec
    reminders: tuple = ()  # app/schema/reminders.py ReminderSpec
    views: tuple = ()       # app/schema/views.py ViewSpec (`views:`) ...
    highlights: tuple = ()  # ... and HighlightSpec (`highlight:`)
    dashboards: tuple = ()  # app/schema/dashboards.py DashboardSpec (`dashboards:`)


@dataclass(frozen=True)
class PortalSpec:
    modules: tuple[ModuleSpec, ...] = field(default_factory=tuple)
    roles: tuple[RoleSpec, ...] = ()  # merged across modules

    def role(self, name: str) -> RoleSpec | None:
        return next((r for r in self.roles if r.name == name), None)

    @property
    def reports(self) -> tuple[ReportSpec, ...]:
        return tuple(r for m in self.modules for r in m.reports)

    @property
    def webhooks(self) -> tuple:
        """Every module's webhooks (app/schema/webhooks.py WebhookSpec); names are unique across modules."""
        return tuple(w for m in self.modules for w in m.webhooks)

    @property
    def reminders(self) -> tuple:
        return tuple(r for m in self.modules for r in m.reminders)

    def report(self, report_id: str) -> ReportSpec | None:
        return next((r for r in self.reports if r.id == report_id), None)

    @property
    def entities(self) -> tuple[EntitySpec, ...]:
        return tuple(e for m in self.modules for e in m.entities)

    def entity(self, name: str) -> EntitySpec:
        for e in self.entities:
            if e.name == name:
                return e
        raise KeyError(name)

    def back_link(self, child: str, parent: str) -> FieldSpec:
        """The one link field of a lines entity that points at its parent (the checker made sure there is one)."""
        return next(f for f in self.entity(child).fields if f.stores_link and f.to == parent and not f.kind.to_users)

    def links_to(self, target: str) -> list[tuple[EntitySpec, FieldSpec]]:
        """Every (entity, link field) pointing at `target`: used for related-record panels."""
        return [(e, f) for e in self.entities for f in e.fields if f.stores_link and f.to == target]
