"""A loopback HTTP subscriber for webhook delivery tests, recording every request.

Behaviour by path (the first segment):
  /ok            200
  /fail          500
  /slow?s=2      sleeps (to exceed the client's timeout), then 200
  /redirect      302 to /ok (a follower would land on /ok: the tests check nobody does)
  /ratelimit     429 with ``Retry-After: <n>`` (?after=n, default 7)
  /unavailable   503 with ``Retry-After`` as an HTTP date 2 minutes ahead
  /gone          410
  /flaky?n=2     500 for the first n requests on that path, then 200
  /delay?ms=50   sleeps ms milliseconds, then 200 (the benchmark's subscriber)
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest


@dataclass
class Received:
    """One request as the subscriber saw it."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Subscriber:
    """The running server: base URL and what it received."""

    server: ThreadingHTTPServer
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    counters: dict[str, int] = field(default_factory=dict)
    record: bool = True

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` on this subscriber."""
        return self.base_url + path

    def received(self, path_prefix: str = "") -> list[Received]:
        """Requests whose path starts with ``path_prefix``."""
        with self.lock:
            return [r for r in self.requests if r.path.startswith(path_prefix)]

    def stop(self) -> None:
        """Shut the server down."""
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real subscribers do
    # Headers and body go out in two writes: with Nagle on, the body waits for the client's
    # delayed ACK (~40 ms on Linux). Real servers set TCP_NODELAY too.
    disable_nagle_algorithm = True

    def log_message(self, *_args) -> None:  # quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        sub: Subscriber = self.server.subscriber  # type: ignore[attr-defined]
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if sub.record:
            with sub.lock:
                sub.requests.append(Received(parts.path, {k.lower(): v for k, v in self.headers.items()}, body))
        kind = parts.path.strip("/").split("/")[0]
        headers: dict[str, str] = {}
        if kind == "ok":
            status = 200
        elif kind == "fail":
            status = 500
        elif kind == "slow":
            time.sleep(float(query.get("s", "2")))
            status = 200
        elif kind == "redirect":
            status, headers = 302, {"Location": sub.url("/ok/redirected")}
        elif kind == "ratelimit":
            status, headers = 429, {"Retry-After": query.get("after", "7")}
        elif kind == "unavailable":
            when = datetime.now(UTC) + timedelta(minutes=2)
            status, headers = 503, {"Retry-After": format_datetime(when, usegmt=True)}
        elif kind == "gone":
            status = 410
        elif kind == "flaky":
            with sub.lock:
                sub.counters[parts.path] = sub.counters.get(parts.path, 0) + 1
                seen = sub.counters[parts.path]
            status = 500 if seen <= int(query.get("n", "2")) else 200
        elif kind == "delay":
            time.sleep(float(query.get("ms", "50")) / 1000)
            status = 200
        else:
            status = 404
        payload = b"{}" if status < 300 else f"status {status}".encode()
        try:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and left


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512


def start_subscriber(record: bool = True) -> Subscriber:
    """Start a subscriber on 127.0.0.1 on a free port."""
    server = _Server(("127.0.0.1", 0), _Handler)
    sub = Subscriber(server=server, record=record)
    server.subscriber = sub  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, name="subscriber", daemon=True).start()
    return sub


@pytest.fixture
def subscriber(monkeypatch):
    """A running loopback subscriber; loopback is allowed past the destination guard."""
    monkeypatch.setenv("HOTCRM_DELIVERY_ALLOW_PRIVATE", "127.0.0.1/32")
    sub = start_subscriber()
    yield sub
    sub.stop()
