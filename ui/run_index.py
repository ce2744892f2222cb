"""The run list, read from disk only when a runs folder has changed (one ``stat`` per run per
rerun instead of parsing every run's JSON files on every rerun of every page). A workspace's
session sees its own runs and the gallery's (``cae.store.listing_roots``)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from cae.store import RunInfo, list_runs, listing_roots, models_dir, newest_first, runs_state


@st.cache_resource(show_spinner=False, max_entries=64)
def _listing(root: str, state: tuple[Any, ...]) -> list[RunInfo]:
    """Every run folder of ``root`` as it was in ``state`` (RunInfo is frozen: safe to share)."""
    return list_runs(root)


def all_runs(root: str | None = None) -> list[RunInfo]:
    """Every run ``root`` sees (broken ones too), newest first: a workspace's own runs and the
    gallery's (an id in both: the workspace's), any other folder's alone; re-read only when a
    folder changed."""
    folder = str(models_dir()) if root is None else root
    roots = [str(path) for path in listing_roots(folder)]
    if len(roots) == 1:
        return list(_listing(roots[0], runs_state(roots[0])))
    seen: set[str] = set()
    runs: list[RunInfo] = []
    for each in roots:
        for run in _listing(each, runs_state(each)):
            if run.run_id not in seen:
                seen.add(run.run_id)
                runs.append(run)
    return newest_first(runs)


def complete_runs(root: str | None = None) -> list[RunInfo]:
    """The runs that look loadable, newest first."""
    return [run for run in all_runs(root) if run.ok]
