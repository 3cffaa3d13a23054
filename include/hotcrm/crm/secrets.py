"""Stored secrets under key rotation: ``python -m hotcrm secrets rotate`` re-encrypts every
secret the CRM database holds under the first key of ``HOTCRM_TOKEN_KEY`` (see
:mod:`hotcrm.crypto`), after which the old keys can be dropped from the setting.
"""

from __future__ import annotations

from sqlalchemy import text

from hotcrm import crypto
from hotcrm.crm.db import session_scope
from hotcrm.settings import secret

# (table, key column, secret column): columns of hotcrm.crypto.EncryptedText.
ENCRYPTED_COLUMNS = (("api_signing_keys", "name", "secret"), ("webhook_subscriptions", "id", "secret"))
# Fernet tokens without the enc:v1: prefix, written by the Salesforce connection flow.
FERNET_COLUMNS = (
    ("salesforce_oauth_credentials", "name", "refresh_token_encrypted"),
    ("salesforce_oauth_states", "state_hash", "code_verifier_encrypted"),
)


def rotate_stored_secrets(database_url: str) -> dict[str, int]:
    """Re-encrypt every stored secret under the first configured key; counts per table.

    SecretKeyError when a value cannot be decrypted with any configured key (name the key it
    was stored with after the new one)."""
    counts: dict[str, int] = {}
    with session_scope(database_url) as session:
        for table, key, column in ENCRYPTED_COLUMNS:
            rows = session.execute(text(f"SELECT {key}, {column} FROM {table}")).all()  # noqa: S608 (constants)
            for row_key, value in rows:
                crypto.decrypt(value, what=f"{table}.{column} of {row_key!r}")  # a clear error first
                session.execute(
                    text(f"UPDATE {table} SET {column} = :v WHERE {key} = :k"),  # noqa: S608
                    {"v": crypto.rotate(value), "k": row_key},
                )
            counts[table] = len(rows)
        key_setting = secret(crypto.KEY_SETTING)
        for table, key, column in FERNET_COLUMNS:
            rows = session.execute(text(f"SELECT {key}, {column} FROM {table}")).all()  # noqa: S608
            if rows and not key_setting:
                raise crypto.SecretKeyError(f"{table} holds tokens but {crypto.KEY_SETTING} is not set")
            for row_key, value in rows:
                try:
                    rotated = crypto.cipher(key_setting).rotate(value.encode("ascii")).decode("ascii")
                except Exception:  # InvalidToken: no configured key decrypts it
                    raise crypto.SecretKeyError(
                        f"{table}.{column} cannot be decrypted with the configured {crypto.KEY_SETTING}"
                    ) from None
                session.execute(
                    text(f"UPDATE {table} SET {column} = :v WHERE {key} = :k"),  # noqa: S608
                    {"v": rotated, "k": row_key},
                )
            counts[table] = len(rows)
    return counts


def register(subparsers) -> None:
    """Add the ``secrets`` command group."""
    group = subparsers.add_parser("secrets", help="stored secrets: re-encrypt under a new HOTCRM_TOKEN_KEY")
    actions = group.add_subparsers(dest="action", required=True)
    actions.add_parser(
        "rotate", help="re-encrypt every stored secret under the first key of HOTCRM_TOKEN_KEY (new,old)"
    ).set_defaults(handler=_rotate)


def _rotate(args) -> int:
    counts = rotate_stored_secrets(args.database_url)
    print("re-encrypted under the first key: " + ", ".join(f"{n} in {table}" for table, n in counts.items()))
    return 0
