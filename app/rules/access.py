"""What the current user may see: row scopes, hidden and masked fields, from the YAML roles.

FAB permissions decide *whether* a user may read/create/... an entity; this module decides
*which rows and fields*. Every path (UI, API, export, import, reports) asks the same Viewer.

Rules for a user with several roles (only roles declared in YAML count; Admin sees everything):
  rows:   unrestricted if any role that reads the entity has no scope there, else any scope matches;
  hide:   a field is hidden only if every role that reads the entity hides it (mask alike);
  read:   a user none of whose roles reads an entity may not read any of its fields, not even through a link
          default or a formula/rollup of an entity they do read (may_read).
"""
from __future__ import annotations

from flask import current_app, has_request_context
from sqlalchemy import false, or_

from app.portal import current_portal
from app.runtime.request_cache import request_cached
from app.rules.filters import context_for, filter_clause, values_clause
from app.schema.filters import Relative
from app.schema.spec import EntitySpec, PortalSpec, RoleSpec

MASK = "****"


class Viewer:
    def __init__(self, portal: PortalSpec, user, admin_role: str) -> None:
        self.portal = portal
        self.user = user
        names = {role.name for role in getattr(user, "roles", None) or []}
        self.is_admin = admin_role in names
        self.roles: list[RoleSpec] = [r for r in portal.roles if r.name in names]

    @property
    def user_id(self):
        return getattr(self.user, "id", None)

    def readers(self, entity: str) -> list[RoleSpec]:
        return [r for r in self.roles if "read" in r.actions(entity)]

    def may_read(self, entity: str) -> bool:
        """Whether any of the user's YAML roles reads the entity (Admin, and a user with no YAML role, read all)."""
        return self.is_admin or not self.roles or bool(self.readers(entity))

    def _restricted(self, entity: str) -> list[RoleSpec]:
        """The YAML roles that shape what this user sees of an entity (empty: no restriction)."""
        return [] if self.is_admin else self.readers(entity)

    def hidden(self, entity: str) -> frozenset:
        closure = self._closure("hidden", self._hidden_by_roles)
        return closure[entity] if entity in closure else self._hidden_by_roles(entity)

    def masked(self, entity: str) -> frozenset:
        closure = self._closure("masked", self._masked_by_roles)
        masked = closure[entity] if entity in closure else self._masked_by_roles(entity)
        return masked - self.hidden(entity)

    def _closure(self, key: str, by_roles) -> dict[str, frozenset]:
        """Worked out once per set of roles, not per request: it depends on the roles alone and walks every entity.
        Kept on the (per-app, immutable) spec; there are as many entries as role combinations in use."""
        memo = self.portal.__dict__.setdefault("_viewer_fields_memo", {})
        cache_key = (key, self.is_admin, tuple(sorted(r.name for r in self.roles)))
        if cache_key not in memo:
            if len(memo) >= 4096:
                memo.clear()  # users with ever new role combinations: keep memory flat
            memo[cache_key] = self._with_formulas(by_roles)
        return memo[cache_key]

    def _hidden_by_roles(self, entity: str) -> frozenset:
        roles = self._restricted(entity)
        return frozenset.intersection(*(r.hidden(entity) for r in roles)) if roles else frozenset()

    def _masked_by_roles(self, entity: str) -> frozenset:
        roles = self._restricted(entity)
        return frozenset.intersection(*(r.masked(entity) | r.hidden(entity) for r in roles)) if roles else frozenset()

    def _with_formulas(self, by_roles) -> dict[str, frozenset]:
        """Entity -> the fields `by_roles` names, plus every rollup over one of them (its measure or `where` field of
        the child entity) and every formula field that reads one of them (directly, through another formula or a
        rollup, or through a link): a computed value must not reveal what it is computed from. Worked out for every
        entity at once until nothing changes, so chains of any length (a rollup over a child formula over a link,
        rollups over rollups) are followed; each pass only adds fields, so it ends. Every field of an entity the
        user may not read counts as one of them (`unread`), for computed values only: such an entity's own fields
        are never shown to them anyway."""
        entities = self.portal.entities
        fields = {e.name: set(by_roles(e.name)) for e in entities}
        unread = {e.name for e in entities if not self.may_read(e.name)}
        changed = True
        while changed:
            changed = False
            for spec in entities:
                own = fields[spec.name]
                before = len(own)
                for f in spec.fields:
                    if f.rollup is not None and f.name not in own:
                        if f.rollup.child in unread or (f.rollup.fields_read - {f.rollup.link}) & fields.get(f.rollup.child, set()):
                            own.add(f.name)
                for f in spec.fields:  # an address's province, city ... reveal the address
                    if f.derived_from is not None and f.derived_from in own:
                        own.add(f.name)
                for f in spec.formulas:
                    if f.name not in own and any(_reveals(spec, path, fields, unread) for path in f.formula.names):
                        own.add(f.name)
                changed |= len(own) != before
        return {name: frozenset(names) for name, names in fields.items()}

    def unreadable(self, entity: str) -> frozenset:
        """Fields that may not be shown in full, searched, sorted or written: hidden or masked."""
        return self.hidden(entity) | self.masked(entity)

    def scopes(self, entity: str) -> list[tuple] | None:
        """None: every row. Otherwise the row scopes of which any one must match."""
        roles = self._restricted(entity)
        if not roles or any(r.row_rules(entity) is None for r in roles):
            return None
        return [r.row_rules(entity) for r in roles]

    def row_clause(self, entity: str, models: dict):
        """SQL condition limiting `entity` to this user's rows, or None for all rows."""
        return self._scope_clause(entity, lambda scope, ctx: filter_clause(self.portal, models, entity, scope, ctx))

    def values_clause(self, entity: str, models: dict, values: dict):
        """Like row_clause, on given field values (a deleted record's last ones): SQL true when they were in this
        user's scope, or None when every row is."""
        return self._scope_clause(entity, lambda scope, ctx: values_clause(self.portal, models, entity, scope, ctx,
                                                                           values))

    def _scope_clause(self, entity: str, clause_of):
        """Any one of the user's row scopes of `entity` (`clause_of(scope, context)` each), None for all rows."""
        scopes = self.scopes(entity)
        if scopes is None:
            return None
        if self.user_id is None:
            return false()
        context = context_for(self.user_id)
        return or_(*(clause_of(scope, context) for scope in scopes))

    def forced_values(self, entity: str) -> dict:
        """Values a new or edited record must carry to stay in the user's scope (e.g. owner = me)."""
        scopes = self.scopes(entity)
        if not scopes:
            return {}
        forced = {}
        for c in scopes[0]:
            if len(c.path) != 1:
                continue
            if c.is_current_user:
                forced[c.path[0]] = self.user
            elif c.op == "eq" and not isinstance(c.value, Relative):
                forced[c.path[0]] = c.value
            elif c.op == "in" and len(c.value) == 1 and not isinstance(c.value[0], Relative):
                forced[c.path[0]] = c.value[0]
        return forced


def _reveals(spec: EntitySpec, path: tuple, fields: dict, unread: set) -> bool:
    """Whether a formula name (`rate` or `vendor.rate`) reads one of `fields` (entity -> names) or any field of an
    entity in `unread`."""
    if len(path) == 1:
        return path[0] in fields[spec.name]
    target = spec.field(path[0]).to
    return target in unread or path[1] in fields.get(target, ())


def current_viewer() -> Viewer:
    """The Viewer of this request (cached on the request); outside a request, an unrestricted one."""
    portal = current_portal().spec
    admin_role = current_app.config["AUTH_ROLE_ADMIN"]
    if not has_request_context():
        return system_viewer()
    return request_cached("viewer", lambda: Viewer(portal, current_app.appbuilder.sm.current_user, admin_role))


def system_viewer() -> Viewer:
    """An unrestricted Viewer for jobs that act for nobody in particular (CLI, the worker's retention run)."""
    admin_role = current_app.config["AUTH_ROLE_ADMIN"]
    return Viewer(current_portal().spec, _Everyone(admin_role), admin_role)


def viewer_for(user) -> Viewer:
    """The Viewer of another user than the caller (a mention's target, a notification's reader)."""
    return Viewer(current_portal().spec, user, current_app.config["AUTH_ROLE_ADMIN"])


class _Everyone:
    """Stands for CLI jobs and start-up code: acts with the Admin role."""

    id = None

    def __init__(self, admin_role: str) -> None:
        self.roles = [type("Role", (), {"name": admin_role})()]


def mask_value(value) -> str:
    """138****8000 for phones and ids, a****@example.com for emails, **** for short values."""
    if value is None or value == "":
        return ""
    text = str(value)
    if text.startswith("+86") and len(text) == 14:
        text = text[3:]
    if "@" in text:
        name, _, domain = text.partition("@")
        return f"{name[:1]}{MASK}@{domain}"
    if len(text) >= 7:
        return f"{text[:3]}{MASK}{text[-4:]}"
    return MASK


def visible_fields(entity: EntitySpec, viewer: Viewer) -> list[str]:
    hidden = viewer.hidden(entity.name)
    return [f.name for f in entity.fields if f.name not in hidden]
