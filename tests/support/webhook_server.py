"""A uvicorn server on a free loopback port, in a thread of the test process (webhook tests)."""

from __future__ import annotations

import threading
import time

import uvicorn

from tests.support.postgres import free_port


class ThreadedUvicorn:
    """Serve an ASGI app on 127.0.0.1:<free port> until :meth:`stop`."""

    def __init__(self, app) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThreadedUvicorn:
        """Start serving; returns when the server accepts connections."""
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        self.server.should_exit = True
        self.thread.join(timeout=10)
