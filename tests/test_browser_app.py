"""Real browser: open the app, train one short epoch from the Train page, find the run on Results.

Screenshots of every page are left in test-artifacts/ (look at them).
"""

import re

import pytest
from playwright.sync_api import expect

from tests.browser import saved_runs, screenshot, serve_app, wait_for_app_idle

pytestmark = pytest.mark.browser


def open_page(page, base_url, title):
    """Click a page in the sidebar navigation and wait for it to settle."""
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title).click()
    expect(page.get_by_role("heading", name=title, level=1)).to_be_visible(timeout=60_000)
    wait_for_app_idle(page, 60_000)


def test_train_one_epoch_and_see_it_on_results(page, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    with serve_app("app.py", env={"CAE_MODELS_DIR": str(models)}) as base_url:
        page.goto(base_url)
        wait_for_app_idle(page, 60_000)
        expect(page.get_by_role("heading", name="CAE Studio", level=1)).to_be_visible()
        screenshot(page, "page-home")

        open_page(page, base_url, "Architecture")
        expect(page.get_by_text("this design can be trained")).to_be_visible()
        screenshot(page, "page-architecture")

        open_page(page, base_url, "Train")
        epochs = page.get_by_label("Epochs")
        epochs.fill("1")
        epochs.press("Enter")
        wait_for_app_idle(page, 30_000)
        page.get_by_label("Run name").fill("browser run")
        page.get_by_label("Run name").press("Enter")
        wait_for_app_idle(page, 30_000)
        page.locator(".st-key-train_start button").click()
        # the live fragment shows the running job, then the bar reaches the end
        expect(page.locator('[data-testid="stProgress"]')).to_be_visible(timeout=60_000)
        screenshot(page, "page-train-running")
        progress = page.locator('[data-testid="stProgress"]')
        expect(progress.get_by_text(re.compile(r"Finished 1 epoch"))).to_be_visible(timeout=180_000)
        expect(page.get_by_text(re.compile(r"Saved as .*active run"))).to_be_visible(timeout=60_000)
        bar = page.locator('[data-testid="stProgress"] [role="progressbar"]')
        assert bar.get_attribute("aria-valuenow") == "100"
        screenshot(page, "page-train-finished")

        runs = saved_runs(models)  # in the browser's own workspace
        assert len(runs) == 1 and runs[0].ok and runs[0].name == "browser run"

        open_page(page, base_url, "Results")
        expect(page.get_by_text(runs[0].run_id).first).to_be_visible(timeout=120_000)
        expect(page.get_by_role("heading", name="Originals and reconstructions")).to_be_visible(
            timeout=120_000
        )
        wait_for_app_idle(page, 60_000)
        screenshot(page, "page-results")
