"""`portal check` and start-up report every schema problem as file:line: CODE message."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT

from app.schema import SchemaProblems, load_portal

GOOD_HEAD = "version: 1\nmodule: m\nentities:\n"
REPORT_HEAD = GOOD_HEAD + "  A: {title: x, fields: {x: string, n: decimal, d: date, k: {type: enum, choices: [a, b]}}}\nreports:\n"
ROLE_HEAD = GOOD_HEAD + "  A: {title: x, fields: {x: string, u: user, k: {type: enum, choices: [a, b]}}}\nroles:\n"


def problems_for(tmp_path: Path, yaml_text: str, name="m.yaml") -> list[str]:
    (tmp_path / name).write_text(textwrap.dedent(yaml_text), encoding="utf-8")
    spec, problems = load_portal(tmp_path)
    assert (spec is None) == bool(problems)
    return [str(p) for p in problems]


def coded(tmp_path: Path, yaml_text: str, name="m.yaml") -> list[tuple[str, int, str]]:
    """The (file name, line, code) of every problem: what the tests assert (wording may change, codes may not)."""
    (tmp_path / name).write_text(textwrap.dedent(yaml_text), encoding="utf-8")
    spec, problems = load_portal(tmp_path)
    assert (spec is None) == bool(problems)
    return [(Path(p.file).name, p.line, p.code) for p in problems]


def coded_of(problems) -> set[tuple[str, int, str]]:
    return {(Path(p.file).name, p.line, p.code) for p in problems}


# (yaml, line, code, what it is about): one case for every kind of problem the checker reports; the last item
# only names the case (tests assert the code and the line, never the wording)
CASES = [
    ("version: 1\nmodule: m\nentites: {}\n", 3, "E202", "unknown key 'entites' in module (did you mean 'entities'?)"),
    ("version: 2\nmodule: m\nentities: {A: {fields: {x: string}}}\n", 1, "E204", "unsupported version 2"),
    ("module: m\nentities: {A: {fields: {x: string}}}\n", 1, "E203", "missing 'version: 1'"),
    ("version: 1\nentities: {A: {fields: {x: string}}}\n", 1, "E205", "missing 'module'"),
    ("version: 1\nmodule: Bad-Name\nentities: {A: {fields: {x: string}}}\n", 2, "E206", "module name 'Bad-Name'"),
    ("version: 1\nmodule: m\n", 1, "E208", "missing 'entities'"),
    ("version: 1\nmodule: m\nentities: {}\n", 3, "E209", "entities is empty"),
    (GOOD_HEAD + "  lower: {fields: {x: string}}\n", 4, "E301", "entity name 'lower' must be CamelCase"),
    (GOOD_HEAD + "  A: {fields: {x: string}, lable: X}\n", 4, "E302", "unknown key 'lable' in entity 'A' (did you mean 'label'?)"),
    (GOOD_HEAD + "  A: {label: X}\n", 4, "E303", "entity 'A' has no 'fields'"),
    (GOOD_HEAD + "  A:\n    fields:\n      x: {type: strng}\n", 6, "E404", "unknown type 'strng' for field 'A.x' (did you mean 'string'?)"),
    (GOOD_HEAD + "  A:\n    fields:\n      x: {required: true}\n", 6, "E403", "field 'A.x' has no 'type'"),
    (GOOD_HEAD + "  A:\n    fields:\n      x: {type: string, lenght: 5}\n", 6, "E406", "unknown key 'lenght' in field 'A.x' (did you mean 'length'?)"),
    (GOOD_HEAD + "  A:\n    fields:\n      x: {type: integer, length: 5}\n", 6, "E405", "'length' does not apply to a integer field"),
    (GOOD_HEAD + "  A:\n    fields:\n      x: {type: string, required: 'yes'}\n", 6, "E002", "'required' of field 'A.x' must be true or false"),
    (GOOD_HEAD + "  A:\n    fields:\n      x: {type: string, length: 0}\n", 6, "E004", "length of field 'A.x' must be between 1 and 100000"),
    (GOOD_HEAD + "  A:\n    fields:\n      x: {type: string, pattern: '[a-'}\n", 6, "E408", "not a valid regular expression"),
    (GOOD_HEAD + "  A:\n    fields:\n      x: {type: integer, default: abc}\n", 6, "E415", "default of field 'A.x' must be a integer value, got 'abc'"),
    (GOOD_HEAD + "  A:\n    fields:\n      x: {type: date, default: now}\n", 6, "E417", "default 'now' only fits a datetime field, not date"),
    (GOOD_HEAD + "  A:\n    fields:\n      x: {type: integer, min: 5, max: 1, default: 3}\n", 6, "E416", "max of field 'A.x' is smaller than its min"),
    (GOOD_HEAD + "  A:\n    fields:\n      x: {type: integer, max: 10, default: 30}\n", 6, "E420", "default of field 'A.x' is outside its min/max"),
    (GOOD_HEAD + "  A:\n    fields:\n      x: {type: enum, choices: {a: A}, default: b}\n", 6, "E419", "default 'b' of field 'A.x' is not one of its choices"),
    (GOOD_HEAD + "  A:\n    fields:\n      x: {type: enum}\n", 6, "E410", "field 'A.x' is an enum and needs 'choices'"),
    (GOOD_HEAD + "  A:\n    fields:\n      x:\n        type: enum\n        choices: [yes, b]\n", 8, "E412", "choice key True of field 'A.x'"),
    (GOOD_HEAD + "  A:\n    fields:\n      x: {type: link}\n", 6, "E501", "field 'A.x' needs 'to: <Entity>'"),
    (GOOD_HEAD + "  A:\n    fields:\n      x: {type: link, to: Custmer}\n", 6, "E503", "field 'A.x' links to unknown entity 'Custmer'"),
    (GOOD_HEAD + "  A:\n    fields:\n      x: {type: link, to: A, on_delete: drop}\n", 6, "E413", "on_delete of field 'A.x' must be one of cascade, restrict, set_null"),
    (GOOD_HEAD + "  A:\n    fields:\n      x: {type: link, to: A, required: true, on_delete: set_null}\n", 6, "E414", "is required, so on_delete cannot be set_null"),
    (GOOD_HEAD + "  A:\n    fields:\n      x: {type: many, to: A, unique: true}\n", 6, "E407", "a many field cannot be unique"),
    (GOOD_HEAD + "  A:\n    fields:\n      x: {type: user, default: 3}\n", 6, "E418", "a user field cannot have a literal default"),
    (GOOD_HEAD + "  A:\n    fields:\n      id: string\n", 6, "E402", "field name 'id' is reserved"),
    (GOOD_HEAD + "  A:\n    fields:\n      Bad: string\n", 6, "E401", "field name 'Bad' must be lowercase"),
    (GOOD_HEAD + "  A:\n    fields:\n      x: {type: link, to: A}\n      x_id: integer\n", 6, "E310", "field 'x_id' clashes with the column that stores link 'x'"),
    (GOOD_HEAD + "  A:\n    fields:\n      x: {type: decimal, precision: 4, scale: 6}\n", 6, "E409", "scale 6 of field 'A.x' is larger than its precision 4"),
    (GOOD_HEAD + "  A:\n    fields: {x: string}\n    list: [x, y]\n", 6, "E304", "list names unknown field 'y' of entity 'A'"),
    (GOOD_HEAD + "  A:\n    fields: {name: string}\n    search: [nme]\n", 6, "E304", "search names unknown field 'nme' of entity 'A' (did you mean 'name'?)"),
    (GOOD_HEAD + "  A:\n    fields: {x: string}\n    order: [-z]\n", 6, "E304", "order names unknown field 'z'"),
    (GOOD_HEAD + "  A:\n    fields: {x: string}\n    title: nope\n", 6, "E304", "title names unknown field 'nope'"),
    (GOOD_HEAD + "  A:\n    fields: {x: string, t: {type: many, to: A}}\n    order: [t]\n", 6, "E305", "order cannot use 't' (a many field)"),
    (GOOD_HEAD + "  A:\n    fields: {x: string}\n    unique_together: [[x]]\n", 6, "E307", "a unique_together group needs at least two fields"),
    (GOOD_HEAD + "  A:\n    fields: {x: string}\n    unique_together: [[x, q]]\n", 6, "E304", "unique_together names unknown field 'q'"),
    (GOOD_HEAD + "  A:\n    label: {en: A, 'zh-CN': X}\n    fields: {x: string}\n", 5, "E006", "'zh-CN' in label of 'A' is not a locale code"),
    (GOOD_HEAD + "  A:\n    label: [a]\n    fields: {x: string}\n", 5, "E008", "label of 'A' must be text or a map"),
    (GOOD_HEAD + "  A: {fields: {x: string}}\n  A: {fields: {y: string}}\n", 5, "E111", "duplicate key 'A' (first at line 4)"),
    (GOOD_HEAD + "  AbUser: {fields: {x: string}}\n", 4, "E902", "clashes with the portal's own ab_* tables"),
    ("version: 1\nmodule: m\nentities:\n  A: {fields: {x: string}\n", 5, "E105", "YAML syntax error"),
    ("- just\n- a list\n", 1, "E201", "a schema file must be a mapping"),
    ("", 1, "E107", "file is empty"),
    # roles
    (ROLE_HEAD + "  Admin: {can: {A: all}}\n", 6, "E602", "role 'Admin' is built in"),
    (ROLE_HEAD + "  Clerk: {cna: {A: all}}\n", 6, "E603", "unknown key 'cna' in role 'Clerk' (did you mean 'can'?)"),
    (ROLE_HEAD + "  Clerk: {can: {B: all}}\n", 6, "E604", "'can' of role 'Clerk' names unknown entity 'B'"),
    (ROLE_HEAD + "  Clerk: {can: {A: [read, wirte]}}\n", 6, "E605", "unknown action 'wirte' for A in role 'Clerk'; actions are read, create, update, delete, import, export or all"),
    (ROLE_HEAD + "  Clerk: {can: {A: [update]}}\n", 6, "E606", "role 'Clerk' grants update on A without read"),
    (ROLE_HEAD + "  Clerk:\n    can: {A: [read]}\n    rows: {A: {owner: $user}}\n", 8, "E609", "row scope of role 'Clerk' names unknown field 'owner' of A"),
    (ROLE_HEAD + "  Clerk:\n    can: {A: [read]}\n    rows: {A: {x: $user}}\n", 8, "E612", "$user in role 'Clerk' only fits a single user field"),
    (ROLE_HEAD + "  Clerk:\n    can: {A: [read]}\n    rows: {A: {u: 5}}\n", 8, "E613", "row scope 'u' of role 'Clerk' is a user field; use $user"),
    (ROLE_HEAD + "  Clerk:\n    can: {A: [read]}\n    rows: {A: {x.y: 1}}\n", 8, "E610", "'x' is not a link"),
    (ROLE_HEAD + "  Clerk:\n    can: {A: [read]}\n    rows: {A: {k: zz}}\n", 8, "E614", "row scope value 'zz' of role 'Clerk' is not a choice of 'k'"),
    (ROLE_HEAD + "  Clerk:\n    can: {A: [read]}\n    rows: {C: {x: 1}}\n", 8, "E607", "role 'Clerk' limits rows of C but grants nothing on it"),
    (ROLE_HEAD + "  Clerk:\n    can: {A: [read]}\n    hide: {A: [nope]}\n", 8, "E615", "hide of role 'Clerk' names unknown field 'nope' of A"),
    (ROLE_HEAD + "  Clerk:\n    can: {A: [read]}\n    hide: {A: [x]}\n", 8, "E616", "cannot use 'x': it is A's title"),
    (ROLE_HEAD + "  Clerk:\n    can: {A: [read]}\n    mask: {A: [u]}\n", 8, "E617", "cannot mask 'u' (a user field)"),
    (ROLE_HEAD + "  Clerk: {can: {A: [read]}, reports: [nope]}\n", 6, "E619", "role 'Clerk' names unknown report 'nope'"),
    # reports
    (REPORT_HEAD + "  Bad-Id: {entity: A}\n", 6, "E701", "report id 'Bad-Id' must be lowercase"),
    (REPORT_HEAD + "  r: {group_by: [k]}\n", 6, "E702", "report 'r' needs 'entity: <Entity>'"),
    (REPORT_HEAD + "  r: {entity: B}\n", 6, "E704", "report 'r' names unknown entity 'B'"),
    (REPORT_HEAD + "  r: {entity: A, grup_by: [k]}\n", 6, "E703", "unknown key 'grup_by' in report 'r' (did you mean 'group_by'?)"),
    (REPORT_HEAD + "  r: {entity: A, group_by: [zz]}\n", 6, "E706", "group_by of report 'r' names unknown field 'zz' of A"),
    (REPORT_HEAD + "  r: {entity: A, group_by: [d]}\n", 6, "E707", "group_by 'd' of report 'r' needs a bucket: d:day, d:week"),
    (REPORT_HEAD + "  r: {entity: A, group_by: ['d:fortnight']}\n", 6, "E707", "group_by 'd' of report 'r' needs a bucket"),
    (REPORT_HEAD + "  r: {entity: A, group_by: ['k:month']}\n", 6, "E708", "buckets only apply to date fields"),
    (REPORT_HEAD + "  r: {entity: A, group_by: ['d:year', 'd:day']}\n", 6, "E705", "group_by of report 'r' uses 'd' twice"),
    (REPORT_HEAD + "  r: {entity: A, group_by: [n]}\n", 6, "E709", "report 'r' cannot group by 'n' (a decimal field)"),
    (REPORT_HEAD + "  r: {entity: A, measures: {s: sum(x)}}\n", 6, "E713", "sum(x) in report 'r' needs a number field, 'x' is string"),
    (REPORT_HEAD + "  r: {entity: A, measures: {s: total(n)}}\n", 6, "E711", "unknown aggregate 'total' in report 'r'"),
    (REPORT_HEAD + "  r: {entity: A, measures: {s: 'sum(n'}}\n", 6, "E710", "measure 's' of report 'r' must look like count, sum(field)"),
    (REPORT_HEAD + "  r: {entity: A, measures: {s: sum(q)}}\n", 6, "E706", "measure 's' of report 'r' names unknown field 'q'"),
    (REPORT_HEAD + "  r: {entity: A, measures: {s: 'avg_hours_between(d)'}}\n", 6, "E712", "avg_hours_between in measure 's' of report 'r' takes 2 field(s), got 1"),
    (REPORT_HEAD + "  r: {entity: A, chart: donut}\n", 6, "E714", "chart of report 'r' must be one of bar, line, pie, table"),
    (REPORT_HEAD + "  r: {entity: A, chart_measure: cost}\n", 6, "E715", "chart_measure of report 'r' names unknown measure 'cost'"),
    (REPORT_HEAD + "  r: {entity: A, filter: {k: c}}\n", 6, "E766", "value 'c' of filter of report 'r' is not a choice of 'k'"),
    (REPORT_HEAD + "  r: {entity: A, filter: {n: abc}}\n", 6, "E765", "value of 'n' in filter of report 'r' must be a decimal value"),
    (REPORT_HEAD + "  r: {entity: A, date_field: k}\n", 6, "E718", "date_field of report 'r' must be a date or datetime field"),
]


@pytest.mark.parametrize("yaml_text,line,code,fragment", CASES, ids=[c[3][:40] for c in CASES])
def test_each_problem_is_reported_with_its_line(tmp_path, yaml_text, line, code, fragment):
    problems = coded(tmp_path, yaml_text)
    assert ("m.yaml", line, code) in problems, problems


def test_problems_across_files(tmp_path):
    (tmp_path / "a.yaml").write_text("version: 1\nmodule: a\nentities:\n  Customer: {fields: {x: string}}\n")
    (tmp_path / "b.yaml").write_text("version: 1\nmodule: a\nentities:\n  Customer: {fields: {y: string}}\n")
    (tmp_path / "c.yaml").write_text("version: 1\nmodule: c\nentities:\n  CustomerX: {fields: {c: {type: link, to: Custome}}}\n")
    problems = coded_of(load_portal(tmp_path)[1])
    assert {("b.yaml", 2, "E207"), ("b.yaml", 4, "E308"), ("c.yaml", 4, "E503")} <= problems, problems


def test_all_problems_reported_at_once(tmp_path):
    problems = coded(tmp_path, GOOD_HEAD + "  A:\n    fields:\n      x: {type: strng}\n      y: {type: integer, default: q}\n    list: [zz]\n")
    assert problems == [("m.yaml", 6, "E404"), ("m.yaml", 7, "E415"), ("m.yaml", 8, "E304")], problems


def test_shipped_schemas_check_clean():
    spec, problems = load_portal(ROOT / "schemas")
    assert problems == []
    assert {m.name for m in spec.modules} == {"crm", "tickets", "labour", "purchasing", "centres"}


PROBLEM_LINE = re.compile(r"^(.+):(\d+): (E\d{3}) \S")


def run_cli(*args, schema_dir):
    """`flask --app run portal check ...` in-process (the bare app run.py builds for a check), so coverage counts it."""
    from app.check import check_only_app

    app = check_only_app()
    app.config["PORTAL_SCHEMA_DIR"] = str(schema_dir)
    return app.test_cli_runner().invoke(args=["portal", *args])


def coded_lines(text: str) -> list[tuple[str, int, str]]:
    return [(Path(m[1]).name, int(m[2]), m[3]) for m in map(PROBLEM_LINE.match, text.splitlines()) if m]


def test_cli_check_bad_schemas_lists_problems_and_fails(tmp_path):
    (tmp_path / "m.yaml").write_text(GOOD_HEAD + "  A:\n    fields:\n      x: {type: strng}\n      y: {type: link, to: Nope}\n")
    result = run_cli("check", schema_dir=tmp_path)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert coded_lines(result.stderr) == [("m.yaml", 6, "E404"), ("m.yaml", 7, "E503")], result.stderr
    assert result.stdout == "" and "2 problem(s) found." in result.stderr


def test_cli_check_good_schemas():
    result = run_cli("check", schema_dir=ROOT / "schemas")
    assert result.exit_code == 0, result.stderr
    assert "OK: 5 modules, 16 entities" in result.stdout and result.stderr == ""


def test_cli_check_missing_directory(tmp_path):
    result = run_cli("check", schema_dir=tmp_path / "nowhere")
    assert result.exit_code == 1
    assert coded_lines(result.stderr) == [("nowhere", 0, "E101")], result.stderr


def test_cli_check_dir_option_wins_over_the_configured_directory(tmp_path):
    (tmp_path / "m.yaml").write_text(GOOD_HEAD + "  A: {fields: {x: {type: strng}}}\n")
    result = run_cli("check", "--dir", str(tmp_path), schema_dir=ROOT / "schemas")
    assert result.exit_code == 1 and coded_lines(result.stderr) == [("m.yaml", 4, "E404")]


def test_python_m_app_check_entry_point(tmp_path, capsys):
    from app.check import main

    assert main(["--dir", str(ROOT / "schemas")]) == 0
    assert "OK: 5 modules, 16 entities" in capsys.readouterr().out
    (tmp_path / "m.yaml").write_text("version: 1\nmodule: m\nlabel: {en: M, zh: 模}\nentities:\n  A:\n    label: {en: A}\n"
                                     "    fields: {x: {type: string, label: {en: X, zh: 叉}}}\n")
    assert main(["--dir", str(tmp_path)]) == 0
    assert main(["--dir", str(tmp_path), "--i18n"]) == 1
    assert coded_lines(capsys.readouterr().err) == [("m.yaml", 5, "E011")]


def test_create_app_refuses_bad_schemas(tmp_path):
    from app import create_app

    (tmp_path / "m.yaml").write_text(GOOD_HEAD + "  A: {fields: {x: {type: strng}}}\n")
    with pytest.raises(SchemaProblems) as info:
        create_app({"PORTAL_SCHEMA_DIR": str(tmp_path), "SQLALCHEMY_DATABASE_URI": "sqlite:///:memory:"})
    assert coded_of(info.value.problems) == {("m.yaml", 4, "E404")}


def test_role_grants_merge_across_modules_but_not_twice(tmp_path):
    (tmp_path / "a.yaml").write_text("version: 1\nmodule: a\nentities:\n  A: {fields: {x: string}}\n"
                                     "roles:\n  Clerk: {label: {en: Clerk, zh: 文员}, can: {A: [read]}}\n")
    (tmp_path / "b.yaml").write_text("version: 1\nmodule: b\nentities:\n  B: {fields: {y: string}}\n"
                                     "roles:\n  Clerk: {can: {B: all}}\n")
    spec, problems = load_portal(tmp_path)
    assert problems == []
    clerk = spec.role("Clerk")
    assert clerk.actions("A") == {"read"} and "delete" in clerk.actions("B") and clerk.label.get("zh") == "文员"
    (tmp_path / "c.yaml").write_text("version: 1\nmodule: c\nentities:\n  C: {fields: {z: string}}\n"
                                     "roles:\n  Clerk: {can: {A: all}}\n")
    assert coded_of(load_portal(tmp_path)[1]) == {("c.yaml", 6, "E618")}


def test_report_ids_are_unique_across_modules(tmp_path):
    (tmp_path / "a.yaml").write_text("version: 1\nmodule: a\nentities:\n  A: {fields: {x: string}}\nreports:\n  r: {entity: A}\n")
    (tmp_path / "b.yaml").write_text("version: 1\nmodule: b\nentities:\n  B: {fields: {y: string}}\nreports:\n  r: {entity: B}\n")
    assert coded_of(load_portal(tmp_path)[1]) == {("b.yaml", 6, "E719")}


def test_cli_check_i18n_lists_labels_missing_a_locale(tmp_path):
    (tmp_path / "m.yaml").write_text(
        "version: 1\nmodule: m\nlabel: {en: Stock, zh: 库存}\nentities:\n"
        "  Item:\n    label: {en: Item}\n    fields:\n      name: {type: string, label: {en: Name, zh: 名称}}\n"
        "      state: {type: enum, label: {en: State, zh: 状态}, choices: {new: {en: New}, old: {en: Old, zh: 旧}}}\n")
    result = run_cli("check", "--i18n", schema_dir=tmp_path)
    assert result.exit_code == 1
    assert coded_lines(result.stderr) == [("m.yaml", 5, "E011"), ("m.yaml", 9, "E011")], result.stderr
    assert run_cli("check", schema_dir=tmp_path).exit_code == 0  # without --i18n a missing locale is fine
    shipped = run_cli("check", "--i18n", schema_dir=ROOT / "schemas")
    assert shipped.exit_code == 0, shipped.stderr


# -- the checker is total: hostile files get coded problems, in bounded time ------------------------

LINK_HEAD = GOOD_HEAD + "  B: {title: n, fields: {n: string}}\n"
HARDENING_CASES = [
    # names that clash with the portal's own pages, endpoints, permissions or tables
    (GOOD_HEAD + "  Menu: {fields: {x: string}}\n", 4, "E901", "entity name 'Menu' is taken by the portal's own pages"),
    (GOOD_HEAD + "  USERS: {fields: {x: string}}\n", 4, "E901", "entity name 'USERS' is taken"),
    (GOOD_HEAD + "  Open: {fields: {x: string}}\n", 4, "E901", "('openapi')"),
    (GOOD_HEAD + "  ResetMyPassword: {fields: {x: string}}\n", 4, "E901", "entity name 'ResetMyPassword' is taken"),
    (GOOD_HEAD + "  Ab: {fields: {x: string}}\n", 4, "E902", "clashes with the portal's own ab_* tables"),
    (GOOD_HEAD + "  SqliteStat: {fields: {x: string}}\n", 4, "E902", "entity name 'SqliteStat'"),
    (GOOD_HEAD + "  A:\n    fields:\n      meta: string\n", 6, "E904", "field name 'meta' is reserved by the forms"),
    (LINK_HEAD + "  A:\n    fields:\n      xy: {type: many, to: B}\n  AXy: {fields: {y: string}}\n", 8, "E903", "table of entity 'AXy' would be named 'a_xy', like the table of many field 'A.xy'"),
    (LINK_HEAD + "  Report:\n    fields: {x: string}\n    search: [x]\nreports:\n  x: {entity: Report}\n", 9, "E903", "'ix_report_x'"),
    (GOOD_HEAD + "  APkey: {fields: {x: string}}\n  A: {fields: {x: string}}\n", 4, "E903", "like a primary key the database creates"),
    # database limits
    (GOOD_HEAD + "  A:\n    fields:\n" + "".join(f"      f{i}: string\n" for i in range(500)), 4, "E801", "has 506 columns"),
    (GOOD_HEAD + "  " + "Ab" * 30 + ":\n    fields:\n      x: string\n", 4, "E802", "PostgreSQL allows 63"),
    (GOOD_HEAD + "  " + "Ab" * 15 + ":\n    fields:\n      " + "x" * 20 + ": {type: string, index: true}\n", 6, "E802", "the index of field"),
    (GOOD_HEAD + "  A:\n    fields:\n      x: {type: integer, default: 3000000000}\n", 6, "E415", "stored as INTEGER"),
    (GOOD_HEAD + "  A:\n    fields:\n      x: {type: decimal, precision: 4, scale: 2, max: 1000}\n", 6, "E415", "at most 2 digits before the point"),
    (GOOD_HEAD + "  A:\n    fields:\n      x: {type: decimal, min: .nan}\n", 6, "E415", "finite number"),
    (GOOD_HEAD + "  A:\n    fields:\n      x: {type: datetime, default: 2026-01-01T10:00:00+08:00}\n", 6, "E415", "without a time zone"),
    (GOOD_HEAD + "  A:\n    fields:\n      x: {type: enum, choices: [a, a]}\n", 6, "E423", "choice 'a' of field 'A.x' is listed twice"),
    (GOOD_HEAD + "  A:\n    fields:\n      x: {type: string, pattern: '(a+)+$', default: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!}\n", 6, "E408", "exponential time"),
    # constructs the build cannot serve
    (LINK_HEAD + "  A:\n    fields: {x: string, b: {type: link, to: B}}\n    order: [b]\n", 7, "E305", "order cannot use 'b' (a link field)"),
    (GOOD_HEAD + "  A:\n    fields: {x: string, u: user}\n    order: [-u]\n", 6, "E305", "order cannot use 'u' (a user field)"),
    (GOOD_HEAD + "  A:\n    fields: {x: string}\n    order: [created_by]\n", 6, "E305", "order cannot use 'created_by' (a user field)"),
    (LINK_HEAD + "  A:\n    fields: {x: string, b: {type: link, to: B}}\n    title: b\n", 7, "E305", "title cannot use 'b' (a link field)"),
    (GOOD_HEAD + "  A:\n    fields: {x: string}\n    title: created_on\n", 6, "E305", "title cannot use 'created_on' (an audit field)"),
    (GOOD_HEAD + "  A:\n    fields: {x: string, y: string}\n    unique_together: [[x, x]]\n", 6, "E307", "names the same field twice"),
    (REPORT_HEAD + "  r: {entity: A, group_by: [k], measures: {k: count}}\n", 6, "E720", "has the name of a group_by field"),
    (REPORT_HEAD + "  r: {entity: A, measures: {'Bad Name': count}}\n", 6, "E720", "measure name 'Bad Name'"),
    (REPORT_HEAD + "  r: {entity: A, date_field: [d]}\n", 6, "E005", "date_field of report 'r' must be non-empty text"),
    (ROLE_HEAD + "  admin: {can: {A: all}}\n", 6, "E602", "role 'admin' is built in"),
    # links to unknown entities anywhere never raise
    (GOOD_HEAD + "  A:\n    fields: {x: string, p: {type: link, to: Nowhere}}\nroles:\n  R:\n    can: {A: [read]}\n    rows: {A: {p.manager: 1}}\n",
     5, "E503", "links to unknown entity 'Nowhere'"),
    (GOOD_HEAD + "  A: {fields: {x: string}}\nreports:\n  r: {entity: Nowhere, group_by: [x], filter: {x: 1}, measures: {s: sum(x)}}\n",
     6, "E704", "names unknown entity 'Nowhere'"),
    # loading
    ("version: 1\nmodule: m\nentities:\n  A: {fields: {x: string}}\n  ? [a, b]\n  : 1\n", 5, "E110", "a key must be plain text"),
    ("version: 1\nmodule: m\nentities:\n  A: {fields: {x: string}}\n  ~: 1\n", 5, "E110", "a key must be plain text"),
    ("version: 1\nmodule: m\nentities:\n  A: {fields: {x: {type: integer, default: !!python/object:os.system x}}}\n", 4, "E106", "YAML value error"),
    ("version: 1\nmodule: m\nentities:\n  A: {fields: {x: {type: date, default: 2026-13-45}}}\n", 4, "E106", "cannot read value"),
    ("version: 1\nmodule: m\nentities:\n  A: {fields: {x: {type: integer, default: " + "9" * 5000 + "}}}\n", 4, "E106", "cannot read value"),
    ("version: 1\nmodule: m\nentities: &e\n  A: {fields: {x: *e}}\n", 4, "E109", "nested more than"),
    ("version: 1\nmodule: m\nentities: " + "[" * 5000 + "]" * 5000 + "\n", 1, "E109", "nested too deeply"),
    ("version: 1\nmodule: m\nentities:\n  A: {fields: {x: string}}\nlabel: " + "{a: " * 60 + "1" + "}" * 60 + "\n", 5, "E109", "nested more than"),
    ("version: 1\nmodule: m\nentities:\n  A: {fields: {x: string}}\nlabel: \"\x07\"\n", 1, "E105", "YAML error"),
]


@pytest.mark.parametrize("yaml_text,line,code,fragment", HARDENING_CASES, ids=[c[3][:40] for c in HARDENING_CASES])
def test_hostile_schemas_get_coded_problems(tmp_path, yaml_text, line, code, fragment):
    test_each_problem_is_reported_with_its_line(tmp_path, yaml_text, line, code, fragment)


def billion_laughs(levels: int = 12) -> str:
    lines = ["version: 1", "module: m", "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    lines += ["entities:", f"  A: {{fields: {{x: string}}, list: *a{levels - 1}}}"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("content,code", [
    (billion_laughs().encode(), "E108"),
    (b"version: 1\nmodule: m\nentities:\n  A: {fields: {x: string}}\nlabel: " + b"x" * 300_000 + b"\n", "E104"),
    (b"version: 1\nmodule: \xff\xfe caf\xe9\n", "E103"),
    (bytes(range(256)) * 4, "E103"),
    (b"\x00\x01\x02 junk \x00", "E105"),
], ids=["alias-bomb", "huge-file", "latin-1", "binary", "nul-bytes"])
def test_unreadable_files_fail_fast_with_a_code(tmp_path, content, code):
    import time

    (tmp_path / "m.yaml").write_bytes(content)
    started = time.process_time()
    spec, problems = load_portal(tmp_path)
    assert time.process_time() - started < 5  # CPU seconds: the alias bomb would need hours
    assert spec is None and [p.code for p in problems] == [code], problems
    assert str(problems[0]).startswith(f"{tmp_path / 'm.yaml'}:")


def test_problem_codes_are_registered_and_documented():
    """Every code the checker can emit (a literal in app/schema/) is in the registry and in docs/schema.md."""
    import re as regex

    from app.schema.codes import AREAS, CODES

    emitted = set()
    for path in (ROOT / "app" / "schema").glob("*.py"):
        if path.name != "codes.py":
            emitted |= set(regex.findall(r'"(E\d{3})"', path.read_text(encoding="utf-8")))
    assert emitted and emitted <= set(CODES), sorted(emitted - set(CODES))
    assert len(CODES) == sum(len(area) for area in AREAS.values())  # no code in two areas
    documented = {code: title for code, title, _ in documented_codes()}
    assert set(documented) == set(CODES)
    assert all(documented[code] == title for code, title in CODES.items())


def documented_codes() -> list[tuple[str, str, str]]:
    """(code, title, example) of each row of the "Problem codes" table in docs/schema.md."""
    docs = (ROOT / "docs" / "schema.md").read_text(encoding="utf-8")
    return re.findall(r"^\| `(E\d{3})` \| (.+?) \| \w+ \| (.+?) \|$", docs, re.M)


# codes whose example is told in words: the file cannot be written on one line (tested above with real files)
EXAMPLES_IN_WORDS = {"E099", "E101", "E102", "E103", "E104", "E107", "E108", "E109", "E801", "E803", "E804"}


def test_every_documented_code_has_an_example():
    from app.schema.codes import CODES

    rows = documented_codes()
    assert {code for code, _, _ in rows} == set(CODES)
    assert all(example.strip() for _, _, example in rows)
    in_words = {code for code, _, example in rows if not example.startswith("`")}
    assert in_words <= EXAMPLES_IN_WORDS, sorted(in_words - EXAMPLES_IN_WORDS)


@pytest.mark.parametrize("code,example", [(c, e.strip("`")) for c, _, e in documented_codes() if e.startswith("`")],
                         ids=[c for c, _, e in documented_codes() if e.startswith("`")])
def test_documented_example_yields_its_code(tmp_path, code, example):
    for name, text in zip("abc", example.split(" + ")):
        if text.startswith("{") and not re.match(r"\{(version|module):", text):
            text = "{version: 1, module: m, " + text[1:]
        (tmp_path / f"{name}.yaml").write_text(text + "\n", encoding="utf-8")
    spec, problems = load_portal(tmp_path)
    if code == "E011":  # only `portal check --i18n` reports missing locales
        assert problems == []
        result = run_cli("check", "--i18n", schema_dir=tmp_path)
        assert [c for _, _, c in coded_lines(result.stderr)] == ["E011"], result.stderr
        return
    assert code in [p.code for p in problems], [str(p) for p in problems]


# -- the one test that needs a real process: `portal check` as an operator runs it ----------------------

CHECK_WRAPPER = """
import json, sys, time
from flask.cli import main
started = time.perf_counter()
sys.argv = ["flask", "--app", "run", "portal", "check"]  # run.py looks for `portal check` in sys.argv
code = 0
try:
    main()
except SystemExit as stop:
    code = stop.code
print(json.dumps({"exit": code, "seconds": time.perf_counter() - started,
                  "imported_fab": "flask_appbuilder" in sys.modules}), file=sys.stderr)
"""


def _files_under(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def operator_check(tmp_path_factory):
    """`flask --app run portal check` in a copy of the portal, SECRET_KEY unset, a database nobody can create."""
    import json
    import shutil
    import time

    copy = tmp_path_factory.mktemp("check_copy")
    for name in ("app", "views", "schemas"):
        shutil.copytree(ROOT / name, copy / name)  # with __pycache__: the copy starts as warm as the original
    for name in ("run.py", "config.py"):
        shutil.copy2(ROOT / name, copy / name)
    before = _files_under(copy)
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "PORTAL_SCHEMA_DIR")}
    env["DATABASE_URL"] = f"sqlite:///{copy / 'nowhere' / 'portal.db'}"  # create_app would make this directory
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", CHECK_WRAPPER], cwd=copy, env=env, capture_output=True, text=True,
                            timeout=120)
    wall = time.perf_counter() - started
    report = json.loads(result.stderr.strip().splitlines()[-1])
    return dict(result=result, report=report, wall=wall, written=set(_files_under(copy).items()) - set(before.items()))


def test_portal_check_writes_nothing_and_is_fast(operator_check):
    """No secret key, no database file or directory, no other file: the check only reads the schemas."""
    result, report = operator_check["result"], operator_check["report"]
    assert report["exit"] in (0, None) and "OK: 5 modules, 16 entities" in result.stdout, result.stderr
    assert operator_check["written"] == set()  # var/secret_key, nowhere/portal.db, ...
    # the target is < 1.5 s for the shipped schemas (docs/performance.md); generous for a busy CI machine
    assert operator_check["wall"] < 5, f"{operator_check['wall']:.2f} s"


MODULE_CHECK = """
import json, runpy, sys
sys.argv = ["app.check"]
code = 0
try:
    runpy.run_module("app.check", run_name="__main__")
except SystemExit as stop:
    code = stop.code
print(json.dumps({"exit": code, "imported_fab": "flask_appbuilder" in sys.modules,
                  "imported_sqlalchemy_engine": "sqlalchemy.engine" in sys.modules}), file=sys.stderr)
"""


def test_the_check_itself_loads_no_flask_appbuilder_and_no_database_layer():
    """`python -m app.check` (what `portal check` runs) imports neither FAB nor SQLAlchemy's engine. The `flask`
    command itself loads every installed CLI plugin, FAB's `fab` group among them, before our code runs."""
    import json

    result = subprocess.run([sys.executable, "-c", MODULE_CHECK], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={k: v for k, v in os.environ.items() if k != "PORTAL_SCHEMA_DIR"})
    report = json.loads(result.stderr.strip().splitlines()[-1])
    assert report == {"exit": 0, "imported_fab": False, "imported_sqlalchemy_engine": False}, result.stderr
    assert "OK: 5 modules, 16 entities" in result.stdout


def test_each_problem_prints_on_one_line(tmp_path):
    """The one test of the rendered format: `file:line: CODE message`, control characters escaped."""
    problems = problems_for(tmp_path, GOOD_HEAD + '  A: {fields: {x: string}, "bad\\nkey\\u0007": 1}\n')
    assert problems == [f"{tmp_path / 'm.yaml'}:4: E302 unknown key 'bad\\nkey\\x07' in entity 'A'"]


def test_a_directory_named_like_a_schema_file_is_a_coded_problem(tmp_path):
    (tmp_path / "m.yaml").mkdir()
    spec, problems = load_portal(tmp_path)
    assert spec is None and coded_of(problems) == {("m.yaml", 1, "E102")}, problems


def test_too_many_files_or_bytes_are_refused_before_reading(tmp_path):
    from app.schema.loader import MAX_FILE_BYTES, MAX_FILES, MAX_TOTAL_BYTES

    many = tmp_path / "many"
    many.mkdir()
    for n in range(MAX_FILES + 1):
        (many / f"m{n:03d}.yaml").write_text("")
    assert [(p.line, p.code) for p in load_portal(many)[1]] == [(0, "E104")]
    big = tmp_path / "big"
    big.mkdir()
    count = MAX_TOTAL_BYTES // (MAX_FILE_BYTES - 1) + 1
    for n in range(count):  # each file is under the per-file limit (and not UTF-8: refused without parsing)
        (big / f"b{n}.yaml").write_bytes(b"\xff" * (MAX_FILE_BYTES - 1))
    (big / "z.yaml").write_text("version: 1\nmodule: z\nentities:\n  Z: {fields: {x: string}}\n")
    problems = load_portal(big)[1]
    assert [p.code for p in problems].count("E103") == count - 1
    assert [(Path(p.file).name, p.code) for p in problems if p.code == "E104"] == [(f"b{count - 1}.yaml", "E104"), ("z.yaml", "E104")]


def test_a_bare_null_key_is_the_null_operator(tmp_path):
    """`{closed_at: {null: true}}` as docs/schema.md writes it: YAML reads a bare `null` key as nothing; the loader
    takes it as the operator's name (a quoted "null" was the only way before)."""
    base = """version: 1
module: m
entities:
  Task:
    fields:
      title: {type: string}
      closed_at: {type: datetime}
views:
  open_tasks:
    entity: Task
    filter: {closed_at: {null: true}}
"""
    assert problems_for(tmp_path, base) == []
    assert problems_for(tmp_path, base.replace("{null: true}", "{~: true}"))  # a real empty key is still refused
