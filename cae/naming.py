"""Names for people: the default name of a new run, and the titles of the training losses.

The Train page suggests :func:`default_run_name` and shows :data:`LOSS_TITLES`; both live here so
that a notebook, the CLI or another page names things the same way. No TensorFlow here.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from types import MappingProxyType

from cae.recipe import UPLOAD
from cae.request import MAX_RUN_NAME
from cae.spec import PRESETS, ArchitectureSpec, preset
from cae.text import clean_name

COUNTER_ROOM = 6  # characters kept for "-<n>" after the name's base

LOSS_TITLES = MappingProxyType(
    {
        "bce": "binary cross-entropy",
        "mse": "mean squared error",
        "mae": "mean absolute error",
    }
)
"""The title of each training loss (``cae.training.LOSSES``), as the Train page offers them."""


def loss_title(loss: str) -> str:
    """The title of a training loss, e.g. ``mean squared error``."""
    if loss not in LOSS_TITLES:
        raise ValueError(f"loss must be one of {', '.join(LOSS_TITLES)}. Received: loss={loss!r}")
    return LOSS_TITLES[loss]


def default_run_name(
    spec: ArchitectureSpec | None,
    dataset: str,
    upload_name: str | None,
    taken: Collection[str],
    array: str | None = None,
) -> str:
    """``<design>-<data>-<n>``: the design's name (``-edited`` once it differs from the preset
    of that name), the dataset or the uploaded file's name without its extension (and the
    chosen array of an .npz), and the first counter that no run has taken, e.g.
    ``classic-edited-fashion-mnist-2``."""
    design = spec.name if spec is not None else "run"
    if spec is not None and spec.name in PRESETS and spec != preset(spec.name):
        design = f"{design}-edited"
    data = dataset
    if dataset == UPLOAD:
        data = Path(clean_name(upload_name)).stem if upload_name is not None else "upload"
        data = f"{data}-{array}" if array is not None else data
    base = clean_name(f"{design}-{data}")[: MAX_RUN_NAME - COUNTER_ROOM] or "run"
    n = 1
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"
