"""Shared fixtures. Browser fixtures: `browser` (session) and `page` (per test).

Tiers (`bash scripts/test.sh --quick` leaves out the marked ones): a test is marked `browser`
when its file is tests/test_browser_*.py or it uses the `browser` or `page` fixture, and
`multiworker` when its file is in MULTIWORKER_FILES, here, so a new test is marked without
remembering to; `slow` is marked by hand on tests that train long or many models.
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path

import pytest

from tests.browser import CHROMIUM_PATH, launch_chromium, screenshot, watch_runs

BROWSER_FILES = "test_browser_*.py"
BROWSER_FIXTURES = {"browser", "page"}
MULTIWORKER_FILES = {"test_distributed.py"}  # several local tf.distribute worker processes


def pytest_collection_modifyitems(config, items):
    """Mark browser and multi-worker tests by their file and fixtures (see the module's docstring)."""
    for item in items:
        name = Path(str(item.fspath)).name
        if fnmatch.fnmatch(name, BROWSER_FILES) or BROWSER_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.browser)
        if name in MULTIWORKER_FILES:
            item.add_marker(pytest.mark.multiworker)


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
