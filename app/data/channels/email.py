"""E-mail over SMTP, configured with Flask-Mail's setting names (MAIL_SERVER, MAIL_PORT, MAIL_USERNAME,
MAIL_PASSWORD, MAIL_USE_TLS, MAIL_USE_SSL, MAIL_DEFAULT_SENDER; config.py reads them from the environment).

One connection serves a whole batch; a message the server refuses (4xx, 5xx, refused recipient) or a broken
connection fails that message only (retry path) and the next message opens a new connection.
"""
from __future__ import annotations

import html
import smtplib
from contextlib import contextmanager
from email.message import EmailMessage
from email.utils import formatdate

from app.data.channels import DeliveryFailed, NotReady, delivery_timeout

NOT_CONFIGURED = "mail not configured"


def mail_configured(config) -> bool:
    return bool(config.get("MAIL_SERVER"))


def _one_line(value) -> str:
    """Header values: no CR/LF (header injection) and no NUL."""
    return " ".join(str(value or "").replace("\x00", "").splitlines()).strip()


def text_as_html(text: str) -> str:
    """The plain text body as HTML, escaped, when the caller gave no HTML part."""
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    return "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs) or "<p></p>"


def build_email(payload: dict, sender: str, delivery_id: str) -> EmailMessage:
    """multipart/alternative: the text and the HTML (given, or the escaped text). Message-ID from the delivery id,
    so a repeated delivery is recognisable."""
    to = _one_line(payload.get("to"))
    if not to or "@" not in to:
        raise DeliveryFailed(f"no valid recipient address: {to!r}")
    message = EmailMessage()
    message["From"] = _one_line(sender)
    message["To"] = to
    message["Subject"] = _one_line(payload.get("subject"))
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = f"<{delivery_id}@portal.outbox>"
    text = str(payload.get("text") or "")
    message.set_content(text)
    message.add_alternative(payload.get("html") or text_as_html(text), subtype="html")
    return message


class SmtpSession:
    """One SMTP connection, opened on the first message and again after a failure broke it."""

    def __init__(self, config) -> None:
        self.config = config
        self.connection: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        timeout = delivery_timeout(c)
        host, port = c["MAIL_SERVER"], int(c.get("MAIL_PORT") or (465 if c.get("MAIL_USE_SSL") else 25))
        if c.get("MAIL_USE_SSL"):
            connection = smtplib.SMTP_SSL(host, port, timeout=timeout)
        else:
            connection = smtplib.SMTP(host, port, timeout=timeout)
            if c.get("MAIL_USE_TLS"):
                connection.starttls()
        if c.get("MAIL_USERNAME"):
            connection.login(c["MAIL_USERNAME"], c.get("MAIL_PASSWORD") or "")
        return connection

    def send(self, message) -> None:
        sender = self.config.get("MAIL_DEFAULT_SENDER") or "portal@localhost"
        email = build_email(message.payload, sender, message.delivery_id)
        try:
            if self.connection is None:
                self.connection = self._connect()
            refused = self.connection.send_message(email)
        except smtplib.SMTPRecipientsRefused as error:
            self._reset()
            raise DeliveryFailed(f"recipient refused: {_smtp_reason(error.recipients)}") from None
        except smtplib.SMTPResponseException as error:
            self._reset()
            raise DeliveryFailed(f"SMTP {error.smtp_code}: {_decode(error.smtp_error)}") from None
        except (smtplib.SMTPException, OSError) as error:
            self.close()
            raise DeliveryFailed(f"SMTP: {error.__class__.__name__}: {error}") from None
        if refused:
            raise DeliveryFailed(f"recipient refused: {_smtp_reason(refused)}")

    def _reset(self) -> None:
        """After a refusal the connection is still good; RSET clears the half-done transaction."""
        try:
            self.connection.rset()
        except (smtplib.SMTPException, OSError, AttributeError):
            self.close()

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.quit()
            except (smtplib.SMTPException, OSError):
                self.connection.close()
            self.connection = None


def _decode(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _smtp_reason(recipients: dict) -> str:
    return "; ".join(f"{to}: {code} {_decode(text)}" for to, (code, text) in recipients.items())


@contextmanager
def smtp_sender(config):
    if not mail_configured(config):
        def not_ready(message):
            raise NotReady(NOT_CONFIGURED)
        yield not_ready
        return
    session = SmtpSession(config)
    try:
        yield session.send
    finally:
        session.close()
