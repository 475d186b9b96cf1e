"""Value cleaning per field type through the registry: form text, JSON values, spreadsheet cells, filter values.

Every built-in type: good input in each shape the portal receives it in, and bad input giving the exact,
localized FieldError message (English and Chinese). Open-ended inputs are generated with hypothesis.
"""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
from decimal import Decimal

import pytest
from conftest import ASSETS, ROOT
from hypothesis import HealthCheck, given, settings, strategies as st

from app.fieldtypes import BUILTIN_TYPES, FieldError, FieldTypes, LiteralError, field_types, type_of
from app.fieldtypes.text import StringType
from app.generate.input_errors import clean_filter_value
from app.rules.records import clean_present, clean_value
from app.schema import load_portal
from app.schema.spec import FIELD_TYPES, FieldSpec, Label

QUICK = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def asset():
    spec, problems = load_portal(ASSETS)
    assert not problems
    return spec.entity("Asset")


def field(asset, name):
    return asset.field(name)


@pytest.fixture()
def english(app):
    with app.test_request_context("/?_l_=en"):
        yield


@pytest.fixture()
def chinese(app):
    with app.test_request_context("/?_l_=zh"):
        yield


def refused(f, value) -> str:
    with pytest.raises(FieldError) as caught:
        clean_value(f, value)
    return str(caught.value)


def test_the_registry_knows_every_type_the_schema_allows():
    assert BUILTIN_TYPES.names == FIELD_TYPES
    assert all(BUILTIN_TYPES[name].name == name for name in FIELD_TYPES)


def test_registry_refuses_a_type_defined_twice_and_a_nameless_one():
    with pytest.raises(ValueError, match="'string' is defined twice"):
        BUILTIN_TYPES.with_types([StringType])
    with pytest.raises(ValueError, match="has no name"):
        FieldTypes([type("Nameless", (StringType,), {"name": ""})])
    with pytest.raises(TypeError, match="not a FieldType"):
        FieldTypes([object])


def test_outside_an_app_the_registry_is_the_builtin_table():
    assert field_types() is BUILTIN_TYPES


def test_spec_level_imports_without_flask():
    """`portal check` reads the spec level: importing the package pulls in neither Flask nor FAB nor SQLAlchemy."""
    code = ("import sys, types\n"
            "pkg = types.ModuleType('app'); pkg.__path__ = ['app']; sys.modules['app'] = pkg  # skip app/__init__\n"
            "import app.fieldtypes as ft\n"
            "assert ft.BUILTIN_TYPES['decimal'].literal('1.5', {'precision': 4, 'scale': 1}) == 1.5\n"
            "print(sorted(m for m in ('flask', 'flask_appbuilder', 'sqlalchemy', 'flask_babel') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- good values in every shape -----------------------------------------------------------------------

GOOD = [
    # (field, raw input, stored value)
    ("code", " A-0001 ", "A-0001"),  # form text: surrounding spaces dropped
    ("description", "  two\nlines ", "  two\nlines "),  # text keeps its layout
    ("quantity", "12", 12), ("quantity", 12, 12), ("quantity", 12.0, 12), ("quantity", Decimal("7"), 7),
    ("quantity", " +5 ", 5),
    ("price", "1,234.5", Decimal("1234.50")), ("price", 19.99, Decimal("19.99")), ("price", 3, Decimal("3.00")),
    ("price", Decimal("0.1"), Decimal("0.10")),
    ("in_service", "是", True), ("in_service", "否", False), ("in_service", " Yes ", True), ("in_service", 0, False),
    ("in_service", 1.0, True), ("in_service", True, True), ("in_service", "✓", True),
    ("bought_on", "2024-02-29", dt.date(2024, 2, 29)), ("bought_on", "2024/2/9", dt.date(2024, 2, 9)),
    ("bought_on", "2024.02.09", dt.date(2024, 2, 9)),
    ("bought_on", dt.datetime(2024, 2, 9), dt.date(2024, 2, 9)),  # a spreadsheet date cell is midnight
    ("bought_on", dt.date(2024, 2, 9), dt.date(2024, 2, 9)),
    ("checked_at", "2026-01-31T14:30:00", dt.datetime(2026, 1, 31, 14, 30)),
    ("checked_at", "2026/01/31 14:30", dt.datetime(2026, 1, 31, 14, 30)),
    ("checked_at", dt.datetime(2026, 1, 31, 14, 30, 5, 999), dt.datetime(2026, 1, 31, 14, 30, 5)),
    ("checked_at", dt.date(2026, 1, 31), dt.datetime(2026, 1, 31)),
    ("condition", "worn", "worn"), ("condition", "磨损", "worn"), ("condition", " Broken ", "broken"),
    ("contact_email", "Ops@Example.COM", "Ops@example.com"),
    ("contact_phone", "021 6888 1234", "+862168881234"),
    ("contact_phone", 13800138000.0, "+8613800138000"),  # a spreadsheet number cell
    ("contact_phone", 13800138000, "+8613800138000"),
    ("contact_phone", "+44 20 7946 0958", "+442079460958"),
    ("manual", "https://example.com/manual.pdf", "https://example.com/manual.pdf"),
]


@pytest.mark.parametrize("name,raw,stored", GOOD, ids=[f"{n}={r!r}" for n, r, _ in GOOD])
def test_good_values_are_stored_typed(asset, english, name, raw, stored):
    value = clean_value(field(asset, name), raw)
    assert value == stored and type(value) is type(stored)


@pytest.mark.parametrize("name", ["code", "quantity", "price", "in_service", "bought_on", "condition", "contact_phone"])
@pytest.mark.parametrize("blank", [None, "", "   "])
def test_blank_is_none(asset, name, blank):
    assert clean_value(field(asset, name), blank) is None


def test_relations_are_left_to_the_caller(asset):
    """Link, many and user values are resolved with the database by RecordWriter / the importer."""
    for name in ("supplier", "tags", "keeper"):
        assert clean_present(field(asset, name), [3]) == [3]


# -- bad values: the exact message, in English and Chinese --------------------------------------------

BAD = [
    # (field, raw, English, Chinese)
    ("code", "B-1", "Does not have the expected format.", "格式不正确。"),
    ("code", "A-00001234567", "Must be at most 12 characters (got 13).", "最多 12 个字符（当前 13 个）。"),
    ("code", ["A-0001"], "Must be text.", None),
    ("quantity", "many", "Must be a whole number.", "必须是整数。"),
    ("quantity", True, "Must be a whole number.", "必须是整数。"),
    ("quantity", 1.5, "Must be a whole number.", "必须是整数。"),
    ("quantity", 2**31, "Number is too large.", None),
    ("quantity", 2000, "Must be at most 1000.", None),
    ("quantity", -1, "Must be at least 0.", None),
    ("price", "12.345", "At most 2 decimal places.", None),
    ("price", "1e20", "Number is too large.", None),
    ("price", "NaN", "Must be a number.", None),
    ("price", "abc", "Must be a number.", None),
    ("price", True, "Must be a number.", None),
    ("price", "-1", "Must be at least 0.", None),
    ("in_service", "maybe", "Must be yes or no.", None),
    ("in_service", 2, "Must be yes or no.", None),
    ("bought_on", "2024-02-30", "Must be a date like 2026-01-31.", None),
    ("bought_on", dt.datetime(2024, 2, 9, 8, 0), "Must be a date like 2026-01-31.", None),
    ("bought_on", 45000, "Must be a date like 2026-01-31.", None),
    ("bought_on", "1999-12-31", "Must be at least 2000-01-01.", None),
    ("checked_at", "yesterday", "Must be a date and time like 2026-01-31 14:30.", None),
    ("checked_at", 3, "Must be a date and time like 2026-01-31 14:30.", None),
    ("condition", "lost", "Not a valid choice; use one of: good, worn, broken.", "不是有效选项，可选：good, worn, broken。"),
    ("condition", True, "Not a valid choice; use one of: good, worn, broken.", None),
    ("contact_email", "not-an-email", "Not a valid email address.", None),
    ("contact_phone", "12345", "Not a valid phone number.", None),
    ("contact_phone", "call me", "Not a valid phone number.", None),
    ("manual", "ftp://example.com", "Not a valid web address (it must start with http:// or https://).", None),
    ("manual", "https://exa mple.com", "Not a valid web address (it must start with http:// or https://).", None),
]


@pytest.mark.parametrize("name,raw,english_text,chinese_text", BAD, ids=[f"{n}={r!r}" for n, r, _, _ in BAD])
def test_bad_values_give_the_localized_message(app, asset, name, raw, english_text, chinese_text):
    with app.test_request_context("/?_l_=en"):
        assert refused(field(asset, name), raw) == english_text
    with app.test_request_context("/?_l_=zh"):
        message = refused(field(asset, name), raw)
        assert message != english_text  # every message has a Chinese translation
        if chinese_text:
            assert message == chinese_text


# -- open-ended input ---------------------------------------------------------------------------------

@QUICK
@given(st.integers(min_value=0, max_value=1000), st.sampled_from([str, float, int, lambda n: f"  {n} "]))
def test_any_integer_in_range_is_accepted_in_every_shape(asset, number, shape):
    assert clean_value(field(asset, "quantity"), shape(number)) == number


@QUICK
@given(st.integers().filter(lambda n: abs(n) > 2**31 - 1))
def test_integers_past_32_bits_are_refused(asset, english, number):
    assert refused(field(asset, "quantity"), number) == "Number is too large."


@QUICK
@given(st.decimals(min_value=0, max_value=Decimal("99999999.99"), places=2))
def test_any_decimal_that_fits_keeps_its_value(asset, number):
    f = field(asset, "price")
    assert clean_value(f, str(number)) == number
    assert clean_value(f, f"{number:,}") == number  # with thousands separators, as the list shows it
    assert clean_value(f, float(number)) == number.quantize(Decimal("0.01"))


@QUICK
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300))
def test_any_string_is_stripped_and_bounded(asset, english, text):
    """Single-line strings are standardised: full-width forms folded (NFKC of U+FF01-FF5E and U+3000 is their ASCII
    twin), trimmed, inner whitespace runs made one space."""
    import unicodedata

    spec = FieldSpec(name="note", type="string", label=Label.plain("Note"))  # no pattern, the default length
    folded = "".join(unicodedata.normalize("NFKC", c) if 0xFF01 <= ord(c) <= 0xFF5E or c == "\u3000" else c for c in text)
    stripped = " ".join(folded.split())
    if not stripped:
        assert clean_value(spec, text) is None
    elif len(stripped) <= 255:
        assert clean_value(spec, text) == stripped
    else:
        assert refused(spec, text) == f"Must be at most 255 characters (got {len(stripped)})."


@QUICK
@given(st.dates(min_value=dt.date(2000, 1, 1)))
def test_any_date_round_trips_from_text_and_cells(asset, day):
    f = field(asset, "bought_on")
    assert clean_value(f, day.isoformat()) == day
    assert clean_value(f, day.isoformat().replace("-", "/")) == day
    assert clean_value(f, dt.datetime.combine(day, dt.time(0))) == day


@QUICK
@given(st.datetimes(min_value=dt.datetime(1900, 1, 1)))
def test_any_datetime_is_kept_to_the_second(asset, moment):
    f = field(asset, "checked_at")
    assert clean_value(f, moment.isoformat()) == moment.replace(microsecond=0)
    assert clean_value(f, moment) == moment.replace(microsecond=0)


@QUICK
@given(st.text(max_size=20))
def test_enum_accepts_exactly_its_keys_and_labels(asset, english, text):
    f = field(asset, "condition")
    accepted = {"good": "good", "worn": "worn", "broken": "broken", "Good": "good", "Worn": "worn",
                "Broken": "broken", "良好": "good", "磨损": "worn", "损坏": "broken"}
    if not text.strip():
        assert clean_value(f, text) is None
    elif text.strip() in accepted:
        assert clean_value(f, text) == accepted[text.strip()]
    else:
        assert refused(f, text) == "Not a valid choice; use one of: good, worn, broken."


# -- filter values ------------------------------------------------------------------------------------

def test_filter_values_are_cleaned_by_the_type(asset, english):
    assert clean_filter_value(field(asset, "quantity"), "gt", "5000") == 5000  # no min/max on a filter
    assert clean_filter_value(field(asset, "price"), "gt", "12.345") == Decimal("12.345")  # no scale either
    assert clean_filter_value(field(asset, "code"), "sw", "  A-") == "  A-"  # text compares as typed
    assert clean_filter_value(field(asset, "condition"), "sw", "wo") == "wo"  # a prefix, not a key
    assert clean_filter_value(field(asset, "condition"), "eq", "磨损") == "worn"
    assert clean_filter_value(field(asset, "in_service"), "eq", "") is None
    assert clean_filter_value(field(asset, "supplier"), "rel_o_m", "7") == 7
    assert clean_filter_value(field(asset, "tags"), "rel_m_m", [" 3", "", "4"]) == [3, 4]
    assert clean_filter_value(field(asset, "bought_on"), "gt", " ") is None
    for name, raw, message in (("supplier", "x", "Must be the id of a record."), ("price", "1e12", "Number is too large."),
                               ("code", {"a": 1}, "Must be text."), ("condition", "eq", None)):
        with pytest.raises(FieldError) as caught:
            clean_filter_value(field(asset, name), "eq", raw if name != "condition" else "lost")
        assert message is None or str(caught.value) == message


# -- spec level (for the checker) ---------------------------------------------------------------------

LITERALS = [
    ("integer", 5, 5), ("decimal", "1.5", Decimal("1.5")), ("decimal", 2, Decimal("2")), ("boolean", True, True),
    ("date", "2026-01-31", dt.date(2026, 1, 31)), ("date", dt.date(2026, 1, 31), dt.date(2026, 1, 31)),
    ("datetime", "2026-01-31 14:30", dt.datetime(2026, 1, 31, 14, 30)), ("datetime", dt.date(2026, 1, 31), dt.datetime(2026, 1, 31)),
    ("string", 12, "12"), ("enum", "worn", "worn"), ("phone", 13800138000, "13800138000"),
]


@pytest.mark.parametrize("name,value,parsed", LITERALS)
def test_literals_parse_per_type(name, value, parsed):
    assert BUILTIN_TYPES[name].literal(value, {"precision": 4, "scale": 1}) == parsed


REFUSED_LITERALS = [
    ("integer", True, ""), ("integer", 2**31, " (whole numbers are stored as INTEGER: -2147483648 to 2147483647)"),
    ("decimal", "inf", " (it must be a finite number)"),
    ("decimal", "1.25", " (precision 4, scale 1: at most 3 digits before the point and 1 after)"),
    ("decimal", "x", ""), ("boolean", "yes", ""), ("date", "31.01.2026", ""), ("date", 5, ""),
    ("datetime", "2026-01-31T14:30+08:00", " (write it without a time zone: times are stored as local time)"),
    ("datetime", "soon", ""), ("string", True, ""), ("link", 1, ""), ("many", [1], ""), ("user", "ada", ""),
]


@pytest.mark.parametrize("name,value,reason", REFUSED_LITERALS)
def test_literals_that_do_not_fit_give_the_reason(name, value, reason):
    with pytest.raises(LiteralError) as caught:
        BUILTIN_TYPES[name].literal(value, {"precision": 4, "scale": 1})
    assert caught.value.reason == reason


def test_spec_level_flags_of_the_builtin_types():
    """What the checker reads from the built-in types (it has no tables of its own any more)."""
    by_flag = lambda flag: tuple(n for n in FIELD_TYPES if getattr(BUILTIN_TYPES[n], flag))  # noqa: E731
    assert {n: BUILTIN_TYPES[n].option_keys for n in FIELD_TYPES} == {
        "string": ("length", "pattern"), "text": ("length",), "integer": ("min", "max"),
        "decimal": ("min", "max", "precision", "scale"), "boolean": (), "date": ("min", "max"),
        "datetime": ("min", "max"), "enum": ("choices",), "email": ("length",), "phone": (), "url": ("length",),
        "link": ("to", "on_delete", "filter"), "many": ("to", "filter"), "user": (), "autonumber": ("pattern",),
        "file": ("max_mb", "types"), "address": ("length",)}
    assert {n: BUILTIN_TYPES[n].own_options for n in FIELD_TYPES if BUILTIN_TYPES[n].own_options} == {"autonumber": ("pattern",)}
    assert {n: BUILTIN_TYPES[n].fixed_options for n in FIELD_TYPES if BUILTIN_TYPES[n].fixed_options} == {
        "autonumber": {"readonly": True, "unique": True}}
    assert set(by_flag("assigned")) == {"autonumber", "file"}
    assert set(FIELD_TYPES) - set(by_flag("takes_literals")) >= {"autonumber"}
    assert set(FIELD_TYPES) - set(by_flag("can_be_unique")) == {"many", "boolean", "text", "file", "address"}
    assert set(FIELD_TYPES) - set(by_flag("sortable")) == {"many", "link", "user", "file"}
    assert set(FIELD_TYPES) - set(by_flag("can_be_title")) == {"many", "link", "user", "file"}
    assert set(by_flag("maskable")) == {"string", "text", "email", "phone", "url", "integer", "decimal", "address"}
    assert BUILTIN_TYPES.dynamic_defaults() == {"now": ("datetime",), "today": ("date",), "current_user": ("user",)}
    assert set(by_flag("is_relation")) == {"link", "many", "user"}
    assert set(by_flag("is_moment")) == {"date", "datetime"}
    assert set(by_flag("numeric")) == {"integer", "decimal"}
    assert set(by_flag("ordered")) == {"integer", "decimal", "date", "datetime"}
    assert set(FIELD_TYPES) - set(by_flag("groupable")) == {"many", "text", "decimal", "file", "address"}
    assert [s.suffix for s in BUILTIN_TYPES["address"].siblings] == ["_province", "_city", "_district", "_detail", "_parsed"]
    assert {n for n in FIELD_TYPES if BUILTIN_TYPES[n].siblings} == {"address"}


def test_inside_an_app_type_of_finds_builtin_types(app, asset):
    with app.app_context():
        assert type_of(field(asset, "price")) is BUILTIN_TYPES["decimal"]
        assert field_types(app).names[:len(FIELD_TYPES)] == FIELD_TYPES


def test_enum_form_field_is_a_select_of_labels_checked_by_the_rule(app, asset):
    from werkzeug.datastructures import MultiDict
    from wtforms import Form

    from app.generate.pages import FieldRule

    f = field(asset, "condition")
    with app.test_request_context("/?_l_=zh"):
        form_class = type("ConditionForm", (Form,), {"condition": type_of(f).form_field(f, FieldRule(f))})
        form = form_class(MultiDict({"condition": "磨损"}))
        assert form.validate() and form.condition.data == "worn"
        assert [(key, str(label)) for key, label in form.condition.choices] == [
            ("", ""), ("good", "良好"), ("worn", "磨损"), ("broken", "损坏")]
        bad = form_class(MultiDict({"condition": "lost"}))
        assert not bad.validate() and bad.errors == {"condition": ["不是有效选项，可选：good, worn, broken。"]}
    assert type_of(field(asset, "code")).form_field(field(asset, "code"), FieldRule(f)) is None
