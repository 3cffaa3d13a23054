"""The provider: get_provider_info and the apache_airflow_provider entry point, the hooks'
connection forms, and connections of the provider's own types used for real (SQLite and
PostgreSQL)."""

import importlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest

from hotcrm.airflow.hooks import (
    ConnectionForm,
    HotCrmDatabaseHook,
    HotCrmWebhookSourceHook,
    strip_extra_prefix,
)
from hotcrm.airflow.provider import get_provider_info
from hotcrm.airflow.salesforce import HotCrmSalesforceHook
from tests.conftest import PROJECT_DIR

FORM_HOOKS = (HotCrmDatabaseHook, HotCrmSalesforceHook, HotCrmWebhookSourceHook)


def _airflow_schema(name):
    import airflow

    return json.loads((Path(airflow.__file__).parent / name).read_text())


def test_provider_info_follows_airflows_schema():
    import jsonschema

    info = get_provider_info()
    jsonschema.validate(info, _airflow_schema("provider_info.schema.json"))
    assert info["package-name"] == "hotcrm-pipelines" and info["name"] == "HotCRM" and info["versions"]
    assert {c["connection-type"] for c in info["connection-types"]} == {
        "hotcrm_db",
        "hotcrm_salesforce",
        "hotcrm_webhook",
    }


@pytest.mark.parametrize("entry", get_provider_info()["connection-types"], ids=lambda e: e["connection-type"])
def test_each_connection_type_names_a_hook_of_that_type(entry):
    module, _, name = entry["hook-class-name"].rpartition(".")
    hook = getattr(importlib.import_module(module), name)
    assert hook.conn_type == entry["connection-type"] and hook.hook_name == entry["hook-name"]
    assert hook.default_conn_name and hasattr(hook(), hook.conn_name_attr)
    for name, field in entry["conn-fields"].items():
        assert field["label"] and "type" in field["schema"], name


def test_connection_types_are_not_other_providers():
    # An honest conn_type: never one the Salesforce, Postgres, SQLite, Amazon or HTTP provider owns.
    ours = {c["connection-type"] for c in get_provider_info()["connection-types"]}
    assert not ours & {"salesforce", "postgres", "sqlite", "aws", "http", "generic", "smtp"}


@pytest.mark.parametrize("hook", FORM_HOOKS, ids=lambda h: h.__name__)
def test_field_behaviour_follows_airflows_schema(hook):
    import jsonschema

    behaviour = hook.get_ui_field_behaviour()
    jsonschema.validate(behaviour, _airflow_schema("customized_form_field_behaviours.schema.json"))
    assert set(behaviour["hidden_fields"]) <= {"host", "schema", "login", "password", "port", "extra"}


def test_the_forms_carry_the_fields_a_person_needs():
    assert {"scheme", "secrets", "tolerance_seconds", "max_body_bytes", "event_id_path", "event_type_path",
            "event_time_path"} <= set(HotCrmWebhookSourceHook.conn_fields)  # fmt: skip
    assert {"auth_type", "token_url", "version", "api_budget_share"} <= set(HotCrmSalesforceHook.conn_fields)
    assert HotCrmSalesforceHook.conn_fields["consumer_secret"]["schema"]["format"] == "password"
    assert HotCrmWebhookSourceHook.conn_fields["secrets"]["schema"]["format"] == "password"
    assert {"backend"} <= set(HotCrmDatabaseHook.conn_fields)


def _fake_form_modules(monkeypatch):
    """flask_appbuilder, flask_babel and wtforms as recorders (the venv has no Flask AppBuilder)."""

    def field(kind):
        return type(kind, (), {"__init__": lambda self, label, **kw: vars(self).update(label=label, **kw)})

    wtforms = types.ModuleType("wtforms")
    wtforms.StringField, wtforms.PasswordField, wtforms.IntegerField = (
        field("StringField"),
        field("PasswordField"),
        field("IntegerField"),
    )
    validators = types.ModuleType("wtforms.validators")
    validators.Optional = lambda: "optional"
    widgets = types.ModuleType("flask_appbuilder.fieldwidgets")
    widgets.BS3TextFieldWidget = lambda: "text"
    widgets.BS3PasswordFieldWidget = lambda: "password"
    babel = types.ModuleType("flask_babel")
    babel.lazy_gettext = lambda text: text
    for name, module in {
        "wtforms": wtforms,
        "wtforms.validators": validators,
        "flask_appbuilder": types.ModuleType("flask_appbuilder"),
        "flask_appbuilder.fieldwidgets": widgets,
        "flask_babel": babel,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)


def test_connection_form_widgets_are_built_from_the_declared_fields(monkeypatch):
    _fake_form_modules(monkeypatch)
    widgets = HotCrmWebhookSourceHook.get_connection_form_widgets()
    assert set(widgets) == set(HotCrmWebhookSourceHook.conn_fields)
    assert type(widgets["secrets"]).__name__ == "PasswordField" and widgets["secrets"].widget == "password"
    assert type(widgets["tolerance_seconds"]).__name__ == "IntegerField"
    assert type(widgets["scheme"]).__name__ == "StringField" and widgets["scheme"].label == "Signature scheme"
    sf = HotCrmSalesforceHook.get_connection_form_widgets()
    assert type(sf["api_budget_share"]).__name__ == "StringField"  # a number: Airflow's form has no FloatField
    assert type(sf["consumer_secret"]).__name__ == "PasswordField"


def test_the_form_methods_import_flask_appbuilder_only_when_called():
    assert issubclass(HotCrmDatabaseHook, ConnectionForm)
    code = "import sys, hotcrm.airflow.hooks, hotcrm.airflow.salesforce; print('wtforms' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"


def test_old_prefixed_extras_are_read_like_plain_ones():
    extra = {"extra__hotcrm_salesforce__api_budget_share": 0.5, "extra__salesforce__domain": "test", "version": ""}
    assert strip_extra_prefix(extra, "salesforce", "hotcrm_salesforce") == {"api_budget_share": 0.5, "domain": "test"}


# --- connections of the provider's types, used ------------------------------------------------


def test_a_webhook_source_connection_as_the_form_stores_it(monkeypatch):
    from hotcrm.airflow.webhooks import AirflowSourceRegistry

    monkeypatch.setenv(
        "AIRFLOW_CONN_HOTCRM_WEBHOOK_SHOP",
        json.dumps(
            {
                "conn_type": "hotcrm_webhook",
                "password": "new-secret old-secret",
                "extra": {
                    "scheme": "hmac-sha256",
                    "tolerance_seconds": 120,
                    "max_body_bytes": 2048,
                    "secrets": "older-secret",
                    "extra__hotcrm_webhook__header": "X-Shop-Signature",
                    "event_id_path": "",
                },
            }
        ),
    )
    config = HotCrmWebhookSourceHook("hotcrm_webhook_shop").get_source_config()
    assert config.source == "shop" and config.secrets == ("new-secret", "old-secret", "older-secret")
    assert (config.tolerance_seconds, config.max_body_bytes, config.header) == (120, 2048, "X-Shop-Signature")
    assert config.event_id_path is None
    assert AirflowSourceRegistry()("shop").header == "X-Shop-Signature"
    assert AirflowSourceRegistry()("absent") is None


def test_a_bad_webhook_source_connection_names_itself_and_the_field(monkeypatch):
    from hotcrm.webhooks.config import SourceConfigError

    monkeypatch.setenv(
        "AIRFLOW_CONN_HOTCRM_WEBHOOK_SHOP",
        json.dumps({"conn_type": "hotcrm_webhook", "password": "s", "extra": {"tolerance_seconds": "soon"}}),
    )
    with pytest.raises(SourceConfigError, match=r"connection 'hotcrm_webhook_shop': extra.tolerance_seconds"):
        HotCrmWebhookSourceHook("hotcrm_webhook_shop").get_source_config()


def test_salesforce_fields_saved_by_the_form_reach_the_hook(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_SF_FORM",
        json.dumps(
            {
                "conn_type": "hotcrm_salesforce",
                "login": "u@example.com",
                "extra": {"auth_type": "client_credentials", "version": "61.0", "api_budget_share": 0.5},
            }
        ),
    )
    hook = HotCrmSalesforceHook("sf_form")
    assert (hook.auth_type, hook.api_version, hook.extra["api_budget_share"]) == ("client_credentials", "61.0", 0.5)


def _hotcrm_db_connection(url):
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return {"conn_type": "hotcrm_db", "host": parsed.database, "extra": {"backend": "sqlite"}}
    return {
        "conn_type": "hotcrm_db",
        "host": parsed.host,
        "port": parsed.port,
        "login": parsed.username,
        "password": parsed.password,
        "schema": parsed.database,
        "extra": {"backend": "postgresql", "application_name": "hotcrm-test"},
    }


def test_a_hotcrm_db_connection_serves_an_operator_on_both_databases(db_url, monkeypatch):
    from hotcrm.airflow.operators import HotCrmDataQualityOperator
    from hotcrm.crm import services
    from hotcrm.crm.db import session_scope
    from hotcrm.crm.models import Account

    with session_scope(db_url) as session:
        for name in ("Acme", "Globex"):
            services.create(session, Account, {"Name": name})
    monkeypatch.setenv("AIRFLOW_CONN_CRM_FORM", json.dumps(_hotcrm_db_connection(db_url)))
    monkeypatch.delenv("HOTCRM_DATABASE_URL", raising=False)
    operator = HotCrmDataQualityOperator(
        task_id="q",
        suite="account_file",
        sql='SELECT id AS "Id", name AS "Name" FROM accounts',
        suite_params={"min_rows": 2},
        hotcrm_db_conn_id="crm_form",
    )
    summary = operator.execute({})
    assert summary["success"] is True and summary["rows"] == 2 and summary["source"] == "query on crm_form"


def test_a_hotcrm_db_connection_with_an_unknown_backend_is_refused(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_CRM_FORM", json.dumps({"conn_type": "hotcrm_db", "extra": {"backend": "mysql"}}))
    with pytest.raises(ValueError, match="connection 'crm_form': backend 'mysql' is not supported"):
        HotCrmDatabaseHook("crm_form").get_database_url()


# --- the entry point --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def installed_copy(tmp_path_factory):
    """This checkout's package installed (not editable) into a folder: its dist-info carries the
    entry points pyproject.toml declares. Built from a copy, so no egg-info lands in include/
    (where every test's Airflow would find it); the shared venv is left alone."""
    source = tmp_path_factory.mktemp("provider-source")
    shutil.copy(PROJECT_DIR / "pyproject.toml", source)
    shutil.copytree(PROJECT_DIR / "include" / "hotcrm", source / "include" / "hotcrm",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    target = tmp_path_factory.mktemp("provider-install")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(source)],
        check=True, capture_output=True, env={**os.environ, "PIP_NO_INPUT": "1"},
    )  # fmt: skip
    return target


def _airflow(installed_copy, *args):
    env = {**os.environ, "PYTHONPATH": str(installed_copy)}
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", *args, "-o", "json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    # Airflow may log before the JSON (a list of objects): read from its start.
    return json.loads(result.stdout[result.stdout.index("[{") :])


@pytest.mark.slow
def test_airflow_lists_the_installed_provider(installed_copy, airflow_db):
    [dist_info] = installed_copy.glob("hotcrm_pipelines-*.dist-info")
    assert "apache_airflow_provider" in (dist_info / "entry_points.txt").read_text()
    listed = {p["package_name"]: p for p in _airflow(installed_copy, "list")}
    version = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["project"]["version"]
    assert listed["hotcrm-pipelines"]["version"] == version
    hooks = {h["connection_type"]: h for h in _airflow(installed_copy, "hooks")}
    assert hooks["hotcrm_salesforce"]["class"] == "hotcrm.airflow.salesforce.HotCrmSalesforceHook"
    assert hooks["hotcrm_webhook"]["package_name"] == "hotcrm-pipelines"
    widgets = {w["connection_parameter_name"] for w in _airflow(installed_copy, "widgets")}
    assert {"extra__hotcrm_webhook__tolerance_seconds", "extra__hotcrm_salesforce__token_url"} <= widgets


@pytest.mark.slow
def test_importing_a_hook_first_is_not_circular_once_installed(installed_copy, airflow_db):
    # Importing a hook imports airflow.sdk, whose configuration loads every provider's info,
    # ours included, while the hook's module is half-imported: get_provider_info must not need it.
    code = "import hotcrm.airflow.hooks, hotcrm.airflow.operators; print('imported')"
    env = {**os.environ, "PYTHONPATH": str(installed_copy)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("imported")
