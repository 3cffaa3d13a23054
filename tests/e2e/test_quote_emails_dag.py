"""The quote_emails DAG end to end with dag.test(), on SQLite and PostgreSQL, sending through
the SMTP provider's hook and an ``smtp_default`` connection pointing at aiosmtpd on loopback
(plain and STARTTLS)."""

import pytest
from sqlalchemy import select

from hotcrm.airflow.runner import run_dag
from hotcrm.crm import seed
from hotcrm.crm.db import session_scope
from hotcrm.crm.models import Quote
from hotcrm.email import queue_notice
from hotcrm.email.models import SENT, EmailOutbox
from tests.conftest import DAGS_FOLDER
from tests.support.smtp import start_smtp


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "starttls"])
def test_ready_quotes_and_notices_are_sent_once(airflow_db, hotcrm_env, monkeypatch, tmp_path, tls):
    db = hotcrm_env["database_url"]
    seed.load_seed(db)
    server = start_smtp(tls=tls)
    try:
        if tls:
            ca = tmp_path / "ca.pem"
            ca.write_text(server.cert_pem)
            monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # the hook's default context trusts the test CA
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", server.airflow_connection_json("quotes@acme-crm.example"))
        monkeypatch.setenv("HOTCRM_QUOTE_BASE_URL", "https://crm.acme.example/quotes")
        with session_scope(db) as s:
            queue_notice(
                s, "uploader@acme.example", "Lead import: leads.csv", "12 imported, 1 rejected", kind="import_summary"
            )

        result = run_dag("quote_emails", DAGS_FOLDER)
        assert result.succeeded, result
        assert result.returns["send_emails"]["queued"] == 3
        assert result.returns["send_emails"]["sent"] == 4
        accepted = server.handler.accepted
        subjects = sorted(a.message["Subject"] for a in accepted)
        assert subjects == ["Lead import: leads.csv", "Quote Q-2026-0001", "Quote Q-2026-0002", "Quote Q-2026-0003"]
        quote_mail = next(a for a in accepted if a.message["Subject"] == "Quote Q-2026-0002")
        assert quote_mail.mail_from == "quotes@acme-crm.example"
        assert quote_mail.rcpt_tos == ["grace.hopper@globex.example"]
        assert "€5,999.50" in quote_mail.message.get_body(("html",)).get_content()
        assert "https://crm.acme.example/quotes/d0000000-0000-4000-8000-000000000002" in (
            quote_mail.message.get_body(("plain",)).get_content()
        )
        with session_scope(db) as s:
            rows = list(s.scalars(select(EmailOutbox)))
            assert {r.status for r in rows} == {SENT}
            assert sorted(r.message_id for r in rows) == sorted(server.handler.message_ids())
            statuses = dict(s.execute(select(Quote.quote_number, Quote.status)).all())
            assert statuses["Q-2026-0001"] == "Sent" and statuses["Q-2026-0004"] == "Draft"

        again = run_dag("quote_emails", DAGS_FOLDER)
        assert again.succeeded and again.returns["send_emails"]["sent"] == 0
        assert len(server.handler.accepted) == 4
    finally:
        server.stop()
