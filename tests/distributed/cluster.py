"""A CeleryExecutor deployment on one machine, with the workers as separate hosts.

The services (PostgreSQL, Redis, moto's S3, an SMTP sink and Airflow's API server) listen on
the address of a private bridge in the root network namespace; the scheduler, DAG processor
and triggerer run beside them. Each Celery worker runs in its own network namespace (a veth
pair to the bridge) and its own UTS namespace (its own hostname), with its own
``AIRFLOW_HOME`` and working folder: it shares no disk path with the others, so a task can
only hand data to the next one through the database or the bucket, as on separate machines.
Nothing listens on anything but loopback and the bridge.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from scripts.airflow_local import stop_group
from tests.support.postgres import free_port

PROJECT_DIR = Path(__file__).resolve().parents[2]
PYTHONPATH = os.pathsep.join([str(PROJECT_DIR / "include"), str(PROJECT_DIR)])


def _ip(*args: str, netns: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    subprocess.run([*prefix, "ip", *args], check=True, capture_output=True)


def can_make_namespaces() -> str | None:
    """Why the distributed test cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (ip netns, unshare --uts)"
    for tool in ("ip", "unshare", "redis-server"):
        if shutil.which(tool) is None:
            return f"{tool} not found (bash scripts/ensure-system-packages.sh installs redis-server)"
    return None


@dataclass
class Host:
    """One worker machine: a network namespace with its own address and hostname."""

    name: str
    netns: str
    veth: str
    address: str
    home: Path
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    kills: list[float] = field(default_factory=list)

    def start(self, env: dict[str, str], concurrency: int = 2) -> None:
        """``airflow celery worker`` inside the namespace, under this host's name."""
        (self.home / "work").mkdir(parents=True, exist_ok=True)
        self.log_path = self.home / f"worker-{len(self.kills)}.log"
        env = {
            **env,
            "AIRFLOW_HOME": str(self.home / "airflow"),
            "HOTCRM_DATA_DIR": str(self.home / "data"),
            "HOTCRM_TEST_HOST_ADDRESS": self.address,
        }
        command = [sys.executable, "-m", "airflow", "celery", "worker", "--concurrency", str(concurrency),
                   "--celery-hostname", f"celery@{self.name}", "--without-mingle", "--without-gossip"]  # fmt: skip
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, "unshare", "--uts", "--", "sh", "-c",
                 f'hostname {self.name} && exec "$@"', "sh", *command],
                env=env, cwd=self.home / "work", stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def pids(self) -> list[int]:
        """Every process of this host (every process in its network namespace)."""
        found = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True, text=True, check=False)
        return [int(pid) for pid in found.stdout.split()]

    def kill(self) -> int:
        """SIGKILL every process of the host at once, as a power cut would; returns how many."""
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.kills.append(time.time())
        if self.process is not None:
            self.process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.2)
        return len(pids)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_group(self.process, grace=20)
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class Network:
    """A bridge in the root namespace and one namespace per host, each on a veth pair."""

    def __init__(self, names: list[str], root: Path) -> None:
        tag = uuid.uuid4().hex[:5]
        used = subprocess.run(["ip", "-4", "addr"], capture_output=True, text=True, check=True).stdout
        subnet = next(f"10.231.{n}" for n in random.sample(range(100, 250), 150) if f"10.231.{n}." not in used)
        self.bridge = f"hcbr{tag}"
        self.address = f"{subnet}.1"
        self.cidr = f"{subnet}.0/24"
        self.hosts = {
            name: Host(name, f"hotcrm-{tag}-{i}", f"hcv{tag}{i}", f"{subnet}.{10 + i}", root / name)
            for i, name in enumerate(names)
        }

    def up(self) -> Network:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.address}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for host in self.hosts.values():
            subprocess.run(["ip", "netns", "add", host.netns], check=True, capture_output=True)
            _ip("link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
            _ip("link", "set", host.veth, "master", self.bridge, "up")
            _ip("addr", "add", f"{host.address}/24", "dev", "eth0", netns=host.netns)
            _ip("link", "set", "eth0", "up", netns=host.netns)
            _ip("link", "set", "lo", "up", netns=host.netns)
        return self

    def down(self) -> None:
        for host in self.hosts.values():
            host.stop()
            subprocess.run(["ip", "netns", "del", host.netns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)


class RedisServer:
    """redis-server (the Celery broker) on one address, nothing persisted."""

    def __init__(self, host: str, work: Path) -> None:
        self.host, self.port, self.work = host, free_port(), work
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> RedisServer:
        self.work.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["redis-server", "--bind", self.host, "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(self.work), "--protected-mode", "no"],
            stdout=(self.work / "redis.log").open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return self
            time.sleep(0.2)
        raise RuntimeError("redis-server did not start: " + (self.work / "redis.log").read_text()[-2000:])

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process, grace=10)


class Component:
    """One Airflow component of the root namespace (scheduler, dag-processor, triggerer)."""

    def __init__(self, command: str, env: dict[str, str], work: Path) -> None:
        self.command, self.work = command, work
        self.log_path = work / f"{command}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "airflow", command],
            env=env, cwd=work, stdout=self.log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def stop(self) -> None:
        stop_group(self.process, grace=20)


class RestClient:
    """Airflow's REST API v2 as the admin user (a JWT from ``/auth/token``)."""

    def __init__(self, server) -> None:
        self.server = server
        self.client = httpx.Client(base_url=server.base_url, timeout=30)
        self._login()

    def _login(self) -> None:
        self.client.headers["Authorization"] = f"Bearer {self.server.token('admin')}"

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        response = self.client.request(method, path, **kwargs)
        if response.status_code == 401:  # the token expired: log in again
            self._login()
            response = self.client.request(method, path, **kwargs)
        return response

    def json(self, method: str, path: str, **kwargs):
        response = self.request(method, path, **kwargs)
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text[:500]}"
        return response.json()

    def wait_for_dags(self, dag_ids: list[str], timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = {d["dag_id"] for d in self.json("GET", "/api/v2/dags", params={"limit": 100})["dags"]}
            if set(dag_ids) <= found:
                return
            time.sleep(3)
        raise AssertionError(f"DAGs not parsed in {timeout}s: {sorted(set(dag_ids) - found)}")

    def unpause(self, dag_id: str) -> None:
        self.json("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        run = self.json("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        return run["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.json("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        state = "queued"
        while time.monotonic() < deadline:
            state = self.run_state(dag_id, run_id)
            if state in ("success", "failed"):
                return state
            time.sleep(2)
        raise AssertionError(f"{dag_id} {run_id} still {state} after {timeout}s")

    def wait_for_all_runs(self, dag_id: str, timeout: float = 600) -> dict[str, str]:
        """Wait until no run of ``dag_id`` is queued or running; returns run id -> state."""
        deadline = time.monotonic() + timeout
        while True:
            runs = self.json("GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"]
            states = {run["dag_run_id"]: run["state"] for run in runs}
            if not set(states.values()) & {"queued", "running"}:
                return states
            if time.monotonic() > deadline:
                raise AssertionError(f"{dag_id} runs not finished after {timeout}s: {states}")
            time.sleep(2)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        return self.json("GET", path, params={"limit": 100})["task_instances"]

    def task_log(self, ti: dict) -> str:
        """The log of one task instance's try, as the UI reads it (through the API server)."""
        path = (f"/api/v2/dags/{ti['dag_id']}/dagRuns/{ti['dag_run_id']}/taskInstances/{ti['task_id']}"
                f"/logs/{ti['try_number']}")  # fmt: skip
        body = self.json("GET", path, params={"map_index": ti["map_index"], "full_content": True},
                         headers={"Accept": "application/json"})  # fmt: skip
        content = body["content"]
        if isinstance(content, list):
            return "\n".join(str(line.get("event", line)) if isinstance(line, dict) else str(line) for line in content)
        return str(content)
