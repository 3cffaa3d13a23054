"""``python -m hotcrm subscriptions ...``: manage webhook subscriptions and replay dead letters.

The secret is printed once, by ``add``; ``list`` never shows it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hotcrm.crm.db import session_scope


def register(subparsers) -> None:
    """Add the ``subscriptions`` command group."""
    subs = subparsers.add_parser("subscriptions", help="outbound webhook subscriptions, dead letters and replay")
    actions = subs.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="subscribe a URL to event types (prints the new whsec_ secret once)")
    add.add_argument("url", help="https://... endpoint that receives POSTs")
    add.add_argument(
        "--events", required=True, help="comma-separated event types, e.g. lead.converted,payment.received, or '*'"
    )
    add.add_argument("--description", default=None)
    add.set_defaults(handler=_add)
    actions.add_parser("list", help="list subscriptions (without secrets)").set_defaults(handler=_list)
    disable = actions.add_parser("disable", help="stop delivering to a subscription")
    disable.add_argument("id")
    disable.add_argument("--reason", default=None)
    disable.set_defaults(handler=_disable)
    enable = actions.add_parser("enable", help="resume delivering to a subscription")
    enable.add_argument("id")
    enable.set_defaults(handler=_enable)
    dead = actions.add_parser("dead-letters", help="list dead-lettered deliveries")
    dead.add_argument("--limit", type=int, default=50)
    dead.set_defaults(handler=_dead_letters)
    replay = actions.add_parser("replay", help="replay dead-lettered deliveries by id or by time range")
    replay.add_argument("--id", action="append", dest="ids", default=[], help="delivery id (repeatable)")
    replay.add_argument("--since", default=None, help="dead-lettered at or after (ISO 8601, UTC if no offset)")
    replay.add_argument("--until", default=None, help="dead-lettered before (ISO 8601)")
    replay.set_defaults(handler=_replay)


def _time(value: str | None, flag: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{flag} {value!r}: use ISO 8601, e.g. 2026-11-25T10:00:00+00:00") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _add(args) -> int:
    from hotcrm.delivery.service import add_subscription

    events = [e.strip() for e in args.events.split(",") if e.strip()]
    with session_scope(args.database_url) as session:
        sub = add_subscription(session, args.url, events, description=args.description)
        print(f"subscription {sub.id}: {sub.url} <- {', '.join(sub.event_types)}")
        # Shown once, for the subscriber's configuration; never logged.
        print(f"signing secret (store it in the subscriber now; it is not shown again): {sub.secret}")
    return 0


def _list(args) -> int:
    from hotcrm.delivery.service import list_subscriptions

    with session_scope(args.database_url) as session:
        subs = list_subscriptions(session)
        if not subs:
            print("no subscriptions; add one with `python -m hotcrm subscriptions add URL --events ...`")
        for sub in subs:
            state = "active" if sub.active else f"disabled ({sub.disabled_reason})"
            print(f"{sub.id}  {state:<10}  {sub.url}  events={','.join(sub.event_types)}")
    return 0


def _disable(args) -> int:
    from hotcrm.delivery.service import set_active

    with session_scope(args.database_url) as session:
        sub = set_active(session, args.id, False, args.reason)
    print(f"subscription {sub.id} disabled")
    return 0


def _enable(args) -> int:
    from hotcrm.delivery.service import set_active

    with session_scope(args.database_url) as session:
        sub = set_active(session, args.id, True)
    print(f"subscription {sub.id} enabled")
    return 0


def _dead_letters(args) -> int:
    from sqlalchemy import select

    from hotcrm.delivery.models import DEAD, WebhookDelivery

    with session_scope(args.database_url) as session:
        rows = list(
            session.scalars(
                select(WebhookDelivery)
                .where(WebhookDelivery.status == DEAD)
                .order_by(WebhookDelivery.dead_at.desc())
                .limit(args.limit)
            )
        )
        for d in rows:
            print(f"{d.id}  {d.dead_at:%Y-%m-%dT%H:%M:%S}  {d.event_type}  attempts={d.attempts}  {d.last_error}")
        print(f"{len(rows)} dead letter(s) shown")
    return 0


def _replay(args) -> int:
    from hotcrm.delivery.service import replay

    with session_scope(args.database_url) as session:
        count = replay(
            session, ids=args.ids or None, since=_time(args.since, "--since"), until=_time(args.until, "--until")
        )
    print(f"{count} dead-lettered deliveries are due again; the next webhook_delivery run sends them")
    return 0
