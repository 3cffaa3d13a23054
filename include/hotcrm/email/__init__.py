"""Email: quote emails and operational notices through an outbox in the CRM database.

Other capabilities queue a notice in their own transaction::

    from hotcrm.email import queue_notice
    queue_notice(session, "uploader@example.com", "Lead import: 3 rejects", text, kind="import_summary")

The ``quote_emails`` DAG sends whatever is queued.
"""

from hotcrm.email.outbox import queue_notice, queue_quote_emails, send_due

__all__ = ["queue_notice", "queue_quote_emails", "send_due"]
