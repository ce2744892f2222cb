"""The channel picker shared by the pages that show input images (Train, Results, Latent Editor,
Inspect): grayscale for one channel, RGB for three (or one of them alone), one channel at a time for
any other count. The rule itself is ``cae.latent_edit.channel_options``."""

from __future__ import annotations

from typing import Any

import streamlit as st

from cae.latent_edit import channel_label, channel_options


def channel_picker(
    container: Any,
    channels: int,
    key: str,
    *,
    label: str = "Channel shown",
    width: int | str = "stretch",
) -> int | None:
    """A selectbox in ``container`` of the ways to show images of ``channels`` channels; the
    choice (``None``: the picture, grayscale or RGB). One channel draws no widget."""
    options = channel_options(channels)
    if len(options) == 1:
        return options[0]
    if st.session_state.get(key) not in range(len(options)):
        st.session_state.pop(key, None)  # a choice made for images with more channels
    picked = container.selectbox(
        label,
        range(len(options)),
        format_func=lambda i: channel_label(options[i], channels),
        key=key,
        width=width,
        help=f"These images have {channels} channels: "
        + ("RGB, or one channel alone." if channels == 3 else "one is shown at a time."),
    )
    return options[int(picked)]
