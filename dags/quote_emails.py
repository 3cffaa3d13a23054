"""Email quotes that are ready to send, and every queued operational notice, exactly once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, task

DAG_ID = "quote_emails"

DOC_MD = """
### Quote emails and notices

1. **queue**: every Quote with Status `Ready to Send` (`ready_status` in
   `include/config/email/settings.json`) gets one row in the `email_outbox` table: subject
   `Quote <QuoteNumber>`, HTML and text bodies from `include/config/email/quote.*.j2`
   (autoescaped), the total formatted for the quote's currency, a link to the quote
   (`quote_base_url` or `HOTCRM_QUOTE_BASE_URL`), and a Message-ID.
2. **send**: queued rows (quotes, and notices other pipelines queued with
   `hotcrm.email.queue_notice`, e.g. dead-letter alerts) go out through the `smtp_default`
   connection (the SMTP provider's hook; SSL or STARTTLS as the connection says). Each row is
   marked `sending` before the SMTP conversation and `sent` after, with the quote's Status
   `Sent` and SentDate in the same transaction. 4xx replies and dropped connections retry
   with backoff (30 s, 2 min, 10 min, 30 min, 2 h); 5xx rejections mark the row `failed` and
   the quote `Send Failed` with an Activity holding the server's reply.

**Crash safety.** A row found `sending` after its lease means the worker died mid-send; it is
not sent again blindly: it becomes `unconfirmed` and the operators are emailed its Message-ID
to check in the mail server's log (`python -m hotcrm email confirm|requeue <id>`).
"""


@dag(
    dag_id=DAG_ID,
    schedule="*/5 * * * *",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=30),
    doc_md=DOC_MD,
    tags=["hotcrm", "email", "quotes"],
    default_args={"owner": "sales-operations", "retries": 2, "retry_delay": timedelta(minutes=1)},
)
def quote_emails():
    @task
    def queue_quotes() -> dict:
        """Queue an email per ready quote."""
        from hotcrm.airflow.email import queue_quote_emails

        return queue_quote_emails()

    @task
    def send_emails() -> dict:
        """Send everything due through smtp_default."""
        from hotcrm.airflow.email import send_queued_emails

        return send_queued_emails()

    queue_quotes() >> send_emails()


quote_emails()
