"""``python -m hotcrm db ...``: create, migrate and seed the CRM database."""

from __future__ import annotations

from hotcrm.crm import migrate, seed


def register(subparsers) -> None:
    """Add the ``db`` command group."""
    db = subparsers.add_parser("db", help="create, migrate and seed the CRM database")
    actions = db.add_subparsers(dest="action", required=True)
    actions.add_parser("upgrade", help="apply every migration").set_defaults(handler=_upgrade)
    actions.add_parser("seed", help="load the sample records (idempotent)").set_defaults(handler=_seed)
    actions.add_parser("status", help="say whether every migration is applied").set_defaults(handler=_status)


def _upgrade(args) -> int:
    migrate.upgrade(args.database_url)
    print("CRM database is up to date")
    return 0


def _seed(args) -> int:
    counts = seed.load_seed(args.database_url)
    print("sample records loaded: " + ", ".join(f"{n} {name}" for name, n in counts.items()))
    return 0


def _status(args) -> int:
    if migrate.is_up_to_date(args.database_url):
        print("CRM database is up to date")
        return 0
    print(
        f"CRM database is at {sorted(migrate.current_heads(args.database_url))}; "
        f"expected {sorted(migrate.expected_heads())}: run `python -m hotcrm db upgrade`"
    )
    return 1
