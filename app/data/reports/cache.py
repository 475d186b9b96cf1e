"""Report results kept for a while, shared by viewers with the same scope, dropped when their tables change.

A report is one GROUP BY over whole tables (100-400 ms at 1M rows on PostgreSQL), and report pages, their JSON
and dashboards ask for the same few results again and again.

- Store: Flask-Caching (pinned in requirements.txt: the well-kept Flask cache front over cachelib's backends,
  the same API in-process and on Redis). `RedisCache` when `REDIS_URL` is set, so every gunicorn worker shares
  one copy; otherwise `SimpleCache`, per process and bounded (MAX_ENTRIES).
- Key: report id, parameters, language, the viewer's *scope* and the versions of the tables the report reads.
  The scope is a digest of what the query takes from the viewer: for every entity it reads, whether the viewer may
  read it, the compiled row-scope SQL with its literal values (`$user` already resolved) and the hidden and masked
  fields. Two users whose scopes
  come out the same share an entry; anyone whose scope differs gets a different key, so never another's numbers.
  A report whose own filters use `$user` adds the user id, `$today` the date; `$now` is never cached.
- Freshness: the key holds the versions of the report's tables (app/data/changes.py, moved in every writing
  transaction), so a write to a source entity retires the entry in every process, and writes elsewhere do not.
  `PORTAL_REPORT_CACHE_SECONDS` (default 300; 0 turns the cache off) bounds the rest.

Entries are stored without the ReportSpec and with labels resolved (the key holds the language), as plain data.
On Redis they are pickled (cachelib's format: a result holds dataclasses, Decimals and dates) and signed
(`SignedRedisSerializer`): unpickling runs code, so an entry is unpickled only when its HMAC under the app's
SECRET_KEY matches; whoever can write to Redis cannot make the portal run theirs.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import logging
import pickle

from cachelib.serializers import BaseRedisSerializer
from flask import current_app
from flask_caching import Cache

from app.data.changes import table_versions
from app.i18n import current_locale
from app.schema.filters import mentions
from app.portal import current_portal
from app.runtime.protection import purpose_key

log = logging.getLogger(__name__)
MAX_ENTRIES = 256  # in-process store; Redis is bounded by its own maxmemory policy


def report_entities(report) -> tuple:
    """The entities a report aggregates: its sources' (cross-entity reports) or its own."""
    return tuple(s.entity for s in report.sources) if getattr(report, "sources", None) else (report.entity,)


def report_cache() -> Cache | None:
    """This app's cache (made on first use), or None when PORTAL_REPORT_CACHE_SECONDS is 0."""
    portal = current_portal()
    if portal.report_cache is None:
        ttl = float(current_app.config.get("PORTAL_REPORT_CACHE_SECONDS", 300))
        if ttl <= 0:
            portal.report_cache = False
        else:
            portal.report_cache = Cache()
            portal.report_cache.init_app(current_app, config=_cache_config(current_app, ttl))
    return portal.report_cache or None


def _cache_config(app, ttl: float) -> dict:
    common = {"CACHE_DEFAULT_TIMEOUT": max(1, round(ttl))}
    url = app.config.get("REDIS_URL")
    if not url:
        return {**common, "CACHE_TYPE": "SimpleCache", "CACHE_THRESHOLD": MAX_ENTRIES}
    # one Redis may serve several portals: entries are tied to the database they were computed from
    database = hashlib.sha256(str(app.config["SQLALCHEMY_DATABASE_URI"]).encode()).hexdigest()[:16]
    key = purpose_key(app.config, "portal-report-cache")
    return {**common, "CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": url, "CACHE_KEY_PREFIX": f"portal-report:{database}:",
            "CACHE_SERIALIZER": SignedRedisSerializer(key)}


class SignedRedisSerializer(BaseRedisSerializer):
    """cachelib's Redis format (pickle) with an HMAC-SHA256 of the pickled bytes in front: `#<32-byte tag><pickle>`.
    An entry without a valid tag (written by someone else, altered, or by a portal with another SECRET_KEY) is
    never unpickled: it reads as a miss and the report is computed again."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def dumps(self, value, protocol: int = pickle.HIGHEST_PROTOCOL) -> bytes:
        data = pickle.dumps(value, protocol)
        return b"#" + hmac.digest(self._key, data, "sha256") + data

    def loads(self, value):
        if not value:
            return None
        tag, data = value[1:33], value[33:]
        if value[:1] != b"#" or not hmac.compare_digest(tag, hmac.digest(self._key, data, "sha256")):
            log.warning("report cache: an entry without a valid signature was ignored")
            return None
        return pickle.loads(data)


def _tables(report, portal, models, viewer) -> list:
    """The tables a result is read from: the report's entities, the targets of its link/user groups (their titles
    are the row labels), and what its filters and the viewer's row scopes follow (`project.manager`, many fields)."""
    names = set()
    for entity_name in report_entities(report):
        model = models[entity_name]
        names.add(model.__table__.name)
        fields = {f.name: f for f in portal.entity(entity_name).fields}
        for group in getattr(report, "group_by", ()):
            f = fields.get(group.field)
            if f is not None and f.stores_link:
                names.add(f.kind.target_table(f))
        conditions = [c for scope in viewer.scopes(entity_name) or () for c in scope]
        for source in (report, *(getattr(report, "sources", None) or ())):
            if getattr(source, "entity", entity_name) == entity_name:
                conditions += list(getattr(source, "filter", None) or ())
        for condition in conditions:
            f = fields.get(condition.path[0])
            if f is None or not f.is_relation:
                continue
            if len(condition.path) > 1 or f.kind.multiple:
                names.add(f.kind.target_table(f))
            if f.kind.multiple:
                names.add(getattr(model, f.name).property.secondary.name)  # the table of pairs
    return sorted(names)


def scope_digest(report, portal, models, viewer, dialect) -> str:
    """What the report's query takes from the viewer, per entity: row scope SQL with its values, hidden, masked."""
    parts = []
    for entity_name in report_entities(report):
        clause = viewer.row_clause(entity_name, models)
        if clause is None:
            sql = "*"
        else:
            compiled = clause.compile(dialect=dialect)
            sql = f"{compiled}|{sorted((k, repr(v)) for k, v in compiled.params.items())}"
        parts.append((entity_name, viewer.may_read(entity_name), sql, sorted(viewer.hidden(entity_name)),
                      sorted(viewer.masked(entity_name))))  # may_read: a source someone may not read is refused
    if mentions(report, "user"):  # its filters, its sources' filters
        parts.append(("user", viewer.user_id))
    if mentions(report, "today"):
        parts.append(("today", dt.date.today().isoformat()))
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def cached_run(report, params, viewer, session, run, render=None):
    """`run()`'s result for this report, parameters, language and scope: from the cache while every table it reads
    is unchanged, else run and kept. With `render` (result -> bytes, e.g. the API's JSON body) the rendered bytes,
    kept beside the result: a hit of the JSON API is then one cache read, not a re-encoding of every row."""
    cache = report_cache()
    if cache is None or mentions(report, "now"):
        result = run()
        return result if render is None else render(result)
    key = result_key(report, params, viewer, session)
    if render is not None and (body := _read(cache, key + ":body")) is not None:
        return body
    stored = _read(cache, key)
    if stored is not None:
        result = thawed(report, stored)
    else:
        result = run()
        _write(cache, key, frozen(result))
    if render is None:
        return result
    body = render(result)
    _write(cache, key + ":body", body)
    return body


def result_key(report, params, viewer, session) -> str:
    portal = current_portal()
    tables = _tables(report, portal.spec, portal.models, viewer)
    connection = session.connection()
    versions = table_versions(connection, portal.metadata, tables)  # read before the query: a later write retires it
    scope = scope_digest(report, portal.spec, portal.models, viewer, connection.dialect)
    return hashlib.sha256(repr((report.id, params, current_locale(), scope, tables, versions)).encode()).hexdigest()


def _read(cache, key):
    """The value stored under `key`. An entry holds its own key too (and on Redis the signature covers both): an
    entry copied under another key — another scope's, an older table version's — is a miss."""
    try:
        entry = cache.get(key)
    except Exception:  # noqa: BLE001 - Redis away: reports are still served, only slower
        log.warning("report cache unavailable", exc_info=True)
        return None
    if not isinstance(entry, tuple) or len(entry) != 2 or entry[0] != key:
        return None
    return entry[1]


def _write(cache, key, value) -> None:
    try:
        cache.set(key, (key, value))
    except Exception:  # noqa: BLE001
        log.warning("report cache unavailable", exc_info=True)


def frozen(result) -> dict:
    """The result as plain data: no ReportSpec (the caller has it), labels as text in the current language."""
    state = {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if f.name != "report"}
    state["columns"] = [dataclasses.replace(c, label=str(c.label)) for c in result.columns]
    return state


def thawed(report, state: dict):
    from app.data.reports.query import ReportResult

    return ReportResult(report=report, **state)
