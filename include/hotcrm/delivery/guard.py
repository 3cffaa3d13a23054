"""The destination guard: subscriber URLs must resolve to public addresses.

Private, loopback, link-local (cloud metadata at 169.254.169.254), shared (100.64/10),
multicast, reserved and unspecified addresses are refused unless the host, or a network
containing the address, is listed in ``allow_private_destinations``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

import httpcore

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class DestinationRefused(Exception):
    """The URL points at an address the guard refuses."""


def check_url_syntax(url: str) -> tuple[str, int]:
    """(host, port) of an http(s) URL, or ValueError naming the problem."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"URL {url!r}: the scheme must be http or https")
    if not parts.hostname:
        raise ValueError(f"URL {url!r}: no host")
    if parts.username or parts.password:
        raise ValueError("URL: credentials in the URL are not allowed; the signature authenticates deliveries")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ValueError(f"URL {url!r}: bad port ({exc})") from exc
    return parts.hostname, port


def redact_url(url: str) -> str:
    """The URL without its query string and fragment, which may carry tokens: for logs and emails."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    suffix = "?..." if parts.query else ""
    if not parts.scheme:  # a relative reference, e.g. a Location header
        return f"{parts.path}{suffix}"
    return f"{parts.scheme}://{host}{parts.path}{suffix}"


def is_public(ip: IPAddress) -> bool:
    """True for a globally routable unicast address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _allowed(host: str, ip: IPAddress, allow: tuple[str, ...]) -> bool:
    for entry in allow:
        if "/" in entry:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        elif entry.lower() == host.lower():
            return True
        else:
            try:
                if ipaddress.ip_address(entry) == ip:
                    return True
            except ValueError:
                continue
    return False


def check_addresses(host: str, addresses: list[str], allow: tuple[str, ...]) -> None:
    """Raise DestinationRefused when any resolved address is non-public and not allowed."""
    if not addresses:
        raise DestinationRefused(f"{host}: does not resolve")
    for text in addresses:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
        if not is_public(ip) and not _allowed(host, ip, allow):
            raise DestinationRefused(
                f"{host} resolves to {ip}, a private/loopback/link-local/metadata address; "
                "add the host or its network to allow_private_destinations in include/config/delivery.json "
                "if this subscriber is meant to be internal"
            )


async def check_destination(url: str, allow: tuple[str, ...], cache: dict[str, list[str]] | None = None) -> None:
    """Resolve the URL's host and refuse it unless every address is public or allowed."""
    host, port = check_url_syntax(url)  # urlsplit lower-cases the host: the pinned backend's key
    if cache is not None and host in cache:
        addresses = cache[host]
    else:
        try:
            ipaddress.ip_address(host)
            addresses = [host]
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except socket.gaierror as exc:
                raise DestinationRefused(f"{host}: DNS lookup failed ({exc.strerror})") from exc
            addresses = sorted({info[4][0] for info in infos})
        if cache is not None:
            cache[host] = addresses
    check_addresses(host, addresses, allow)


class PinnedResolutionBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to the addresses :func:`check_destination`
    checked for a host (``checked``: host → addresses, filled by the guard).

    Without it the HTTP client would resolve the host again when it connects, and a DNS answer
    that changes between the check and the connect (DNS rebinding) could reach an address the
    guard refuses. TLS still verifies the certificate against the URL's host name.
    """

    def __init__(self, checked: dict[str, list[str]]) -> None:
        self.checked = checked
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        """Connect to the first checked address of ``host`` that answers."""
        addresses = self.checked.get(host.lower())
        if not addresses:
            raise httpcore.ConnectError(f"{host}: not checked by the destination guard; refusing to connect")
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error  # type: ignore[misc]

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):
        """Deliveries never go to a Unix socket."""
        raise httpcore.ConnectError("deliveries go over TCP only")

    async def sleep(self, seconds: float) -> None:
        """Sleep on the running event loop."""
        await self._inner.sleep(seconds)
