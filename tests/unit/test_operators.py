"""The HotCRM operators without a database: arguments, templating, and which errors fail at
once (no retries) and which retry."""

import subprocess
import sys
import textwrap

import pendulum
import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException

from hotcrm.airflow import operators as ops
from hotcrm.airflow.hooks import HotCrmBucketHook, HotCrmDatabaseHook
from hotcrm.airflow.salesforce import HotCrmSalesforceHook
from hotcrm.errors import PermanentError, TransientError

START = pendulum.datetime(2026, 1, 1, tz="UTC")

# What a user templates, per operator (the list: file name, filters, fields, format,
# changed_since, objects, dry run), and the connection ids.
TEMPLATED = {
    ops.HotCrmLeadImportOperator: {"file_name", "hotcrm_db_conn_id", "bucket_conn_id"},
    ops.HotCrmAccountExportOperator: {"fields", "filters", "format", "changed_since", "hotcrm_db_conn_id"},
    ops.HotCrmSalesforceSyncOperator: {"objects", "dry_run", "full", "limit", "transport", "salesforce_conn_id"},
    ops.HotCrmWebhookInboxOperator: {"worker", "batch_size", "max_attempts", "backoff_seconds", "max_seconds"},
    ops.HotCrmWebhookDeliveryOperator: {"worker", "batch_size", "concurrency", "max_seconds", "fan_out"},
    ops.HotCrmEmailOutboxOperator: {"queue_quotes", "smtp_conn_id", "hotcrm_db_conn_id"},
    ops.HotCrmRetentionOperator: {"dry_run", "max_seconds"},
    ops.HotCrmDataQualityOperator: {"suite", "file_path", "sql", "policy", "suite_params", "bucket_conn_id"},
}


def _make(cls, **kwargs):
    if cls is ops.HotCrmDataQualityOperator:
        kwargs.setdefault("suite", "account_file")
        if not {"file_path", "sql", "dataframe"} & set(kwargs):
            kwargs["sql"] = "SELECT 1"
    return cls(task_id="t", **kwargs)


@pytest.mark.parametrize("cls", list(TEMPLATED), ids=lambda c: c.__name__)
def test_template_fields_name_the_arguments(cls):
    assert TEMPLATED[cls] <= set(cls.template_fields)
    op = _make(cls)
    for name in cls.template_fields:
        assert hasattr(op, name), f"{cls.__name__}.{name} is templated but not an attribute"


@pytest.mark.parametrize("cls", list(TEMPLATED), ids=lambda c: c.__name__)
def test_init_is_keyword_only(cls):
    with pytest.raises(TypeError):
        cls("t")  # a positional argument


@pytest.mark.parametrize("cls", list(TEMPLATED), ids=lambda c: c.__name__)
def test_connection_ids_default_to_the_hooks(cls):
    op = _make(cls)
    assert op.hotcrm_db_conn_id == HotCrmDatabaseHook.default_conn_name == "hotcrm_db"
    if hasattr(op, "bucket_conn_id"):
        assert op.bucket_conn_id == HotCrmBucketHook.default_conn_name == "hotcrm_bucket"
    if hasattr(op, "salesforce_conn_id"):
        assert op.salesforce_conn_id == HotCrmSalesforceHook.default_conn_name == "salesforce_default"


def test_hooks_are_built_lazily_from_the_rendered_conn_id():
    op = ops.HotCrmAccountExportOperator(task_id="t", hotcrm_db_conn_id="{{ params.db }}")
    assert "db_hook" not in vars(op)  # nothing built at parse time
    op.render_template_fields({"params": {"db": "crm_replica"}})
    assert op.db_hook.hotcrm_db_conn_id == "crm_replica"
    assert op.bucket_hook.bucket_conn_id == "hotcrm_bucket"


def _render(op, params, *, native):
    with DAG("d", schedule=None, start_date=START, render_template_as_native_obj=native) as dag:
        dag.add_task(op)
    op.render_template_fields({"params": params}, jinja_env=dag.get_template_env())
    return op


@pytest.mark.parametrize("native", [True, False], ids=["native", "text"])
def test_export_arguments_render_from_params_as_text_or_native(native):
    filters = [["Industry", "=", "Retail"], ["AnnualRevenue", ">=", 1000000]]
    op = _render(
        ops.HotCrmAccountExportOperator(
            task_id="export",
            fields="{{ params.fields }}",
            filters="{{ params.filters }}",
            format="{{ params.format }}",
            changed_since="{{ params.since }}",
        ),
        {"fields": ["Name", "Industry"], "filters": filters, "format": "csv", "since": None},
        native=native,
    )
    assert isinstance(op.filters, list if native else str)
    assert ops.as_list(op.filters, "filters", "") == filters
    assert ops.as_list(op.fields, "fields", "") == ["Name", "Industry"]
    assert ops.as_text(op.format) == "csv"
    assert ops.as_text(op.changed_since) is None


@pytest.mark.parametrize("native", [True, False], ids=["native", "text"])
def test_sync_options_render_from_params(native):
    op = _render(
        ops.HotCrmSalesforceSyncOperator(
            task_id="sync",
            objects="{{ params.objects }}",
            dry_run="{{ params.dry_run }}",
            full="{{ params.full }}",
            limit="{{ params.limit }}",
            transport="{{ params.transport }}",
        ),
        {"objects": ["Account"], "dry_run": True, "full": False, "limit": 5, "transport": "bulk"},
        native=native,
    )
    assert op._options() == {"objects": ["Account"], "dry_run": True, "full": False, "limit": 5, "transport": "bulk"}


def test_lead_import_file_name_renders_inside_a_nested_template():
    op = _render(ops.HotCrmLeadImportOperator(task_id="i", file_name="{{ params.f }}"), {"f": "a.csv"}, native=False)
    assert op.file_name == "a.csv"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), ("false", False), ("True", True), ("0", False), (None, False), (1, True), ("no", False)],
)
def test_as_bool(value, expected):
    assert ops.as_bool(value, "dry_run") is expected


@pytest.mark.parametrize("value", ["maybe", 2, "[1]"])
def test_as_bool_refuses_other_values(value):
    with pytest.raises(PermanentError, match="dry_run=.*expected true or false"):
        ops.as_bool(value, "dry_run")


def test_as_list_refuses_a_non_list_naming_the_argument_and_an_example():
    with pytest.raises(PermanentError, match=r"filters='Industry = Retail': expected a list, e\.g\. \[\["):
        ops.as_list("Industry = Retail", "filters", '[["Industry", "=", "Retail"]]')


@pytest.mark.parametrize("value", ["-1", "1.5", "ten", True])
def test_as_number_refuses_bad_whole_numbers(value):
    with pytest.raises(PermanentError, match="limit="):
        ops.as_number(value, "limit", integer=True)


def test_quality_operator_wants_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one of file_path, sql or dataframe .got none"):
        ops.HotCrmDataQualityOperator(task_id="q", suite="account_file")
    with pytest.raises(ValueError, match="got file_path, sql"):
        ops.HotCrmDataQualityOperator(task_id="q", suite="account_file", file_path="a.csv", sql="SELECT 1")


# --- fail vs retry ----------------------------------------------------------------------------


class _Raises(ops.HotCrmBaseOperator):
    def __init__(self, *, error: BaseException, **kwargs):
        super().__init__(**kwargs)
        self.error = error

    def run(self, context):
        raise self.error


class _Both(PermanentError, TransientError):
    pass


@pytest.mark.parametrize(
    "error",
    [
        PermanentError("mapping file: unknown field 'Emial'"),
        ValueError("objects ['Lead']: choose from Account, Contact"),
        TypeError("bad argument"),
        KeyError("Email"),
        FileNotFoundError("incoming/x.csv"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_permanent_errors_fail_without_retries(error):
    with pytest.raises(AirflowFailException, match=r"_Raises 'job': .*not retried") as failure:
        _Raises(task_id="job", error=error).execute({})
    assert failure.value.__cause__ is error


@pytest.mark.parametrize(
    "error",
    [TransientError("server busy"), ConnectionError("refused"), TimeoutError(), RuntimeError("lock"), _Both("x")],
    ids=lambda e: type(e).__name__,
)
def test_other_errors_are_raised_as_they_are_so_retries_apply(error):
    with pytest.raises(type(error)) as raised:
        _Raises(task_id="job", error=error).execute({})
    assert raised.value is error


def test_a_bad_sync_option_fails_before_any_login_or_database():
    # No salesforce_default and no hotcrm_db connection here: reaching either would be another error.
    op = ops.HotCrmSalesforceSyncOperator(task_id="sync", objects=["Lead"])
    with pytest.raises(AirflowFailException, match=r"objects \['Lead'\]: choose from Account, Contact"):
        op.execute({"run_id": "r"})


def test_a_bad_export_filter_fails_without_retries():
    op = ops.HotCrmAccountExportOperator(task_id="export", filters="[['Revenue', '>', 1]]")
    with pytest.raises(AirflowFailException, match="invalid export params: filter #1 .*unknown field 'Revenue'"):
        op.execute({})


def test_lead_import_refuses_a_path_as_file_name():
    with pytest.raises(AirflowFailException, match=r"file_name '\.\./etc/passwd': give the name of a file"):
        ops.HotCrmLeadImportOperator(task_id="i", file_name="../etc/passwd").execute({})


def test_quality_operator_refuses_an_unknown_policy_and_suite():
    with pytest.raises(AirflowFailException, match="policy='strict': use one of fail, warn"):
        ops.HotCrmDataQualityOperator(task_id="q", suite="account_file", sql="SELECT 1", policy="strict").execute({})
    with pytest.raises(
        AirflowFailException, match=r"suite '\.\./secrets' is not in .*suites there: \[.*'account_file'"
    ):
        ops.HotCrmDataQualityOperator(task_id="q", suite="../secrets", sql="SELECT 1").execute({})


def test_quality_operator_names_a_placeholder_without_value(monkeypatch):
    op = ops.HotCrmDataQualityOperator(task_id="q", suite="account_file", sql="SELECT 1")
    monkeypatch.setattr(
        "hotcrm.quality.load_suite",
        lambda name: {"name": name, "expectations": [{"type": "expect_x", "kwargs": {"min_value": "$floor"}}]},
    )
    with pytest.raises(PermanentError, match=r"expectation #1 expect_x.min_value: placeholder '\$floor' has no value"):
        op._suite()


# --- data quality on a DataFrame --------------------------------------------------------------


def _frame(ids):
    import pandas as pd

    return pd.DataFrame({"Id": ids, "Name": [f"n{i}" for i in range(len(ids))]})


class _TI:
    def __init__(self):
        self.pushed = {}

    def xcom_push(self, key, value):
        self.pushed[key] = value


def test_quality_policy_fail_fails_without_retries_and_pushes_the_summary():
    ti = _TI()
    op = ops.HotCrmDataQualityOperator(task_id="q", suite="account_file", dataframe=lambda: _frame(["a", "a", None]))
    with pytest.raises(AirflowFailException, match="suite 'account_file' failed: .*expect_column_values_to_be_unique"):
        op.execute({"ti": ti})
    summary = ti.pushed["return_value"]
    assert summary["success"] is False and summary["rows"] == 3 and summary["source"] == "dataframe"
    failed = sorted(o["type"] for o in summary["outcomes"] if not o["success"])
    assert failed == ["expect_column_values_to_be_unique", "expect_column_values_to_not_be_null"]


def test_quality_policy_warn_succeeds_with_the_failures_in_its_summary():
    op = ops.HotCrmDataQualityOperator(
        task_id="q", suite="account_file", dataframe=_frame(["a", "a"]), policy="{{ params.p }}"
    )
    op.render_template_fields({"params": {"p": "warn"}})
    summary = op.execute({"ti": _TI()})
    assert summary["success"] is False and summary["policy"] == "warn"
    assert "FAILED: expect_column_values_to_be_unique on Id" in summary["summary"]


def test_quality_suite_params_override_the_suite_file():
    op = ops.HotCrmDataQualityOperator(
        task_id="q", suite="account_file", dataframe=_frame(["a", "b"]), suite_params={"min_rows": 3}
    )
    with pytest.raises(AirflowFailException, match="expect_table_row_count_to_be_between"):
        op.execute({})
    op.suite_params = None  # the file's own default: 1 row
    assert op.execute({})["success"] is True


def test_quality_dataframe_must_be_a_dataframe():
    op = ops.HotCrmDataQualityOperator(task_id="q", suite="account_file", dataframe=lambda: [1, 2])
    with pytest.raises(AirflowFailException, match="expected a pandas DataFrame .* got list"):
        op.execute({})


# --- cheap at parse time ----------------------------------------------------------------------


def test_importing_the_operators_and_provider_stays_cheap():
    code = textwrap.dedent("""
        import sys
        import hotcrm.airflow.operators, hotcrm.airflow.tasks, hotcrm.airflow.provider
        hotcrm.airflow.provider.get_provider_info()
        heavy = ("pandas", "great_expectations", "simple_salesforce", "hotcrm.crm", "wtforms", "flask_appbuilder")
        print("HEAVY:" + ",".join(m for m in heavy if m in sys.modules))
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert [line for line in out.splitlines() if line.startswith("HEAVY:")] == ["HEAVY:"]
