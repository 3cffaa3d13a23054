"""``python -m hotcrm export accounts ...``: an on-demand Account export from the command line.

Runs the same write -> check -> publish steps as the ``account_export`` DAG, in this process,
into the bucket named by ``--bucket-url`` / ``HOTCRM_BUCKET_URL`` (opened by
:func:`hotcrm.storage.bucket_root`: outside Airflow, ``s3://`` buckets take their credentials
from the environment's AWS settings, not from the ``hotcrm_bucket`` connection).
"""

from __future__ import annotations

import datetime as dt
import json
import logging

from hotcrm.exports.options import DEFAULT_FIELDS, DEFAULT_FORMAT, FORMATS


def register(subparsers) -> None:
    """Add the ``export`` command group."""
    export = subparsers.add_parser("export", help="export CRM records to the bucket")
    objects = export.add_subparsers(dest="object", required=True)
    parser = objects.add_parser(
        "accounts",
        help="export Accounts (JSON, NDJSON or CSV) to exports/accounts/ in the bucket",
        description="Export Accounts with optional fields and filters; prints the manifest.",
    )
    parser.add_argument(
        "--fields", default=None, help=f"comma-separated API names (default: {','.join(DEFAULT_FIELDS)})"
    )
    parser.add_argument(
        "--filter",
        dest="filter_entries",
        nargs=3,
        action="append",
        metavar=("FIELD", "OPERATOR", "VALUE"),
        default=[],
        help="a filter such as --filter AnnualRevenue '>=' 1000000 (repeatable; a VALUE starting with "
        "'[' is read as a JSON list, for 'in')",
    )
    parser.add_argument("--filters", default=None, help='filters as JSON: [["Industry", "=", "Retail"]]')
    parser.add_argument("--format", dest="fmt", choices=FORMATS, default=DEFAULT_FORMAT)
    parser.add_argument("--changed-since", default=None, help="only Accounts modified after this ISO 8601 time")
    parser.add_argument("--bucket-url", default=None, help="bucket root (default: HOTCRM_BUCKET_URL)")
    parser.set_defaults(handler=_export_accounts)


def _filters(args) -> list | None:
    from hotcrm.exports.accounts import FilterError

    filters = []
    if args.filters:
        try:
            filters.extend(json.loads(args.filters))
        except (json.JSONDecodeError, TypeError) as exc:
            raise FilterError(f"--filters is not a JSON list of [field, operator, value]: {exc}") from exc
    for field, op, value in args.filter_entries:
        filters.append([field, op, json.loads(value) if value.lstrip().startswith("[") else value])
    return filters or None


def _export_accounts(args) -> int:
    from hotcrm.exports import accounts
    from hotcrm.storage import bucket_root

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    spec = accounts.build_spec(args.fields, _filters(args), args.fmt, args.changed_since)
    # No Airflow run here: the export is named by the time it was asked for.
    name = accounts.export_name(spec, None, dt.datetime.now(dt.UTC))
    root = bucket_root(args.bucket_url)
    try:
        manifest = accounts.run_export(args.database_url, root, spec, name)
    except accounts.ExportCheckError as exc:
        print(f"error: {exc}")
        return 1
    print(json.dumps({k: v for k, v in manifest.items() if k != "quality"}, indent=2, default=str))
    return 0
