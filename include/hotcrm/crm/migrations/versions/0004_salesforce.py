"""salesforce sync: sync state per record and sync history

Revision ID: 0004_salesforce
Revises: 0001_crm_core
Create Date: 2026-11-25 21:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_salesforce"
down_revision = "0001_crm_core"
branch_labels = ("salesforce",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "salesforce_sync_state",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("object", sa.String(length=40), nullable=False),
        sa.Column("hotcrm_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("payload_hash", sa.String(length=64), nullable=True),
        sa.Column("salesforce_id", sa.String(length=18), nullable=True),
        sa.Column("last_error_code", sa.String(length=100), nullable=True),
        sa.Column("last_error_message", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_salesforce_sync_state")),
        sa.UniqueConstraint("object", "hotcrm_id", name="uq_salesforce_sync_state_object_hotcrm_id"),
    )
    op.create_index("ix_salesforce_sync_state_status", "salesforce_sync_state", ["status"])
    op.create_table(
        "salesforce_sync_runs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("object", sa.String(length=40), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("full", sa.Boolean(), nullable=False),
        sa.Column("transport", sa.String(length=20), nullable=True),
        sa.Column("selected", sa.Integer(), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("api_calls", sa.Integer(), nullable=False),
        sa.Column("duration_seconds", sa.Float(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_salesforce_sync_runs")),
    )
    op.create_index("ix_salesforce_sync_runs_run_id", "salesforce_sync_runs", ["run_id"])
    op.create_index("ix_salesforce_sync_runs_started_at", "salesforce_sync_runs", ["started_at"])


def downgrade() -> None:
    op.drop_table("salesforce_sync_runs")
    op.drop_table("salesforce_sync_state")
