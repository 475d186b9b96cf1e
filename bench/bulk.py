"""Bulk-approving 10,000 labour entries through `POST /api/v1/labour_entry/bulk` vs one hand-written
`UPDATE … WHERE id IN (…)` plus its history INSERT, on the same rows and database, in the same run (issue 13).

Both start from the same 10,000 submitted entries (of TABLE_ROWS in the table: 2,000 workers with 200 different day
rates, whole and half days, so the rows' formulas and rules read 400 different sets of values) and leave them
approved:

- anchor: `UPDATE labour_entry SET state, approved, approved_by_id, approved_on, changed_on, changed_by_id,
  row_version + 1 WHERE id IN (<10,000 ids>)` and one executemany INSERT of 10,000 portal_history rows with the same
  changes JSON, committed — what a hand-written job would do, with no checks at all;
- bulk: the API call as a Finance-like user would make it (JWT, Flask test client, no network): every row checked
  (scope, role, state, record rules: formulas and `rules:`), the set-based UPDATEs, history and the
  Project.labour_cost rollup refreshed, committed.

The rows are put back to `submitted` (and the history emptied) before each timed run, untimed. Median of REPEAT
interleaved runs (min–max). Goal: bulk / anchor <= 2.
"""
from __future__ import annotations

import datetime as dt
import json
import tempfile
from decimal import Decimal
import time
from pathlib import Path

from sqlalchemy import text

from app.portal import portal_of

from .common import median, pg_schema, release, row, spread
from .reports import _app

REPEAT = 7
APPROVED = 10_000
TABLE_ROWS = 50_000
PROJECTS, WORKERS = 50, 2000


def rate(worker: int) -> int:
    return 300 + worker % 200  # 200 different day rates


def days(n: int) -> Decimal:
    return Decimal("0.5") if n % 3 == 0 else Decimal(1)  # whole and half days


def fill(app) -> list[int]:
    """Projects, workers and TABLE_ROWS entries (the first APPROVED of them to approve); returns those ids."""
    models = portal_of(app).models
    now = dt.datetime.now().replace(microsecond=0)
    with app.app_context():
        engine = app.appbuilder.session.get_bind()
        with engine.begin() as conn:
            audit = {"created_on": now, "changed_on": now}
            conn.execute(models["Project"].__table__.insert(), [
                {"code": f"P{i:04d}", "name": f"项目{i}", "status": "active", **audit} for i in range(1, PROJECTS + 1)])
            conn.execute(models["Worker"].__table__.insert(), [
                {"name": f"工人{i}", "trade": "general", "day_rate": rate(i), "active": True, **audit}
                for i in range(1, WORKERS + 1)])
            day0 = dt.date(2024, 1, 1)
            conn.execute(models["LabourEntry"].__table__.insert(), [
                {"work_date": day0 + dt.timedelta(days=n // WORKERS), "worker_id": n % WORKERS + 1,
                 "project_id": n % PROJECTS + 1, "hours": 8 * days(n), "days": days(n), "rate": rate(n % WORKERS + 1),
                 "amount": days(n) * rate(n % WORKERS + 1),
                 "state": "submitted" if n < APPROVED else "draft", "approved": False, **audit}
                for n in range(TABLE_ROWS)])
            ids = list(conn.scalars(text("SELECT id FROM labour_entry WHERE state = 'submitted' ORDER BY id")))
            conn.exec_driver_sql("ANALYZE")
    assert len(ids) == APPROVED
    return ids


def reset(engine, ids) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE labour_entry SET state = 'submitted', approved = :no, approved_by_id = NULL, "
                          "approved_on = NULL WHERE state = 'approved'"), {"no": False})
        conn.execute(text("DELETE FROM portal_history"))
        conn.execute(text("UPDATE project SET labour_cost = 0"))


def anchor_statements(engine, ids, user_id: int) -> None:
    now = dt.datetime.now().replace(microsecond=0)
    id_list = ", ".join(str(i) for i in ids)  # the ids as literals: the hand-written job's one statement
    changes = json.dumps({"state": ["submitted", "approved"], "approved": [False, True],
                          "approved_by": [None, user_id], "approved_on": [None, now.isoformat()]})
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE labour_entry SET state = 'approved', approved = :yes, approved_by_id = :user, "
                          f"approved_on = :now, changed_on = :now, changed_by_id = :user, "
                          f"row_version = row_version + 1 WHERE id IN ({id_list})"),
                     {"yes": True, "user": user_id, "now": now})
        conn.execute(text("INSERT INTO portal_history (entity, record_id, at, user_id, username, path, action, "
                          "transition, changes) VALUES ('LabourEntry', :id, :now, :user, 'bench', 'bulk', "
                          "'transition', 'approve', :changes)"),
                     [{"id": i, "now": now, "user": user_id, "changes": changes} for i in ids])


def measure(app, label: str) -> list[str]:
    ids = fill(app)
    with app.app_context():
        engine = app.appbuilder.session.get_bind()
        user_id = app.appbuilder.sm.find_user(username="bench").id
    client = app.test_client()
    token = client.post("/api/v1/security/login", json={"username": "bench", "password": "bench-pass", "provider": "db"})
    headers = {"Authorization": f"Bearer {token.json['access_token']}"}
    body = {"action": "transition", "transition": "approve", "ids": ids}

    def bulk():
        response = client.post("/api/v1/labour_entry/bulk", json=body, headers=headers)
        assert response.status_code == 200 and len(response.json["done"]) == APPROVED, response.json.get("message")

    def anchor():
        anchor_statements(engine, ids, user_id)

    seconds = {"anchor": [], "bulk": []}
    for run in range(REPEAT + 1):  # the first round warms both up and is not counted
        for name, fn in (("anchor", anchor), ("bulk", bulk)):
            reset(engine, ids)
            start = time.perf_counter()
            fn()
            if run:
                seconds[name].append(time.perf_counter() - start)
    with engine.connect() as conn:  # the bulk run left what it should: approved rows, their history, exact rollups
        assert conn.scalar(text("SELECT count(*) FROM labour_entry WHERE state = 'approved' AND approved")) == APPROVED
        assert conn.scalar(text("SELECT count(*) FROM portal_history WHERE path = 'bulk'")) == APPROVED
        wrong = conn.scalar(text("SELECT count(*) FROM project WHERE labour_cost <> (SELECT coalesce(SUM(amount), 0) "
                                 "FROM labour_entry WHERE project_id = project.id AND approved)"))
        assert wrong == 0
    ratio = median(seconds["bulk"]) / median(seconds["anchor"])
    return [f"### Bulk-approving {APPROVED:,} of {TABLE_ROWS:,} labour entries ({label}), median of {REPEAT} "
            "interleaved runs (min–max seconds)", "",
            row("what", "seconds", "ratio"), row("---", "---", "---"),
            row("hand-written UPDATE … WHERE id IN (…) + history INSERT (anchor)", spread(seconds["anchor"]), "1.00"),
            row("`POST /api/v1/labour_entry/bulk` (checks, one UPDATE per set of new values, history, rollup)",
                spread(seconds["bulk"]), f"{ratio:.2f}")]


def run(pg: str | None = None) -> list[str]:
    work = Path(tempfile.mkdtemp(prefix="bench-bulk-"))
    lines = measure(_app(f"sqlite:///{work / 'bulk.db'}"), "SQLite")
    if pg:
        with pg_schema(pg) as url:
            app = _app(url)
            lines += ["", *measure(app, "PostgreSQL")]
            release(app)
    return lines


if __name__ == "__main__":
    print("\n".join(run()))
