"""secrets at rest: the JWT signing secret and webhook subscription secrets encrypted

``api_signing_keys.secret`` and ``webhook_subscriptions.secret`` become text columns holding
``enc:v1:<Fernet token>`` (hotcrm.crypto, key ``HOTCRM_TOKEN_KEY``); rows stored in plain text
before are encrypted here. SQLite does not enforce VARCHAR lengths, so only PostgreSQL's
column types change.

Revision ID: 0019a_encrypted_secrets
Revises: 0006_delivery, 0007_api
Create Date: 2026-12-05 23:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0019a_encrypted_secrets"
down_revision = ("0006_delivery", "0007_api")
branch_labels = None
depends_on = None

# (table, key column, secret column, its length before)
COLUMNS = (("api_signing_keys", "name", "secret", 128), ("webhook_subscriptions", "id", "secret", 200))


def _convert(table: str, key: str, column: str, change) -> int:
    bind = op.get_bind()
    rows = bind.execute(sa.text(f"SELECT {key}, {column} FROM {table}")).all()  # noqa: S608 (constant names)
    changed = 0
    for row_key, value in rows:
        new = change(value)
        if new != value:
            bind.execute(
                sa.text(f"UPDATE {table} SET {column} = :value WHERE {key} = :key"),  # noqa: S608
                {"value": new, "key": row_key},
            )
            changed += 1
    return changed


def upgrade() -> None:
    from hotcrm import crypto

    postgresql = op.get_bind().dialect.name == "postgresql"
    for table, key, column, _length in COLUMNS:
        if postgresql:
            op.alter_column(table, column, type_=sa.Text(), existing_nullable=False)
        _convert(table, key, column, lambda v: v if v is None or crypto.is_encrypted(v) else crypto.encrypt(v))


def downgrade() -> None:
    from hotcrm import crypto

    postgresql = op.get_bind().dialect.name == "postgresql"
    for table, key, column, length in COLUMNS:
        _convert(table, key, column, lambda v: crypto.decrypt(v) if v and crypto.is_encrypted(v) else v)
        if postgresql:
            op.alter_column(table, column, type_=sa.String(length), existing_nullable=False)
