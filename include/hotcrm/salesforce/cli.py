"""``python -m hotcrm salesforce ...``: the sync history and the records Salesforce refused."""

from __future__ import annotations


def register(subparsers) -> None:
    """Add the ``salesforce`` command group."""
    group = subparsers.add_parser("salesforce", help="Salesforce sync: history and failed records")
    actions = group.add_subparsers(dest="action", required=True)
    history = actions.add_parser("history", help="the latest sync runs, newest first")
    history.add_argument("--limit", type=int, default=20)
    history.set_defaults(handler=_history)
    failed = actions.add_parser("failed", help="records whose last sync failed, with Salesforce's error")
    failed.add_argument("--object", choices=["Account", "Contact"], default=None)
    failed.set_defaults(handler=_failed)


def history_lines(database_url: str, limit: int = 20) -> list[str]:
    """The sync history as aligned text lines."""
    from hotcrm.salesforce.sync import sync_history

    rows = sync_history(database_url, limit)
    lines = [
        f"{'started (UTC)':19}  {'object':7}  {'outcome':8}  {'created':>7}  {'updated':>7}  {'unchanged':>9}  "
        f"{'failed':>6}  {'skipped':>7}  {'calls':>5}  run"
    ]
    for r in rows:
        lines.append(
            f"{r['started_at']:%Y-%m-%d %H:%M:%S}  {r['object']:7}  {r['outcome']:8}  {r['created']:>7}  "
            f"{r['updated']:>7}  {r['unchanged']:>9}  {r['failed']:>6}  {r['skipped']:>7}  {r['api_calls']:>5}  "
            f"{r['run_id']}"
        )
    return lines


def _history(args) -> int:
    lines = history_lines(args.database_url, args.limit)
    print("\n".join(lines) if len(lines) > 1 else "no Salesforce sync has run yet")
    return 0


def _failed(args) -> int:
    from hotcrm.salesforce.sync import failed_records

    rows = failed_records(args.database_url, args.object)
    for r in rows:
        print(f"{r['object']} {r['hotcrm_id']}: {r['error_code']}: {r['error_message']} (attempts: {r['attempts']})")
    if not rows:
        print("no failed records")
    return 0
