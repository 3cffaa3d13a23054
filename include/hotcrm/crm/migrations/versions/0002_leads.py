"""lead import: file ledger and row issues

Revision ID: 0002_leads
Revises: 0001_crm_core
Create Date: 2026-11-25 21:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_leads"
down_revision = "0001_crm_core"
branch_labels = ("leads",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lead_import_files",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("size", sa.Integer(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("encoding", sa.String(length=40), nullable=True),
        sa.Column("delimiter", sa.String(length=8), nullable=True),
        sa.Column("rows_read", sa.Integer(), nullable=False),
        sa.Column("inserted", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("report_path", sa.String(length=1024), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lead_import_files")),
    )
    op.create_index("ix_lead_import_files_created_at", "lead_import_files", ["created_at"])
    op.create_index(op.f("ix_lead_import_files_file_name"), "lead_import_files", ["file_name"])
    op.create_index(op.f("ix_lead_import_files_sha256"), "lead_import_files", ["sha256"])
    op.create_index(op.f("ix_lead_import_files_status"), "lead_import_files", ["status"])
    op.create_index(
        "uq_lead_import_files_sha256_imported",
        "lead_import_files",
        ["sha256"],
        unique=True,
        sqlite_where=sa.text("status = 'imported'"),
        postgresql_where=sa.text("status = 'imported'"),
    )
    op.create_table(
        "lead_import_issues",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("file_id", sa.String(length=36), nullable=False),
        sa.Column("line_number", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=True),
        sa.Column("raw", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["lead_import_files.id"],
            name=op.f("fk_lead_import_issues_file_id_lead_import_files"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lead_import_issues")),
    )
    op.create_index(op.f("ix_lead_import_issues_file_id"), "lead_import_issues", ["file_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_lead_import_issues_file_id"), table_name="lead_import_issues")
    op.drop_table("lead_import_issues")
    op.drop_index("uq_lead_import_files_sha256_imported", table_name="lead_import_files")
    op.drop_index(op.f("ix_lead_import_files_status"), table_name="lead_import_files")
    op.drop_index(op.f("ix_lead_import_files_sha256"), table_name="lead_import_files")
    op.drop_index(op.f("ix_lead_import_files_file_name"), table_name="lead_import_files")
    op.drop_index("ix_lead_import_files_created_at", table_name="lead_import_files")
    op.drop_table("lead_import_files")
