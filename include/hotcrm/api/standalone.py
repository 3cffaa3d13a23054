"""The HTTP app on its own: ``uvicorn hotcrm.api.standalone:app`` serves it under ``/hotcrm``,
the same paths as when the Airflow plugin mounts it.

At start-up each server process moves what it has loaded so far (FastAPI, pydantic,
SQLAlchemy, the app's routes and models: some 100,000 objects) out of the garbage
collector's sight with :func:`gc.freeze`. Those objects live as long as the process; left
in the oldest generation, every full collection walks them all, a pause of 100-250 ms in
the middle of requests (it was most of the REST API's p99 latency).
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException

from hotcrm.api import pgpool
from hotcrm.api.app import create_app
from hotcrm.web.responses import http_error_response


def freeze_startup_heap() -> None:
    """Collect once, then exclude every surviving object from future collections (``gc.freeze``)."""
    gc.collect()
    gc.freeze()


def create_standalone_app(database_url: str | None = None) -> FastAPI:
    """An outer app that mounts the HotCRM app at ``/hotcrm``."""
    inner = create_app(database_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        freeze_startup_heap()
        yield
        await pgpool.close_pool(inner.state)

    outer = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, lifespan=lifespan)
    outer.mount("/hotcrm", inner)

    @outer.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException):
        # Paths the mount does not match (its pattern stops at a newline, so /hotcrm/a%0Ab
        # lands here, not in the inner app) still get the one error shape.
        return http_error_response(exc)

    return outer


app = create_standalone_app()
