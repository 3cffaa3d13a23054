"""The modes of the files the project writes on a local disk, and its temporary work folders.

* The CRM SQLite database (and its ``-wal``/``-shm`` files, which SQLite creates with the
  database's mode) and the embedded key file: **0600**, the owner only.
* Reports, rejects and exports written to a ``file://`` bucket: **0640**, the owner and its
  group (give the people who read them that group), never everyone.

On object storage (``s3://``) access is the bucket's policy; these modes do not apply.

Work folders (:func:`work_dir`) are made 0700 by :mod:`tempfile` and named after the process
that owns them, so the next run on the host removes those of processes that died (a killed
import) instead of leaving their spooled copies in the temporary directory.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DATABASE_FILE_MODE = 0o600
DATA_FILE_MODE = 0o640
# A work folder whose owner cannot be told (or whose pid may have been reused) goes after this long.
STALE_WORK_DIR_SECONDS = 6 * 3600


def local_path(path: Any, fs: Any = None) -> Path | None:
    """The local file behind ``path``: a ``Path``/``str`` (with a local or no ``fs``), a ``file://``
    ObjectStoragePath, or a path on a local fsspec filesystem; None for object storage."""
    if fs is not None:
        protocol = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
        return Path(str(path)) if {"file", "local"} & set(protocol) else None
    if isinstance(path, Path | str):
        return Path(path)
    if getattr(path, "protocol", None) in ("file", "local"):
        return Path(path.path)
    return None


def create_private(path: Any, fs: Any = None, mode: int = DATA_FILE_MODE) -> None:
    """Before writing ``path``: on a local disk, create it empty with ``mode`` (or set ``mode`` on the
    file about to be overwritten), so it is never readable by others, not even for a moment.
    Object storage: nothing to do."""
    local = local_path(path, fs)
    if local is None:
        return
    local.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(local, os.O_WRONLY | os.O_CREAT, mode)
    try:
        os.fchmod(descriptor, mode)  # the umask narrowed the create; an old file may be wider
    finally:
        os.close(descriptor)


def work_dir(prefix: str, base: str | Path | None = None) -> tempfile.TemporaryDirectory:
    """A temporary folder (0700) for one run, after removing the folders with ``prefix`` that runs
    which died left in ``base`` (default: the system's temporary directory)."""
    base = Path(base or tempfile.gettempdir())
    sweep_work_dirs(prefix, base)
    return tempfile.TemporaryDirectory(prefix=f"{prefix}{os.getpid()}-", dir=base)


def sweep_work_dirs(prefix: str, base: str | Path, *, now: float | None = None) -> list[Path]:
    """Remove this user's folders ``<base>/<prefix><pid>-*`` whose process is gone (or that are older
    than :data:`STALE_WORK_DIR_SECONDS` when the pid cannot tell); returns what was removed."""
    now = time.time() if now is None else now
    removed = []
    for entry in Path(base).glob(f"{prefix}*"):
        try:
            info = entry.lstat()
        except FileNotFoundError:
            continue
        if not entry.is_dir() or entry.is_symlink() or info.st_uid != os.getuid():
            continue
        pid_text = entry.name[len(prefix) :].split("-", 1)[0]
        pid = int(pid_text) if pid_text.isdigit() else None
        old = now - info.st_mtime > STALE_WORK_DIR_SECONDS
        if pid == os.getpid() or (pid is not None and _alive(pid) and not old) or (pid is None and not old):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
        log.info("removed %s, left behind by a run that did not finish (process %s)", entry, pid_text or "?")
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
