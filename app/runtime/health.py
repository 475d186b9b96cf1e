"""/healthz (the process answers; no database) and /readyz (database reachable, schema in sync).

/readyz is what a load balancer asks before sending traffic: it connects, then checks that every
table and column of the loaded spec exists. The answer is kept a few seconds
(PORTAL_READYZ_CACHE_SECONDS) so frequent probes cost nothing.
"""
from __future__ import annotations

import logging
import time

from flask import Blueprint, current_app, jsonify
from sqlalchemy import inspect, text
from sqlalchemy.exc import SQLAlchemyError

from app.portal import portal_of

log = logging.getLogger(__name__)
health = Blueprint("health", __name__)
CACHE_KEY = "portal_readiness"


@health.get("/healthz")
def healthz():
    return jsonify(status="ok")


@health.get("/readyz")
def readyz():
    cached = current_app.extensions.get(CACHE_KEY)
    if cached is None or cached[0] < time.monotonic():
        body, status = check_readiness(current_app.extensions["sqlalchemy"].engine, spec_tables(current_app))
        cached = (time.monotonic() + current_app.config.get("PORTAL_READYZ_CACHE_SECONDS", 5), body, status)
        current_app.extensions[CACHE_KEY] = cached
    return jsonify(cached[1]), cached[2]


def spec_tables(app) -> list:
    """The tables behind the loaded schemas: one per entity plus the link tables of many-fields."""
    tables = {}
    for model in portal_of(app).models.values():
        tables[model.__table__.name] = model.__table__
        for relationship in inspect(model).relationships:
            if relationship.secondary is not None:
                tables[relationship.secondary.name] = relationship.secondary
    return list(tables.values())


def check_readiness(engine, tables) -> tuple[dict, int]:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            present = {name: {c["name"] for c in columns}
                       for (_, name), columns in inspect(conn).get_multi_columns().items()}
    except SQLAlchemyError:
        log.warning("readiness: database unreachable", exc_info=True)
        return {"status": "unavailable", "database": "unreachable"}, 503
    missing = [f"{t.name}.{c.name}" if t.name in present else t.name
               for t in tables for c in t.columns if t.name not in present or c.name not in present[t.name]]
    missing = list(dict.fromkeys(missing))
    if missing:
        # names go to the log, not to whoever asks
        log.warning("readiness: schema out of sync, missing %s", ", ".join(missing))
        return {"status": "unavailable", "database": "ok", "schema": "out of sync", "missing": len(missing)}, 503
    return {"status": "ok", "database": "ok", "schema": "ok", "tables": len(tables)}, 200
