"""`duplicates:` of an entity (issue 16): the rules that make two records candidate duplicates.

    duplicates:
      - {match: [phone]}                                   # exact, on the stored (normalised) value
      - {match: [name], fuzzy: 90, same: [address_city]}   # similarity 0-100 plus equal `same` fields
      - {match: [email], save_anyway: [Manager]}           # only these roles (and Admin) may save anyway

Read with the entity (`read_duplicates`, E810-E817), checked against the roles once they are known
(`check_duplicates`, E818-E819). The search itself is app/data/duplicates.py.
"""
from __future__ import annotations

from app.fieldtypes.text import StringType
from app.schema.loader import YList, YMap
from app.schema.spec import DuplicateRule, EntitySpec, FieldSpec, RoleSpec
from app.schema.values import Check, did_you_mean, kind, short

RULE_KEYS = ("match", "fuzzy", "same", "save_anyway")
MAX_RULES = 10


def matchable(f: FieldSpec) -> bool:
    """A field two records can be compared on in SQL: one stored value, not computed out of the write, not long."""
    kind_ = f.kind
    return not (kind_.multiple or kind_.long_values or f.rollup is not None or f.files is not None
                or not kind_.can_be_unique)


def fuzzy_text(f: FieldSpec) -> bool:
    """Fuzzy similarity applies to short text (string, email, phone, url), not to numbers, dates or choices."""
    return isinstance(f.kind, StringType) and not f.kind.long_values and not f.choices


def read_duplicates(run: Check, file: str, entity: str, raw, line: int, fields: dict) -> tuple[DuplicateRule, ...]:
    """The entity's `duplicates:` list, every rule checked against its fields (`fields`: name -> FieldSpec)."""
    if raw is None:
        return ()
    what = f"duplicates of entity '{entity}'"
    if not isinstance(raw, YList) or not raw:
        run.error(file, line, "E810", f"{what} must be a list of rules like {{match: [phone]}}, got {kind(raw)}")
        return ()
    if len(raw) > MAX_RULES:
        run.error(file, line, "E810", f"{what} has {len(raw)} rules; at most {MAX_RULES} are allowed")
        return ()
    rules: list[DuplicateRule] = []
    for i, item in enumerate(raw):
        rule = _read_rule(run, file, f"rule {i + 1} of {what}", item, raw.line_of(i), fields)
        if rule is None:
            continue
        if any((r.match, r.fuzzy, frozenset(r.same)) == (rule.match, rule.fuzzy, frozenset(rule.same)) for r in rules):
            run.error(file, rule.line, "E817", f"rule {i + 1} of {what} repeats an earlier rule")
            continue
        rules.append(rule)
    return tuple(rules)


def _read_rule(run: Check, file, what, raw, line, fields: dict) -> DuplicateRule | None:
    if not isinstance(raw, YMap):
        run.error(file, line, "E810", f"{what} must be a mapping like {{match: [phone]}}, got {kind(raw)}")
        return None
    run.keys(raw, RULE_KEYS, file, what, "E811")
    ok = True

    def names(key):
        nonlocal ok
        result = []
        for name, ln in run.name_list(raw.get(key, YList()), file, raw.line_of(key) or line, f"{key} of {what}"):
            f = fields.get(name)
            if f is None:
                run.error(file, ln, "E813", f"{key} of {what} names unknown field '{short(name)}'{did_you_mean(name, fields)}")
                ok = False
            elif not matchable(f):
                run.error(file, ln, "E814", f"{key} of {what} cannot compare '{name}' (a {f.type} field"
                                            f"{', computed' if f.rollup is not None else ''}); use short fields with one stored value")
                ok = False
            elif name in result:
                run.error(file, ln, "E816", f"{key} of {what} names '{name}' twice")
                ok = False
            else:
                result.append(name)
        return tuple(result)

    match = names("match")
    same = names("same")
    if not match and ok:
        run.error(file, raw.line_of("match") or line, "E812", f"{what} needs 'match': the fields to compare, e.g. match: [phone]")
        return None
    for name in set(match) & set(same):
        run.error(file, raw.line_of("same") or line, "E816", f"{what} names '{name}' in both match and same")
        ok = False
    fuzzy = None
    if "fuzzy" in raw:
        fuzzy = raw["fuzzy"]
        ln = raw.line_of("fuzzy")
        if isinstance(fuzzy, bool) or not isinstance(fuzzy, int) or not 1 <= fuzzy <= 100:
            run.error(file, ln, "E815", f"fuzzy of {what} must be a whole number from 1 to 100 (the least similarity), got {short(repr(fuzzy))}")
            ok = False
        elif len(match) != 1:
            run.error(file, ln, "E815", f"fuzzy of {what} compares one text field; match names {len(match)} "
                                        f"(put the fields that must be equal in 'same')")
            ok = False
        elif match and not fuzzy_text(fields[match[0]]):
            run.error(file, ln, "E815", f"fuzzy of {what} needs a short text field; '{match[0]}' is a {fields[match[0]].type} field")
            ok = False
    save_anyway = tuple(n for n, _ in run.name_list(raw.get("save_anyway", YList()), file,
                                                      raw.line_of("save_anyway") or line, f"save_anyway of {what}"))
    if not ok:
        return None
    return DuplicateRule(match=match, fuzzy=fuzzy, same=same, save_anyway=save_anyway, line=line)


def check_duplicates(run: Check, entity: EntitySpec, roles: tuple[RoleSpec, ...]) -> None:
    """`save_anyway` names known roles; a rule must be usable by some role that writes the entity (a rule reading a
    field every such role hides or masks would never run for them: the search skips rules over fields the user
    may not read, so it cannot reveal them)."""
    if not entity.duplicates:
        return
    known = {r.name for r in roles} | {"Admin"}
    writers = [r for r in roles if r.actions(entity.name) & {"create", "update"}]
    for i, rule in enumerate(entity.duplicates):
        what = f"rule {i + 1} of duplicates of entity '{entity.name}'"
        for name in rule.save_anyway:
            if name not in known:
                run.error(entity.file, rule.line, "E818", f"save_anyway of {what} names unknown role '{short(name)}'{did_you_mean(name, known)}")
        if writers and all(set(rule.fields) & (r.hidden(entity.name) | r.masked(entity.name)) for r in writers):
            run.error(entity.file, rule.line, "E819", f"{what} compares a field that every role writing "
                                                      f"'{entity.name}' hides or masks, so it would never warn them")
