"""salesforce sync: Bulk API 2.0 jobs kept until their results are collected

Revision ID: 0004b_salesforce_bulk_jobs
Revises: 0004_salesforce
Create Date: 2026-12-05 23:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004b_salesforce_bulk_jobs"
down_revision = "0004_salesforce"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "salesforce_bulk_jobs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("job_id", sa.String(length=18), nullable=False),
        sa.Column("object", sa.String(length=40), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=True),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("upload_bytes", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("collected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("collected_by_run", sa.String(length=250), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_salesforce_bulk_jobs")),
        sa.UniqueConstraint("job_id", name="uq_salesforce_bulk_jobs_job_id"),
    )
    op.create_index("ix_salesforce_bulk_jobs_status", "salesforce_bulk_jobs", ["status"])


def downgrade() -> None:
    op.drop_index("ix_salesforce_bulk_jobs_status", table_name="salesforce_bulk_jobs")
    op.drop_table("salesforce_bulk_jobs")
