"""Results on corrupted inputs: every compared run, denoiser or not, given the same corrupted test
images (``cae.corruption``, seeded per image), scored with ``cae.metrics.METRICS`` by
``cae.evaluation.evaluate_corrupted``, and shown as corrupted / output / clean images."""

from __future__ import annotations

import numpy as np
import streamlit as st

from cae.corruption import CORRUPTION_NAMES, CORRUPTIONS, CORRUPTIONS_BY_NAME, EVAL_SEED, Corruption
from cae.evaluation import evaluate_corrupted, reconstruct
from cae.metrics import METRICS, METRICS_BY_KEY
from cae.offload import StepError, evaluation_request, in_server_limit
from cae.pixels import float_bytes
from cae.plots import image_grid
from cae.recipe import TestSplit
from cae.store import RunError, RunInfo
from cae.text import plain_markdown
from cae.training import recorded_config
from ui.baselines import name_column
from ui.runs import cached_run, cached_test_split
from ui.steps import step_result

INPUT_KEYS = ("psnr", "ssim")  # the corrupted inputs' own scores shown beside the outputs'


@st.cache_data(show_spinner="Scoring on corrupted inputs…", max_entries=64)
def cached_corrupted_scores(
    run_id: str, created: str | None, root: str, kind: str, strength: float
) -> dict[str, float]:
    """``evaluate_corrupted`` of a run on its own test split corrupted so (``denoise_*`` and
    ``corrupted_*`` of every metric)."""
    run = cached_run(run_id, root, created)
    images = cached_test_split(run_id, root, created).pixels  # chunks are made float32 alone
    return evaluate_corrupted(run.built, images, Corruption(kind, strength))


def corrupted_scores(run: RunInfo, root: str, corruption: Corruption) -> dict[str, float]:
    """:func:`cached_corrupted_scores` here for a test split the server may score
    (``cae.offload.in_server_limit``), else in a worker through the server's queue ({} while it
    waits or runs: a notice shows its place). RunError without test images; StepError when the
    worker's step failed."""
    split = cached_test_split(run.run_id, root, run.created)
    if float_bytes(split.pixels) <= in_server_limit():
        return cached_corrupted_scores(
            run.run_id, run.created, root, corruption.kind, corruption.strength
        )
    request = evaluation_request(run.path, run.path, corruption)
    return step_result("evaluation", request) or {}


def own_corruption(run: RunInfo, root: str) -> Corruption | None:
    """The corruption a run trained with (None: clean inputs, or a record past today's limits)."""
    config = recorded_config(cached_run(run.run_id, root, run.created).train_config)
    return config.input_corruption if config is not None else None


def pick_corruption(default: Corruption) -> Corruption:
    """The kind and strength every run is scored with; starts at ``default`` (the widgets are
    keyed by it, so choosing other runs brings their denoiser's corruption back)."""
    tag = f"{default.kind}_{default.strength:g}"
    left, right = st.columns(2)
    kind = left.selectbox(
        "Corruption",
        CORRUPTION_NAMES,
        CORRUPTION_NAMES.index(default.kind),
        format_func=lambda name: CORRUPTIONS_BY_NAME[name].title,
        key=f"results_corruption_{tag}",
    )
    info = CORRUPTIONS_BY_NAME[kind]
    strength = right.slider(
        f"Strength: {info.strength_label}",
        info.low,
        info.high,
        default.strength if kind == default.kind else info.default,
        info.step,
        key=f"results_strength_{tag}_{kind}",
        help=info.help,
    )
    return Corruption(kind, float(strength))


def scores_table(
    runs: list[RunInfo], owns: dict[str, Corruption | None], corruption: Corruption, root: str
) -> None:
    """One row per run: what it trained with, its outputs' metrics from the corrupted inputs, and
    the corrupted inputs' own PSNR and SSIM (what doing nothing scores)."""
    table = []
    for run in runs:
        own = owns[run.run_id]
        try:
            scores = corrupted_scores(run, root, corruption)
        except (RunError, StepError):  # the metrics table above says why, once
            scores = {}
        # the key columns first after the name (the output's PSNR and what it gained), so that a
        # phone shows them without scrolling sideways (issue 28)
        psnr = METRICS_BY_KEY["psnr"]
        gain = scores["denoise_psnr"] - scores["corrupted_psnr"] if scores else None
        row = {
            "name": run.name,
            f"output {psnr.label}": psnr.format(scores.get("denoise_psnr")),
            "gain (dB)": "–" if gain is None else f"{gain:+.2f}",
            "trained with": own.describe() if own else "clean inputs",
        }
        for metric in METRICS:
            row[f"output {metric.label}"] = metric.format(scores.get(f"denoise_{metric.key}"))
        for key in INPUT_KEYS:
            metric = METRICS_BY_KEY[key]
            row[f"corrupted input {metric.label}"] = metric.format(scores.get(f"corrupted_{key}"))
        row["run id"] = run.run_id
        table.append(row)
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        key="results_corrupted_table",
        column_config=name_column("name"),
    )


def corrupted_section(
    selected: list[RunInfo],
    usable: list[RunInfo],
    split: TestSplit,
    indices: list[int],
    channel: int | None,
    root: str,
) -> None:
    """The compare view on corrupted inputs: pick a corruption (a denoising run's own to start),
    every run's scores on its own test split corrupted so, then the picked test images of
    ``split`` corrupted, each usable run's output from them, and the clean images."""
    owns = {run.run_id: own_corruption(run, root) for run in selected}
    denoisers = [run for run in selected if owns[run.run_id] is not None]
    st.subheader("On corrupted inputs: denoising")
    if denoisers:
        first = denoisers[0]
        default = owns[first.run_id]
        st.caption(
            f"{plain_markdown(first.name)} is a denoising run, trained on "
            f"{default.describe()}. Every run below is given the same corrupted test images "
            "and scored on its output against the clean images."
        )
    else:
        kind = CORRUPTIONS[0]
        default = Corruption(kind.name, kind.default)
        st.caption(
            "None of these runs was trained to denoise: see how they cope with corrupted inputs "
            "(a denoising run is trained on the Train page with an input corruption)."
        )
    corruption = pick_corruption(default)
    scores_table(selected, owns, corruption, root)
    st.caption(
        f"Each run on its own test split, test image i corrupted with seed ({EVAL_SEED}, i), so "
        "every run sees the same corrupted images; gain is the output's PSNR minus the "
        "corrupted input's."
    )
    if not indices or not usable:
        return
    clean = split.take(indices)
    corrupted = corruption.apply(clean, indices=indices)
    rows, titles = [corrupted], ["corrupted"]
    for run in usable:
        model = cached_run(run.run_id, root, run.created).built.autoencoder
        rows.append(np.clip(reconstruct(model, corrupted), 0.0, 1.0))
        # "denoised" where the run was trained on this kind of corruption, else its output
        own = owns[run.run_id]
        role = "denoised" if own is not None and own.kind == corruption.kind else "output"
        titles.append(f"{role}: {run.name}")  # whole: the grid wraps a long title
    rows.append(clean)
    titles.append("clean")
    with st.container(key="results_corrupted_grid"):
        st.html(image_grid(rows, titles, channel=channel))
