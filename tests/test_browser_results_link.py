"""Real browser: a link to Results followed while Results is open (the lesson's "Compare the two
runs on Results") shows the linked runs in the multiselect, and keeps them after the next click.

Before the fix the page dropped the multiselect's state instead of setting it: the widget already
in the browser went on showing the classic run alone, and the next click on the page sent that
back, so the wide run vanished from the comparison.
"""

import shutil

import pytest
from playwright.sync_api import expect

from tests.browser import REPO_ROOT, expect_rerun, open_app, screenshot, serve_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHIPPED = ("classic-mnist-sample-default", "wide-mnist-sample")


def test_the_lessons_link_on_results_keeps_both_runs(page, tmp_path):
    models = tmp_path / "models"
    for run_id in SHIPPED:
        shutil.copytree(REPO_ROOT / "models" / run_id, models / run_id)
    with serve_app("app.py", env={"CAE_MODELS_DIR": str(models)}) as base_url:
        open_app(page, f"{base_url}/Results")
        chosen = page.locator(".st-key-results_runs")
        expect(chosen).to_contain_text("classic-mnist-sample-default", timeout=60_000)
        expect(chosen).not_to_contain_text("wide-mnist-sample")
        with expect_rerun(page, timeout_ms=120_000):
            page.get_by_role("link", name="Compare the two runs on Results").click()
        expect(chosen).to_contain_text("wide-mnist-sample", timeout=60_000)
        expect(chosen).to_contain_text("classic-mnist-sample-default")
        with expect_rerun(page, timeout_ms=120_000):  # any later click on the page
            page.get_by_text("by index", exact=True).click()
        expect(chosen).to_contain_text("wide-mnist-sample")
        downloads = page.get_by_role("paragraph").filter(
            has_text="wide (beats PCA) · wide-mnist-sample"
        )
        expect(downloads).to_be_visible(timeout=60_000)  # the page still compares both
        expect(page.get_by_text("created with a default value")).to_have_count(0)
        screenshot(page, "results-lesson-link")
