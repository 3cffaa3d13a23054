"""The HTTP app on its own: ``uvicorn hotcrm.api.standalone:app`` serves it under ``/hotcrm``,
the same paths as when the Airflow plugin mounts it."""

from __future__ import annotations

from fastapi import FastAPI

from hotcrm.api.app import create_app


def create_standalone_app(database_url: str | None = None) -> FastAPI:
    """An outer app that mounts the HotCRM app at ``/hotcrm``."""
    outer = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    outer.mount("/hotcrm", create_app(database_url))
    return outer


app = create_standalone_app()
