"""The Latent Editor in a real Chromium: paint a stroke on the latent grid, see it decoded."""

from __future__ import annotations

import re

import pytest

from tests.browser import (
    canvas_locator,
    draw_stroke,
    expect_rerun,
    screenshot,
    serve_app,
    wait_for_app_idle,
)
from tests.runs import make_trained_run

pytestmark = pytest.mark.browser

INFO = ".st-key-le_decode_info"
DECODED_IMG = ".st-key-le_decoded img"


@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("le-browser-models")
    make_trained_run(root, epochs=3, limit=2000)  # enough to decode digit-like shapes
    return root


def decode_info(page) -> str:
    return page.locator(INFO).inner_text()


def wait_for_info_change(page, before: str, timeout_ms: float = 15_000) -> str:
    page.wait_for_function(
        "([sel, old]) => { const el = document.querySelector(sel); "
        "return !!el && el.innerText !== old; }",
        arg=[INFO, before],
        timeout=timeout_ms,
        polling=20,
    )
    return decode_info(page)


def test_a_stroke_changes_the_cells_under_it_and_the_decoded_image(page, models_root):
    with serve_app("app.py", env={"CAE_MODELS_DIR": str(models_root)}) as url:
        page.goto(f"{url}/Latent_Editor")
        wait_for_app_idle(page, 90_000)
        page.locator(INFO).wait_for(timeout=90_000)
        wait_for_app_idle(page, 30_000, quiet_ms=500)
        canvas = canvas_locator(page)
        box = canvas.bounding_box()
        assert box is not None and round(box["width"]) == 280 and round(box["height"]) == 280
        screenshot(page, "latent_editor_before")
        info_before = decode_info(page)
        src_before = page.locator(DECODED_IMG).get_attribute("src")

        # row 3 (y 120..160), across the middles of columns 1..5 (each 40 px wide)
        draw_stroke(page, [(60, 140), (140, 140), (220, 140)])
        info_after = wait_for_info_change(page, info_before)
        wait_for_app_idle(page, 30_000, quiet_ms=300)
        info_after = decode_info(page)
        screenshot(page, "latent_editor_after_stroke")

        match = re.search(r"changed cells: (.*)", info_after)
        assert match, info_after
        cells = re.findall(r"\((\d+),(\d+)\)", match.group(1))
        assert [(int(r), int(c)) for r, c in cells] == [(3, c) for c in range(1, 6)], info_after
        assert "set 5 cell(s)" in info_after
        assert page.locator(DECODED_IMG).get_attribute("src") != src_before
        digest_before = re.search(r"image ([0-9a-f]{8})", info_before).group(1)
        digest_after = re.search(r"image ([0-9a-f]{8})", info_after).group(1)
        assert digest_before != digest_after

        # the canvas is fresh for the next stroke, and undo brings the code back
        with expect_rerun(page):
            page.locator(".st-key-le_undo button").click()
        info_undone = decode_info(page)
        assert f"image {digest_before}" in info_undone, info_undone
        screenshot(page, "latent_editor_after_undo")
        page.locator(".st-key-le_interp_t").scroll_into_view_if_needed()
        screenshot(page, "latent_editor_lower")  # Streamlit scrolls inside its own container
