"""Account exports: validated filters, streaming JSON/NDJSON/CSV writers, atomic publish, manifest.

The flow is three steps, each usable on its own (the DAG runs them as three tasks, the CLI
and the benchmark in one process):

1. :func:`hotcrm.exports.accounts.write_export` streams the matching Accounts with a
   server-side cursor into a temporary object under ``exports/accounts/_tmp/``;
2. :func:`hotcrm.exports.accounts.check_export` runs the ``account_export`` Great
   Expectations suite on the per-segment statistics gathered while writing;
3. :func:`hotcrm.exports.accounts.publish_export` moves the file to its published name,
   writes the manifest beside it and records an ``export.completed`` outbox event.

This package imports no Airflow: storage is any fsspec-backed path (``ObjectStoragePath``
in the DAG, ``upath.UPath`` elsewhere).
"""
