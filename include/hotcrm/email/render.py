"""Email templates (Jinja2, ``include/config/email``) and amount formatting.

HTML templates autoescape: a customer-supplied name such as ``<script>`` arrives as text.
Plain-text templates do not escape (there is no markup to inject into).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from babel.core import UnknownLocaleError
from babel.dates import format_date
from babel.numbers import format_currency, is_currency
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from hotcrm.settings import CONFIG_DIR

TEMPLATE_DIR = CONFIG_DIR / "email"


@lru_cache(maxsize=4)
def environment(template_dir: str = str(TEMPLATE_DIR)) -> Environment:
    """The Jinja2 environment: autoescape for ``.html.j2``, strict undefined variables."""
    return Environment(
        loader=FileSystemLoader(template_dir),
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2"), default_for_string=True),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def format_money(amount: Decimal | float | str, currency: str, locale: str = "en_US") -> str:
    """``4999.5, 'EUR'`` -> ``€4,999.50`` (the currency's own decimals, the locale's grouping)."""
    currency = (currency or "").upper()
    if not is_currency(currency):
        raise ValueError(f"unknown currency code {currency!r}; use an ISO 4217 code such as USD or EUR")
    try:
        return format_currency(Decimal(str(amount)), currency, locale=locale)
    except UnknownLocaleError as exc:
        raise ValueError(f"unknown locale {locale!r} in the email settings") from exc


@dataclass
class Rendered:
    """A rendered message: subject and both bodies."""

    subject: str
    text: str
    html: str


def render_quote(
    quote,
    contact_name: str,
    account_name: str | None,
    base_url: str,
    locale: str = "en_US",
    template_dir: str | Path = TEMPLATE_DIR,
) -> Rendered:
    """The quote email for ``quote`` (a :class:`hotcrm.crm.models.Quote`)."""
    env = environment(str(template_dir))
    expires = quote.expiration_date
    context = {
        "quote": quote,
        "contact_name": contact_name,
        "account_name": account_name,
        "total": format_money(quote.total_amount, quote.currency, locale),
        "expires": format_date(expires, format="long", locale=locale) if isinstance(expires, date) else None,
        "link": f"{base_url.rstrip('/')}/{quote.id}",
    }
    return Rendered(
        subject=f"Quote {quote.quote_number}",
        text=env.get_template("quote.txt.j2").render(context),
        html=env.get_template("quote.html.j2").render(context),
    )
