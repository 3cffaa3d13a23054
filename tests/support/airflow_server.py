"""``airflow api-server`` with the project's plugin on a loopback port, logging in with the
simple auth manager (users and passwords set here), and a seeded CRM database."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.postgres import free_port

PROJECT_DIR = Path(__file__).resolve().parents[2]
# name -> simple auth manager role; passwords are generated per server.
USERS = {"admin": "admin", "viewer": "viewer"}
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


class AirflowApiServer:
    """The API server as a process group (stopped with the group: no worker is left behind)."""

    def __init__(self, env: dict[str, str], work: Path, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, free_port()
        self.base_url = f"http://{host}:{self.port}"
        self.passwords = {user: secrets.token_urlsafe(12) for user in USERS}
        passwords_file = work / "passwords.json"
        passwords_file.write_text(json.dumps(self.passwords))
        self.log_path = work / "api-server.log"
        self.env = {
            **os.environ,
            **env,
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in USERS.items()),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.base_url,
            "PYTHONPATH": os.pathsep.join([str(PROJECT_DIR / "include"), str(PROJECT_DIR)]),
        }
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> AirflowApiServer:
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "airflow", "api-server", "--port", str(self.port), "--host", self.host,
             "--workers", "1"],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.base_url}/hotcrm/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("airflow api-server did not start:\n" + self.log_path.read_text()[-3000:])
            time.sleep(0.5)

    def token(self, user: str) -> str:
        """A JWT for ``user``, as the UI's login form obtains it."""
        response = httpx.post(
            f"{self.base_url}/auth/token", json={"username": user, "password": self.passwords[user]}, timeout=20
        )
        response.raise_for_status()
        return response.json()["access_token"]

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()
