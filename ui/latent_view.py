"""A run's latent space on screen: the run with its compiled decoder, codes, statistics and brush
ranges (each channel's and each cell's: ``LatentRun``, cached), images upscaled for display, downloads, a colour scale with its
numbers, and a drawing canvas without the component's own toolbar.

Used by the Latent Editor; nothing here knows its edit state (that is
``cae.latent_edit.LatentEdit``). Keras stays behind ``cae.latent``.
"""

from __future__ import annotations

import gc
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st
from PIL import Image
from streamlit_drawable_canvas import CanvasResult

from cae import latent_edit as le
from cae.latent import (
    CodeDensity,
    Decoder,
    brush_ranges,
    cell_ranges,
    encode,
    latent_statistics,
    make_decoder,
)
from cae.recipe import TestSplit
from cae.sampling import fit_run_density
from cae.store import LoadedRun, RunError, RunInfo
from ui.runs import cached_run, cached_test_split

VIEW_PX = 280  # size of a source or decoded image on screen
# The drawing canvas reaches this far past every edge of the latent grid. The component only sees
# events on itself: a stroke pressed just above the grid, or outside a corner, and dragged into
# it was dropped without a word (issue 28). Strokes are caught from this band on and cut to the
# grid (``canvas_stroke``); a stroke that stays in the band changes nothing.
CANVAS_MARGIN = 24


@st.cache_resource(show_spinner="Compiling the decoder…", max_entries=8)
def cached_decoder(run_id: str, root: str, created: str | None) -> Decoder:
    """The run's decoder compiled once as a tf.function (about a millisecond per code)."""
    decoder = make_decoder(cached_run(run_id, root, created).built.decoder)
    # TensorFlow and Keras leave ~1e6 long-lived Python objects. A full garbage collection walks
    # them all (tens of ms) and often lands in the middle of a stroke's decode: measured, it
    # doubled the stroke-to-image time. Move everything alive now out of the collector's way.
    gc.collect()
    gc.freeze()
    return decoder


@st.cache_data(max_entries=256)
def cached_code(run_id: str, root: str, created: str | None, index: int) -> np.ndarray:
    """The code of one of the run's test images."""
    run = cached_run(run_id, root, created)
    return encode(run.built.encoder, cached_test_split(run_id, root, created).image(index))


@st.cache_data(show_spinner="Encoding the test images…", max_entries=4)
def cached_codes(run_id: str, root: str, created: str | None) -> np.ndarray:
    """The codes of up to 2,000 of the run's test images (the statistics of a run without
    latent.json)."""
    run = cached_run(run_id, root, created)
    pixels = cached_test_split(run_id, root, created).pixels[:2000]  # uint8: encode converts
    return encode(run.built.encoder, pixels)


@st.cache_resource(show_spinner="Fitting the random sampler to the training codes…", max_entries=8)
def cached_density(
    run_id: str, root: str, created: str | None, has_test_images: bool
) -> CodeDensity | None:
    """The density "Random sample" draws from and the brush's range follows: a Gaussian mixture
    fitted to the run's training codes (``cae.sampling``; its test images' where the training
    images cannot be had), once per run; None when there are no images to fit."""
    run = cached_run(run_id, root, created)
    test = cached_test_split(run_id, root, created).pixels if has_test_images else None
    try:
        return fit_run_density(run, test_images=test, read_uploads=False)  # none held whole here
    except ValueError:  # neither training nor test images
        return None


@st.cache_data(show_spinner="Describing the code space…", max_entries=8)
def cached_stats(run_id: str, root: str, created: str | None, has_test_images: bool) -> dict:
    """The run's latent statistics (from latent.json, else from the codes of its test images,
    else from one code of a blank image so that the brush still has a range)."""
    run = cached_run(run_id, root, created)
    if run.latent_stats:
        return run.latent_stats
    if has_test_images:
        return latent_statistics(cached_codes(run_id, root, created))
    return latent_statistics(
        encode(run.built.encoder, np.zeros((1, *run.spec.input_shape), np.float32))
    )


@dataclass(frozen=True)
class LatentRun:
    """A run opened for its latent space: what every section of the Latent Editor needs of it."""

    info: RunInfo
    root: str
    run: LoadedRun
    decoder: Decoder  # compiled once per run (cached_decoder)
    split: TestSplit | None  # its test images; None when they cannot be had
    split_error: str | None  # why there are no test images, when there are none
    stats: dict  # its latent statistics: the mean code, the value ranges, the count
    view_channel: int | None  # the input channel shown (None: the picture, grayscale or RGB)
    brush_min: list[float]  # each latent channel's brush range (the slider's)
    brush_max: list[float]
    density: CodeDensity | None = None  # what random codes are drawn from (None: no images)
    cell_low: np.ndarray | None = None  # each cell's brush range (h, w, c): a stroke is held
    cell_high: np.ndarray | None = None  # to it (None: the channel's range)

    @property
    def cell_ranges(self) -> tuple[np.ndarray, np.ndarray]:
        """Each cell's (low, high) brush range, (h, w, c) each."""
        if self.cell_low is not None and self.cell_high is not None:
            return self.cell_low, self.cell_high
        return cell_ranges(self.brush_min, self.brush_max, self.latent_shape)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(h, w, c) of a code."""
        h, w, c = (int(n) for n in self.decoder.latent_shape)
        return h, w, c

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of an input image."""
        h, w, c = (int(n) for n in self.run.spec.input_shape)
        return h, w, c

    @property
    def variational(self) -> bool:
        """Whether the run is a variational autoencoder (its brush spans the prior)."""
        return bool(self.run.built.variational)

    @property
    def view_words(self) -> str:
        """`` · channel 2 of 5`` when one input channel is shown alone, else nothing."""
        channel = self.view_channel
        return "" if channel is None else f" · channel {channel} of {self.input_shape[2]}"

    def code_of(self, index: int) -> np.ndarray:
        """The code of test image ``index``."""
        return cached_code(self.info.run_id, self.root, self.info.created, index)


def open_latent_run(
    info: RunInfo, root: str, run: LoadedRun, view_channel: int | None
) -> LatentRun:
    """The run with its decoder, test images, latent statistics and brush ranges (a code of
    (h, w, c); the caller checks the decoder's latent shape first)."""
    decoder = cached_decoder(info.run_id, root, info.created)
    split, split_error = None, None
    try:
        split = cached_test_split(info.run_id, root, info.created)
    except RunError as error:
        split_error = str(error.reason or error)
    stats = cached_stats(info.run_id, root, info.created, split is not None)
    density = cached_density(info.run_id, root, info.created, split is not None)
    channels = int(decoder.latent_shape[-1])
    cells: tuple[np.ndarray | None, np.ndarray | None] = (None, None)
    if density is not None:  # each cell's spread in the training codes; the channel's span
        low, high = density.brush_ranges()
        cells = (density.cell_low.astype(np.float32), density.cell_high.astype(np.float32))
    else:
        low, high = brush_ranges(stats, channels, variational=run.built.variational)
    return LatentRun(
        info,
        root,
        run,
        decoder,
        split,
        split_error,
        stats,
        view_channel,
        list(low),
        list(high),
        density,
        *cells,
    )


def picture(image: np.ndarray, size: int = VIEW_PX, channel: int | None = None) -> Image.Image:
    """An image (H, W, C) in [0, 1] as shown (grayscale, RGB or ``channel`` alone), upscaled with
    nearest-neighbour pixels to about ``size``."""
    factor = max(1, size // max(image.shape[0], image.shape[1]))
    return Image.fromarray(le.upscale(image, factor, channel))


def png_bytes(image: Image.Image) -> bytes:
    """PNG bytes of a PIL image."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    """An array as the bytes of a ``.npy`` file."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def download_buttons(
    code: np.ndarray, decoded: np.ndarray, channel: int | None, key_prefix: str
) -> None:
    """Download buttons: the code as .npy and its decoded image (as shown) as PNG; their keys
    ``<key_prefix>_download_code`` and ``_png``."""
    export = st.columns(4)
    export[0].download_button(
        "Code (.npy)",
        npy_bytes(code),
        file_name="latent_code.npy",
        mime="application/octet-stream",
        key=f"{key_prefix}_download_code",
        icon=":material/download:",
        on_click="ignore",
    )
    export[1].download_button(
        "Decoded image (PNG)",
        png_bytes(picture(decoded, channel=channel)),
        file_name="decoded.png",
        mime="image/png",
        key=f"{key_prefix}_download_png",
        icon=":material/download:",
        on_click="ignore",
    )


def short_number(value: float) -> str:
    """A latent value, short."""
    return f"{value:.3g}"


def colour_scale(
    vmin: float, vmax: float, width: int, marker: float | None = None, indent: int = 0
) -> None:
    """The viridis colour bar from ``vmin`` to ``vmax``, ``width`` pixels wide and ``indent``
    pixels in from the left (under a grid drawn in a canvas's margin), with a tick at ``marker``,
    and its low, middle and high values under it."""
    bar = le.render_colorbar(vmin, vmax, width, 16, marker)
    if indent:
        padded = np.zeros((bar.shape[0], width + 2 * indent, 4), np.uint8)
        padded[:, indent : indent + width, :3], padded[:, indent : indent + width, 3] = bar, 255
        bar = padded
    st.image(bar, width=width + 2 * indent)
    st.markdown(
        f"<div style='display:flex;justify-content:space-between;width:{width}px;"
        f"margin-left:{indent}px;"
        f"font-size:0.8rem;opacity:0.7'><span>{short_number(vmin)}</span>"
        f"<span>{short_number((vmin + vmax) / 2)}</span><span>{short_number(vmax)}</span></div>",
        unsafe_allow_html=True,
    )


# The canvas component's own toolbar (Update, Undo, Redo, Edit, Reset) floats over the top of
# the canvas, still catching the mouse while it fades in: measured in Chromium, a stroke pressed
# 10 px below the grid's top edge landed on it and drew nothing, 10 of 10 times. Its Undo and
# Reset also duplicate (and bypass) a page's own. streamlit-drawable-canvas 0.13 has no option
# to hide it (only disabled=True does) and draws it in a shadow root that page CSS cannot reach,
# so this puts one style rule into the shadow root of the page's canvases.
_HIDE_CANVAS_TOOLBAR = """<script>
(() => {
  if (window.__caeNoCanvasToolbar) return;
  window.__caeNoCanvasToolbar = true;
  const hosts = HOSTS;
  const hide = () => {
    for (const host of document.querySelectorAll(hosts)) {
      const root = host.shadowRoot;
      if (root && !root.querySelector("style[data-cae-no-toolbar]")) {
        const style = document.createElement("style");
        style.dataset.caeNoToolbar = "1";
        style.textContent = ".dc-toolbar { display: none !important; }";
        root.appendChild(style);
      }
    }
  };
  hide();
  new MutationObserver(hide).observe(document.body, { childList: true, subtree: true });
})();
</script>"""


def hide_canvas_toolbar(key_prefixes: Sequence[str]) -> None:
    """Hide the drawing component's own toolbar on the canvases whose widget keys start with one
    of ``key_prefixes`` (one script per page; it also catches canvases drawn later)."""
    hosts = ", ".join(
        f'[class*="st-key-{prefix}"] [data-testid="stBidiComponentIsolated"]'
        for prefix in key_prefixes
    )
    st.html(_HIDE_CANVAS_TOOLBAR.replace("HOSTS", json.dumps(hosts)), unsafe_allow_javascript=True)


def canvas_stroke(component_state: Any, margin: int = 0) -> np.ndarray | None:
    """The RGBA image of the strokes a drawing canvas sent (its widget state in
    ``st.session_state``) over the grid it shows, ``margin`` canvas pixels in from every edge (the
    band around the grid cut off), or None when it sent no drawing."""
    drawing = component_state.get("drawing") if hasattr(component_state, "get") else None
    url = drawing.get("data") if isinstance(drawing, dict) else None
    if not url:
        return None
    return inside_margin(CanvasResult(drawing.get("raw"), url, True).image_data, margin)


def inside_margin(image: np.ndarray, margin: int) -> np.ndarray:
    """The part of a canvas image (H, W, ...) ``margin`` pixels in from each edge: the grid that a
    canvas of ``CANVAS_MARGIN`` shows, in the grid's own pixels (canvas pixels minus the margin)."""
    height, width = image.shape[:2]
    if margin < 0 or 2 * margin >= min(height, width):
        raise ValueError(
            f"margin must leave some of the canvas. Received: margin={margin}, "
            f"canvas={width}x{height}"
        )
    return image[margin : height - margin, margin : width - margin]


def grid_with_margin(grid: np.ndarray, margin: int) -> Image.Image:
    """The latent grid (h_px, w_px, 3) uint8 as the canvas's background: an RGBA picture with a
    band of ``margin`` pixels around it, faintly tinted so that it reads as part of the canvas
    (a stroke may start there) on a light or a dark page."""
    height, width = grid.shape[:2]
    picture = np.zeros((height + 2 * margin, width + 2 * margin, 4), np.uint8)
    picture[..., :3], picture[..., 3] = 128, 24  # mid grey at a tenth: visible on either theme
    picture[margin : margin + height, margin : margin + width, :3] = grid
    picture[margin : margin + height, margin : margin + width, 3] = 255
    return Image.fromarray(picture, "RGBA")
