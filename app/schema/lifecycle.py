"""Check an entity's record lifecycle: `workflow:` (transitions over an enum field), `history:`, `comments:`
and `attachments:` (E520–E539).

Read with the entity (read_lifecycle), then checked once every entity and role is known (check_lifecycle):
a transition names roles, and its `when` is an expression over the record typed like a rule's check.
"""
from __future__ import annotations

import dataclasses
import re

from app.fieldtypes.files import DEFAULT_FILE_TYPES, DEFAULT_MAX_MB, FILE_KIND_ALIASES, FILE_KINDS, MAX_MB
from app.schema.expressions import BOOLEAN
from app.schema.fields import literal_default
from app.schema.formulas import expression_typer, parse_expression
from app.schema.loader import YList, YMap
from app.schema.spec import EntitySpec, FilesSpec, RoleSpec, TransitionSpec, WorkflowSpec, humanize
from app.schema.values import Check, did_you_mean, kind, short

WORKFLOW_KEYS = ("field", "transitions", "locked")
TRANSITION_KEYS = ("from", "to", "roles", "label", "require", "set", "when")
FILES_KEYS = ("max_mb", "types")
TRANSITION_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
BUILT_IN_ROLES = ("Admin",)  # Admin may take every transition


@dataclasses.dataclass
class Lifecycle:
    """What read_lifecycle found; the workflow is finished by check_lifecycle."""

    workflow: WorkflowSpec | None = None
    history: bool = False
    comments: bool = False
    attachments: FilesSpec | None = None


def read_files_spec(run: Check, file: str, line: int, what: str, raw) -> FilesSpec | None:
    """`{max_mb: 20, types: [pdf, jpg]}` (or `true` for the defaults) as a FilesSpec."""
    if raw is True:
        return FilesSpec(DEFAULT_MAX_MB, DEFAULT_FILE_TYPES, line)
    if raw is None or raw is False:
        return None
    if not isinstance(raw, YMap):
        run.error(file, line, "E530", f"{what} must be true or a mapping like {{max_mb: 20, types: [pdf, jpg]}}, got {kind(raw)}")
        return None
    run.keys(raw, FILES_KEYS, file, what, "E530")
    max_mb = DEFAULT_MAX_MB
    if "max_mb" in raw:
        max_mb = run.integer(raw["max_mb"], file, raw.line_of("max_mb"), f"max_mb of {what}", 1, MAX_MB) or DEFAULT_MAX_MB
    types = DEFAULT_FILE_TYPES
    if "types" in raw:
        names = run.name_list(raw["types"], file, raw.line_of("types"), f"types of {what}")
        chosen = []
        for name, ln in names:
            key = FILE_KIND_ALIASES.get(name.lower(), name.lower())
            if key not in FILE_KINDS:
                run.error(file, ln, "E531", f"{what}: unknown file type '{short(name)}'; known: {', '.join(FILE_KINDS)}"
                                            f"{did_you_mean(name, FILE_KINDS)}")
            elif key not in chosen:
                chosen.append(key)
        if not names and "types" in raw:
            run.error(file, raw.line_of("types"), "E531", f"{what}: types must name at least one file type")
        types = tuple(chosen)
    return FilesSpec(max_mb, types, line)


def read_lifecycle(run: Check, file: str, entity: str, raw: YMap) -> Lifecycle:
    found = Lifecycle()
    for key in ("history", "comments"):
        if key in raw:
            setattr(found, key, run.boolean(raw[key], file, raw.line_of(key), f"{key} of entity '{entity}'"))
    if "attachments" in raw:
        found.attachments = read_files_spec(run, file, raw.line_of("attachments"), f"attachments of entity '{entity}'",
                                            raw["attachments"])
    if "workflow" in raw:
        found.workflow = _read_workflow(run, file, entity, raw["workflow"], raw.line_of("workflow"))
    return found


def _states(run: Check, file, line, what, raw) -> tuple[str, ...]:
    if isinstance(raw, str):
        return (raw,)
    names = run.name_list(raw, file, line, what)
    return tuple(name for name, _ in names)


def _read_workflow(run: Check, file, entity, raw, line) -> WorkflowSpec | None:
    what = f"workflow of entity '{entity}'"
    if not isinstance(raw, YMap):
        run.error(file, line, "E520", f"{what} must be a mapping with field and transitions, got {kind(raw)}")
        return None
    run.keys(raw, WORKFLOW_KEYS, file, what, "E520")
    field_name = run.text(raw.get("field"), file, raw.line_of("field"), f"field of {what}") if "field" in raw else None
    if "field" not in raw:
        run.error(file, line, "E520", f"{what} needs 'field' (an enum field holding the state)")
    transitions = []
    raw_transitions = raw.get("transitions")
    if not isinstance(raw_transitions, YMap) or not raw_transitions:
        run.error(file, raw.line_of("transitions"), "E520",
                  f"{what} needs 'transitions', a mapping like start: {{from: open, to: in_progress, roles: [Agent]}}")
    else:
        for name, item in raw_transitions.items():
            t = _read_transition(run, file, entity, name, item, raw_transitions.line_of(name))
            if t is not None:
                transitions.append(t)
    locked = _states(run, file, raw.line_of("locked"), f"locked of {what}", raw["locked"]) if "locked" in raw else ()
    if field_name is None:
        return None
    return WorkflowSpec(field_name, tuple(transitions), locked, line)


def _read_transition(run: Check, file, entity, name, raw, line) -> TransitionSpec | None:
    if not isinstance(name, str) or not TRANSITION_NAME.match(name):
        run.error(file, line, "E522", f"transition name {short(repr(name))} of entity '{entity}' must be lowercase letters, digits and _ (e.g. resolve)")
        return None
    what = f"transition '{name}' of entity '{entity}'"
    raw = run.mapping(raw, file, line, what)
    if raw is None:
        return None
    run.keys(raw, TRANSITION_KEYS, file, what, "E522")
    for key in ("from", "to", "roles"):
        if key not in raw:
            run.error(file, line, "E522", f"{what} needs '{key}'")
    sources = _states(run, file, raw.line_of("from"), f"from of {what}", raw.get("from", YList()))
    target = run.text(raw["to"], file, raw.line_of("to"), f"to of {what}") if "to" in raw else None
    roles = tuple(n for n, _ in run.name_list(raw.get("roles", YList()), file, raw.line_of("roles"), f"roles of {what}"))
    label, _ = run.label(raw.get("label"), file, raw.line_of("label"), f"label of {what}", humanize(name))
    require = tuple(n for n, _ in run.name_list(raw.get("require", YList()), file, raw.line_of("require"), f"require of {what}"))
    stamps = []
    if "set" in raw and run.mapping(raw["set"], file, raw.line_of("set"), f"set of {what}") is not None:
        stamps = [(key, value) for key, value in raw["set"].items()]
    when = None
    if "when" in raw:
        when = parse_expression(run, file, raw.line_of("when"), f"when of {what}", raw["when"])
    if target is None or not sources:
        return None
    return TransitionSpec(name, sources, target, roles, label, require, tuple(stamps), when, line)


def check_lifecycle(run: Check, entity: EntitySpec, entities: dict[str, EntitySpec],
                    roles: tuple[RoleSpec, ...]) -> EntitySpec:
    """The workflow against the entity's fields and the portal's roles; returns the entity with `set` values
    cleaned (literals as values of their field's type)."""
    workflow = entity.workflow
    if workflow is None:
        return entity
    file, where = entity.file, f"workflow of entity '{entity.name}'"
    by_name = {f.name: f for f in entity.fields}
    state_field = by_name.get(workflow.field)
    if state_field is None:
        run.error(file, workflow.line, "E521", f"{where} names unknown field '{short(workflow.field)}'{did_you_mean(workflow.field, by_name)}")
        return dataclasses.replace(entity, workflow=None)
    if not state_field.choices or state_field.kind.multiple or state_field.formula is not None or state_field.rollup is not None:
        run.error(file, workflow.line, "E521", f"{where}: field '{workflow.field}' must be an enum field (not a formula or rollup)")
        return dataclasses.replace(entity, workflow=None)
    if state_field.unique:  # every record starts in the default state: a second record could never be created
        run.error(file, state_field.line, "E537", f"{where}: field '{workflow.field}' holds the state, which many "
                  f"records share; remove 'unique: true'")
    states = [c.key for c in state_field.choices]
    if state_field.default is None or state_field.default not in states:
        run.error(file, state_field.line, "E529", f"{where}: field '{workflow.field}' needs a default, the state new records start in")
    for state in workflow.locked:
        if state not in states:
            run.error(file, workflow.line, "E528", f"{where}: locked state '{short(state)}' is not a choice of '{workflow.field}'{did_you_mean(state, states)}")
    role_names = {r.name for r in roles} | set(BUILT_IN_ROLES)
    typed = expression_typer(run, entity, entities)
    transitions = []
    for t in workflow.transitions:
        what = f"transition '{t.name}' of entity '{entity.name}'"
        for state in (*t.sources, t.target):
            if state not in states:
                run.error(file, t.line, "E523", f"{what}: '{short(state)}' is not a state of '{workflow.field}' ({', '.join(states)}){did_you_mean(state, states)}")
        for role in t.roles:
            if role not in role_names:
                run.error(file, t.line, "E524", f"{what} names unknown role '{short(role)}'{did_you_mean(role, role_names)}")
        for name in t.require:
            f = by_name.get(name)
            if f is None:
                run.error(file, t.line, "E525", f"{what} requires unknown field '{short(name)}'{did_you_mean(name, by_name)}")
            elif name == workflow.field or f.readonly or f.formula is not None or f.rollup is not None or f.kind.assigned:
                run.error(file, t.line, "E525", f"{what} requires '{name}', which users cannot fill in")
        stamps = []
        for name, value in t.set:
            f = by_name.get(name)
            if f is None:
                run.error(file, t.line, "E526", f"{what} sets unknown field '{short(name)}'{did_you_mean(name, by_name)}")
                continue
            if name == workflow.field or f.formula is not None or f.rollup is not None or f.kind.assigned or f.kind.multiple:
                run.error(file, t.line, "E526", f"{what} cannot set '{name}' (the state, a formula, rollup, autonumber or many field)")
                continue
            cleaned = literal_default(run, file, t.line, entity.name, f, value)
            if cleaned is not None:
                stamps.append((name, cleaned))
        if t.when is not None:
            result = typed(t.when, t.line, f"when of {what}")
            if result is not None and result not in ("any", "null", BOOLEAN):
                run.error(file, t.line, "E527", f"when of {what} gives {result}, not true/false")
            _when_reads_nothing_hidden(run, entity, entities, roles, t, what)
        transitions.append(dataclasses.replace(t, set=tuple(stamps)))
    return dataclasses.replace(entity, workflow=dataclasses.replace(workflow, transitions=tuple(transitions)))


def _when_reads_nothing_hidden(run: Check, entity: EntitySpec, entities: dict[str, EntitySpec],
                               roles: tuple[RoleSpec, ...], t: TransitionSpec, what: str) -> None:
    """E536: whether a button is offered would tell a role a field it may not see (an oracle, like E473)."""
    by_name = {f.name: f for f in entity.fields}
    takers = [r for r in roles if r.name in t.roles]
    for path in sorted(t.when.names):
        first = by_name.get(path[0])
        if first is None:
            continue
        where = [(entity.name, path[0])]
        if len(path) > 1 and first.stores_link and first.to in entities:
            where.append((first.to, path[1]))
        for role in takers:
            for entity_name, name in where:
                if name in role.hidden(entity_name) | role.masked(entity_name):
                    run.error(entity.file, t.line, "E536", f"when of {what} reads '{'.'.join(path)}', which role "
                                                           f"'{role.name}' may not see: the button would tell it")
