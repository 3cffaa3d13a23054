"""``python -m hotcrm apikeys ...`` and ``python -m hotcrm oauth-clients ...``: the REST API's
credentials. A new key or client secret is printed once and stored only as a hash."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hotcrm.api import auth

SCOPES_HELP = f"comma- or space-separated scopes out of: {', '.join(auth.SCOPES)}"


def register(subparsers) -> None:
    """Add the ``apikeys`` and ``oauth-clients`` command groups."""
    keys = subparsers.add_parser("apikeys", help="create, list and revoke REST API keys")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a key and print it once")
    create.add_argument("--name", required=True, help="who or what uses the key")
    create.add_argument("--scopes", required=True, help=SCOPES_HELP)
    expiry = create.add_mutually_exclusive_group()
    expiry.add_argument("--expires-in-days", type=int, help="the key stops working after this many days")
    expiry.add_argument("--expires-at", help="the key stops working at this time (ISO 8601, UTC if no offset)")
    create.set_defaults(handler=_create_key)
    actions.add_parser("list", help="list keys (never the keys themselves)").set_defaults(handler=_list_keys)
    revoke = actions.add_parser(
        "revoke", help="revoke a key (API servers refuse it within HOTCRM_API_KEY_CACHE_TTL seconds, default 5)"
    )
    revoke.add_argument("id", help="the key's id (from `apikeys list`)")
    revoke.set_defaults(handler=_revoke_key)

    clients = subparsers.add_parser("oauth-clients", help="create, list and revoke OAuth 2.0 clients")
    actions = clients.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a client and print its secret once")
    create.add_argument("--name", required=True, help="who or what uses the client")
    create.add_argument("--scopes", required=True, help=SCOPES_HELP)
    create.set_defaults(handler=_create_client)
    actions.add_parser("list", help="list clients (never their secrets)").set_defaults(handler=_list_clients)
    revoke = actions.add_parser("revoke", help="revoke a client: no new tokens")
    revoke.add_argument("client_id", help="the client_id (from `oauth-clients list`)")
    revoke.set_defaults(handler=_revoke_client)


def _expiry(args) -> datetime | None:
    if args.expires_in_days is not None:
        if args.expires_in_days < 1:
            raise ValueError("--expires-in-days: must be at least 1")
        return datetime.now(UTC) + timedelta(days=args.expires_in_days)
    if args.expires_at:
        try:
            value = datetime.fromisoformat(args.expires_at)
        except ValueError:
            raise ValueError(
                f"--expires-at: {args.expires_at!r} is not an ISO 8601 time, e.g. 2027-01-31T00:00"
            ) from None
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"


def _create_key(args) -> int:
    created = auth.create_api_key(args.database_url, args.name, args.scopes, expires_at=_expiry(args))
    print(
        f"API key {created.id} ({created.name}), scopes {' '.join(created.scopes)}, expires {_when(created.expires_at)}"
    )
    print("The key is shown only now; store it safely. Send it as the X-API-Key header:")
    print(created.key)
    return 0


def _status(record: dict) -> str:
    if record["revoked_at"]:
        return "revoked"
    if record.get("expires_at") and record["expires_at"] <= datetime.now(UTC):
        return "expired"
    return "active"


def _list_keys(args) -> int:
    records = auth.list_api_keys(args.database_url)
    if not records:
        print("no API keys; create one with `python -m hotcrm apikeys create --name ... --scopes ...`")
        return 0
    print(f"{'id':36}  {'prefix':12}  {'status':7}  {'expires':20}  {'scopes':40}  name")
    for r in records:
        print(
            f"{r['id']:36}  {r['prefix']:12}  {_status(r):7}  {_when(r['expires_at']):20}  "
            f"{' '.join(r['scopes']):40}  {r['name']}"
        )
    return 0


def _revoke_key(args) -> int:
    auth.revoke_api_key(args.database_url, args.id)
    print(
        f"API key {args.id} revoked; API server processes refuse it within their key cache lifetime "
        "(HOTCRM_API_KEY_CACHE_TTL, default 5 s)"
    )
    return 0


def _create_client(args) -> int:
    created = auth.create_oauth_client(args.database_url, args.name, args.scopes)
    print(f"OAuth client {created.name}, scopes {' '.join(created.scopes)}")
    print(f"client_id:     {created.client_id}")
    print(f"client_secret: {created.client_secret}")
    print(
        "The secret is shown only now. Get tokens with grant_type=client_credentials at POST /hotcrm/api/v1/oauth/token"
    )
    return 0


def _list_clients(args) -> int:
    records = auth.list_oauth_clients(args.database_url)
    if not records:
        print("no OAuth clients; create one with `python -m hotcrm oauth-clients create --name ... --scopes ...`")
        return 0
    print(f"{'client_id':28}  {'status':7}  {'created':20}  {'scopes':40}  name")
    for r in records:
        print(
            f"{r['client_id']:28}  {_status(r):7}  {_when(r['created_at']):20}  {' '.join(r['scopes']):40}  {r['name']}"
        )
    return 0


def _revoke_client(args) -> int:
    auth.revoke_oauth_client(args.database_url, args.client_id)
    print(f"OAuth client {args.client_id} revoked")
    return 0
