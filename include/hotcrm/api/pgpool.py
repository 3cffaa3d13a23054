"""The REST API's hot path on PostgreSQL: asynchronous psycopg connections in autocommit,
used on the event loop itself (no thread-pool hop, no ORM), one statement per request
where possible.

Each process (uvicorn worker, the Airflow API server) keeps a small pool per event loop:
``HOTCRM_API_DB_POOL_SIZE`` connections (default 10) are plenty at the concurrency a
process can serve, because every hot-path request holds one for a single round trip.
psycopg prepares a statement on the server after it has run a few times, so the planner
cost is paid once per connection.

A connection that failed or was left inside a transaction is closed, not reused. Before an
idle connection is reused, its socket is polled (no round trip): anything readable means the
server is ending it (a terminated backend, a restart), so it is closed and another taken.
One that sat idle longer than ``IDLE_CHECK_SECONDS`` is also pinged (a proxy may have
dropped it silently).
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy.engine import make_url

IDLE_CHECK_SECONDS = 30.0


def libpq_conninfo(database_url: str) -> str:
    """A libpq URI for a SQLAlchemy PostgreSQL URL (``postgresql+psycopg://`` -> ``postgresql://``)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class AsyncPool:
    """Up to ``size`` autocommit connections to one database, for one event loop."""

    def __init__(self, conninfo: str, size: int) -> None:
        self.conninfo = conninfo
        self.size = size
        self._idle: list[tuple[psycopg.AsyncConnection, float]] = []
        self._slots = asyncio.Semaphore(size)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A connection for one unit of work (a statement, or a few in autocommit)."""
        await self._slots.acquire()
        conn: psycopg.AsyncConnection | None = None
        try:
            conn = await self._take()
            yield conn
        finally:
            if conn is not None:
                if conn.closed or conn.broken or conn.info.transaction_status != TransactionStatus.IDLE:
                    await _close_quietly(conn)
                else:
                    self._idle.append((conn, time.monotonic()))
            self._slots.release()

    async def _take(self) -> psycopg.AsyncConnection:
        while self._idle:
            conn, since = self._idle.pop()  # the most recently used: the warmest, its statements prepared
            if conn.closed or conn.broken:
                continue
            if _has_pending_input(conn):
                # An idle connection has nothing to say unless the server is ending it
                # (a terminated backend's FATAL message, or end of file): do not use it.
                await _close_quietly(conn)
                continue
            if time.monotonic() - since > IDLE_CHECK_SECONDS:
                try:
                    await conn.execute("SELECT 1")
                except psycopg.Error:
                    await _close_quietly(conn)
                    continue
            return conn
        return await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)

    async def close(self) -> None:
        """Close the idle connections."""
        idle, self._idle = self._idle, []
        for conn, _since in idle:
            await _close_quietly(conn)


def _has_pending_input(conn: psycopg.AsyncConnection) -> bool:
    """Whether the socket of an idle connection is readable (one non-blocking poll, no round trip)."""
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


async def _close_quietly(conn: psycopg.AsyncConnection) -> None:
    with contextlib.suppress(Exception):  # a connection that cannot even close is gone anyway
        await conn.close()


def pool_for(state, database_url: str, size: int) -> AsyncPool:
    """The pool of ``state`` (an app's state) for the running event loop and ``database_url``."""
    loop = asyncio.get_running_loop()
    current = getattr(state, "hotcrm_pg_pool", None)
    if current is not None and current[0] is loop and current[1] == database_url:
        return current[2]
    pool = AsyncPool(libpq_conninfo(database_url), size)
    state.hotcrm_pg_pool = (loop, database_url, pool)
    return pool


async def close_pool(state) -> None:
    """Close the idle connections of ``state``'s pool (at server shutdown)."""
    current = getattr(state, "hotcrm_pg_pool", None)
    if current is not None and current[0] is asyncio.get_running_loop():
        await current[2].close()
