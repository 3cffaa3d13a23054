"""``make airflow``'s wrapper (scripts/airflow_local.py): settings sized to the machine, the
local connections, and a Ctrl-C that leaves no process of the group behind."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.conftest import PROJECT_DIR

SCRIPT = PROJECT_DIR / "scripts" / "airflow_local.py"


def _module():
    spec = importlib.util.spec_from_file_location("airflow_local", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_parallelism_follows_the_cores():
    local = _module()
    two = local.sized_env(2)
    assert (two["AIRFLOW__CORE__PARALLELISM"], two["AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES"]) == ("4", "2")
    assert two["AIRFLOW__API__WORKERS"] == "1"
    assert local.sized_env(64)["AIRFLOW__CORE__PARALLELISM"] == "32"
    assert local.sized_env(1)["AIRFLOW__CORE__PARALLELISM"] == "2"


def test_local_connections_verify_webhooks_and_point_mail_at_the_sink(tmp_path, monkeypatch):
    from hotcrm.webhooks.config import env_source_registry, env_var
    from hotcrm.webhooks.samples import encode, payment_event, signed_headers

    monkeypatch.setenv("HOTCRM_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("AIRFLOW_CONN_SMTP_DEFAULT", raising=False)
    monkeypatch.delenv(env_var("payment"), raising=False)
    local = _module()
    conns = local.local_connections(2525)
    secret_file = tmp_path / "local-webhook-secret"
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
    assert local.local_connections(2525) == conns  # the same secret at the next start
    smtp = json.loads(conns["AIRFLOW_CONN_SMTP_DEFAULT"])
    assert (smtp["host"], smtp["port"], smtp["extra"]["disable_tls"]) == ("127.0.0.1", 2525, True)
    monkeypatch.setenv(env_var("payment"), conns[env_var("payment")])
    config = env_source_registry("payment")
    event = payment_event("payment.succeeded", "txn_1", event_id="evt_1")
    body = encode(event)
    headers = signed_headers("standard-webhooks", secret_file.read_text(), body, "evt_1")
    assert config.scheme == "standard-webhooks" and list(config.secrets) == [secret_file.read_text()]
    assert headers  # the sample sender signs with the same secret the receiver checks
    # An operator's own connection wins.
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", "{}")
    assert "AIRFLOW_CONN_SMTP_DEFAULT" not in local.local_connections(2525)


def test_ctrl_c_stops_every_process_of_the_group(tmp_path):
    pids = tmp_path / "pids"
    # A tree like standalone's: children, a grandchild, one that ignores SIGTERM.
    tree = (
        f"sleep 300 & echo $! >> {pids}; "
        f"bash -c 'sleep 300 & echo $! >> {pids}; wait' & echo $! >> {pids}; "
        f"bash -c 'trap \"\" TERM; while true; do sleep 1; done' & echo $! >> {pids}; "
        "wait"
    )
    driver = (
        "import importlib.util, sys; "
        f"spec = importlib.util.spec_from_file_location('airflow_local', {str(SCRIPT)!r}); "
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
        "m.stop_group.__defaults__ = (3,); "
        f"sys.exit(m.run_group(['bash', '-c', {tree!r}], dict(__import__('os').environ)))"
    )
    process = subprocess.Popen([sys.executable, "-c", driver], env={**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(PROJECT_DIR / "include"), str(PROJECT_DIR)])})  # fmt: skip
    deadline = time.monotonic() + 20
    while not (pids.exists() and len(pids.read_text().split()) == 4):
        assert time.monotonic() < deadline, "the process tree did not start"
        time.sleep(0.1)
    children = [int(p) for p in pids.read_text().split()]
    assert all(psutil.pid_exists(p) for p in children)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0
    survivors = [p for p in children if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert survivors == []


def test_the_script_is_what_make_airflow_runs():
    makefile = Path(PROJECT_DIR / "Makefile").read_text()
    assert "scripts/airflow_local.py" in makefile.split("\nairflow:")[1].split("\n\n")[0]
