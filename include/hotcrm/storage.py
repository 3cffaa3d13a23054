"""The bucket root as a path object, without Airflow.

Core code takes any fsspec-backed path (``upath.UPath``, or Airflow's ``ObjectStoragePath``,
which is one). Where Airflow runs, :func:`hotcrm.airflow.storage.bucket_root` opens remote
buckets with the ``hotcrm_bucket`` connection and hands the root in; outside Airflow (the
``hotcrm`` command line, ``make demo``'s steps) :func:`bucket_root` opens it here: ``file://``
as a local folder, ``s3://`` with fsspec's own credential chain (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``, ``~/.aws``, an instance role; ``AWS_ENDPOINT_URL`` for an
S3-compatible store).
"""

from __future__ import annotations

from typing import Any

from hotcrm.settings import bucket_url

LOCAL_PROTOCOLS = ("file", "local")


def bucket_root(url: str | None = None) -> Any:
    """The bucket at ``url`` (default: ``HOTCRM_BUCKET_URL``); a ``file://`` root is created if missing."""
    from upath import UPath

    url = url or bucket_url()
    root = UPath(url)
    if is_local(root):
        root.mkdir(parents=True, exist_ok=True)
    return root


def is_local(path: Any) -> bool:
    """True for a path on the local disk (a ``pathlib.Path`` or a ``file://`` UPath/ObjectStoragePath)."""
    return getattr(path, "protocol", "file") in LOCAL_PROTOCOLS
