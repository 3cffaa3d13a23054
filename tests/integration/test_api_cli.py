"""``python -m hotcrm apikeys|oauth-clients``: the key and secret are shown once, stored hashed,
listed without secrets, revoked; bad input says what to fix."""

from __future__ import annotations

import re

from sqlalchemy import select

from hotcrm.api import auth
from hotcrm.api.models import ApiKey, OAuthClient
from hotcrm.cli import main
from hotcrm.crm.db import session_scope


def _run(capsys, db_url: str, *argv: str) -> tuple[int, str, str]:
    code = main(["--database-url", db_url, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_apikeys_create_list_revoke(db_url, capsys):
    code, out, _ = _run(capsys, db_url, "apikeys", "create", "--name", "acme", "--scopes", "leads:read,leads:write",
                        "--expires-in-days", "30")  # fmt: skip
    assert code == 0
    key = re.search(r"^(hck_\S+)$", out, re.M).group(1)
    with session_scope(db_url) as session:
        record = session.scalars(select(ApiKey)).one()
        assert record.key_hash == auth.hash_secret(key) and key not in (record.prefix, record.key_hash)
        assert record.scopes == "leads:read leads:write" and record.expires_at is not None
        key_id = record.id
        principal = auth.authenticate_api_key(session, key)
    assert principal.scopes == {"leads:read", "leads:write"}

    code, out, _ = _run(capsys, db_url, "apikeys", "list")
    assert code == 0 and key_id in out and "active" in out and "acme" in out and key not in out

    assert _run(capsys, db_url, "apikeys", "revoke", key_id)[0] == 0
    assert "revoked" in _run(capsys, db_url, "apikeys", "list")[1]
    code, _, err = _run(capsys, db_url, "apikeys", "revoke", "nope")
    assert code == 2 and "no API key with id 'nope'" in err

    code, _, err = _run(capsys, db_url, "apikeys", "create", "--name", "x", "--scopes", "leads:delete")
    assert code == 2 and "unknown scope(s) leads:delete" in err and "leads:convert" in err


def test_oauth_clients_create_list_revoke(db_url, capsys):
    code, out, _ = _run(capsys, db_url, "oauth-clients", "create", "--name", "front end", "--scopes", "leads:read")
    assert code == 0
    client_id = re.search(r"client_id:\s+(\S+)", out).group(1)
    secret = re.search(r"client_secret:\s+(\S+)", out).group(1)
    with session_scope(db_url) as session:
        record = session.scalars(select(OAuthClient)).one()
        assert record.secret_hash == auth.hash_secret(secret) and record.client_id == client_id
        assert auth.authenticate_client(session, client_id, secret).name == "front end"
    code, out, _ = _run(capsys, db_url, "oauth-clients", "list")
    assert client_id in out and secret not in out
    assert _run(capsys, db_url, "oauth-clients", "revoke", client_id)[0] == 0
    assert "revoked" in _run(capsys, db_url, "oauth-clients", "list")[1]
