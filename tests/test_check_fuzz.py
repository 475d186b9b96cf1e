"""Property test: mutated schemas are either refused with coded problems, fast, or they boot and serve.

Mutations of the shipped schemas (and the test-only assets module): dropped, duplicated and renamed
keys, values swapped for other types, names and labels replaced (unicode, HTML, very long text,
names taken from elsewhere in the schema), field types changed, YAML aliases and deep nesting.

- every mutant: `load_portal` answers within a bounded time, with `file:line: CODE message` problems
  (registered codes, never the internal-error code) or a spec;
- a bounded number of ACCEPTED mutants: the app boots (SQLite) and every page and endpoint of
  tests/portal_walk.py answers without a 5xx.

CI runs a fixed, derandomized set. For local hunting: PORTAL_FUZZ_EXAMPLES=500 pytest tests/test_check_fuzz.py
(PORTAL_FUZZ_BOOTS sets how many accepted mutants are booted, default 8).
"""
from __future__ import annotations

import copy
import datetime as dt
import os
import re
import threading
import uuid
from pathlib import Path

import pytest
import yaml
from conftest import ASSETS, ROOT, make_app
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from portal_walk import walk

from app.schema import load_portal
from app.schema.codes import CODES
from app.schema.spec import FIELD_TYPES

EXAMPLES = int(os.environ.get("PORTAL_FUZZ_EXAMPLES", "60"))
BOOTS = max(1, int(os.environ.get("PORTAL_FUZZ_BOOTS", "8")))
LOCAL_HUNT = "PORTAL_FUZZ_EXAMPLES" in os.environ
LOAD_SECONDS = 30  # generous: the machine running CI may be busy; a hang never ends
PROBLEM_LINE = re.compile(r"^[^\n]+:\d+: (E\d{3}) \S[^\n]*$")  # one line per problem

BASES = {
    "shipped": sorted((ROOT / "schemas").glob("*.yaml")),
    "assets": [ASSETS / "assets.yaml"],
}
TREES = {name: [yaml.safe_load(p.read_text(encoding="utf-8")) for p in paths] for name, paths in BASES.items()}

PAYLOADS = [
    "<img src=x onerror=alert(1)>", "<script>alert(1)</script>", "{{ 7*7 }}", "'; DROP TABLE ab_user; --",
    "项目经理", "Ünïcödé ✓", "x" * 300, "名" * 2000, "", " ", "-", "a:b", "$user", "%s%s%n", "\u202e\u0000",
]
KEYWORDS = [
    "Menu", "Users", "Security", "Open", "Api", "Reports", "Dashboard", "Login", "Role", "Order", "User", "Group",
    "Nowhere", "A" * 70, "Ab", "AbUser", "select", "order", "group", "user", "data", "meta", "id", "created_by",
    "created_on", "name", "title", "to", "type", "fields", "label", "choices", "all", "read", "count",
    "sum(hours)", "now", "today", "current_user", "project.manager", "customer.owner", "-name", "work_date:month",
    "a" * 70, "x_id", "Admin", "Public", "en", "zh", "zh-CN",
]


def names_in(tree) -> list:
    """Every key and text value in a tree: swapping them around makes plausible cross-references."""
    found = []
    if isinstance(tree, dict):
        for key, value in tree.items():
            found.append(key)
            found.extend(names_in(value))
    elif isinstance(tree, list):
        for item in tree:
            found.extend(names_in(item))
    elif isinstance(tree, str):
        found.append(tree)
    return found


NAME_POOL = sorted({n for trees in TREES.values() for t in trees for n in names_in(t) if isinstance(n, str)})

scalars = st.one_of(
    st.sampled_from(NAME_POOL), st.sampled_from(KEYWORDS), st.sampled_from(PAYLOADS), st.sampled_from(FIELD_TYPES),
    st.text(max_size=20), st.integers(-2**40, 2**40), st.booleans(), st.none(),
    st.floats(allow_nan=True, allow_infinity=True), st.dates(min_value=dt.date(1, 1, 1)),
    st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2100, 1, 1)),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(NAME_POOL) | st.sampled_from(KEYWORDS), inner, max_size=3), max_leaves=6)
keys = st.one_of(st.sampled_from(NAME_POOL), st.sampled_from(KEYWORDS), st.integers(-5, 5), st.booleans(), st.none())


def locations(tree, parent=None, key=None, out=None):
    """(parent, key) of every value in the tree, the root excluded."""
    out = [] if out is None else out
    if parent is not None:
        out.append((parent, key))
    if isinstance(tree, dict):
        for k in list(tree):
            locations(tree[k], tree, k, out)
    elif isinstance(tree, list):
        for i in range(len(tree)):
            locations(tree[i], tree, i, out)
    return out


def mutate(data, tree) -> None:
    parent, key = data.draw(st.sampled_from(locations(tree)))
    op = data.draw(st.sampled_from(["drop", "rename", "duplicate", "value", "swap", "type", "alias", "nest", "insert"]))
    if op == "drop":
        del parent[key]
    elif op == "rename" and isinstance(parent, dict):
        new = data.draw(keys)
        if new not in parent:
            parent[new] = parent.pop(key)
    elif op == "duplicate" and isinstance(parent, dict):
        parent[data.draw(keys)] = copy.deepcopy(parent[key])
    elif op == "duplicate":
        parent.append(copy.deepcopy(parent[key]))
    elif op == "value":
        parent[key] = data.draw(values)
    elif op == "swap":  # a name from elsewhere in the schemas: plausible but maybe wrong
        parent[key] = data.draw(st.sampled_from(NAME_POOL))
    elif op == "type":
        fields = [loc for loc in locations(tree) if loc[1] == "type"]
        if fields:
            p, k = data.draw(st.sampled_from(fields))
            p[k] = data.draw(st.sampled_from(FIELD_TYPES))
    elif op == "alias":  # the same object twice: yaml.safe_dump writes an anchor and an alias
        other_parent, other_key = data.draw(st.sampled_from(locations(tree)))
        if not _contains(other_parent[other_key], parent):
            parent[key] = other_parent[other_key]
    elif op == "nest":
        value = parent[key]
        for _ in range(data.draw(st.integers(1, 60))):
            value = [value] if data.draw(st.booleans()) else {"x": value}
        parent[key] = value
    elif op == "insert" and isinstance(parent[key], dict):
        parent[key][data.draw(keys)] = data.draw(values)


def _contains(tree, target) -> bool:
    if tree is target:
        return True
    children = tree.values() if isinstance(tree, dict) else tree if isinstance(tree, list) else ()
    return any(_contains(child, target) for child in children)


def write_mutant(data, tmp: Path, mutations=(1, 4)) -> Path:
    base = data.draw(st.sampled_from(sorted(BASES)))
    trees = copy.deepcopy(TREES[base])
    target = data.draw(st.integers(0, len(trees) - 1))
    for _ in range(data.draw(st.integers(*mutations))):
        mutate(data, trees[target])
    directory = tmp / uuid.uuid4().hex[:8]
    directory.mkdir()
    for path, tree in zip(BASES[base], trees):
        try:
            text = yaml.safe_dump(tree, allow_unicode=True, sort_keys=False, width=200)
        except (yaml.YAMLError, RecursionError):
            assume(False)
        (directory / path.name).write_text(text, encoding="utf-8")
    return directory


def load_in_time(directory: Path):
    """load_portal in a daemon thread: a hang fails the test instead of stalling it."""
    result = {}
    worker = threading.Thread(target=lambda: result.update(answer=load_portal(directory)), daemon=True)
    worker.start()
    worker.join(LOAD_SECONDS)
    assert not worker.is_alive(), f"load_portal did not answer within {LOAD_SECONDS}s for {directory}"
    return result["answer"]


def assert_coded(problems) -> None:
    for problem in problems:
        text = str(problem)
        match = PROBLEM_LINE.match(text)
        assert match, text
        assert match.group(1) in CODES, text
        assert problem.code != "E099", text  # the checker itself crashed


@settings(max_examples=EXAMPLES, deadline=None, derandomize=not LOCAL_HUNT, database=None,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_mutated_schemas_are_checked_quickly_with_codes(tmp_path_factory, data):
    directory = write_mutant(data, tmp_path_factory.mktemp("mutant"))
    spec, problems = load_in_time(directory)
    assert (spec is None) == bool(problems)
    assert_coded(problems)


boots = {"done": 0}


@pytest.mark.skipif(bool(os.environ.get("PORTAL_TEST_DATABASE_URL")) and not LOCAL_HUNT,
                    reason="booting mutants is SQLite-only in CI (a PostgreSQL schema per mutant is slow)")
@settings(max_examples=BOOTS, deadline=None, derandomize=not LOCAL_HUNT, database=None,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_accepted_mutants_boot_and_serve_every_page(tmp_path_factory, data):
    directory = write_mutant(data, tmp_path_factory.mktemp("mutant"), mutations=(1, 2))
    spec, problems = load_in_time(directory)
    assume(spec is not None)  # only accepted mutants count towards max_examples
    boots["done"] += 1
    app = make_app(tmp_path_factory, f"fuzz{boots['done']}", directory, PROPAGATE_EXCEPTIONS=False)
    failures = walk(app)
    assert failures == [], (directory, failures)
