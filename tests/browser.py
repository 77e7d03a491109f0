"""Headless Chromium for the tests that check what a person sees: Debian's chromium, driven by Playwright.

Playwright downloads no browser here: it drives /usr/bin/chromium (`make setup` installs it), started with
the flags that keep it from reaching for the network this machine doesn't have.
"""

import contextlib
import shutil

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def chromium_page():
    """A fresh page in headless Chromium; the test fails (rather than skips) if Chromium is missing."""
    if shutil.which("chromium") is None:
        pytest.fail("Debian's chromium is not installed: `make setup` installs it (as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.js_errors = errors  # uncaught JavaScript errors, for the tests to assert on
            yield page
        finally:
            browser.close()


def images_rendered(page) -> list[tuple[str, int, int]]:
    """Every <img> on the page with its rendered natural size: (alt, width, height); a broken image has width 0."""
    return page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.alt, i.naturalWidth, i.naturalHeight])")
