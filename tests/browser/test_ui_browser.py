"""The HotCRM pages in a real browser: headless Chromium from the system packages (installed by
``scripts/ensure-system-packages.sh``), driven by Playwright. Logs in to the Airflow UI, finds
the HotCRM entry, opens each page, requeues a dead letter and sees it processed, opens an
import report. Screenshots go to ``test-artefacts/browser/``."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from hotcrm.webhooks.inbox import status_counts
from tests.support.ui_data import DEAD_EVENT

CHROMIUM = os.environ.get("HOTCRM_CHROMIUM", "/usr/bin/chromium")
ARTEFACTS = Path(__file__).resolve().parents[2] / "test-artefacts" / "browser"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# CI runs as root and installs chromium: there the tests must run, never skip.
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() and os.geteuid() != 0,
        reason=f"no {CHROMIUM}: install Debian's chromium (scripts/ensure-system-packages.sh does, as root)",
    ),
]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/ensure-system-packages.sh` (make test does)")
    from playwright.sync_api import sync_playwright

    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        # The system's chromium, never a downloaded one (`playwright install` is not used).
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser
        browser.close()


def _shot(page, name: str) -> None:
    page.screenshot(path=str(ARTEFACTS / f"{name}.png"), full_page=False)


def test_log_in_open_every_page_requeue_and_process_a_dead_letter_open_a_report(airflow_ui, browser):
    from playwright.sync_api import expect

    server, ids, db = airflow_ui
    base = server.base_url
    context = browser.new_context(viewport={"width": 1280, "height": 760})
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        # Straight to a HotCRM page: the Airflow login comes first, then the page.
        page.goto(f"{base}/hotcrm/ui/imports")
        expect(page).to_have_url(re.compile(r"/auth/login"))
        page.locator("input[name=username]").fill("admin")
        page.locator("input[name=password]").fill(server.passwords["admin"])
        _shot(page, "00-airflow-login")
        page.locator("button[type=submit]").click()
        expect(page).to_have_url(re.compile(r"/hotcrm/ui/imports$|/$"), timeout=60_000)
        assert any(c["name"] == "_token" for c in context.cookies())

        # The HotCRM entry of the Airflow UI's navigation frames the pages.
        page.goto(f"{base}/")
        nav = page.get_by_role("link", name=re.compile("HotCRM")).or_(page.get_by_role("button", name="HotCRM"))
        expect(nav.first).to_be_visible(timeout=60_000)
        page.goto(f"{base}/plugin/hotcrm")
        framed = page.frame_locator("iframe")
        expect(framed.locator("h1")).to_have_text("Lead imports", timeout=60_000)
        _shot(page, "01-airflow-nav-hotcrm")

        for name, heading in (
            ("imports", "Lead imports"),
            ("webhooks", "Webhook inbox"),
            ("deliveries", "Outbound deliveries"),
            ("email", "Email outbox"),
            ("salesforce", "Salesforce sync"),
        ):
            page.goto(f"{base}/hotcrm/ui/{name}")
            expect(page.locator("h1")).to_contain_text(heading)
            _shot(page, f"page-{name}")
        expect(page.locator("#failed-records")).to_contain_text("REQUIRED_FIELD_MISSING")

        # Requeue the dead letter, then process it: the page shows it done.
        page.goto(f"{base}/hotcrm/ui/webhooks")
        row = page.locator("#dead-letters tr", has_text=DEAD_EVENT)
        expect(row).to_contain_text("no Payment with TransactionId")
        row.get_by_role("button", name="Requeue").click()
        expect(page.locator(".flash.ok")).to_contain_text("requeued 1 dead letter")
        page.locator("#process-now").click()
        expect(page.locator(".flash.ok")).to_contain_text("processed")
        expect(page.locator("#dead-letters")).to_contain_text("no dead letters")
        expect(page.locator('#inbox-counts td[data-status="done"]')).to_have_text("1")
        _shot(page, "webhooks-after-requeue")
        assert status_counts(db)["done"] == 1

        # An import: the refused rows, then its HTML report in a new tab.
        page.goto(f"{base}/hotcrm/ui/imports")
        page.get_by_role("link", name=ids["file_name"]).click()
        expect(page.locator("#issues")).to_contain_text("line 6 has 4 fields")
        _shot(page, "import-detail")
        with context.expect_page() as new_tab:
            page.locator("#report-link").click()
        report = new_tab.value
        report.wait_for_load_state()
        expect(report.locator("body")).to_contain_text("Quality checks")
        _shot(report, "import-report")

        # Swagger UI renders from the app's own files.
        page.goto(f"{base}/hotcrm/api/v1/docs")
        expect(page.locator(".swagger-ui .title")).to_contain_text("HotCRM integration API", timeout=30_000)
        _shot(page, "api-docs")
    except Exception:
        _shot(page, "failure")
        shutil.copy(server.log_path, ARTEFACTS / "api-server.log")
        raise
    finally:
        context.close()
