"""The destination guard: subscriber URLs must resolve to public addresses.

Private, loopback, link-local (cloud metadata at 169.254.169.254), shared (100.64/10),
multicast, reserved and unspecified addresses are refused unless the host, or a network
containing the address, is listed in ``allow_private_destinations``. IPv6 addresses that carry
an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible ``::a.b.c.d``, NAT64
``64:ff9b::/96``, 6to4 ``2002::/16``, Teredo ``2001::/32``) are refused when the IPv4 address
inside is; local-use NAT64 (``64:ff9b:1::/48``) always is. The same check runs when a
subscription is created (:func:`check_url_now`) and before every delivery.
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


# IPv6 forms that carry an IPv4 address a host may route to (RFC 4291 IPv4-compatible, RFC 6052
# NAT64, RFC 3056 6to4, RFC 4380 Teredo): judged by the IPv4 address inside.
NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
# RFC 8215 local-use NAT64 prefixes: translated to whatever the site's NAT64 serves (never global).
NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")


def embedded_ipv4(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, compatible, NAT64, 6to4, Teredo); [] for IPv4."""
    if isinstance(ip, ipaddress.IPv4Address):
        return []
    found = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    value = int(ip)
    if value >> 32 == 0 and value > 1:  # ::a.b.c.d (deprecated IPv4-compatible; :: and ::1 are not)
        found.append(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    if ip in NAT64_WELL_KNOWN or ip in NAT64_LOCAL_USE:
        found.append(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)  # (server, client)
    return found


def is_public(ip: IPAddress) -> bool:
    """True for a globally routable unicast address, none of whose embedded IPv4 addresses is refused."""
    if isinstance(ip, ipaddress.IPv6Address) and ip in NAT64_LOCAL_USE:
        return False
    inner = embedded_ipv4(ip)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return all(is_public(v4) for v4 in inner)
    return ip.is_global and not ip.is_multicast and all(is_public(v4) for v4 in inner)


def _allowed(host: str, ip: IPAddress, allow: tuple[str, ...]) -> bool:
    # An IPv6 form of an allowed IPv4 address (e.g. NAT64 of an allowed private network) is allowed too.
    return any(_allowed_one(host, candidate, allow) for candidate in [ip, *embedded_ipv4(ip)])


def _allowed_one(host: str, ip: IPAddress, allow: tuple[str, ...]) -> bool:
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


def literal_address(host: str) -> IPAddress | None:
    """The address a URL's host names without DNS: an IP literal, or an IPv4 number in any form
    the C library accepts (``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``); else None."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def check_url_now(url: str, allow: tuple[str, ...]) -> None:
    """Refuse, when a subscription is created, a URL whose host is a refused address written as a
    literal (any IPv4 or IPv6 form) or a ``localhost`` name. Other names are not resolved here
    (the name may not exist yet); every delivery resolves and checks them."""
    host, _port = check_url_syntax(url)
    address = literal_address(host)
    if address is not None:
        check_addresses(host, [str(address)], allow)
    elif host.rstrip(".") == "localhost" or host.rstrip(".").endswith(".localhost"):
        # RFC 6761: localhost names always resolve to loopback.
        check_addresses(host, ["127.0.0.1"], allow)


async def check_destination(url: str, allow: tuple[str, ...], cache: dict[str, list[str]] | None = None) -> None:
    """Resolve the URL's host and refuse it unless every address is public or allowed."""
    host, port = check_url_syntax(url)  # urlsplit lower-cases the host: the pinned backend's key
    if cache is not None and host in cache:
        addresses = cache[host]
    else:
        literal = literal_address(host)
        if literal is not None:
            addresses = [str(literal)]
        else:
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
