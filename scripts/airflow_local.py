"""``make airflow``: Airflow standalone for a newcomer, on the embedded defaults.

Before it starts Airflow it seeds the CRM database and the import bucket (once), defines a
local webhook source (``payment``) and an SMTP sink on loopback that writes each mail to
``data/mail/``, and sizes Airflow's parallelism to the machine; on the first start it unpauses
the DAGs (all but salesforce_sync, which needs a real org). It runs ``airflow standalone`` in
its own process group and, on Ctrl-C (or SIGTERM), stops the whole group: no scheduler,
worker or API server process is left behind.

``python scripts/airflow_local.py send-webhook`` posts one signed sample payment event to
the running server's receiver.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
SOURCE = "payment"
# Unpaused on the first start; salesforce_sync waits for a real salesforce_default connection.
KEEP_PAUSED = {"salesforce_sync": "it needs a salesforce_default connection to a real org"}
SMTP_PORT = int(os.environ.get("HOTCRM_SMTP_SINK_PORT", "2525"))
API_PORT = int(os.environ.get("AIRFLOW__API__PORT", "8080"))


def sized_env(cpus: int) -> dict[str, str]:
    """Airflow settings for a machine with ``cpus`` cores (a LocalExecutor worker per slot)."""
    slots = max(2, min(32, 2 * cpus))
    return {
        "AIRFLOW__CORE__PARALLELISM": str(slots),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(slots),
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": str(max(1, min(4, cpus))),
        "AIRFLOW__API__WORKERS": "1",
    }


def data_dir() -> Path:
    return Path(os.environ.get("HOTCRM_DATA_DIR", PROJECT_DIR / "data"))


def webhook_secret() -> str:
    """The local source's signing secret: made once, kept (mode 600) in the data folder."""
    path = data_dir() / "local-webhook-secret"
    if not path.exists():
        import base64

        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())
        path.chmod(0o600)
    return path.read_text().strip()


def local_connections(smtp_port: int) -> dict[str, str]:
    """The webhook source and SMTP sink connections, unless the environment defines them."""
    from hotcrm.webhooks.config import connection_json, env_var

    wanted = {
        env_var(SOURCE): connection_json("standard-webhooks", [webhook_secret()]),
        "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": smtp_port,
                "extra": {"from_email": "hotcrm@localhost", "disable_ssl": True, "disable_tls": True},
            }
        ),
    }
    return {name: value for name, value in wanted.items() if name not in os.environ}


def seed_once(database_url: str) -> list[str]:
    """Sample CRM records (idempotent) and, the first time, the sample lead files in ``incoming/``."""
    from hotcrm.airflow.leads import lead_folders
    from hotcrm.crm import seed
    from hotcrm.settings import SAMPLE_DATA_DIR

    counts = seed.load_seed(database_url)
    lines = ["sample records: " + ", ".join(f"{n} {name}" for name, n in counts.items())]
    marker = data_dir() / ".sample-leads-dropped"
    if not marker.exists():
        incoming = lead_folders()["incoming"]
        for sample in sorted((SAMPLE_DATA_DIR / "leads").glob("*.csv")):
            with (incoming / sample.name).open("wb") as out:
                out.write(sample.read_bytes())
        marker.write_text(datetime.now(UTC).isoformat())
        lines.append(f"sample lead files dropped in {incoming} (lead_import picks them up)")
    return lines


class MailSink:
    """An SMTP server on loopback that writes every message to ``<folder>/<time>-<n>.eml``."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder, self.port, self.count = folder, port, 0
        self.controller = None

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd API)
        self.count += 1
        name = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{self.count}.eml"
        (self.folder / name).write_bytes(envelope.content)
        return "250 OK"

    def start(self) -> MailSink:
        import logging

        from aiosmtpd.controller import Controller

        logging.getLogger("mail.log").setLevel(logging.WARNING)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()


def stop_group(process: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM the process group (and any descendant that left it), then SIGKILL what remains."""
    import psutil

    try:
        family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        for member in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                member.send_signal(sig)
        _, alive = psutil.wait_procs(family, timeout=grace if sig == signal.SIGTERM else 10)
        if process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=1)
        if not alive and process.poll() is not None:
            return
        family = alive


def run_group(command: list[str], env: dict[str, str], on_ready=None) -> int:
    """Run ``command`` in a new process group until it exits or we are told to stop."""
    process = subprocess.Popen(command, env=env, start_new_session=True)
    stopping = False

    def _stop(signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stopping and process.poll() is None:
            if on_ready is not None and on_ready():
                on_ready = None
            time.sleep(0.5)
    finally:
        print("\nstopping Airflow (the whole process group)...", flush=True)
        stop_group(process)
    return 0 if stopping else (process.returncode or 0)


def unpause_once(port: int, passwords_file: str, timeout: float = 600) -> None:
    """On the first start, unpause every DAG but those in :data:`KEEP_PAUSED`, through Airflow's
    REST API as admin, once the DAG processor has parsed them (later starts leave them be)."""
    import httpx

    marker = data_dir() / ".dags-unpaused"
    if marker.exists():
        return
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base, timeout=20) as client:
        password = json.loads(Path(passwords_file).read_text())["admin"]
        token = client.post("/auth/token", json={"username": "admin", "password": password}).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        wanted = {p.stem for p in (PROJECT_DIR / "dags").glob("*.py") if not p.stem.startswith("_")}
        while time.monotonic() < deadline:
            dags = {d["dag_id"]: d for d in client.get("/api/v2/dags", params={"limit": 100}).json().get("dags", [])}
            if wanted <= set(dags):
                break
            time.sleep(3)
        done = []
        for dag_id, dag in sorted(dags.items()):
            if dag["is_paused"] and dag_id not in KEEP_PAUSED:
                client.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False}).raise_for_status()
                done.append(dag_id)
    marker.write_text(datetime.now(UTC).isoformat())
    print(f"unpaused: {', '.join(done) or 'nothing'}", flush=True)
    for dag_id, why in KEEP_PAUSED.items():
        print(f"{dag_id} stays paused ({why}): airflow dags unpause {dag_id}", flush=True)


def _api_ready(port: int):
    import httpx

    def check() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    return check


def main() -> int:
    from hotcrm.settings import default_database_url

    env = dict(os.environ)
    cpus = os.cpu_count() or 2
    env.update(sized_env(cpus))
    database_url = default_database_url()
    lines = seed_once(database_url)
    mail = data_dir() / "mail"
    sink = MailSink(mail, SMTP_PORT).start() if "AIRFLOW_CONN_SMTP_DEFAULT" not in os.environ else None
    env.update(local_connections(SMTP_PORT))
    # Local use: the UI on loopback only, and tasks reach the execution API on the port it uses.
    env.setdefault("AIRFLOW__API__HOST", "127.0.0.1")
    env.setdefault("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", f"http://localhost:{API_PORT}/execution/")
    home = Path(env.get("AIRFLOW_HOME", PROJECT_DIR / ".airflow"))
    passwords = env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE") or str(
        home / "simple_auth_manager_passwords.json.generated"
    )
    ready = _api_ready(API_PORT)

    def on_ready() -> bool:
        if not ready():
            return False
        print(
            "\n" + "=" * 78
            + f"\nAirflow UI: http://localhost:{API_PORT}   user: admin   password: in {passwords}"
            + f"\nHotCRM pages: http://localhost:{API_PORT}/plugin/hotcrm (the HotCRM entry of the menu)"
            + f"\nparallelism {env['AIRFLOW__CORE__PARALLELISM']} for {cpus} cores; the DAGs are unpaused once parsed"
            + f"\nwebhooks: POST http://localhost:{API_PORT}/hotcrm/webhooks/{SOURCE} (standard-webhooks, secret in"
            + f" {data_dir() / 'local-webhook-secret'});"
            + "\n  send a signed sample: python scripts/airflow_local.py send-webhook"
            + (f"\nmail (smtp_default -> 127.0.0.1:{SMTP_PORT}) lands in {mail}/" if sink else "")
            + "\n" + "\n".join(lines)
            + "\nCtrl-C stops everything.\n" + "=" * 78,
            flush=True,
        )  # fmt: skip
        import threading

        def unpause() -> None:
            try:
                unpause_once(API_PORT, passwords)
            except Exception as exc:  # the UI works anyway; say how to do it by hand
                print(f"could not unpause the DAGs ({exc}): use the toggle in the UI or `airflow dags unpause ID`")

        threading.Thread(target=unpause, daemon=True).start()
        return True

    try:
        return run_group(["airflow", "standalone"], env, on_ready)
    finally:
        if sink is not None:
            sink.stop()


def send_webhook() -> int:
    """Post one signed sample payment event to the local receiver."""
    import uuid

    import httpx

    from hotcrm.webhooks.samples import encode, payment_event, signed_headers

    event = payment_event("payment.succeeded", "txn_sample", event_id=f"evt_{uuid.uuid4().hex[:12]}")
    body = encode(event)
    response = httpx.post(
        f"http://127.0.0.1:{API_PORT}/hotcrm/webhooks/{SOURCE}",
        content=body,
        headers=signed_headers("standard-webhooks", webhook_secret(), body, event["id"]),
        timeout=20,
    )
    print(f"{response.status_code} {response.text}")
    return 0 if response.status_code < 300 else 1


if __name__ == "__main__":
    sys.exit(send_webhook() if sys.argv[1:] == ["send-webhook"] else main())
