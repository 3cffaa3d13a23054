"""``python -m hotcrm maintenance purge``: apply the retention rules now (what the daily DAG does)."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    """Add the ``maintenance`` command group."""
    group = subparsers.add_parser("maintenance", help="retention of bookkeeping rows")
    actions = group.add_subparsers(dest="action", required=True)
    purge = actions.add_parser(
        "purge", help="delete finished bookkeeping rows past their age (include/config/retention.json)"
    )
    purge.add_argument("--dry-run", action="store_true", help="count what would be removed, remove nothing")
    purge.add_argument("--rule", action="append", dest="rules", default=[], help="only this rule (repeatable)")
    purge.add_argument("--config", default=None, help="another retention settings file")
    purge.set_defaults(handler=_purge)


def _purge(args) -> int:
    from hotcrm.maintenance.retention import load_config, purge

    summary = purge(args.database_url, load_config(args.config), only=args.rules or None, dry_run=args.dry_run)
    print(json.dumps(summary, indent=2))
    return 0
