"""JSON request bodies with a nesting limit.

``json.loads`` recurses once per nesting level: a body of a few thousand ``[`` raises
``RecursionError`` (a 500, and a reset connection) instead of a ``ValueError``. Every JSON
body the HTTP app reads (webhook deliveries, REST API bodies) goes through :func:`loads`,
which refuses a body nested deeper than :data:`MAX_JSON_DEPTH` before parsing it.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays/objects accepted (a Stripe event is under 10 levels deep)."""

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = bytes(sorted(set(range(256)) - set(b"[]{}")))


class JsonBodyError(ValueError):
    """A body that is not UTF-8 JSON, or nested too deep (the message says which)."""


def depth_exceeds(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``body`` nests arrays/objects deeper than ``limit`` (brackets inside strings
    do not count). Cheap: a body with at most ``limit`` opening brackets is never scanned."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for bracket in _STRING.sub(b"", body).translate(None, _NOT_BRACKET):
        if bracket in b"[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def loads(body: bytes, limit: int = MAX_JSON_DEPTH) -> Any:
    """Parse a UTF-8 JSON body; raises :class:`JsonBodyError` for bad encoding, bad JSON or
    nesting deeper than ``limit``."""
    if depth_exceeds(body, limit):
        raise JsonBodyError(f"The JSON body is nested more than {limit} levels deep")
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise JsonBodyError("The body is not valid UTF-8") from None
    except RecursionError:  # not reachable within the limit; kept so it can never be a 500
        raise JsonBodyError(f"The JSON body is nested more than {limit} levels deep") from None
    except ValueError as exc:
        raise JsonBodyError(f"The body is not valid JSON ({exc})") from None


def encoding_or_depth_problem(body: bytes, limit: int = MAX_JSON_DEPTH) -> str | None:
    """What is wrong with a JSON body before it is parsed (not UTF-8, nested too deep), or
    ``None``; the JSON syntax itself is left to the parser."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"The body is not valid UTF-8 (byte {exc.start}); send JSON encoded as UTF-8"
    if depth_exceeds(body, limit):
        return f"The JSON body is nested more than {limit} levels deep"
    return None
