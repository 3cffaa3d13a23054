"""The bucket root as an ``ObjectStoragePath``: ``file://`` by default, ``s3://`` in production."""

from __future__ import annotations

from airflow.sdk import ObjectStoragePath

from hotcrm.settings import bucket_url

BUCKET_CONN_ID = "hotcrm_bucket"


def bucket_root(url: str | None = None, conn_id: str = BUCKET_CONN_ID) -> ObjectStoragePath:
    """The bucket named by ``HOTCRM_BUCKET_URL``; remote schemes use the ``hotcrm_bucket``
    connection for credentials (and an ``endpoint_url`` in its extra, for S3-compatible stores)."""
    url = url or bucket_url()
    if url.startswith("file://"):
        root = ObjectStoragePath(url)
        root.mkdir(parents=True, exist_ok=True)
        return root
    return ObjectStoragePath(url, conn_id=conn_id)
