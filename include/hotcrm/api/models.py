"""The REST API's bookkeeping tables: API keys, OAuth clients, rate-limit counters, the
JWT signing key, and the Salesforce org connection (refresh token encrypted).

Secrets are never stored in the clear: API keys and client secrets as SHA-256 hashes (they
are 256-bit random values, so a slow hash adds nothing), the JWT signing secret, the
Salesforce refresh token and the PKCE verifier encrypted with Fernet under ``HOTCRM_TOKEN_KEY``
(:mod:`hotcrm.crypto`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hotcrm.crm.models import ID_LENGTH, Base, new_id, utcnow
from hotcrm.crypto import EncryptedText


class ApiKey(Base):
    """A partner's API key (``X-API-Key``): its hash, scopes, optional expiry, revocation."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100))
    # The first characters of the key, shown by `apikeys list` so an operator can tell keys apart.
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class OAuthClient(Base):
    """An OAuth 2.0 client (client-credentials grant): public id, secret hash, scopes."""

    __tablename__ = "api_oauth_clients"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class RateLimitCounter(Base):
    """Requests one credential made on one route in one fixed window. Shared by every API
    server process, so a limit holds however many workers serve the API."""

    __tablename__ = "api_rate_limits"

    bucket: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hits: Mapped[int] = mapped_column(Integer, default=0)


class SigningKey(Base):
    """The bearer-token signing secret when ``HOTCRM_API_JWT_SECRET`` is not set: made once,
    shared by every API server process through the database, encrypted at rest
    (:class:`hotcrm.crypto.EncryptedText`)."""

    __tablename__ = "api_signing_keys"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    secret: Mapped[str] = mapped_column(EncryptedText)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SalesforceOAuthState(Base):
    """One pending ``authorize`` -> ``callback`` round trip: the state (hashed), the PKCE
    verifier (encrypted), where the org must send the browser back, and its deadline."""

    __tablename__ = "salesforce_oauth_states"

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    code_verifier_encrypted: Mapped[str] = mapped_column(Text)
    redirect_uri: Mapped[str] = mapped_column(String(1024))
    requested_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class SalesforceCredential(Base):
    """The connected Salesforce org: instance URL and the refresh token, Fernet-encrypted.
    The Salesforce hook reads it with :func:`hotcrm.api.salesforce_oauth.load_refresh_token`."""

    __tablename__ = "salesforce_oauth_credentials"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    instance_url: Mapped[str] = mapped_column(String(255))
    refresh_token_encrypted: Mapped[str] = mapped_column(Text)
    identity_url: Mapped[str | None] = mapped_column(String(255))
    scope: Mapped[str | None] = mapped_column(String(255))
    connected_by: Mapped[str | None] = mapped_column(String(100))
    connected_at: Mapped[datetime] = mapped_column(default=utcnow)
