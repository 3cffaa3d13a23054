"""The lead-file watcher (``LeadFilesTrigger``) on a ``file://`` bucket and on moto's S3
server: when it fires, when it does not, what its events carry; and which files a run
started by its events imports (``files_to_import``)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from types import SimpleNamespace

import pytest

from hotcrm.airflow.leads import files_to_import
from hotcrm.airflow.watchers import IncomingWatch, LeadFilesTrigger

POLL = 0.2  # seconds between listings in these tests (5 s in the DAG)
INCOMING = "imports/leads/incoming"


class Watcher:
    """Drives the trigger's ``run()`` as the triggerer does (one task iterating it for good),
    collecting its events."""

    def __init__(self, trigger: LeadFilesTrigger) -> None:
        self.loop = asyncio.new_event_loop()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.task = self.loop.create_task(self._consume(trigger))

    async def _consume(self, trigger: LeadFilesTrigger) -> None:
        async for event in trigger.run():
            await self.queue.put(event.payload)

    def next_event(self, timeout: float) -> dict | None:
        """The next event's payload, or None when none comes within ``timeout`` seconds."""

        async def get():
            try:
                return await asyncio.wait_for(self.queue.get(), timeout)
            except TimeoutError:
                assert not self.task.done(), self.task  # the watcher must never stop by itself
                return None

        return self.loop.run_until_complete(get())

    def close(self) -> None:
        self.task.cancel()
        self.loop.run_until_complete(asyncio.gather(self.task, return_exceptions=True))
        self.loop.close()


@pytest.fixture
def local_watcher(tmp_path):
    root = tmp_path / "bucket"
    incoming = root / INCOMING
    incoming.mkdir(parents=True)
    watcher = Watcher(LeadFilesTrigger(bucket_url=root.as_uri(), poll_interval=POLL, settle=POLL))
    yield watcher, incoming
    watcher.close()


def _old(path, seconds: float = 60) -> None:
    """Make ``path`` look written ``seconds`` ago (a file whose upload finished)."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def names(payload: dict | None) -> list[str]:
    return [f["name"] for f in payload["files"]] if payload else []


def test_local_fires_once_per_file_with_names_and_sizes(local_watcher):
    watcher, incoming = local_watcher
    (incoming / "a.csv").write_text("Email\na@x.io\n")
    payload = watcher.next_event(timeout=5)
    assert payload["files"] == [{"name": "a.csv", "size": 13}]
    assert payload["incoming"].endswith(INCOMING)
    # Listings while the file waits (its import running) fire nothing.
    assert watcher.next_event(timeout=6 * POLL) is None
    # A second file fires alone.
    (incoming / "b.csv").write_text("Email\nb@x.io\n")
    assert names(watcher.next_event(timeout=5)) == ["b.csv"]


def test_local_ignores_partial_hidden_report_names_and_folders(local_watcher):
    watcher, incoming = local_watcher
    for name in ("up.csv.part", "x.tmp", ".hidden.csv", "a.csv.report.json", "a.rejects.csv"):
        (incoming / name).write_text("Email\n")
        _old(incoming / name)
    (incoming / "sub").mkdir()
    assert watcher.next_event(timeout=6 * POLL) is None
    # The upload tool renames its .part when done: now it fires.
    (incoming / "up.csv.part").rename(incoming / "up.csv")
    assert names(watcher.next_event(timeout=5)) == ["up.csv"]


def test_local_file_that_left_and_came_back_fires_again(local_watcher):
    watcher, incoming = local_watcher
    (incoming / "a.csv").write_text("Email\na@x.io\n")
    assert names(watcher.next_event(timeout=5)) == ["a.csv"]
    (incoming / "a.csv").unlink()  # imported: moved to processed/
    assert watcher.next_event(timeout=3 * POLL) is None
    (incoming / "a.csv").write_text("Email\nagain@x.io\n")
    assert names(watcher.next_event(timeout=5)) == ["a.csv"]


def test_local_links_fire_too(local_watcher, tmp_path):
    """The import refuses links unread, with a report: a link must start a run like a file."""
    watcher, incoming = local_watcher
    (incoming / "link.csv").symlink_to(tmp_path / "nowhere.csv")
    assert names(watcher.next_event(timeout=5)) == ["link.csv"]


def test_a_settling_file_is_listed_again_soon_not_after_the_whole_interval(tmp_path):
    """A local file too fresh to fire is looked at again after ``settle`` seconds, not after
    ``poll_interval``: the drop fires in about ``settle``."""
    incoming = tmp_path / INCOMING
    incoming.mkdir(parents=True)
    (incoming / "a.csv").write_text("Email\n")  # just written: the first listing finds it fresh
    began = time.monotonic()
    watcher = Watcher(LeadFilesTrigger(bucket_url=tmp_path.as_uri(), poll_interval=5.0, settle=1.0))
    try:
        assert names(watcher.next_event(timeout=10)) == ["a.csv"]
        assert time.monotonic() - began < 3.5  # 1 s to settle (5 s if it waited for the next poll)
    finally:
        watcher.close()


def test_file_still_being_written_waits_until_it_holds_still():
    """A local file fires once untouched for ``settle`` seconds (or unchanged across two
    listings); an S3 object at once (it is listed only when its upload completed)."""
    watch = IncomingWatch(settle=5, refire_after=3600)

    def listing(size, mtime):
        return {"a.csv": {"size": size, "mtime": mtime, "signature": (size, mtime)}}

    assert watch.update(listing(100, 1000.0), 1000.5, local=True) == []  # just written
    assert watch.update(listing(200, 1004.9), 1005.0, local=True) == []  # still growing
    assert watch.update(listing(200, 1004.9), 1010.0, local=True) == [{"name": "a.csv", "size": 200}]
    assert watch.update(listing(200, 1004.9), 1015.0, local=True) == []  # fired already
    # Untouched for an interval: a file that was complete before the watcher started.
    assert IncomingWatch(settle=5, refire_after=3600).update(listing(7, 900.0), 1000.0, local=True)
    assert IncomingWatch(settle=5, refire_after=3600).update(listing(7, 999.9), 1000.0, local=False)
    # While a file settles the watcher says so (it lists again sooner); not once it fired.
    watch = IncomingWatch(settle=5, refire_after=3600)
    watch.update(listing(1, 1000.0), 1000.5, local=True)
    assert watch.settling
    watch.update(listing(1, 1000.0), 1006.0, local=True)
    assert not watch.settling


def test_replaced_or_long_waiting_file_fires_again():
    watch = IncomingWatch(settle=5, refire_after=3600)
    first = {"a.csv": {"size": 5, "mtime": 0.0, "signature": (5, "etag-1")}}
    assert watch.update(first, 100.0, local=False)
    assert not watch.update(first, 3000.0, local=False)
    # Still there an hour after its event: the run that should have taken it did not.
    assert watch.update(first, 3701.0, local=False)
    replaced = {"a.csv": {"size": 5, "mtime": 0.0, "signature": (5, "etag-2")}}
    assert watch.update(replaced, 3702.0, local=False)


class StateStore:
    """The asset state store the triggerer injects into a watcher (``asset_state_store``):
    JSON values by key, kept in the metadata database (here, a dict)."""

    def __init__(self, broken: bool = False) -> None:
        self.values: dict = {}
        self.broken = broken

    async def aget(self, key, default=None):
        if self.broken:
            raise ConnectionError("supervisor gone")
        return json.loads(json.dumps(self.values.get(key, default)))  # a JSON round trip, as stored

    async def aset(self, key, value):
        if self.broken:
            raise ConnectionError("supervisor gone")
        self.values[key] = json.loads(json.dumps(value))


def _with_store(trigger: LeadFilesTrigger, store: StateStore) -> LeadFilesTrigger:
    trigger.asset_state_store = store
    return trigger


def test_a_restarted_watcher_does_not_fire_again_for_what_it_fired_for(tmp_path):
    """What fired is kept in the asset's state store: a triggerer restart (a new trigger
    instance) does not start another run for the files a run already has."""
    incoming = tmp_path / INCOMING
    incoming.mkdir(parents=True)
    (incoming / "a.csv").write_text("Email\n")
    _old(incoming / "a.csv")
    store = StateStore()
    first = Watcher(_with_store(LeadFilesTrigger(bucket_url=tmp_path.as_uri(), poll_interval=POLL), store))
    try:
        assert names(first.next_event(timeout=5)) == ["a.csv"]
    finally:
        first.close()
    assert list(store.values["fired"]) == ["a.csv"]
    again = Watcher(_with_store(LeadFilesTrigger(bucket_url=tmp_path.as_uri(), poll_interval=POLL), store))
    try:
        assert again.next_event(timeout=6 * POLL) is None
        (incoming / "b.csv").write_text("Email\n")
        assert names(again.next_event(timeout=5)) == ["b.csv"]
        (incoming / "a.csv").unlink()  # imported: forgotten, in the store too
        (incoming / "b.csv").unlink()
        assert again.next_event(timeout=3 * POLL) is None
        assert store.values["fired"] == {}
    finally:
        again.close()


def test_a_failing_state_store_costs_the_memory_not_the_watch(tmp_path):
    incoming = tmp_path / INCOMING
    incoming.mkdir(parents=True)
    (incoming / "a.csv").write_text("Email\n")
    watcher = Watcher(
        _with_store(LeadFilesTrigger(bucket_url=tmp_path.as_uri(), poll_interval=POLL), StateStore(broken=True))
    )
    try:
        assert names(watcher.next_event(timeout=5)) == ["a.csv"]
        assert watcher.next_event(timeout=5 * POLL) is None  # still remembered in memory
    finally:
        watcher.close()


def test_serializes_to_an_importable_class_with_its_arguments():
    trigger = LeadFilesTrigger(bucket_url="s3://b", conn_id="c", poll_interval=2.0, settle=1.0, refire_after=60.0)
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(__import__(module, fromlist=[name]), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs == {"bucket_url": "s3://b", "conn_id": "c", "poll_interval": 2.0, "settle": 1.0, "refire_after": 60.0}


def test_s3_fires_at_first_listing_and_sees_later_uploads(s3_server, s3_bucket):
    bucket = s3_bucket.removeprefix("s3://")
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key=f"{INCOMING}/a.csv", Body=b"Email\na@x.io\n")
    client.put_object(Bucket=bucket, Key=f"{INCOMING}/a.csv.part", Body=b"Email\n")
    client.put_object(Bucket=bucket, Key="imports/leads/processed/old.csv", Body=b"Email\n")
    watcher = Watcher(LeadFilesTrigger(bucket_url=s3_bucket, poll_interval=POLL))
    try:
        payload = watcher.next_event(timeout=20)
        assert payload["files"] == [{"name": "a.csv", "size": 13}]
        assert payload["incoming"] == f"{s3_bucket}/{INCOMING}"
        assert watcher.next_event(timeout=6 * POLL) is None
        # Uploaded after the first listings: s3fs's listing cache must not hide it.
        client.put_object(Bucket=bucket, Key=f"{INCOMING}/b.csv", Body=b"Email\nb@x.io\n")
        assert names(watcher.next_event(timeout=10)) == ["b.csv"]
        # Replaced with other content (same name): fires again.
        client.put_object(Bucket=bucket, Key=f"{INCOMING}/b.csv", Body=b"Email\nother@x.io\n")
        assert names(watcher.next_event(timeout=10)) == ["b.csv"]
    finally:
        watcher.close()


def test_s3_listing_errors_are_retried_not_fatal(s3_server, s3_bucket, caplog):
    """A bucket that is not there yet (or a network error) is logged; the watcher keeps going."""
    missing = f"{s3_bucket}-later"
    watcher = Watcher(LeadFilesTrigger(bucket_url=missing, poll_interval=POLL))
    try:
        assert watcher.next_event(timeout=8 * POLL) is None
        bucket = missing.removeprefix("s3://")
        client = s3_server.client()
        client.create_bucket(Bucket=bucket)
        client.put_object(Bucket=bucket, Key=f"{INCOMING}/a.csv", Body=b"Email\n")
        assert names(watcher.next_event(timeout=20)) == ["a.csv"]
    finally:
        watcher.close()


# --- which files a run imports --------------------------------------------------------


def _events(*file_lists):
    """``triggering_asset_events`` as a run gets it: asset -> events, each event's extra
    holding the watcher's payload."""
    return {
        "hotcrm_lead_files": [
            SimpleNamespace(extra={"from_trigger": True, "payload": {"files": [{"name": n} for n in files]}})
            for files in file_lists
        ]
    }


def test_a_watcher_run_imports_the_files_its_events_name_still_waiting(tmp_path):
    root = tmp_path / "bucket"
    incoming = root / INCOMING
    incoming.mkdir(parents=True)
    for name in ("a.csv", "b.csv", "late.csv"):
        (incoming / name).write_text("Email\n")
    from airflow.sdk import ObjectStoragePath

    bucket = ObjectStoragePath(root.as_uri())
    # Two events collapsed into one run; "gone.csv" was taken by an earlier run; "late.csv"
    # (maybe still being written) has no event yet: it gets its own.
    assert files_to_import(None, _events(["a.csv", "gone.csv"], ["b.csv"]), bucket) == ["a.csv", "b.csv"]
    # A manual run: every file waiting, or the one named.
    assert files_to_import(None, {}, bucket) == ["a.csv", "b.csv", "late.csv"]
    assert files_to_import("late.csv", _events(["a.csv"]), bucket) == ["late.csv"]
    # An asset event without the watcher's payload (posted by hand): every file waiting.
    hand = {"hotcrm_lead_files": [SimpleNamespace(extra={})]}
    assert files_to_import(None, hand, bucket) == ["a.csv", "b.csv", "late.csv"]
