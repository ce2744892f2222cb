"""Run loading shared by the pages: cached models and test splits, and the run picker.

One cache for every page, so a model loaded on Results is not loaded again by the Latent Editor.
A run's test images come only from ``cae.store.run_test_split``: the images it never trained on.
``root`` is the session's runs folder (its workspace's): a run id is looked up there, then in the
gallery above it (``cae.store.find_run_folder``).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from cae.recipe import TestSplit
from cae.store import (
    LoadedRun,
    RunError,
    RunInfo,
    find_run_folder,
    load_run,
    run_test_split,
)
from cae.text import plain_code, plain_markdown
from ui.run_index import complete_runs
from ui.state import RUN_KEY, default_run, remember, runs_root


@st.cache_resource(show_spinner="Loading the model…", max_entries=8)
def cached_run(run_id: str, root: str, created: str | None) -> LoadedRun:
    """A run's models, loaded once per run (``created`` tells a re-used id apart)."""
    return load_run(run_id, root=find_run_folder(run_id, root).parent)


@st.cache_data(show_spinner="Loading the test images…", max_entries=8)
def cached_test_split(run_id: str, root: str, created: str | None) -> TestSplit:
    """The run's own test split (``cae.store.run_test_split``), read once per run."""
    return run_test_split(run_id, root=find_run_folder(run_id, root).parent)


def loads(info: RunInfo, root: str) -> bool:
    """Whether the run's model loads; when not, one line says why (the page goes on)."""
    try:
        cached_run(info.run_id, root, info.created)
    except ValueError as error:
        reason = getattr(error, "reason", None) or str(error)
        st.warning(
            f"{plain_markdown(info.name)} (run {plain_code(info.run_id)}) cannot be loaded: "
            f"{plain_markdown(reason)}",
            icon=":material/error:",
        )
        return False
    return True


def test_split_or_stop(info: RunInfo, root: str) -> TestSplit:
    """The run's test split; when it cannot be had, one line says why and the page stops."""
    try:
        split = cached_test_split(info.run_id, root, info.created)
    except RunError as error:
        st.warning(
            plain_markdown(f"{info.name}: {error.reason or error}"),
            icon=":material/image_not_supported:",
        )
        st.stop()
    return split


def test_split_caption(split: TestSplit) -> str:
    """Where a run's test images come from, in one line of markdown (an upload's name escaped)."""
    where = "" if split.stored else " (rebuilt from the run's recorded recipe)"
    source = plain_markdown(split.recipe.describe())
    return f"{split.count:,} test images of {source}{where}, never trained on."


def complete_runs_or_stop(selection_key: str) -> tuple[str, dict[str, RunInfo]]:
    """The session's runs folder and the complete runs it sees by id; preselects the active run
    (else the starting run: ``ui.state.default_run``) under ``selection_key``. With no run yet,
    says so, links to Train and stops the page."""
    root = runs_root()
    good = complete_runs(root)
    if not good:
        st.info("No trained runs yet. Train one on the Train page.", icon=":material/info:")
        st.page_link("pages/2_Train.py", label="Go to Train", icon=":material/model_training:")
        st.stop()
    by_id = {run.run_id: run for run in good}
    if st.session_state.get(selection_key) not in by_id:
        active = st.session_state.get(RUN_KEY)
        start = default_run(good) or good[0]
        st.session_state[selection_key] = active if active in by_id else start.run_id
    return root, by_id


def pick_run(
    container: Any,
    selection_key: str,
    root: str,
    by_id: dict[str, RunInfo],
    *,
    help: str | None = None,
) -> tuple[str, RunInfo, LoadedRun]:
    """A run selectbox in ``container``; the choice becomes the active run and is loaded (a run
    that cannot be loaded is reported and stops the page)."""
    run_id = container.selectbox(
        "Run",
        list(by_id),
        format_func=lambda rid: f"{by_id[rid].name} · {rid}",
        key=selection_key,
        help=help,
    )
    remember(RUN_KEY, run_id)
    info = by_id[run_id]
    try:
        run = cached_run(run_id, root, info.created)
    except ValueError as error:
        st.error(
            f"This run cannot be loaded: {plain_markdown(str(error))}", icon=":material/error:"
        )
        st.stop()
    return run_id, info, run
