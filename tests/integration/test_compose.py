"""docker-compose.yaml is a stack a team can deploy (issue 17), checked with docker-compose's own
validator (no Docker engine runs here, so the stack is never started by the tests):

- it validates with a complete env file, and refuses to start without one, naming what is missing
  (no secret has a default; the shipped .env.example has no values);
- the bucket service, its one-shot bucket creation, the hotcrm_bucket connection, remote task logs
  to the bucket, worker replicas, one image with the code baked in (nothing mounted), and the
  one-shot HotCRM migration every Airflow component waits for.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

PROJECT_DIR = Path(__file__).resolve().parents[2]
COMPOSE_FILE = PROJECT_DIR / "docker-compose.yaml"
ENV_EXAMPLE = PROJECT_DIR / ".env.example"
AIRFLOW_SERVICES = {
    "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-worker",
}  # fmt: skip
ONE_SHOT = {"airflow-init", "hotcrm-migrate", "bucket-init"}


def _secret_names() -> list[str]:
    """The settings .env.example lists without a value: the secrets a deployment must provide."""
    return re.findall(r"^([A-Z][A-Z0-9_]*)=$", ENV_EXAMPLE.read_text(), flags=re.MULTILINE)


def _compose(env_file: Path, *args: str) -> subprocess.CompletedProcess:
    docker_compose = shutil.which("docker-compose")
    assert docker_compose, "docker-compose is missing: `make test` installs it (scripts/ensure-system-packages.sh)"
    # --env-file: never the developer's own .env; a clean environment: nothing set from outside.
    return subprocess.run(
        [docker_compose, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), *args],
        capture_output=True, text=True, cwd=PROJECT_DIR, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip


@pytest.fixture
def env_file(tmp_path) -> Path:
    """A complete .env made by scripts/generate_env.py (every secret new and random)."""
    path = tmp_path / "stack.env"
    result = subprocess.run([sys.executable, str(PROJECT_DIR / "scripts" / "generate_env.py"), str(path)],
                            capture_output=True, text=True, check=True)  # fmt: skip
    assert path.stat().st_mode & 0o077 == 0, "the env file must be readable by its owner only"
    assert "=" not in result.stdout.replace("(mode 0600)", ""), "secrets must not be printed"
    return path


@pytest.fixture
def stack(env_file) -> dict:
    """The stack as docker-compose resolves it with ``env_file``."""
    result = _compose(env_file, "config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_docker_compose_config_accepts_the_file(env_file):
    result = _compose(env_file, "config", "-q")
    assert result.returncode == 0, result.stderr


def test_without_the_env_file_the_stack_does_not_start_and_says_why(tmp_path):
    # .env.example as shipped: every secret empty.
    result = _compose(ENV_EXAMPLE, "config", "-q")
    assert result.returncode != 0
    assert re.search(r"set [A-Z_]+ in \.env \(python3 scripts/generate_env\.py \.env\)", result.stderr), result.stderr


@pytest.mark.parametrize("name", _secret_names())
def test_each_secret_is_required(env_file, tmp_path, name):
    partial = tmp_path / "partial.env"
    partial.write_text(re.sub(rf"^{name}=.*$", f"{name}=", env_file.read_text(), flags=re.MULTILINE))
    result = _compose(partial, "config", "-q")
    assert result.returncode != 0, f"the stack starts without {name}"
    assert f"set {name} in .env" in result.stderr


def test_no_secret_has_a_default_and_the_example_ships_none():
    text = COMPOSE_FILE.read_text()
    names = _secret_names()
    assert {"AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "HOTCRM_TOKEN_KEY", "HOTCRM_API_JWT_SECRET",
            "AIRFLOW_DB_PASSWORD", "HOTCRM_DB_PASSWORD", "S3_SECRET_ACCESS_KEY"} <= set(names)  # fmt: skip
    for name in names:
        uses = re.findall(rf"\$\{{{name}(:?[-?=+]?)", text)
        assert uses, f"{name} is in .env.example but not used by docker-compose.yaml"
        assert set(uses) == {":?"}, f"{name} must be required (${{{name}:?...}}), found {uses}"
    # Every variable the file reads is either a listed secret or a documented optional setting.
    example = ENV_EXAMPLE.read_text()
    for name in set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", text)):
        assert name in example, f"{name} is read by docker-compose.yaml but not documented in .env.example"
    gitignore = (PROJECT_DIR / ".gitignore").read_text().splitlines()
    assert ".env" in gitignore


def test_secrets_come_from_the_env_file(stack, env_file):
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if re.match(r"^[A-Z]", line))
    env = stack["services"]["airflow-worker"]["environment"]
    assert env["AIRFLOW__CORE__FERNET_KEY"] == values["AIRFLOW_FERNET_KEY"]
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == values["AIRFLOW_JWT_SECRET"]
    assert env["HOTCRM_TOKEN_KEY"] == values["HOTCRM_TOKEN_KEY"]
    assert f":{values['HOTCRM_DB_PASSWORD']}@hotcrm-db:5432/" in env["AIRFLOW_CONN_HOTCRM_DB"]
    assert f":{values['AIRFLOW_DB_PASSWORD']}@postgres/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert f":{values['REDIS_PASSWORD']}@redis:" in env["AIRFLOW__CELERY__BROKER_URL"]
    services = stack["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == values["AIRFLOW_DB_PASSWORD"]
    assert services["hotcrm-db"]["environment"]["POSTGRES_PASSWORD"] == values["HOTCRM_DB_PASSWORD"]
    # The UI's admin password reaches the api-server only.
    assert services["airflow-apiserver"]["environment"]["AIRFLOW_ADMIN_PASSWORD"] == values["AIRFLOW_ADMIN_PASSWORD"]
    assert "AIRFLOW_ADMIN_PASSWORD" not in env


def test_the_bucket_service_connection_and_remote_logs(stack, env_file):
    services = stack["services"]
    assert "minio" in services and "healthcheck" in services["minio"]
    minio_env = services["minio"]["environment"]
    connection = json.loads(services["airflow-worker"]["environment"]["AIRFLOW_CONN_HOTCRM_BUCKET"])
    assert connection["conn_type"] == "aws"
    assert (connection["login"], connection["password"]) == (
        minio_env["MINIO_ROOT_USER"],
        minio_env["MINIO_ROOT_PASSWORD"],
    )
    assert connection["extra"]["endpoint_url"] == "http://minio:9000"
    env = services["airflow-worker"]["environment"]
    assert env["HOTCRM_BUCKET_URL"] == "s3://hotcrm"
    assert env["AIRFLOW__LOGGING__REMOTE_LOGGING"] == "true"
    assert env["AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"].startswith(env["HOTCRM_BUCKET_URL"] + "/")
    assert env["AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID"] == "hotcrm_bucket"
    # The bucket is created once, through that same connection, after MinIO is healthy.
    bucket_init = services["bucket-init"]
    assert bucket_init["depends_on"] == {"minio": {"condition": "service_healthy"}}
    assert 'S3Hook(aws_conn_id="hotcrm_bucket")' in " ".join(bucket_init["command"])
    assert "create_bucket" in " ".join(bucket_init["command"])


def test_one_image_with_the_code_baked_in_on_every_component(stack):
    services = stack["services"]
    assert AIRFLOW_SERVICES | ONE_SHOT | {"postgres", "hotcrm-db", "redis", "minio"} <= set(services)
    images = {services[name]["image"] for name in AIRFLOW_SERVICES | ONE_SHOT}
    assert len(images) == 1
    for name in AIRFLOW_SERVICES | ONE_SHOT:
        mounts = [volume for volume in services[name].get("volumes", []) if volume.get("type") == "bind"]
        assert not mounts, f"{name} mounts {mounts}: the code must come from the image"
        assert services[name]["build"]["context"] == str(PROJECT_DIR)
    dockerfile = (PROJECT_DIR / "Dockerfile").read_text()
    for folder in ("include/", "dags/", "plugins/"):
        assert re.search(rf"^COPY .*{folder} /opt/airflow/{folder}$", dockerfile, flags=re.MULTILINE), folder
    assert "PYTHONPATH=/opt/airflow/include" in dockerfile
    # the package itself, for its provider entry point (connection forms, `airflow providers list`)
    assert re.search(r"^RUN pip install .*--no-deps -e /opt/airflow$", dockerfile, flags=re.MULTILINE)
    # Only what the image needs is sent to the build: never .env, data/ or the venv.
    ignore = [line for line in (PROJECT_DIR / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert ignore[0] == "*"
    assert {line for line in ignore if line.startswith("!")} == {
        "!requirements.txt",
        "!pyproject.toml",
        "!include/",
        "!dags/",
        "!plugins/",
    }


def test_celery_workers_are_replicated(stack):
    worker = stack["services"]["airflow-worker"]
    assert worker["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert worker["deploy"]["replicas"] >= 2
    assert "container_name" not in worker  # a fixed name would forbid replicas


def test_every_component_waits_for_the_hotcrm_migration(stack):
    services = stack["services"]
    migrate = services["hotcrm-migrate"]
    assert "python -m hotcrm db upgrade" in " ".join(migrate["command"])
    assert migrate["depends_on"] == {"hotcrm-db": {"condition": "service_healthy"}}
    # one database setting: the hotcrm_db connection every component reads
    assert migrate["environment"]["AIRFLOW_CONN_HOTCRM_DB"].startswith("postgres://hotcrm:")
    assert "HOTCRM_DATABASE_URL" not in migrate["environment"]
    for name in AIRFLOW_SERVICES:
        depends = services[name]["depends_on"]
        for one_shot in ONE_SHOT:
            assert depends[one_shot] == {"condition": "service_completed_successfully"}, (name, one_shot)


def test_generated_env_has_valid_fernet_keys_and_is_never_overwritten(env_file):
    from cryptography.fernet import Fernet

    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if re.match(r"^[A-Z]", line))
    for name in ("AIRFLOW_FERNET_KEY", "HOTCRM_TOKEN_KEY"):
        Fernet(values[name])  # raises on a malformed key
    assert len(set(values.values())) == len(values), "every secret is new"
    before = env_file.read_text()
    again = subprocess.run([sys.executable, str(PROJECT_DIR / "scripts" / "generate_env.py"), str(env_file)],
                           capture_output=True, text=True)  # fmt: skip
    assert again.returncode == 1 and "not overwritten" in again.stderr
    assert env_file.read_text() == before


@pytest.mark.slow
def test_bucket_init_creates_the_bucket_through_the_connection(env_file, tmp_path, s3_server):
    # bucket-init's own script, as compose resolves it, run against moto's S3 on loopback in place
    # of MinIO: the connection passed through is enough to create the bucket, and a re-run is a no-op.
    name = f"hotcrm-{uuid.uuid4().hex[:10]}"
    aimed = tmp_path / "moto.env"
    aimed.write_text(
        env_file.read_text()
        + f"HOTCRM_BUCKET_NAME={name}\nS3_ENDPOINT_URL={s3_server.endpoint_url}\n"
        + f"S3_ACCESS_KEY_ID={s3_server.access_key}\nS3_SECRET_ACCESS_KEY={s3_server.secret_key}\n"
    )
    result = _compose(aimed, "config")
    assert result.returncode == 0, result.stderr
    service = yaml.safe_load(result.stdout)["services"]["bucket-init"]
    script = service["command"][-1]
    code = script.split("<<'PY'\n", 1)[1].rsplit("\nPY", 1)[0]
    env = {**os.environ, "AIRFLOW_CONN_HOTCRM_BUCKET": service["environment"]["AIRFLOW_CONN_HOTCRM_BUCKET"]}
    for _ in range(2):
        run = subprocess.run([sys.executable, "-"], input=code, capture_output=True, text=True, env=env, timeout=120)
        assert run.returncode == 0, run.stderr[-3000:]
        assert f"bucket {name} is ready" in run.stdout
    assert name in {bucket["Name"] for bucket in s3_server.client().list_buckets()["Buckets"]}


def test_the_api_server_writes_the_admin_password_file_privately(stack, tmp_path):
    # The api-server's start script up to `exec /entrypoint api-server`, run here with a password
    # JSON must escape: the file holds exactly it, readable by its owner only.
    # `docker-compose config` prints $ as $$ again; the container's shell gets one $.
    script = stack["services"]["airflow-apiserver"]["command"][-1].replace("$$", "$")
    assert script.rstrip().endswith("exec /entrypoint api-server")
    password = 'p"w\\d $x'
    workdir = tmp_path / "api-server"
    workdir.mkdir()
    passwords_file = workdir / "passwords.json"
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "AIRFLOW_ADMIN_PASSWORD": password,
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file)}  # fmt: skip
    run = subprocess.run(["bash", "-c", script.replace("exec /entrypoint api-server", "")], env=env, cwd=workdir,
                         capture_output=True, text=True)  # fmt: skip
    assert [path.name for path in workdir.iterdir()] == ["passwords.json"]
    assert run.returncode == 0, run.stderr
    assert json.loads(passwords_file.read_text()) == {"admin": password}
    assert passwords_file.stat().st_mode & 0o077 == 0
