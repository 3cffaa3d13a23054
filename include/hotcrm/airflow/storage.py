"""The bucket root as an ``ObjectStoragePath``: ``file://`` by default, ``s3://`` in production."""

from __future__ import annotations

import os

from airflow.sdk import ObjectStoragePath

from hotcrm.settings import bucket_url

BUCKET_CONN_ID = "hotcrm_bucket"
# Executors whose tasks all run on the scheduler's machine; under any other (Celery,
# Kubernetes, Edge, ...) two tasks of one run may land on machines that share no disk.
LOCAL_EXECUTORS = {"LocalExecutor", "SequentialExecutor", "DebugExecutor"}
# Set to "true" when every worker mounts the same folder at the same path (NFS, EFS, ...).
SHARED_DISK_ENV = "HOTCRM_BUCKET_SHARED_DISK"


class BucketNotSharedError(RuntimeError):
    """A ``file://`` bucket under an executor whose workers share no disk."""


def remote_executors() -> list[str]:
    """The configured executors (``[core] executor``, a comma-separated list) that may run
    a task away from the scheduler's machine."""
    from airflow.configuration import conf

    names = [name.strip() for name in conf.get("core", "executor", fallback="LocalExecutor").split(",")]
    # "alias:module.Class" and "module.Class" both name a class last.
    return [name for name in names if name and name.split(":")[-1].rsplit(".", 1)[-1] not in LOCAL_EXECUTORS]


def check_bucket_shared(url: str) -> None:
    """Refuse a ``file://`` bucket when tasks may run on machines that share no disk: a file
    one task listed or wrote would be missing for the next task on another worker."""
    if not url.startswith("file://") or os.environ.get(SHARED_DISK_ENV, "").lower() in ("1", "true", "yes"):
        return
    remote = remote_executors()
    if remote:
        raise BucketNotSharedError(
            f"HOTCRM_BUCKET_URL={url} is a local folder, but the executor ({', '.join(remote)}) runs tasks on "
            "workers that share no disk: set HOTCRM_BUCKET_URL=s3://<bucket> (with the hotcrm_bucket connection) "
            f"on every component, or {SHARED_DISK_ENV}=true if every worker mounts this folder at the same path"
        )


def bucket_root(url: str | None = None, conn_id: str = BUCKET_CONN_ID) -> ObjectStoragePath:
    """The bucket named by ``HOTCRM_BUCKET_URL``; remote schemes use the ``hotcrm_bucket``
    connection for credentials (and an ``endpoint_url`` in its extra, for S3-compatible stores)."""
    url = url or bucket_url()
    check_bucket_shared(url)
    if url.startswith("file://"):
        root = ObjectStoragePath(url)
        root.mkdir(parents=True, exist_ok=True)
        return root
    return ObjectStoragePath(url, conn_id=conn_id)
