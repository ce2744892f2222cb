"""Results' scores of a run on a test split: its metrics, per-image MSE and mean error map (here for
a small split, in a worker through the queue for a large one) and its reconstructions of only the
images a page shows."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import streamlit as st

from cae import metrics as image_metrics
from cae.evaluation import SplitReport, reconstruct, split_report
from cae.offload import evaluation_request, in_server_limit
from cae.pixels import float_bytes
from cae.store import RunInfo
from ui.baselines import known_baselines
from ui.runs import cached_run, cached_test_split
from ui.steps import step_result


@st.cache_data(show_spinner="Scoring…", max_entries=32)
def cached_split_report(
    run_id: str, created: str | None, split_run_id: str, split_created: str | None, root: str
) -> SplitReport:
    """A run's metrics, per-image MSE and mean error map on the test split of run
    ``split_run_id`` (often itself), worked out here: for test splits the server may score."""
    run = cached_run(run_id, root, created)
    images = cached_test_split(split_run_id, root, split_created).pixels  # uint8 is fine
    return split_report(run.built, images)


def run_report(run: RunInfo, split_run: RunInfo, root: str) -> SplitReport | None:
    """``run`` scored on ``split_run``'s test split: here when the split is small (up to
    ``cae.offload.in_server_limit()`` bytes as float32), else in a worker process through the
    server's queue, where None means it waits or runs (a notice shows its place). RunError when
    the split cannot be had; StepError when the worker's step failed."""
    split = cached_test_split(split_run.run_id, root, split_run.created)
    if float_bytes(split.pixels) <= in_server_limit():
        return cached_split_report(
            run.run_id, run.created, split_run.run_id, split_run.created, root
        )
    found = step_result("evaluation", evaluation_request(run.path, split_run.path))
    return None if found is None else SplitReport.from_dict(found)


def own_metrics(run: RunInfo, root: str) -> dict[str, float]:
    """Every metric of ``cae.metrics.METRICS`` on the run's own test split ({} while a worker
    scores it)."""
    report = run_report(run, run, root)
    return {} if report is None else report.metrics


@st.cache_data(show_spinner=False, max_entries=64)
def cached_picked(
    run_id: str,
    created: str | None,
    split_run_id: str,
    split_created: str | None,
    root: str,
    indices: tuple[int, ...],
) -> np.ndarray:
    """A run's reconstructions of the test images at ``indices`` of run ``split_run_id``: only
    those a page shows (at most a few dozen), never the whole split."""
    model = cached_run(run_id, root, created).built.autoencoder
    return reconstruct(
        model, cached_test_split(split_run_id, root, split_created).take(list(indices))
    )


def picked(run: RunInfo, reference: RunInfo, indices: Any, root: str) -> np.ndarray:
    """:func:`cached_picked` of ``run`` on ``reference``'s test images at ``indices``."""
    chosen = tuple(int(i) for i in indices)
    return cached_picked(run.run_id, run.created, reference.run_id, reference.created, root, chosen)


def pca_gain(run: RunInfo, psnr: float | None, root: str) -> str:
    """How many dB of PSNR the run gains over PCA with its code's size ("–" when either is not
    known: the baselines table below says why)."""
    if psnr is None or run.recipe is None:
        return "–"
    found = known_baselines(run, root)  # the baselines table below waits for them, or says why
    if found is None:
        return "…"
    gain = psnr - found["pca"]["psnr"]
    return f"{gain:+.2f}" if math.isfinite(gain) else "–"


def shown_error_maps(a: np.ndarray, b: np.ndarray, channel: int | None) -> np.ndarray:
    """Squared error per pixel (N, H, W): of the channel shown, or averaged over the channels
    when the images are shown whole (grayscale or RGB)."""
    if channel is not None:
        a, b = a[..., channel : channel + 1], b[..., channel : channel + 1]
    return image_metrics.error_maps(a, b)


def error_words(channel: int | None, channels: int, *, test_set: bool = False) -> str:
    """Which error the maps show, each mean said once: of the channel shown, or the mean over
    the ``channels`` (when shown whole and there are several); with ``test_set``, the mean over
    the test set too. "" for one image of one channel."""
    over = [] if channel is not None or channels == 1 else ["the channels"]
    if test_set:
        over.insert(0, "the test set")
    parts = [] if channel is None else [f"channel {channel}"]
    if over:
        parts.append("the mean over " + " and ".join(over))
    return ", ".join(parts)


def run_labels(runs: list[RunInfo]) -> dict[str, str]:
    """Each run's label by its id: its name, and the id's tail where two runs share a name (so
    that two of one name stay apart; a mapping from ids, the same on every rerun)."""
    names = [run.name for run in runs]
    return {
        run.run_id: run.name if names.count(run.name) == 1 else f"{run.name} · {run.run_id[-6:]}"
        for run in runs
    }
