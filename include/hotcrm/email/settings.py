"""Email settings: ``include/config/email/settings.json`` plus environment overrides."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

from hotcrm.retry import scheduled_delay
from hotcrm.settings import CONFIG_DIR, read_settings_file

DEFAULT_SETTINGS_PATH = CONFIG_DIR / "email" / "settings.json"
CRASHED_SEND_POLICIES = ("hold", "resend")


@dataclass(frozen=True)
class EmailSettings:
    """Sender address, quote statuses, link base, locale, retry schedule."""

    from_addr: str = "HotCRM <quotes@hotcrm.example>"
    message_id_domain: str = "hotcrm.example"
    quote_base_url: str = "http://localhost:8080/hotcrm/quotes"
    ready_status: str = "Ready to Send"
    sent_status: str = "Sent"
    failed_status: str = "Send Failed"
    locale: str = "en_US"
    retry_schedule_seconds: tuple[float, ...] = (30, 120, 600, 1800, 7200)
    jitter_ratio: float = 0.2
    lease_seconds: float = 300
    # What to do with a message found mid-send after a crash when the sender cannot confirm
    # it by Message-ID: "hold" (default; never risk a duplicate, tell the operators) or "resend".
    crashed_send_policy: str = "hold"

    def retry_delay(self, failed_attempts: int, rng: random.Random | None = None) -> float | None:
        """Seconds before the next try after ``failed_attempts`` failures (None: give up)."""
        return scheduled_delay(self.retry_schedule_seconds, failed_attempts, self.jitter_ratio, rng)


# The path under which the HTTP app serves a quote's page (hotcrm.email.pages), below the
# app's own address (APP_URL).
QUOTE_PAGE_PATH = "/hotcrm/quotes"


def load_settings(path: str | Path | None = None) -> EmailSettings:
    """Settings from ``path`` (default ``HOTCRM_EMAIL_CONFIG`` or the project's file), then
    the environment: ``APP_URL`` (the original spec's name: where the HotCRM app is served;
    quote links become ``<APP_URL>/hotcrm/quotes/<Id>``), ``HOTCRM_QUOTE_BASE_URL`` (a full
    link base, wins over ``APP_URL``) and ``HOTCRM_EMAIL_FROM``."""
    path, values = read_settings_file(
        path, "HOTCRM_EMAIL_CONFIG", DEFAULT_SETTINGS_PATH, set(EmailSettings.__dataclass_fields__), "email settings"
    )
    if "retry_schedule_seconds" in values:
        values["retry_schedule_seconds"] = tuple(values["retry_schedule_seconds"])
    if os.environ.get("APP_URL"):
        values["quote_base_url"] = os.environ["APP_URL"].rstrip("/") + QUOTE_PAGE_PATH
    if os.environ.get("HOTCRM_QUOTE_BASE_URL"):
        values["quote_base_url"] = os.environ["HOTCRM_QUOTE_BASE_URL"]
    if os.environ.get("HOTCRM_EMAIL_FROM"):
        values["from_addr"] = os.environ["HOTCRM_EMAIL_FROM"]
    settings = EmailSettings(**values)
    if settings.crashed_send_policy not in CRASHED_SEND_POLICIES:
        raise ValueError(
            f"{path}: crashed_send_policy {settings.crashed_send_policy!r}; use one of {CRASHED_SEND_POLICIES}"
        )
    return settings
