"""Webhooks: a JSON POST to the URL of a `webhooks:` entry, signed with its secret.

Body: {"delivery_id", "event", "data"}. Headers: `X-Portal-Signature: sha256=<hex HMAC-SHA256 of the body>`,
`X-Portal-Delivery: <delivery id>` (the same on every retry of one message: a receiver drops repeats by it),
`X-Portal-Event`. Any 2xx is delivered; anything else (other status, redirect, timeout, refused connection, a `$NAME`
not set in the environment) is a failed attempt. Standard library only (urllib): one request per message.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import urllib.error
import urllib.request
from contextlib import contextmanager

from app.data.channels import DeliveryFailed, delivery_timeout
from app.schema.webhooks import env_name, is_http_url

def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def resolve(value: str, what: str) -> str:
    """A literal, or the environment variable a `$NAME` names (read now: a changed variable needs no restart)."""
    name = env_name(value)
    if name is None:
        return value
    resolved = os.environ.get(name, "")
    if not resolved.strip():
        raise DeliveryFailed(f"environment variable {name} ({what}) is not set")
    return resolved


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a 3xx is an answer (not delivered), never a second request elsewhere


_OPENER = urllib.request.build_opener(_NoRedirects)


def post(url: str, secret: str, delivery_id: str, event: str, data, timeout: float) -> int:
    body = json.dumps({"delivery_id": delivery_id, "event": event, "data": data}, ensure_ascii=False,
                      separators=(",", ":"), default=str).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "portal-webhooks/1",
        "X-Portal-Signature": signature(secret, body), "X-Portal-Delivery": delivery_id,
        "X-Portal-Event": " ".join(str(event).splitlines())})
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise DeliveryFailed(f"webhook POST failed: {getattr(error, 'reason', error)}") from None


@contextmanager
def webhook_sender(app, name: str):
    from app.portal import portal_of

    hook = next((w for w in portal_of(app).spec.webhooks if w.name == name), None)

    def send(message) -> None:
        if hook is None:
            raise DeliveryFailed(f"no webhook named {name!r} in the schemas")
        url, secret = resolve(hook.url, "url"), resolve(hook.secret, "secret")
        if not is_http_url(url):
            raise DeliveryFailed(f"webhook {name} url is not an http(s) URL")
        status = post(url, secret, message.delivery_id, message.payload.get("event", ""), message.payload.get("data"),
                      delivery_timeout(app.config))
        if not 200 <= status < 300:
            raise DeliveryFailed(f"webhook {name} answered HTTP {status}")

    yield send
