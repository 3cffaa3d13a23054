"""rest api: api keys, oauth clients, rate limits, signing key, salesforce org connection

Revision ID: 0007_api
Revises: 0001_crm_core
Create Date: 2026-11-25 21:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_api"
down_revision = "0001_crm_core"
branch_labels = ("api",)
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.String(length=255), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=True),
        sa.Column("revoked_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_table(
        "api_oauth_clients",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.String(length=255), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_oauth_clients")),
        sa.UniqueConstraint("client_id", name=op.f("uq_api_oauth_clients_client_id")),
    )
    op.create_table(
        "api_rate_limits",
        sa.Column("bucket", sa.String(length=200), nullable=False),
        sa.Column("window_start", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "window_start", name=op.f("pk_api_rate_limits")),
    )
    op.create_table(
        "api_signing_keys",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("secret", sa.String(length=128), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_api_signing_keys")),
    )
    op.create_table(
        "salesforce_oauth_states",
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("code_verifier_encrypted", sa.Text(), nullable=False),
        sa.Column("redirect_uri", sa.String(length=1024), nullable=False),
        sa.Column("requested_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("state_hash", name=op.f("pk_salesforce_oauth_states")),
    )
    op.create_table(
        "salesforce_oauth_credentials",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("instance_url", sa.String(length=255), nullable=False),
        sa.Column("refresh_token_encrypted", sa.Text(), nullable=False),
        sa.Column("identity_url", sa.String(length=255), nullable=True),
        sa.Column("scope", sa.String(length=255), nullable=True),
        sa.Column("connected_by", sa.String(length=100), nullable=True),
        sa.Column("connected_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_salesforce_oauth_credentials")),
    )


def downgrade() -> None:
    op.drop_table("salesforce_oauth_credentials")
    op.drop_table("salesforce_oauth_states")
    op.drop_table("api_signing_keys")
    op.drop_table("api_rate_limits")
    op.drop_table("api_oauth_clients")
    op.drop_table("api_keys")
