"""Real browser: a page's URL opened first after the server starts shows the same navigation as Home.

Because `pages/` exists, Streamlit starts in its old multipage mode until a session runs app.py's
`st.navigation`; before the fix, a deep link opened first ran the page script directly and the
sidebar listed "app" (the main script's file name) instead of "Home" (see ui/nav.py).

The two 404s in the console on a deep link are Streamlit's, not ours (issue 28's user trial,
checked in Chromium with Streamlit 1.67): opening http://HOST/Results, its frontend first tries
the page's path as the server's base path, fetching
``GET /Results/_stcore/health`` and ``GET /Results/_stcore/host-config`` (404 each, "Failed to
load resource: the server responded with a status of 404" in the console), then the same at
``/_stcore/...`` (200). streamlit/streamlit#7074 ("404 health check when navigating directly to
a subpage", open). No asset, image, st.html or iframe of ours is fetched by a relative path;
the test below asserts that nothing else 404s or fails.
"""

import re

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect

from tests.browser import (
    expect_rerun,
    open_app,
    screenshot,
    serve_app,
    sidebar_nav_labels,
    wait_for_app_idle,
    watch_runs,
)

pytestmark = pytest.mark.browser

NAV = [
    "Home",
    "Architecture",
    "Train",
    "Results",
    "Latent Editor",
    "Inspect",
    "Experiments",
    "Admin",
]


# Streamlit's own probe of a deep link's path as the base path (streamlit/streamlit#7074)
STREAMLIT_PROBES = ("_stcore/health", "_stcore/host-config")


def only_streamlits_probes(problems: list[str], url_path: str) -> None:
    """The console's and the network's problems: the two probes of ``/<url_path>/_stcore/``
    (each a 404 response and a console line without its address), nothing else."""
    not_found = sorted(p.split(" ")[-1].split("/", 3)[-1] for p in problems if p.startswith("HTTP"))
    assert not_found == sorted(f"{url_path}/{probe}" for probe in STREAMLIT_PROBES), problems
    console_404 = [p for p in problems if p.startswith("console:") and "status of 404" in p]
    assert len(console_404) <= len(STREAMLIT_PROBES), problems
    others = [p for p in problems if not p.startswith("HTTP") and p not in console_404]
    assert others == [], others


def heading(page, title):
    return page.get_by_role("heading", name=title, level=1)


def first_widget_change_is_kept(page):
    """The first run (the page script run directly) gives the widgets the ids of later runs, so
    the first change on a deep-linked page is not lost (was its own test, with its own server)."""
    wait_for_app_idle(page, 30_000)  # a click during the page's first runs can be lost
    option = page.get_by_role("option", name="deep", exact=True)
    with expect_rerun(page):
        for _ in range(3):  # a loaded machine may redraw the select under the first click
            page.locator(".st-key-arch_preset").click()
            try:
                option.wait_for(state="visible", timeout=10_000)
                break
            except PlaywrightTimeoutError:
                continue
        option.click()
    expect(page.get_by_role("combobox", name="Start from a preset")).to_have_value("deep")
    with expect_rerun(page):
        page.locator(".st-key-arch_load_preset button").click()
    expect(page.get_by_text("Loaded the deep preset.")).to_be_visible()
    assert sidebar_nav_labels(page) == NAV


@pytest.mark.parametrize(
    ("url_path", "title"), [("Architecture", "Architecture"), ("Results", "Results")]
)
def test_a_deep_link_opened_first_gets_the_home_navigation(page, url_path, title):
    watcher = watch_runs(page)
    with serve_app("app.py") as base_url:  # a fresh server: no session has run app.py yet
        open_app(page, f"{base_url}/{url_path}")
        expect(heading(page, title)).to_be_visible(timeout=60_000)
        deep_labels = sidebar_nav_labels(page)
        screenshot(page, f"deep-link-{url_path}")
        assert watcher.statuses == ["FINISHED_SUCCESSFULLY"], "the page ran more than once"
        wait_for_app_idle(page, 30_000)
        only_streamlits_probes(watcher.problems, url_path)
        assert page.url.endswith("/" + url_path), page.url  # no id in the address bar
        current = page.locator('[data-testid="stSidebarNavLink"][aria-current="page"]')
        expect(current).to_have_text(title)
        if url_path == "Architecture":
            first_widget_change_is_kept(page)

        home = page.context.new_page()
        open_app(home, base_url)
        expect(heading(home, "CAE Studio")).to_be_visible(timeout=60_000)
        home_labels = sidebar_nav_labels(home)
        home.close()
        assert home_labels == NAV
        assert deep_labels == home_labels

        # The sidebar's Home link leads to the home page, with the same navigation.
        page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Home").click()
        expect(heading(page, "CAE Studio")).to_be_visible(timeout=60_000)
        assert sidebar_nav_labels(page) == NAV
        expect(page).to_have_url(re.compile(r"/$"))
