"""Credentials of the REST API: API keys (``X-API-Key``), OAuth 2.0 clients and the signed
short-lived bearer tokens they get from the client-credentials grant.

API keys and client secrets are 256-bit random strings shown once; only their SHA-256
hashes are stored. Bearer tokens are HS256 JWTs with issuer, audience, subject, scopes and a
short expiry; they are checked without a database round trip.

A process remembers an API key it has verified for ``HOTCRM_API_KEY_CACHE_TTL`` seconds
(default 5; 0 turns the cache off) in :data:`key_cache`: a key revoked by the CLI or another
process is refused everywhere at most that long after. A revocation in the same process
(:func:`revoke_api_key`) takes effect at once, and a key's own expiry is checked on every
request, cached or not. Unknown keys are never cached.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hotcrm.api.config import ApiSettings
from hotcrm.api.errors import ApiError
from hotcrm.api.models import ApiKey, OAuthClient, SigningKey
from hotcrm.crm.db import session_scope
from hotcrm.crm.models import utcnow

SCOPES = ("leads:read", "leads:write", "leads:convert", "salesforce:connect")
SCOPE_HELP = {
    "leads:read": "read leads and lead import files",
    "leads:write": "create leads",
    "leads:convert": "convert leads into accounts, contacts and opportunities",
    "salesforce:connect": "connect the Salesforce org (operators)",
}
API_KEY_PREFIX = "hck_"
CLIENT_ID_PREFIX = "hcc_"
JWT_ALGORITHM = "HS256"


def hash_secret(value: str) -> str:
    """SHA-256 hex digest of a key or client secret (they are random, so no salt or slow hash is needed)."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def parse_scopes(scopes: str | list[str] | tuple[str, ...], *, where: str = "scopes") -> list[str]:
    """Validate a list (or a space/comma-separated string) of scopes; ValueError naming the unknown ones."""
    items = scopes.replace(",", " ").split() if isinstance(scopes, str) else list(scopes)
    unknown = [s for s in items if s not in SCOPES]
    if unknown:
        raise ValueError(f"{where}: unknown scope(s) {', '.join(unknown)}; allowed: {', '.join(SCOPES)}")
    if not items:
        raise ValueError(f"{where}: give at least one scope; allowed: {', '.join(SCOPES)}")
    return sorted(set(items), key=SCOPES.index)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; every timestamp here is UTC.
    if value is not None and value.tzinfo is None:
        from datetime import UTC

        return value.replace(tzinfo=UTC)
    return value


@dataclass(frozen=True)
class Principal:
    """Who is calling: ``kind`` (``api_key`` or ``client``), a stable id for rate limits, a display name, scopes."""

    kind: str
    id: str
    name: str
    scopes: frozenset[str]
    # When the credential stops being valid (an API key's expiry), if it has one.
    expires_at: datetime | None = None

    @property
    def rate_key(self) -> str:
        """The rate-limit identity of this credential."""
        return f"{self.kind}:{self.id}"


# --- API keys ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatedKey:
    """A new API key: the key itself is only ever available here."""

    id: str
    name: str
    key: str
    scopes: list[str]
    expires_at: datetime | None


def create_api_key(
    database_url: str, name: str, scopes: list[str] | str, *, expires_at: datetime | None = None
) -> CreatedKey:
    """Create an API key with ``scopes`` (and an optional expiry); the key is returned once and stored hashed."""
    if not name or not name.strip() or len(name) > 100:
        raise ValueError("name: give the key a name of 1 to 100 characters (who or what uses it)")
    scope_list = parse_scopes(scopes)
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    with session_scope(database_url) as session:
        record = ApiKey(
            name=name.strip(),
            prefix=key[:12],
            key_hash=hash_secret(key),
            scopes=" ".join(scope_list),
            expires_at=expires_at,
        )
        session.add(record)
        session.flush()
        return CreatedKey(record.id, record.name, key, scope_list, expires_at)


def list_api_keys(database_url: str) -> list[dict]:
    """Every API key without its secret: id, name, prefix, scopes, created, expires, revoked."""
    with session_scope(database_url) as session:
        return [
            {
                "id": k.id,
                "name": k.name,
                "prefix": k.prefix,
                "scopes": k.scopes.split(),
                "created_at": _aware(k.created_at),
                "expires_at": _aware(k.expires_at),
                "revoked_at": _aware(k.revoked_at),
            }
            for k in session.scalars(select(ApiKey).order_by(ApiKey.created_at))
        ]


def revoke_api_key(database_url: str, key_id: str) -> None:
    """Revoke an API key: at once in this process, within ``HOTCRM_API_KEY_CACHE_TTL`` seconds in
    the API server processes; LookupError when no key has that id."""
    key_cache.forget(key_id)
    with session_scope(database_url) as session:
        done = session.execute(
            update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())
        ).rowcount
        if not done and session.get(ApiKey, key_id) is None:
            raise LookupError(f"no API key with id {key_id!r}; `python -m hotcrm apikeys list` shows the ids")


def authenticate_api_key(session: Session, key: str) -> Principal:
    """The principal for an ``X-API-Key`` value, or ApiError 403 INVALID_API_KEY (unknown, revoked or expired)."""
    record = session.scalars(select(ApiKey).where(ApiKey.key_hash == hash_secret(key))).first()
    if record is None:
        return _key_principal(None)
    return _key_principal((record.id, record.name, record.scopes, record.expires_at, record.revoked_at))


# The columns :func:`_key_principal` reads, for look-ups without the ORM.
API_KEY_LOOKUP_SQL = "SELECT id, name, scopes, expires_at, revoked_at FROM api_keys WHERE key_hash = %s"


def _key_principal(row: tuple | None) -> Principal:
    """The principal of an ``api_keys`` row (id, name, scopes, expires_at, revoked_at), or ApiError 403."""
    if row is None or row[4] is not None:
        raise ApiError(403, "INVALID_API_KEY", "The API key is not valid (unknown or revoked)")
    key_id, name, scopes, expires_at, _revoked_at = row
    principal = Principal("key", key_id, name, frozenset(scopes.split()), _aware(expires_at))
    check_key_expiry(principal)
    return principal


def check_key_expiry(principal: Principal) -> None:
    """ApiError 403 INVALID_API_KEY when the key has expired (cached or not, checked on every request)."""
    if principal.expires_at is not None and principal.expires_at <= utcnow():
        raise ApiError(403, "INVALID_API_KEY", "The API key has expired; ask an operator for a new one")


async def authenticate_api_key_async(connection, key: str) -> Principal:
    """:func:`authenticate_api_key` on an asynchronous psycopg connection (PostgreSQL hot path)."""
    cursor = await connection.execute(API_KEY_LOOKUP_SQL, (hash_secret(key),))
    return _key_principal(await cursor.fetchone())


class KeyCache:
    """API keys this process verified lately: key hash -> (principal, time it was verified).

    Entries live ``ttl`` seconds (the caller's setting), so a revocation made elsewhere is
    seen that much later at most; :meth:`forget` drops a key at once in this process.
    Bounded: when full it starts over (a cache miss only costs a look-up).
    """

    MAX_ENTRIES = 10_000

    def __init__(self, clock=time.monotonic) -> None:
        self._entries: dict[tuple[str, str], tuple[Principal, float]] = {}
        self._lock = threading.Lock()
        self.clock = clock

    def get(self, database_url: str, key_hash: str, ttl: float) -> Principal | None:
        """The cached principal of a key verified less than ``ttl`` seconds ago (its expiry checked), else None."""
        if ttl <= 0:
            return None
        entry = self._entries.get((database_url, key_hash))
        if entry is None:
            return None
        principal, verified_at = entry
        if self.clock() - verified_at >= ttl:
            self._entries.pop((database_url, key_hash), None)
            return None
        check_key_expiry(principal)
        return principal

    def put(self, database_url: str, key_hash: str, principal: Principal, ttl: float) -> None:
        """Remember a key just verified against the database."""
        if ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
            self._entries[(database_url, key_hash)] = (principal, self.clock())

    def forget(self, key_id: str) -> None:
        """Drop a key (by its id) from this process's cache: revoked here, refused here at once."""
        with self._lock:
            for cache_key in [k for k, (p, _t) in self._entries.items() if p.id == key_id]:
                del self._entries[cache_key]

    def clear(self) -> None:
        """Forget every key."""
        with self._lock:
            self._entries.clear()


key_cache = KeyCache()


# --- OAuth clients and bearer tokens -----------------------------------------------------


@dataclass(frozen=True)
class CreatedClient:
    """A new OAuth client: the secret is only ever available here."""

    id: str
    name: str
    client_id: str
    client_secret: str
    scopes: list[str]


def create_oauth_client(database_url: str, name: str, scopes: list[str] | str) -> CreatedClient:
    """Create an OAuth client allowed ``scopes``; the secret is returned once and stored hashed."""
    if not name or not name.strip() or len(name) > 100:
        raise ValueError("name: give the client a name of 1 to 100 characters")
    scope_list = parse_scopes(scopes)
    client_id = CLIENT_ID_PREFIX + secrets.token_hex(12)
    secret = secrets.token_urlsafe(32)
    with session_scope(database_url) as session:
        record = OAuthClient(
            client_id=client_id, name=name.strip(), secret_hash=hash_secret(secret), scopes=" ".join(scope_list)
        )
        session.add(record)
        session.flush()
        return CreatedClient(record.id, record.name, client_id, secret, scope_list)


def list_oauth_clients(database_url: str) -> list[dict]:
    """Every OAuth client without its secret."""
    with session_scope(database_url) as session:
        return [
            {
                "client_id": c.client_id,
                "name": c.name,
                "scopes": c.scopes.split(),
                "created_at": _aware(c.created_at),
                "revoked_at": _aware(c.revoked_at),
            }
            for c in session.scalars(select(OAuthClient).order_by(OAuthClient.created_at))
        ]


def revoke_oauth_client(database_url: str, client_id: str) -> None:
    """Revoke a client: it gets no new tokens (tokens already issued live until their short expiry)."""
    with session_scope(database_url) as session:
        done = session.execute(
            update(OAuthClient)
            .where(OAuthClient.client_id == client_id, OAuthClient.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        ).rowcount
        if not done and session.scalars(select(OAuthClient).where(OAuthClient.client_id == client_id)).first() is None:
            raise LookupError(
                f"no OAuth client with client_id {client_id!r}; `python -m hotcrm oauth-clients list` shows them"
            )


def find_client(session: Session, client_id: str) -> OAuthClient | None:
    """The OAuth client with that public id (active or revoked), or None."""
    return session.scalars(select(OAuthClient).where(OAuthClient.client_id == client_id)).first()


def check_client(record: OAuthClient | None, client_secret: str) -> OAuthClient:
    """``record`` when it is active and ``client_secret`` is its secret, or ApiError 401 INVALID_CLIENT
    (never saying which part is wrong)."""
    # Compare a hash even for an unknown client so the answer takes the same time.
    expected = record.secret_hash if record is not None else hash_secret(secrets.token_hex(16))
    if not hmac.compare_digest(expected, hash_secret(client_secret)) or record is None or record.revoked_at is not None:
        raise invalid_client("Client authentication failed (unknown client, wrong secret or revoked client)")
    return record


def invalid_client(message: str) -> ApiError:
    """401 INVALID_CLIENT with the Basic challenge."""
    return ApiError(401, "INVALID_CLIENT", message, headers={"WWW-Authenticate": 'Basic realm="hotcrm"'})


def authenticate_client(session: Session, client_id: str, client_secret: str) -> OAuthClient:
    """The active client with that id and secret, or ApiError 401 INVALID_CLIENT (never saying which part is wrong)."""
    return check_client(find_client(session, client_id), client_secret)


_signing_cache: dict[str, str] = {}


def cached_signing_secret(database_url: str) -> str | None:
    """The database-kept signing secret if this process has read it already, else None."""
    return _signing_cache.get(database_url)


def signing_secret(database_url: str, settings: ApiSettings) -> str:
    """The HS256 secret: ``HOTCRM_API_JWT_SECRET``, else one random secret kept in the database
    (created by the first process that needs it, so every worker signs and checks alike)."""
    if settings.jwt_secret:
        return settings.jwt_secret
    cached = _signing_cache.get(database_url)
    if cached:
        return cached
    for _attempt in range(2):
        try:
            with session_scope(database_url) as session:
                record = session.get(SigningKey, "jwt")
                if record is None:
                    record = SigningKey(name="jwt", secret=secrets.token_urlsafe(48))
                    session.add(record)
                    session.flush()
                secret = record.secret
            break
        except IntegrityError:
            continue  # another process created it first: read theirs
    _signing_cache[database_url] = secret
    return secret


def issue_token(
    secret: str,
    settings: ApiSettings,
    client_id: str,
    scopes: list[str],
    *,
    now: datetime | None = None,
) -> tuple[str, int]:
    """A signed bearer token for ``client_id`` with ``scopes``; returns (token, lifetime in seconds)."""
    issued = now or utcnow()
    claims = {
        "iss": settings.issuer,
        "aud": settings.audience,
        "sub": client_id,
        "scope": " ".join(scopes),
        "iat": int(issued.timestamp()),
        # Rounded up, so a token lives at least its lifetime (exp has whole-second resolution).
        "exp": math.ceil((issued + timedelta(seconds=settings.token_ttl_seconds)).timestamp()),
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM), settings.token_ttl_seconds


def verify_token(secret: str, settings: ApiSettings, token: str) -> Principal:
    """The principal of a bearer token, or ApiError 401 INVALID_TOKEN (expired, tampered, wrong audience...)."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[JWT_ALGORITHM],
            audience=settings.audience,
            issuer=settings.issuer,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise _invalid_token(
            "The bearer token has expired; get a new one from POST /hotcrm/api/v1/oauth/token"
        ) from None
    except jwt.InvalidAudienceError:
        raise _invalid_token("The bearer token is not meant for this API (wrong audience)") from None
    except jwt.InvalidTokenError:
        raise _invalid_token("The bearer token is not valid (malformed, tampered with or wrongly signed)") from None
    scope = claims.get("scope", "")
    if not isinstance(scope, str) or not isinstance(claims["sub"], str):
        raise _invalid_token("The bearer token is not valid (malformed claims)")
    return Principal("client", claims["sub"], claims["sub"], frozenset(scope.split()))


def _invalid_token(message: str) -> ApiError:
    return ApiError(401, "INVALID_TOKEN", message, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
