"""Quote emails and notices against a real SMTP server on loopback (aiosmtpd), on SQLite and
PostgreSQL: what arrives (headers, both bodies, escaping), temporary and permanent
rejections, a dropped connection, STARTTLS, and crashes of the sender mid-send."""

import ssl
import subprocess
import sys
import textwrap
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from hotcrm.crm import seed
from hotcrm.crm.db import session_scope
from hotcrm.crm.models import Activity, Contact, Quote, utcnow
from hotcrm.email import queue_notice
from hotcrm.email.models import FAILED, QUEUED, SENDING, SENT, UNCONFIRMED, EmailOutbox
from hotcrm.email.outbox import queue_quote_emails, send_due, set_status
from hotcrm.email.settings import EmailSettings
from hotcrm.email.smtp import SmtplibSender
from tests.support.smtp import start_smtp

SETTINGS = EmailSettings(quote_base_url="https://crm.example/quotes", retry_schedule_seconds=(30, 60))
ACME = "d0000000-0000-4000-8000-000000000001"
ACME_CONTACT = "c0000000-0000-4000-8000-000000000001"


@pytest.fixture
def smtp_server():
    """A plain SMTP server on loopback."""
    server = start_smtp()
    yield server
    server.stop()


def _sender(server):
    return SmtplibSender(server.host, server.port, timeout=5)


def _queue(url, settings=SETTINGS):
    with session_scope(url) as s:
        return queue_quote_emails(s, settings)


def _rows(url):
    with session_scope(url) as s:
        return list(s.scalars(select(EmailOutbox).order_by(EmailOutbox.created_at)))


def _make_due(url):
    with session_scope(url) as s:
        s.execute(update(EmailOutbox).where(EmailOutbox.status == QUEUED).values(next_attempt_at=utcnow()))


def _set_contact_email(url, email, first_name=None):
    with session_scope(url) as s:
        contact = s.get(Contact, ACME_CONTACT)
        contact.email = email
        if first_name:
            contact.first_name = first_name


@pytest.fixture
def seeded(db_url):
    seed.load_seed(db_url)
    return db_url


def test_ready_quotes_are_emailed_once_with_both_bodies(seeded, smtp_server):
    _set_contact_email(seeded, "ada@acmecorp.example", first_name="<b>Ada</b> & co")
    assert _queue(seeded)["queued"] == 3
    assert _queue(seeded)["queued"] == 0, "queueing is idempotent"
    summary = send_due(seeded, _sender(smtp_server), SETTINGS)
    assert summary["sent"] == 3
    by_subject = {a.message["Subject"]: a for a in smtp_server.handler.accepted}
    assert set(by_subject) == {"Quote Q-2026-0001", "Quote Q-2026-0002", "Quote Q-2026-0003"}
    acme = by_subject["Quote Q-2026-0001"]
    assert acme.rcpt_tos == ["ada@acmecorp.example"]
    msg = acme.message
    assert msg["From"] == SETTINGS.from_addr and msg["To"] == "ada@acmecorp.example"
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    assert "&lt;b&gt;Ada&lt;/b&gt; &amp; co" in html and "<b>Ada</b>" not in html
    assert "<b>Ada</b> & co" in text
    assert "$4,999.50" in html and "$4,999.50" in text
    assert f"https://crm.example/quotes/{ACME}" in text and f'href="https://crm.example/quotes/{ACME}"' in html
    assert "€5,999.50" in by_subject["Quote Q-2026-0002"].message.get_body(("plain",)).get_content()
    with session_scope(seeded) as s:
        quote = s.get(Quote, ACME)
        assert quote.status == "Sent" and quote.sent_date is not None
        assert s.get(Quote, "d0000000-0000-4000-8000-000000000004").status == "Draft"
        row = s.scalar(select(EmailOutbox).where(EmailOutbox.quote_id == ACME))
        assert row.status == SENT and row.message_id == msg["Message-ID"]
    assert send_due(seeded, _sender(smtp_server), SETTINGS)["sent"] == 0
    assert _queue(seeded)["ready"] == 0
    assert len(smtp_server.handler.accepted) == 3


def test_temporary_rejections_are_retried_with_backoff_then_given_up(seeded, smtp_server):
    _set_contact_email(seeded, "tempfail@acmecorp.example")
    _queue(seeded)
    before = utcnow()
    summary = send_due(seeded, _sender(smtp_server), SETTINGS)
    assert summary["sent"] == 2 and summary["retrying"] == 1
    [row] = [r for r in _rows(seeded) if r.quote_id == ACME]
    assert row.status == QUEUED and row.smtp_code == 450 and row.attempts == 1
    wait = (row.next_attempt_at.replace(tzinfo=before.tzinfo) - before).total_seconds()
    assert 30 * 0.8 - 1 <= wait <= 30 * 1.2 + 5
    for _ in range(2):
        _make_due(seeded)
        send_due(seeded, _sender(smtp_server), SETTINGS)
    [row] = [r for r in _rows(seeded) if r.quote_id == ACME]
    assert row.status == FAILED and row.attempts == 3 and "gave up after 3 attempts" in row.last_error


def test_a_flaky_server_gets_the_message_on_the_retry(seeded, smtp_server):
    _set_contact_email(seeded, "flaky@acmecorp.example")
    _queue(seeded)
    assert send_due(seeded, _sender(smtp_server), SETTINGS)["retrying"] == 1
    _make_due(seeded)
    assert send_due(seeded, _sender(smtp_server), SETTINGS)["sent"] == 1
    assert [a.rcpt_tos for a in smtp_server.handler.accepted].count(["flaky@acmecorp.example"]) == 1


def test_permanent_rejection_is_recorded_on_the_quote(seeded, smtp_server):
    _set_contact_email(seeded, "reject@acmecorp.example")
    _queue(seeded)
    summary = send_due(seeded, _sender(smtp_server), SETTINGS)
    assert summary["failed"] == 1 and "550" in summary["failures"][0]
    with session_scope(seeded) as s:
        quote = s.get(Quote, ACME)
        assert quote.status == "Send Failed" and quote.sent_date is None
        [activity] = s.scalars(select(Activity).where(Activity.subject.like("Email failed%")))
        assert "550" in activity.description and "reject@acmecorp.example" in activity.description
        row = s.scalar(select(EmailOutbox).where(EmailOutbox.quote_id == ACME))
        assert row.status == FAILED and row.smtp_code == 550 and row.attempts == 1
        # The operator fixes the address and puts the quote back: it is queued and sent again.
        s.get(Contact, ACME_CONTACT).email = "ada@acmecorp.example"
        quote.status = "Ready to Send"
    assert _queue(seeded)["queued"] == 1
    assert send_due(seeded, _sender(smtp_server), SETTINGS)["sent"] == 1


def test_a_connection_dropped_mid_send_is_retried(seeded, smtp_server):
    _set_contact_email(seeded, "drop@acmecorp.example")
    _queue(seeded)
    summary = send_due(seeded, _sender(smtp_server), SETTINGS)
    assert smtp_server.handler.dropped == 1
    assert summary["retrying"] == 1 and summary["sent"] == 2, "the other messages still go out on a new connection"
    [row] = [r for r in _rows(seeded) if r.quote_id == ACME]
    assert row.status == QUEUED and "Disconnected" in row.last_error


def test_notices_commit_with_the_callers_transaction(db_url, smtp_server):
    with pytest.raises(RuntimeError), session_scope(db_url) as s:
        queue_notice(s, "ops@hotcrm.example", "rolled back", "x")
        raise RuntimeError("the caller's change failed")
    assert _rows(db_url) == []
    with session_scope(db_url) as s:
        queue_notice(
            s,
            ["ops@hotcrm.example", "lead@hotcrm.example"],
            "Import\r\nBcc: evil@x",
            "3 rows",
            kind="import_summary",
            dedupe_key="imp-1",
        )
        queue_notice(s, "ops@hotcrm.example", "Import", "3 rows", kind="import_summary", dedupe_key="imp-1")
    assert send_due(db_url, _sender(smtp_server), SETTINGS)["sent"] == 1
    [accepted] = smtp_server.handler.accepted
    assert accepted.rcpt_tos == ["ops@hotcrm.example", "lead@hotcrm.example"]
    assert accepted.message["Subject"] == "Import Bcc: evil@x", "no header injection"
    assert accepted.message["X-HotCRM-Kind"] == "import_summary"
    with pytest.raises(ValueError, match="not an email address"), session_scope(db_url) as s:
        queue_notice(s, "nobody", "x", "y")


def test_starttls(db_url):
    server = start_smtp(tls=True)
    try:
        with session_scope(db_url) as s:
            queue_notice(s, "ops@hotcrm.example", "over TLS", "secret stuff")
        context = ssl.create_default_context(cadata=server.cert_pem)
        plain = SmtplibSender(server.host, server.port, timeout=5)
        summary = send_due(db_url, plain, SETTINGS)
        assert summary["failed"] == 1 and "530" in summary["failures"][0], "the server requires STARTTLS"
        with session_scope(db_url) as s:
            set_status(s, _rows(db_url)[0].id, "requeue", SETTINGS)
        tls = SmtplibSender(server.host, server.port, starttls=True, ssl_context=context, timeout=5)
        assert send_due(db_url, tls, SETTINGS)["sent"] == 1
        assert server.handler.accepted[0].message["Subject"] == "over TLS"
    finally:
        server.stop()


def _crash_after_accept(url, server, tmp_path):
    """Send in a real subprocess that dies (os._exit) right after the server accepted the first message."""
    code = textwrap.dedent(f"""
        import os
        from hotcrm.email.outbox import send_due
        from hotcrm.email.settings import EmailSettings
        from hotcrm.email.smtp import SmtplibSender
        send_due({url!r}, SmtplibSender({server.host!r}, {server.port}, timeout=5), EmailSettings(lease_seconds=60),
                 after_send=lambda row: os._exit(9))
        """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 9, result.stderr


def _expire_leases(url):
    with session_scope(url) as s:
        s.execute(update(EmailOutbox).values(locked_until=utcnow() - timedelta(seconds=1)))


def test_crash_after_the_server_accepted_is_confirmed_by_message_id_not_resent(seeded, smtp_server, tmp_path):
    _queue(seeded)
    _crash_after_accept(seeded, smtp_server, tmp_path)
    assert len(smtp_server.handler.accepted) == 1
    stuck = [r for r in _rows(seeded) if r.status == SENDING]
    assert len(stuck) == 1, "the accepted message was never recorded as sent"
    assert send_due(seeded, _sender(smtp_server), SETTINGS, confirm=smtp_server.handler.confirm)["sent"] == 2
    assert all(r.status == SENDING for r in _rows(seeded) if r.id == stuck[0].id), "lease still holds"
    _expire_leases(seeded)
    summary = send_due(seeded, _sender(smtp_server), SETTINGS, confirm=smtp_server.handler.confirm)
    assert summary["confirmed_sent"] == 1 and summary["sent"] == 0
    ids = smtp_server.handler.message_ids()
    assert len(ids) == 3 and len(set(ids)) == 3, "every quote email arrived exactly once"
    with session_scope(seeded) as s:
        assert s.get(Quote, stuck[0].quote_id).status == "Sent"


def test_crash_without_a_confirmation_holds_the_message_and_tells_operators(seeded, smtp_server, tmp_path):
    _queue(seeded)
    _crash_after_accept(seeded, smtp_server, tmp_path)
    _expire_leases(seeded)
    summary = send_due(seeded, _sender(smtp_server), SETTINGS, operator_emails=["ops@hotcrm.example"])
    assert summary["held"] == 1
    rows = _rows(seeded)
    [held] = [r for r in rows if r.status == UNCONFIRMED]
    alerts = [a for a in smtp_server.handler.accepted if a.message["X-HotCRM-Kind"] == "unconfirmed_alert"]
    assert len(alerts) == 1 and held.message_id in alerts[0].message.get_body(("plain",)).get_content()
    quote_ids = [a.message["Message-ID"] for a in smtp_server.handler.accepted if a.message["X-HotCRM-Kind"] == "quote"]
    assert len(quote_ids) == 3 and held.message_id in quote_ids and len(set(quote_ids)) == 3


def test_crash_before_the_server_accepted_is_sent_on_the_rerun(seeded, smtp_server):
    _queue(seeded)
    # Claimed (sending, Message-ID recorded) and then the process died before talking SMTP.
    code = textwrap.dedent(f"""
        import os
        from hotcrm.email.outbox import _claim
        from hotcrm.email.settings import EmailSettings
        from hotcrm.crm.models import utcnow
        assert len(_claim({seeded!r}, EmailSettings(), utcnow())) == 1
        os._exit(9)
        """)
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 9
    _expire_leases(seeded)
    summary = send_due(seeded, _sender(smtp_server), SETTINGS, confirm=smtp_server.handler.confirm)
    assert summary["requeued"] == 1 and summary["sent"] == 3
    assert len(set(smtp_server.handler.message_ids())) == 3 == len(smtp_server.handler.accepted)


def test_a_contact_email_holding_several_addresses_is_refused_not_sent_to_both(seeded, smtp_server):
    for several in ("a@x.example, b@y.example", "a@x.example;b@y.example", "Ada <a@x.example>", "a@x.example b@y"):
        _set_contact_email(seeded, several)
        summary = _queue(seeded)
        assert summary["queued"] == 2, several  # the other two quotes' contacts are fine
        problem = next(p for p in summary["problems"] if "Q-2026-0001" in p)
        assert repr(several) in problem and "one address" in problem
        with session_scope(seeded) as s:
            assert s.scalar(select(EmailOutbox).where(EmailOutbox.quote_id == ACME)) is None
            s.execute(EmailOutbox.__table__.delete())
    assert send_due(seeded, _sender(smtp_server), SETTINGS)["sent"] == 0
    assert smtp_server.handler.accepted == []


def test_a_quote_set_back_to_ready_after_it_was_sent_is_sent_again(seeded, smtp_server):
    _set_contact_email(seeded, "ada@acmecorp.example")
    _queue(seeded)
    assert send_due(seeded, _sender(smtp_server), SETTINGS)["sent"] == 3
    with session_scope(seeded) as s:
        s.get(Quote, ACME).status = "Ready to Send"  # the rep revised it and sends it again
    assert _queue(seeded)["queued"] == 1
    assert _queue(seeded)["queued"] == 0, "still idempotent while the new email is on its way"
    assert send_due(seeded, _sender(smtp_server), SETTINGS)["sent"] == 1
    acme = [a for a in smtp_server.handler.accepted if a.message["Subject"] == "Quote Q-2026-0001"]
    assert len(acme) == 2 and acme[0].message["Message-ID"] != acme[1].message["Message-ID"]
    with session_scope(seeded) as s:
        assert s.get(Quote, ACME).status == "Sent"


def test_the_quote_link_comes_from_app_url_and_its_page_answers(seeded, monkeypatch):
    import httpx

    from hotcrm.api.standalone import create_standalone_app
    from hotcrm.email.settings import load_settings
    from tests.support.api_server import ThreadServer

    monkeypatch.delenv("HOTCRM_QUOTE_BASE_URL", raising=False)
    default = load_settings()
    server = ThreadServer(create_standalone_app(seeded)).start()
    try:
        monkeypatch.setenv("APP_URL", server.base_url + "/")
        settings = load_settings()
        assert settings.quote_base_url == server.base_url + "/hotcrm/quotes"
        _set_contact_email(seeded, "ada@acmecorp.example")
        _queue(seeded, settings)
        with session_scope(seeded) as s:
            text = s.scalar(select(EmailOutbox.text_body).where(EmailOutbox.quote_id == ACME))
        link = next(word for word in text.split() if word.startswith("http"))
        page = httpx.get(link)
        assert page.status_code == 200 and "Q-2026-0001" in page.text and "$4,999.50" in page.text
        assert httpx.get(server.base_url + "/hotcrm/quotes/nope").json()["code"] == "QUOTE_NOT_FOUND"
        # The default link is this same page on the default address of the Airflow API server.
        assert default.quote_base_url.endswith("/hotcrm/quotes")
        monkeypatch.setenv("HOTCRM_QUOTE_BASE_URL", "https://quotes.example/q")
        assert load_settings().quote_base_url == "https://quotes.example/q"
    finally:
        server.stop()
