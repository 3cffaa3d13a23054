"""webhook inbox: ``claimed_by`` holds the worker's host and Airflow task instance (255 characters)

It held ``hostname:pid:uuid`` in 64 characters; a host name with the task instance's
dag/run/task/try does not fit. SQLite does not enforce VARCHAR lengths, so only PostgreSQL's
column type changes (a catalog-only change there: widening a varchar rewrites nothing).

Revision ID: 0017d_inbox_claimed_by
Revises: 0005_webhooks
Create Date: 2026-12-06 02:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0017d_inbox_claimed_by"
down_revision = "0005_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("webhook_inbox", "claimed_by", type_=sa.String(255), existing_type=sa.String(64))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("UPDATE webhook_inbox SET claimed_by = left(claimed_by, 64)")
        op.alter_column("webhook_inbox", "claimed_by", type_=sa.String(64), existing_type=sa.String(255))
