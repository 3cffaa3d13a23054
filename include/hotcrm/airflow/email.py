"""Airflow adapter of email: sending through the SMTP provider's ``SmtpHook`` and the
``smtp_default`` connection, and the tasks of the ``quote_emails`` DAG.

The connection decides the transport, as the provider documents it: ``disable_ssl: false``
(the default) is implicit TLS (SMTPS, port 465); ``disable_ssl: true`` with ``disable_tls:
false`` is STARTTLS (port 587); both true is plain SMTP (a local relay, the tests). Login and
password authenticate when set; ``from_email`` in the extra is the sender address.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.providers.smtp.hooks.smtp import SmtpHook

from hotcrm.airflow.hooks import HotCrmDatabaseHook

log = logging.getLogger(__name__)

SMTP_CONN_ID = "smtp_default"


class SmtpHookSender:
    """A :class:`hotcrm.email.smtp.Sender` over one ``SmtpHook`` session, opened on first use.

    The hook handles the connection (host, port, SSL/STARTTLS, login). The message itself is
    built by :mod:`hotcrm.email` (text + HTML alternative, our own Message-ID), so it is handed
    to the hook's SMTP client directly: ``send_email_smtp`` would build an HTML-only message
    with no Message-ID and retry on its own, under our outbox's retry schedule.
    """

    def __init__(self, smtp_conn_id: str = SMTP_CONN_ID) -> None:
        self.smtp_conn_id = smtp_conn_id
        self._hook: SmtpHook | None = None

    @property
    def from_email(self) -> str | None:
        """The connection's ``from_email`` extra (None when not set)."""
        hook = SmtpHook(smtp_conn_id=self.smtp_conn_id)
        hook.smtp_connection = hook.get_connection(self.smtp_conn_id)
        return hook.from_email

    def send(self, message) -> None:
        """Send one message; on any failure the session is closed and re-opened next time."""
        if self._hook is None:
            hook = SmtpHook(smtp_conn_id=self.smtp_conn_id)
            hook.get_conn()
            self._hook = hook
        try:
            self._hook._smtp_client.send_message(message)  # the hook exposes no public client accessor
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the SMTP session."""
        hook, self._hook = self._hook, None
        if hook is not None and hook._smtp_client is not None:
            try:
                hook._smtp_client.quit()
            except Exception:  # the server may already be gone
                hook._smtp_client.close()
            hook._smtp_client = None


def database_url() -> str:
    """The CRM database URL from ``hotcrm_db``."""
    return HotCrmDatabaseHook().get_database_url()


def queue_quote_emails(db_url: str | None = None) -> dict[str, Any]:
    """Queue an email for each quote in the ready status (idempotent)."""
    from hotcrm.crm.db import session_scope
    from hotcrm.email.outbox import queue_quote_emails as queue
    from hotcrm.email.settings import load_settings

    with session_scope(db_url or database_url()) as session:
        result = queue(session, load_settings())
    for problem in result["problems"]:
        log.warning("not queued: %s", problem)
    log.info("quotes ready: %d, queued now: %d", result["ready"], result["queued"])
    return result


def send_queued_emails(smtp_conn_id: str = SMTP_CONN_ID, db_url: str | None = None) -> dict[str, Any]:
    """Reconcile crashed sends and send every due message through ``smtp_conn_id``."""
    from hotcrm.delivery.config import load_config
    from hotcrm.email.outbox import send_due
    from hotcrm.email.settings import load_settings

    settings = load_settings()
    sender = SmtpHookSender(smtp_conn_id)
    return send_due(
        db_url or database_url(),
        sender,
        settings,
        from_addr=sender.from_email or settings.from_addr,
        operator_emails=load_config().operator_emails,
    )
