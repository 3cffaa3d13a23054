"""Email quotes that are ready to send, and every queued operational notice, exactly once."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag

from hotcrm.airflow.operators import HotCrmEmailOutboxOperator

DAG_ID = "quote_emails"

DOC_MD = """
### Quote emails and notices

One task, **send_emails** (`HotCrmEmailOutboxOperator`):

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
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=30),
    doc_md=DOC_MD,
    tags=["hotcrm", "email", "quotes"],
    default_args={"owner": "sales-operations", "retries": 2, "retry_delay": timedelta(minutes=1)},
)
def quote_emails():
    # Queues an email per ready quote, then sends everything due through smtp_default.
    HotCrmEmailOutboxOperator(task_id="send_emails", queue_quotes=True)


quote_emails()
