"""Check loaded YAML and turn it into frozen spec objects.

Every problem found is collected (never raised) so that one run reports all of them
as `file:line: message`. Nothing here imports Flask.
"""
from __future__ import annotations

import datetime as dt
import difflib
import re
import re._constants as _re_constants
import re._parser as _re_parser
from decimal import Decimal, InvalidOperation

from app.schema.loader import Problem, SourceFile, YList, YMap
from app.schema.reserved import MAX_IDENTIFIER_BYTES, reserved_clash, reserved_table
from app.schema.spec import (
    ACTIONS,
    AGGREGATES,
    CHARTS,
    CURRENT_USER,
    DATE_BUCKETS,
    DYNAMIC_DEFAULTS,
    FIELD_TYPES,
    ON_DELETE,
    VERSION_COLUMN,
    Choice,
    EntitySpec,
    FieldSpec,
    GroupBy,
    Label,
    Measure,
    ModuleSpec,
    PortalSpec,
    ReportSpec,
    RoleSpec,
    RowRule,
    humanize,
    snake_case,
)

MODULE_KEYS = ("version", "module", "label", "entities", "roles", "reports")
REPORT_KEYS = ("label", "entity", "group_by", "measures", "filter", "chart", "chart_measure", "date_field")
REPORT_ID = re.compile(r"^[a-z][a-z0-9_]{0,59}$")
ROLE_KEYS = ("label", "can", "rows", "hide", "mask", "reports")
RESERVED_ROLES = ("Admin", "Public")
MASKABLE_TYPES = ("string", "text", "email", "phone", "url", "integer", "decimal")
ENTITY_KEYS = ("label", "title", "fields", "list", "search", "order", "unique_together")
COMMON_FIELD_KEYS = ("type", "label", "required", "unique", "default", "help", "index", "readonly")
TYPE_FIELD_KEYS = {
    "string": ("length", "pattern"),
    "text": ("length",),
    "integer": ("min", "max"),
    "decimal": ("min", "max", "precision", "scale"),
    "boolean": (),
    "date": ("min", "max"),
    "datetime": ("min", "max"),
    "enum": ("choices",),
    "email": ("length",),
    "phone": (),
    "url": ("length",),
    "link": ("to", "on_delete"),
    "many": ("to",),
    "user": (),
}
ALL_FIELD_KEYS = tuple(sorted(set(COMMON_FIELD_KEYS).union(*TYPE_FIELD_KEYS.values())))
AUDIT_FIELDS = ("created_on", "changed_on", "created_by", "changed_by")
RESERVED_FIELDS = {"id", "metadata", "registry", "query", "query_class", *AUDIT_FIELDS, "created_by_id", "changed_by_id",
                   VERSION_COLUMN}
MODULE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
ENTITY_NAME = re.compile(r"^[A-Z][A-Za-z0-9]{0,59}$")
FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,59}$")
LOCALE_CODE = re.compile(r"^[a-z]{2}(_[A-Z]{2})?$")
NOT_UNIQUE_TYPES = ("many", "boolean", "text")
NOT_SORTABLE_TYPES = ("many", "link", "user")  # FAB cannot sort a list by a relationship
NOT_TITLE_TYPES = ("many", "link", "user")  # the title is a column of the entity's own table
AUDIT_TYPES = {"created_on": "datetime", "changed_on": "datetime", "created_by": "user", "changed_by": "user"}
# attributes of the WTForms form class, marshmallow schemas and FAB models that a field of the same name
# would shadow (meta, process, post_process and error_messages crash the pages; the rest break form posts)
FORM_RESERVED_FIELDS = {
    "data", "errors", "form_errors", "meta", "process", "populate_obj", "post_process", "validate",
    "validate_on_submit", "hidden_tag", "is_submitted", "csrf_token", "error_messages", "to_json",
}
MAX_COLUMNS = 500       # per table; SQLite allows 2000, PostgreSQL 1600
MAX_ENTITIES = 500
MAX_CHOICES = 1000
INT_RANGE = (-2**31, 2**31 - 1)  # INTEGER on PostgreSQL


def did_you_mean(word, options) -> str:
    options = [str(o) for o in options]
    if len(options) > 2000:  # difflib is quadratic; no hint beats a slow check
        return ""
    close = difflib.get_close_matches(str(word)[:200], options, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _short(value, limit: int = 60) -> str:
    """A value quoted for a message, cut to a readable length."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


MAX_PATTERN = 500


def _pattern_problem(pattern: str) -> str | None:
    """Why a `pattern:` is refused: invalid, too long, or able to take exponential time (ReDoS).

    A repeat inside a repeat, like (a+)+ or (\w*)*, makes a failing match try exponentially many
    splits, which would hang the checker on the default and a worker on every form post.
    Uses the stdlib's regex parser (re._parser; private, but stable since Python 3.11).
    """
    if len(pattern) > MAX_PATTERN:
        return f"is longer than {MAX_PATTERN} characters"
    try:
        re.compile(pattern)
        tree = _re_parser.parse(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        return f"is not a valid regular expression: {exc}"
    repeats = (_re_constants.MAX_REPEAT, _re_constants.MIN_REPEAT, getattr(_re_constants, "POSSESSIVE_REPEAT", None))

    def nested(items, in_repeat: bool) -> bool:
        for op, arg in items:
            if op in repeats:
                low, high, sub = arg
                many = high is _re_constants.MAXREPEAT or high > 1
                if many and in_repeat:
                    return True
                if nested(sub, in_repeat or many):
                    return True
            elif op is _re_constants.SUBPATTERN and nested(arg[-1], in_repeat):
                return True
            elif op is _re_constants.BRANCH and any(nested(branch, in_repeat) for branch in arg[1]):
                return True
            elif op in (_re_constants.ASSERT, _re_constants.ASSERT_NOT) and nested(arg[1], in_repeat):
                return True
        return False

    if nested(tree, False):
        return "repeats a group that itself repeats, like (a+)+; matching can take exponential time"
    return None


def _kind(value) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, (float, Decimal)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, YMap):
        return "a mapping"
    if isinstance(value, YList):
        return "a list"
    if value is None:
        return "empty"
    return type(value).__name__


class _Check:
    """Collects problems for one run; helper methods return None on a bad value."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.later: list = []  # checks that need every module's entities: f(entities) -> None

    def error(self, file: str, line: int, code: str, message: str) -> None:
        self.problems.append(Problem(file, line, code, message))

    def keys(self, mapping: YMap, allowed, file: str, what: str, code: str) -> None:
        for key in mapping:
            if key not in allowed:
                self.error(file, mapping.line_of(key), code, f"unknown key '{key}' in {what}{did_you_mean(key, allowed)}")

    def mapping(self, value, file, line, what) -> YMap | None:
        if isinstance(value, YMap):
            return value
        self.error(file, line, "E001", f"{what} must be a mapping, got {_kind(value)}")
        return None

    def boolean(self, value, file, line, what) -> bool:
        if isinstance(value, bool):
            return value
        self.error(file, line, "E002", f"{what} must be true or false, got {_kind(value)}")
        return False

    def integer(self, value, file, line, what, low=None, high=None) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(file, line, "E003", f"{what} must be a whole number, got {_kind(value)}")
            return None
        if (low is not None and value < low) or (high is not None and value > high):
            self.error(file, line, "E004", f"{what} must be between {low} and {high}, got {_short(value)}")
            return None
        return value

    def text(self, value, file, line, what) -> str | None:
        if isinstance(value, str) and value.strip():
            return value
        self.error(file, line, "E005", f"{what} must be non-empty text, got {_kind(value)}")
        return None

    def label(self, value, file, line, what, fallback: str) -> tuple[Label, bool]:
        """A label is text or a locale -> text map; returns (label, given)."""
        if value is None:
            return Label.plain(fallback), False
        if isinstance(value, str) and value.strip():
            return Label.plain(value), True
        if isinstance(value, YMap) and value:
            texts = []
            for locale, text in value.items():
                if not isinstance(locale, str) or not LOCALE_CODE.match(locale):
                    self.error(file, value.line_of(locale), "E006", f"'{_short(locale)}' in {what} is not a locale code like en or zh")
                elif not isinstance(text, str) or not text.strip():
                    self.error(file, value.line_of(locale), "E007", f"{what} for '{locale}' must be non-empty text, got {_kind(text)}")
                else:
                    texts.append((locale, text))
            if texts:
                return Label(tuple(texts)), True
            return Label.plain(fallback), False
        self.error(file, line, "E008", f"{what} must be text or a map like {{en: ..., zh: ...}}, got {_kind(value)}")
        return Label.plain(fallback), False

    def name_list(self, value, file, line, what) -> list[tuple[str, int]]:
        if isinstance(value, str):
            return [(value, line)]
        if not isinstance(value, YList):
            self.error(file, line, "E009", f"{what} must be a list of names, got {_kind(value)}")
            return []
        result = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                result.append((item, value.line_of(i)))
            else:
                self.error(file, value.line_of(i), "E010", f"{what} entries must be names, got {_kind(item)}")
        return result


def check(files: list[SourceFile]) -> tuple[PortalSpec | None, list[Problem]]:
    """Check all loaded files together; returns the spec only when there is no problem."""
    run = _Check()
    modules: list[ModuleSpec] = []
    module_seen: dict[str, str] = {}
    for source in files:
        if source.data is None:
            continue
        module = _check_module(run, source, module_seen)
        if module:
            modules.append(module)
    entities = _check_across_modules(run, modules)
    for check_later in run.later:
        check_later(entities)
    roles = _merge_roles(run, modules)
    _check_report_ids(run, modules, roles)
    if run.problems:
        return None, run.problems
    return PortalSpec(tuple(modules), roles), []


def _check_module(run: _Check, source: SourceFile, module_seen: dict) -> ModuleSpec | None:
    file, data = source.path, source.data
    if not isinstance(data, YMap):
        run.error(file, getattr(data, "line", 1), "E201", f"a schema file must be a mapping with module and entities, got {_kind(data)}")
        return None
    run.keys(data, MODULE_KEYS, file, "module", "E202")
    if "version" not in data:
        run.error(file, data.line, "E203", "missing 'version: 1'")
    elif isinstance(data["version"], bool) or data["version"] != 1:
        run.error(file, data.line_of("version"), "E204", f"unsupported version {_short(data['version'])}; this portal reads version 1")
    name = data.get("module")
    if name is None:
        run.error(file, data.line, "E205", "missing 'module' (the module's name, e.g. crm)")
        name = "?"
    elif not isinstance(name, str) or not MODULE_NAME.match(name):
        run.error(file, data.line_of("module"), "E206", f"module name {_short(repr(name))} must be lowercase letters, digits and _ (starting with a letter)")
    elif name in module_seen:
        run.error(file, data.line_of("module"), "E207", f"module '{name}' is already defined in {module_seen[name]}")
    else:
        module_seen[name] = file
    label, given = run.label(data.get("label"), file, data.line_of("label"), "module label", humanize(str(name)))
    entities = []
    raw_entities = data.get("entities")
    if raw_entities is None:
        run.error(file, data.line, "E208", "missing 'entities'")
    elif run.mapping(raw_entities, file, data.line_of("entities"), "entities") is not None:
        if not raw_entities:
            run.error(file, data.line_of("entities"), "E209", "entities is empty")
        for entity_name, raw in raw_entities.items():
            entity = _check_entity(run, file, str(name), entity_name, raw, raw_entities.line_of(entity_name))
            if entity:
                entities.append(entity)
    roles = []
    if "roles" in data and run.mapping(data["roles"], file, data.line_of("roles"), "roles") is not None:
        for role_name, raw in data["roles"].items():
            role = _check_role(run, file, role_name, raw, data["roles"].line_of(role_name))
            if role:
                roles.append(role)
    reports = []
    if "reports" in data and run.mapping(data["reports"], file, data.line_of("reports"), "reports") is not None:
        for report_id, raw in data["reports"].items():
            report = _check_report(run, file, str(name), report_id, raw, data["reports"].line_of(report_id))
            if report:
                reports.append(report)
    return ModuleSpec(str(name), label, file, tuple(entities), given, tuple(roles), tuple(reports))


def _check_entity(run: _Check, file, module, name, raw, line) -> EntitySpec | None:
    if not isinstance(name, str) or not ENTITY_NAME.match(name):
        run.error(file, line, "E301", f"entity name {_short(repr(name))} must be CamelCase letters and digits (at most 60), e.g. FollowUp")
        return None
    clash = reserved_clash(name)
    if clash:
        run.error(file, line, "E901", f"entity name '{name}' is taken by the portal's own pages, API or permissions ('{clash}'); choose another name")
    elif reserved_table(snake_case(name)):
        run.error(file, line, "E902", f"entity name '{name}' clashes with the portal's own ab_* tables or the database's reserved names")
    raw = run.mapping(raw, file, line, f"entity '{name}'")
    if raw is None:
        return None
    run.keys(raw, ENTITY_KEYS, file, f"entity '{name}'", "E302")
    label, given = run.label(raw.get("label"), file, raw.line_of("label"), f"label of '{name}'", humanize(name))
    fields: list[FieldSpec] = []
    raw_fields = raw.get("fields")
    if raw_fields is None:
        run.error(file, line, "E303", f"entity '{name}' has no 'fields'")
    elif run.mapping(raw_fields, file, raw.line_of("fields"), f"fields of '{name}'") is not None:
        if not raw_fields:
            run.error(file, raw.line_of("fields"), "E303", f"entity '{name}' has no fields")
        for field_name, raw_field in raw_fields.items():
            spec = _check_field(run, file, name, field_name, raw_field, raw_fields.line_of(field_name))
            if spec:
                fields.append(spec)
    by_name = {f.name: f for f in fields}
    columns = 2 + len(AUDIT_FIELDS) + sum(1 for f in fields if f.type != "many")
    if columns > MAX_COLUMNS:
        run.error(file, line, "E801", f"entity '{name}' has {columns} columns (with id, row_version and the 4 audit columns); at most {MAX_COLUMNS} are allowed")
    for f in fields:
        if f.type in ("link", "user") and f.column_name in by_name:
            run.error(file, f.line, "E310", f"field '{f.column_name}' clashes with the column that stores link '{f.name}'")
    where = f"entity '{name}'"

    def field_ref(field_name, ref_line, what, forbid=()):
        ftype = by_name[field_name].type if field_name in by_name else AUDIT_TYPES.get(field_name)
        if field_name in AUDIT_FIELDS and field_name not in by_name and "audit" in forbid:
            run.error(file, ref_line, "E305", f"{what} cannot use '{field_name}' (an audit field)")
            return None
        if ftype is not None:
            if ftype in forbid:
                run.error(file, ref_line, "E305", f"{what} cannot use '{field_name}' (a {ftype} field)")
                return None
            return field_name
        if isinstance(raw_fields, YMap) and field_name in raw_fields:
            return None  # the field itself is broken and already reported
        known = list(by_name) + list(AUDIT_FIELDS)
        run.error(file, ref_line, "E304", f"{what} names unknown field '{field_name}' of {where}{did_you_mean(field_name, known)}")
        return None

    title = None
    if "title" in raw:
        title_value = run.text(raw["title"], file, raw.line_of("title"), "title")
        if title_value:
            title = field_ref(title_value, raw.line_of("title"), "title", forbid=NOT_TITLE_TYPES + ("audit",))
    list_cols = tuple(f for f, ln in run.name_list(raw.get("list", YList()), file, raw.line_of("list"), "list")
                      if field_ref(f, ln, "list"))
    search_cols = tuple(f for f, ln in run.name_list(raw.get("search", YList()), file, raw.line_of("search"), "search")
                        if field_ref(f, ln, "search"))
    order = []
    for item, ln in run.name_list(raw.get("order", YList()), file, raw.line_of("order"), "order"):
        direction, field_name = ("desc", item[1:]) if item.startswith("-") else ("asc", item.lstrip("+"))
        if field_ref(field_name, ln, "order", forbid=NOT_SORTABLE_TYPES):
            order.append((field_name, direction))
    unique_together = []
    if "unique_together" in raw:
        groups = raw["unique_together"]
        if not isinstance(groups, YList) or not groups:
            run.error(file, raw.line_of("unique_together"), "E306", f"unique_together must be a list of field lists, got {_kind(groups)}")
        else:
            if all(isinstance(g, str) for g in groups):  # a single group written flat
                flat = YList([groups]); flat.line = groups.line; flat.item_lines = [groups.line]
                groups = flat
            for i, group in enumerate(groups):
                names = run.name_list(group, file, groups.line_of(i), "unique_together")
                if len(names) < 2:
                    run.error(file, groups.line_of(i), "E307", "a unique_together group needs at least two fields")
                    continue
                ok = [field_ref(f, ln, "unique_together", forbid=("many", "audit")) for f, ln in names]
                if len(set(ok)) < len(ok):
                    run.error(file, groups.line_of(i), "E307", "a unique_together group names the same field twice")
                elif all(ok):
                    unique_together.append(tuple(ok))
    return EntitySpec(
        name=name, module=module, label=label, file=file, line=line, fields=tuple(fields),
        title=title, list=list_cols, search=search_cols, order=tuple(order),
        unique_together=tuple(unique_together), label_given=given,
    )


def _check_field(run: _Check, file, entity, name, raw, line) -> FieldSpec | None:
    where = f"field '{entity}.{name}'"
    if not isinstance(name, str) or not FIELD_NAME.match(name):
        run.error(file, line, "E401", f"field name {_short(repr(name))} must be lowercase letters, digits and _ (starting with a letter, at most 60)")
        return None
    if name in RESERVED_FIELDS:
        run.error(file, line, "E402", f"field name '{name}' is reserved by the portal")
        return None
    if name in FORM_RESERVED_FIELDS:
        run.error(file, line, "E904", f"field name '{name}' is reserved by the forms and the API; choose another name")
        return None
    if isinstance(raw, str):  # shorthand: `notes: text`
        shorthand = YMap({"type": raw}); shorthand.line = line; shorthand.key_lines = {"type": line}
        raw = shorthand
    raw = run.mapping(raw, file, line, where)
    if raw is None:
        return None
    ftype = raw.get("type")
    if ftype is None:
        run.error(file, line, "E403", f"{where} has no 'type' (one of {', '.join(FIELD_TYPES)})")
        return None
    if ftype not in FIELD_TYPES:
        run.error(file, raw.line_of("type"), "E404", f"unknown type {_short(repr(ftype))} for {where}{did_you_mean(ftype, FIELD_TYPES)}; types are {', '.join(FIELD_TYPES)}")
        return None
    allowed = COMMON_FIELD_KEYS + TYPE_FIELD_KEYS[ftype]
    for key in raw:
        if key in allowed:
            continue
        if key in ALL_FIELD_KEYS:
            run.error(file, raw.line_of(key), "E405", f"'{key}' does not apply to a {ftype} field ({where})")
        else:
            run.error(file, raw.line_of(key), "E406", f"unknown key '{key}' in {where}{did_you_mean(key, allowed)}")

    def at(key):
        return raw.line_of(key)

    label, given = run.label(raw.get("label"), file, at("label"), f"label of {where}", humanize(name))
    options: dict = {"name": name, "type": ftype, "label": label, "label_given": given, "line": line}
    for flag in ("required", "unique", "index", "readonly"):
        if flag in raw:
            options[flag] = run.boolean(raw[flag], file, at(flag), f"'{flag}' of {where}")
    if options.get("unique") and ftype in NOT_UNIQUE_TYPES:
        run.error(file, at("unique"), "E407", f"a {ftype} field cannot be unique ({where})")
    if "help" in raw:
        options["help"], _ = run.label(raw["help"], file, at("help"), f"help of {where}", "")
    if "length" in raw:
        options["length"] = run.integer(raw["length"], file, at("length"), f"length of {where}", 1, 100000)
    if "pattern" in raw:
        pattern = run.text(raw["pattern"], file, at("pattern"), f"pattern of {where}")
        if pattern:
            problem = _pattern_problem(pattern)
            if problem:
                run.error(file, at("pattern"), "E408", f"pattern of {where} {problem}")
            else:
                options["pattern"] = pattern
    if ftype == "decimal":
        precision = run.integer(raw.get("precision", 12), file, at("precision"), f"precision of {where}", 1, 38)
        scale = run.integer(raw.get("scale", 2), file, at("scale"), f"scale of {where}", 0, 38)
        if precision and scale is not None and scale > precision:
            run.error(file, at("scale"), "E409", f"scale {scale} of {where} is larger than its precision {precision}")
        options["precision"], options["scale"] = precision or 12, scale if scale is not None else 2
    if ftype == "enum":
        options["choices"] = _check_choices(run, file, where, raw.get("choices"), at("choices"))
    if ftype in ("link", "many"):
        target = raw.get("to")
        if target is None:
            run.error(file, line, "E501", f"{where} needs 'to: <Entity>'")
        elif not isinstance(target, str):
            run.error(file, at("to"), "E502", f"'to' of {where} must be an entity name, got {_kind(target)}")
        else:
            options["to"] = target
    if "on_delete" in raw:
        value = raw["on_delete"]
        if value not in ON_DELETE:
            run.error(file, at("on_delete"), "E413", f"on_delete of {where} must be one of {', '.join(ON_DELETE)}, got {_short(repr(value))}{did_you_mean(value, ON_DELETE)}")
        elif value == "set_null" and options.get("required"):
            run.error(file, at("on_delete"), "E414", f"{where} is required, so on_delete cannot be set_null")
        else:
            options["on_delete"] = value
    for bound in ("min", "max"):
        if bound in raw:
            options[bound] = _literal(run, file, at(bound), f"{bound} of {where}", ftype, raw[bound], options)
    if options.get("min") is not None and options.get("max") is not None and options["min"] > options["max"]:
        run.error(file, at("max"), "E416", f"max of {where} is smaller than its min")
    if "default" in raw:
        options["default"] = _check_default(run, file, at("default"), where, ftype, raw["default"], options)
    return FieldSpec(**options)


def _check_choices(run, file, where, raw, line) -> tuple[Choice, ...]:
    if raw is None:
        run.error(file, line, "E410", f"{where} is an enum and needs 'choices'")
        return ()
    choices = []
    if isinstance(raw, YList):
        items = [(item, None, raw.line_of(i)) for i, item in enumerate(raw)]
    elif isinstance(raw, YMap):
        items = [(key, value, raw.line_of(key)) for key, value in raw.items()]
    else:
        run.error(file, line, "E411", f"choices of {where} must be a list or a key -> label map, got {_kind(raw)}")
        return ()
    if len(items) > MAX_CHOICES:
        run.error(file, line, "E804", f"{where} has {len(items)} choices; at most {MAX_CHOICES} (use a link to an entity for long lists)")
        return ()
    seen = set()
    for key, label, ln in items:
        if not isinstance(key, str) or not re.match(r"^[A-Za-z0-9_\-]{1,50}$", key):
            hint = " (quote it: YAML reads yes/no/on/off as true/false)" if isinstance(key, bool) else ""
            run.error(file, ln, "E412", f"choice key {_short(repr(key))} of {where} must be short text of letters, digits, _ or -{hint}")
            continue
        if key in seen:
            run.error(file, ln, "E423", f"choice '{key}' of {where} is listed twice")
            continue
        seen.add(key)
        text, _ = run.label(label, file, ln, f"label of choice '{key}'", humanize(key))
        choices.append(Choice(key, text))
    if not items:
        run.error(file, line, "E410", f"{where} has no choices")
    return tuple(choices)


def _literal(run, file, line, what, ftype, value, limits=None):
    """Parse a literal YAML value for a field type; reports and returns None when it does not fit.

    `limits` (the field's options) bounds decimals by precision/scale; integers always fit INTEGER.
    """
    limits = limits or {}
    literal, reason = None, ""
    try:
        if ftype == "integer" and not isinstance(value, bool) and isinstance(value, int):
            if INT_RANGE[0] <= value <= INT_RANGE[1]:
                return value
            reason = f" (whole numbers are stored as INTEGER: {INT_RANGE[0]} to {INT_RANGE[1]})"
        elif ftype == "decimal" and not isinstance(value, bool) and isinstance(value, (int, float, str)):
            literal = Decimal(str(value))
            precision, scale = limits.get("precision") or 12, limits.get("scale") or 0
            if not literal.is_finite():
                reason = " (it must be a finite number)"
            elif abs(literal) >= Decimal(10) ** (precision - scale) or -literal.as_tuple().exponent > scale:
                reason = f" (precision {precision}, scale {scale}: at most {precision - scale} digits before the point and {scale} after)"
            else:
                return literal
        elif ftype == "date":
            if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
                return value
            if isinstance(value, str):
                return dt.date.fromisoformat(value)
        elif ftype == "datetime":
            if isinstance(value, (str, dt.date)) and not isinstance(value, dt.datetime):
                value = dt.datetime.fromisoformat(str(value))
            if isinstance(value, dt.datetime):
                if value.tzinfo is None:
                    return value
                reason = " (write it without a time zone: times are stored as local time)"
        elif ftype == "boolean" and isinstance(value, bool):
            return value
        elif ftype in ("string", "text", "email", "phone", "url", "enum") and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    except (ValueError, InvalidOperation, OverflowError):
        pass
    run.error(file, line, "E415", f"{what} must be a {ftype} value, got {_short(repr(value))}{reason}")
    return None


def _check_default(run, file, line, where, ftype, value, options):
    if isinstance(value, str) and value in DYNAMIC_DEFAULTS:
        if ftype not in DYNAMIC_DEFAULTS[value]:
            run.error(file, line, "E417", f"default '{value}' only fits a {' or '.join(DYNAMIC_DEFAULTS[value])} field, not {ftype} ({where})")
            return None
        return value
    if ftype in ("link", "many", "user"):
        run.error(file, line, "E418", f"a {ftype} field cannot have a literal default ({where}); user fields accept current_user")
        return None
    literal = _literal(run, file, line, f"default of {where}", ftype, value, options)
    if literal is None:
        return None
    if ftype == "enum" and options.get("choices") and literal not in [c.key for c in options["choices"]]:
        keys = [c.key for c in options["choices"]]
        run.error(file, line, "E419", f"default '{literal}' of {where} is not one of its choices {', '.join(keys)}{did_you_mean(literal, keys)}")
        return None
    if options.get("min") is not None and literal < options["min"] or options.get("max") is not None and literal > options["max"]:
        run.error(file, line, "E420", f"default of {where} is outside its min/max")
        return None
    if options.get("length") and isinstance(literal, str) and len(literal) > options["length"]:
        run.error(file, line, "E421", f"default of {where} is longer than its length {options['length']}")
        return None
    if options.get("pattern") and isinstance(literal, str) and not re.fullmatch(options["pattern"], literal):
        run.error(file, line, "E422", f"default of {where} does not match its pattern")
        return None
    return literal


def _check_across_modules(run: _Check, modules: list[ModuleSpec]) -> None:
    """Names must be unique across all modules and links must point to existing entities."""
    entities: dict[str, EntitySpec] = {}
    tables: dict[str, EntitySpec] = {}
    for module in modules:
        for entity in module.entities:
            if entity.name in entities:
                other = entities[entity.name]
                run.error(entity.file, entity.line, "E308", f"entity '{entity.name}' is already defined in {other.file}:{other.line}")
                continue
            if entity.table in tables:
                other = tables[entity.table]
                run.error(entity.file, entity.line, "E309", f"entity '{entity.name}' has the same table/API name '{entity.table}' as '{other.name}'")
                continue
            entities[entity.name] = entity
            tables[entity.table] = entity
    if len(entities) > MAX_ENTITIES:
        first = next(iter(entities.values()))
        run.error(first.file, first.line, "E803", f"the schemas define {len(entities)} entities; at most {MAX_ENTITIES} are allowed")
    for entity in entities.values():
        for f in entity.fields:
            if f.type in ("link", "many") and f.to is not None and f.to not in entities:
                run.error(entity.file, f.line, "E503", f"field '{entity.name}.{f.name}' links to unknown entity '{_short(f.to)}'{did_you_mean(f.to, entities)}")
    reports = {r.id: r for m in reversed(modules) for r in reversed(m.reports)}  # a repeated id is reported elsewhere
    _check_database_names(run, entities.values(), reports.values())
    return entities


def _database_names(entity: EntitySpec):
    """(name, what, line, explicit) for every table, index and constraint the build creates for an entity.

    Mirrors app/generate/models.py. `explicit` names are given by the portal; the others PostgreSQL
    picks itself (it avoids taken names for those, but a later explicit name can still collide).
    """
    table = entity.table
    yield table, f"table of entity '{entity.name}'", entity.line, True
    yield f"{table}_pkey", "primary key", entity.line, False
    yield f"{table}_id_seq", "id sequence", entity.line, False
    sorted_on = {name for name, _ in entity.order}
    for f in entity.fields:
        if f.type == "many":
            link_table = f"{table}_{f.name}"
            yield link_table, f"table of many field '{entity.name}.{f.name}'", f.line, True
            yield f"{link_table}_pkey", "primary key", f.line, False
            yield f"ix_{link_table}_right_id", f"index of many field '{entity.name}.{f.name}'", f.line, True
        elif f.type in ("link", "user"):
            yield f"ix_{table}_{f.column_name}", f"index of field '{entity.name}.{f.name}'", f.line, True
        elif f.unique:
            yield f"{table}_{f.name}_key", "unique constraint", f.line, False
        elif f.index or f.name in entity.search or f.name in sorted_on or f.name == entity.title:
            yield f"ix_{table}_{f.name}", f"index of field '{entity.name}.{f.name}'", f.line, True
    yield f"ix_{table}_created_on", f"index of entity '{entity.name}'", entity.line, True
    if entity.order:
        yield f"ix_{table}_by_order", f"order index of entity '{entity.name}'", entity.line, True
    for group in entity.unique_together:
        yield f"uq_{table}_{'_'.join(group)}", f"unique_together of entity '{entity.name}'", entity.line, True


def _check_database_names(run: _Check, entities, reports) -> None:
    """Every generated name fits PostgreSQL's 63 bytes, and no explicit name is taken twice.

    Tables, indexes and sequences share one namespace per schema (PostgreSQL) or database (SQLite).
    """
    taken: dict[str, tuple[str, str, int]] = {}  # explicit name -> (what, file, line)
    implicit = []
    named = [(name, what, entity.file, line, explicit) for entity in entities
             for name, what, line, explicit in _database_names(entity)]
    named += [(f"ix_report_{r.id}", f"index of report '{r.id}'", r.file, r.line, True) for r in reports]
    for name, what, file, line, explicit in named:
        if not explicit:
            implicit.append((name, what))
        elif len(name.encode()) > MAX_IDENTIFIER_BYTES:
            run.error(file, line, "E802", f"the {what} would be named '{name}' ({len(name.encode())} bytes); "
                                          f"PostgreSQL allows {MAX_IDENTIFIER_BYTES}: shorten the entity, field or report name")
        elif what.startswith("table") and reserved_table(name):
            run.error(file, line, "E902", f"the {what} would be named '{name}', a name kept for the portal's own ab_* tables or the database")
        elif name in taken:
            run.error(file, line, "E903", f"the {what} would be named '{name}', like the {taken[name][0]}; rename one of them")
        else:
            taken[name] = (what, file, line)
    for name, what in implicit:
        if name in taken:
            other, file, line = taken[name]
            run.error(file, line, "E903", f"the {other} would be named '{name}', like a {what} the database creates; rename it")
            del taken[name]


# -- roles -------------------------------------------------------------------------------------

def _entity_map(run, raw, file, line, what) -> list[tuple[str, object, int]]:
    """Entries of an `Entity: ...` mapping, with their lines; entity names are checked later."""
    if run.mapping(raw, file, line, what) is None:
        return []
    return [(str(name), value, raw.line_of(name)) for name, value in raw.items()]


def _require_entity(run, file, line, name, what):
    def check_entity(entities):
        if name not in entities:
            run.error(file, line, "E604", f"{what} names unknown entity '{name}'{did_you_mean(name, entities)}")
    run.later.append(check_entity)


def _check_role(run: _Check, file, name, raw, line) -> RoleSpec | None:
    if not isinstance(name, str) or not re.match(r"^[A-Za-z][A-Za-z0-9_\- ]{0,63}$", name):
        run.error(file, line, "E601", f"role name {name!r} must start with a letter and use letters, digits, space, _ or -")
        return None
    if name.lower() in {r.lower() for r in RESERVED_ROLES}:
        run.error(file, line, "E602", f"role '{name}' is built in and cannot be redefined (Admin always has every permission)")
        return None
    raw = run.mapping(raw, file, line, f"role '{name}'")
    if raw is None:
        return None
    run.keys(raw, ROLE_KEYS, file, f"role '{name}'", "E603")
    where = f"role '{name}'"
    label, _ = run.label(raw.get("label"), file, raw.line_of("label"), f"label of {where}", name)
    grants = []
    for entity, actions, ln in _entity_map(run, raw.get("can", YMap()), file, raw.line_of("can"), f"'can' of {where}"):
        _require_entity(run, file, ln, entity, f"'can' of {where}")
        if actions == "all":
            grants.append((entity, frozenset(ACTIONS)))
            continue
        names = run.name_list(actions, file, ln, f"actions of {where} on {entity}")
        for action, action_line in names:
            if action not in ACTIONS:
                run.error(file, action_line, "E605", f"unknown action '{action}' for {entity} in {where}{did_you_mean(action, ACTIONS)}; actions are {', '.join(ACTIONS)} or all")
        granted = frozenset(a for a, _ in names if a in ACTIONS)
        if granted - {"read"} and "read" not in granted:
            run.error(file, ln, "E606", f"{where} grants {', '.join(sorted(granted))} on {entity} without read")
        grants.append((entity, granted))
    granted_entities = {e for e, _ in grants}
    rows = []
    for entity, conditions, ln in _entity_map(run, raw.get("rows", YMap()), file, raw.line_of("rows"), f"'rows' of {where}"):
        if entity not in granted_entities:
            run.error(file, ln, "E607", f"{where} limits rows of {entity} but grants nothing on it")
        if run.mapping(conditions, file, ln, f"row scope of {where} on {entity}") is None or not conditions:
            continue
        rules = []
        for path, value, path_line in [(p, v, conditions.line_of(p)) for p, v in conditions.items()]:
            values = tuple(value) if isinstance(value, YList) else (value,)
            rules.append(RowRule(tuple(str(path).split(".")), values))
            run.later.append(_row_rule_check(run, file, path_line, where, entity, str(path), values))
        rows.append((entity, tuple(rules)))
    hide = _field_sets(run, raw, "hide", file, where, granted_entities)
    mask = _field_sets(run, raw, "mask", file, where, granted_entities)
    reports = tuple(r for r, _ in run.name_list(raw.get("reports", YList()), file, raw.line_of("reports"), f"reports of {where}"))
    return RoleSpec(name, label, file, line, tuple(grants), tuple(rows), hide, mask, reports)


def _field_sets(run, raw, key, file, where, granted_entities):
    result = []
    for entity, fields, ln in _entity_map(run, raw.get(key, YMap()), file, raw.line_of(key), f"'{key}' of {where}"):
        if entity not in granted_entities:
            run.error(file, ln, "E607", f"{where} has '{key}' for {entity} but grants nothing on it")
        names = run.name_list(fields, file, ln, f"{key} of {where}")
        run.later.append(_field_set_check(run, file, key, where, entity, names))
        result.append((entity, frozenset(n for n, _ in names)))
    return tuple(result)


def _field_set_check(run, file, key, where, entity_name, names):
    def check(entities):
        entity = entities.get(entity_name)
        if entity is None:
            return
        for name, ln in names:
            if name not in entity.field_names:
                run.error(file, ln, "E615", f"{key} of {where} names unknown field '{name}' of {entity_name}{did_you_mean(name, entity.field_names)}")
            elif name == entity.title:
                run.error(file, ln, "E616", f"{key} of {where} cannot use '{name}': it is {entity_name}'s title, shown wherever the record is linked")
            elif key == "mask" and entity.field(name).type not in MASKABLE_TYPES:
                run.error(file, ln, "E617", f"cannot mask '{name}' (a {entity.field(name).type} field); mask works on text, phone, email, url and numbers")
    return check


def _row_rule_check(run, file, line, where, entity_name, path, values):
    def check(entities):
        entity = entities.get(entity_name)
        if entity is None:
            return
        parts = path.split(".")
        if len(parts) > 2 or not all(parts):
            run.error(file, line, "E608", f"row scope path '{path}' of {where} must be a field or link.field")
            return
        if parts[0] not in entity.field_names:
            run.error(file, line, "E609", f"row scope of {where} names unknown field '{parts[0]}' of {entity_name}{did_you_mean(parts[0], entity.field_names)}")
            return
        field = entity.field(parts[0])
        if len(parts) == 2:
            if field.type != "link":
                run.error(file, line, "E610", f"row scope path '{path}' of {where}: '{parts[0]}' is not a link")
                return
            target = entities.get(field.to)
            if target is None:
                return  # the link's unknown target is reported with the field
            if parts[1] not in target.field_names:
                run.error(file, line, "E609", f"row scope of {where} names unknown field '{parts[1]}' of {target.name}{did_you_mean(parts[1], target.field_names)}")
                return
            field = target.field(parts[1])
        if field.type in ("many", "link"):
            run.error(file, line, "E611", f"row scope of {where} cannot compare '{path}' (a {field.type} field); use link.field")
            return
        for value in values:
            if value == CURRENT_USER:
                if field.type != "user" or len(values) != 1:
                    run.error(file, line, "E612", f"$user in {where} only fits a single user field, not '{path}' ({field.type})")
            elif field.type == "user":
                run.error(file, line, "E613", f"row scope '{path}' of {where} is a user field; use $user")
            else:
                before = len(run.problems)
                literal = _literal(run, file, line, f"row scope value of '{path}' in {where}", field.type, value, vars(field))
                if len(run.problems) == before and field.type == "enum" and literal not in [c.key for c in field.choices]:
                    run.error(file, line, "E614", f"row scope value '{literal}' of {where} is not a choice of '{path}'")
    return check


def _merge_roles(run: _Check, modules: list[ModuleSpec]) -> tuple[RoleSpec, ...]:
    """A role may take grants from several modules; the same entity may not be set twice."""
    merged: dict[str, RoleSpec] = {}
    for module in modules:
        for role in module.roles:
            if role.name not in merged:
                merged[role.name] = role
                continue
            first = merged[role.name]
            for attr in ("grants", "rows", "hide", "mask"):
                clash = set(dict(getattr(first, attr))) & set(dict(getattr(role, attr)))
                for entity in sorted(clash):
                    run.error(role.file, role.line, "E618", f"role '{role.name}' sets {attr} for {entity} again (also in {first.file})")
            label = first.label if first.label.texts != ((("en", first.name),)) else role.label
            merged[role.name] = RoleSpec(
                first.name, label, first.file, first.line, first.grants + role.grants, first.rows + role.rows,
                first.hide + role.hide, first.mask + role.mask, first.reports + role.reports)
    return tuple(merged.values())


# -- reports -----------------------------------------------------------------------------------

MEASURE_SYNTAX = re.compile(r"^(\w+)(?:\(\s*([\w\s,]*)\))?$")


def _check_report(run: _Check, file, module, report_id, raw, line) -> ReportSpec | None:
    if not isinstance(report_id, str) or not REPORT_ID.match(report_id):
        run.error(file, line, "E701", f"report id {_short(repr(report_id))} must be lowercase letters, digits and _ (it is part of the URL)")
        return None
    raw = run.mapping(raw, file, line, f"report '{report_id}'")
    if raw is None:
        return None
    where = f"report '{report_id}'"
    run.keys(raw, REPORT_KEYS, file, where, "E703")
    label, _ = run.label(raw.get("label"), file, raw.line_of("label"), f"label of {where}", humanize(report_id))
    entity = raw.get("entity")
    if not isinstance(entity, str):
        run.error(file, raw.line_of("entity") if "entity" in raw else line, "E702", f"{where} needs 'entity: <Entity>'")
        return None
    group_by = []
    for item, ln in run.name_list(raw.get("group_by", YList()), file, raw.line_of("group_by"), f"group_by of {where}"):
        field, _, bucket = item.partition(":")
        if any(g.field == field for g, _ in group_by):
            run.error(file, ln, "E705", f"group_by of {where} uses '{field}' twice; group by one bucket of it")
            continue
        group_by.append((GroupBy(field, bucket or None), ln))
    measures = []
    raw_measures = raw.get("measures")
    if raw_measures is None:
        raw_measures = YMap({"count": "count"}); raw_measures.line = line; raw_measures.key_lines = {"count": line}
    if run.mapping(raw_measures, file, raw.line_of("measures"), f"measures of {where}") is not None:
        for name, expression in raw_measures.items():
            if not isinstance(name, str) or not FIELD_NAME.match(name):
                run.error(file, raw_measures.line_of(name), "E720", f"measure name {_short(repr(name))} of {where} must be lowercase letters, digits and _")
                continue
            if any(g.field == name for g, _ in group_by):
                run.error(file, raw_measures.line_of(name), "E720", f"measure '{name}' of {where} has the name of a group_by field")
                continue
            measure = _check_measure(run, file, where, name, expression, raw_measures.line_of(name))
            if measure:
                measures.append((measure, raw_measures.line_of(name)))
    filters = []
    if "filter" in raw and run.mapping(raw["filter"], file, raw.line_of("filter"), f"filter of {where}") is not None:
        for name, value in raw["filter"].items():
            filters.append((str(name), tuple(value) if isinstance(value, YList) else (value,), raw["filter"].line_of(name)))
    chart = raw.get("chart", "bar")
    if chart not in CHARTS:
        run.error(file, raw.line_of("chart"), "E714", f"chart of {where} must be one of {', '.join(CHARTS)}, got {_short(repr(chart))}{did_you_mean(chart, CHARTS)}")
        chart = "table"
    date_field = raw.get("date_field")
    if date_field is not None and run.text(date_field, file, raw.line_of("date_field"), f"date_field of {where}") is None:
        date_field = None
    chart_measure = raw.get("chart_measure")
    if chart_measure is not None and chart_measure not in [m.name for m, _ in measures]:
        run.error(file, raw.line_of("chart_measure"), "E715", f"chart_measure of {where} names unknown measure {_short(repr(chart_measure))}{did_you_mean(chart_measure, [m.name for m, _ in measures])}")
    run.later.append(_report_fields_check(run, file, line, where, raw, entity, group_by, measures, filters, date_field))
    return ReportSpec(
        id=report_id, module=module, label=label, entity=entity, file=file, line=line,
        group_by=tuple(g for g, _ in group_by), measures=tuple(m for m, _ in measures),
        filter=tuple((n, v) for n, v, _ in filters), chart=chart, date_field=date_field, chart_measure=chart_measure)


def _check_measure(run, file, where, name, expression, line) -> Measure | None:
    label = Label.plain(humanize(name))
    if isinstance(expression, YMap):  # {expr: sum(hours), label: {...}}
        label, _ = run.label(expression.get("label"), file, expression.line_of("label"), f"label of measure '{name}'", humanize(name))
        run.keys(expression, ("expr", "label"), file, f"measure '{name}' of {where}", "E703")
        expression = expression.get("expr")
    match = MEASURE_SYNTAX.match(expression.strip()) if isinstance(expression, str) else None
    if not match:
        run.error(file, line, "E710", f"measure '{name}' of {where} must look like count, sum(field) or avg(field), got {expression!r}")
        return None
    function, arguments = match.group(1), [a.strip() for a in (match.group(2) or "").split(",") if a.strip()]
    if function not in AGGREGATES:
        run.error(file, line, "E711", f"unknown aggregate '{function}' in {where}{did_you_mean(function, AGGREGATES)}; use {', '.join(AGGREGATES)}")
        return None
    wanted = {"count": (0, 1), "avg_hours_between": (2, 2)}.get(function, (1, 1))
    if not wanted[0] <= len(arguments) <= wanted[1]:
        run.error(file, line, "E712", f"{function} in measure '{name}' of {where} takes {wanted[1]} field(s), got {len(arguments)}")
        return None
    return Measure(name, function, label, tuple(arguments))


def _report_fields_check(run, file, line, where, raw, entity_name, group_by, measures, filters, date_field):
    def check(entities):
        entity = entities.get(entity_name)
        if entity is None:
            run.error(file, raw.line_of("entity"), "E704", f"{where} names unknown entity '{entity_name}'{did_you_mean(entity_name, entities)}")
            return
        fields = {f.name: f for f in entity.fields}

        def known(name, ln, what):
            if name in fields:
                return fields[name]
            run.error(file, ln, "E706", f"{what} of {where} names unknown field '{name}' of {entity_name}{did_you_mean(name, fields)}")
            return None

        for group, ln in group_by:
            f = known(group.field, ln, "group_by")
            if f is None:
                continue
            if f.type in ("date", "datetime"):
                if group.bucket not in DATE_BUCKETS:
                    run.error(file, ln, "E707", f"group_by '{group.field}' of {where} needs a bucket: {', '.join(f'{group.field}:{b}' for b in DATE_BUCKETS)}")
            elif group.bucket:
                run.error(file, ln, "E708", f"group_by '{group.field}:{group.bucket}' of {where}: buckets only apply to date fields")
            elif f.type in ("many", "text", "decimal"):
                run.error(file, ln, "E709", f"{where} cannot group by '{group.field}' (a {f.type} field)")
        for measure, ln in measures:
            for name in measure.fields:
                f = known(name, ln, f"measure '{measure.name}'")
                if f is None:
                    continue
                numeric = f.type in ("integer", "decimal")
                if measure.function in ("sum", "avg") and not numeric:
                    run.error(file, ln, "E713", f"{measure.function}({name}) in {where} needs a number field, '{name}' is {f.type}")
                elif measure.function == "avg_hours_between" and f.type not in ("date", "datetime"):
                    run.error(file, ln, "E713", f"avg_hours_between in {where} needs date or datetime fields, '{name}' is {f.type}")
                elif measure.function in ("min", "max") and f.type not in ("integer", "decimal", "date", "datetime"):
                    run.error(file, ln, "E713", f"{measure.function}({name}) in {where} needs a number or date field")
        for name, values, ln in filters:
            f = known(name, ln, "filter")
            if f is None or f.type in ("many", "link", "user"):
                if f is not None and not (f.type == "user" and values == (CURRENT_USER,)):
                    run.error(file, ln, "E716", f"filter of {where} cannot compare '{name}' (a {f.type} field); user fields accept $user")
                continue
            for value in values:
                before = len(run.problems)
                literal = _literal(run, file, ln, f"filter value of '{name}' in {where}", f.type, value, vars(f))
                if len(run.problems) == before and f.type == "enum" and literal not in [c.key for c in f.choices]:
                    run.error(file, ln, "E717", f"filter value '{literal}' of {where} is not a choice of '{name}'")
        if date_field is not None:
            f = known(date_field, raw.line_of("date_field"), "date_field")
            if f is not None and f.type not in ("date", "datetime"):
                run.error(file, raw.line_of("date_field"), "E718", f"date_field of {where} must be a date or datetime field")
    return check


def _check_report_ids(run: _Check, modules: list[ModuleSpec], roles) -> None:
    seen: dict[str, ReportSpec] = {}
    for module in modules:
        for report in module.reports:
            if report.id in seen:
                run.error(report.file, report.line, "E719", f"report '{report.id}' is already defined in {seen[report.id].file}")
            seen[report.id] = report
    for module in modules:
        for role in module.roles:
            for report_id in role.reports:
                if report_id not in seen:
                    run.error(role.file, role.line, "E619", f"role '{role.name}' names unknown report '{report_id}'{did_you_mean(report_id, seen)}")
