"""A throwaway PostgreSQL server for the test session: initdb into a temp folder, a free
loopback port, trust auth, stopped and removed at the end. As root, it runs as ``nobody``."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_bin_dir() -> Path:
    """The folder with initdb and pg_ctl (``POSTGRES_BIN_DIR`` or Debian's layout)."""
    candidates = [os.environ.get("POSTGRES_BIN_DIR", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise RuntimeError(
        "PostgreSQL server binaries not found: install them (apt-get install postgresql) "
        "or set POSTGRES_BIN_DIR; `make test` does this for you"
    )


class PostgresServer:
    """One PostgreSQL server on 127.0.0.1 with a superuser ``hotcrm`` and no password."""

    user = "hotcrm"

    def __init__(self, host: str = "127.0.0.1", trusted_network: str | None = None) -> None:
        # ``host``/``trusted_network``: a second address to listen on and the clients allowed
        # there (the distributed test's workers reach the server from their own namespaces).
        self.host, self.trusted_network = host, trusted_network
        self.bin_dir = find_bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="hotcrm-pg-"))
        self.data_dir = self.root / "data"
        self.port = free_port()
        self._run_as = None
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            self._run_as = (nobody.pw_uid, nobody.pw_gid)
            os.chown(self.root, *self._run_as)

    def _preexec(self):
        if self._run_as:
            uid, gid = self._run_as

            def demote():
                os.setgid(gid)
                os.setuid(uid)

            return demote
        return None

    def _run(self, *args: str) -> None:
        subprocess.run(
            args,
            check=True,
            capture_output=True,
            preexec_fn=self._preexec(),
            cwd=self.root,
            env={**os.environ, "LC_ALL": "C.UTF-8", "HOME": str(self.root)},
        )

    def start(self) -> PostgresServer:
        """initdb and start the server; returns when it accepts connections."""
        self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )
        listen = ",".join(dict.fromkeys(["127.0.0.1", self.host]))
        if self.trusted_network:
            with (self.data_dir / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {self.trusted_network} trust\n")
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses={listen} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-o",
            options,
            "-l",
            str(self.root / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.dsn("postgres"), connect_timeout=2):
                    return self
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        """Stop the server and remove its files."""
        try:
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, database: str) -> str:
        """A libpq connection string for ``database``."""
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname={database}"

    def url(self, database: str) -> str:
        """A SQLAlchemy URL for ``database``."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, template: str | None = None, name: str | None = None) -> str:
        """Create a database (optionally as a copy of ``template``); returns its name."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            suffix = f" TEMPLATE {template}" if template else ""
            conn.execute(f'CREATE DATABASE "{name}"{suffix}')
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database, closing whatever is still connected to it."""
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
