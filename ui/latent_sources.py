"""The Latent Editor's starting points: a test image, a drawing, the mean code, a random code or
a code sent from the Inspect page's latent map, each with its own widgets. What was picked comes
back as a ``StartingPoint``: the code, its words and an ``origin`` that tells one starting point
from another (a new origin starts a fresh ``cae.latent_edit.LatentEdit``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st
from streamlit_drawable_canvas import st_canvas

from cae import latent_edit as le
from cae.latent import encode
from ui.latent_link import incoming_code
from ui.latent_view import VIEW_PX, LatentRun
from ui.test_images import label_text, pick_test_image

SOURCES = ["Test image", "Draw a digit", "Mean code", "Random sample"]
FROM_MAP = "From the latent map"
DRAW_BG = "#000000"


@dataclass(frozen=True)
class StartingPoint:
    """The code an edit starts from and where it came from."""

    code: np.ndarray  # (h, w, c) float32
    label: str  # in words (markdown), under the source image
    origin: str  # tells one starting point from another: "test:3", "mean", "sample:2", ...
    image: np.ndarray | None = None  # the input image it encodes, where there is one


def choose_source(latent: LatentRun, radio_column: Any, column: Any) -> StartingPoint:
    """The kind of starting point in ``radio_column`` (a code sent from the Inspect page's latent
    map becomes it, once), that kind's own widgets in ``column``, and the code it gives."""
    sources = SOURCES if latent.split is not None else SOURCES[1:]
    incoming, new_code = incoming_code(latent.info.run_id, latent.latent_shape)
    if incoming is not None:
        sources = [*sources, FROM_MAP]
        if new_code:
            st.session_state["le_source"] = FROM_MAP
    kind = radio_column.radio("Start from", sources, horizontal=True, key="le_source")
    with column:
        if kind == "Test image":
            return from_test_image(latent)
        if kind == "Draw a digit":
            return from_drawing(latent)
        if kind == "Mean code":
            st.caption("Every cell at its average over the training images.")
            words = f"the mean code of {int(latent.stats.get('count', 0)):,} training images"
            return StartingPoint(mean_code(latent), words, "mean")
        if kind == FROM_MAP and incoming is not None:
            st.caption("The code picked on the latent map of the Inspect page.")
            words = f"{incoming.get('label', 'a code')} from the Inspect page's latent map"
            code = np.asarray(incoming["code"], dtype=np.float32)
            return StartingPoint(code, words, f"incoming:{incoming.get('id')}")
        return from_random_sample(latent)


def mean_code(latent: LatentRun) -> np.ndarray:
    """Every cell at its average over the training images."""
    return np.asarray(latent.stats["cell_mean"], dtype=np.float32)


def from_test_image(latent: LatentRun) -> StartingPoint:
    """A test image picked by index, class or at random, and its code."""
    split = latent.split
    assert split is not None
    index = pick_test_image(split, st.columns([1, 1, 1]), "le")
    label = f"test image #{index}{label_text(split, index)}"
    return StartingPoint(latent.code_of(index), label, f"test:{index}", split.image(index))


def from_drawing(latent: LatentRun) -> StartingPoint:
    """A drawing on a black canvas (into the image channel shown, if one is), and its code."""
    input_shape = latent.input_shape
    scale = max(1, VIEW_PX // max(input_shape[:2]))
    st.session_state.setdefault("le_draw_n", 0)
    drawn = st_canvas(
        stroke_width=max(2, 2 * scale),
        stroke_color="#ffffff",
        background_color=DRAW_BG,
        height=input_shape[0] * scale,
        width=input_shape[1] * scale,
        drawing_mode="freedraw",
        return_image_data=True,
        key=f"le_draw_{st.session_state['le_draw_n']}",
    )
    st.button(
        "Clear the drawing",
        key="le_draw_clear",
        icon=":material/ink_eraser:",
        on_click=lambda: st.session_state.update(le_draw_n=st.session_state["le_draw_n"] + 1),
    )
    channel = latent.view_channel
    if drawn.image_data is None:
        image = np.zeros(input_shape, np.float32)
    else:
        image = le.drawing_to_image(drawn.image_data, input_shape, DRAW_BG, channel)
    label = "your drawing"
    if channel is not None:
        label += f" (in channel {channel}; the other channels 0)"
        st.caption(
            f"Your drawing fills channel {channel} of {input_shape[2]}, the channel "
            "shown; the other channels stay 0. Pick another channel to draw into it."
        )
    digest = hashlib.md5(np.round(image * 255).astype(np.uint8).tobytes()).hexdigest()
    code = encode(latent.run.built.encoder, image)
    return StartingPoint(code, label, f"draw:{st.session_state['le_draw_n']}:{digest}", image)


def from_random_sample(latent: LatentRun) -> StartingPoint:
    """A random code from the density fitted to the run's training codes (a Gaussian mixture,
    ``cae.sampling``; plain and variational runs alike); with no images to fit: the mean code."""
    st.session_state.setdefault("le_sample_seed", 0)
    st.button(
        "Draw another",
        key="le_sample_again",
        icon=":material/casino:",
        on_click=lambda: st.session_state.update(
            le_sample_seed=st.session_state["le_sample_seed"] + 1
        ),
    )
    seed = int(st.session_state["le_sample_seed"])
    density = latent.density
    if density is not None:
        code = density.sample(1, np.random.default_rng(seed))[0]
        st.caption(f"Drawn from {density.describe()}.")
    else:  # no images to fit the run's codes to
        code = mean_code(latent)
        st.caption("No images to fit random codes to: this is the mean code.")
    return StartingPoint(code, f"a random code (seed {seed})", f"sample:{seed}")
