"""Account exports against real databases (SQLite and PostgreSQL) and storage (a local folder,
moto's S3 server): every matching row exported and read back with independent readers, one
snapshot per export, checks that stop a bad file, and no partial file ever published."""

import csv
import datetime as dt
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import insert, select
from upath import UPath

from hotcrm.crm import services
from hotcrm.crm.db import session_scope
from hotcrm.crm.models import Account, OutboxEvent
from hotcrm.exports import accounts
from hotcrm.exports.accounts import ExportCheckError, build_spec, run_export, write_export
from hotcrm.exports.writers import format_timestamp

FIELDS = ["Name", "Industry", "AnnualRevenue", "Phone", "Description", "LastModifiedDate"]
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
TRICKY = [
    {"Name": 'O\'Brien "Quoted", Ltd', "Industry": "Retail", "AnnualRevenue": "9999999999999999.99"},
    {"Name": "Ünïcödé 株式会社 🚀", "Industry": "Retail", "Description": "line1\nline2\r\nline3"},
    {"Name": '=HYPERLINK("http://evil")', "Industry": None, "AnnualRevenue": "-12.50", "Phone": "+15125550100"},
    {"Name": "@SUM(1)", "Industry": "Technology", "Description": "\tTabbed"},
]


def _fill(database_url, bulk=0):
    """The tricky records plus ``bulk`` plain ones (changed on consecutive days from T0)."""
    with session_scope(database_url) as session:
        for row in TRICKY:
            services.create(session, Account, row)
        if bulk:
            session.execute(
                insert(Account),
                [
                    {
                        "id": str(uuid.UUID(int=i + 1)),
                        "name": f"Account {i}",
                        "industry": ("Retail", "Technology", "Energy")[i % 3],
                        "annual_revenue": Decimal(i * 1000) + Decimal("0.25"),
                        "created_date": T0,
                        "last_modified_date": T0 + dt.timedelta(days=i % 30),
                    }
                    for i in range(bulk)
                ],
            )


def _db_records(database_url, filters=None, fields=FIELDS):
    with session_scope(database_url) as session:
        return [r.to_api(["Id", *fields]) for r in services.find(session, Account, filters)]


def _as_json_value(value):
    if isinstance(value, dt.datetime):
        return format_timestamp(value)
    return value


def _as_csv_cell(value):
    if value is None:
        return ""
    if isinstance(value, str):
        return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
    if isinstance(value, dt.datetime):
        return format_timestamp(value)
    return str(value)


def _read_back(path, fmt):
    """The published file through an independent reader, as a list of dicts."""
    raw = path.read_bytes()
    if fmt == "json":
        document = json.loads(raw, parse_float=Decimal)
        assert document["recordCount"] == len(document["data"])
        return document["data"]
    if fmt == "ndjson":
        text = raw.decode("utf-8")
        assert text == "" or text.endswith("\n")
        return [json.loads(line, parse_float=Decimal) for line in text.splitlines()]
    return list(csv.DictReader(io.StringIO(raw.decode("utf-8"), newline="")))


@pytest.fixture
def root(tmp_path):
    bucket = UPath((tmp_path / "bucket").as_uri())
    bucket.mkdir(parents=True)
    return bucket


def _published(root):
    folder = root / "exports" / "accounts"
    return sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.exists() else []


def _temps(root):
    folder = root / "exports" / "accounts" / "_tmp"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("fmt", ["json", "ndjson", "csv"])
def test_every_row_is_exported_and_matches_the_database(db_url, root, fmt):
    _fill(db_url, bulk=1234)
    spec = build_spec(FIELDS, None, fmt)
    # A small batch size makes the export cross many batch boundaries.
    manifest = run_export(db_url, root, spec, f"all.{fmt}", batch_size=100)
    expected = _db_records(db_url)
    assert manifest["record_count"] == manifest["database_count"] == len(expected) == 1238
    records = _read_back(root / "exports" / "accounts" / f"all.{fmt}", fmt)
    if fmt == "csv":
        assert records == [{k: _as_csv_cell(v) for k, v in e.items()} for e in expected]
    else:
        assert records == [{k: _as_json_value(v) for k, v in e.items()} for e in expected]
    assert _published(root) == [f"all.{fmt}", f"all.{fmt}.manifest.json"]
    assert _temps(root) == []
    on_disk = json.loads((root / "exports" / "accounts" / f"all.{fmt}.manifest.json").read_text())
    import hashlib

    assert on_disk["sha256"] == hashlib.sha256((root / "exports" / "accounts" / f"all.{fmt}").read_bytes()).hexdigest()
    assert on_disk["fields"] == ["Id", *FIELDS] and on_disk["quality"]["success"] is True


def test_filters_and_changed_since_select_the_same_rows_as_the_service_layer(db_url, root):
    _fill(db_url, bulk=300)
    filters = [["Industry", "in", ["Retail", "Energy"]], ["AnnualRevenue", ">=", 50000]]
    since = (T0 + dt.timedelta(days=20)).isoformat()
    spec = build_spec(["Name", "Industry"], filters, "ndjson", since)
    manifest = run_export(db_url, root, spec, "subset.ndjson")
    expected = _db_records(db_url, [*filters, ["LastModifiedDate", ">", since]], ["Name", "Industry"])
    assert 0 < len(expected) < 300
    assert _read_back(root / "exports" / "accounts" / "subset.ndjson", "ndjson") == expected
    assert manifest["record_count"] == len(expected)
    assert manifest["filters"] == filters and manifest["changed_since"] == since
    with session_scope(db_url) as session:
        events = session.scalars(select(OutboxEvent).where(OutboxEvent.event_type == "export.completed")).all()
        assert [e.payload["data"]["record_count"] for e in events] == [len(expected)]


def test_an_export_reads_one_snapshot_and_does_not_block_writers(db_url, root):
    _fill(db_url, bulk=500)
    spec = build_spec(["Name"], None, "json")
    written_meanwhile = []

    def write_during_the_export(rows_so_far):
        if not written_meanwhile:
            # A separate transaction commits while the export is mid-stream (SQLite: no write lock held).
            with session_scope(db_url) as session:
                written_meanwhile.append(services.create(session, Account, {"Name": "Added meanwhile"}).id)

    written = write_export(db_url, root, spec, "snap.json", batch_size=50, on_batch=write_during_the_export)
    assert written_meanwhile
    assert written.record_count == written.database_count == 504  # the new record is not half in
    assert accounts.check_export(written).success


def test_a_silent_row_limit_fails_the_checks_and_nothing_is_published(db_url, root, monkeypatch):
    _fill(db_url, bulk=200)
    real_query = accounts.account_query
    monkeypatch.setattr(accounts, "account_query", lambda spec: real_query(spec).limit(100))  # the classic bug
    with pytest.raises(ExportCheckError) as failure:
        run_export(db_url, root, build_spec(), "limited.json")
    message = str(failure.value)
    assert "limited.json failed its checks and was not published" in message
    assert "expect_column_sum_to_be_between on rows" in message and "observed_value=100" in message
    assert _published(root) == []
    assert len(_temps(root)) == 1  # kept under _tmp/ for inspection
    with session_scope(db_url) as session:
        assert services.count(session, OutboxEvent) == 0


def test_an_error_mid_stream_leaves_no_file_at_all(db_url, root):
    _fill(db_url, bulk=300)

    def fail_halfway(rows_so_far):
        if rows_so_far >= 150:
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_export(db_url, root, build_spec(), "broken.json", batch_size=50, on_batch=fail_halfway)
    assert _published(root) == [] and _temps(root) == []


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from upath import UPath
    from hotcrm.exports.accounts import build_spec, write_export

    def hang(rows):
        print("WRITING", rows, flush=True)
        time.sleep(120)

    write_export(sys.argv[1], UPath(sys.argv[2]), build_spec(), "daily.json", batch_size=100, on_batch=hang)
    """
)


def test_a_killed_export_is_never_visible_and_the_next_run_cleans_up(db_url, root):
    _fill(db_url, bulk=1000)
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, db_url, str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("WRITING 100"), process.stderr.read() if process.poll() is not None else line
        process.send_signal(signal.SIGKILL)  # no cleanup code runs
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert _published(root) == []
    (partial,) = _temps(root)
    assert partial.startswith("daily.json.") and partial.endswith(".part")
    manifest = run_export(db_url, root, build_spec(), "daily.json")
    assert manifest["record_count"] == 1004
    assert _published(root) == ["daily.json", "daily.json.manifest.json"]
    assert _temps(root) == []  # the killed attempt's file was removed


@pytest.fixture
def s3_root(s3_server):
    bucket = s3_server.create_bucket(f"export-{uuid.uuid4().hex[:8]}")
    return UPath(
        bucket,
        key=s3_server.access_key,
        secret=s3_server.secret_key,
        client_kwargs={"endpoint_url": s3_server.endpoint_url, "region_name": s3_server.region},
    )


def _keys(s3_server, root):
    response = s3_server.client().list_objects_v2(Bucket=root.path.strip("/"))
    return sorted(o["Key"] for o in response.get("Contents", []))


def test_s3_export_is_published_by_a_completed_copy(sqlite_url, s3_root, s3_server, monkeypatch):
    _fill(sqlite_url, bulk=2000)
    # Small parts, so the temporary object really is a multipart upload.
    monkeypatch.setattr(accounts, "UPLOAD_BLOCK_SIZE", 5 * 2**20)
    spec = build_spec([*FIELDS, "Website", "BillingStreet", "BillingCity"], None, "ndjson")
    manifest = run_export(sqlite_url, s3_root, spec, "big.ndjson", batch_size=500)
    assert _keys(s3_server, s3_root) == ["exports/accounts/big.ndjson", "exports/accounts/big.ndjson.manifest.json"]
    records = _read_back(s3_root / "exports" / "accounts" / "big.ndjson", "ndjson")
    assert [r["Id"] for r in records] == [e["Id"] for e in _db_records(sqlite_url)]
    assert manifest["url"].endswith("/exports/accounts/big.ndjson") and manifest["url"].startswith("s3://")


def test_s3_interrupted_upload_leaves_no_object(sqlite_url, s3_root, s3_server, monkeypatch):
    _fill(sqlite_url, bulk=6000)
    monkeypatch.setattr(accounts, "UPLOAD_BLOCK_SIZE", 5 * 2**20)
    padding = "x" * 2000  # large rows, so parts are uploaded before the failure

    with session_scope(sqlite_url) as session:
        session.execute(Account.__table__.update().values(description=padding))

    client = s3_server.client()
    bucket = s3_root.path.strip("/")

    def fail_late(rows_so_far):
        if rows_so_far >= 5000:
            assert client.list_multipart_uploads(Bucket=bucket).get("Uploads"), "no part was uploaded yet"
            raise RuntimeError("worker lost")

    with pytest.raises(RuntimeError, match="worker lost"):
        write_export(
            sqlite_url,
            s3_root,
            build_spec(["Name", "Description"], None, "ndjson"),
            "x.ndjson",
            batch_size=500,
            on_batch=fail_late,
        )
    assert _keys(s3_server, s3_root) == []
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []  # aborted, not left dangling


def test_bad_params_fail_before_the_database_is_touched(monkeypatch, tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    from hotcrm.airflow.operators import HotCrmAccountExportOperator

    # Nothing listens on port 1: had the task connected first, this would be a connection error.
    monkeypatch.setenv(
        "AIRFLOW_CONN_HOTCRM_DB",
        json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": 1, "login": "x", "schema": "x"}),
    )
    monkeypatch.setenv("HOTCRM_BUCKET_URL", (tmp_path / "bucket").as_uri())
    context = {"data_interval_start": T0, "data_interval_end": T0 + dt.timedelta(days=1)}
    operator = HotCrmAccountExportOperator(
        task_id="export",
        fields=["Name"],
        filters=[["Industry", "=", "Retail"], ["AnnualRevenue", "between", [1, 2]]],
    )
    with pytest.raises(AirflowFailException) as failure:
        operator.execute(context)
    assert str(failure.value) == (
        "invalid export params: filter #2 ['AnnualRevenue', 'between', [1, 2]]: unknown operator 'between'; "
        "allowed operators: =, !=, <, <=, >, >=, in, not in, like, is null, is not null"
    )
    assert not (tmp_path / "bucket" / "exports").exists()


def test_cli_exports_with_filters_and_rejects_a_bad_one(db_url, tmp_path, capsys):
    from hotcrm.cli import main

    _fill(db_url, bulk=30)
    bucket = (tmp_path / "bucket").as_uri()
    base = ["--database-url", db_url, "export", "accounts", "--bucket-url", bucket]
    code = main(
        [
            *base,
            "--fields",
            "Name,AnnualRevenue",
            "--filter",
            "Industry",
            "in",
            '["Retail", "Energy"]',
            "--filter",
            "AnnualRevenue",
            ">=",
            "10000",
            "--format",
            "csv",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    manifest = json.loads(out[out.index("{") :])
    expected = _db_records(
        db_url, [["Industry", "in", ["Retail", "Energy"]], ["AnnualRevenue", ">=", 10000]], ["Name", "AnnualRevenue"]
    )
    assert manifest["record_count"] == len(expected) > 0
    published = tmp_path / "bucket" / "exports" / "accounts" / manifest["file"]
    assert [r["Id"] for r in csv.DictReader(io.StringIO(published.read_text()))] == [e["Id"] for e in expected]

    assert main([*base, "--filter", "Industry", "equals", "Retail"]) == 2
    assert "unknown operator 'equals'; allowed operators: =, !=" in capsys.readouterr().err


def test_publishing_again_after_a_failure_is_safe_and_records_one_event(db_url, root):
    _fill(db_url, bulk=20)
    written = write_export(db_url, root, build_spec(), "twice.json")
    quality = accounts.check_export(written)
    first = accounts.publish_export(db_url, root, written, quality)
    again = accounts.publish_export(db_url, root, written, quality)  # a retried publish task: file already moved
    assert first == again
    assert _published(root) == ["twice.json", "twice.json.manifest.json"]
    with session_scope(db_url) as session:
        assert services.count(session, OutboxEvent) == 1


def test_progress_is_logged_with_rows_and_rate(sqlite_url, root, monkeypatch, caplog):
    _fill(sqlite_url, bulk=400)
    monkeypatch.setattr(accounts, "PROGRESS_EVERY_SECONDS", 0.0)
    with caplog.at_level("INFO", logger="hotcrm.exports.accounts"):
        write_export(sqlite_url, root, build_spec(), "progress.json", batch_size=100)
    lines = [r.getMessage() for r in caplog.records if r.name == "hotcrm.exports.accounts"]
    assert "writing progress.json: 100/404 rows (25%)" in lines[0] and lines[0].endswith("rows/s")
    assert lines[-1].startswith("wrote progress.json: 404/404 rows (100%)")
    assert not any("sqlite:" in line for line in lines)  # the database URL never reaches the log


@pytest.mark.parametrize("fmt", ["json", "ndjson", "csv"])
def test_postgresql_numeric_nan_stays_valid_output(pg_url, root, fmt):
    from sqlalchemy import text

    with session_scope(pg_url) as session:
        record = services.create(session, Account, {"Name": "Not a number", "AnnualRevenue": "1.50"})
        services.create(session, Account, {"Name": "Exact", "AnnualRevenue": "-9999999999999999.99"})
        session.execute(text("UPDATE accounts SET annual_revenue = 'NaN' WHERE id = :id"), {"id": record.id})
    run_export(pg_url, root, build_spec(["Name", "AnnualRevenue"], None, fmt), f"nan.{fmt}")
    records = _read_back(root / "exports" / "accounts" / f"nan.{fmt}", fmt)
    revenue = {r["Name"]: r["AnnualRevenue"] for r in records}
    if fmt == "csv":
        assert revenue == {"Not a number": "NaN", "Exact": "-9999999999999999.99"}
    else:
        assert revenue == {"Not a number": "NaN", "Exact": Decimal("-9999999999999999.99")}
