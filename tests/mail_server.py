"""A real SMTP server for the delivery tests and bench (aiosmtpd), in a thread of this process or its own process.

`refuse` makes it answer every message with 451 (a mail server that is down for a while); `delay` makes each
message take that long (a mid-delivery kill lands in the middle). Messages are counted by Message-ID.
Run as a process: `python tests/mail_server.py PORT` prints {"received", "distinct"} on SIGTERM.
"""
from __future__ import annotations

import asyncio
import email
import email.policy
import json
import signal
import sys
import threading
from collections import Counter

from aiosmtpd.controller import Controller


class MailHandler:
    def __init__(self, delay: float = 0.0, parse: bool = True) -> None:
        self.lock = threading.Lock()
        self.messages: list[email.message.EmailMessage] = []
        self.ids: Counter = Counter()
        self.refuse = False
        self.refused = 0
        self.delay = delay
        self.parse = parse

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.refuse:
            with self.lock:
                self.refused += 1
            return "451 4.3.0 Mail server busy, try again later"
        if self.parse:
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            with self.lock:
                self.messages.append(message)
                self.ids[message["Message-ID"]] += 1
        else:  # the bench: count by the header only, no full parse
            head = envelope.content.split(b"\r\n\r\n", 1)[0]
            message_id = next((line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                               if line.lower().startswith(b"message-id:")), b"")
            with self.lock:
                self.ids[message_id] += 1
        return "250 OK"


class MailServer:
    def __init__(self, port: int, delay: float = 0.0, parse: bool = True) -> None:
        self.port = port
        self.handler = MailHandler(delay, parse)
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=port)

    def start(self) -> "MailServer":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    @property
    def messages(self):
        with self.handler.lock:
            return list(self.handler.messages)

    @property
    def ids(self) -> Counter:
        with self.handler.lock:
            return Counter(self.handler.ids)

    def config(self) -> dict:
        return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": self.port, "MAIL_DEFAULT_SENDER": "portal@example.com"}


if __name__ == "__main__":
    server = MailServer(int(sys.argv[1]), parse=False).start()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    print("ready", flush=True)
    stopped.wait()
    ids = server.ids
    server.stop()
    print(json.dumps({"received": sum(ids.values()), "distinct": len(ids)}), flush=True)
