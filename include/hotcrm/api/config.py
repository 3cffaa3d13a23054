"""The REST API's settings, read once from the environment (or passed in by a caller).

| setting | environment variable | default |
|---|---|---|
| bearer token lifetime | ``HOTCRM_API_TOKEN_TTL`` (seconds) | 900 |
| token audience | ``HOTCRM_API_AUDIENCE`` | ``hotcrm-api`` |
| token signing secret | ``HOTCRM_API_JWT_SECRET`` | a random secret kept in the database |
| default rate limit | ``HOTCRM_API_RATE_LIMIT`` (``requests/seconds``) | ``100/60`` |
| per-route limits | ``HOTCRM_API_RATE_LIMITS`` (``leads.create=200/60,leads.convert=20/60``) | none |
| request body limit | ``HOTCRM_API_MAX_BODY_BYTES`` | 65536 |
| API-key verification cache (revocation delay) | ``HOTCRM_API_KEY_CACHE_TTL`` (seconds, 0: off) | 5 |
| PostgreSQL connections per process (async) | ``HOTCRM_API_DB_POOL_SIZE`` | 10 |
| encryption key(s) of stored tokens | ``HOTCRM_TOKEN_KEY`` (Fernet key; comma-separated to rotate) | none |
| Salesforce connected app | ``HOTCRM_SALESFORCE_`` + ``LOGIN_URL``, ``CLIENT_ID``, ``CLIENT_SECRET``, |  |
|  | ``REDIRECT_URI``, ``SCOPE``, ``CA_BUNDLE`` | login.salesforce.com |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.fernet import MultiFernet

from hotcrm.crypto import make_fernet
from hotcrm.settings import env_number, secret

ROUTE_NAMES = (
    "leads.create",
    "leads.read",
    "leads.convert",
    "imports.read",
    "oauth.token",
    "salesforce.authorize",
    # Failed authentications (hotcrm.api.throttle): per source address, per OAuth client.
    "auth.failures",
    "oauth.client_failures",
)


@dataclass(frozen=True)
class RateLimit:
    """``requests`` per ``seconds`` for one credential on one route."""

    requests: int
    seconds: int

    @classmethod
    def parse(cls, text: str, *, setting: str) -> RateLimit:
        """``"100/60"`` -> RateLimit(100, 60); ValueError naming ``setting`` otherwise."""
        try:
            requests, seconds = (int(part) for part in text.strip().split("/"))
        except ValueError:
            raise ValueError(f"{setting}: {text!r} is not a rate limit; write requests/seconds, e.g. 100/60") from None
        if requests < 1 or seconds < 1:
            raise ValueError(f"{setting}: {text!r} needs at least 1 request per at least 1 second")
        return cls(requests, seconds)

    def __str__(self) -> str:
        return f"{self.requests}/{self.seconds}"


@dataclass(frozen=True)
class SalesforceApp:
    """The Salesforce connected app the org is connected through (client secret included)."""

    login_url: str = "https://login.salesforce.com"
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    redirect_uri: str | None = None
    scope: str = "api refresh_token"
    # CA bundle to verify the org's certificate (a test CA); None = the system's.
    ca_bundle: str | None = None


@dataclass(frozen=True)
class ApiSettings:
    """Everything the REST API can be configured with."""

    token_ttl_seconds: int = 900
    audience: str = "hotcrm-api"
    issuer: str = "hotcrm"
    jwt_secret: str | None = field(default=None, repr=False)
    default_rate_limit: RateLimit = RateLimit(100, 60)
    route_rate_limits: Mapping[str, RateLimit] = field(default_factory=dict)
    max_body_bytes: int = 64 * 1024
    # How long a process trusts an API key it has verified: a key revoked elsewhere (the CLI,
    # another worker) is refused by every process at most this many seconds later. 0: no cache.
    key_cache_ttl_seconds: float = 5.0
    # Connections of the asynchronous PostgreSQL pool of each process (the request hot path).
    db_pool_size: int = 10
    token_key: str | None = field(default=None, repr=False)
    salesforce: SalesforceApp = SalesforceApp()

    def rate_limit(self, route: str, default: RateLimit | None = None) -> RateLimit:
        """The limit for ``route``: configured for it, else the route's own default, else the global one."""
        return self.route_rate_limits.get(route) or default or self.default_rate_limit

    def fernet(self) -> MultiFernet:
        """The cipher for stored tokens; ValueError saying how to set ``HOTCRM_TOKEN_KEY``."""
        return make_fernet(self.token_key)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ApiSettings:
        """Settings from ``HOTCRM_API_*``, ``HOTCRM_TOKEN_KEY`` and ``HOTCRM_SALESFORCE_*``. The three
        secrets are read with :func:`hotcrm.settings.secret` (Airflow's secrets backend where Airflow
        runs, else the environment); with an explicit ``env`` only that mapping is read."""
        secrets_env = env
        env = os.environ if env is None else env

        def integer(name: str, default: int, minimum: int = 1) -> int:
            return env_number(name, default, minimum=minimum, env=env)

        route_limits: dict[str, RateLimit] = {}
        for entry in filter(None, (e.strip() for e in env.get("HOTCRM_API_RATE_LIMITS", "").split(","))):
            route, _, limit = entry.partition("=")
            route = route.strip()
            if route not in ROUTE_NAMES:
                raise ValueError(
                    f"HOTCRM_API_RATE_LIMITS: unknown route {route!r} in {entry!r}; routes: {', '.join(ROUTE_NAMES)}"
                )
            route_limits[route] = RateLimit.parse(limit, setting=f"HOTCRM_API_RATE_LIMITS[{route}]")
        default_limit = env.get("HOTCRM_API_RATE_LIMIT")
        jwt_secret = secret("HOTCRM_API_JWT_SECRET", secrets_env)
        if jwt_secret is not None and len(jwt_secret.encode()) < 32:
            # RFC 7518 §3.2: an HS256 key must be at least as long as the hash (32 bytes).
            raise ValueError("HOTCRM_API_JWT_SECRET: use at least 32 bytes (e.g. `openssl rand -base64 48`)")
        return cls(
            token_ttl_seconds=integer("HOTCRM_API_TOKEN_TTL", 900),
            audience=env.get("HOTCRM_API_AUDIENCE") or "hotcrm-api",
            jwt_secret=jwt_secret,
            default_rate_limit=(
                RateLimit.parse(default_limit, setting="HOTCRM_API_RATE_LIMIT") if default_limit else RateLimit(100, 60)
            ),
            route_rate_limits=route_limits,
            max_body_bytes=integer("HOTCRM_API_MAX_BODY_BYTES", 64 * 1024),
            key_cache_ttl_seconds=integer("HOTCRM_API_KEY_CACHE_TTL", 5, minimum=0),
            db_pool_size=integer("HOTCRM_API_DB_POOL_SIZE", 10),
            token_key=secret("HOTCRM_TOKEN_KEY", secrets_env),
            salesforce=SalesforceApp(
                login_url=(env.get("HOTCRM_SALESFORCE_LOGIN_URL") or "https://login.salesforce.com").rstrip("/"),
                client_id=env.get("HOTCRM_SALESFORCE_CLIENT_ID") or None,
                client_secret=secret("HOTCRM_SALESFORCE_CLIENT_SECRET", secrets_env),
                redirect_uri=env.get("HOTCRM_SALESFORCE_REDIRECT_URI") or None,
                scope=env.get("HOTCRM_SALESFORCE_SCOPE") or "api refresh_token",
                ca_bundle=env.get("HOTCRM_SALESFORCE_CA_BUNDLE") or None,
            ),
        )


def get_settings(app) -> ApiSettings:
    """The settings of ``app``: ``app.state.api_settings`` if a caller set them, else the environment's (cached)."""
    settings = getattr(app.state, "api_settings", None)
    if settings is None:
        settings = ApiSettings.from_env()
        app.state.api_settings = settings
    return settings
