"""The Salesforce emulator over HTTPS on 127.0.0.1, with a certificate made for the run (trustme).

Start it from a test with the ``salesforce_emulator`` fixture, or from code::

    emulator = start_emulator()
    emulator.base_url, emulator.ca_path      # https://127.0.0.1:PORT, a PEM file to verify with
    emulator.faults.lock_share = 0.1         # fault switches (see emulator.Faults)
    emulator.api_calls                       # the call counter
    emulator.stop()
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.salesforce.emulator import SalesforceEmulator

log = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Salesforce's front ends do
    emulator: SalesforceEmulator

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without NODELAY, Nagle and delayed ACKs
        # would add ~40 ms to every call and drown the latency a test sets on purpose.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass  # quiet: tests read the emulator's own request log instead

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        response = self.emulator.handle(self.command, self.path, headers, body)
        with self.emulator.lock:
            self.emulator.requests_log.append((self.command, self.path.split("?")[0], response.status))
        if response.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        payload = response.payload()
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.status != 204 and (payload or response.status not in (302,)):
            self.send_header("Content-Type", f"{response.content_type};charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


class RunningEmulator:
    """A started emulator: its URL, CA file, the org's state, counters and fault switches."""

    def __init__(self, emulator: SalesforceEmulator, server: _Server, ca_path: Path, workdir: Path) -> None:
        self.emulator = emulator
        self._server = server
        self.ca_path = ca_path
        self._workdir = workdir
        self._thread = threading.Thread(target=server.serve_forever, name="salesforce-emulator", daemon=True)
        self._thread.start()

    _OWN = ("emulator", "_server", "ca_path", "_workdir", "_thread")

    def __setattr__(self, name: str, value: Any) -> None:
        # daily_limit, api_usage, ... are the emulator's: setting them here changes the org
        if name in self._OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self.emulator, name, value)

    def __getattr__(self, name: str) -> Any:
        # faults, records, api_calls, calls, expire_sessions(), find(), insert(), ... of the emulator
        return getattr(self.emulator, name)

    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:PORT``: the login host and the instance URL."""
        return self.emulator.base_url

    @property
    def token_url(self) -> str:
        """The OAuth 2.0 token endpoint."""
        return f"{self.base_url}/services/oauth2/token"

    def connection(self, auth_type: str = "password", **extra: Any) -> dict[str, Any]:
        """A ``salesforce_default`` connection (dict form) that logs in to this emulator."""
        e = self.emulator
        base = {"token_url": self.token_url, "ca_bundle": str(self.ca_path), "auth_type": auth_type}
        if auth_type == "password":
            conn = {"login": e.username, "password": e.password}
            base |= {
                "security_token": e.security_token,
                "consumer_key": e.client_id,
                "consumer_secret": e.client_secret,
            }
        elif auth_type == "client_credentials":
            conn = {}
            base |= {"consumer_key": e.client_id, "consumer_secret": e.client_secret}
        elif auth_type == "session":
            # No token_url: an existing session goes through the provider's SalesforceHook.
            conn = {"password": e.issue_token()}
            base |= {"instance_url": self.base_url}
            base.pop("token_url")
        elif auth_type == "jwt_bearer":
            conn = {"login": e.username}
            base |= {"consumer_key": e.client_id, "private_key": e.make_jwt_key()}
        else:
            conn = {"login": e.username}
            base |= {"consumer_key": e.client_id, "consumer_secret": e.client_secret}
        return {"conn_type": "salesforce", **conn, "extra": {**base, **extra}}

    def connection_json(self, auth_type: str = "password", **extra: Any) -> str:
        """:meth:`connection` as JSON, for ``AIRFLOW_CONN_SALESFORCE_DEFAULT``."""
        return json.dumps(self.connection(auth_type, **extra))

    def stop(self) -> None:
        """Stop serving and remove the certificate files."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        for path in self._workdir.glob("*"):
            path.unlink(missing_ok=True)
        self._workdir.rmdir()


def start_emulator(**options: Any) -> RunningEmulator:
    """Start an emulator on a free loopback port over HTTPS (options go to SalesforceEmulator)."""
    import trustme

    workdir = Path(tempfile.mkdtemp(prefix="sf-emulator-"))
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_path = workdir / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)

    emulator = SalesforceEmulator(**options)
    handler = type("Handler", (_Handler,), {"emulator": emulator})
    server = _Server(("127.0.0.1", 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    emulator.base_url = f"https://127.0.0.1:{server.server_address[1]}"
    return RunningEmulator(emulator, server, ca_path, workdir)


@pytest.fixture
def salesforce_emulator():
    """A fresh Salesforce emulator over HTTPS on loopback for one test."""
    running = start_emulator()
    yield running
    running.stop()


@pytest.fixture
def salesforce_connection(salesforce_emulator, monkeypatch):
    """The emulator wired as the ``salesforce_default`` connection (password login)."""
    monkeypatch.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", salesforce_emulator.connection_json("password"))
    return salesforce_emulator
