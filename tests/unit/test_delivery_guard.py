"""The destination guard's IPv6 forms that carry an IPv4 address, its allow-list sanity check and
the check at subscription creation (issue 19, point 4)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging

import pytest

from hotcrm.delivery.config import load_config
from hotcrm.delivery.guard import (
    DestinationRefused,
    check_addresses,
    check_destination,
    check_url_now,
    embedded_ipv4,
    is_public,
)


@pytest.mark.parametrize(
    ("address", "inside"),
    [
        ("::127.0.0.1", "127.0.0.1"),  # IPv4-compatible
        ("::a9fe:a9fe", "169.254.169.254"),
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),  # NAT64 well-known prefix
        ("64:ff9b::a00:1", "10.0.0.1"),
        ("64:ff9b:1::7f00:1", "127.0.0.1"),  # NAT64 local-use (RFC 8215)
        ("2002:a9fe:a9fe::", "169.254.169.254"),  # 6to4
        ("2002:7f00:1::1", "127.0.0.1"),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "127.0.0.1"),  # Teredo, client 127.0.0.1 (obfuscated)
    ],
)
def test_ipv6_forms_of_refused_ipv4_addresses_are_refused(address, inside):
    ip = ipaddress.ip_address(address)
    assert ipaddress.ip_address(inside) in embedded_ipv4(ip)
    assert not is_public(ip)
    with pytest.raises(DestinationRefused, match="allow_private_destinations"):
        check_addresses("hooks.example", [address], ())
    with pytest.raises(DestinationRefused):
        asyncio.run(check_destination(f"https://[{address}]/hook", ()))


def test_ipv6_forms_of_public_ipv4_addresses_pass_and_allowed_networks_cover_them():
    for address in ("64:ff9b::808:808", "2002:808:808::1", "2606:4700::1111"):
        assert is_public(ipaddress.ip_address(address)), address
    assert not is_public(ipaddress.ip_address("64:ff9b:1::808:808"))  # local-use NAT64 is never global
    # An allowed private network allows its NAT64 form too (same destination).
    check_addresses("nat64.internal", ["64:ff9b::a00:1"], ("10.0.0.0/8",))


@pytest.mark.parametrize(
    "url",
    [
        "http://[::127.0.0.1]/x",
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data",
        "http://[2002:a9fe:a9fe::]/x",
        "http://[::ffff:169.254.169.254]/x",
        "http://169.254.169.254/latest/meta-data",
        "http://2130706433/x",  # decimal 127.0.0.1
        "http://0177.0.0.1/x",  # octal
        "http://0x7f.1/x",  # hex, shortened
        "http://localhost:8080/x",
        "http://api.localhost/x",
    ],
)
def test_refused_literals_are_refused_when_a_subscription_is_created(url):
    with pytest.raises(DestinationRefused):
        check_url_now(url, ())


def test_names_are_left_to_delivery_and_allowed_literals_pass():
    check_url_now("https://hooks.partner.example/crm", ())  # not resolved here: no DNS at creation
    check_url_now("http://127.0.0.1:9000/x", ("127.0.0.1/32",))
    check_url_now("https://[2606:4700::1111]/x", ())


@pytest.mark.parametrize("entry", ["0.0.0.0/0", "::/0", "0.0.0.0/1", "::/1"])
def test_an_allow_list_that_covers_everything_is_refused(tmp_path, monkeypatch, entry):
    path = tmp_path / "delivery.json"
    path.write_text("{}")
    monkeypatch.setenv("HOTCRM_DELIVERY_ALLOW_PRIVATE", entry)
    with pytest.raises(ValueError, match="turns the destination guard off"):
        load_config(path)


def test_an_allow_list_that_covers_cloud_metadata_warns_loudly(tmp_path, monkeypatch, caplog):
    path = tmp_path / "delivery.json"
    path.write_text('{"allow_private_destinations": ["169.254.0.0/16", "10.0.0.0/8", "fd12:3456::/32"]}')
    monkeypatch.delenv("HOTCRM_DELIVERY_ALLOW_PRIVATE", raising=False)
    with caplog.at_level(logging.WARNING, logger="hotcrm.delivery.config"):
        config = load_config(path)
    assert config.allow_private_destinations == ("169.254.0.0/16", "10.0.0.0/8", "fd12:3456::/32")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "169.254.169.254" in warnings[0] and "169.254.0.0/16" in warnings[0]
