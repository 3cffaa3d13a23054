"""``hotcrm`` (or ``python -m hotcrm``): the operator's command line (database, keys, lead files,
subscriptions, requeues).

Each capability adds its commands in a module with ``register(subparsers)`` listed in
:data:`COMMAND_MODULES`. Commands take the database from ``--database-url``, else
:func:`hotcrm.settings.database_url` (the ``hotcrm_db`` connection, ``AIRFLOW_CONN_HOTCRM_DB``;
then ``HOTCRM_DATABASE_URL``; then the embedded SQLite file).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from hotcrm.settings import database_url

COMMAND_MODULES = [
    "hotcrm.crm.cli",
    "hotcrm.crm.secrets",
    "hotcrm.maintenance.cli",
    "hotcrm.api.cli",
    "hotcrm.webhooks.cli",
    "hotcrm.exports.cli",
    "hotcrm.leads.cli",
    "hotcrm.delivery.cli",
    "hotcrm.email.cli",
    "hotcrm.salesforce.cli",
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every capability's commands."""
    parser = argparse.ArgumentParser(prog="hotcrm", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=None,
        help="CRM database URL (default: the AIRFLOW_CONN_HOTCRM_DB connection, else HOTCRM_DATABASE_URL, "
        "else the embedded SQLite file)",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit code is returned."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.database_url = args.database_url or database_url()
    try:
        return int(args.handler(args) or 0)
    except (ValueError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
