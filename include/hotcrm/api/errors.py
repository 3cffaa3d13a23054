"""The REST API's client errors: raised anywhere in a request, answered as
``{"error", "code", "details"?}`` by the API's route class."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error a client caused and can fix: HTTP status, stable code, message, details."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}
