"""lead_import_files.not_loaded: the rows of a failed file that were not loaded

A file that fails its file-level checks loads nothing; its ledger row now counts those rows
(rows_read = inserted + updated + duplicates + rejected + not_loaded), so every row of every
file is accounted for.

Revision ID: 0009_lead_import_not_loaded
Revises: 0008_lead_timestamp_defaults
Create Date: 2026-12-05 23:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_lead_import_not_loaded"
down_revision = "0008_lead_timestamp_defaults"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("lead_import_files") as batch:
        batch.add_column(sa.Column("not_loaded", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("lead_import_files") as batch:
        batch.drop_column("not_loaded")
