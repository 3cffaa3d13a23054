"""The email outbox: queue (in the caller's transaction), send exactly once, reconcile.

A message's life: ``queued`` -> ``sending`` (committed, with its Message-ID, *before* the
SMTP conversation) -> ``sent`` (committed with the quote's new status and sent date).
Temporary failures go back to ``queued`` with a backoff; permanent 5xx replies end in
``failed`` and are recorded on the quote. A row still ``sending`` after its lease means the
sender died mid-send: it is reconciled (confirmed by Message-ID when the sender can, else
held as ``unconfirmed`` for an operator) instead of being sent a second time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hotcrm.crm.db import is_postgresql, session_scope
from hotcrm.crm.models import Account, Activity, Contact, Quote, utcnow
from hotcrm.email.models import FAILED, QUEUED, SENDING, SENT, UNCONFIRMED, EmailOutbox
from hotcrm.email.render import render_quote
from hotcrm.email.settings import EmailSettings
from hotcrm.email.smtp import Sender, classify

log = logging.getLogger(__name__)


def _one_line(text: str) -> str:
    # A header may not carry CR/LF (header injection); collapse to one line.
    return " ".join(str(text).split())


def _recipients(to: str | Iterable[str]) -> str:
    addresses = [to] if isinstance(to, str) else list(to)
    addresses = [_one_line(a) for a in addresses if a and a.strip()]
    if not addresses:
        raise ValueError("an email needs at least one recipient address")
    for address in addresses:
        if "@" not in address:
            raise ValueError(f"recipient {address!r} is not an email address")
    return ", ".join(addresses)


def single_address(value: str) -> str | None:
    """``value`` as one bare email address, or ``None`` when it is not exactly one address
    (``a@x.example, b@y.example`` is two; a quote goes to one Contact, never to both)."""
    address = (value or "").strip()
    name, parsed = parseaddr(address)
    if not parsed or name or parsed != address or parsed.count("@") != 1 or any(c in parsed for c in ',; \t<>"'):
        return None
    local, domain = parsed.split("@")
    return parsed if local and "." in domain.strip(".") else None


def queue_notice(
    session: Session,
    to: str | Iterable[str],
    subject: str,
    text: str,
    *,
    kind: str = "notice",
    html: str | None = None,
    dedupe_key: str | None = None,
    message_id_domain: str = "hotcrm.example",
) -> EmailOutbox:
    """Queue an operational notice in ``session``'s transaction (it commits with the caller's
    change). ``dedupe_key`` makes a retried task queue it once; the ``quote_emails`` DAG sends it.
    """
    message_id = make_msgid(domain=message_id_domain)
    key = dedupe_key or f"{kind}:{message_id}"
    existing = session.scalar(select(EmailOutbox).where(EmailOutbox.dedupe_key == key))
    if existing is not None:
        return existing
    row = EmailOutbox(
        kind=kind,
        dedupe_key=key,
        message_id=message_id,
        to_addr=_recipients(to),
        subject=_one_line(subject)[:255],
        text_body=text,
        html_body=html,
        status=QUEUED,
        next_attempt_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row


# An email in one of these states is still on its way (or waiting for an operator): the quote
# is not queued again. Sent and failed ones are history.
_IN_FLIGHT = (QUEUED, SENDING, UNCONFIRMED)


def queue_quote_emails(session: Session, settings: EmailSettings) -> dict[str, Any]:
    """Queue one email per quote in ``ready_status`` that has none on its way.

    Sending a quote's email sets the quote to ``sent_status`` in the same transaction, so a
    quote found in ``ready_status`` whose earlier email was sent (or failed) was set back on
    purpose: it is sent again, as a new message with its own Message-ID. Returns counts and,
    per quote that could not be queued, the reason and the fix."""
    quotes = list(session.scalars(select(Quote).where(Quote.status == settings.ready_status).order_by(Quote.id)))
    queued, skipped, problems = 0, 0, []
    for quote in quotes:
        previous = list(session.scalars(select(EmailOutbox).where(EmailOutbox.quote_id == quote.id)))
        if any(row.status in _IN_FLIGHT for row in previous):
            skipped += 1
            continue
        contact = session.get(Contact, quote.contact_id) if quote.contact_id else None
        if contact is None or not contact.email:
            problems.append(
                f"quote {quote.quote_number} (Id {quote.id}): "
                + ("no ContactId" if contact is None else f"contact {contact.id} has no Email")
                + "; set the quote's contact and its Email, the next run queues it"
            )
            continue
        to_addr = single_address(contact.email)
        if to_addr is None:
            problems.append(
                f"quote {quote.quote_number} (Id {quote.id}): contact {contact.id}'s Email {contact.email!r} "
                "is not one email address (several, or a display name); keep one address in the Contact's "
                "Email, the next run queues it"
            )
            continue
        account = session.get(Account, quote.account_id) if quote.account_id else None
        name = " ".join(p for p in (contact.first_name, contact.last_name) if p)
        try:
            rendered = render_quote(
                quote, name, account.name if account else None, settings.quote_base_url, settings.locale
            )
        except ValueError as exc:
            problems.append(f"quote {quote.quote_number} (Id {quote.id}): {exc}")
            continue
        session.add(
            EmailOutbox(
                kind="quote",
                dedupe_key=f"quote:{quote.id}:{len(previous) + 1}",
                message_id=make_msgid(domain=settings.message_id_domain),
                to_addr=to_addr,
                subject=_one_line(rendered.subject),
                text_body=rendered.text,
                html_body=rendered.html,
                quote_id=quote.id,
                status=QUEUED,
                next_attempt_at=utcnow(),
            )
        )
        queued += 1
    session.flush()
    return {"ready": len(quotes), "queued": queued, "already_queued": skipped, "problems": problems}


def build_message(row: EmailOutbox, from_addr: str) -> EmailMessage:
    """The MIME message for a row: text, plus an HTML alternative when there is one."""
    msg = EmailMessage()
    msg["From"] = from_addr
    msg["To"] = row.to_addr
    msg["Subject"] = row.subject
    msg["Message-ID"] = row.message_id
    msg["Date"] = format_datetime(utcnow())
    msg["X-HotCRM-Kind"] = row.kind
    msg.set_content(row.text_body)
    if row.html_body:
        msg.add_alternative(row.html_body, subtype="html")
    return msg


# --- sending ------------------------------------------------------------------------------


def _claim(url: str, settings: EmailSettings, now: datetime, limit: int = 1) -> list[EmailOutbox]:
    # One message per claim by default: after a crash, at most one message is in doubt.
    with session_scope(url) as session:
        query = (
            select(EmailOutbox)
            .where(EmailOutbox.status == QUEUED, EmailOutbox.next_attempt_at <= now)
            .order_by(EmailOutbox.next_attempt_at, EmailOutbox.id)
            .limit(limit)
        )
        if is_postgresql(session.get_bind()):
            query = query.with_for_update(skip_locked=True)
        rows = list(session.scalars(query))
        for row in rows:
            # Committed before any byte goes to the SMTP server: the Message-ID is on record.
            row.status = SENDING
            row.attempts += 1
            row.locked_until = now + timedelta(seconds=settings.lease_seconds)
        return rows


def _mark_sent(session: Session, row: EmailOutbox, settings: EmailSettings, now: datetime, how: str) -> None:
    row.status = SENT
    row.sent_at = now
    row.locked_until = None
    row.last_error = None
    if row.quote_id:
        quote = session.get(Quote, row.quote_id)
        if quote is not None:
            quote.status = settings.sent_status
            quote.sent_date = now
            session.add(
                Activity(
                    type="Email",
                    subject=f"Email: {row.subject}"[:255],
                    description=f"Sent to {row.to_addr} ({how}); Message-ID {row.message_id}",
                    account_id=quote.account_id,
                    contact_id=quote.contact_id,
                    activity_date=now,
                )
            )


def _mark_failed(session: Session, row: EmailOutbox, settings: EmailSettings, code: int | None, error: str) -> None:
    row.status = FAILED
    row.smtp_code = code
    row.last_error = error
    row.locked_until = None
    if row.quote_id:
        quote = session.get(Quote, row.quote_id)
        if quote is not None:
            # Recorded on the quote: its status, and an activity with the server's reply.
            quote.status = settings.failed_status
            session.add(
                Activity(
                    type="Email",
                    subject=f"Email failed: {row.subject}"[:255],
                    description=f"Sending to {row.to_addr} failed: {error}. Fix the address, then set the "
                    f"quote's Status back to {settings.ready_status!r} to send it again.",
                    account_id=quote.account_id,
                    contact_id=quote.contact_id,
                )
            )


def reconcile(
    url: str,
    settings: EmailSettings,
    confirm: Callable[[str], bool | None] | None = None,
    now: datetime | None = None,
    operator_emails: Iterable[str] = (),
) -> dict[str, int]:
    """Settle rows left in ``sending`` by a crashed sender (lease expired).

    ``confirm(message_id)`` asks the mail provider whether it accepted the message: True
    marks it sent, False queues it again. Without an answer, ``crashed_send_policy`` decides:
    ``hold`` marks it ``unconfirmed`` and tells the operators (no duplicate is ever sent),
    ``resend`` queues it again.
    """
    now = now or utcnow()
    counts = {"confirmed_sent": 0, "requeued": 0, "held": 0}
    with session_scope(url) as session:
        query = select(EmailOutbox).where(EmailOutbox.status == SENDING, EmailOutbox.locked_until < now)
        if is_postgresql(session.get_bind()):
            query = query.with_for_update(skip_locked=True)
        held = []
        for row in session.scalars(query):
            answer = confirm(row.message_id) if confirm else None
            if answer is True:
                _mark_sent(session, row, settings, now, "confirmed by Message-ID after a crash")
                counts["confirmed_sent"] += 1
            elif answer is False or settings.crashed_send_policy == "resend":
                row.status = QUEUED
                row.locked_until = None
                row.next_attempt_at = now
                counts["requeued"] += 1
            else:
                row.status = UNCONFIRMED
                row.locked_until = None
                row.last_error = "sender crashed mid-send; not resent to avoid a duplicate"
                held.append(row)
                counts["held"] += 1
        operators = list(operator_emails)
        if held and operators:
            lines = [f"- {r.id}: {r.subject} to {r.to_addr}, Message-ID {r.message_id}" for r in held]
            queue_notice(
                session,
                operators,
                f"[HotCRM] {len(held)} email(s) need a decision after a crash",
                "These messages were being sent when the sender stopped. Search the mail server's log for "
                "their Message-ID, then run `python -m hotcrm email confirm <id>` (it was delivered) or "
                "`python -m hotcrm email requeue <id>` (send it again):\n\n" + "\n".join(lines),
                kind="unconfirmed_alert",
                message_id_domain=settings.message_id_domain,
            )
    return counts


def send_due(
    url: str,
    sender: Sender,
    settings: EmailSettings,
    *,
    from_addr: str | None = None,
    confirm: Callable[[str], bool | None] | None = None,
    operator_emails: Iterable[str] = (),
    max_messages: int | None = None,
    after_send: Callable[[EmailOutbox], None] | None = None,
) -> dict[str, Any]:
    """Reconcile crashed sends, then send every due message; returns counts and failures.

    ``after_send`` is a test seam: it runs after the server accepted a message and before
    that is recorded (the crash tests kill the process there).
    """
    t0 = time.monotonic()
    summary: dict[str, Any] = {"sent": 0, "retrying": 0, "failed": 0, "failures": []}
    summary.update(reconcile(url, settings, confirm, operator_emails=operator_emails))
    handled = 0
    try:
        while max_messages is None or handled < max_messages:
            rows = _claim(url, settings, utcnow())
            if not rows:
                break
            for row in rows:
                _send_row(url, sender, settings, row, from_addr or settings.from_addr, summary, after_send)
                handled += 1
            if handled % 50 == 0:
                log.info("%d messages handled; %d sent", handled, summary["sent"])
    finally:
        sender.close()
    summary["seconds"] = round(time.monotonic() - t0, 3)
    log.info(
        "email: %d sent, %d retrying, %d failed in %.1fs",
        summary["sent"],
        summary["retrying"],
        summary["failed"],
        summary["seconds"],
    )
    return summary


def _send_row(url, sender, settings, row, from_addr, summary, after_send) -> None:
    try:
        message = build_message(row, from_addr)
    except ValueError as exc:  # an unusable header: no retry can fix it
        with session_scope(url) as session:
            _mark_failed(session, session.get(EmailOutbox, row.id), settings, None, f"message not built: {exc}")
        summary["failed"] += 1
        summary["failures"].append(f"{row.subject} to {row.to_addr}: message not built: {exc}")
        return
    try:
        sender.send(message)
    except Exception as exc:  # classified below; never lost
        failure = classify(exc)
        with session_scope(url) as session:
            fresh = session.get(EmailOutbox, row.id)
            delay = None if failure.permanent else settings.retry_delay(fresh.attempts)
            if delay is None:
                reason = (
                    failure.message
                    if failure.permanent
                    else f"gave up after {fresh.attempts} attempts: {failure.message}"
                )
                _mark_failed(session, fresh, settings, failure.code, reason)
                summary["failed"] += 1
                summary["failures"].append(f"{row.subject} to {row.to_addr}: {reason}")
            else:
                fresh.status = QUEUED
                fresh.locked_until = None
                fresh.smtp_code = failure.code
                fresh.last_error = failure.message
                fresh.next_attempt_at = utcnow() + timedelta(seconds=delay)
                summary["retrying"] += 1
        log.warning("email %s (%s): %s", row.id, row.subject, failure.message)
        return
    if after_send is not None:
        after_send(row)
    with session_scope(url) as session:
        _mark_sent(session, session.get(EmailOutbox, row.id), settings, utcnow(), "SMTP accepted")
    summary["sent"] += 1


def set_status(session: Session, row_id: str, action: str, settings: EmailSettings) -> EmailOutbox:
    """Operator decision on a held (``unconfirmed``) or failed message: ``confirm`` or ``requeue``."""
    row = session.get(EmailOutbox, row_id)
    if row is None:
        raise LookupError(f"no email with id {row_id!r}; see `python -m hotcrm email list`")
    if action == "confirm":
        _mark_sent(session, row, settings, utcnow(), "confirmed by an operator")
    elif action == "requeue":
        row.status = QUEUED
        row.attempts = 0
        row.next_attempt_at = utcnow()
        row.locked_until = None
    else:
        raise ValueError(f"unknown action {action!r}; use confirm or requeue")
    return row


def status_counts(session: Session) -> dict[str, int]:
    """Messages per status."""
    return dict(session.execute(select(EmailOutbox.status, func.count()).group_by(EmailOutbox.status)).all())


__all__ = [
    "build_message",
    "queue_notice",
    "queue_quote_emails",
    "reconcile",
    "send_due",
    "set_status",
    "status_counts",
]
