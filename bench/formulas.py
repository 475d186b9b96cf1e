"""What formulas, rules and rollups cost: labour entries imported and created through the API by the shipped
schema (amount = round(days * rate, 2), hours <= days * 12, Project.labour_cost = sum(amount) of approved entries
and budget_left = budget - labour_cost) and, in the same run, by the same schema without them (amount typed in, as
before), against the raw executemany anchor.

Import: ROWS rows of bench/imports.py's file on SQLite (it has an amount column: read by the plain schema,
ignored by the formula one), median of REPEAT interleaved runs (min–max).
API: single-record POST /api/v1/labour_entry/, median of interleaved batches of API_BATCH.
"""
from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path

from sqlalchemy import select

from app.factory import create_app
from app.portal import portal_of
from app.rules.record_rules import ExpressionStep

from .common import interleaved, median, row, spread
from .imports import clear, make_csv, portal_import, raw_import, seed, without_columns
from .reports import ROOT, _app

ROWS = 20_000
REPEAT = 5
API_BATCH = 100


def _plain_app(work: Path, keep_expressions: bool = False):
    """The shipped schemas with labour's business rules taken out: the default from the worker, the worker filter,
    the project rollup and budget_left, and (unless `keep_expressions`) the amount formula and the hours rule."""
    name = "expressions" if keep_expressions else "plain"
    folder = work / f"{name}-schemas"
    folder.mkdir()
    for source in (ROOT / "schemas").glob("*.yaml"):
        text = source.read_text(encoding="utf-8")
        if source.name == "labour.yaml":
            text = text.replace(", default: worker.day_rate", "").replace(" filter: {active: true, projects: $record.project},", "")
            text = re.sub(r"      labour_cost:.*\n(        .*\n)+", "", text)
            text = re.sub(r"      budget_left: .*\n", "", text).replace(", labour_cost, budget_left]", "]")
            if not keep_expressions:
                text = text.replace(', formula: "round(days * rate, 2)"', "")
                text = re.sub(r"\n    rules:\n(      .*\n)+", "\n", text)
                assert "formula" not in text and "rules:" not in text.split("reports:")[0]
            assert "rollup" not in text and "$record" not in text and "worker.day_rate" not in text
        (folder / source.name).write_text(text, encoding="utf-8")
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{work / f'{name}.db'}", "SECRET_KEY": "bench",
                      "WTF_CSRF_ENABLED": False, "PORTAL_SCHEMA_DIR": str(folder)})
    with app.app_context():
        sm = app.appbuilder.sm
        sm.add_user("bench", "Bench", "Admin", "bench@example.com", sm.find_role("Admin"), "bench-pass")
    assert keep_expressions == any(isinstance(s, ExpressionStep) and s.applies(portal_of(app).spec.entity("LabourEntry"))
                                   for s in portal_of(app).rule_steps)
    return app


def run(pg: str | None = None) -> list[str]:
    work = Path(tempfile.mkdtemp(prefix="bench-formulas-"))
    app = _app(f"sqlite:///{work / 'formulas.db'}")
    plain = _plain_app(work)
    expressions = _plain_app(work, keep_expressions=True)
    for each in (app, plain, expressions):
        seed(each)
    data = make_csv(ROWS)
    no_rate = without_columns(data, 5)  # the day rate left to the worker's (default: worker.day_rate)
    seconds = {"raw": [], "with": [], "without": [], "filled": []}

    def timed_import(key, target, data=data):
        def call():
            taken, report = portal_import(target, data)
            assert report.written and report.created == ROWS, report.errors[:5]
            seconds[key].append(taken)
            clear(target)
        return call

    def raw():
        seconds["raw"].append(raw_import(app, data))
        clear(app)

    interleaved({"raw": raw, "with": timed_import("with", app), "without": timed_import("without", plain),
                 "filled": timed_import("filled", app, no_rate)}, REPEAT)
    raw_s = median(seconds["raw"])
    lines = [f"### Formulas and rules on import: {ROWS:,} labour entries on SQLite, median of {REPEAT} interleaved runs (min–max)", "",
             row("import", "seconds", "raw executemany / import"), row("---", "---", "---"),
             row("raw executemany (anchor)", spread(seconds["raw"]), "1.00"),
             row("without formula, rules, filter and rollup", spread(seconds["without"]), f"{raw_s / median(seconds['without']):.2f}"),
             row("with formula + rule + worker filter + project rollup, rate given", spread(seconds["with"]),
                 f"{raw_s / median(seconds['with']):.2f}"),
             row("the same, rate filled from the worker (no rate column)", spread(seconds["filled"]),
                 f"{raw_s / median(seconds['filled']):.2f}")]
    lines += ["", *api_creates(app, plain, expressions)]
    return lines


def entry_poster(app, extra: dict):
    """post() -> one single-record `POST /api/v1/labour_entry/` (a new date each time: unique_together), 201 asserted."""
    models = portal_of(app).models
    with app.app_context():
        session = app.appbuilder.session
        worker = session.scalar(select(models["Worker"].id).limit(1))
        project = session.scalar(select(models["Project"].id).limit(1))
        session.rollback()
    client = app.test_client()
    token = client.post("/api/v1/security/login", json={"username": "bench", "password": "bench-pass", "provider": "db"})
    headers = {"Authorization": f"Bearer {token.json['access_token']}"}
    counter = iter(range(10**9))

    def post():
        n = next(counter)
        response = client.post("/api/v1/labour_entry/", headers=headers, json={
            "work_date": f"20{30 + n // 300:02d}-{n // 28 % 12 + 1:02d}-{n % 28 + 1:02d}", "worker": worker,
            "project": project, "hours": "8", "days": "1", "rate": "400", **extra})
        assert response.status_code == 201, response.json
    return post


def api_creates(app, plain, expressions) -> list[str]:
    seconds = {"with": [], "without": [], "expressions": []}

    def batch(key, target, extra):
        post = entry_poster(target, extra)

        def call():
            start = time.perf_counter()
            for _ in range(API_BATCH):
                post()
            seconds[key].append((time.perf_counter() - start) / API_BATCH)
        return call

    interleaved({"with": batch("with", app, {}), "without": batch("without", plain, {"amount": "400"}),
                 "expressions": batch("expressions", expressions, {})}, REPEAT)
    base = median(seconds["without"])
    return [f"### Single-record API create of a labour entry, median of {REPEAT} interleaved batches of {API_BATCH} (min–max ms)", "",
            row("rules", "ms per create", "with / without"), row("---", "---", "---"),
            row("without formula, rules, filter and rollup", spread(seconds["without"], 1000), "1.00"),
            row("with amount formula + hours rule (issue 12: <= 1.10)", spread(seconds["expressions"], 1000),
                f"{median(seconds['expressions']) / base:.2f}"),
            row("with formula + rule + worker filter + rate default + project rollup", spread(seconds["with"], 1000),
                f"{median(seconds['with']) / base:.2f}")]


if __name__ == "__main__":
    print("\n".join(run()))
