"""Shared fixtures. Browser fixtures: `browser` (session) and `page` (per test)."""

from __future__ import annotations

import os
import re

import pytest

from tests.browser import CHROMIUM_PATH, launch_chromium, screenshot, watch_runs


@pytest.fixture
def models(tmp_path, monkeypatch):
    """An empty runs folder, made the app's (CAE_MODELS_DIR) for this test."""
    root = tmp_path / "models"
    root.mkdir()
    monkeypatch.setenv("CAE_MODELS_DIR", str(root))
    return root


@pytest.fixture(scope="session")
def browser():
    """Debian's headless Chromium, driven by sync Playwright (never `playwright install`)."""
    if not os.path.exists(CHROMIUM_PATH):
        pytest.skip(f"{CHROMIUM_PATH} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, launch_chromium(playwright) as browser:
        yield browser


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Record each phase's report on the test item, for the `page` fixture's failure shot."""
    report = yield
    setattr(item, f"_report_{report.when}", report)
    return report


@pytest.fixture
def page(browser, request):
    """A fresh context and page (1400x1000), its script runs counted (tests.browser.watch_runs).

    A failing test leaves test-artifacts/FAILED-<test name>.png.
    """
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    watch_runs(page)
    yield page
    report = getattr(request.node, "_report_call", None)
    if report is not None and report.failed:
        try:
            screenshot(page, "FAILED-" + re.sub(r"[^\w.-]+", "_", request.node.name))
        except Exception as exc:  # the page may be gone; the failure itself matters more
            print(f"failure screenshot not taken: {exc}")
    context.close()
