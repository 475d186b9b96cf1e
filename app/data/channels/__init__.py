"""Delivery channels of the outbox: `email` (SMTP, email.py) and `webhook:<name>` (HTTP POST, webhooks.py).

A channel is opened once per run of messages (one SMTP connection for a batch) and sends one message at a time;
`DeliveryFailed` means "count an attempt and retry later", `NotReady` means "this worker cannot send it now"
(e-mail not configured): the message stays pending without an attempt counted.
"""
from __future__ import annotations

from contextlib import contextmanager


class DeliveryFailed(Exception):
    """The message was not delivered (refused, unreachable, misconfigured): retry with back-off, then dead."""


class NotReady(Exception):
    """The channel cannot run in this process yet; the message waits, no attempt counted."""


def delivery_timeout(config) -> float:
    """Seconds one network wait of a channel may take (PORTAL_DELIVERY_TIMEOUT_SECONDS, default 20)."""
    return float(config.get("PORTAL_DELIVERY_TIMEOUT_SECONDS", 20))


def channel_kind(channel: str) -> str:
    return channel.split(":", 1)[0]


@contextmanager
def open_channel(app, channel: str):
    """A `send(message)` function for messages of `channel`, valid inside the block."""
    kind = channel_kind(channel)
    if kind == "email":
        from app.data.channels.email import smtp_sender
        with smtp_sender(app.config) as send:
            yield send
    elif kind == "webhook":
        from app.data.channels.webhooks import webhook_sender
        with webhook_sender(app, channel.split(":", 1)[1] if ":" in channel else "") as send:
            yield send
    else:
        def refuse(message):
            raise DeliveryFailed(f"unknown channel {channel!r}")
        yield refuse
