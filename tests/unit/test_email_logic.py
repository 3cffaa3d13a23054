"""Pure logic of email: templates with autoescaping, currency formatting, message building,
SMTP failure classification, settings errors."""

import smtplib
from datetime import date
from decimal import Decimal
from types import SimpleNamespace

import pytest

from hotcrm.email.models import EmailOutbox
from hotcrm.email.outbox import build_message
from hotcrm.email.render import format_money, render_quote
from hotcrm.email.settings import EmailSettings, load_settings
from hotcrm.email.smtp import classify


@pytest.mark.parametrize(
    ("amount", "currency", "locale", "expected"),
    [
        ("4999.50", "USD", "en_US", "$4,999.50"),
        ("5999.5", "EUR", "en_US", "€5,999.50"),
        ("5999.5", "EUR", "de_DE", "5.999,50\xa0€"),
        ("1234", "JPY", "en_US", "¥1,234"),
        ("7999.50", "GBP", "en_GB", "£7,999.50"),
    ],
)
def test_amounts_are_formatted_for_the_currency(amount, currency, locale, expected):
    assert format_money(Decimal(amount), currency, locale) == expected


def test_unknown_currency_names_the_code():
    with pytest.raises(ValueError, match="'XYZ'.*ISO 4217"):
        format_money("1", "XYZ")


def _quote(**kw):
    base = dict(
        id="q-1",
        quote_number="Q-1",
        name="Plan <b>bold</b> & more",
        total_amount=Decimal("4999.50"),
        currency="USD",
        expiration_date=date(2026, 12, 31),
    )
    base.update(kw)
    return SimpleNamespace(**base)


def test_customer_text_is_escaped_in_html_and_plain_in_text():
    rendered = render_quote(_quote(), '<script>alert("x")</script>', "Acme & Sons", "https://crm.example/quotes/")
    assert rendered.subject == "Quote Q-1"
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in rendered.html
    assert "Plan &lt;b&gt;bold&lt;/b&gt; &amp; more" in rendered.html
    assert "Acme &amp; Sons" in rendered.html
    assert '<a href="https://crm.example/quotes/q-1">' in rendered.html
    assert "$4,999.50" in rendered.html and "$4,999.50" in rendered.text
    assert '<script>alert("x")</script>' in rendered.text
    assert "https://crm.example/quotes/q-1" in rendered.text
    assert "December 31, 2026" in rendered.text


def test_message_has_both_bodies_and_the_recorded_message_id():
    row = EmailOutbox(
        kind="quote",
        to_addr="a@x.example",
        subject="Quote Q-1",
        text_body="hello €",
        html_body="<p>hello €</p>",
        message_id="<abc@hotcrm.example>",
    )
    msg = build_message(row, "Quotes <quotes@hotcrm.example>")
    assert msg["Message-ID"] == "<abc@hotcrm.example>"
    assert msg.get_content_type() == "multipart/alternative"
    assert msg.get_body(("plain",)).get_content().strip() == "hello €"
    assert msg.get_body(("html",)).get_content().strip() == "<p>hello €</p>"


@pytest.mark.parametrize(
    ("exc", "code", "permanent"),
    [
        (smtplib.SMTPRecipientsRefused({"a@x": (550, b"no such user")}), 550, True),
        (smtplib.SMTPRecipientsRefused({"a@x": (450, b"busy")}), 450, False),
        (smtplib.SMTPDataError(554, b"rejected"), 554, True),
        (smtplib.SMTPDataError(451, b"later"), 451, False),
        (smtplib.SMTPServerDisconnected("gone"), None, False),
        (ConnectionRefusedError(111, "refused"), None, False),
    ],
)
def test_smtp_failures_are_classified(exc, code, permanent):
    failure = classify(exc)
    assert (failure.code, failure.permanent) == (code, permanent)


def test_settings_errors_name_the_file_and_setting(tmp_path, monkeypatch):
    path = tmp_path / "s.json"
    path.write_text('{"crashed_send_policy": "maybe"}')
    with pytest.raises(ValueError, match="s.json: crashed_send_policy 'maybe'"):
        load_settings(path)
    path.write_text('{"from": "x"}')
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['from'\]"):
        load_settings(path)
    path.write_text("{}")
    monkeypatch.setenv("HOTCRM_QUOTE_BASE_URL", "https://crm.example/q")
    assert load_settings(path).quote_base_url == "https://crm.example/q"
    assert load_settings().ready_status == "Ready to Send"
    assert EmailSettings().retry_delay(6) is None
