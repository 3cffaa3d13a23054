"""A loopback SMTP server (aiosmtpd) for email tests, recording what it accepted.

Behaviour by recipient local part:
  ``tempfail...@``  450 on RCPT (temporary)
  ``flaky...@``     451 on DATA for the first ``flaky_failures`` messages, then accepted
  ``reject...@``    550 on RCPT (permanent)
  ``drop...@``      the connection is dropped mid-DATA (no reply)
  anything else     accepted
Optional STARTTLS with a trustme certificate (``tls=True``).
"""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller


@dataclass
class Accepted:
    """One accepted message: envelope and the parsed message."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class Handler:
    """aiosmtpd handler with the behaviours above."""

    flaky_failures: int = 1
    accepted: list[Accepted] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    flaky_seen: int = 0
    dropped: int = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 (aiosmtpd API)
        local = address.split("@")[0].lower()
        if local.startswith("tempfail"):
            return "450 4.2.1 Mailbox temporarily unavailable"
        if local.startswith("reject"):
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd API)
        locals_ = [a.split("@")[0].lower() for a in envelope.rcpt_tos]
        if any(loc.startswith("drop") for loc in locals_):
            self.dropped += 1
            server.transport.close()  # mid-send: the client never gets a reply to its DATA
            return "421 closing"
        if any(loc.startswith("flaky") for loc in locals_):
            with self.lock:
                self.flaky_seen += 1
                if self.flaky_seen <= self.flaky_failures:
                    return "451 4.3.0 Try again later"
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.accepted.append(Accepted(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def message_ids(self) -> list[str]:
        """Message-IDs of the accepted messages, in order."""
        with self.lock:
            return [a.message["Message-ID"] for a in self.accepted]

    def confirm(self, message_id: str) -> bool:
        """The provider-side lookup a reconciliation asks: was this Message-ID accepted?"""
        return message_id in self.message_ids()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SmtpServer:
    """A running server."""

    controller: Controller
    handler: Handler
    host: str
    port: int
    cert_pem: str | None = None

    def airflow_connection_json(self, from_email: str = "quotes@hotcrm.example") -> str:
        """The ``smtp_default`` connection (JSON form) pointing at this server."""
        import json

        extra = {"from_email": from_email, "disable_ssl": True, "timeout": 10, "retry_limit": 0}
        if self.cert_pem is None:
            extra["disable_tls"] = True
        else:
            extra["disable_tls"] = False  # STARTTLS; the test CA is trusted through SSL_CERT_FILE
        return json.dumps({"conn_type": "smtp", "host": self.host, "port": self.port, "extra": extra})

    def stop(self) -> None:
        """Stop the server."""
        self.controller.stop()


def start_smtp(tls: bool = False, flaky_failures: int = 1, cert_dir=None, host: str = "127.0.0.1") -> SmtpServer:
    """Start an SMTP server on ``host`` (loopback; with STARTTLS when ``tls``)."""
    handler = Handler(flaky_failures=flaky_failures)
    port = _free_port()
    kwargs = {}
    cert_pem = None
    if tls:
        import ssl

        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        kwargs = {"tls_context": context, "require_starttls": True}
        cert_pem = ca.cert_pem.bytes().decode()
    controller = Controller(handler, hostname=host, port=port, **kwargs)
    controller.start()
    return SmtpServer(controller, handler, host, port, cert_pem)


@pytest.fixture
def smtp_server():
    """A plain SMTP server on loopback."""
    server = start_smtp()
    yield server
    server.stop()
