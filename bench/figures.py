"""An image grid: ``cae.plots.image_grid`` (HTML: a column of row titles written across and a column
of tiles per image, one small PNG each, wrapping on a narrow screen; since issue 28) against the
plotly figure it replaced (the grid as one picture in one image trace with its row titles turned
on their side as annotations, how image_grid drew it from 2026-11-30; built here as it was then).

The Results, Train and denoising views send their grids again on every rerun of the page (each
widget change), and the browser redraws every chart it is sent, changed or not. Per grid size
(rows x images per row, 28x28 grey images), in this one process, medians of ``--repeats``:
building the grid in Python; drawing it in Debian's Chromium (the HTML set into a 900 px wide
element, ``Plotly.newPlot`` with the plotly.js that ships with the plotly package, each until two
frames are painted); and whether the two show the same pixels. ``--results REF`` also serves this
tree's app and a git ref's, opens Results on the shipped default run in each and changes the
seed of the test images 6 times: Chromium's CPU per rerun (all its processes), medians. No
asserts.

    .venv/bin/python bench/figures.py [--repeats 15] [--results 9dc789f]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import os
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from cae.plots import image_grid, mosaic, plain_html  # noqa: E402

SIZES = ((2, 8), (3, 10), (5, 16))  # Train's preview, Results of two runs, a five-run comparison
GAPS = (0.08, 0.12)  # the picture's white gaps between columns and rows, fractions of a side

DRAW_HTML_JS = """async (markup) => {
  const target = document.getElementById("grid");
  target.innerHTML = "";
  const started = performance.now();
  target.innerHTML = markup;
  await Promise.all([...target.querySelectorAll("img")].map((img) => img.decode()));
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  return performance.now() - started;
}"""

DRAW_JS = """async (spec) => {
  const figure = JSON.parse(spec);
  const target = document.getElementById("chart");
  Plotly.purge(target);
  const started = performance.now();
  await Plotly.newPlot(target, figure.data, figure.layout);
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  return performance.now() - started;
}"""


def picture_grid(rows: list[np.ndarray], row_titles: list[str]):
    """The reference: the plotly figure image_grid drew until issue 28, one PNG (the images with
    white gaps) in one image trace, each row title an annotation turned on its side."""
    import plotly.graph_objects as go
    from PIL import Image

    height, width = rows[0].shape[1:3]
    count = max(len(images) for images in rows)
    gap, row_gap = max(1, round(GAPS[0] * width)), max(1, round(GAPS[1] * height))
    buffer = io.BytesIO()
    picture = Image.fromarray(mosaic(rows, gap=gap, row_gap=row_gap), "RGB")
    picture.save(buffer, format="PNG", compress_level=1)
    source = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    notes = [
        dict(
            text=plain_html(title),
            textangle=-90,
            showarrow=False,
            x=-0.5 - gap,
            xanchor="right",
            y=r * (height + row_gap) - 0.5 + height / 2,
            yanchor="middle",
        )
        for r, title in enumerate(row_titles)
    ]
    return go.Figure(
        data=[go.Image(source=source, hoverinfo="skip")],
        layout=dict(
            annotations=notes,
            xaxis={"visible": False},
            yaxis={"visible": False},
            height=max(120, int(900 / max(count, 1)) + 10) * len(rows),
            margin={"l": 40, "r": 5, "t": 5, "b": 5},
            plot_bgcolor="white",
        ),
    ), (gap, row_gap)


def same_pixels(markup: str, figure, gaps: tuple[int, int], rows: list[np.ndarray]) -> bool:
    """Whether every tile of the HTML grid holds the pixels of its cell of the one picture."""
    from PIL import Image

    def decoded(data: str) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))

    picture = decoded(figure.data[0].source.split(",", 1)[1])
    tiles = iter(decoded(t) for t in re.findall(r"src='data:image/png;base64,([^']+)'", markup))
    height, width = rows[0].shape[1:3]
    gap, row_gap = gaps
    for c in range(max(len(images) for images in rows)):  # the HTML goes column by column
        for r in range(len(rows)):
            top, left = r * (height + row_gap), c * (width + gap)
            if not np.array_equal(picture[top : top + height, left : left + width], next(tiles)):
                return False
    return True


def draw_ms(page, figure, repeats: int) -> float:
    """The median milliseconds Chromium takes to draw ``figure`` (the first 2 draws dropped)."""
    spec = figure.to_json()
    times = [page.evaluate(DRAW_JS, spec) for _ in range(repeats + 2)]
    return statistics.median(times[2:])


def draw_html_ms(page, markup: str, repeats: int) -> float:
    """The median milliseconds Chromium takes to show ``markup`` (the first 2 draws dropped)."""
    times = [page.evaluate(DRAW_HTML_JS, markup) for _ in range(repeats + 2)]
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
    html = (
        "<div id='grid' style='width:900px'></div><div id='chart' style='width:900px'></div>"
        f"<script>{plotly_js.read_text()}</script>"
    )
    rng = np.random.default_rng(0)
    with contextlib.ExitStack() as stack:
        playwright = stack.enter_context(sync_playwright())
        browser = stack.enter_context(launch_chromium(playwright))
        page = browser.new_page()
        page.set_content(html)
        print(f"load {load_text()}")
        print(
            f"{'grid':>8} {'build ms: HTML':>15} {'plotly':>7} "
            f"{'draw ms: HTML':>14} {'plotly':>7} {'ratio':>6}  same pixels"
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
                reference, gaps = picture_grid(rows, titles)
                theirs.append(time.perf_counter() - started)
            drawn = draw_html_ms(page, built, args.repeats)
            drawn_plotly = draw_ms(page, reference, args.repeats)
            print(
                f"{row_count:>3} x {per_row:<3} {statistics.median(ours) * 1000:>15.1f} "
                f"{statistics.median(theirs) * 1000:>7.1f} {drawn:>14.1f} {drawn_plotly:>7.1f} "
                f"{drawn / drawn_plotly:>6.2f}  {same_pixels(built, reference, gaps, rows)}"
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
