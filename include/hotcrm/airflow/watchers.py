"""Event triggers for Airflow's ``AssetWatcher``: they run in the triggerer and fire asset events.

:class:`LeadFilesTrigger` lists ``imports/leads/incoming/`` of the import bucket every few
seconds and fires when lead files are waiting there; the ``hotcrm_lead_files`` asset
(:mod:`hotcrm.airflow.assets`) carries it as its watcher and ``lead_import`` is scheduled on
that asset. The trigger runs for as long as the asset is watched (an ``AssetWatcher``'s
trigger is not a one-shot wait): each event is one new batch of files.

This module is imported at DAG parse time (through the assets): it imports only Airflow's
trigger base class at the top.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from hotcrm.leads.bucket import LEADS_PREFIX, is_lead_file_name

INCOMING_PREFIX = f"{LEADS_PREFIX}/incoming"
STATE_KEY = "fired"  # the asset state store's key for what the watcher fired for


class LeadFilesTrigger(BaseEventTrigger):
    """Fires when lead files are waiting in ``incoming/``, once per file (not at every listing).

    - ``bucket_url``: the bucket root (``file://`` or ``s3://``); ``None`` reads
      ``HOTCRM_BUCKET_URL`` in the triggerer, so DAG files read no environment at parse time.
      Remote buckets use the ``conn_id`` connection, as the import does.
    - A file fires once: the trigger remembers each file it fired for (name, size, modified
      time or ETag), so the listings taken while the import runs fire nothing. A file that is
      replaced (same name, other content) fires again; one still waiting ``refire_after``
      seconds after its event (its run failed before moving it) fires again. That memory is
      kept in the asset's state store (Airflow 3.3, the metadata database), so a restarted
      triggerer does not fire again for the files it fired for before.
    - A file still being written does not fire: on a local disk a file fires once it is
      untouched for ``settle`` seconds (when one is settling, the next listing comes after
      ``settle`` seconds, not ``poll_interval``); names like ``*.part``, ``*.tmp`` or
      ``.hidden`` never fire. An S3 object is listed only once its upload completed, so it
      fires at the first listing that shows it.
    - The payload names the files (``{"files": [{"name", "size"}], "incoming": URL}``); the
      DAG imports those (see :func:`hotcrm.airflow.leads.files_to_import`).
    - A listing that fails (network, credentials) is logged and retried at the next interval;
      the watcher does not stop.
    """

    def __init__(
        self,
        *,
        bucket_url: str | None = None,
        conn_id: str = "hotcrm_bucket",
        poll_interval: float = 5.0,
        settle: float = 2.0,
        refire_after: float = 3600.0,
    ) -> None:
        super().__init__()
        self.bucket_url = bucket_url
        self.conn_id = conn_id
        self.poll_interval = poll_interval
        self.settle = settle
        self.refire_after = refire_after

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The class path and the arguments that rebuild this trigger in the triggerer."""
        return (
            "hotcrm.airflow.watchers.LeadFilesTrigger",
            {
                "bucket_url": self.bucket_url,
                "conn_id": self.conn_id,
                "poll_interval": self.poll_interval,
                "settle": self.settle,
                "refire_after": self.refire_after,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """List ``incoming/`` every ``poll_interval`` seconds; yield one event per new batch."""
        watch = IncomingWatch(settle=self.settle, refire_after=self.refire_after)
        watch.restore(await self._state("aget", STATE_KEY))
        incoming = url = None
        last_error = ""
        while True:
            try:
                if incoming is None:
                    incoming = await asyncio.to_thread(self._incoming)
                    # The URL without the connection id that str() of the path would show.
                    url = f"{getattr(incoming, 'protocol', 'file')}://{incoming.path}"
                    self.log.info("Watching %s for lead files every %ss", url, self.poll_interval)
                listing = await asyncio.to_thread(list_lead_files, incoming)
            except Exception as exc:  # noqa: BLE001 - a listing that fails is retried, never fatal
                message = f"{type(exc).__name__}: {exc}"
                if message != last_error:  # once per distinct error, not every few seconds
                    self.log.warning("Cannot list the incoming lead files (retrying): %s", message)
                last_error = message
            else:
                last_error = ""
                fired_before = dict(watch.fired)
                batch = watch.update(listing, time.time(), local=getattr(incoming, "protocol", "file") == "file")
                if watch.fired != fired_before:  # saved before the event: a restart after it fires nothing again
                    await self._state("aset", STATE_KEY, watch.saved())
                if batch:
                    self.log.info("%d lead file(s) waiting: %s", len(batch), [f["name"] for f in batch])
                    yield TriggerEvent({"files": batch, "incoming": url})
            await asyncio.sleep(min(self.settle, self.poll_interval) if watch.settling else self.poll_interval)

    async def _state(self, method: str, *args: Any) -> Any:
        """Read or write the watched asset's state store; without one (outside a triggerer, or
        a triggerer that injects none), or when it fails, the memory is this process's only."""
        store = getattr(self, "asset_state_store", None)
        if store is None:
            return None
        try:
            return await getattr(store, method)(*args)
        except Exception as exc:  # noqa: BLE001 - losing the memory costs an extra run, not a file
            self.log.warning("Asset state store %s failed (%s: %s)", method, type(exc).__name__, exc)
            return None

    def _incoming(self) -> Any:
        from hotcrm.airflow.leads import lead_folders
        from hotcrm.airflow.storage import bucket_root

        return lead_folders(bucket_root(self.bucket_url, conn_id=self.conn_id))["incoming"]


class IncomingWatch:
    """What has fired: decides, listing after listing, which files make a new event."""

    def __init__(self, *, settle: float, refire_after: float) -> None:
        self.settle = settle
        self.refire_after = refire_after
        self.settling = False  # a local file was seen that may still be written
        self.previous: dict[str, tuple] = {}
        self.fired: dict[str, tuple[tuple, float]] = {}  # name -> (signature, when it fired)

    def update(self, listing: dict[str, dict[str, Any]], now: float, *, local: bool) -> list[dict[str, Any]]:
        """The files of ``listing`` (name -> size, signature, mtime) that fire now."""
        batch = []
        self.settling = False
        for name, info in sorted(listing.items()):
            signature = info["signature"]
            fired = self.fired.get(name)
            if not (fired is None or fired[0] != signature or now - fired[1] >= self.refire_after):
                continue
            # A local file may still be written: it must hold still for ``settle`` seconds.
            if local and now - info["mtime"] < self.settle and self.previous.get(name) != signature:
                self.settling = True
                continue
            self.fired[name] = (signature, now)
            batch.append({"name": name, "size": info["size"]})
        self.previous = {name: info["signature"] for name, info in listing.items()}
        # A file that left incoming/ (imported) is forgotten: the same name dropped again fires.
        self.fired = {name: value for name, value in self.fired.items() if name in listing}
        return batch

    def saved(self) -> dict[str, Any]:
        """What has fired, as JSON for the asset state store."""
        return {name: {"signature": list(sig), "fired_at": at} for name, (sig, at) in self.fired.items()}

    def restore(self, saved: Any) -> None:
        """Take back what :meth:`saved` gave (anything else is ignored: nothing has fired)."""
        if not isinstance(saved, dict):
            return
        for name, value in saved.items():
            try:
                self.fired[name] = (tuple(value["signature"]), float(value["fired_at"]))
            except (TypeError, KeyError, ValueError):
                continue


def list_lead_files(incoming: Any) -> dict[str, dict[str, Any]]:
    """The lead files in ``incoming`` (an ``ObjectStoragePath``): name -> size, mtime, signature.

    One listing call (no per-file request), uncached: s3fs would otherwise answer from its
    listing cache, which never sees a new upload.
    """
    if getattr(incoming, "protocol", "file") == "file":
        return _list_local(incoming.path, is_lead_file_name)
    fs = incoming.fs
    fs.invalidate_cache(incoming.path)
    try:
        entries = fs.ls(incoming.path, detail=True)
    except FileNotFoundError:  # no object under the prefix yet
        return {}
    found = {}
    for entry in entries:
        name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        if entry.get("type") != "file" or not is_lead_file_name(name):
            continue
        modified = entry.get("LastModified")
        mtime = modified.timestamp() if hasattr(modified, "timestamp") else 0.0
        found[name] = {
            "size": int(entry.get("size") or 0),
            "mtime": mtime,
            "signature": (entry.get("size"), entry.get("ETag") or mtime),
        }
    return found


def _list_local(folder: str, wanted) -> dict[str, dict[str, Any]]:
    """A local folder's entries other than folders (links and special files too: the import
    refuses those with a report, so they must start a run as well)."""
    import os
    import stat

    found = {}
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return {}
    for entry in entries:
        if not wanted(entry.name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:  # moved away between the listing and the stat
            continue
        if stat.S_ISDIR(st.st_mode):
            continue
        found[entry.name] = {
            "size": st.st_size,
            "mtime": st.st_mtime,
            "signature": (st.st_size, st.st_mtime_ns, st.st_ino),
        }
    return found
