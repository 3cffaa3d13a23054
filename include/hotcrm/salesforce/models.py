"""The Salesforce sync's bookkeeping: sync state per record and the sync history.

``salesforce_sync_state`` holds, per (object, HotCRM Id), the hash of the mapped values
Salesforce last acknowledged, the Salesforce Id, and the last error (code, message,
consecutive failed attempts). A record is sent again only when its hash changed, it never
synced, or its last attempt failed.

``salesforce_sync_runs`` is the history a person queries: one row per run and object, with
the counts, the API calls spent, the duration and the outcome.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hotcrm.crm.models import ID_LENGTH, Base, new_id, utcnow

# Sync state statuses.
SYNCED = "synced"
FAILED = "failed"

# Run outcomes.
SUCCESS = "success"
PARTIAL = "partial"  # stopped early (API budget) or some records failed; the rest goes next run
ERROR = "failed"  # the run could not talk to Salesforce at all
DRY_RUN = "dry_run"


class SyncState(Base):
    """What Salesforce last acknowledged for one HotCRM record."""

    __tablename__ = "salesforce_sync_state"
    __table_args__ = (UniqueConstraint("object", "hotcrm_id", name="uq_salesforce_sync_state_object_hotcrm_id"),)

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    object: Mapped[str] = mapped_column(String(40))
    hotcrm_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    status: Mapped[str] = mapped_column(String(20), index=True)
    # Hash of the mapped values Salesforce acknowledged last (kept when a later attempt fails).
    payload_hash: Mapped[str | None] = mapped_column(String(64))
    salesforce_id: Mapped[str | None] = mapped_column(String(18))
    last_error_code: Mapped[str | None] = mapped_column(String(100))
    last_error_message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # consecutive failed attempts
    last_attempt_at: Mapped[datetime | None]
    last_synced_at: Mapped[datetime | None]


class SyncRun(Base):
    """One object's part of one sync run."""

    __tablename__ = "salesforce_sync_runs"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    run_id: Mapped[str] = mapped_column(String(250), index=True)
    object: Mapped[str] = mapped_column(String(40))
    started_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[datetime | None]
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    full: Mapped[bool] = mapped_column(Boolean, default=False)
    transport: Mapped[str | None] = mapped_column(String(20))
    selected: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    api_calls: Mapped[int] = mapped_column(Integer, default=0)
    duration_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    outcome: Mapped[str] = mapped_column(String(20))
    message: Mapped[str | None] = mapped_column(Text)


# Bulk job statuses (ours, beside Salesforce's own job state).
JOB_PENDING = "pending"  # submitted; its results are not written back yet
JOB_COLLECTED = "collected"  # its results are written back
JOB_ABORTED = "aborted"  # aborted by the sync; its records are sent again


class BulkJob(Base):
    """A Bulk API 2.0 ingest job the sync submitted, kept until its results are written back
    (in the run that submitted it, or a later one when the job outlived the run's wait)."""

    __tablename__ = "salesforce_bulk_jobs"
    __table_args__ = (UniqueConstraint("job_id", name="uq_salesforce_bulk_jobs_job_id"),)

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(String(18))
    object: Mapped[str] = mapped_column(String(40))
    run_id: Mapped[str] = mapped_column(String(250))
    status: Mapped[str] = mapped_column(String(20), index=True)
    state: Mapped[str | None] = mapped_column(String(20))  # Salesforce's, as last seen
    records: Mapped[int] = mapped_column(Integer, default=0)
    upload_bytes: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    collected_at: Mapped[datetime | None]
    collected_by_run: Mapped[str | None] = mapped_column(String(250))
    message: Mapped[str | None] = mapped_column(Text)
