"""retention: partial indexes on the age of finished inbox rows and delivered webhooks

The maintenance DAG deletes finished rows oldest first in small batches; these indexes let each
batch start where the last one ended. They are partial (finished states only), so the webhook
receiver's inserts of pending rows never touch them. On a large existing inbox, create them
beforehand without blocking writes (``CREATE INDEX CONCURRENTLY`` with the same definition):
this migration then finds them.

Revision ID: 0019b_retention_indexes
Revises: 0005_webhooks, 0019a_encrypted_secrets
Create Date: 2026-12-05 23:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0019b_retention_indexes"
down_revision = ("0005_webhooks", "0019a_encrypted_secrets")
branch_labels = None
depends_on = None

INBOX_FINISHED = "status IN ('done', 'ignored', 'dead')"
DELIVERED = "status = 'succeeded'"


def upgrade() -> None:
    existing = {index["name"] for table in ("webhook_inbox", "webhook_deliveries")
                for index in sa.inspect(op.get_bind()).get_indexes(table)}  # fmt: skip
    if "ix_webhook_inbox_finished_processed_at" not in existing:
        op.create_index(
            "ix_webhook_inbox_finished_processed_at",
            "webhook_inbox",
            ["status", "processed_at"],
            sqlite_where=sa.text(INBOX_FINISHED),
            postgresql_where=sa.text(INBOX_FINISHED),
        )
    if "ix_webhook_deliveries_succeeded_delivered_at" not in existing:
        op.create_index(
            "ix_webhook_deliveries_succeeded_delivered_at",
            "webhook_deliveries",
            ["delivered_at"],
            sqlite_where=sa.text(DELIVERED),
            postgresql_where=sa.text(DELIVERED),
        )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_succeeded_delivered_at", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_inbox_finished_processed_at", table_name="webhook_inbox")
