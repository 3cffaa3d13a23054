"""Sending a built message over SMTP, and telling temporary from permanent failures.

:class:`SmtplibSender` takes plain settings (tests, benchmarks, the CLI); the Airflow
adapter (:mod:`hotcrm.airflow.email`) sends through the SMTP provider's hook instead.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Protocol


class Sender(Protocol):
    """Something that hands a message to a mail server."""

    def send(self, message: EmailMessage) -> None:
        """Send ``message``; raise an ``smtplib``/``OSError`` exception when it was not accepted."""

    def close(self) -> None:
        """Release the connection."""


@dataclass
class SmtpFailure:
    """A classified SMTP failure: the code (if the server gave one), whether it is permanent."""

    code: int | None
    permanent: bool
    message: str


def classify(exc: BaseException) -> SmtpFailure:
    """5xx replies are permanent; 4xx replies, disconnects, timeouts and socket errors are temporary."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [(code, msg) for code, msg in exc.recipients.values()]
        code, msg = max(codes) if codes else (None, b"")
        text = msg.decode(errors="replace") if isinstance(msg, bytes) else str(msg)
        return SmtpFailure(code, bool(code and code >= 500), f"{code} {text}".strip())
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return SmtpFailure(exc.smtp_code, 500 <= exc.smtp_code < 600, f"{exc.smtp_code} {text}")
    return SmtpFailure(None, False, f"{type(exc).__name__}: {exc}")


@dataclass
class SmtplibSender:
    """SMTP with the standard library: plain, STARTTLS or implicit TLS (SSL), optional login."""

    host: str
    port: int
    use_ssl: bool = False
    starttls: bool = False
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    ssl_context: ssl.SSLContext | None = None
    _client: smtplib.SMTP | None = field(default=None, init=False, repr=False)

    def _connect(self) -> smtplib.SMTP:
        context = self.ssl_context or ssl.create_default_context()
        if self.use_ssl:
            client: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            if self.starttls:
                client.starttls(context=context)
                client.ehlo()
        if self.user and self.password:
            client.login(self.user, self.password)
        return client

    def send(self, message: EmailMessage) -> None:
        """Send over the open connection (opened on first use, re-opened after a failure)."""
        if self._client is None:
            self._client = self._connect()
        try:
            self._client.send_message(message)
        except BaseException:
            # After any failure the session state is unknown: start the next message afresh.
            self.close()
            raise

    def close(self) -> None:
        """Quit politely if possible."""
        client, self._client = self._client, None
        if client is not None:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()
