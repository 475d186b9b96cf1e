"""Workflows (`workflow:` of an entity): the state field changes only through named transitions.

- `WorkflowStep` (a RuleStep, before formulas so `approved: state == 'approved'` reads the new state): a new record
  starts in the field's default; a plain edit (form, API, import) may not change the state; a record in a `locked`
  state refuses every plain edit. Transitions set `source="transition"` on their WriteContext and pass it.
- `may_take`, `available`, `stamp_values`, `take`, `is_locked`, `locked_refusal`: what pages, the API and bulk
  actions call. `take` writes through the same RecordRules as every write (required, unique, formulas, `rules:`;
  rollups follow through the flush listener), inside `history.writing_as("transition", name)`.
"""
from __future__ import annotations

import datetime as dt

from flask_babel import lazy_gettext as _l

from app.i18n import current_locale
from app.rules import history
from app.rules.record_rules import RuleStep, WriteContext
from app.rules.records import FieldError, is_blank
from app.schema.spec import VERSION_COLUMN, EntitySpec, TransitionSpec

TRANSITION_SOURCE = "transition"


class TransitionRefused(Exception):
    """Why a transition may not be taken: `status` 403 (role), 404 (no such transition), 409 (state, `when`, locked),
    422 (a required value missing, a rule broken); `message` is localized text; `errors` maps fields to messages."""

    def __init__(self, status: int, message, errors: dict | None = None) -> None:
        super().__init__(str(message))
        self.status = status
        self.message = str(message)
        self.errors = errors or {}


# -- reading the spec ------------------------------------------------------------------------------


def state_label(entity: EntitySpec, state) -> str:
    """A state's label in the user's language (the key itself if it is not a choice)."""
    label = entity.field(entity.workflow.field).choice_label(state)
    return label.get(current_locale()) if label is not None else str(state)


def transition_label(transition: TransitionSpec) -> str:
    return transition.label.get(current_locale()) or transition.name


def state_of(entity: EntitySpec, item):
    return getattr(item, entity.workflow.field, None)


def is_locked(entity: EntitySpec, item) -> bool:
    """The record sits in one of its workflow's `locked` states: only transitions may change it."""
    return bool(entity.workflow) and state_of(entity, item) in entity.workflow.locked


def _locked_message(entity: EntitySpec, state) -> str:
    return str(_l("%(entity)s is %(state)s: it can only change through its workflow.",
                  entity=entity.label.get(current_locale()), state=state_label(entity, state)))


def locked_refusal(entity: EntitySpec, item) -> str | None:
    """The localized reason a locked record may not be deleted (pages, API, bulk say the same), or None."""
    return _locked_message(entity, state_of(entity, item)) if is_locked(entity, item) else None


def lines_parents(portal, child: EntitySpec) -> list:
    """(parent, back link) of each workflow entity with `locked` states that edits `child` as its `lines:`.
    Asked on every write of every entity: worked out once per entity, kept on the (immutable) spec."""
    memo = portal.__dict__.setdefault("_lines_parents_memo", {})
    if child.name not in memo:
        memo[child.name] = [(parent, portal.back_link(child.name, parent.name)) for parent in portal.entities
                            if child.name in parent.lines and parent.workflow is not None and parent.workflow.locked]
    return memo[child.name]


def locked_parent_message(child: EntitySpec, parent: EntitySpec, state) -> str:
    return str(_l("%(parent)s is %(state)s: its %(lines)s can only change through its workflow.",
                  parent=parent.label.get(current_locale()), state=state_label(parent, state),
                  lines=child.label.get(current_locale())))


def _parent_state(rules, parent: EntitySpec, ref):
    """The workflow state of the parent a line points at: a record (forms, API) or an id (imports); None for a
    parent being created with its lines (it has no stored state yet)."""
    if ref is None:
        return None
    if hasattr(ref, "__table__"):
        return getattr(ref, parent.workflow.field, None) if ref.id is not None else None
    if not isinstance(ref, int) or isinstance(ref, bool):
        return None
    from sqlalchemy import select

    model = rules.models[parent.name]
    return rules.session.scalar(select(getattr(model, parent.workflow.field)).where(model.id == ref))


# -- may a user take it -----------------------------------------------------------------------------

def role_may_take(viewer, transition: TransitionSpec) -> bool:
    """Whether one of the user's roles is named by the transition (Admin always is), whatever the record's state
    (also the transitions a list page's action bar offers)."""
    return viewer.is_admin or bool({role.name for role in getattr(viewer.user, "roles", None) or []}
                                   & set(transition.roles))


def _record_reader(item):
    """`get(path)` over a stored record for `when`: a field, or one hop through a link (`worker.day_rate`)."""
    def get(path):
        value = getattr(item, path[0], None)
        if len(path) == 1 or value is None:
            return value
        return getattr(value, path[1], None)
    return get


def may_take(viewer, entity: EntitySpec, item, transition: TransitionSpec | None) -> TransitionRefused | None:
    """Why `viewer` may not take `transition` on `item` now (None: they may). Reads only; the caller loaded `item`
    inside the viewer's row scope."""
    if transition is None or entity.workflow is None:
        return TransitionRefused(404, _l("No such transition."))
    name = transition_label(transition)
    if not role_may_take(viewer, transition):
        return TransitionRefused(403, _l("Your role may not take the transition '%(transition)s'.", transition=name))
    unreadable = viewer.unreadable(entity.name)  # hidden or masked for this user
    if entity.workflow.field in unreadable:  # the buttons would tell the state
        return TransitionRefused(403, _l("Your role may not see the state of this record."))
    if unreadable.intersection(transition.require):
        return TransitionRefused(403, _l("'%(transition)s' needs fields your role may not fill in.", transition=name))
    state = state_of(entity, item)
    if state not in transition.sources:
        return TransitionRefused(409, _l("'%(transition)s' is not possible while the record is %(state)s.",
                                         transition=name, state=state_label(entity, state)))
    if transition.when is not None and transition.when.run(_record_reader(item)) is not True:
        return TransitionRefused(409, _l("'%(transition)s' is not possible for this record (%(condition)s).",
                                         transition=name, condition=transition.when.source))
    return None


def available(viewer, entity: EntitySpec, item) -> list[TransitionSpec]:
    """The transitions `viewer` may take on `item` now, in the order the YAML lists them."""
    if entity.workflow is None:
        return []
    return [t for t in entity.workflow.transitions if may_take(viewer, entity, item, t) is None]


# -- taking it ---------------------------------------------------------------------------------------

def stamp_values(transition: TransitionSpec, user, now: dt.datetime) -> dict:
    """The transition's `set:` values with "now", "today" and "current_user" resolved (literals as they are). The
    checker lets `now` stamp datetime fields only and `today` date fields only (E417)."""
    values = {}
    for name, value in transition.set:
        if value == "current_user":
            value = user
        elif value == "now":
            value = now
        elif value == "today":
            value = now.date()
        values[name] = value
    return values


def _required_values(rules, transition: TransitionSpec, values: dict) -> tuple[dict, dict]:
    """The `require` fields' values cleaned through their types like any write: (values, errors)."""
    cleaned, errors = {}, {}
    for key in values:
        if key not in transition.require:
            errors[key] = [str(_l("Unknown field."))]
    for name in transition.require:
        f = rules.entity.field(name)
        raw = values.get(name)
        if name in rules.unreadable:  # hidden or masked for this user: not theirs to write, as on any write
            errors[name] = [str(_l("This field is read-only."))]
        elif is_blank(raw) or raw == []:
            errors[name] = [str(_l("This field is required."))]
        else:
            try:
                cleaned[name] = rules.clean(f, raw)
            except FieldError as exc:
                errors[name] = [str(exc)]
    return cleaned, errors


def _current_user(rules):
    from flask_appbuilder.security.sqla.models import User

    user_id = rules.viewer.user_id
    return rules.session.get(User, user_id) if user_id is not None else None


def take(rules, item, name: str, values: dict) -> None:
    """Take transition `name` on `item` for `rules.viewer`: checks, then the target state, stamps and required
    values written through the record rules (flushed, not committed). Raises TransitionRefused."""
    entity = rules.entity
    transition = entity.workflow.transition(name) if entity.workflow else None
    refusal = may_take(rules.viewer, entity, item, transition)
    if refusal is not None:
        raise refusal
    cleaned, errors = _required_values(rules, transition, values or {})
    if errors:
        raise TransitionRefused(422, _l("Fill in what '%(transition)s' needs.",
                                        transition=transition_label(transition)), errors)
    now = dt.datetime.now().replace(microsecond=0)
    new_values = {**cleaned, **stamp_values(transition, _current_user(rules), now),
                  entity.workflow.field: transition.target}
    ctx = rules.context(new_values, False, TRANSITION_SOURCE, item)
    errors = rules.check(ctx)
    if errors:
        raise TransitionRefused(422, _l("'%(transition)s' would break a rule of this record.",
                                        transition=transition_label(transition)), errors)
    session = rules.session
    with history.writing_as(TRANSITION_SOURCE, name):
        with session.no_autoflush:  # setting a link loads a collection: no flush half-way (one event, one version)
            rules.apply(item, rules.before_write(ctx))
            changes_recorded = _records_a_change(entity, item)
            if not session.is_modified(item):  # `stay: {from: a, to: a}`: an UPDATE all the same, the version rises
                setattr(item, VERSION_COLUMN, getattr(item, VERSION_COLUMN) + 1)
        session.flush()  # inside writing_as: the history listener records the flush as this transition
        if not changes_recorded:  # a transition is an event even when it changes no recorded field
            user_id, username = history.current_author()
            history.write_history(session.connection(), rules.model.metadata, entity,
                                  [history.Event(item.id, history.TRANSITION, {}, name)], user_id, username)


def _records_a_change(entity: EntitySpec, item) -> bool:
    """Whether the history listener will record a change of `item` at the next flush (read before it)."""
    from sqlalchemy import inspect

    state = inspect(item)
    return any(history._changed(state, f) is not None for f in history.recorded_fields(entity))


def _comparable(value):
    """A value as the rules hold it (records for forms and the API, ids for imports), comparable with the stored one."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "id") and hasattr(value, "__table__"):
        return value.id
    if isinstance(value, (list, tuple, set)) or hasattr(value, "__iter__") and not hasattr(value, "keys"):
        return sorted((_comparable(v) for v in value), key=repr)
    return value


def _changes_nothing(ctx: WriteContext) -> bool:
    """Every given value equals the stored one: a locked record posted back unchanged is no edit."""
    stored = ctx.stored()
    fields = {f.name for f in ctx.rules.entity.fields}
    return all(_comparable(value) == _comparable(getattr(stored, name, None))
               for name, value in ctx.values.items() if name in fields)


# -- the rule step -----------------------------------------------------------------------------------

class LockedParentStep(RuleStep):
    """A line (`lines:` of a parent) may not be created, changed, or moved into or out of a parent in a locked
    state: its rollups and lines are part of the locked record. Deletes: app/generate/references.py."""

    def check(self, ctx: WriteContext) -> None:
        for parent, back in lines_parents(ctx.rules.portal, ctx.rules.entity):
            self._check_parent(ctx, parent, back)

    def edit_reads(self, rules, written):
        return frozenset(back.name for _, back in lines_parents(rules.portal, rules.entity))  # where it is

    def _check_parent(self, ctx: WriteContext, parent: EntitySpec, back) -> None:
        refs = [ctx.values[back.name]] if back.name in ctx.values else []  # where it goes
        stored = None if ctx.creating else ctx.stored()
        if stored is not None:  # where it is
            refs.append(getattr(stored, back.name, None))
        self._refuse_locked(ctx, parent, back, [_parent_state(ctx.rules, parent, ref) for ref in refs])

    def check_many(self, batch: list[WriteContext]) -> None:
        """An import chunk: the parents' states (and the updated rows' stored parents) read in one query each."""
        if not batch:
            return
        from sqlalchemy import select

        rules = batch[0].rules
        for parent, back in lines_parents(rules.portal, rules.entity):
            link = getattr(rules.model, back.column_name)
            updated = [ctx.record_id for ctx in batch if not ctx.creating and ctx.current is None and ctx.record_id]
            stored_parent = dict(rules.session.execute(select(rules.model.id, link).where(rules.model.id.in_(updated))).all()) if updated else {}
            refs = [[ctx.values.get(back.name)] + ([stored_parent[ctx.record_id]] if ctx.record_id in stored_parent else [])
                    for ctx in batch]
            ids = {r for rs in refs for r in rs if isinstance(r, int) and not isinstance(r, bool)}
            parent_model = rules.models[parent.name]
            states = dict(rules.session.execute(select(parent_model.id, getattr(parent_model, parent.workflow.field))
                                                .where(parent_model.id.in_(ids))).all()) if ids else {}
            for ctx, ctx_refs in zip(batch, refs):
                if not ctx.creating and ctx.record_id not in stored_parent:  # its stored record at hand (or none)
                    self._check_parent(ctx, parent, back)
                    continue
                self._refuse_locked(ctx, parent, back, [states.get(r) if isinstance(r, int) else _parent_state(rules, parent, r)
                                                       for r in ctx_refs])

    @staticmethod
    def _refuse_locked(ctx: WriteContext, parent: EntitySpec, back, states: list) -> None:
        for state in states:
            if state in parent.workflow.locked:
                ctx.error(back.name, locked_parent_message(ctx.rules.entity, parent, state))
                return


class WorkflowStep(RuleStep):
    """The state of a workflow entity changes only through transitions, and locked records not at all."""

    def applies(self, entity: EntitySpec) -> bool:
        return entity.workflow is not None

    def fields_written(self, entity: EntitySpec) -> tuple[str, ...]:
        return (entity.workflow.field,)  # the default state of a new record (an import without the column)

    def edit_reads(self, rules, written):
        return frozenset({rules.entity.workflow.field})  # the stored state (locked or not)

    def check(self, ctx: WriteContext) -> None:
        if ctx.source == TRANSITION_SOURCE:
            return
        entity = ctx.rules.entity
        name = entity.workflow.field
        f = entity.field(name)
        if ctx.creating:
            self._check_new(ctx, entity, name, f)
            return
        stored = ctx.stored()
        if stored is not None:
            self._check_update(ctx, entity, getattr(stored, name))

    def check_many(self, batch: list[WriteContext]) -> None:
        """An import chunk: the stored states of the rows it updates by key, read in one query."""
        if not batch:
            return
        rules = batch[0].rules
        updated = [ctx.record_id for ctx in batch if not ctx.creating and ctx.current is None and ctx.record_id]
        states = {}
        if updated:
            from sqlalchemy import select

            column = getattr(rules.model, rules.entity.workflow.field)
            states = dict(rules.session.execute(select(rules.model.id, column).where(rules.model.id.in_(updated))).all())
        for ctx in batch:
            if ctx.source == TRANSITION_SOURCE or ctx.creating or ctx.record_id not in states:
                self.check(ctx)
            else:
                self._check_update(ctx, rules.entity, states[ctx.record_id])

    def _check_update(self, ctx: WriteContext, entity: EntitySpec, stored_state) -> None:
        name = entity.workflow.field
        if stored_state in entity.workflow.locked:
            if not ctx.errors and _changes_nothing(ctx):  # a form or a parent's lines posting it back as it is
                return
            ctx.errors.pop(name, None)
            ctx.error(name, _locked_message(entity, stored_state))
        elif name in ctx.values and ctx.values[name] != stored_state:
            ctx.error(name, _l("%(field)s only changes through its transitions: %(transitions)s.",
                               field=entity.field(name).label.get(current_locale()),
                               transitions=self._transition_names(entity)))

    @staticmethod
    def _check_new(ctx: WriteContext, entity: EntitySpec, name: str, f) -> None:
        value = ctx.values.get(name)
        if ctx.errors.get(name) == [str(_l("This field is required."))]:  # given empty (API null): the default
            del ctx.errors[name]
            ctx.values[name] = f.default
        elif value is None:  # absent or given empty: the default (so the unique checks see it)
            ctx.values[name] = f.default
        elif name in ctx.values and value != f.default:
            ctx.error(name, _l("%(field)s starts as %(state)s; change it with a transition.",
                               field=f.label.get(current_locale()), state=state_label(entity, f.default)))

    @staticmethod
    def _transition_names(entity: EntitySpec) -> str:
        return ", ".join(transition_label(t) for t in entity.workflow.transitions)
