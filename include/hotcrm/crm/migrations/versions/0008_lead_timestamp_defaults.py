"""leads: created_date and last_modified_date default to the transaction's time (PostgreSQL)

A lead file's direct load (hotcrm.leads.loader) COPYs new Leads without these two columns:
parsing two timestamps a row was a sixth of the server's work. The ORM still sets them
itself; SQLite's load sends them too, so SQLite's schema is left as it is.

Revision ID: 0008_lead_timestamp_defaults
Revises: 0002_leads
Create Date: 2026-11-26 02:40:00
"""

from alembic import op

revision = "0008_lead_timestamp_defaults"
down_revision = "0002_leads"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE leads ALTER COLUMN created_date SET DEFAULT now()")
        op.execute("ALTER TABLE leads ALTER COLUMN last_modified_date SET DEFAULT now()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE leads ALTER COLUMN created_date DROP DEFAULT")
        op.execute("ALTER TABLE leads ALTER COLUMN last_modified_date DROP DEFAULT")
