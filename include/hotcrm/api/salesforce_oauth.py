"""Connecting a Salesforce org by OAuth 2.0 (web-server flow with PKCE S256).

``begin_authorization`` makes a one-time ``state`` and a PKCE verifier (kept in the
database: the verifier encrypted, the state hashed, both expiring after ten minutes) and
gives the org's authorization URL. ``complete_authorization`` checks and consumes the state,
exchanges the code (with the verifier) at the org's token endpoint and stores the refresh
token encrypted with ``HOTCRM_TOKEN_KEY``. The Salesforce hook reads it back with
:func:`load_refresh_token` and logs in by the refresh-token flow.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from urllib.parse import urlencode

import httpx
from cryptography.fernet import InvalidToken
from sqlalchemy import delete, select

from hotcrm.api.config import ApiSettings, SalesforceApp, make_fernet
from hotcrm.api.errors import ApiError
from hotcrm.api.models import SalesforceCredential, SalesforceOAuthState
from hotcrm.crm.db import session_scope
from hotcrm.crm.models import utcnow

STATE_TTL = timedelta(minutes=10)
DEFAULT_CONNECTION = "salesforce_default"
TOKEN_TIMEOUT_SECONDS = 15


def pkce_pair() -> tuple[str, str]:
    """A PKCE (RFC 7636) code verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(64)[:96]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()
    return verifier, challenge


def _state_hash(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8", "surrogatepass")).hexdigest()


def _require_app(app: SalesforceApp, *, need_secret: bool) -> None:
    missing = [
        name
        for name, value in (
            ("HOTCRM_SALESFORCE_CLIENT_ID", app.client_id),
            ("HOTCRM_SALESFORCE_CLIENT_SECRET", app.client_secret if need_secret else "x"),
        )
        if not value
    ]
    if missing:
        raise ApiError(
            503,
            "SALESFORCE_NOT_CONFIGURED",
            f"The Salesforce connected app is not configured: set {' and '.join(missing)} for the API server",
        )


def begin_authorization(database_url: str, settings: ApiSettings, redirect_uri: str, requested_by: str) -> str:
    """Record a new state + PKCE verifier and return the org's authorization URL to redirect to."""
    app = settings.salesforce
    _require_app(app, need_secret=False)
    try:
        fernet = settings.fernet()
    except ValueError as exc:
        raise ApiError(503, "TOKEN_KEY_NOT_CONFIGURED", str(exc)) from None
    state = secrets.token_urlsafe(32)
    verifier, challenge = pkce_pair()
    now = utcnow()
    with session_scope(database_url) as session:
        # Abandoned round trips are cleaned up by the next one.
        session.execute(delete(SalesforceOAuthState).where(SalesforceOAuthState.expires_at < now))
        session.add(
            SalesforceOAuthState(
                state_hash=_state_hash(state),
                code_verifier_encrypted=fernet.encrypt(verifier.encode()).decode(),
                redirect_uri=redirect_uri,
                requested_by=requested_by[:100],
                created_at=now,
                expires_at=now + STATE_TTL,
            )
        )
    query = urlencode(
        {
            "response_type": "code",
            "client_id": app.client_id,
            "redirect_uri": redirect_uri,
            "scope": app.scope,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    return f"{app.login_url}/services/oauth2/authorize?{query}"


def complete_authorization(database_url: str, settings: ApiSettings, code: str, state: str) -> dict:
    """Check and consume ``state``, exchange ``code`` for tokens and store the refresh token
    encrypted. Returns what was connected (never a token)."""
    app = settings.salesforce
    _require_app(app, need_secret=True)
    try:
        fernet = settings.fernet()
    except ValueError as exc:
        raise ApiError(503, "TOKEN_KEY_NOT_CONFIGURED", str(exc)) from None
    with session_scope(database_url) as session:
        # Consumed in the same statement it is found: a replayed callback finds nothing.
        pending = session.execute(
            delete(SalesforceOAuthState)
            .where(SalesforceOAuthState.state_hash == _state_hash(state))
            .returning(
                SalesforceOAuthState.code_verifier_encrypted,
                SalesforceOAuthState.redirect_uri,
                SalesforceOAuthState.requested_by,
                SalesforceOAuthState.expires_at,
            )
        ).first()
    if pending is None:
        raise ApiError(400, "INVALID_STATE", "Unknown or already used OAuth state; start again from .../authorize")
    expires_at = pending.expires_at if pending.expires_at.tzinfo else pending.expires_at.replace(tzinfo=UTC)
    if expires_at < utcnow():
        raise ApiError(400, "INVALID_STATE", "The OAuth state has expired (10 minutes); start again from .../authorize")
    try:
        verifier = fernet.decrypt(pending.code_verifier_encrypted.encode()).decode()
    except InvalidToken:
        raise ApiError(
            500, "TOKEN_KEY_CHANGED", "HOTCRM_TOKEN_KEY changed during the round trip; start again"
        ) from None
    tokens = _exchange_code(app, code, verifier, pending.redirect_uri)
    connected_at = utcnow()
    with session_scope(database_url) as session:
        record = session.get(SalesforceCredential, DEFAULT_CONNECTION)
        if record is None:
            record = SalesforceCredential(name=DEFAULT_CONNECTION)
            session.add(record)
        record.instance_url = tokens["instance_url"]
        record.refresh_token_encrypted = fernet.encrypt(tokens["refresh_token"].encode()).decode()
        record.identity_url = tokens.get("id")
        record.scope = tokens.get("scope")
        record.connected_by = pending.requested_by
        record.connected_at = connected_at
    return {
        "connection": DEFAULT_CONNECTION,
        "instanceUrl": tokens["instance_url"],
        "scope": tokens.get("scope"),
        "connectedBy": pending.requested_by,
        "connectedAt": connected_at.isoformat(),
    }


def _exchange_code(app: SalesforceApp, code: str, verifier: str, redirect_uri: str) -> dict:
    """POST the authorization code to the org's token endpoint; ApiError 502 with the org's reason."""
    url = f"{app.login_url}/services/oauth2/token"
    try:
        response = httpx.post(
            url,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "client_id": app.client_id,
                "client_secret": app.client_secret,
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            },
            headers={"Accept": "application/json"},
            timeout=TOKEN_TIMEOUT_SECONDS,
            verify=app.ca_bundle or True,
        )
    except httpx.HTTPError as exc:
        raise ApiError(502, "SALESFORCE_UNREACHABLE", f"Could not reach {url}: {type(exc).__name__}") from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200:
        # Salesforce's own error code and description name the problem (bad code, PKCE mismatch...).
        reason = body.get("error_description") or body.get("error") or f"HTTP {response.status_code}"
        raise ApiError(502, "SALESFORCE_TOKEN_EXCHANGE_FAILED", f"Salesforce refused the code exchange: {reason}")
    if not isinstance(body, dict) or not body.get("refresh_token") or not body.get("instance_url"):
        raise ApiError(
            502,
            "SALESFORCE_TOKEN_EXCHANGE_FAILED",
            "Salesforce gave no refresh token: add the 'refresh_token' (offline access) scope to the connected app",
        )
    return body


@dataclass(frozen=True)
class SalesforceConnection:
    """The stored org connection, decrypted."""

    instance_url: str
    refresh_token: str = field(repr=False)
    identity_url: str | None
    scope: str | None


def load_connection(database_url: str, key: str, name: str = DEFAULT_CONNECTION) -> SalesforceConnection | None:
    """The connected org (instance URL, refresh token...) or None when no org is connected.

    ValueError when ``key`` cannot decrypt the stored token (the key changed: connect again).
    """
    fernet = make_fernet(key)
    with session_scope(database_url) as session:
        record = session.scalars(select(SalesforceCredential).where(SalesforceCredential.name == name)).first()
        if record is None:
            return None
        try:
            token = fernet.decrypt(record.refresh_token_encrypted.encode()).decode()
        except InvalidToken:
            raise ValueError(
                "the stored Salesforce refresh token cannot be decrypted with this HOTCRM_TOKEN_KEY; "
                "use the key it was stored with, or connect the org again "
                "(GET /hotcrm/api/v1/oauth/salesforce/authorize)"
            ) from None
        return SalesforceConnection(record.instance_url, token, record.identity_url, record.scope)


def load_refresh_token(database_url: str, key: str) -> str | None:
    """The stored Salesforce refresh token, decrypted with ``key`` (``HOTCRM_TOKEN_KEY``).

    None when no org is connected; ValueError when the key cannot decrypt it."""
    connection = load_connection(database_url, key)
    return connection.refresh_token if connection else None
