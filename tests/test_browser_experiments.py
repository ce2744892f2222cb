"""Real browser: a 2x1 experiment of one epoch each on the bundled sample, from the Experiments
page to the chart (the winner's sentence, the baselines as labelled lines), then a point of the
chart, a row of the table (one click each) and two ticked rows (side by side) opened on Results.

Screenshots are left in test-artifacts/ (look at them).
"""

import re

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect

from tests.browser import saved_runs, screenshot, serve_app, wait_for_app_idle

pytestmark = pytest.mark.browser


def open_page(page, title):
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title).click()
    expect(page.get_by_role("heading", name=title, level=1)).to_be_visible(timeout=60_000)
    wait_for_app_idle(page, 60_000)


def choose(page, key, option):
    """Pick ``option`` (a regex) in the select box ``key``."""
    wait_for_app_idle(page, 30_000)
    choice = page.get_by_role("option", name=re.compile(option))
    for _ in range(3):  # the first click can land while the page is still re-rendering
        page.locator(f'.st-key-{key} [role="combobox"]').click()
        try:
            choice.first.wait_for(timeout=5_000)
            break
        except PlaywrightTimeoutError:
            page.keyboard.press("Escape")
    choice.first.click()
    wait_for_app_idle(page, 30_000)


def type_into(page, key, text):
    field = page.locator(f".st-key-{key} input")
    field.fill(text)
    field.press("Enter")
    wait_for_app_idle(page, 30_000)


def shown_on_results(page) -> str:
    """The text of Results' run selection (the runs it shows), once Results is drawn."""
    expect(page.get_by_role("heading", name="Results", level=1)).to_be_visible(timeout=60_000)
    wait_for_app_idle(page, 60_000)
    return page.locator(".st-key-results_runs").inner_text()


def table_cell(page, row, x):
    """Click the comparison table at ``x`` pixels from its left, in data row ``row`` (rows are
    ~35 px under a ~37 px header; the first ~35 px are the rows' tick boxes)."""
    table = page.locator('[class*="st-key-experiments_table_"] [data-testid="stDataFrame"]')
    table.scroll_into_view_if_needed()
    page.wait_for_timeout(300)  # Streamlit scrolls its own container smoothly
    table.click(position={"x": x, "y": 37 + 35 * row + 17})


def test_a_two_by_one_experiment_lands_on_the_chart(page, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    with serve_app("app.py", env={"CAE_MODELS_DIR": str(models)}) as base_url:
        page.goto(base_url)
        wait_for_app_idle(page, 60_000)
        open_page(page, "Experiments")
        type_into(page, "experiments_epochs", "1")
        choose(page, "experiments_field_0", r"^encoder\.0\.filters")
        type_into(page, "experiments_values_0", "4, 8")
        choose(page, "experiments_field_1", r"^kernel: ")
        type_into(page, "experiments_values_1", "3")
        type_into(page, "experiments_name", "browser sweep")
        expect(page.get_by_text(re.compile(r"2 run\(s\)"))).to_be_visible()
        expect(page.get_by_text(re.compile(r"The estimate is based on"))).to_be_visible()
        screenshot(page, "page-experiments-plan")
        page.locator(".st-key-experiments_start button").click()

        progress = page.locator('[data-testid="stProgress"]').first
        expect(progress).to_be_visible(timeout=60_000)
        screenshot(page, "page-experiments-running")
        expect(page.get_by_text(re.compile(r"2 of 2 runs done"))).to_be_visible(timeout=300_000)
        expect(page.get_by_role("heading", name="Comparison")).to_be_visible(timeout=60_000)
        chart = page.locator('[data-testid="stPlotlyChart"]').first
        expect(chart).to_be_visible(timeout=120_000)
        # both runs are points of the chart, with the PCA and mean-image baselines drawn as
        # lines at their PSNR (labelled on the chart), and one sentence naming the best run
        points = chart.locator(".scatterlayer .trace").nth(1).locator(".point")
        expect(points).to_have_count(2, timeout=60_000)
        expect(chart.get_by_text(re.compile(r"mean image: \d+\.\d\d dB"))).to_be_visible()
        expect(chart.get_by_text(re.compile(r"PCA, 49 values: \d+\.\d\d dB"))).to_be_visible()
        winner = re.compile(r"filters=\d+, kernel=3: best PSNR|Best: encoder|No run learned: the")
        expect(page.get_by_text(winner)).to_be_visible()
        wait_for_app_idle(page, 60_000)
        screenshot(page, "page-experiments-chart")

        runs = [run for run in saved_runs(models) if run.ok]  # in the browser's workspace
        assert len(runs) == 2
        assert {run.name for run in runs} == {
            "browser sweep · encoder.0.filters=4, kernel=3",
            "browser sweep · encoder.0.filters=8, kernel=3",
        }

        # one click on a point opens that run on Results
        points.first.click(force=True)
        expect(page.get_by_role("heading", name="Results", level=1)).to_be_visible(timeout=60_000)
        expect(
            page.get_by_text(re.compile(r"browser sweep · encoder\.0\.filters=")).first
        ).to_be_visible(timeout=60_000)
        wait_for_app_idle(page, 60_000)
        screenshot(page, "page-experiments-opened-on-results")

        # one click on a row of the table opens that run on Results (the second: filters=8)
        open_page(page, "Experiments")
        expect(page.get_by_role("heading", name="Comparison")).to_be_visible(timeout=60_000)
        wait_for_app_idle(page, 60_000)
        table_cell(page, row=1, x=200)
        shown = shown_on_results(page)
        assert "filters=8" in shown and "filters=4" not in shown, shown
        assert "run=" not in page.url  # the link was followed once and left the URL
        sidebar = page.locator('[data-testid="stSidebar"]').inner_text()
        assert "filters=8" in sidebar, sidebar  # the sidebar names the run shown, not the last
        screenshot(page, "page-experiments-row-opened-on-results")

        # ticking two rows opens both side by side
        open_page(page, "Experiments")
        expect(page.get_by_role("heading", name="Comparison")).to_be_visible(timeout=60_000)
        wait_for_app_idle(page, 60_000)
        for row in (0, 1):
            table_cell(page, row=row, x=17)
            wait_for_app_idle(page, 30_000)
        button = page.get_by_role("button", name=re.compile("Open these 2 side by side"))
        expect(button).to_be_visible(timeout=30_000)
        button.click()
        shown = shown_on_results(page)
        assert "filters=8" in shown and "filters=4" in shown, shown
        screenshot(page, "page-experiments-two-opened-on-results")
