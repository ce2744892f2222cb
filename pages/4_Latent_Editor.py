"""Latent Editor: paint or type the latent code of a trained run and see it decoded in place."""

from __future__ import annotations

import gc
import hashlib
import io

import numpy as np
import streamlit as st
from PIL import Image
from streamlit_drawable_canvas import CanvasResult, st_canvas

from cae import latent_edit as le
from cae.latent import (
    PRIOR_SIGMAS,
    Decoder,
    brush_ranges,
    encode,
    interpolate,
    latent_statistics,
    make_decoder,
    sample_codes,
)
from cae.plots import grid_png
from cae.recipe import TestSplit
from cae.store import RunError
from cae.text import plain_markdown
from ui.channels import channel_picker
from ui.latent_link import incoming_code
from ui.runs import cached_run, cached_test_split, complete_runs_or_stop, pick_run
from ui.state import page_frame
from ui.test_images import label_text, pick_test_image

page_frame("Latent Editor")

EDITOR = "le_editor"  # dict of plain data: the code being edited, its source, undo list, counters
SOURCES = ["Test image", "Draw a digit", "Mean code", "Random sample"]
FROM_MAP = "From the latent map"
VIEW_PX = 280  # size of the source and decoded images on screen
DRAW_BG = "#000000"
# The canvas component's own toolbar (Update, Undo, Redo, Edit, Reset) floats over the top of
# the canvas, still catching the mouse while it fades in: measured in Chromium, a stroke pressed
# 10 px below the grid's top edge landed on it and drew nothing, 10 of 10 times. Its Undo and
# Reset also duplicate (and bypass) this page's own. streamlit-drawable-canvas 0.13 has no option
# to hide it (only disabled=True does) and draws it in a shadow root that page CSS cannot reach,
# so this puts one style rule into the shadow root of this page's canvases.
HIDE_CANVAS_TOOLBAR = """<script>
(() => {
  if (window.__caeNoCanvasToolbar) return;
  window.__caeNoCanvasToolbar = true;
  const hosts = '[class*="st-key-le_canvas_"] [data-testid="stBidiComponentIsolated"], '
    + '[class*="st-key-le_draw_"] [data-testid="stBidiComponentIsolated"]';
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


# A narrow screen stacks the editor's three columns: the grid and the image it decodes to come
# first, next to each other (the source goes last), and the decoded image is drawn smaller, so
# both fit on one 800-px screen while painting (issue 13).
NARROW_LAYOUT = """<style>
@media (max-width: 640px) {
  [data-testid="stColumn"]:has(.st-key-le_source_image) { order: 3; }
  .st-key-le_decoded img { width: 180px !important; height: auto !important; }
  [data-testid="stColumn"]:has(.st-key-le_decoded) [data-testid="stVerticalBlock"] { gap: 0.25rem; }
}
</style>"""


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


@st.cache_data(show_spinner="Encoding the test images…", max_entries=4)
def cached_codes(run_id: str, root: str, created: str | None) -> np.ndarray:
    """The codes of up to 2,000 of the run's test images (what a plain run's random sample is
    fitted to)."""
    run = cached_run(run_id, root, created)
    pixels = cached_test_split(run_id, root, created).pixels[:2000]  # uint8: encode converts
    return encode(run.built.encoder, pixels)


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


def fmt(value: float) -> str:
    """A latent value, short."""
    return f"{value:.3g}"


# ---------------------------------------------------------------------------------------- run

st.title("Latent Editor")
st.html(HIDE_CANVAS_TOOLBAR, unsafe_allow_javascript=True)
st.html(NARROW_LAYOUT)
st.caption(
    "Pick a starting point, then paint on the latent code (or type its numbers) and watch the "
    "decoder turn it into an image, on the spot."
)
root, by_id = complete_runs_or_stop("le_run")

top = st.columns([1.4, 1.6, 2])
run_id, info, run = pick_run(
    top[0], "le_run", root, by_id, help="Trained runs in the models folder; the newest first."
)
decoder = cached_decoder(run_id, root, info.created)
latent_shape = tuple(int(n) for n in decoder.latent_shape)
input_shape = tuple(int(n) for n in run.spec.input_shape)
if len(latent_shape) != 3:
    st.error(
        f"The editor paints 2-D codes (h, w, c). Received: latent shape {latent_shape}",
        icon=":material/error:",
    )
    st.stop()
# Images of 2, 4 or more channels are shown one channel at a time (RGB for 3): this picks which.
view_channel = channel_picker(
    top[0], input_shape[2], "le_view_channel", label="Image channel shown"
)
view_words = "" if view_channel is None else f" · channel {view_channel} of {input_shape[2]}"
split: TestSplit | None = None
try:
    split = cached_test_split(run_id, root, info.created)
except RunError as error:
    st.caption(f"No test images to start from: {plain_markdown(str(error.reason or error))}")
stats = cached_stats(run_id, root, info.created, split is not None)
variational = run.built.variational
ch_min, ch_max = brush_ranges(stats, latent_shape[2], variational=variational)
if variational:
    st.caption(
        "A variational run: you paint its mean code, the code its decoder learned to read, and "
        f"the brush spans ±{PRIOR_SIGMAS:g}σ of its prior N(0, 1), where its codes were pulled."
    )

# ----------------------------------------------------------------------------- starting point

sources = SOURCES if split is not None else SOURCES[1:]
# A code sent by another page (the Inspect page's latent map) becomes the source once.
incoming, new_code = incoming_code(run_id, latent_shape)
if incoming is not None:
    sources = [*sources, FROM_MAP]
    if new_code:
        st.session_state["le_source"] = FROM_MAP
source_kind = top[1].radio("Start from", sources, horizontal=True, key="le_source")
source_image: np.ndarray | None = None
with top[2]:
    if source_kind == "Test image":
        assert split is not None
        index = pick_test_image(split, st.columns([1, 1, 1]), "le")
        code_source = cached_code(run_id, root, info.created, index)
        source_image = split.image(index)
        source_label = f"test image #{index}{label_text(split, index)}"
        signature = f"test:{index}"
    elif source_kind == "Draw a digit":
        h_in, w_in, _ = input_shape
        scale = max(1, VIEW_PX // max(h_in, w_in))
        st.session_state.setdefault("le_draw_n", 0)
        drawn = st_canvas(
            stroke_width=max(2, 2 * scale),
            stroke_color="#ffffff",
            background_color=DRAW_BG,
            height=h_in * scale,
            width=w_in * scale,
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
        data = drawn.image_data
        if data is None:
            source_image = np.zeros(input_shape, np.float32)
        else:
            source_image = le.drawing_to_image(data, input_shape, DRAW_BG, view_channel)
        code_source = encode(run.built.encoder, source_image)
        source_label = "your drawing"
        if view_channel is not None:
            source_label += f" (in channel {view_channel}; the other channels 0)"
            st.caption(
                f"Your drawing fills channel {view_channel} of {input_shape[2]}, the channel "
                "shown; the other channels stay 0. Pick another channel to draw into it."
            )
        digest = hashlib.md5(np.round(source_image * 255).astype(np.uint8).tobytes()).hexdigest()
        signature = f"draw:{st.session_state['le_draw_n']}:{digest}"
    elif source_kind == "Mean code":
        code_source = np.asarray(stats["cell_mean"], dtype=np.float32)
        source_label = f"the mean code of {int(stats.get('count', 0)):,} training images"
        signature = "mean"
        st.caption("Every cell at its average over the training images.")
    elif source_kind == FROM_MAP and incoming is not None:
        code_source = np.asarray(incoming["code"], dtype=np.float32)
        source_label = f"{incoming.get('label', 'a code')} from the Inspect page's latent map"
        signature = f"incoming:{incoming.get('id')}"
        st.caption("The code picked on the latent map of the Inspect page.")
    else:
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
        fitted = None if variational or split is None else cached_codes(run_id, root, info.created)
        if variational or fitted is not None:
            rng = np.random.default_rng(seed)
            code_source = sample_codes(
                1, latent_shape, variational=variational, codes=fitted, rng=rng
            )[0]
            st.caption(
                "Each value drawn from the prior N(0, 1)."
                if variational
                else f"Drawn from a normal fitted to the codes of {len(fitted):,} test images: "
                "their mean, and how their values vary together."
            )
        else:  # no test images to fit a plain run's codes to
            code_source = np.asarray(stats["cell_mean"], dtype=np.float32)
            st.caption("No test images to fit random codes to: this is the mean code.")
        source_label = f"a random code (seed {seed})"
        signature = f"sample:{seed}"

signature = f"{run_id}|{info.created}|{signature}"
state = st.session_state.get(EDITOR)
if state is None or state.get("signature") != signature:
    previous = state or {}
    st.session_state[EDITOR] = state = {
        "signature": signature,
        "source": le.to_plain(code_source),
        "code": le.to_plain(code_source),
        "undo": [],
        "nonce": int(previous.get("nonce", 0)) + 1,  # canvas key: a fresh canvas per change
        "table": int(previous.get("table", 0)) + 1,  # number-table key
        "decodes": int(previous.get("decodes", 0)),
        "changed": [],
        "last": "",
    }

# ----------------------------------------------------------------------------------- editing

h, w, channels = latent_shape
cell_px = int(min(64, max(16, VIEW_PX // max(h, w))))


def current_channel() -> int:
    """The channel being edited."""
    return int(st.session_state.get("le_channel", 0)) if channels > 1 else 0


def commit(new_code: np.ndarray, what: str, *, table: bool = True) -> None:
    """Make ``new_code`` the edited code: remember the old one for undo, fresh canvas and table."""
    s = st.session_state[EDITOR]
    old = le.from_plain(s["code"])
    changed = le.changed_cells(old, new_code, current_channel())
    s["last"] = what
    s["changed"] = [list(cell) for cell in changed]
    s["nonce"] += 1  # a new canvas key: the next stroke is seen alone, on the new background
    if table:
        s["table"] += 1
    if changed or not np.array_equal(old, new_code):
        s["undo"] = le.push_undo(s["undo"], s["code"])
        s["code"] = le.to_plain(new_code)


def on_stroke() -> None:
    """Canvas callback: map the finished stroke onto cells and apply it to the selected channel."""
    s = st.session_state[EDITOR]
    component = st.session_state.get(f"le_canvas_{s['nonce']}") or {}
    drawing = component.get("drawing") if hasattr(component, "get") else None
    url = drawing.get("data") if isinstance(drawing, dict) else None
    if not url:
        return
    image = CanvasResult(drawing.get("raw"), url, True).image_data
    if image is None:
        return
    cells = le.stroke_cells(le.stroke_mask_from_image_data(image), (h, w))
    if not cells.any():  # an empty drawing (nothing painted): nothing to apply
        s["nonce"] += 1
        return
    mode = st.session_state.get("le_mode", "set")
    channel = current_channel()
    value = float(st.session_state.get(f"le_{mode}_{channel}", 0.0))
    new = le.apply_stroke(
        le.from_plain(s["code"]), cells, channel, mode, value, le.from_plain(s["source"])
    )
    commit(
        new, f"{mode} {int(cells.sum())} cell(s)" + ("" if mode == "erase" else f" ({fmt(value)})")
    )


def on_table(key: str) -> None:
    """Number-table callback: apply the typed values to the selected channel."""
    edits = (st.session_state.get(key) or {}).get("edited_rows", {})
    s = st.session_state[EDITOR]
    new = le.from_plain(s["code"])
    channel = current_channel()
    for row, columns in edits.items():
        for column, value in columns.items():
            try:
                col = int(str(column))
                if value is not None and np.isfinite(float(value)):
                    new = le.set_cell(new, int(row), col, channel, float(value))
            except (TypeError, ValueError):
                continue
    # The table keeps its edits (same key) and sends them again when it is redrawn with the new
    # values: applying them twice changes nothing, and must not turn the status line's "changed
    # cells" of the real edit into "none" (issue 13).
    if np.array_equal(new, le.from_plain(s["code"])):
        return
    changed = le.changed_cells(le.from_plain(s["code"]), new, channel)
    commit(new, f"typed {len(changed)} value(s)", table=False)


def on_set_cell() -> None:
    """Cell picker callback: set one cell of the selected channel."""
    s = st.session_state[EDITOR]
    row = int(st.session_state.get("le_cell_row", 0))
    col = int(st.session_state.get("le_cell_col", 0))
    value = float(st.session_state.get("le_cell_value", 0.0))
    new = le.set_cell(le.from_plain(s["code"]), row, col, current_channel(), value)
    commit(new, f"cell ({row}, {col}) = {fmt(value)}")


def on_undo() -> None:
    """Undo the last edit."""
    s = st.session_state[EDITOR]
    rest, code = le.pop_undo(s["undo"])
    if code is not None:
        before = le.from_plain(s["code"])
        s["undo"], s["code"] = rest, le.to_plain(code)
        s["changed"] = [list(c) for c in le.changed_cells(before, code, current_channel())]
        s["last"] = "undo"
        s["nonce"] += 1
        s["table"] += 1


def on_reset() -> None:
    """Back to the source code (undoable)."""
    commit(le.from_plain(st.session_state[EDITOR]["source"]), "reset to the source")


@st.fragment
def editor() -> None:
    """Source, editable latent grid and decoded image; a stroke or an edit reruns only this."""
    s = st.session_state[EDITOR]
    code = le.from_plain(s["code"])
    source = le.from_plain(s["source"])
    channel = current_channel()
    vmin, vmax = ch_min[channel], ch_max[channel]
    decoded = decoder(code)
    s["decodes"] += 1
    s["decoded_mean"] = float(decoded.mean())
    st.session_state["le_decoded_mean"] = s["decoded_mean"]

    cols = st.columns([1, 1.15, 1], gap="large")
    with cols[0]:
        st.markdown(f"**Source**{view_words}")
        with st.container(key="le_source_image"):
            if source_image is not None:
                st.image(picture(source_image, channel=view_channel), width=VIEW_PX)
            else:
                st.image(picture(decoder(source), channel=view_channel), width=VIEW_PX)
        st.caption(f"{source_label}" + ("" if source_image is not None else " (decoded)"))
    with cols[1]:
        title = f"**Latent code** · {h}x{w}x{channels}"
        st.markdown(title + (f" · channel {channel}" if channels > 1 else ""))
        mode = st.session_state.get("le_mode", "set")
        brush = float(st.session_state.get(f"le_set_{channel}", (vmin + vmax) / 2))
        colour = {"set": le.colour_hex(brush, vmin, vmax), "add": "#ffffff", "erase": "#ff4081"}[
            mode
        ]
        background = Image.fromarray(le.render_grid_image(code[..., channel], vmin, vmax, cell_px))
        st_canvas(
            stroke_width=max(6, int(cell_px * 0.6)),
            stroke_color=colour,
            background_image=background,
            height=h * cell_px,
            width=w * cell_px,
            drawing_mode="freedraw",
            return_image_data=True,
            key=f"le_canvas_{s['nonce']}",
            on_change=on_stroke,
        )
        bar = le.render_colorbar(vmin, vmax, w * cell_px, 16, brush if mode == "set" else None)
        st.image(bar, width=w * cell_px)
        st.markdown(
            f"<div style='display:flex;justify-content:space-between;width:{w * cell_px}px;"
            f"font-size:0.8rem;opacity:0.7'><span>{fmt(vmin)}</span><span>{fmt((vmin + vmax) / 2)}"
            f"</span><span>{fmt(vmax)}</span></div>",
            unsafe_allow_html=True,
        )
    with cols[2]:
        st.markdown(f"**Decoded**{view_words}")
        with st.container(key="le_decoded"):
            st.image(picture(decoded, channel=view_channel), width=VIEW_PX)
        changed = ", ".join(f"({r},{c})" for r, c in s["changed"]) or "none"
        with st.container(key="le_decode_info"):
            st.caption(
                f"decode #{s['decodes']} · mean brightness {s['decoded_mean']:.4f} · "
                f"{len(s['undo'])} edit(s) to undo  \nlast edit: {s['last'] or '–'} · "
                f"changed cells (row, column): {changed}"
            )

    brush_cols = st.columns([0.9, 1.6, 1.9, 0.8, 0.8])
    if channels > 1:
        brush_cols[0].selectbox(
            "Channel", list(range(channels)), key="le_channel", format_func=lambda i: f"channel {i}"
        )
    else:
        brush_cols[0].caption("One channel")
    brush_cols[1].radio(
        "Brush",
        list(le.MODES),
        horizontal=True,
        key="le_mode",
        format_func={"set": "set", "add": "add", "erase": "erase"}.get,
        help="set: paint the value; add: add the amount; erase: back to the source value.",
    )
    if mode == "add":
        span = vmax - vmin
        brush_cols[2].slider(
            "Amount to add", -span, span, span / 4, key=f"le_add_{channel}", format="%.3f"
        )
    elif mode == "set":
        brush_cols[2].slider(
            "Value",
            vmin,
            vmax,
            (vmin + vmax) / 2,
            key=f"le_set_{channel}",
            format="%.3f",
            help=f"Range: ±{PRIOR_SIGMAS:g}σ of the prior N(0, 1)."
            if variational
            else "Range: the channel's min..max over the training codes.",
        )
    else:
        brush_cols[2].caption("Erase paints cells back to the source code.")
    brush_cols[3].button(
        "Undo",
        key="le_undo",
        on_click=on_undo,
        icon=":material/undo:",
        disabled=not s["undo"],
        width="stretch",
    )
    brush_cols[4].button(
        "Reset", key="le_reset", on_click=on_reset, icon=":material/restart_alt:", width="stretch"
    )
    st.caption(
        "A cell takes the brush when at least 15 % of its pixels are painted: stroke through a "
        "cell's middle. Each finished stroke is applied at once and the canvas clears for the next."
    )

    with st.expander("Type the numbers", expanded=True, icon=":material/table:"):
        table_key = f"le_table_{s['table']}"
        grid = code[..., channel]
        frame = {str(c): [float(v) for v in grid[:, c]] for c in range(w)}
        left, right = st.columns([3, 1.2])
        with left:
            st.data_editor(
                frame, key=table_key, on_change=on_table, args=(table_key,), num_rows="fixed"
            )
        with right:
            picker = st.columns(2)
            picker[0].number_input("Row", 0, h - 1, 0, key="le_cell_row")
            picker[1].number_input("Column", 0, w - 1, 0, key="le_cell_col")
            st.number_input(
                "Value", value=float(round(vmax, 3)), step=0.1, format="%.3f", key="le_cell_value"
            )
            st.button(
                "Set cell",
                key="le_cell_set",
                on_click=on_set_cell,
                icon=":material/edit:",
                width="stretch",
            )

    export = st.columns(4)
    npy = io.BytesIO()
    np.save(npy, code)
    export[0].download_button(
        "Code (.npy)",
        npy.getvalue(),
        file_name="latent_code.npy",
        mime="application/octet-stream",
        key="le_download_code",
        icon=":material/download:",
        on_click="ignore",
    )
    export[1].download_button(
        "Decoded image (PNG)",
        png_bytes(picture(decoded, channel=view_channel)),
        file_name="decoded.png",
        mime="image/png",
        key="le_download_png",
        icon=":material/download:",
        on_click="ignore",
    )


editor()

# ------------------------------------------------------------------------------ interpolation


@st.fragment
def interpolation() -> None:
    """Decoded frames on the line between the codes of two test images."""
    assert split is not None
    st.subheader("Interpolate between two test images")
    cols = st.columns([1, 1, 1, 2])
    last = split.count - 1
    a = int(cols[0].number_input(f"From image (0–{last})", 0, last, 0, key="le_interp_a"))
    b = int(cols[1].number_input(f"To image (0–{last})", 0, last, min(1, last), key="le_interp_b"))
    steps = int(cols[2].slider("Frames", 3, 12, 8, key="le_interp_steps"))
    t = float(cols[3].slider("Position", 0.0, 1.0, 0.5, 0.05, key="le_interp_t"))
    z_a = cached_code(run_id, root, info.created, a)
    z_b = cached_code(run_id, root, info.created, b)
    frames = decoder(interpolate(z_a, z_b, steps))
    here = decoder(((1 - t) * z_a + t * z_b).astype(np.float32))
    strip, single = st.columns([4, 1])
    strip.image(
        grid_png([frames], scale=3, channel=view_channel),
        caption=f"{steps} frames from #{a} to #{b}{view_words}",
    )
    single.image(picture(here, 140, view_channel), caption=f"at {t:.2f}")


if split is not None:
    interpolation()
