"""The load benchmark's anchor: a minimal hand-written Flask page over the same database.

One page of 20 labour entries (with worker and project names) read by raw SQL and rendered as an
escaped HTML table: about the least a list page can do. Served by the same gunicorn command as the
portal (`gunicorn --preload -w 2 bench.load_anchor:app`) and hit by the same locust load, so the
portal's throughput can be given as a ratio of it. The engine is created on the first request, in
the worker, so no connection crosses gunicorn's fork.
"""
from __future__ import annotations

import os
import random

from flask import Flask
from markupsafe import escape
from sqlalchemy import create_engine, text

PAGE_SIZE = 20
PAGES = 50  # a random one of the first 50 pages, so not every request reads the same rows
QUERY = text("""
    SELECT e.id, e.work_date, w.name, p.name, e.hours, e.days, e.amount, e.approved
    FROM labour_entry e JOIN worker w ON w.id = e.worker_id JOIN project p ON p.id = e.project_id
    ORDER BY e.work_date DESC, e.id DESC LIMIT :limit OFFSET :offset""")

app = Flask(__name__)
_engine = None


def engine():
    global _engine
    if _engine is None:
        _engine = create_engine(os.environ["DATABASE_URL"], pool_pre_ping=False)
    return _engine


@app.get("/")
def ok():
    return "ok"


@app.get("/entries")
def entries():
    offset = random.randrange(PAGES) * PAGE_SIZE
    with engine().connect() as connection:
        rows = connection.execute(QUERY, {"limit": PAGE_SIZE, "offset": offset}).all()
    body = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return (f"<!doctype html><title>Labour entries</title><table><tr><th>id</th><th>date</th><th>worker</th>"
            f"<th>project</th><th>hours</th><th>days</th><th>amount</th><th>approved</th></tr>{body}</table>")
