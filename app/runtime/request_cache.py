"""Remember a computed value for the rest of the current request (nothing is kept across requests)."""
from __future__ import annotations

from flask import has_request_context, request


def request_cached(key, make):
    """`make()` once per request and key; outside a request it is simply called."""
    if not has_request_context():
        return make()
    cache = request.environ.setdefault("portal.cache", {})
    if key not in cache:
        cache[key] = make()
    return cache[key]
