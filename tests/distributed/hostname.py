"""``[core] hostname_callable`` of the distributed test: the worker's address on the bridge.

Airflow records a task's host and later fetches its log from that host's log server. On
real machines DNS resolves the hostname; the test's namespaces have no DNS, so each worker
reports its bridge address (its own hostname is still what ``socket.gethostname()`` returns
there, and what the inbox's ``claimed_by`` shows).
"""

from __future__ import annotations

import os
import socket


def host_address() -> str:
    return os.environ.get("HOTCRM_TEST_HOST_ADDRESS") or socket.getfqdn()
