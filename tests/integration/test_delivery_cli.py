"""``python -m hotcrm subscriptions|email ...`` against a real database (SQLite and PostgreSQL)."""

from sqlalchemy import update

from hotcrm.cli import main
from hotcrm.crm.db import session_scope
from hotcrm.crm.events import record_event
from hotcrm.crm.models import utcnow
from hotcrm.delivery.models import DEAD, PENDING, WebhookDelivery
from hotcrm.delivery.service import fan_out
from hotcrm.email import queue_notice


def test_subscription_commands(db_url, capsys):
    assert (
        main(
            [
                "--database-url",
                db_url,
                "subscriptions",
                "add",
                "https://hooks.partner.example/crm",
                "--events",
                "lead.converted,payment.received",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    sub_id = out.split()[1].rstrip(":")
    secret = out.strip().split()[-1]
    assert secret.startswith("whsec_")
    assert main(["--database-url", db_url, "subscriptions", "list"]) == 0
    listing = capsys.readouterr().out
    assert sub_id in listing and "active" in listing and secret not in listing and secret[6:] not in listing

    assert main(["--database-url", db_url, "subscriptions", "add", "ftp://x.example", "--events", "*"]) == 2
    assert "scheme must be http or https" in capsys.readouterr().err
    assert (
        main(["--database-url", db_url, "subscriptions", "add", "https://x.example", "--events", "lead.created"]) == 2
    )
    assert "unknown event type(s) ['lead.created']" in capsys.readouterr().err

    with session_scope(db_url) as s:
        record_event(s, "lead.converted", {"LeadId": "L"})
    with session_scope(db_url) as s:
        fan_out(s)
        s.execute(update(WebhookDelivery).values(status=DEAD, dead_at=utcnow()))
    assert main(["--database-url", db_url, "subscriptions", "dead-letters"]) == 0
    assert "1 dead letter(s) shown" in capsys.readouterr().out
    assert main(["--database-url", db_url, "subscriptions", "replay", "--since", "yesterday"]) == 2
    assert "--since 'yesterday': use ISO 8601" in capsys.readouterr().err
    assert main(["--database-url", db_url, "subscriptions", "replay", "--since", "2000-01-01T00:00"]) == 0
    assert capsys.readouterr().out.startswith("1 dead-lettered deliveries are due again")
    with session_scope(db_url) as s:
        assert s.get(WebhookDelivery, s.query(WebhookDelivery.id).scalar()).status == PENDING

    assert main(["--database-url", db_url, "subscriptions", "disable", sub_id, "--reason", "partner offboarded"]) == 0
    capsys.readouterr()
    assert main(["--database-url", db_url, "subscriptions", "list"]) == 0
    assert "disabled (partner offboarded)" in capsys.readouterr().out
    assert main(["--database-url", db_url, "subscriptions", "disable", "nope"]) == 2
    assert "no subscription with id 'nope'" in capsys.readouterr().err


def test_email_commands(db_url, capsys):
    with session_scope(db_url) as s:
        row_id = queue_notice(s, "ops@hotcrm.example", "hello", "text").id
    assert main(["--database-url", db_url, "email", "list"]) == 0
    assert "queued" in capsys.readouterr().out
    assert main(["--database-url", db_url, "email", "confirm", row_id]) == 0
    assert capsys.readouterr().out.strip() == f"email {row_id}: sent"
    assert main(["--database-url", db_url, "email", "requeue", "missing"]) == 2
