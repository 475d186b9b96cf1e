"""Report results kept for a while and dropped as soon as the data may have changed.

A report is one GROUP BY over a whole table (100-400 ms at 1M rows on PostgreSQL), and report pages,
their JSON and dashboards ask for the same few results again and again. A result is kept per report,
parameters, language and viewer (admins share; anyone else gets their own, since row scopes and `$user`
filters depend on the user), and is served only while the database's *data generation* is unchanged:

- PostgreSQL: the WAL insert position (`pg_current_wal_insert_lsn()`, one cheap query). Every committed
  change anywhere moves it, so a result is never stale; the price is that any write also retires results
  of unrelated reports. (Per-table statistics would be more selective but are published up to 10 s late.)
- SQLite: the modification time of the database file and its WAL.
- Anything else: no generation; results are never reused.

A time-to-live (`PORTAL_REPORT_CACHE_SECONDS`, default 300; 0 turns the cache off) bounds the rest. The
store is per process (a small LRU): workers do not share results, only the rule for when they are stale.
"""
from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict

from flask import current_app
from sqlalchemy import text

from app.i18n import current_locale
from app.portal import current_portal

MAX_ENTRIES = 256


class ReportCache:
    def __init__(self, ttl: float, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl, self.max_entries = ttl, max_entries
        self._entries: OrderedDict = OrderedDict()  # key -> (stored at, generation, result)
        self._lock = threading.Lock()  # the development server is threaded; gunicorn's sync workers are not

    def get_or_run(self, key, generation, run):
        if self.ttl <= 0 or generation is None:
            return run()
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry and entry[1] == generation and now - entry[0] < self.ttl:
                self._entries.move_to_end(key)
                return entry[2]
        result = run()
        with self._lock:
            self._entries[key] = (now, generation, result)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return result


def report_cache() -> ReportCache:
    portal = current_portal()
    if portal.report_cache is None:
        portal.report_cache = ReportCache(float(current_app.config.get("PORTAL_REPORT_CACHE_SECONDS", 300)))
    return portal.report_cache


def cache_key(report, params, viewer) -> tuple:
    who = ("admin",) if viewer.is_admin else (tuple(sorted(r.name for r in viewer.roles)), viewer.user_id)
    return report.id, params, current_locale(), who


def data_generation(session):
    """Something that changes whenever a write is committed to the database (None: cannot tell)."""
    engine = session.get_bind()
    if engine.dialect.name == "postgresql":
        return session.execute(text("SELECT pg_current_wal_insert_lsn()")).scalar()
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        stamps = []
        for path in (engine.url.database, engine.url.database + "-wal"):
            try:
                stamps.append(os.stat(path).st_mtime_ns)
            except FileNotFoundError:
                stamps.append(None)
        return tuple(stamps)
    return None
