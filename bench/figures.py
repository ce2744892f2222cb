"""An image grid: ``cae.plots.image_grid`` (one picture in one image trace) against the grid as
an axis pair and an image trace per cell (how image_grid drew it until 2026-11-30; here built
with plotly's ``make_subplots``, the same figure image_grid wrote out directly then).

The Results, Train and denoising views send their grids again on every rerun of the page (each
widget change), and the browser redraws every chart it is sent, changed or not. Per grid size
(rows x images per row, 28x28 grey images), in this one process, medians of ``--repeats``:
building the figure in Python; drawing it in Debian's Chromium (``Plotly.newPlot`` with the
plotly.js that ships with the plotly package, until two frames are painted); and whether the
two show the same pixels. ``--results REF`` also serves this tree's app and a git ref's, opens
Results on the shipped default run in each and changes the seed of the test images 6 times:
Chromium's CPU per rerun (all its processes), medians. No asserts.

    .venv/bin/python bench/figures.py [--repeats 15] [--results e2aa6e3]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from cae.plots import _as_rgb, grid_gaps, image_grid, plain_html  # noqa: E402

SIZES = ((2, 8), (3, 10), (5, 16))  # Train's preview, Results of two runs, a five-run comparison
SPACING = (0.01, 0.04)  # the per-cell grid's gaps, as fractions of the figure

DRAW_JS = """async (spec) => {
  const figure = JSON.parse(spec);
  const target = document.getElementById("chart");
  Plotly.purge(target);
  const started = performance.now();
  await Plotly.newPlot(target, figure.data, figure.layout);
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  return performance.now() - started;
}"""


def cells_grid(rows: list[np.ndarray], row_titles: list[str]):
    """The reference: make_subplots, one image trace per cell on its own axes."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    count = max(len(images) for images in rows)
    fig = make_subplots(
        rows=len(rows),
        cols=count,
        horizontal_spacing=SPACING[0],
        vertical_spacing=SPACING[1],
    )
    for r, images in enumerate(rows, start=1):
        for c, image in enumerate(images, start=1):
            pixels = (_as_rgb(image, None) * 255).round().astype(np.uint8)
            fig.add_trace(go.Image(z=pixels, hoverinfo="skip"), row=r, col=c)
        fig.update_yaxes(title_text=plain_html(row_titles[r - 1]), row=r, col=1)
    fig.update_xaxes(visible=False, showticklabels=False)
    fig.update_yaxes(showticklabels=False, ticks="", showgrid=False, zeroline=False)
    fig.update_layout(
        height=max(120, int(900 / max(count, 1)) + 10) * len(rows),
        margin={"l": 40, "r": 5, "t": 5, "b": 5},
        plot_bgcolor="white",
    )
    return fig


def same_pixels(picture_figure, cells_figure, rows: list[np.ndarray]) -> bool:
    """Whether every cell of the one picture holds the pixels of the reference's trace."""
    from PIL import Image

    source = picture_figure.data[0].source.split(",", 1)[1]
    picture = np.asarray(Image.open(io.BytesIO(base64.b64decode(source))))
    traces = iter(cells_figure.data)
    height, width = rows[0].shape[1:3]
    gap, row_gap = grid_gaps(height, width)
    for r, images in enumerate(rows):
        for c in range(len(images)):
            top, left = r * (height + row_gap), c * (width + gap)
            cell = picture[top : top + height, left : left + width]
            if not np.array_equal(cell, np.asarray(next(traces).z)):
                return False
    return True


def draw_ms(page, figure, repeats: int) -> float:
    """The median milliseconds Chromium takes to draw ``figure`` (the first 2 draws dropped)."""
    spec = figure.to_json()
    times = [page.evaluate(DRAW_JS, spec) for _ in range(repeats + 2)]
    return statistics.median(times[2:])


def results_reruns(browser, tree: Path, changes: int = 6) -> list[float]:
    """Chromium's CPU seconds for each of ``changes`` seed changes on ``tree``'s Results."""
    from live_view import cpu_by_process, cpu_used_since
    from playwright.sync_api import expect

    from tests.browser import open_app, serve_app, wait_for_app_idle

    with serve_app("app.py", cwd=tree, timeout_s=120) as url:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        try:
            page = context.new_page()
            open_app(page, url)
            page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Results").click()
            heading = page.get_by_role("heading", name="Results", level=1)
            expect(heading).to_be_visible(timeout=60_000)
            wait_for_app_idle(page, 60_000)
            time.sleep(2)
            used = []
            for seed in range(1, changes + 1):
                before = cpu_by_process()
                field = page.locator(".st-key-results_seed input")
                field.fill(str(seed))
                field.press("Enter")
                time.sleep(0.3)
                wait_for_app_idle(page, 60_000)
                time.sleep(1.0)  # the charts are drawn after the run ends
                used.append(cpu_used_since(before)["chromium"])
            return used
        finally:
            context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--results", metavar="REF", help="also time Results against REF's app")
    args = parser.parse_args()

    import plotly
    from first_paint import checkout, load_text
    from playwright.sync_api import sync_playwright

    from tests.browser import launch_chromium

    plotly_js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    html = f"<div id='chart' style='width:900px'></div><script>{plotly_js.read_text()}</script>"
    rng = np.random.default_rng(0)
    with contextlib.ExitStack() as stack:
        playwright = stack.enter_context(sync_playwright())
        browser = stack.enter_context(launch_chromium(playwright))
        page = browser.new_page()
        page.set_content(html)
        print(f"load {load_text()}")
        print(
            f"{'grid':>8} {'build ms: picture':>18} {'per cell':>9} "
            f"{'draw ms: picture':>17} {'per cell':>9} {'ratio':>6}  same pixels"
        )
        for row_count, per_row in SIZES:
            rows = [rng.random((per_row, 28, 28)).astype(np.float32) for _ in range(row_count)]
            titles = [f"row {index}" for index in range(row_count)]
            ours, theirs = [], []
            for _ in range(args.repeats):
                started = time.perf_counter()
                built = image_grid(rows, titles)
                ours.append(time.perf_counter() - started)
                started = time.perf_counter()
                reference = cells_grid(rows, titles)
                theirs.append(time.perf_counter() - started)
            drawn, drawn_cells = (draw_ms(page, f, args.repeats) for f in (built, reference))
            print(
                f"{row_count:>3} x {per_row:<3} {statistics.median(ours) * 1000:>18.1f} "
                f"{statistics.median(theirs) * 1000:>9.1f} {drawn:>17.1f} {drawn_cells:>9.1f} "
                f"{drawn / drawn_cells:>6.2f}  {same_pixels(built, reference, rows)}"
            )
        if args.results:
            trees = {"this tree": REPO, args.results: stack.enter_context(checkout(args.results))}
            for label, tree in trees.items():
                used = results_reruns(browser, tree)
                print(
                    f"Results, a seed change, {label}: Chromium {statistics.median(used):.2f} "
                    f"CPU-s (each: {', '.join(f'{u:.2f}' for u in used)})"
                )


if __name__ == "__main__":
    main()
