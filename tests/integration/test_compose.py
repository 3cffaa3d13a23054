"""docker-compose.yaml is accepted by a compose validator (no Docker engine runs here)."""

import shutil
import subprocess
from pathlib import Path

import yaml

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "docker-compose.yaml"


def test_docker_compose_config_accepts_the_file():
    docker_compose = shutil.which("docker-compose")
    assert docker_compose, "docker-compose is missing: `make test` installs it (scripts/ensure-system-packages.sh)"
    result = subprocess.run([docker_compose, "-f", str(COMPOSE_FILE), "config", "-q"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_stack_has_airflows_celery_layout_and_a_crm_database():
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    assert {
        "postgres",
        "redis",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
        "airflow-init",
        "hotcrm-db",
    } <= set(services)
    worker = services["airflow-worker"]
    assert "./include:/opt/airflow/include" in worker["volumes"]
    assert worker["environment"]["PYTHONPATH"] == "/opt/airflow/include"
