"""The run list, read from disk only when the runs folder has changed (one ``stat`` per run per
rerun instead of parsing every run's JSON files on every rerun of every page)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from cae.store import RunInfo, list_runs, models_dir, runs_state


@st.cache_resource(show_spinner=False, max_entries=4)
def _listing(root: str, state: tuple[Any, ...]) -> list[RunInfo]:
    """Every run folder of ``root`` as it was in ``state`` (RunInfo is frozen: safe to share)."""
    return list_runs(root)


def all_runs(root: str | None = None) -> list[RunInfo]:
    """Every run (broken ones too), newest first; re-read only when the folder changed."""
    folder = str(models_dir()) if root is None else root
    return list(_listing(folder, runs_state(folder)))


def complete_runs(root: str | None = None) -> list[RunInfo]:
    """The runs that look loadable, newest first."""
    return [run for run in all_runs(root) if run.ok]
