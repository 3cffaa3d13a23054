"""helm/*.yaml are valid values for the official Airflow Helm chart (issue 17), checked as Helm
checks them before rendering: the chart's values.yaml, then ours on top (``-f`` order), merged,
validated against the chart's values.schema.json (both copied in tests/fixtures/airflow_chart,
see SOURCE.md there). `helm template` itself cannot run here (no helm binary): the README says so.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

PROJECT_DIR = Path(__file__).resolve().parents[2]
HELM_DIR = PROJECT_DIR / "helm"
CHART = PROJECT_DIR / "tests" / "fixtures" / "airflow_chart"
VARIANTS = {"values-celery.yaml": "CeleryExecutor", "values-kubernetes.yaml": "KubernetesExecutor"}


def helm_merge(base: dict, override: dict) -> dict:
    """Helm's coalescing of values files: maps merge key by key, anything else replaces, null deletes."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = helm_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _values(variant: str) -> dict:
    return helm_merge(
        helm_merge(_load(CHART / "values.yaml"), _load(HELM_DIR / "values.yaml")), _load(HELM_DIR / variant)
    )


def _errors(validator, values: dict) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(values)]


def test_helm_merge_follows_helms_rules():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1, "e": 2}
    assert helm_merge(base, {"a": {"c": [3]}, "d": None, "f": {"g": 1}}) == {
        "a": {"b": 1, "c": [3]},
        "e": 2,
        "f": {"g": 1},
    }


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_values_are_valid_for_the_chart(validator, variant):
    values = _values(variant)
    assert not _errors(validator, values)
    assert values["executor"] == VARIANTS[variant]


def _unknown_keys(values: dict, schema: dict, path: str = "") -> list[str]:
    """Keys of ``values`` the chart does not declare. Helm ignores them silently where the schema
    allows extra properties (at the top level, under workers.celery, ...), so a typo would deploy."""
    unknown = []
    for key, value in values.items():
        where = f"{path}.{key}" if path else key
        declared = schema.get("properties", {})
        if key in declared:
            child = declared[key]
        elif isinstance(schema.get("additionalProperties"), dict):
            child = schema["additionalProperties"]
        else:
            unknown.append(where)
            continue
        if isinstance(value, dict) and "$ref" not in child:
            unknown += _unknown_keys(value, child, where)
    return unknown


@pytest.mark.parametrize("name", ["values.yaml", *sorted(VARIANTS)])
def test_every_key_we_set_is_one_the_chart_declares(validator, name):
    assert not _unknown_keys(_load(HELM_DIR / name), validator.schema)


def test_the_checks_catch_what_a_typo_would_be(validator):
    # Each check can fail: a misspelt key (where the schema refuses extras, and where it allows
    # them), a wrong type and an unknown executor.
    values = _values("values-celery.yaml")
    assert any("replica" in error for error in _errors(validator, helm_merge(values, {"workers": {"replica": 2}})))
    assert _unknown_keys({"workers": {"celery": {"replica": 2}}, "executr": "x"}, validator.schema) == [
        "workers.celery.replica",
        "executr",
    ]
    wrong_type = helm_merge(values, {"secret": [{"envName": "X", "secretName": "s", "secretKey": 1}]})
    assert _errors(validator, wrong_type)
    assert _errors(validator, helm_merge(values, {"executor": "celery"}))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_image_is_ours_with_the_code_baked_in(variant):
    values = _values(variant)
    airflow_image = values["images"]["airflow"]
    assert airflow_image["repository"].endswith("/hotcrm-airflow")
    assert values["images"]["useDefaultImageForMigration"] is False  # the migration job needs hotcrm
    assert values["dags"]["gitSync"]["enabled"] is False and values["dags"]["persistence"]["enabled"] is False
    assert (
        values["airflowVersion"]
        == re.search(r"FROM apache/airflow:([\d.]+)-", (PROJECT_DIR / "Dockerfile").read_text())[1]
    )


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_connections_and_secrets_come_from_kubernetes_secrets(variant):
    values = _values(variant)
    from_secrets = {item["envName"]: item["secretName"] for item in values["secret"]}
    for conn_id in ("hotcrm_db", "hotcrm_bucket", "salesforce_default", "smtp_default"):
        assert from_secrets[f"AIRFLOW_CONN_{conn_id.upper()}"] == "hotcrm-connections"
    assert from_secrets["HOTCRM_TOKEN_KEY"] == from_secrets["HOTCRM_API_JWT_SECRET"] == "hotcrm-secrets"
    for key in ("fernetKeySecretName", "jwtSecretName", "apiSecretKeySecretName"):
        assert values[key] == "hotcrm-airflow"
    assert values["data"]["metadataSecretName"] == "hotcrm-airflow-db"
    assert values["createUserJob"]["enabled"] is False  # its default user has a default password
    # None of the chart's inline secrets is set: they would sit in the values, in plain text.
    inline = [("fernetKey",), ("jwtSecret",), ("apiSecretKey",), ("redis", "password"), ("data", "brokerUrl"),
              ("data", "metadataConnection"), ("data", "resultBackendConnection")]  # fmt: skip
    for name in ("values.yaml", variant):
        ours = _load(HELM_DIR / name)
        for keys in inline:
            node = ours
            for key in keys:
                node = node.get(key) if isinstance(node, dict) else None
            assert node is None, f"helm/{name} sets {'.'.join(keys)} inline: use a Kubernetes Secret"
    assert {item["name"] for item in values["env"]} == {"HOTCRM_BUCKET_URL", "PYTHONPATH"}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_task_logs_and_data_go_to_the_bucket(variant):
    values = _values(variant)
    bucket = next(item["value"] for item in values["env"] if item["name"] == "HOTCRM_BUCKET_URL")
    assert bucket.startswith("s3://")
    logging = values["config"]["logging"]
    assert logging["remote_logging"] == "True"
    assert logging["remote_base_log_folder"].startswith(bucket + "/")
    assert logging["remote_log_conn_id"] == "hotcrm_bucket"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_hotcrm_migration_runs_in_the_charts_migration_job_before_airflows(variant):
    job = _values(variant)["migrateDatabaseJob"]
    assert job["enabled"] is True and job["useHelmHooks"] is True
    (init,) = job["extraInitContainers"]
    assert init["command"] == ["python", "-m", "hotcrm", "db", "upgrade"]
    assert init["image"] == "{{ .Values.images.airflow.repository }}:{{ .Values.images.airflow.tag }}"
    env = {item["name"]: item for item in init["env"]}
    assert env["HOTCRM_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "hotcrm-secrets",
        "key": "crm-database-url",
    }


def test_executor_variants():
    celery, kubernetes = _values("values-celery.yaml"), _values("values-kubernetes.yaml")
    assert celery["redis"]["enabled"] is True and celery["redis"]["passwordSecretName"] == "hotcrm-redis"
    assert celery["workers"]["celery"]["replicas"] >= 2
    assert kubernetes["redis"]["enabled"] is False
    assert kubernetes["workers"]["kubernetes"]["resources"]["requests"]
