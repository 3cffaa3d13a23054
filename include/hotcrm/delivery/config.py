"""Delivery settings: ``include/config/delivery.json`` plus environment overrides."""

from __future__ import annotations

import ipaddress
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from hotcrm.retry import scheduled_delay
from hotcrm.settings import CONFIG_DIR, read_settings_file

DEFAULT_CONFIG_PATH = CONFIG_DIR / "delivery.json"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryConfig:
    """How deliveries are sent, retried and guarded."""

    timeout_seconds: float = 15.0
    retry_schedule_seconds: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
    jitter_ratio: float = 0.2
    retry_after_max_seconds: float = 86400
    batch_size: int = 500
    concurrency: int = 100
    lease_seconds: float = 300
    time_budget_seconds: float = 50
    allow_private_destinations: tuple[str, ...] = ()
    operator_emails: tuple[str, ...] = field(default_factory=tuple)

    @property
    def max_attempts(self) -> int:
        """The first attempt plus one per entry of the retry schedule."""
        return 1 + len(self.retry_schedule_seconds)

    def retry_delay(self, failed_attempts: int, rng: random.Random | None = None) -> float | None:
        """Seconds to wait after the ``failed_attempts``-th failure, with jitter; None when
        no attempt is left (the delivery is dead-lettered)."""
        # Jitter spreads the retries of a burst of failures so they do not hit the subscriber together.
        return scheduled_delay(self.retry_schedule_seconds, failed_attempts, self.jitter_ratio, rng)


def load_config(path: str | Path | None = None) -> DeliveryConfig:
    """The delivery settings from ``path`` (default: ``HOTCRM_DELIVERY_CONFIG`` or the
    project's file), with the environment overrides applied."""
    path, values = read_settings_file(
        path, "HOTCRM_DELIVERY_CONFIG", DEFAULT_CONFIG_PATH, set(DeliveryConfig.__dataclass_fields__), "delivery config"
    )
    for key in ("retry_schedule_seconds", "allow_private_destinations", "operator_emails"):
        if key in values:
            if not isinstance(values[key], list):
                raise ValueError(f"{path}: {key!r} must be a list, got {values[key]!r}")
            values[key] = tuple(values[key])
    extra_allow = os.environ.get("HOTCRM_DELIVERY_ALLOW_PRIVATE", "")
    if extra_allow.strip():
        values["allow_private_destinations"] = tuple(values.get("allow_private_destinations", ())) + tuple(
            item.strip() for item in extra_allow.split(",") if item.strip()
        )
    operators = os.environ.get("HOTCRM_OPERATOR_EMAIL", "")
    if operators.strip():
        values["operator_emails"] = tuple(item.strip() for item in operators.split(",") if item.strip())
    config = DeliveryConfig(**values)
    for entry in config.allow_private_destinations:
        _check_allow_entry(entry, path)
    if any(s < 0 for s in config.retry_schedule_seconds):
        raise ValueError(f"{path}: retry_schedule_seconds must be non-negative numbers")
    return config


# Shorter prefixes than these cover more than any private range (10/8 and fc00::/7 are the
# widest): such an entry would switch the guard off, cloud metadata included.
MIN_ALLOW_PREFIX = {4: 8, 6: 7}
METADATA_ADDRESSES = (ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"))


def _check_allow_entry(entry: str, path: Path) -> None:
    if "/" in entry:
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError as exc:
            raise ValueError(
                f"{path}: allow_private_destinations entry {entry!r} is not a valid network ({exc})"
            ) from exc
        if network.prefixlen < MIN_ALLOW_PREFIX[network.version]:
            raise ValueError(
                f"{path} (or HOTCRM_DELIVERY_ALLOW_PRIVATE): allow_private_destinations entry {entry!r} covers "
                f"{'every address' if network.prefixlen == 0 else 'far more than a private network'}, which turns "
                "the destination guard off (cloud metadata and loopback included); list the private networks or "
                "hosts your internal subscribers use, e.g. 10.20.0.0/16"
            )
        covered = [str(a) for a in METADATA_ADDRESSES if a.version == network.version and a in network]
        if covered:
            log.warning(
                "allow_private_destinations entry %r in %s lets deliveries reach the cloud metadata address %s: "
                "anyone who can add a subscription can read instance credentials. Narrow it unless this is meant.",
                entry,
                path,
                covered[0],
            )
