"""The /ui page in a real browser (Playwright driving Debian's Chromium), JavaScript off."""
import shutil
import time

import pytest
import requests

from bench.harness import LiveServer
from sentiment_clf.feedback.store import Storage

from conftest import ARTIFACTS, need

TEXT = "that movie was boring and far too long"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture()
def browser():
    chromium = shutil.which("chromium")
    need(chromium, "Debian's chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "playwright is not installed (requirements-test.txt)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def positive(url):
    return requests.get(f"{url}/", params={"query": TEXT}, timeout=10).json()["probabilities"]["Positive"]


def test_review_predict_answer_incorrect_on_a_phone(browser, tmp_path, sqlite_url):
    server = LiveServer(tmp_path / "server.log", workers=2, env={"DATABASE_URL": sqlite_url})
    try:
        server.wait_ready()
        before = positive(server.url)
        # A phone-sized screen, and no JavaScript: the page must work with plain forms.
        context = browser.new_context(viewport={"width": 390, "height": 844}, java_script_enabled=False)
        page = context.new_page()
        page.goto(f"{server.url}/ui")
        page.fill("#review", "ok")
        page.click("button:has-text('Classify')")
        assert "at least 3 characters" in page.locator("[role=alert]").inner_text()

        page.fill("#review", TEXT)
        page.click("button:has-text('Classify')")
        assert page.locator("#result-sentiment .label").inner_text() == "Negative"
        assert page.locator("#result-ratings .label").is_visible()
        assert "% probability" in page.locator("#result-sentiment .probability").inner_text()
        # Nothing is wider than the phone's screen.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.screenshot(path=str(ARTIFACTS / "ui-prediction-phone.png"), full_page=True)

        page.click("#result-sentiment button:has-text('Incorrect')")
        page.wait_for_selector("#thanks")
        assert "Thank you!" in page.inner_text("#thanks")
        page.screenshot(path=str(ARTIFACTS / "ui-thank-you-phone.png"), full_page=True)
        context.close()

        [row] = Storage(sqlite_url).feedback_after(0)
        assert (row.model, row.text, row.label, row.prediction) == ("sentiment", TEXT, "Positive", "Negative")
        time.sleep(0.6)  # other workers sync within 0.5 s
        assert all(positive(server.url) > before for _ in range(6))
    finally:
        server.stop()
