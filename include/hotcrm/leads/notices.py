"""The import summary email: after each lead file, its uploader's configured address gets what
became of it (counts, the first reasons rows were refused, where the reports are).

Recipients come from ``include/config/lead_import_notices.json`` (or the file named by
``HOTCRM_LEAD_IMPORT_NOTICES``): rules tried in order, the first whose glob matches the file
name wins. The notice goes through the email outbox (:func:`hotcrm.email.queue_notice`),
keyed by the ledger's file id, so a retried task queues it once; ``quote_emails`` sends it.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

from hotcrm.leads.models import COUNT_FIELDS
from hotcrm.settings import CONFIG_DIR, config_path, read_json_file

NOTICES_CONFIG = CONFIG_DIR / "lead_import_notices.json"
NOTICE_KIND = "import_summary"
MAX_LISTED_ISSUES = 20


def load_recipient_rules(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The recipient rules, checked: each needs a ``match`` glob and a ``to`` list of addresses."""
    path = config_path(path, "HOTCRM_LEAD_IMPORT_NOTICES", NOTICES_CONFIG)
    rules = read_json_file(path, "lead import notices").get("recipients")
    if not isinstance(rules, list):
        raise ValueError(f"{path}: 'recipients' must be a list of {{'match': glob, 'to': [addresses]}}")
    for number, rule in enumerate(rules, start=1):
        to = rule.get("to") if isinstance(rule, dict) else None
        if not isinstance(rule, dict) or not isinstance(rule.get("match"), str) or not isinstance(to, list):
            raise ValueError(f"{path}: recipient rule #{number} {rule!r} needs 'match' (a glob) and 'to' (a list)")
        bad = [a for a in to if not isinstance(a, str) or "@" not in a]
        if bad:
            raise ValueError(f"{path}: recipient rule #{number}: {bad!r} are not email addresses")
    return rules


def recipients_for(file_name: str, rules: list[dict[str, Any]]) -> list[str]:
    """The addresses of the first rule whose glob matches ``file_name`` (none: no notice)."""
    for rule in rules:
        if fnmatch.fnmatchcase(file_name, rule["match"]):
            return list(rule["to"])
    return []


def _first_issues(session: Any, file_id: str) -> list[str]:
    """The file's first refused rows (ledger table ``lead_import_issues``) as ``line N (kind): reason``."""
    from sqlalchemy import select

    from hotcrm.leads.models import ImportIssue

    rows = session.execute(
        select(ImportIssue.line_number, ImportIssue.kind, ImportIssue.reason)
        .where(ImportIssue.file_id == file_id)
        .order_by(ImportIssue.line_number, ImportIssue.id)
        .limit(MAX_LISTED_ISSUES)
    )
    return [f"line {line} ({kind}): {reason}" for line, kind, reason in rows]


def summary_text(outcome: dict[str, Any], issues: list[str]) -> tuple[str, str]:
    """The subject and plain-text body of the summary for one file's outcome and its first issues."""
    name, status = outcome["file_name"], outcome["status"]
    refused = outcome.get("rejected", 0) + outcome.get("duplicates", 0)
    if status == "imported":
        subject = f"Lead import {name}: {outcome.get('inserted', 0) + outcome.get('updated', 0)} loaded"
        subject += f", {refused} refused" if refused else ", nothing refused"
    else:
        subject = f"Lead import {name}: {status}, nothing loaded"
    body = [f"File: {name}", f"Status: {status}"]
    if outcome.get("error"):
        body.append(f"Why: {outcome['error']}")
    if outcome.get("encoding"):
        body.append(f"Read as: {outcome['encoding']}, delimiter {outcome.get('delimiter')!r}")
    body.append(
        "Rows: {rows_read} read, {inserted} inserted, {updated} updated, {duplicates} duplicates, "
        "{rejected} rejected, {not_loaded} not loaded".format(**{k: outcome.get(k, 0) for k in COUNT_FIELDS})
    )
    if outcome.get("unknown_columns"):
        body.append("Columns not imported (unknown): " + ", ".join(outcome["unknown_columns"]))
    if issues:
        more = f" (the first {MAX_LISTED_ISSUES})" if refused > len(issues) else ""
        body += ["", f"Rows not loaded{more}; fix the rejected ones and drop a file with just those rows:", *issues]
    body += ["", f"Report: {outcome.get('report_path') or '-'}"]
    if outcome.get("rejects_path"):
        body.append(f"Rejected rows (opens in a spreadsheet): {outcome['rejects_path']}")
    return subject, "\n".join(body) + "\n"


def queue_import_summary(database_url: str, outcome: dict[str, Any], rules: list[dict[str, Any]] | None = None) -> bool:
    """Queue the summary email of one import outcome; False when no rule names a recipient.
    Idempotent: keyed by the ledger's file id."""
    from hotcrm.crm.db import session_scope
    from hotcrm.email import queue_notice

    to = recipients_for(outcome["file_name"], rules if rules is not None else load_recipient_rules())
    if not to:
        return False
    with session_scope(database_url) as session:
        subject, text = summary_text(outcome, _first_issues(session, outcome["file_id"]))
        queue_notice(session, to, subject, text, kind=NOTICE_KIND, dedupe_key=f"{NOTICE_KIND}:{outcome['file_id']}")
    return True
