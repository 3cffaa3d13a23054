"""``python -m hotcrm email ...``: the email outbox, and decisions on held messages."""

from __future__ import annotations

from hotcrm.crm.db import session_scope


def register(subparsers) -> None:
    """Add the ``email`` command group."""
    group = subparsers.add_parser("email", help="the email outbox: list, confirm or requeue messages")
    actions = group.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="messages, newest first")
    listing.add_argument("--status", default=None, help="queued, sending, sent, failed or unconfirmed")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(handler=_list)
    for action, text in (
        ("confirm", "mark a held message as sent (found in the mail server's log by its Message-ID)"),
        ("requeue", "send a held or failed message again"),
    ):
        parser = actions.add_parser(action, help=text)
        parser.add_argument("id")
        parser.set_defaults(handler=_decide, decision=action)


def _list(args) -> int:
    from sqlalchemy import select

    from hotcrm.email.models import EmailOutbox

    with session_scope(args.database_url) as session:
        query = select(EmailOutbox).order_by(EmailOutbox.created_at.desc()).limit(args.limit)
        if args.status:
            query = query.where(EmailOutbox.status == args.status)
        rows = list(session.scalars(query))
        for r in rows:
            error = r.last_error or ""
            print(f"{r.id}  {r.status:<11}  {r.kind:<18}  {r.to_addr}  {r.subject!r}  {r.message_id}  {error}")
        print(f"{len(rows)} message(s) shown")
    return 0


def _decide(args) -> int:
    from hotcrm.email.outbox import set_status
    from hotcrm.email.settings import load_settings

    with session_scope(args.database_url) as session:
        row = set_status(session, args.id, args.decision, load_settings())
        print(f"email {row.id}: {row.status}")
    return 0
