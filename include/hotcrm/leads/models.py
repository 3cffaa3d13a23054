"""The lead import's bookkeeping tables: the file ledger and the rows it did not load.

``lead_import_files`` has one row per file seen in the import bucket; its ``id`` is the
``file_id`` the REST API exposes. ``sha256`` is unique among *imported* files (a partial
unique index), so content that was already imported is never imported again under any
name, while a failed or duplicate file may share the hash of an imported one.

``lead_import_issues`` keeps every row that was not loaded as itself (rejected rows and
in-file duplicates), with its line number, reason and original values, so the rejects
report can always be rebuilt from the database.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from hotcrm.crm.models import ID_LENGTH, Base, new_id, utcnow

# Ledger statuses.
RECEIVED = "received"
PROCESSING = "processing"
IMPORTED = "imported"
FAILED = "failed"
DUPLICATE = "duplicate"
FILE_STATUSES = (RECEIVED, PROCESSING, IMPORTED, FAILED, DUPLICATE)
# A file's row counts: rows_read = inserted + updated + duplicates + rejected + not_loaded
# (not_loaded: the rows of a file that failed as a whole, other than those rejected).
COUNT_FIELDS = ("rows_read", "inserted", "updated", "duplicates", "rejected", "not_loaded")

# Issue kinds.
REJECTED = "rejected"
DUPLICATE_ROW = "duplicate"


class ImportFile(Base):
    """One file seen in ``imports/leads/incoming/``: where it was, what it held, what became of it."""

    __tablename__ = "lead_import_files"
    __table_args__ = (
        Index(
            "uq_lead_import_files_sha256_imported",
            "sha256",
            unique=True,
            sqlite_where=text("status = 'imported'"),
            postgresql_where=text("status = 'imported'"),
        ),
        Index("ix_lead_import_files_created_at", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    path: Mapped[str] = mapped_column(String(1024))
    file_name: Mapped[str] = mapped_column(String(255), index=True)
    size: Mapped[int | None] = mapped_column(Integer)
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(20), default=RECEIVED, index=True)
    encoding: Mapped[str | None] = mapped_column(String(40))
    delimiter: Mapped[str | None] = mapped_column(String(8))
    rows_read: Mapped[int] = mapped_column(Integer, default=0)
    inserted: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    not_loaded: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    report_path: Mapped[str | None] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    def counts(self) -> dict[str, int]:
        """The row counts, as the task returns them."""
        return {name: getattr(self, name) for name in COUNT_FIELDS}


class ImportIssue(Base):
    """A row of an imported file that was not loaded as itself: rejected, or a duplicate."""

    __tablename__ = "lead_import_issues"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    file_id: Mapped[str] = mapped_column(ForeignKey("lead_import_files.id", ondelete="CASCADE"), index=True)
    line_number: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(String(255))
    raw: Mapped[dict[str, Any] | None]
