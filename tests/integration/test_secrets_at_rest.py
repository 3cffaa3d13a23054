"""Secrets at rest (issue 19, point 3), on SQLite and PostgreSQL: the JWT signing secret and
webhook subscription secrets are stored encrypted under HOTCRM_TOKEN_KEY, keys rotate (the first
encrypts, all decrypt, `secrets rotate` re-encrypts), migration 0019a encrypts rows stored in
plain text before, and where Airflow runs the secret settings come from its secrets backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from hotcrm import crypto
from hotcrm.api import auth
from hotcrm.api.config import ApiSettings
from hotcrm.cli import main
from hotcrm.crm import migrate
from hotcrm.crm.db import session_scope
from hotcrm.delivery.service import add_subscription
from hotcrm.settings import set_secret_source

KEY_1, KEY_2 = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def _raw(db_url: str, table: str) -> list[str]:
    with session_scope(db_url) as session:
        return list(session.execute(text(f"SELECT secret FROM {table}")).scalars())  # noqa: S608


def _subscribe(db_url: str) -> tuple[str, str]:
    with session_scope(db_url) as session:
        sub = add_subscription(session, "https://hooks.partner.example/crm", ["*"])
        return sub.id, sub.secret


def _read_subscription_secret(db_url: str, sub_id: str) -> str:
    from hotcrm.delivery.models import WebhookSubscription

    with session_scope(db_url) as session:
        return session.get(WebhookSubscription, sub_id).secret


def test_signing_and_subscription_secrets_are_encrypted_in_the_database(db_url, monkeypatch):
    monkeypatch.setenv("HOTCRM_TOKEN_KEY", KEY_1)
    monkeypatch.setattr(auth, "_signing_cache", {})
    signing = auth.signing_secret(db_url, ApiSettings())
    sub_id, whsec = _subscribe(db_url)

    for table, plain in (("api_signing_keys", signing), ("webhook_subscriptions", whsec)):
        [stored] = _raw(db_url, table)
        assert stored.startswith("enc:v1:") and plain not in stored, table
        assert crypto.decrypt(stored, KEY_1) == plain
    # Read back through the models (another process: nothing cached).
    monkeypatch.setattr(auth, "_signing_cache", {})
    assert auth.signing_secret(db_url, ApiSettings()) == signing
    assert _read_subscription_secret(db_url, sub_id) == whsec
    # A token signed with it verifies; whoever reads the file alone cannot mint one.
    token, _ = auth.issue_token(signing, ApiSettings(), "hcc_x", ["leads:read"])
    assert auth.verify_token(auth.signing_secret(db_url, ApiSettings()), ApiSettings(), token).id == "hcc_x"


def test_keys_rotate_first_encrypts_all_decrypt(db_url, monkeypatch, capsys):
    monkeypatch.setenv("HOTCRM_TOKEN_KEY", KEY_1)
    sub_id, whsec = _subscribe(db_url)
    [before] = _raw(db_url, "webhook_subscriptions")

    monkeypatch.setenv("HOTCRM_TOKEN_KEY", f"{KEY_2},{KEY_1}")  # a new key in front
    assert _read_subscription_secret(db_url, sub_id) == whsec
    assert main(["--database-url", db_url, "secrets", "rotate"]) == 0
    assert "1 in webhook_subscriptions" in capsys.readouterr().out
    [after] = _raw(db_url, "webhook_subscriptions")
    assert after != before and crypto.decrypt(after, KEY_2) == whsec

    monkeypatch.setenv("HOTCRM_TOKEN_KEY", KEY_2)  # the old key dropped
    assert _read_subscription_secret(db_url, sub_id) == whsec
    monkeypatch.setenv("HOTCRM_TOKEN_KEY", KEY_1)  # a wrong key: a clear error, never the secret
    with pytest.raises(crypto.SecretKeyError, match="cannot be decrypted with the configured HOTCRM_TOKEN_KEY"):
        _read_subscription_secret(db_url, sub_id)


def test_the_migration_encrypts_secrets_stored_in_plain_text(empty_db_url, monkeypatch):
    monkeypatch.setenv("HOTCRM_TOKEN_KEY", KEY_1)
    url = empty_db_url
    migrate.upgrade(url, "0006_delivery")
    migrate.upgrade(url, "0007_api")
    whsec = "whsec_" + "A" * 43 + "="
    with session_scope(url) as session:
        session.execute(text("INSERT INTO api_signing_keys (name, secret, created_at) VALUES ('jwt', :s, :t)"),
                        {"s": "plain-signing-secret-" + "x" * 40, "t": "2026-01-01 00:00:00"})  # fmt: skip
        session.execute(
            text(
                "INSERT INTO webhook_subscriptions (id, url, event_types, secret, active, created_at) "
                "VALUES ('sub-1', 'https://h.example/x', '[\"*\"]', :s, true, :t)"
            ),
            {"s": whsec, "t": "2026-01-01 00:00:00"},
        )
    migrate.upgrade(url)
    assert migrate.is_up_to_date(url)
    [signing] = _raw(url, "api_signing_keys")
    [stored] = _raw(url, "webhook_subscriptions")
    assert crypto.decrypt(signing, KEY_1) == "plain-signing-secret-" + "x" * 40
    assert crypto.decrypt(stored, KEY_1) == whsec and whsec not in stored
    assert _read_subscription_secret(url, "sub-1") == whsec
    migrate.upgrade(url)  # idempotent: nothing encrypted twice
    assert _raw(url, "webhook_subscriptions") == [stored]


def test_without_a_key_an_embedded_key_file_is_made_private(sqlite_url, monkeypatch, tmp_path):
    monkeypatch.delenv("HOTCRM_TOKEN_KEY", raising=False)
    monkeypatch.setenv("HOTCRM_DATA_DIR", str(tmp_path / "data"))
    sub_id, whsec = _subscribe(sqlite_url)
    key_file = tmp_path / "data" / "token.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    [stored] = _raw(sqlite_url, "webhook_subscriptions")
    assert crypto.decrypt(stored, key_file.read_text().strip()) == whsec


def test_secret_settings_come_from_airflow_secrets_backend(monkeypatch):
    import hotcrm.airflow  # noqa: F401 (installs the Airflow secret source)
    from hotcrm.airflow import secrets as airflow_secrets

    airflow_secrets.install()  # fresh cache
    try:
        for name in ("HOTCRM_API_JWT_SECRET", "HOTCRM_TOKEN_KEY", "HOTCRM_SALESFORCE_CLIENT_SECRET"):
            monkeypatch.delenv(name, raising=False)
        # The environment-variables secrets backend is one of Airflow's backends (the first one searched).
        monkeypatch.setenv("AIRFLOW_VAR_HOTCRM_API_JWT_SECRET", "from-the-backend-" + "j" * 32)
        monkeypatch.setenv("AIRFLOW_VAR_HOTCRM_TOKEN_KEY", KEY_2)
        monkeypatch.setenv("AIRFLOW_VAR_HOTCRM_SALESFORCE_CLIENT_SECRET", "sf-consumer-secret")
        settings = ApiSettings.from_env()
        assert settings.jwt_secret == "from-the-backend-" + "j" * 32
        assert settings.token_key == KEY_2 and crypto.current_key() == KEY_2
        assert settings.salesforce.client_secret == "sf-consumer-secret"
        assert "sf-consumer-secret" not in repr(settings)
    finally:
        set_secret_source(None)
    # Outside Airflow (no source installed) the environment variable is the setting.
    monkeypatch.setenv("HOTCRM_API_JWT_SECRET", "from-the-environment-" + "e" * 32)
    assert ApiSettings.from_env().jwt_secret == "from-the-environment-" + "e" * 32


def test_the_core_does_not_import_airflow():
    code = (
        "import sys, hotcrm.crypto, hotcrm.settings, hotcrm.api.config, hotcrm.crm.secrets\n"
        "import hotcrm.maintenance.retention, hotcrm.maintenance.cli\n"
        "print([m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_configured_secrets_backend_serves_the_secret_settings(tmp_path):
    # A separate process: Airflow reads [secrets] backend once. No HOTCRM_* variable is set there.
    code = (
        "import hotcrm.airflow\n"
        "from hotcrm import crypto\n"
        "from hotcrm.api.config import ApiSettings\n"
        "s = ApiSettings.from_env()\n"
        "print(s.jwt_secret, s.token_key == crypto.current_key(), s.salesforce.client_secret)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOTCRM_API_JWT", "HOTCRM_TOKEN", "HOTCRM_SALES"))}
    env["AIRFLOW__SECRETS__BACKEND"] = "tests.support.secrets_backend.DictSecretsBackend"
    env["AIRFLOW__SECRETS__BACKEND_KWARGS"] = json.dumps(
        {
            "variables": {
                "hotcrm_api_jwt_secret": "vault-" + "v" * 40,
                "hotcrm_token_key": KEY_1,
                "hotcrm_salesforce_client_secret": "vault-sf-secret",
            }
        }  # fmt: skip
    )
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-3:] == ["vault-" + "v" * 40, "True", "vault-sf-secret"]
