"""Check an entity's `retention:` policies (codes E820–E829). Nothing here imports Flask or SQLAlchemy.

    retention:                     # one policy, or a list of them (applied in the order written)
      age: 5y                      # 5y, 18m or 90d: how old a record must be …
      from: changed_on             # … measured from this date/datetime field (default changed_on)
      when: {level: normal}        # the filter language (app/schema/filters.py), no $user (a job has no user)
      action: anonymize            # anonymize (the fields below), delete, or archive
      fields: [phone, email]       # anonymize only

What an anonymized field becomes is decided here (`replacement`), so the checker can refuse a field that has no
safe replacement and app/data/retention.py writes exactly what was checked: an optional field becomes empty
(NULL, a many field loses its links, a file field its file); a required one a placeholder of its type; a unique
one a token unique per record (`anon-<id>`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from app.schema.filters import Filter, check_filter, read_filter
from app.schema.loader import YList, YMap
from app.schema.values import Check, did_you_mean, kind, short

RETENTION_KEYS = ("age", "from", "when", "action", "fields")
ACTIONS = ("anonymize", "delete", "archive")
AGE = re.compile(r"^([1-9][0-9]{0,3})([ymd])$")
ARCHIVE_SUFFIX = "_archive"
TOKEN_DIGITS = 19  # a record id has at most this many digits (BIGINT)

# (placeholder for a required field, token pattern for a unique one: {id} is the record's id) per type
TEXT_REPLACEMENTS = {
    "string": ("(anonymized)", "anon-{id}"),
    "text": ("(anonymized)", "anon-{id}"),
    "phone": ("(anonymized)", "anon-{id}"),
    "email": ("anonymized@anonymized.invalid", "anon-{id}@anonymized.invalid"),
    "url": ("https://anonymized.invalid/", "https://anonymized.invalid/{id}"),
}


@dataclass(frozen=True)
class RetentionSpec:
    age: str                                  # as written: 5y, 18m, 90d
    amount: int
    unit: str                                 # y, m or d
    action: str                               # anonymize, delete, archive
    from_field: str = "changed_on"
    when: Filter = ()
    fields: tuple[str, ...] = ()
    line: int = 0

    @property
    def label(self) -> str:
        """How reports name the policy: `anonymize after 5y (from changed_on)`."""
        return f"{self.action} after {self.age} (from {self.from_field})"


@dataclass(frozen=True)
class Replacement:
    """What an anonymized field becomes: "null", "clear" (many links), "value" (a placeholder) or "token"
    (`value` with {id})."""

    kind: str
    value: object = None


def replacement(f, in_unique_group: bool = False) -> Replacement | str:
    """The replacement of field `f`, or the reason it has none (a checker message)."""
    if f.formula is not None or f.rollup is not None:
        return "is computed by the portal (a formula or rollup): it cannot be anonymized"
    if f.kind.multiple:
        return Replacement("clear")
    unique = f.unique or in_unique_group
    if not f.required and not unique:
        return Replacement("null")
    texts = TEXT_REPLACEMENTS.get(f.type)
    if texts is not None:
        text = texts[1] if unique else texts[0]
        longest = len(text.replace("{id}", "9" * TOKEN_DIGITS))
        limit = f.kind.max_length(f)
        if limit is not None and longest > limit:
            return f"is {'unique' if unique else 'required'} and too short ({limit}) for its replacement '{text}'"
        return Replacement("token" if unique else "value", text)
    if f.unique:
        return f"is unique and of type {f.type}, which has no unique replacement; leave it out or delete the records"
    if f.type == "boolean":
        return Replacement("value", False)
    if f.type in ("integer", "decimal"):
        low = f.min if f.min is not None and f.min > 0 else 0
        return Replacement("value", low)
    if f.type == "date":
        return Replacement("value", "1900-01-01")
    if f.type == "datetime":
        return Replacement("value", "1900-01-01T00:00:00")
    if f.type == "enum" and f.choices:
        return Replacement("value", f.default if isinstance(f.default, str) else f.choices[0].key)
    return f"is required and of type {f.type}, which has no placeholder; make it optional or delete the records"


def read_retention(run: Check, file: str, entity_name: str, raw, line: int) -> tuple[RetentionSpec, ...]:
    """The syntax of each policy; fields, `from` and `when` are checked against the entity by check_retention."""
    if raw is None:
        return ()
    items = list(enumerate(raw)) if isinstance(raw, YList) else [(None, raw)]
    policies = []
    for index, body in items:
        ln = raw.line_of(index) if index is not None else line
        what = f"retention of '{entity_name}'" + (f" (policy {index + 1})" if index is not None else "")
        if not isinstance(body, YMap):
            run.error(file, ln, "E820", f"{what} must be a mapping with age, action (and fields), got {kind(body)}")
            continue
        run.keys(body, RETENTION_KEYS, file, what, "E820")
        age = body.get("age")
        match = AGE.match(age) if isinstance(age, str) else None
        if match is None:
            run.error(file, body.line_of("age") if "age" in body else ln, "E821",
                      f"age of {what} must be like 5y, 18m or 90d (years, months, days), got {short(age) if age is not None else 'nothing'}")
        action = body.get("action")
        if action not in ACTIONS:
            run.error(file, body.line_of("action") if "action" in body else ln, "E823",
                      f"action of {what} must be one of {', '.join(ACTIONS)}, got {short(action) if action is not None else 'nothing'}"
                      f"{did_you_mean(action, ACTIONS) if isinstance(action, str) else ''}")
        from_field = body.get("from", "changed_on")
        if not isinstance(from_field, str):
            run.error(file, body.line_of("from"), "E822", f"from of {what} must name a date or datetime field, got {kind(from_field)}")
            from_field = "changed_on"
        fields = tuple((n, fl) for n, fl in run.name_list(body["fields"], file, body.line_of("fields"), f"fields of {what}")) \
            if "fields" in body else ()
        if action == "anonymize" and not fields:
            run.error(file, body.line_of("fields") if "fields" in body else ln, "E824",
                      f"{what} anonymizes: list the fields to anonymize in 'fields'")
        elif action in ("delete", "archive") and "fields" in body:
            run.error(file, body.line_of("fields"), "E824",
                      f"{what} {action}s whole records: 'fields' is only for action: anonymize")
        when = read_filter(run, file, body["when"], body.line_of("when"), f"when of {what}") if "when" in body else ()
        if match is None or action not in ACTIONS:
            continue
        names = [n for n, _ in fields]
        if len(set(names)) < len(names):
            run.error(file, body.line_of("fields"), "E825", f"fields of {what} names a field twice")
        policies.append(RetentionSpec(age, int(match.group(1)), match.group(2), action, from_field, when,
                                      tuple(dict.fromkeys(names)) if action == "anonymize" else (), ln))
    return tuple(policies)


def check_retention(run: Check, file: str, entity, entities: dict) -> None:
    """Each policy against its entity: `from` a date field, `fields` anonymizable, `when` a valid filter, and the
    archive table's name free."""
    from app.schema.fields import AUDIT_TYPES
    from app.schema.reserved import MAX_IDENTIFIER_BYTES

    by_name = {f.name: f for f in entity.fields}
    grouped = {name for group in entity.unique_together for name in group}
    tables = {e.table for e in entities.values()} | {f"{e.table}_{f.name}" for e in entities.values()
                                                     for f in e.fields if f.kind.multiple}  # many fields' tables
    for policy in entity.retention:
        what = f"retention of '{entity.name}'"
        source = by_name.get(policy.from_field)
        type_name = source.type if source is not None else AUDIT_TYPES.get(policy.from_field)
        is_moment = (source.kind.is_moment and not source.kind.multiple) if source is not None else type_name == "datetime"
        if not is_moment:
            known = [f.name for f in entity.fields if f.kind.is_moment] + ["created_on", "changed_on"]
            run.error(file, policy.line, "E822", f"from of {what} must name a date or datetime field of '{entity.name}', "
                                                 f"got '{short(policy.from_field)}'{did_you_mean(policy.from_field, known)}")
        for name in policy.fields:
            f = by_name.get(name)
            if f is None:
                run.error(file, policy.line, "E825", f"fields of {what} names unknown field '{short(name)}'"
                                                     f"{did_you_mean(name, by_name)}")
                continue
            found = replacement(f, name in grouped)
            if isinstance(found, str):
                code = "E825" if "computed" in found else "E826"
                run.error(file, policy.line, code, f"field '{name}' of {what} {found}")
        if policy.when:
            check_filter(run, file, policy.line, f"when of {what}", entities, entity.name, policy.when, user=False)
        if policy.action == "archive":
            archive = entity.table + ARCHIVE_SUFFIX
            if len(archive.encode()) > MAX_IDENTIFIER_BYTES:
                run.error(file, policy.line, "E827", f"{what} archives into table '{archive}', longer than "
                                                     f"{MAX_IDENTIFIER_BYTES} bytes: shorten the entity name")
            elif archive in tables:
                run.error(file, policy.line, "E827", f"{what} archives into table '{archive}', which is the table of "
                                                     f"another entity or many field: rename it")
