"""Pure logic of webhook delivery: signatures, the destination guard, the retry schedule,
Retry-After parsing and the config file's errors."""

import json
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from hotcrm.delivery.config import DeliveryConfig, load_config
from hotcrm.delivery.guard import DestinationRefused, check_addresses, check_url_syntax, is_public, redact_url
from hotcrm.delivery.service import parse_retry_after
from hotcrm.delivery.signing import generate_secret, sign, signed_headers, validate_secret


def test_signature_verifies_with_the_independent_library():
    secret = generate_secret()
    body = b'{"event":"lead.converted","data":{"Id":"x"}}'
    now = int(datetime.now(UTC).timestamp())
    headers = signed_headers(secret, "evt_1", now, body, "lead.converted")
    assert Webhook(secret).verify(body, headers) == json.loads(body)
    assert headers["x-event-type"] == "lead.converted"


def test_signature_fails_for_a_tampered_body_or_another_secret():
    secret = generate_secret()
    now = int(datetime.now(UTC).timestamp())
    headers = signed_headers(secret, "evt_1", now, b'{"a":1}', "x")
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"a":2}', headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(b'{"a":1}', headers)


def test_signature_matches_the_spec_example():
    # Example from the Standard Webhooks specification's test vectors.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


@pytest.mark.parametrize("bad", ["abc", "whsec_", "whsec_***", "whsec_c2hvcnQ="])
def test_bad_secrets_are_refused_without_echoing_them(bad):
    with pytest.raises(ValueError) as info:
        validate_secret(bad)
    if len(bad) > 6:
        assert bad[6:] not in str(info.value)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.10",
        "172.16.5.5",
        "169.254.169.254",
        "100.100.100.200",
        "::1",
        "fd00:ec2::254",
        "fe80::1",
        "0.0.0.0",  # noqa: S104 (an address under test, nothing binds)
        "::ffff:127.0.0.1",
        "224.0.0.1",
    ],
)
def test_guard_refuses_non_public_addresses(address):
    with pytest.raises(DestinationRefused, match="allow_private_destinations"):
        check_addresses("hooks.example", [address], ())


def test_guard_accepts_public_and_explicitly_allowed_addresses():
    check_addresses("hooks.example", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"], ())
    check_addresses("localhost", ["127.0.0.1"], ("127.0.0.0/8",))
    check_addresses("internal.corp", ["10.0.0.5"], ("internal.corp",))
    with pytest.raises(DestinationRefused):
        check_addresses("other.corp", ["10.0.0.5"], ("internal.corp",))
    assert is_public(__import__("ipaddress").ip_address("8.8.8.8"))


@pytest.mark.parametrize(
    ("url", "message"),
    [("ftp://x.example/a", "scheme"), ("http:///path", "no host"), ("https://u:p@x.example/", "credentials")],
)
def test_url_syntax_errors_name_the_problem(url, message):
    with pytest.raises(ValueError, match=message):
        check_url_syntax(url)


def test_retry_schedule_has_jitter_and_ends():
    config = DeliveryConfig()
    assert config.max_attempts == 8
    rng = random.Random(1)
    delays = [config.retry_delay(n, rng) for n in range(1, 8)]
    for delay, base in zip(delays, config.retry_schedule_seconds, strict=True):
        assert base * 0.8 <= delay <= base * 1.2
    assert config.retry_delay(8) is None
    spread = {round(config.retry_delay(2, rng), 3) for _ in range(20)}
    assert len(spread) > 10, "jitter should spread retries"


def test_retry_after_seconds_and_http_date():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("7", now, 3600) == 7
    assert parse_retry_after(format_datetime(now + timedelta(seconds=120), usegmt=True), now, 3600) == 120
    assert parse_retry_after("999999", now, 3600) == 3600
    assert parse_retry_after("soon", now, 3600) is None
    assert parse_retry_after(None, now, 3600) is None


def test_config_errors_name_the_file_and_setting(tmp_path, monkeypatch):
    path = tmp_path / "delivery.json"
    path.write_text('{"timeout_seconds": 3, "retry_schedule": [1]}')
    with pytest.raises(ValueError, match=r"delivery.json: unknown setting\(s\) \['retry_schedule'\]"):
        load_config(path)
    path.write_text('{\n "timeout_seconds": 3,\n}')
    with pytest.raises(ValueError, match=r"line 3, column \d+: invalid JSON"):
        load_config(path)
    path.write_text('{"allow_private_destinations": ["10.0.0.0/33"]}')
    with pytest.raises(ValueError, match="10.0.0.0/33"):
        load_config(path)
    path.write_text('{"timeout_seconds": 3}')
    monkeypatch.setenv("HOTCRM_DELIVERY_ALLOW_PRIVATE", "127.0.0.1/32, localhost")
    monkeypatch.setenv("HOTCRM_OPERATOR_EMAIL", "a@x.example,b@x.example")
    config = load_config(path)
    assert config.timeout_seconds == 3
    assert config.allow_private_destinations == ("127.0.0.1/32", "localhost")
    assert config.operator_emails == ("a@x.example", "b@x.example")


def test_project_config_loads():
    config = load_config()
    assert config.retry_schedule_seconds == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert config.timeout_seconds == 15


def test_urls_in_alerts_lose_their_query_string():
    assert redact_url("https://hooks.example:8443/in/abc?token=s3cr3t#x") == "https://hooks.example:8443/in/abc?..."
    assert redact_url("http://hooks.example/in") == "http://hooks.example/in"
    assert redact_url("/moved?sig=abc") == "/moved?..."
