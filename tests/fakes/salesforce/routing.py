"""Route Salesforce's public hosts to the emulator, so production code (the Airflow provider's
``SalesforceHook`` and simple-salesforce, which only log in at ``https://{domain}.salesforce.com``)
runs unchanged in tests.

:class:`SalesforceRoutingAdapter` is a ``requests`` transport adapter: mounted on a session, it
sends ``login.salesforce.com``, ``test.salesforce.com`` and ``*.my.salesforce.com`` to the
emulator's loopback address (the original host kept in the ``Host`` header, which the
emulator reads to know which login host was used) and refuses every other host, so no test
can reach the network.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

ROUTED = ("login.salesforce.com", "test.salesforce.com")


class SalesforceRoutingAdapter(HTTPAdapter):
    """Sends Salesforce hosts to ``emulator_url`` (``https://127.0.0.1:PORT``), verified with ``ca_path``."""

    def __init__(self, emulator_url: str, ca_path: str) -> None:
        super().__init__()
        self.target = urlsplit(emulator_url)
        self.ca_path = ca_path
        self.routed: list[str] = []  # "METHOD host/path" of each request sent through

    def send(self, request: requests.PreparedRequest, **kwargs):  # type: ignore[override]
        url = urlsplit(request.url or "")
        host = (url.hostname or "").lower()
        kwargs["proxies"] = {}  # straight to loopback, whatever the environment says
        if url.netloc == self.target.netloc:
            return super().send(request, **kwargs)  # the emulator's own address
        if url.scheme != "https" or not (host in ROUTED or host.endswith(".my.salesforce.com")):
            raise requests.ConnectionError(f"tests reach no network: {host!r} is not routed to the emulator")
        self.routed.append(f"{request.method} {host}{url.path}")
        request.url = urlunsplit(("https", self.target.netloc, url.path, url.query, ""))
        request.headers["Host"] = host
        kwargs["verify"] = self.ca_path
        return super().send(request, **kwargs)


def route(session: requests.Session, emulator_url: str, ca_path: str) -> SalesforceRoutingAdapter:
    """Mount the adapter on ``session`` for every https URL; returns it."""
    adapter = SalesforceRoutingAdapter(emulator_url, ca_path)
    session.mount("https://", adapter)
    return adapter
