"""webhook inbox

Revision ID: 0005_webhooks
Revises: 0001_crm_core
Create Date: 2026-11-25 21:15:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_webhooks"
down_revision = "0001_crm_core"
branch_labels = ("webhooks",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_inbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_inbox")),
        sa.UniqueConstraint("source", "event_id", name="uq_webhook_inbox_source_event_id"),
    )
    op.create_index("ix_webhook_inbox_status_next_attempt_at", "webhook_inbox", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_inbox_status_next_attempt_at", table_name="webhook_inbox")
    op.drop_table("webhook_inbox")
