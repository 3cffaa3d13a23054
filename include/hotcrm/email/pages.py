"""The page a quote email links to: ``GET /hotcrm/quotes/{quote_id}``.

A read-only summary of one quote (number, name, account, total, validity, status), so the
link in the email (``<APP_URL>/hotcrm/quotes/<Id>`` by default) opens a page rather than a
404. The Id is a random UUID, so the link works as the customer's capability to see that one
quote; nothing else is reachable from it.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from hotcrm.crm.db import session_scope
from hotcrm.crm.models import Account, Quote
from hotcrm.email.render import environment, format_money
from hotcrm.email.settings import load_settings
from hotcrm.web.responses import database_url, error_response

router = APIRouter(tags=["quotes"])

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Quote {{ number }}</title></head>
<body><h1>Quote {{ number }}</h1>
{% if name %}<p>{{ name }}</p>{% endif %}
<dl>{% if account %}<dt>Prepared for</dt><dd>{{ account }}</dd>{% endif %}
<dt>Total</dt><dd>{{ total }}</dd>
{% if expires %}<dt>Valid until</dt><dd>{{ expires }}</dd>{% endif %}
<dt>Status</dt><dd>{{ status }}</dd></dl></body></html>
"""


def _quote_context(url: str, quote_id: str) -> dict | None:
    with session_scope(url) as session:
        quote = session.get(Quote, quote_id)
        if quote is None:
            return None
        account = session.get(Account, quote.account_id) if quote.account_id else None
        locale = load_settings().locale
        try:
            total = format_money(quote.total_amount, quote.currency, locale)
        except ValueError:
            total = f"{quote.total_amount} {quote.currency}"
        return {
            "number": quote.quote_number,
            "name": quote.name,
            "account": account.name if account else None,
            "total": total,
            "expires": quote.expiration_date.isoformat() if quote.expiration_date else None,
            "status": quote.status,
        }


@router.get("/quotes/{quote_id}", response_class=HTMLResponse, include_in_schema=False)
async def quote_page(request: Request, quote_id: str) -> Response:
    """The quote's summary page (HTML), or 404 QUOTE_NOT_FOUND."""
    if len(quote_id) > 64:
        return error_response(404, "QUOTE_NOT_FOUND", "No such quote")
    context = await run_in_threadpool(_quote_context, database_url(request), quote_id)
    if context is None:
        return error_response(404, "QUOTE_NOT_FOUND", "No such quote")
    return HTMLResponse(environment().from_string(_PAGE).render(context))
