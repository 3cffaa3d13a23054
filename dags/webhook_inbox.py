"""Apply verified inbound webhooks from the inbox to the CRM, exactly once."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag

from hotcrm.airflow.operators import HotCrmWebhookInboxOperator
from hotcrm.airflow.tasks import plan_workers, requeue_dead_letters, summarize

DAG_ID = "webhook_inbox"

DOC_MD = """
### Webhook inbox

The receiver (`POST /hotcrm/webhooks/{source}`, in the API server or under uvicorn) verifies
each delivery's signature and stores it in the `webhook_inbox` table of the CRM database.
This DAG applies the stored events to the CRM: `payment.succeeded` (or Stripe's
`payment_intent.succeeded` / `charge.succeeded`) marks the Payment *Paid* (PaidDate,
PaidAmount, PaymentMethod), adds an Activity and a `payment.received` outbox event;
`payment.failed` / `payment.refunded` (Stripe: `payment_intent.payment_failed` /
`charge.refunded`) set the status and add an Activity; other types are kept as *ignored*. The
result does not depend on how events are batched or ordered (README, "Order and timing").

**Why every minute, not triggered by each delivery.** A busy provider sends hundreds of
deliveries a second; one DAG run per delivery (or per asset event) would swamp the scheduler,
while one run a minute drains everything due in batches. Retries need a clock anyway: a row
waiting for its backoff (e.g. its Payment is not in the CRM yet) must be picked up again
without a new delivery. A run stops after `max_seconds` so the next one starts on time;
up to three runs may be active, so a run whose worker died (its task waits for Airflow's
heartbeat timeout) does not hold the next ones back: claims are safe under concurrency, and
a dead worker's rows are taken over when their 30 s lease ends.

**Exactly once.** Rows are claimed in batches (`FOR UPDATE SKIP LOCKED` on PostgreSQL, an
atomic `UPDATE ... RETURNING` claim under SQLite's write lock), by `workers` mapped tasks at
once; each event's change and its row's status commit together. Errors: attempts + 1 and
exponential backoff; after `max_attempts` the row is *dead* with its last error (logged
here). Fix the cause, then requeue: trigger with `requeue_dead` (and optionally
`requeue_source`), or run `python -m hotcrm webhooks requeue`.

**Result.** The `summarize` task returns the counts (processed, ignored, retried,
dead_lettered, stale) and the dead letters of the run.
"""


@dag(
    dag_id=DAG_ID,
    schedule="* * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=3,
    dagrun_timeout=timedelta(minutes=10),
    doc_md=DOC_MD,
    tags=["hotcrm", "webhooks", "payments"],
    default_args={"owner": "payments-integration", "retries": 2, "retry_delay": timedelta(seconds=20)},
    render_template_as_native_obj=True,
    params={
        "batch_size": Param(200, type="integer", minimum=1, maximum=5000, description="rows claimed per batch"),
        "workers": Param(2, type="integer", minimum=1, maximum=16, description="mapped tasks claiming at once"),
        "max_attempts": Param(5, type="integer", minimum=1, description="attempts before a row is dead-lettered"),
        "backoff_seconds": Param(30, type="number", minimum=0, description="first retry delay, doubled each time"),
        "max_seconds": Param(50, type="number", minimum=1, description="time budget of one worker in a run"),
        "requeue_dead": Param(False, type="boolean", description="put dead letters back to pending first"),
        "requeue_source": Param("", type="string", description="only this source's dead letters (empty: all)"),
    },
)
def webhook_inbox():
    requeued = requeue_dead_letters("{{ params.requeue_dead }}", "{{ params.requeue_source }}")
    workers = plan_workers("{{ params.workers }}")
    requeued >> workers
    processed = HotCrmWebhookInboxOperator.partial(
        task_id="process_inbox",
        batch_size="{{ params.batch_size }}",
        max_attempts="{{ params.max_attempts }}",
        backoff_seconds="{{ params.backoff_seconds }}",
        max_seconds="{{ params.max_seconds }}",
        max_active_tis_per_dagrun=16,
    ).expand(worker=workers)
    summarize(processed.output, requeued)


webhook_inbox()
