"""The common base of HotCRM's errors, split by what a retry can do about them.

Core code raises :class:`PermanentError` (or a subclass) for what stays wrong however often it
is tried (bad parameters, a bad mapping or suite file, a file that is not there) and
:class:`TransientError` for what may pass later (a server down, a lock timeout). The Airflow
operators turn a permanent error into a failure without retries and let a transient one retry.
"""

from __future__ import annotations


class HotCrmError(Exception):
    """Base of the errors HotCRM raises on purpose."""


class PermanentError(HotCrmError, ValueError):
    """Retrying changes nothing: fix the parameters, the configuration or the data first.

    A :class:`ValueError` too, so callers that catch bad input that way keep working."""


class TransientError(HotCrmError):
    """May pass on a later try (network, a busy server, a lock)."""
