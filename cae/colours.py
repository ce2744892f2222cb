"""The app's palettes, one home for each: the sequential scale every value map uses (the latent
editor's grid, Inspect's feature maps and code, the Results error maps, all from 0 or the
map's own low end) and the class colours and markers of scatter plots.

numpy only (no plotly, no streamlit): cheap to import from any layer.
"""

from __future__ import annotations

import numpy as np

# Viridis (matplotlib's values) sampled at 9 stops, interpolated linearly: perceptually even,
# readable in grey and by most colour-blind people; dark purple is the low end.
SEQUENTIAL = np.array(
    [
        [68, 1, 84],
        [71, 44, 122],
        [59, 81, 139],
        [44, 113, 142],
        [33, 144, 141],
        [39, 173, 129],
        [92, 200, 99],
        [170, 220, 50],
        [253, 231, 37],
    ],
    dtype=np.float64,
)

# Okabe and Ito's colour-blind-safe set, then Tableau's: neighbouring classes (0 and 1 above
# all) get clearly different hues. A marker shape per class as well, so they differ in grey too.
CLASS_COLOURS = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#F0E442",
    "#000000",
    "#8C564B",
    "#7F7F7F",
)
CLASS_SYMBOLS = (
    "circle",
    "diamond",
    "square",
    "x",
    "triangle-up",
    "cross",
    "triangle-down",
    "star",
    "pentagon",
    "hexagon",
)


def colormap(values: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """Colours (..., 3) uint8 of the sequential scale for ``values`` scaled from [vmin, vmax]
    (clipped; NaN and a flat range take the low end)."""
    v = np.asarray(values, dtype=np.float64)
    span = float(vmax) - float(vmin)
    t = np.zeros_like(v) if not np.isfinite(span) or span <= 0 else (v - float(vmin)) / span
    t = np.clip(np.nan_to_num(t, nan=0.0), 0.0, 1.0) * (len(SEQUENTIAL) - 1)
    low = np.floor(t).astype(int)
    high = np.minimum(low + 1, len(SEQUENTIAL) - 1)
    frac = (t - low)[..., None]
    rgb = SEQUENTIAL[low] * (1 - frac) + SEQUENTIAL[high] * frac
    return np.round(rgb).astype(np.uint8)


def plotly_scale() -> list[list[float | str]]:
    """The sequential scale as a Plotly colorscale (the same stops as :func:`colormap`)."""
    last = len(SEQUENTIAL) - 1
    return [
        [i / last, "#{:02x}{:02x}{:02x}".format(*(int(round(c)) for c in rgb))]
        for i, rgb in enumerate(SEQUENTIAL)
    ]


def class_style(index: int) -> tuple[str, str]:
    """(colour, marker symbol) of class ``index``; classes past ten repeat with another shape."""
    return (
        CLASS_COLOURS[index % len(CLASS_COLOURS)],
        CLASS_SYMBOLS[(index + index // len(CLASS_COLOURS)) % len(CLASS_SYMBOLS)],
    )
