"""Building an image grid: ``cae.plots.image_grid`` against the same figure built with plotly's
``make_subplots`` and per-cell ``add_trace`` (how image_grid built it before 2026-11-30).

The Results, Train and denoising views rebuild their grids on every rerun of the page (each widget
change). Per grid size (rows x images per row, 28x28 grey images), both builders run in turns in
this one process; printed: the median milliseconds of each, their ratio, and whether the two
figures are the same (``to_plotly_json``, floats to 1e-12). No asserts.

    .venv/bin/python bench/figures.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cae.plots import GRID_SPACING, _as_rgb, image_grid, plain_html  # noqa: E402

SIZES = ((2, 8), (3, 10), (5, 16))  # Train's preview, Results of two runs, a five-run comparison


def subplots_grid(rows: list[np.ndarray], row_titles: list[str]):
    """The reference: make_subplots, one add_trace per image, then per-axis updates."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    count = max(len(images) for images in rows)
    fig = make_subplots(
        rows=len(rows),
        cols=count,
        horizontal_spacing=GRID_SPACING[0],
        vertical_spacing=GRID_SPACING[1],
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


def same(a: object, b: object) -> bool:
    """Equal plotly JSON, floats to 1e-12 and arrays by value."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[key], b[key]) for key in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, abs_tol=1e-12)
    return a == b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'grid':>8} {'image_grid ms':>14} {'make_subplots ms':>17} {'ratio':>6}  same figure")
    for row_count, per_row in SIZES:
        rows = [rng.random((per_row, 28, 28)).astype(np.float32) for _ in range(row_count)]
        titles = [f"row {index}" for index in range(row_count)]
        ours, theirs = [], []
        for _ in range(args.repeats):
            started = time.perf_counter()
            built = image_grid(rows, titles)
            ours.append(time.perf_counter() - started)
            started = time.perf_counter()
            reference = subplots_grid(rows, titles)
            theirs.append(time.perf_counter() - started)
        fast, slow = statistics.median(ours), statistics.median(theirs)
        equal = same(built.to_plotly_json(), reference.to_plotly_json())
        print(
            f"{row_count:>3} x {per_row:<3} {fast * 1000:>14.1f} {slow * 1000:>17.1f} "
            f"{fast / slow:>6.2f}  {equal}"
        )


if __name__ == "__main__":
    main()
