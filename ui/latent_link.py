"""Sending a code to the Latent Editor from another page, and receiving it there.

The code travels as plain data in ``st.session_state["le_incoming"]``:
``{"code": nested list, "label": str, "run": run id, "id": int}``; each new send gets a new id,
which the editor takes as its new starting point once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

INCOMING_KEY = "le_incoming"
SEEN_KEY = "le_incoming_seen"


def send_code(code: np.ndarray, what: str, run_id: str) -> None:
    """Hand ``code`` (of run ``run_id``, described as ``what``) to the Latent Editor, say so and
    link there; sending the same thing again keeps its id."""
    previous = st.session_state.get(INCOMING_KEY) or {}
    if previous.get("label") != what or previous.get("run") != run_id:
        st.session_state[INCOMING_KEY] = {
            "code": np.asarray(code, dtype=np.float32).tolist(),
            "label": what,
            "run": run_id,
            "id": int(previous.get("id", 0)) + 1,
        }
    st.success(f"Sent {what} to the Latent Editor.", icon=":material/send:")
    st.page_link(
        "pages/4_Latent_Editor.py", label="Open it in the Latent Editor", icon=":material/brush:"
    )


def incoming_code(run_id: str, latent_shape: tuple[int, ...]) -> tuple[dict[str, Any] | None, bool]:
    """The code sent to the editor for this run and shape (or None), and whether it is new since
    the editor last looked (then it should become the starting point)."""
    incoming = st.session_state.get(INCOMING_KEY)
    if not (
        isinstance(incoming, dict)
        and incoming.get("run") == run_id
        and np.shape(incoming.get("code")) == tuple(latent_shape)
    ):
        return None, False
    new = incoming.get("id") != st.session_state.get(SEEN_KEY)
    st.session_state[SEEN_KEY] = incoming.get("id")
    return incoming, new
