"""A run as a runnable Jupyter notebook (nbformat): load its model (``cae.load_model``), get its
test split (the images stored with the run, else rebuilt from its recorded recipe), compute the
Results page's metrics (``cae.evaluation.reconstruct`` and ``cae.metrics.summarize``, the page's
own two calls) and show the page's grid (``cae.plots.grid_png``, the page's PNG download). A
denoising run also gets its scores on its own corrupted test inputs.

The Results page's download and ``python -m cae notebook RUN --out FILE.ipynb`` write the same
notebook. It names the run folder and the project folder as they were when it was written (one
cell to change when they move); where the run folder is gone it rebuilds the test split from the
recipe written into it. Building it reads the run's JSON files only (no TensorFlow); nbformat is
imported inside the functions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cae.store import get_run_info, read_run_json
from cae.text import plain_markdown

PROJECT = Path(__file__).resolve().parents[1]  # the folder that holds the cae package
GRID_IMAGES = 8  # the Results page's default: 8 random test images, seed 0
GRID_SEED = 0


def _code(lines: str) -> Any:
    import nbformat

    return nbformat.v4.new_code_cell(lines.strip("\n"))


def _markdown(lines: str) -> Any:
    import nbformat

    return nbformat.v4.new_markdown_cell(lines.strip("\n"))


def run_notebook(
    run: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    *,
    project: str | os.PathLike[str] | None = None,
) -> Any:
    """The notebook (an ``nbformat`` NotebookNode, version 4) of a run: an id in ``root`` or a
    run folder. ``project`` is the folder the notebook adds to ``sys.path`` for ``import cae``
    (default: this package's). RunError for a run that is not there or is broken."""
    import nbformat

    from cae.store import RunError

    info = get_run_info(run, root)
    if info.broken:
        raise RunError(
            f"Run {info.run_id!r} cannot be exported: {info.broken}. Received: run={str(run)!r}",
            run_id=info.run_id,
            reason=info.broken,
        )
    folder = Path(info.path).resolve()
    project_path = Path(project).resolve() if project is not None else PROJECT
    config = read_run_json(folder, "train").get("config") or {}
    corruption = config.get("corruption")
    if corruption is None and config.get("noise"):  # older runs: "noise": std
        corruption, config = "gaussian", {**config, "strength": config["noise"]}
    recipe = None if info.recipe is None else info.recipe.to_dict()
    stored = {key: value for key, value in info.metrics.items() if isinstance(value, (int, float))}
    shape = "x".join(map(str, info.latent_shape)) if info.latent_shape else "?"
    params = f"{info.params:,}" if info.params is not None else "?"
    cells = [
        _markdown(
            f"""
# {plain_markdown(info.name)}

Run `{info.run_id}` of CAE Studio: {plain_markdown(info.dataset or "unknown data")},
{info.epochs} epoch(s), {params} parameters, a {shape} code. This notebook loads its model,
gets its test split (images it never trained on), computes the metrics the Results page shows and
draws the page's grid of originals over reconstructions.
"""
        ),
        _code(
            f"""
import json
import sys
from pathlib import Path

# Where the run and CAE Studio were when this notebook was written: change them if you moved them.
RUN = Path({str(folder)!r})
PROJECT = Path({str(project_path)!r})
if PROJECT.is_dir() and str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))

import numpy as np

import cae
from cae.evaluation import reconstruct
from cae.metrics import METRICS, summarize
from cae.recipe import DataRecipe, TestSplit, load_recipe
from cae.store import run_test_split

# The data recipe train.json records: where the images come from, the split seed and fraction.
RECIPE = {json.dumps(json.dumps(recipe))}
# The test metrics stored with the run when it was trained (metrics.json).
STORED = json.loads({json.dumps(json.dumps(stored, sort_keys=True))})
"""
        ),
        _markdown("## The model\n\n`cae.load_model` loads any run's model, plain or variational."),
        _code(
            """
model = cae.load_model(RUN / "model.keras")
print(f"{model.name}: {model.count_params():,} parameters")
"""
        ),
        _markdown(
            "## The test split\n\nThe images stored with the run, or, where the run folder is "
            "not here, the split rebuilt from the recorded recipe (seeded: the same images)."
        ),
        _code(
            """
recipe = DataRecipe.from_dict(json.loads(RECIPE)) if RECIPE != "null" else None
if RUN.is_dir():
    split = run_test_split(RUN)
elif recipe is not None:
    split = TestSplit.of(load_recipe(recipe), recipe)
else:
    raise FileNotFoundError(f"No run folder and no recipe to rebuild its test split. Received: RUN={RUN}")
where = "stored with the run" if split.stored else "rebuilt from its recipe"
print(f"{split.count:,} test images of {split.recipe.describe()} ({where}), each {split.image_shape}")
"""
        ),
        _markdown(
            "## The metrics\n\nAs the Results page computes them: every test image "
            "reconstructed, then `cae.metrics.summarize` (PSNR is that of the mean MSE, pixels "
            "in [0, 1])."
        ),
        _code(
            """
reconstructions = reconstruct(model, split.pixels)
scores = summarize(split.pixels, reconstructions)
for metric in METRICS:
    stored = STORED.get(metric.key)
    was = "" if stored is None else f"   (stored with the run: {stored:.6f})"
    print(f"test {metric.label:<10} {scores[metric.key]:.6f}{was}")
print(f"PSNR {scores['psnr']:.6f} dB")
"""
        ),
        _markdown(
            "## Originals and reconstructions\n\nThe Results page's grid: 8 random test "
            "images (seed 0) over their reconstructions, the page's PNG."
        ),
        _code(
            f"""
from IPython.display import Image, display

from cae.plots import grid_png

rng = np.random.default_rng({GRID_SEED})
indices = sorted(int(i) for i in rng.choice(split.count, size=min({GRID_IMAGES}, split.count), replace=False))
print("test images", indices)
display(Image(grid_png([split.take(indices), np.clip(reconstructions[indices], 0, 1)])))
"""
        ),
    ]
    if corruption is not None:
        cells += [
            _markdown(
                "## On corrupted inputs\n\nThis run was trained as a denoiser: its scores on its "
                "own corrupted test inputs (test image *i* corrupted with a generator seeded by "
                "(0, *i*), as everywhere in the app), beside those of the corrupted inputs."
            ),
            _code(
                f"""
from cae.corruption import EVAL_SEED, corruption_of

corruption = corruption_of({corruption!r}, {float(config.get("strength") or 0.0)!r})
corrupted = corruption.apply(split.pixels, seed=EVAL_SEED)
denoised = summarize(split.pixels, reconstruct(model, corrupted))
as_given = summarize(split.pixels, corrupted)
print(corruption.describe())
for metric in METRICS:
    print(f"{{metric.label:<10}} output {{denoised[metric.key]:.6f}}   corrupted input {{as_given[metric.key]:.6f}}")
display(Image(grid_png([split.take(indices), corrupted[indices], np.clip(reconstruct(model, corrupted[indices]), 0, 1)])))
"""
            ),
        ]
    for number, cell in enumerate(cells):
        cell["id"] = f"cae-{number}"  # not random: the page and the CLI write the same file
    notebook = nbformat.v4.new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
            "cae": {"run_id": info.run_id, "created": info.created},
        },
    )
    nbformat.validate(notebook)
    return notebook


def notebook_text(
    run: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    *,
    project: str | os.PathLike[str] | None = None,
) -> str:
    """The run's notebook (:func:`run_notebook`) as the text of an ``.ipynb`` file."""
    import nbformat

    return nbformat.writes(run_notebook(run, root, project=project))
