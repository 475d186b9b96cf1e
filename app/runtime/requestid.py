"""A request id per request: taken from a sane incoming X-Request-ID or made up, sent back, and logged.

Gunicorn's access log shows it through the response header (`%({x-request-id}o)s` in
gunicorn.conf.py); the portal's own log lines through `RequestIdFilter` (`%(request_id)s`).
"""
from __future__ import annotations

import logging
import re
import uuid

from flask import has_request_context, request

HEADER = "X-Request-ID"
SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")  # nothing that could forge a log line or a header
LOG_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"
ENVIRON_KEY = "portal.request_id"


def current_request_id() -> str:
    environ = request.environ
    if ENVIRON_KEY not in environ:
        offered = request.headers.get(HEADER, "")
        environ[ENVIRON_KEY] = offered if SAFE_ID.fullmatch(offered) else uuid.uuid4().hex
    return environ[ENVIRON_KEY]


def send_request_id(response):
    response.headers[HEADER] = current_request_id()
    return response


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record ("-" outside a request) so formats can show it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id() if has_request_context() else "-"
        return True


REQUEST_ID_FILTER = RequestIdFilter()


def install_request_ids(app) -> None:
    app.after_request(send_request_id)
    root = logging.getLogger()
    if not root.handlers:  # nobody configured logging (gunicorn only sets up its own loggers)
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
        root.setLevel(app.config.get("PORTAL_LOG_LEVEL", "INFO"))
    for handler in root.handlers:
        if REQUEST_ID_FILTER not in handler.filters:
            handler.addFilter(REQUEST_ID_FILTER)
