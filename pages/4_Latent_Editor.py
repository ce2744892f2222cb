"""Latent Editor: paint or type the latent code of a trained run and see it decoded in place."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import streamlit as st
from streamlit_drawable_canvas import st_canvas

from cae import latent_edit as le
from cae.latent import CELL_PERCENTILES, PRIOR_SIGMAS, interpolate
from cae.latent_edit import LatentEdit
from cae.plots import image_grid
from cae.store import RunInfo
from cae.text import plain_markdown
from ui.channels import channel_picker
from ui.latent_sources import StartingPoint, choose_source
from ui.latent_view import (
    CANVAS_MARGIN,
    VIEW_PX,
    LatentRun,
    cached_decoder,
    canvas_stroke,
    colour_scale,
    download_buttons,
    grid_with_margin,
    hide_canvas_toolbar,
    open_latent_run,
    picture,
    short_number,
)
from ui.runs import complete_runs_or_stop, pick_run
from ui.state import page_frame

EDITOR = "le_editor"  # LatentEdit.to_dict(): the code being edited, its source, undo, counters
STROKE_COLOURS = {"add": "#ffffff", "erase": "#ff4081"}  # "set" paints in the value's colour

# A narrow screen stacks the editor's three columns: the grid and the image it decodes to come
# first, next to each other (the source goes last), and the decoded image is drawn smaller, so
# both fit on one 800-px screen while painting (issue 13); the stacked columns close up (their
# "large" gap was 4rem), so the decoded image sits right under the grid's colour scale (issue 28).
NARROW_LAYOUT = """<style>
@media (max-width: 640px) {
  [data-testid="stColumn"]:has(.st-key-le_source_image) { order: 3; }
  [data-testid="stHorizontalBlock"]:has(> [data-testid="stColumn"] .st-key-le_decoded) {
    gap: 0.75rem !important;
  }
  .st-key-le_decoded img { width: 180px !important; height: auto !important; }
  [data-testid="stColumn"]:has(.st-key-le_decoded) [data-testid="stVerticalBlock"] { gap: 0.25rem; }
}
</style>"""


def main() -> None:
    """The page, top to bottom."""
    page_frame("Latent Editor")
    st.title("Latent Editor")
    hide_canvas_toolbar(("le_canvas_", "le_draw_"))
    st.html(NARROW_LAYOUT)
    st.caption(
        "Pick a starting point, then paint on the latent code (or type its numbers) and watch the "
        "decoder turn it into an image, on the spot."
    )
    root, by_id = complete_runs_or_stop("le_run")
    top = st.columns([1.4, 1.6, 2])
    latent = choose_run(top[0], root, by_id)
    start = choose_source(latent, top[1], top[2])
    origin = f"{latent.info.run_id}|{latent.info.created}|{start.origin}"
    save_edit(LatentEdit.resume(st.session_state.get(EDITOR), start.code, origin))
    editor(latent, start)
    if latent.split is not None:
        interpolation(latent)


# ---------------------------------------------------------------------------------------- run


def choose_run(column: Any, root: str, by_id: dict[str, RunInfo]) -> LatentRun:
    """The run picker and the image channel shown; the run opened for its latent space."""
    run_id, info, run = pick_run(
        column, "le_run", root, by_id, help="Trained runs in the models folder; the newest first."
    )
    latent_shape = tuple(int(n) for n in cached_decoder(run_id, root, info.created).latent_shape)
    if len(latent_shape) != 3:
        st.error(
            f"The editor paints 2-D codes (h, w, c). Received: latent shape {latent_shape}",
            icon=":material/error:",
        )
        st.stop()
    # Images of 2, 4 or more channels are shown one channel at a time (RGB for 3): this picks which.
    channels = int(run.spec.input_shape[2])
    view_channel = channel_picker(column, channels, "le_view_channel", label="Image channel shown")
    latent = open_latent_run(info, root, run, view_channel)
    if latent.split_error is not None:
        st.caption(f"No test images to start from: {plain_markdown(latent.split_error)}")
    if latent.variational:
        st.caption(
            "A variational run: you paint its mean code, the code its decoder learned to read; "
            "the brush spans where its training codes are (their fitted spread)."
        )
    return latent


# ----------------------------------------------------------------------------------- editing


def load_edit() -> LatentEdit:
    """The edit in progress, from its plain data in the session."""
    return LatentEdit.from_dict(st.session_state[EDITOR])


def save_edit(edit: LatentEdit) -> None:
    """Keep ``edit`` in the session as plain data."""
    st.session_state[EDITOR] = edit.to_dict()


def brush(channel: int) -> tuple[str, float]:
    """The brush's mode and its value (what ``set`` paints, what ``add`` adds) for ``channel``."""
    mode = st.session_state.get("le_mode", "set")
    return mode, float(st.session_state.get(f"le_{mode}_{channel}", 0.0))


def default_value(latent: LatentRun, channel: int) -> float:
    """The value the brush sets until the student moves the slider: the end of the channel's
    range farther from its mean code value, the value least like the codes it was trained on.

    The middle of the range, as it was, hardly showed (issue 28), measured on the shipped run
    (values 0 to 6.02, mean 3.51) over 20 test images: one cell set to the middle (3.01) changed
    no pixel of the decoded image by more than 0.25 for 40 % of the cells (median 2 pixels); set
    to 0, the far end, for 8 % of them (median 16 pixels, a stroke of ink). Three cells across
    test image 0: 2 pixels changed that much at the middle, 82 at 0."""
    low, high = latent.brush_min[channel], latent.brush_max[channel]
    means = latent.stats.get("channel_mean") or []
    mean = float(means[channel]) if channel < len(means) else (low + high) / 2
    return float(low if mean - low >= high - mean else high)


def on_stroke(ranges: tuple[np.ndarray, np.ndarray]) -> None:
    """Canvas callback: the finished stroke painted onto the cells under it (the canvas's
    margin around the grid cut off), each held to its own range (``ranges``, the run's)."""
    edit = load_edit()
    state = st.session_state.get(f"le_canvas_{edit.canvas_version}") or {}
    image = canvas_stroke(state, CANVAS_MARGIN)
    if image is not None:
        save_edit(edit.paint_stroke(image, *brush(edit.channel), ranges))


def on_table(key: str) -> None:
    """Number-table callback: the typed values applied to the channel shown."""
    edited_rows = (st.session_state.get(key) or {}).get("edited_rows", {})
    save_edit(load_edit().paste_table(edited_rows))


def on_set_cell() -> None:
    """Cell picker callback: one cell of the channel shown set to the value."""
    row = int(st.session_state.get("le_cell_row", 0))
    col = int(st.session_state.get("le_cell_col", 0))
    value = st.session_state.get("le_cell_value")
    if value is None:  # the field emptied: nothing to set
        return
    save_edit(load_edit().set_cell(row, col, float(value)))


def on_undo() -> None:
    """Undo the last edit."""
    save_edit(load_edit().undo_last())


def on_reset() -> None:
    """Back to the source code (undoable)."""
    save_edit(load_edit().reset())


@st.fragment
def editor(latent: LatentRun, start: StartingPoint) -> None:
    """Source, editable latent grid and decoded image; a stroke or an edit reruns only this."""
    channels = latent.latent_shape[2]
    shown = int(st.session_state.get("le_channel", 0)) if channels > 1 else 0
    edit = load_edit().show_channel(shown if 0 <= shown < channels else 0).count_decode()
    save_edit(edit)
    decoded = latent.decoder(edit.code)
    st.session_state["le_decoded_mean"] = float(decoded.mean())
    left, middle, right = st.columns([1, 1.15, 1], gap="large")
    with left:
        source_view(latent, start, edit.source)
    with middle:
        latent_canvas(latent, edit)
    with right:
        decoded_view(latent, edit, decoded)
    brush_controls(latent, edit)
    number_table(latent, edit)
    download_buttons(edit.code, decoded, latent.view_channel, "le")


def source_view(latent: LatentRun, start: StartingPoint, source_code: np.ndarray) -> None:
    """The starting point: its input image, or its code decoded where there is no image."""
    st.markdown(f"**Source**{latent.view_words}")
    image = start.image if start.image is not None else latent.decoder(source_code)
    with st.container(key="le_source_image"):
        st.image(picture(image, channel=latent.view_channel), width=VIEW_PX)
    st.caption(start.label + ("" if start.image is not None else " (decoded)"))


def cell_pixels(latent: LatentRun) -> int:
    """The on-screen size of one latent cell: the grid about VIEW_PX wide, 16 to 64 px a cell."""
    h, w, _ = latent.latent_shape
    return int(min(64, max(16, VIEW_PX // max(h, w))))


def latent_canvas(latent: LatentRun, edit: LatentEdit) -> None:
    """The shown channel of the code as a heatmap to paint on, with its colour scale."""
    h, w, channels = latent.latent_shape
    channel, cell_px = edit.channel, cell_pixels(latent)
    vmin, vmax = latent.brush_min[channel], latent.brush_max[channel]
    title = f"**Latent code** · {h}x{w}x{channels}"
    st.markdown(title + (f" · channel {channel}" if channels > 1 else ""))
    mode = st.session_state.get("le_mode", "set")
    value = float(st.session_state.get(f"le_set_{channel}", default_value(latent, channel)))
    grid = le.render_grid_image(edit.code[..., channel], vmin, vmax, cell_px)
    margin = CANVAS_MARGIN  # strokes are caught this far out around the grid
    width = w * cell_px + 2 * margin
    # The canvas's column is never narrower than the canvas: at 1400 px with the sidebar open it
    # was (about 300 px), and the canvas cut off its grid's last column and the band beside it.
    st.html(
        f'<style>[data-testid="stColumn"]:has([class*="st-key-le_canvas_"])'
        f"{{min-width:min(100%,{width}px)}}</style>"
    )
    st_canvas(
        stroke_width=max(6, int(cell_px * 0.6)),
        stroke_color=STROKE_COLOURS.get(mode) or le.colour_hex(value, vmin, vmax),
        background_image=grid_with_margin(grid, margin),
        height=h * cell_px + 2 * margin,
        width=width,
        drawing_mode="freedraw",
        return_image_data=True,
        key=f"le_canvas_{edit.canvas_version}",
        on_change=partial(on_stroke, latent.cell_ranges),
    )
    colour_scale(vmin, vmax, w * cell_px, value if mode == "set" else None, indent=margin)


def decoded_view(latent: LatentRun, edit: LatentEdit, decoded: np.ndarray) -> None:
    """The decoded image and a status line: decode count, brightness, undo depth, last edit."""
    st.markdown(f"**Decoded**{latent.view_words}")
    with st.container(key="le_decoded"):
        st.image(picture(decoded, channel=latent.view_channel), width=VIEW_PX)
    changed = ", ".join(f"({r},{c})" for r, c in edit.changed) or "none"
    with st.container(key="le_decode_info"):
        st.caption(
            f"decode #{edit.decodes} · mean brightness {float(decoded.mean()):.4f} · "
            f"{len(edit.undo)} edit(s) to undo  \nlast edit: {edit.last or '–'} · "
            f"changed cells (row, column): {changed}"
        )


def brush_help(latent: LatentRun) -> str:
    """Where the brush's values come from, and that each cell keeps to its own range."""
    if latent.density is not None:
        low, high = CELL_PERCENTILES
        return (
            f"Each cell has its own range: the {low:g}st to {high:g}th percentile of the "
            "training codes at that cell (a cell whose codes never vary: the channel's range). "
            "A stroke sets each cell to this value held within its cell's range, so a corner "
            "cell that is always high stays high; the slider spans all the cells' ranges. "
            "Typed numbers are taken as they are."
        )
    if latent.variational:
        return f"Range: ±{PRIOR_SIGMAS:g}σ of the prior N(0, 1), the same for every cell."
    return "Range: the channel's min..max over the codes, the same for every cell."


def brush_controls(latent: LatentRun, edit: LatentEdit) -> None:
    """The channel painted, the brush (set, add, erase) and its value, Undo and Reset."""
    channels, channel = latent.latent_shape[2], edit.channel
    vmin, vmax = latent.brush_min[channel], latent.brush_max[channel]
    cols = st.columns([0.9, 1.6, 1.9, 0.8, 0.8])
    if channels > 1:
        cols[0].selectbox(
            "Channel", list(range(channels)), key="le_channel", format_func=lambda i: f"channel {i}"
        )
    else:
        cols[0].caption("One channel")
    mode = st.session_state.get("le_mode", "set")  # as the canvas above was drawn
    cols[1].radio(
        "Brush",
        list(le.MODES),
        horizontal=True,
        key="le_mode",
        help="set: paint the value; add: add the amount; erase: back to the source value.",
    )
    if mode == "add":
        span = vmax - vmin
        cols[2].slider(
            "Amount to add", -span, span, span / 4, key=f"le_add_{channel}", format="%.3f"
        )
    elif mode == "set":
        cols[2].slider(
            "Value",
            vmin,
            vmax,
            default_value(latent, channel),
            key=f"le_set_{channel}",
            format="%.3f",
            help=brush_help(latent),
        )
    else:
        cols[2].caption("Erase paints cells back to the source code.")
    cols[3].button(
        "Undo",
        key="le_undo",
        on_click=on_undo,
        icon=":material/undo:",
        disabled=not edit.undo,
        width="stretch",
    )
    cols[4].button(
        "Reset", key="le_reset", on_click=on_reset, icon=":material/restart_alt:", width="stretch"
    )
    st.caption(
        "A cell takes the brush when at least 15 % of its pixels are painted: stroke through a "
        "cell's middle. A stroke may start in the band around the grid. Each finished stroke is "
        "applied at once and the canvas clears for the next"
        + (
            "; each cell keeps to its own range in the training codes (see Value's help, and "
            "a cell's range under Type the numbers)."
            if latent.density is not None
            else "."
        )
    )


def number_table(latent: LatentRun, edit: LatentEdit) -> None:
    """The shown channel's values as an editable table, and one cell set by row and column."""
    h, w, _ = latent.latent_shape
    with st.expander("Type the numbers", expanded=True, icon=":material/table:"):
        table_key = f"le_table_{edit.table_version}"
        grid = edit.code[..., edit.channel]
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
            row = min(max(int(st.session_state.get("le_cell_row") or 0), 0), h - 1)
            col = min(max(int(st.session_state.get("le_cell_col") or 0), 0), w - 1)
            low, high = (float(bound[row, col, edit.channel]) for bound in latent.cell_ranges)
            # starts at the top of the picked cell's brush, again when the run or channel
            # changes (the widget kept its value across runs: 16.252 of the wide run on the
            # classic's 0-6; the channel's top was above many a cell's range); a value typed
            # stays while other cells are picked, to set several to it
            shown_for = f"{latent.info.run_id}|{latent.info.created}|{edit.channel}"
            if st.session_state.get("le_cell_for") != shown_for or (
                st.session_state.get("le_cell_value") is None
            ):
                st.session_state["le_cell_value"] = float(round(high, 3))
                st.session_state["le_cell_for"] = shown_for
            st.number_input("Value", value=None, step=0.1, format="%.3f", key="le_cell_value")
            with st.container(key="le_cell_range"):
                st.caption(
                    f"Cell ({row}, {col}): the brush paints it from {short_number(low)} to "
                    f"{short_number(high)}; a typed value is taken as it is."
                )
            st.button(
                "Set cell",
                key="le_cell_set",
                on_click=on_set_cell,
                icon=":material/edit:",
                width="stretch",
            )


# ------------------------------------------------------------------------------ interpolation


@st.fragment
def interpolation(latent: LatentRun) -> None:
    """Decoded frames on the line between the codes of two test images."""
    split = latent.split
    assert split is not None
    st.subheader("Interpolate between two test images")
    cols = st.columns([1, 1, 1, 2])
    last = split.count - 1
    a = int(cols[0].number_input(f"From image (0–{last})", 0, last, 0, key="le_interp_a"))
    b = int(cols[1].number_input(f"To image (0–{last})", 0, last, min(1, last), key="le_interp_b"))
    steps = int(cols[2].slider("Frames", 3, 12, 8, key="le_interp_steps"))
    t = float(cols[3].slider("Position", 0.0, 1.0, 0.5, 0.05, key="le_interp_t"))
    z_a, z_b = latent.code_of(a), latent.code_of(b)
    frames = latent.decoder(interpolate(z_a, z_b, steps))
    here = latent.decoder(((1 - t) * z_a + t * z_b).astype(np.float32))
    strip, single = st.columns([4, 1])
    with strip:  # tiles that wrap on a phone rather than shrink (issue 28)
        with st.container(key="le_interp_strip"):
            st.html(image_grid([frames], [f"#{a} to #{b}"], channel=latent.view_channel))
        st.caption(f"{steps} frames from #{a} to #{b}{latent.view_words}")
    single.image(picture(here, 140, latent.view_channel), caption=f"at {t:.2f}")


main()
