"""Check one field of an entity: its name, type, type options, literals (default/min/max) and choices."""
from __future__ import annotations

import re
import re._constants as _re_constants
import re._parser as _re_parser

from app.fieldtypes import FieldType, LiteralError
from app.schema.loader import YList, YMap
from app.schema.values import Check, did_you_mean, kind, short
from app.schema.spec import (
    ON_DELETE,
    VERSION_COLUMN,
    Choice,
    FieldSpec,
    humanize,
)

# keys every field accepts; each type adds its own (FieldType.option_keys), each key is checked the same way
# whatever the type that takes it (length, pattern, min/max, precision/scale, choices, to, on_delete)
COMMON_FIELD_KEYS = ("type", "label", "required", "unique", "default", "help", "index", "readonly", "formula", "rollup")

AUDIT_FIELDS = ("created_on", "changed_on", "created_by", "changed_by")
RESERVED_FIELDS = {"id", "metadata", "registry", "query", "query_class", *AUDIT_FIELDS, "created_by_id", "changed_by_id",
                   VERSION_COLUMN}

FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,59}$")

AUDIT_TYPES = {"created_on": "datetime", "changed_on": "datetime", "created_by": "user", "changed_by": "user"}
# attributes of the WTForms form class, marshmallow schemas and FAB models that a field of the same name
# would shadow (meta, process, post_process and error_messages crash the pages; the rest break form posts)
FORM_RESERVED_FIELDS = {
    "data", "errors", "form_errors", "meta", "process", "populate_obj", "post_process", "validate",
    "validate_on_submit", "hidden_tag", "is_submitted", "csrf_token", "error_messages", "to_json",
}

MAX_CHOICES = 1000

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


def check_field(run: Check, file, entity, name, raw, line) -> FieldSpec | None:
    where = f"field '{entity}.{name}'"
    if not isinstance(name, str) or not FIELD_NAME.match(name):
        run.error(file, line, "E401", f"field name {short(repr(name))} must be lowercase letters, digits and _ (starting with a letter, at most 60)")
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
    names = run.types.names
    if ftype is None:
        run.error(file, line, "E403", f"{where} has no 'type' (one of {', '.join(names)})")
        return None
    if not isinstance(ftype, str) or ftype not in run.types:
        run.error(file, raw.line_of("type"), "E404", f"unknown type {short(repr(ftype))} for {where}{did_you_mean(ftype, names)}; types are {', '.join(names)}")
        return None
    field_kind = run.types[ftype]
    allowed = COMMON_FIELD_KEYS + field_kind.option_keys
    all_keys = set(COMMON_FIELD_KEYS).union(*(run.types[n].option_keys for n in names))
    for key in raw:
        if key in allowed:
            continue
        if key in all_keys:
            run.error(file, raw.line_of(key), "E405", f"'{key}' does not apply to a {ftype} field ({where})")
        else:
            run.error(file, raw.line_of(key), "E406", f"unknown key '{key}' in {where}{did_you_mean(key, allowed)}")

    def at(key):
        return raw.line_of(key)

    label, given = run.label(raw.get("label"), file, at("label"), f"label of {where}", humanize(name))
    options: dict = {"name": name, "type": ftype, "label": label, "label_given": given, "line": line, "field_type": field_kind}
    for flag in ("required", "unique", "index", "readonly"):
        if flag in raw:
            options[flag] = run.boolean(raw[flag], file, at(flag), f"'{flag}' of {where}")
    options.update(field_kind.fixed_options)  # e.g. an autonumber is always readonly and unique
    for key in field_kind.option_keys:  # the type's own view of its options, before the common checks below
        if key in raw or key in field_kind.own_options:  # own options are checked even when missing
            problem = field_kind.check_option(key, raw.get(key))
            if problem:
                run.error(file, at(key) if key in raw else line, problem.code, f"{key} of {where} {problem.message}")
            elif key in field_kind.own_options:
                options[key] = raw[key]
    if "types" in field_kind.option_keys and "max_mb" in field_kind.option_keys:  # a file field
        options["files"] = _files_options(run, file, where, raw, field_kind)
        for key in ("formula", "rollup"):
            if key in raw:
                run.error(file, at(key), "E535", f"a {ftype} field cannot have a {key} ({where}); its value is an uploaded file")
                return None
    if options.get("unique") and not field_kind.can_be_unique:
        run.error(file, at("unique"), "E407", f"a {ftype} field cannot be unique ({where})")
    if "help" in raw:
        options["help"], _ = run.label(raw["help"], file, at("help"), f"help of {where}", "")
    if "length" in raw:
        options["length"] = run.integer(raw["length"], file, at("length"), f"length of {where}", 1, 100000)
    if "pattern" in raw and "pattern" not in field_kind.own_options:
        pattern = run.text(raw["pattern"], file, at("pattern"), f"pattern of {where}")
        if pattern:
            problem = _pattern_problem(pattern)
            if problem:
                run.error(file, at("pattern"), "E408", f"pattern of {where} {problem}")
            else:
                options["pattern"] = pattern
    if "precision" in field_kind.option_keys:
        precision = run.integer(raw.get("precision", 12), file, at("precision"), f"precision of {where}", 1, 38)
        scale = run.integer(raw.get("scale", 2), file, at("scale"), f"scale of {where}", 0, 38)
        if precision and scale is not None and scale > precision:
            run.error(file, at("scale"), "E409", f"scale {scale} of {where} is larger than its precision {precision}")
        options["precision"], options["scale"] = precision or 12, scale if scale is not None else 2
    if "choices" in field_kind.option_keys:
        options["choices"] = _check_choices(run, file, where, raw.get("choices"), at("choices"))
    if "to" in field_kind.option_keys:
        target = raw.get("to")
        if target is None:
            run.error(file, line, "E501", f"{where} needs 'to: <Entity>'")
        elif not isinstance(target, str):
            run.error(file, at("to"), "E502", f"'to' of {where} must be an entity name, got {kind(target)}")
        else:
            options["to"] = target
    if "on_delete" in raw:
        value = raw["on_delete"]
        if value not in ON_DELETE:
            run.error(file, at("on_delete"), "E413", f"on_delete of {where} must be one of {', '.join(ON_DELETE)}, got {short(repr(value))}{did_you_mean(value, ON_DELETE)}")
        elif value == "set_null" and options.get("required"):
            run.error(file, at("on_delete"), "E414", f"{where} is required, so on_delete cannot be set_null")
        else:
            options["on_delete"] = value
    for bound in ("min", "max"):
        if bound in raw:
            options[bound] = parse_literal(run, file, at(bound), f"{bound} of {where}", field_kind, raw[bound], options)
    if options.get("min") is not None and options.get("max") is not None and options["min"] > options["max"]:
        run.error(file, at("max"), "E416", f"max of {where} is smaller than its min")
    if "formula" in raw:
        from app.schema.formulas import parse_expression  # names and types are checked once all entities are known

        if field_kind.is_relation:
            run.error(file, at("formula"), "E316", f"a {ftype} field cannot have a formula ({where}); formulas compute values")
        else:
            options["formula"] = parse_expression(run, file, at("formula"), f"formula of {where}", raw["formula"])
            options["readonly"] = True  # computed on every write: forms, API and imports do not set it
    if "filter" in raw:
        from app.schema.links import parse_filter  # keys and types are checked once all entities are known

        options["filter"] = parse_filter(run, file, at("filter"), where, raw["filter"])
    if "rollup" in raw:
        from app.schema.rollups import parse_rollup  # the child entity is checked once all entities are known

        options["rollup"] = parse_rollup(run, file, entity, name, raw)
        options["readonly"] = True  # kept by app/rules/rollups.py: forms, API and imports do not set it
        return FieldSpec(**options)  # with formula/default/required/unique refused (E459), nothing else applies
    if "default" in raw:
        if link_default_text(raw["default"]):  # `worker.day_rate`: decided once the entity's fields are known
            options["default_from"] = tuple(raw["default"].split("."))
        else:
            options["default"] = _check_default(run, file, at("default"), where, field_kind, raw["default"], options)
    return FieldSpec(**options)


def _files_options(run: Check, file, where, raw, field_kind):
    """A file field's `max_mb`/`types` as a FilesSpec (the same reader as an entity's `attachments:`); options the
    type refused (E532-E534, reported above) fall back to the defaults."""
    from app.schema.lifecycle import read_files_spec

    given = YMap({k: raw[k] for k in ("max_mb", "types") if k in raw and field_kind.check_option(k, raw[k]) is None})
    given.line, given.key_lines = raw.line, {k: raw.line_of(k) for k in given}
    return read_files_spec(run, file, raw.line, f"file options of {where}", given)


LINK_DEFAULT = re.compile(r"^[a-z][a-z0-9_]{0,59}\.[a-z][a-z0-9_]{0,59}$")


def link_default_text(value) -> bool:
    """Whether a default is written like `<link>.<field>` (a default from a link if `<link>` is a link field)."""
    return isinstance(value, str) and LINK_DEFAULT.match(value) is not None


def literal_default(run: Check, file, line, entity, f: FieldSpec, value):
    """A default written like `a.b` whose `a` is not a link: checked as a plain literal after all."""
    options = {"choices": f.choices, "min": f.min, "max": f.max, "length": f.length, "pattern": f.pattern,
               "precision": f.precision, "scale": f.scale}
    return _check_default(run, file, line, f"field '{entity}.{f.name}'", f.kind, value, options)


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
        run.error(file, line, "E411", f"choices of {where} must be a list or a key -> label map, got {kind(raw)}")
        return ()
    if len(items) > MAX_CHOICES:
        run.error(file, line, "E804", f"{where} has {len(items)} choices; at most {MAX_CHOICES} (use a link to an entity for long lists)")
        return ()
    seen = set()
    for key, label, ln in items:
        if not isinstance(key, str) or not re.match(r"^[A-Za-z0-9_\-]{1,50}$", key):
            hint = " (quote it: YAML reads yes/no/on/off as true/false)" if isinstance(key, bool) else ""
            run.error(file, ln, "E412", f"choice key {short(repr(key))} of {where} must be short text of letters, digits, _ or -{hint}")
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


def parse_literal(run: Check, file, line, what, field_kind: FieldType, value, options=None, code: str = "E415"):
    """A literal YAML value (default, min, max, report filter value) as a value of the field's type
    (FieldType.literal); reports E415 and returns None when it does not fit. `options` are the field's own
    (decimals are bounded by its precision and scale)."""
    try:
        return field_kind.literal(value, options or {})
    except LiteralError as exc:
        reason = exc.reason
    except (ValueError, ArithmeticError):
        reason = ""
    run.error(file, line, code, f"{what} must be a {field_kind.name} value, got {short(repr(value))}{reason}")
    return None


def _check_default(run, file, line, where, field_kind: FieldType, value, options):
    dynamic = run.types.dynamic_defaults()
    if isinstance(value, str) and value in dynamic:
        if field_kind.name not in dynamic[value]:
            run.error(file, line, "E417", f"default '{value}' only fits a {' or '.join(dynamic[value])} field, not {field_kind.name} ({where})")
            return None
        return value
    if not field_kind.takes_literals:
        fitting = ", ".join(f"{name} fields accept {default}" for default, types in dynamic.items() for name in types
                            if not run.types[name].takes_literals)
        run.error(file, line, "E418", f"a {field_kind.name} field cannot have a literal default ({where}){'; ' + fitting if fitting else ''}")
        return None
    literal = parse_literal(run, file, line, f"default of {where}", field_kind, value, options)
    if literal is None:
        return None
    if options.get("choices") and literal not in [c.key for c in options["choices"]]:
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

