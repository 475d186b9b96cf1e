"""The `webhooks:` key of a module: named HTTP endpoints notifications can be sent to (`channels: [webhook:erp]`).

```yaml
webhooks:
  erp: {url: $ERP_WEBHOOK_URL, secret: $ERP_WEBHOOK_SECRET}   # $NAME: read from the environment when sending
```
Checked here (E540–E549); the values of `$NAME`s are read at delivery time (app/data/channels/webhooks.py), so a
secret never sits in YAML and a changed variable needs no restart of the schema check. Names are unique across
modules. No Flask here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from app.schema.loader import YMap
from app.schema.values import Check, kind, short

WEBHOOK_KEYS = ("url", "secret")
WEBHOOK_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
ENV_REFERENCE = re.compile(r"^\$([A-Z_][A-Z0-9_]{0,99})$")


@dataclass(frozen=True)
class WebhookSpec:
    name: str
    url: str            # an http(s) URL, or "$NAME" (read from the environment when sending)
    secret: str         # the HMAC key, or "$NAME"
    file: str = ""
    line: int = 0


def env_name(value: str) -> str | None:
    """`$ERP_URL` -> "ERP_URL"; None for a literal value."""
    match = ENV_REFERENCE.match(value)
    return match.group(1) if match else None


def is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def check_webhooks(run: Check, file: str, raw, line: int) -> tuple[WebhookSpec, ...]:
    """One module's `webhooks:` mapping."""
    if run.mapping(raw, file, line, "webhooks") is None:
        return ()
    hooks = []
    for name, value in raw.items():
        hook = _check_webhook(run, file, name, value, raw.line_of(name))
        if hook is not None:
            hooks.append(hook)
    return tuple(hooks)


def _check_webhook(run: Check, file: str, name, raw, line: int) -> WebhookSpec | None:
    ok = True
    if not isinstance(name, str) or not WEBHOOK_NAME.match(name):
        run.error(file, line, "E540", f"webhook name {short(repr(name))} must be lowercase letters, digits and _ "
                                      "(starting with a letter)")
        ok = False
    if not isinstance(raw, YMap):
        run.error(file, line, "E541", f"webhook '{short(name)}' must be a mapping like {{url: $ERP_WEBHOOK_URL, "
                                      f"secret: $ERP_WEBHOOK_SECRET}}, got {kind(raw)}")
        return None
    run.keys(raw, WEBHOOK_KEYS, file, f"webhook '{short(name)}'", "E542")
    url, secret = raw.get("url"), raw.get("secret")
    if url is None:
        run.error(file, line, "E543", f"webhook '{short(name)}' needs a url (an http(s) URL or $NAME)")
        ok = False
    elif not isinstance(url, str) or not (env_name(url) or is_http_url(url)):
        run.error(file, raw.line_of("url"), "E544", f"webhook '{short(name)}' url must be an http:// or https:// "
                                                    f"URL or $NAME of an environment variable, got {short(url)}")
        ok = False
    if secret is None:
        run.error(file, line, "E545", f"webhook '{short(name)}' needs a secret (text, or $NAME of an environment "
                                      "variable) to sign its requests")
        ok = False
    elif not isinstance(secret, str) or not secret.strip() or (secret.startswith("$") and not env_name(secret)):
        run.error(file, raw.line_of("secret"), "E546", f"webhook '{short(name)}' secret must be non-empty text or "
                                                       f"$NAME (uppercase letters, digits, _), got {kind(secret)}")
        ok = False
    return WebhookSpec(name, url, secret, file, line) if ok else None


def check_webhook_names(run: Check, modules) -> None:
    """A webhook name means one endpoint in the whole portal."""
    seen: dict[str, str] = {}
    for module in modules:
        for hook in module.webhooks:
            if hook.name in seen:
                run.error(hook.file, hook.line, "E547", f"webhook '{hook.name}' is already defined in {seen[hook.name]}")
            else:
                seen[hook.name] = hook.file
