"""The Latent Editor in a real Chromium: paint a stroke on the latent grid, see it decoded."""

from __future__ import annotations

import re
import time

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
# The band around the 7x7 grid of 40 px cells where the canvas catches strokes (ui.latent_view's
# CANVAS_MARGIN: importing that module outside a Streamlit run fails, the canvas component
# registers its assets at import). The first test measures it on the page.
CANVAS_MARGIN = 24
DECODED_IMG = ".st-key-le_decoded img"


@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("le-browser-models")
    make_trained_run(root, epochs=3, limit=2000)  # enough to decode digit-like shapes
    return root


@pytest.fixture(scope="module")
def app_url(models_root):
    with serve_app("app.py", env={"CAE_MODELS_DIR": str(models_root)}) as url:
        yield url


def open_editor(page, url: str) -> None:
    page.goto(f"{url}/Latent_Editor")
    wait_for_app_idle(page, 90_000)
    page.locator(INFO).wait_for(timeout=90_000)
    wait_for_app_idle(page, 30_000, quiet_ms=500)


def changed_cells(info: str) -> list[tuple[int, int]]:
    match = re.search(r"changed cells[^:]*: (.*)", info)
    assert match, info
    return [(int(r), int(c)) for r, c in re.findall(r"\((\d+),(\d+)\)", match.group(1))]


def decoded_pixels(page) -> bytes:
    return page.locator(DECODED_IMG).screenshot()


def decoded_pixels_once(page, wanted, timeout_s: float = 10.0) -> bytes:
    """The decoded image's pixels once ``wanted(pixels)`` holds, or the last seen after
    ``timeout_s``: the run that changed it has ended, but the browser still loads the new
    picture from the server (a busy full suite once compared the old one after an undo)."""
    deadline = time.monotonic() + timeout_s
    while True:
        pixels = decoded_pixels(page)
        if wanted(pixels) or time.monotonic() > deadline:
            return pixels
        page.wait_for_timeout(100)


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


def test_a_stroke_changes_the_cells_under_it_and_the_decoded_image(page, app_url):
    open_editor(page, app_url)
    canvas = canvas_locator(page)
    box = canvas.bounding_box()
    side = 280 + 2 * CANVAS_MARGIN  # the 7x7 grid of 40 px cells and the band around it
    assert box is not None and round(box["width"]) == side and round(box["height"]) == side
    assert CANVAS_MARGIN >= 20  # issue 28: at least 20 px around the grid catch a stroke
    screenshot(page, "latent_editor_before")
    info_before = decode_info(page)
    pixels_before = decoded_pixels(page)

    # row 3 (y 120..160), across the middles of columns 1..5 (each 40 px wide)
    draw_stroke(page, on_grid([(60, 140), (140, 140), (220, 140)]))
    wait_for_info_change(page, info_before)
    wait_for_app_idle(page, 30_000, quiet_ms=300)
    info_after = decode_info(page)
    screenshot(page, "latent_editor_after_stroke")

    assert changed_cells(info_after) == [(3, c) for c in range(1, 6)], info_after
    assert "set 5 cell(s)" in info_after
    assert decoded_pixels_once(page, lambda pixels: pixels != pixels_before) != pixels_before
    assert not re.search(r"image [0-9a-f]{8}", info_after), info_after  # no bare hash shown

    # the canvas is fresh for the next stroke, and undo brings the code back
    with expect_rerun(page):
        page.locator(".st-key-le_undo button").click()
    assert decoded_pixels_once(page, lambda pixels: pixels == pixels_before) == pixels_before
    screenshot(page, "latent_editor_after_undo")
    page.locator(".st-key-le_interp_t").scroll_into_view_if_needed()
    screenshot(page, "latent_editor_lower")  # Streamlit scrolls inside its own container


def on_grid(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Grid pixels (from the grid's top-left corner) as canvas pixels: the canvas reaches
    CANVAS_MARGIN past every edge of the grid."""
    return [(x + CANVAS_MARGIN, y + CANVAS_MARGIN) for x, y in points]


# (stroke through grid pixels, the cells it must change) on the 7x7 grid of 40 px cells
EDGE_STROKES = [
    # issue 13: pressed 140 px right and 10 px down from the top-left corner, dragged down
    ([(140, 10), (140, 270)], [(r, 3) for r in range(7)]),
    ([(1, 1), (278, 1)], [(0, c) for c in range(7)]),  # along the top edge
    ([(1, 278), (278, 278)], [(6, c) for c in range(7)]),  # along the bottom edge
    ([(1, 1), (1, 278)], [(r, 0) for r in range(7)]),  # along the left edge
    ([(278, 1), (278, 278)], [(r, 6) for r in range(7)]),  # along the right edge
    ([(279, 0)], [(0, 6)]),  # a click in the top-right corner
    ([(0, 279)], [(6, 0)]),  # a click in the bottom-left corner
]


def test_every_edge_and_corner_of_the_grid_takes_a_stroke(page, app_url):
    """Issue 13: the canvas component's floating toolbar caught strokes pressed near the grid's
    top (nothing drawn, no message), and a stroke along an edge could cover too little."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    open_editor(page, app_url)
    # the component's own toolbar (Undo, Reset... duplicating the page's) is not there at all
    canvas = canvas_locator(page)
    page.mouse.move(0, 0)
    for points, _ in EDGE_STROKES:  # nothing lies over the grid where a stroke starts
        x, y = on_grid(points)[0]
        try:  # a trial hover checks that the canvas itself would receive the press
            canvas.hover(position={"x": x, "y": y}, trial=True, timeout=3_000)
        except PlaywrightTimeoutError as exc:
            raise AssertionError(f"something covers the grid at {(x, y)}: {exc}") from None
    page.wait_for_timeout(300)  # past the component toolbar's 0.1 s fade-in
    assert page.get_by_role("button", name="Reset canvas & history", exact=True).count() == 0
    assert page.get_by_role("button", name="Undo", exact=True).count() == 1  # the page's own
    for points, cells in EDGE_STROKES:
        draw_stroke(page, on_grid(points))
        page.wait_for_function(  # the stroke's own rerun, not the fresh canvas's first one
            "(sel) => (document.querySelector(sel)?.innerText || '').includes('last edit: set')",
            arg=INFO,
            timeout=15_000,
            polling=20,
        )
        wait_for_app_idle(page, 30_000, quiet_ms=200)
        info = decode_info(page)
        assert changed_cells(info) == sorted(cells), (points, info)
        with expect_rerun(page):  # back to the source code for the next stroke
            page.locator(".st-key-le_undo button").click()
        # the fresh canvas reports its background's fit once: let that rerun pass
        wait_for_app_idle(page, 30_000, quiet_ms=400)
    screenshot(page, "latent_editor_edges")


# (stroke through grid pixels, starting in the band around the grid, the cells it must change)
BAND_STROKES = [
    ([(140, -20), (140, 270)], [(r, 3) for r in range(7)]),  # from just above the top edge
    ([(-20, -20), (20, 20), (260, 20)], [(0, c) for c in range(7)]),  # from outside a corner
    ([(300, 300), (260, 260), (260, 20)], [(r, 6) for r in range(7)]),  # from the other corner
    ([(-20, 140), (300, 140)], [(3, c) for c in range(7)]),  # through, band to band
]


def test_a_stroke_that_starts_outside_the_grid_paints_the_cells_it_crosses(page, app_url):
    """Issue 28: the canvas only sees events on itself, so a stroke pressed just above the grid
    (or outside a corner) and dragged in was dropped. The canvas now reaches CANVAS_MARGIN past
    the grid; a stroke from there paints the cells it crosses, one in the band alone none."""
    open_editor(page, app_url)
    side = 280 + 2 * CANVAS_MARGIN
    for points, cells in BAND_STROKES:
        assert all(-CANVAS_MARGIN < v < 280 + CANVAS_MARGIN for v in points[0]), points
        assert not all(0 <= v < 280 for v in points[0]), points  # it starts off the grid
        draw_stroke(page, on_grid(points))
        page.wait_for_function(
            "(sel) => (document.querySelector(sel)?.innerText || '').includes('last edit: set')",
            arg=INFO,
            timeout=15_000,
            polling=20,
        )
        wait_for_app_idle(page, 30_000, quiet_ms=200)
        info = decode_info(page)
        assert changed_cells(info) == sorted(cells), (points, info)
        with expect_rerun(page):
            page.locator(".st-key-le_undo button").click()
        wait_for_app_idle(page, 30_000, quiet_ms=400)
    before = decode_info(page)
    with expect_rerun(page):  # along the band above the grid and down its left side: no cell
        draw_stroke(page, [(4, 4), (side - 4, 4), (side - 4, 10), (4, 10), (4, side - 4)])
    wait_for_app_idle(page, 30_000, quiet_ms=400)
    after = decode_info(page)
    # one more decode, nothing else: the same code, undo list and last edit
    assert after.split("·", 1)[1] == before.split("·", 1)[1], (before, after)
    screenshot(page, "latent_editor_band_strokes")


def test_a_typed_value_shows_its_changed_cell(page, app_url):
    """Issue 13: after a typed value changed a cell the status line said "changed cells: none"
    (the table sends its edits again when redrawn with the new values; applying them twice
    changed nothing and overwrote the status)."""
    open_editor(page, app_url)
    table = page.locator('[class*="st-key-le_table_"] [data-testid="stDataFrame"]').first
    table.scroll_into_view_if_needed()
    page.wait_for_timeout(300)  # Streamlit scrolls its own container smoothly
    box = table.bounding_box()
    assert box is not None
    # 7 columns of equal width under a ~37 px header, rows ~35 px: row 2, column 3
    table.click(position={"x": box["width"] * 3.5 / 7, "y": 37 + 35 * 2 + 17})
    page.wait_for_timeout(300)
    page.keyboard.type("9")  # typing on a selected cell starts editing it
    page.wait_for_timeout(300)
    page.keyboard.press("Enter")
    page.wait_for_function(
        "(sel) => (document.querySelector(sel)?.innerText || '').includes('last edit: typed')",
        arg=INFO,
        timeout=15_000,
        polling=20,
    )
    wait_for_app_idle(page, 30_000, quiet_ms=500)  # the table's second send, if any
    info = decode_info(page)
    assert changed_cells(info) == [(2, 3)], info
    assert "typed 1 value(s)" in info, info
