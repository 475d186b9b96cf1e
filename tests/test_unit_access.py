"""Unit tests of the viewer rules (app/rules/access.py): hide/mask across roles, row scopes run as SQL on the
database of the run, forced values, masking. No Flask app: the spec of tests/fixtures/tiny and its tables."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from tiny_portal import MODELS, SITES, SPEC, Job, User, tiny_database

from app.rules.access import MASK, Viewer, mask_value, visible_fields

ADMIN = "Admin"
REGION = {site_id: region for site_id, _, region in SITES}


def viewer(*roles, user_id=1) -> Viewer:
    return Viewer(SPEC, User.with_roles(user_id, *roles), ADMIN)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    database = tiny_database(tmp_path_factory, "unit_access")
    yield database
    database.engine.dispose()


# -- hidden and masked fields: a field stays hidden/masked only if every reading role says so ----------

@pytest.mark.parametrize("roles,hidden,masked", [
    (("Owner",), {"cost", "urgent"}, {"phone", "email", "hours"}),
    (("North",), {"cost", "phone"}, {"email"}),
    (("Owner", "North"), {"cost"}, {"phone", "email"}),  # hidden by one, masked by the other: masked
    (("Owner", "Free"), set(), {"phone", "email"}),       # Free hides nothing
    (("Owner", "Opener"), set(), set()),                 # Opener restricts rows only
    (("Owner", "SiteOnly"), {"cost", "urgent"}, {"phone", "email", "hours"}),  # SiteOnly does not read Job
    (("Owner", "Public", "NotInYaml"), {"cost", "urgent"}, {"phone", "email", "hours"}),  # non-YAML roles ignored
    (("Admin", "Owner"), set(), set()),                  # Admin is unrestricted
    ((), set(), set()),
])
def test_hidden_and_masked_fields_across_roles(roles, hidden, masked):
    v = viewer(*roles)
    assert v.hidden("Job") == hidden and v.masked("Job") == masked
    assert v.unreadable("Job") == hidden | masked
    assert visible_fields(SPEC.entity("Job"), v) == [f.name for f in SPEC.entity("Job").fields if f.name not in hidden]
    assert v.hidden("Site") == frozenset() and v.masked("Site") == frozenset()


def test_admin_flag_and_readers():
    assert viewer("Admin").is_admin and not viewer("Owner").is_admin
    assert [r.name for r in viewer("Owner", "SiteOnly", "North").readers("Job")] == ["Owner", "North"]
    assert viewer(user_id=None).user_id is None
    assert Viewer(SPEC, None, ADMIN).roles == [] and Viewer(SPEC, None, ADMIN).user_id is None  # anonymous


# -- row scopes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("roles,expected", [
    (("Owner",), [(("owner",), "eq", "$user")]),
    (("Owner", "North"), [(("owner",), "eq", "$user")], ),
    (("Free",), None), (("Owner", "Free"), None), (("Admin", "Owner"), None), (("SiteOnly",), None), ((), None),
    (("Opener",), [(("status",), "eq", "open"), (("owner",), "eq", "$user")]),
])
def test_scopes_none_means_every_row(roles, expected):
    scopes = viewer(*roles).scopes("Job")
    if expected is None:
        assert scopes is None
    else:
        assert [(c.path, c.op, str(c.value)) for c in scopes[0]] == expected
        assert len(scopes) == sum(1 for r in roles if r in ("Owner", "North", "Opener", "Pair"))


def allowed(row: dict, roles: tuple, user_id) -> bool:
    """The rules of tiny.yaml written out in Python: any reading role's scope (all of its conditions) matches."""
    if "Admin" in roles or any(r in roles for r in ("Free",)):
        return True
    scoped = [r for r in roles if r in ("Owner", "North", "Opener", "Pair")]
    if not scoped:
        return True
    if user_id is None:
        return False
    checks = {
        "Owner": lambda: row["owner_id"] == user_id,
        "North": lambda: REGION.get(row["site_id"]) == "north",
        "Opener": lambda: row["status"] == "open" and row["owner_id"] == user_id,
        "Pair": lambda: row["status"] in ("open", "done") and row["hours"] == 8,
    }
    return any(checks[r]() for r in scoped)


ROLE_SETS = [("Owner",), ("North",), ("Opener",), ("Pair",), ("Owner", "North"), ("Opener", "Pair"), ("North", "Free"),
             ("Admin", "North"), ("SiteOnly",), ("Owner", "SiteOnly")]


@pytest.mark.parametrize("roles", ROLE_SETS, ids=["+".join(r) for r in ROLE_SETS])
@pytest.mark.parametrize("user_id", [1, 2, None])
def test_row_clause_selects_exactly_the_scoped_rows(tiny, roles, user_id):
    clause = viewer(*roles, user_id=user_id).row_clause("Job", MODELS)
    statement = select(Job.id).order_by(Job.id)
    if clause is not None:
        statement = statement.where(clause)
    with tiny.engine.connect() as conn:
        got = list(conn.scalars(statement))
    expected = [row["id"] for row in tiny.rows if allowed(row, roles, user_id)]
    assert got == expected
    if clause is not None and user_id is not None:  # the rows tell scopes apart
        assert 0 < len(expected) < len(tiny.rows)


def test_row_clause_compiles_for_both_dialects():
    clause = viewer("North", "Opener", user_id=7).row_clause("Job", MODELS)
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        sql = str(select(Job.id).where(clause).compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        assert "EXISTS (SELECT 1" in sql and "site.region = 'north'" in sql, sql  # link.field: a subquery
        assert "job.owner_id = 7" in sql and "job.status = 'open'" in sql and " OR " in sql, sql
    assert viewer("Owner", user_id=None).row_clause("Job", MODELS).compile().string == "false"  # anonymous: nothing


# -- forced values: what a new or edited record must carry to stay in scope ---------------------------

def test_forced_values():
    user = User.with_roles(5, "Opener")
    assert Viewer(SPEC, user, ADMIN).forced_values("Job") == {"status": "open", "owner": user}
    assert viewer("Owner").forced_values("Job")["owner"].id == 1
    assert viewer("North").forced_values("Job") == {}  # link.field cannot be set on the record itself
    assert viewer("Pair").forced_values("Job") == {"hours": 8}  # two accepted statuses: none forced
    assert viewer("Owner", "North").forced_values("Job").keys() == {"owner"}  # the first scope decides
    assert viewer("Admin", "Owner").forced_values("Job") == {} and viewer("Free").forced_values("Job") == {}


# -- masking --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value,masked", [
    ("13812348000", f"138{MASK}8000"), ("+8613812348000", f"138{MASK}8000"), ("110101199002021234", f"110{MASK}1234"),
    ("ada@example.com", f"a{MASK}@example.com"), ("@example.com", f"{MASK}@example.com"), ("123456", MASK),
    ("1234567", f"123{MASK}4567"), (12345678, f"123{MASK}5678"), ("", ""), (None, ""), ("x", MASK),
])
def test_mask_value_examples(value, masked):
    assert mask_value(value) == masked


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.one_of(st.text(max_size=40), st.integers(min_value=-10**12, max_value=10**12)))
def test_mask_value_never_shows_the_middle(value):
    text, masked = str(value), mask_value(value)
    if text == "":
        assert masked == ""
    elif "@" in text:
        name, _, domain = text.partition("@")
        assert masked == f"{name[:1]}{MASK}@{domain}"  # the name past its first character never shows
    else:
        if text.startswith("+86") and len(text) == 14:
            text = text[3:]
        assert MASK in masked and len(masked) <= max(len(MASK), 3 + len(MASK) + 4)
        if len(text) >= 7:
            assert masked == text[:3] + MASK + text[-4:]
        else:
            assert masked == MASK
