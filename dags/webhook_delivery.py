"""Deliver CRM events from the outbox to subscribers: signed, concurrent, retried, dead-lettered."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag

from hotcrm.airflow.operators import HotCrmWebhookDeliveryOperator
from hotcrm.airflow.tasks import fan_out_events, plan_workers, replay_dead_letters, summarize

DAG_ID = "webhook_delivery"

DOC_MD = """
### Webhook delivery

CRM changes write events (`lead.imported`, `lead.converted`, `payment.received`,
`account.synced`, `export.completed`) to the `outbox_events` table in the same transaction.
Every minute this DAG:

1. **replays** dead letters when asked (params `replay_ids`, or `replay_since`/`replay_until`
   in ISO 8601; also `python -m hotcrm subscriptions replay`);
2. **fans out** new events into one delivery per active subscription whose event types match
   (subscriptions: `python -m hotcrm subscriptions add|list|disable`);
3. **delivers** with `workers` mapped tasks: each claims due deliveries in batches
   (`FOR UPDATE SKIP LOCKED` on PostgreSQL, an atomic claim on SQLite, with a lease so a dead
   worker's batch is taken over) and POSTs them concurrently with httpx, signed per Standard
   Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,...`, `X-Event-Type`).

Only 2xx is success; redirects are not followed. Failures retry after 5 s, 5 min, 30 min, 2 h,
5 h, 10 h, 10 h (±20 % jitter; `include/config/delivery.json`); `Retry-After` on 429/503 is
honoured; 410 disables the subscription. After the last attempt the delivery is dead and the
operators get an email. Private, loopback, link-local and metadata addresses are refused unless
allowed in `allow_private_destinations`. The `summarize` task returns the run's counts.
"""


@dag(
    dag_id=DAG_ID,
    schedule="* * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=10),
    doc_md=DOC_MD,
    tags=["hotcrm", "webhooks", "outbound"],
    default_args={"owner": "integrations", "retries": 2, "retry_delay": timedelta(seconds=20)},
    render_template_as_native_obj=True,
    params={
        "workers": Param(2, type="integer", minimum=1, maximum=16, description="mapped delivery tasks"),
        "batch_size": Param(0, type="integer", minimum=0, description="deliveries per claim (0: config file)"),
        "concurrency": Param(0, type="integer", minimum=0, description="requests in flight (0: config file)"),
        "max_seconds": Param(0, type="number", minimum=0, description="time budget per worker (0: config file)"),
        "replay_ids": Param([], type="array", description="dead-lettered delivery ids to replay first"),
        "replay_since": Param("", type="string", description="replay dead letters from this time (ISO 8601)"),
        "replay_until": Param("", type="string", description="... until this time (ISO 8601)"),
    },
)
def webhook_delivery():
    replayed = replay_dead_letters("{{ params.replay_ids }}", "{{ params.replay_since }}", "{{ params.replay_until }}")
    fanned = fan_out_events()
    workers = plan_workers("{{ params.workers }}")
    replayed >> fanned >> workers
    delivered = HotCrmWebhookDeliveryOperator.partial(
        task_id="deliver",
        fan_out=False,  # done once, above
        batch_size="{{ params.batch_size }}",
        concurrency="{{ params.concurrency }}",
        max_seconds="{{ params.max_seconds }}",
        max_active_tis_per_dagrun=16,
    ).expand(worker=workers)
    summarize(delivered.output, replayed, fanned)


webhook_delivery()
