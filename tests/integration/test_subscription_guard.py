"""A subscription whose URL names a refused address is refused when it is created (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from hotcrm.crm.db import session_scope
from hotcrm.delivery.models import WebhookSubscription
from hotcrm.delivery.service import add_subscription


def test_add_subscription_refuses_such_urls(db_url, monkeypatch):
    monkeypatch.delenv("HOTCRM_DELIVERY_ALLOW_PRIVATE", raising=False)
    with session_scope(db_url) as s, pytest.raises(ValueError, match="private/loopback"):
        add_subscription(s, "http://[::127.0.0.1]:8080/hook", ["*"])
    with session_scope(db_url) as s:
        # Allowed explicitly (an internal subscriber), it is accepted.
        add_subscription(s, "http://127.0.0.1:8080/hook", ["*"], allow_private=("127.0.0.1/32",))
    with session_scope(db_url) as s:
        assert s.scalar(select(func.count()).select_from(WebhookSubscription)) == 1
