"""The baselines beside the Results table: each run against PCA with as many components as its code
has values, and against the mean training image, on the run's own data recipe (``cae.baselines``),
computed in a worker process under a memory cap (``cae.offload``), never in the server: a PCA of
an upload of 535 MB of images cost the server 7.8 GB when it ran here."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import streamlit as st

from cae.baselines import code_size
from cae.metrics import METRICS
from cae.offload import background_step, baselines_in_worker
from cae.recipe import DataRecipe
from cae.store import RunError, RunInfo, gallery_root
from cae.text import plain_markdown
from ui.state import owner_id
from ui.steps import GRACE_S, step_result

DIFFERENCE = "PSNR gain (dB)"  # the run's PSNR minus the baseline's; short, for a phone
# The run's name in the Results tables: pinned (it stays while the table scrolls sideways) and
# at most this wide, so that a phone (400 px) shows the key columns after it (issue 28); a longer
# name ends in an ellipsis (the run picker above shows it whole).
NAME_COLUMN_PX = 140


def name_column(label: str) -> dict:
    """The ``column_config`` entry of a Results table's run-name column ``label``."""
    return {label: st.column_config.TextColumn(label, width=NAME_COLUMN_PX, pinned=True)}


@st.cache_data(show_spinner="Fitting the baselines (PCA and the mean image)…", max_entries=64)
def cached_baselines(
    recipe_json: str, components: int, root: str, _owner: str | None = None
) -> dict[str, dict[str, float]]:
    """PCA with ``components`` components and the mean image of one recipe, computed in a worker
    process (cached per recipe and k here, and on disk by ``cae.baselines`` in the gallery's cache,
    which every workspace shares: its files are named by what the images are, not by who asked).
    The step waits its turn in the server's one queue as ``_owner``'s (not part of the cache key)."""
    recipe = DataRecipe.from_dict(json.loads(recipe_json))
    return baselines_in_worker(recipe, components, gallery_root(root) or root, owner=_owner)


def baselines_request(run: RunInfo, root: str) -> dict[str, Any]:
    """The ``baselines`` step's request for a run: its recipe and its code's size (the cache in
    the gallery's ``.baselines/``, which every workspace shares). RunError without a recipe."""
    if run.recipe is None:
        raise RunError(f"{run.recipe_problem}", run_id=run.run_id, reason=run.recipe_problem)
    return {
        "recipe": run.recipe.to_dict(),
        "components": code_size(run),
        "root": str(gallery_root(root) or root),
    }


def run_baselines(run: RunInfo, root: str) -> tuple[int, dict[str, dict[str, float]] | None]:
    """(the code's number of values, the run's baselines), the baselines computed as this
    browser's step in the server's queue, in the background: None while the step waits or runs
    (a notice shows its place). RunError or ValueError (an upload that is gone, a design too
    large) with the reason."""
    request = baselines_request(run, root)
    return request["components"], step_result("baselines", request)


def known_baselines(run: RunInfo, root: str) -> dict[str, dict[str, float]] | None:
    """The run's baselines if their step ends well within ``ui.steps.GRACE_S``, drawing nothing
    (the baselines table below shows the step's place while it waits, and redraws the page when it
    ends, or says why it failed); None otherwise."""
    try:
        step = background_step("baselines", baselines_request(run, root), owner_id())
    except (ValueError, OSError):
        return None
    step.wait(GRACE_S)
    return step.result if step.state == "done" else None


def _difference(run_psnr: float | None, baseline_psnr: float) -> str:
    if run_psnr is None or not math.isfinite(run_psnr) or not math.isfinite(baseline_psnr):
        return "–"
    return f"{run_psnr - baseline_psnr:+.2f}"


def baselines_table(
    runs: list[RunInfo],
    root: str,
    run_scores: Callable[[RunInfo], dict[str, float]],
) -> None:
    """A table of each run's baselines (PCA with the code's size, the mean image) with their test
    metrics and how many dB of PSNR the run gains over each; ``run_scores`` gives a run's own
    test metrics (those of the table above); the baselines wait their turn in the server's queue
    as this browser's steps (a notice in the table's place shows where they are)."""
    rows, problems = [], []
    st.subheader("Against PCA and the mean image")
    for run in runs:
        if run.recipe is None:  # the metrics table above says why, once
            problems.append(f"{run.name}: no baselines, its data are not known (see above)")
            continue
        try:
            components, found = run_baselines(run, root)
        except (ValueError, OSError) as error:  # RunError, RecipeError, BaselineError
            problems.append(f"{run.name}: no baselines, {getattr(error, 'reason', None) or error}")
            continue
        if found is None:  # waiting or running: its notice is shown
            continue
        try:
            own = run_scores(run).get("psnr")
        except (ValueError, OSError):
            own = None
        methods = (
            (f"PCA, {components:,} components", found["pca"]),
            ("mean image", found["mean_image"]),
        )
        for method, scores in methods:
            # the gain first after the run's name, so that a phone shows it (issue 28)
            row = {"run": run.name, DIFFERENCE: _difference(own, scores["psnr"])}
            row["baseline"] = method
            for metric in METRICS:
                row[f"test {metric.label}"] = metric.format(scores.get(metric.key))
            row["run id"] = run.run_id
            rows.append(row)
    if rows:
        st.dataframe(
            rows,
            hide_index=True,
            width="stretch",
            key="results_baselines",
            column_config=name_column("run"),
        )
    st.caption(
        "PCA with as many components as the run's code has values (the best linear code of that "
        "size), and every image as the mean training image: both fitted on the run's training "
        "split and scored on its test split, reconstructions clipped to [0, 1]. PSNR gain: the "
        "run's PSNR minus the baseline's; above 0, the autoencoder beats it by that many dB."
    )
    for problem in problems:
        st.caption(plain_markdown(problem))
