"""The test-image picker shared by the Latent Editor and Inspect: by index, by class or at random,
always from the run's own test split."""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from cae.recipe import TestSplit
from cae.text import clean_name, plain_markdown

PICK_MODES = ("by index", "by class", "at random")


def class_names(split: TestSplit) -> list[str]:
    """The split's class names (digits 0-9 when the labels have no names), as plain text (an
    upload's folder or label names, without control or bidi characters)."""
    if split.class_names:
        return [clean_name(str(name)) for name in split.class_names]
    count = int(split.labels.max()) + 1 if split.labels is not None and split.count else 10
    return [str(i) for i in range(count)]


def label_text(split: TestSplit, index: int) -> str:
    """`` (a 7)`` for a labelled test image, else an empty string; markdown (for a caption), the
    class name escaped."""
    if split.labels is None:
        return ""
    names = class_names(split)
    y = int(split.labels[index])
    return f" (a {plain_markdown(names[y]) if 0 <= y < len(names) else y})"


def _another(seed_key: str) -> None:
    st.session_state[seed_key] = st.session_state.get(seed_key, 0) + 1


def pick_test_image(split: TestSplit, columns: list[Any], prefix: str) -> int:
    """Three columns of widgets (mode, then its value) picking one test image; its index.
    Widget keys are ``<prefix>_pick``, ``_index``, ``_class``, ``_nth``, ``_another``."""
    modes = PICK_MODES if split.labels is not None else (PICK_MODES[0], PICK_MODES[2])
    how = columns[0].selectbox("Test image", modes, key=f"{prefix}_pick")
    last = split.count - 1
    if how == "by class":
        names = class_names(split)
        label = columns[1].selectbox(
            "Class", list(range(len(names))), format_func=lambda i: names[i], key=f"{prefix}_class"
        )
        members = np.flatnonzero(split.labels == label)
        nth = columns[2].number_input(
            f"Which (of {len(members)})", 0, max(len(members) - 1, 0), 0, key=f"{prefix}_nth"
        )
        return int(members[int(nth)]) if len(members) else 0
    if how == "at random":
        seed_key = f"{prefix}_seed"
        st.session_state.setdefault(seed_key, 0)
        columns[1].button(
            "Another",
            key=f"{prefix}_another",
            icon=":material/casino:",
            on_click=_another,
            args=(seed_key,),
        )
        return int(np.random.default_rng(st.session_state[seed_key]).integers(split.count))
    return int(columns[1].number_input(f"Index (0–{last})", 0, last, 0, key=f"{prefix}_index"))
