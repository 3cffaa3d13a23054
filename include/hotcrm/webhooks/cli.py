"""``python -m hotcrm webhooks ...``: inbox status, dead letters, requeue, process once."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    """Add the ``webhooks`` command group."""
    group = subparsers.add_parser("webhooks", help="the inbound webhook inbox: status, dead letters, requeue")
    actions = group.add_subparsers(dest="action", required=True)

    status = actions.add_parser("status", help="how many inbox rows are in each status")
    status.add_argument("--source", help="only this source")
    status.set_defaults(handler=_status)

    dead = actions.add_parser("dead", help="list dead letters with their last error")
    dead.add_argument("--source", help="only this source")
    dead.add_argument("--limit", type=int, default=50)
    dead.set_defaults(handler=_dead)

    requeue = actions.add_parser("requeue", help="put dead letters back to pending (after fixing the cause)")
    requeue.add_argument("--source", help="only this source's dead letters")
    requeue.add_argument("--event-id", action="append", dest="event_ids", help="only this event id (repeatable)")
    requeue.add_argument("--all", action="store_true", help="every dead letter (required without --event-id)")
    requeue.set_defaults(handler=_requeue)

    process = actions.add_parser("process", help="apply due inbox rows now, outside Airflow")
    process.add_argument("--batch-size", type=int, default=200)
    process.add_argument("--max-attempts", type=int, default=5)
    process.set_defaults(handler=_process)


def _status(args) -> int:
    from hotcrm.webhooks.inbox import status_counts

    counts = status_counts(args.database_url, args.source)
    print(", ".join(f"{status} {count}" for status, count in counts.items()))
    return 0


def _dead(args) -> int:
    from hotcrm.webhooks.inbox import dead_letters

    letters = dead_letters(args.database_url, args.source, args.limit)
    for letter in letters:
        print(
            f"{letter['source']} {letter['event_id']} {letter['event_type']} "
            f"attempts={letter['attempts']}: {letter['last_error']}"
        )
    if not letters:
        print("no dead letters")
    return 0


def _requeue(args) -> int:
    from hotcrm.webhooks.inbox import requeue

    if not args.event_ids and not args.all:
        raise ValueError("say which dead letters to requeue: --event-id ID (repeatable) or --all")
    count = requeue(args.database_url, source=args.source, event_ids=args.event_ids)
    print(f"requeued {count} dead letters; the next webhook_inbox run applies them")
    return 0


def _process(args) -> int:
    from hotcrm.webhooks.processing import process_inbox

    result = process_inbox(args.database_url, batch_size=args.batch_size, max_attempts=args.max_attempts)
    print(json.dumps(result.as_dict(), default=str))
    return 0
