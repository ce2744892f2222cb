"""Inspect: every layer's feature maps, the learned kernels, the latent-space map, and the ideas
behind convolution, padding, pooling and up-sampling worked out with the network's own numbers."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import streamlit as st

from cae import explain
from cae import inspection as ci
from cae import latent_edit as le
from cae.latent import encode
from cae.plots import heatmap, kernel_map, latent_map
from cae.shapes import ShapeReport, compute_shapes
from cae.spec import ArchitectureSpec, Pool, kind_of
from cae.text import plain_markdown
from ui.channels import channel_picker
from ui.latent_link import send_code
from ui.runs import (
    cached_run,
    cached_test_split,
    complete_runs_or_stop,
    pick_run,
    test_split_or_stop,
)
from ui.state import page_frame
from ui.test_images import class_names, label_text, pick_test_image

page_frame("Inspect")

MAX_TILES = 16
MAP_POINTS = 1000


@st.cache_data(show_spinner="Running the image through every layer…", max_entries=64)
def cached_activations(
    run_id: str, root: str, created: str | None, index: int
) -> list[tuple[str, str, np.ndarray]]:
    """Every layer's output for one of the run's test images."""
    run = cached_run(run_id, root, created)
    return ci.activations(run.built, cached_test_split(run_id, root, created).image(index))


@st.cache_data(show_spinner="Encoding the test set…", max_entries=8)
def cached_codes(run_id: str, root: str, created: str | None, count: int) -> np.ndarray:
    """The codes of the run's first ``count`` test images."""
    run = cached_run(run_id, root, created)
    return encode(run.built.encoder, cached_test_split(run_id, root, created).pixels[:count])


@st.cache_data(max_entries=8)
def cached_kernels(
    run_id: str, root: str, created: str | None
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The run's convolution kernels and biases."""
    return ci.conv_kernels(cached_run(run_id, root, created).built)


def number_table(values: np.ndarray, digits: int = 4) -> dict[str, list[str]]:
    """A 2-D array as table columns of short numbers."""
    return {
        f"c{c}": [f"{v + 0.0:.{digits}g}" for v in values[:, c]] for c in range(values.shape[1])
    }


def shape_text(shape: tuple[int, ...]) -> str:
    """(28, 28, 16) -> 28x28x16."""
    return "x".join(str(n) for n in shape)


class Chosen(NamedTuple):
    """The run and test image the tabs look at, with the image's activations (plain values)."""

    run_id: str
    root: str
    info: Any
    run: Any
    spec: ArchitectureSpec
    report: ShapeReport
    split: Any
    index: int
    image: np.ndarray
    acts: list[tuple[str, str, np.ndarray]]


def choose() -> Chosen:
    """The title, the run and the test image (shown with the run's shapes), and its activations."""
    st.title("Inspect")
    st.caption(
        "Look inside a trained network: what each layer makes of an image, the kernels it learned, "
        "where the codes of the test images lie, and the arithmetic of each step with its own numbers."
    )
    root, by_id = complete_runs_or_stop("inspect_run")

    top = st.columns([1.4, 1, 1, 1])
    run_id, info, run = pick_run(top[0], "inspect_run", root, by_id)
    spec = run.spec
    report = compute_shapes(spec)
    split = test_split_or_stop(info, root)
    index = pick_test_image(split, top[1:], "inspect")
    image = split.image(index)
    acts = cached_activations(run_id, root, info.created, index)
    head = st.columns([1, 6])
    head[1].markdown(
        f"**{plain_markdown(run.info.name)}** · {plain_markdown(split.recipe.label)} · "
        f"input {shape_text(report.input_shape)} → code "
        f"{shape_text(report.latent_shape)} → output {shape_text(report.output_shape)} · "
        f"{report.total_params:,} parameters"
    )
    channels = image.shape[-1]
    shown = channel_picker(
        head[1], channels, "inspect_channel", label="Image channel shown", width=240
    )
    head[0].image(
        le.upscale(image, max(1, 112 // max(image.shape[0], image.shape[1])), shown),
        caption=f"test image #{index}{label_text(split, index)}"
        + ("" if shown is None else f" · channel {shown} of {channels}"),
        output_format="PNG",  # sharp pixels (a JPEG blurs them)
    )
    return Chosen(run_id, root, info, run, spec, report, split, index, image, acts)


def feature_maps(view: Chosen) -> None:
    """Each layer's output for the image, a tile per channel."""
    _, _, _, _, _, report, _, index, _, acts = view
    st.caption(
        f"Each layer's output for test image #{index}, one tile per channel (the first {MAX_TILES}), "
        "one colour range per layer: dark = lowest, yellow = highest."
    )
    for (name, location, maps), row in zip(acts, report.rows, strict=True):
        h, w, c = maps.shape
        scale = max(2, 84 // max(h, w))
        shown = min(c, MAX_TILES)
        more = f" · first {shown} of {c} channels" if c > shown else ""
        st.markdown(f"**{location}** · {row.label}")
        st.image(ci.feature_mosaic(maps, MAX_TILES, columns=8, scale=scale))
        st.caption(
            f"{name} · {shape_text(maps.shape)} · values {maps.min():.3g} … {maps.max():.3g}"
            f" · image #{index}{more}"
        )


def kernels(view: Chosen) -> None:
    """Every convolution's learned kernels and biases."""
    run_id, root, info, _, spec, _, _, _, _, _ = view
    st.caption(
        "Each convolution's learned kernels: a row per input channel, a column per output channel "
        "(at most 8 x 16 shown). Red is negative, blue positive, white zero. A separable or "
        "depthwise convolution shows the one kernel its steps add up to (a depthwise one is zero "
        "off each output's own channel); a transposed one, the weights it spreads each value by."
    )
    for location, kernel, bias in cached_kernels(run_id, root, info.created):
        kh, kw, cin, cout = kernel.shape
        fig = kernel_map(ci.kernel_mosaic(kernel, max_in=8, max_out=16))
        part, index = ci.parse_location(location)
        title = kind_of(getattr(spec, part)[index]).title
        st.markdown(
            f"**{location}** · {title} · {kh}x{kw} kernels · {cin} input x {cout} output channels · "
            f"weights {kernel.min():.3g} … {kernel.max():.3g} · biases {bias.min():.3g} … {bias.max():.3g}"
        )
        st.plotly_chart(fig, key=f"inspect_kernels_{location}")


def code_map(view: Chosen) -> None:
    """The test images' codes on their two main directions; a click sends one."""
    run_id, root, info, run, _, report, split, _, _, _ = view
    count = min(MAP_POINTS, split.count)
    codes = cached_codes(run_id, root, info.created, count)
    points, ratios, _ = ci.pca_2d(codes)
    labels = split.labels[:count] if split.labels is not None else None
    fig = latent_map(points, ratios, labels, class_names(split))
    st.caption(
        f"The {shape_text(report.latent_shape)} "
        + (
            "mean codes (a variational run's code is its mean)"
            if run.built.variational
            else "codes"
        )
        + f" of the first {count:,} test images, flattened to "
        f"{codes[0].size} numbers and projected on their two main directions (PCA): "
        f"{100 * ratios.sum():.1f}% of the spread. Click a point, or draw a box or lasso, to send "
        "that code (the mean code of a selection) to the Latent Editor."
    )
    event = st.plotly_chart(
        fig, on_select="rerun", selection_mode=("points", "box", "lasso"), key="inspect_map"
    )
    picked = []
    selection = event.get("selection", {}) if event else {}
    for point in selection.get("points", []) if selection else []:
        custom = point.get("customdata")
        if isinstance(custom, list):
            custom = custom[0] if custom else None
        if custom is not None:
            picked.append(int(custom))
    if picked:
        picked = sorted(set(picked))
        code = codes[picked].mean(axis=0)
        what = (
            f"test image #{picked[0]}" if len(picked) == 1 else f"the mean of {len(picked)} codes"
        )
        send_code(code, what, run_id)


def worked_convolution(view: Chosen) -> None:
    """One output of a convolution by hand, and 'same' padding at the border."""
    _, _, _, run, spec, report, _, _, image, acts = view
    shown_locations = {location for _, location, _ in acts}  # a variational code's maps are not
    convs = [location for location in ci.sliding_convolutions(spec) if location in shown_locations]
    if convs:
        st.subheader("One convolution output, by hand")
        st.markdown(explain.explain_convolution(report))
        pick = st.columns(4)
        location = pick[0].selectbox("Convolution", convs, key="inspect_learn_conv")
        out = dict((loc, a) for _, loc, a in acts)[location]
        out_h, out_w, out_c = out.shape
        strongest = int(np.argmax(out.max(axis=(0, 1))))  # a channel that responds to this image
        channel = int(
            pick[1].number_input(
                "Output channel", 0, out_c - 1, strongest, key=f"inspect_learn_ch_{location}"
            )
        )
        best = np.unravel_index(int(np.argmax(out[:, :, channel])), (out_h, out_w))
        r = int(
            pick[2].number_input(
                f"Row (0–{out_h - 1})",
                0,
                out_h - 1,
                int(best[0]),
                key=f"inspect_learn_row_{location}",
            )
        )
        c = int(
            pick[3].number_input(
                f"Column (0–{out_w - 1})",
                0,
                out_w - 1,
                int(best[1]),
                key=f"inspect_learn_col_{location}",
            )
        )
        work = ci.worked_convolution(run.built, spec, image, location, r, c, channel, acts=acts)
        kh, kw, cin = work["patch"].shape
        show_in = min(cin, 4)
        for ch in range(show_in):
            cols = st.columns(3)
            suffix = f" · input channel {ch}" if cin > 1 else ""
            cols[0].markdown(f"Input patch{suffix}")
            cols[0].table(number_table(work["patch"][:, :, ch]))
            cols[1].markdown(f"Kernel{suffix}")
            cols[1].table(number_table(work["kernel"][:, :, ch]))
            cols[2].markdown(f"Products{suffix}")
            cols[2].table(number_table(work["products"][:, :, ch]))
        if cin > show_in:
            st.caption(
                f"Input channels {show_in}–{cin - 1} are left out here but counted in the sum."
            )
        agree = abs(work["value"] - work["keras_value"]) <= 1e-5 * max(
            1.0, abs(work["keras_value"])
        )
        st.session_state["inspect_worked"] = {
            "location": location,
            "row": r,
            "col": c,
            "channel": channel,
            "value": work["value"],
            "keras_value": work["keras_value"],
        }
        with st.container(key="inspect_worked_box"):
            st.markdown(
                f"Sum of the {kh * kw * cin} products = **{work['products_sum']:.6g}**; + bias "
                f"{work['bias']:.6g} = **{work['pre_activation']:.6g}**; `{work['activation']}` → "
                f"**{work['value']:.6g}** by hand. Keras's {location} output at ({r}, {c}, channel "
                f"{channel}): **{work['keras_value']:.6g}** "
                + (":green[— the same.]" if agree else ":red[— differs!]")
            )

        st.subheader("What 'same' padding adds at the border")
        st.markdown(explain.explain_padding(report))
        border = ci.worked_convolution(run.built, spec, image, location, 0, 0, channel, acts=acts)
        padded_view = np.where(border["padded"], np.nan, border["patch"][:, :, 0])
        table = {
            f"c{q}": [
                "0 (pad)" if border["padded"][p, q] else f"{padded_view[p, q]:.4g}"
                for p in range(kh)
            ]
            for q in range(kw)
        }
        cols = st.columns([1, 2])
        cols[0].table(table)
        cols[1].markdown(
            f"At the corner pixel (0, 0) the {kh}x{kw} window of {location} starts at input row "
            f"{border['input_origin'][0]}, column {border['input_origin'][1]}: "
            f"{int(border['padded'].sum())} of its {kh * kw} cells fall outside the "
            f"{shape_text(border['input_shape'])} input and count as zeros"
            + (f" (padding '{border['padding']}')." if border["padding"] == "same" else ".")
            + f" Value there: {border['value']:.6g} by hand, {border['keras_value']:.6g} from Keras."
        )


def worked_pooling(view: Chosen) -> None:
    """One pooling window by hand, beside Keras's value."""
    _, _, _, _, spec, report, _, _, image, acts = view
    pools = [
        row.location
        for row in report.rows
        if not row.head and isinstance(getattr(spec, row.part)[row.index], Pool)
    ]
    if pools:
        st.subheader("A pooling window")
        st.markdown(explain.explain_pooling(report))
        location = pools[0]
        x_in = (
            acts[[loc for _, loc, _ in acts].index(location) - 1][2]
            if location != "encoder[0]"
            else image
        )
        part, position = ci.parse_location(location)
        layer = getattr(spec, part)[position]
        (ph, pw), (sh, sw) = layer.size, layer.effective_strides
        rows_ok, cols_ok = (x_in.shape[0] - ph) // sh + 1, (x_in.shape[1] - pw) // sw + 1
    if pools and rows_ok > 0 and cols_ok > 0:
        energy = np.array(
            [
                [
                    x_in[i * sh : i * sh + ph, j * sw : j * sw + pw].max(axis=(0, 1)).sum()
                    for j in range(cols_ok)
                ]
                for i in range(rows_ok)
            ]
        )
        pr, pc = np.unravel_index(int(np.argmax(energy)), energy.shape)
        chan = int(np.argmax(x_in[pr * sh : pr * sh + ph, pc * sw : pc * sw + pw].max(axis=(0, 1))))
        pool = ci.pooling_example(spec, image, acts, location, int(pr), int(pc), chan)
        cols = st.columns([1, 2])
        cols[0].table(number_table(pool["window"]))
        cols[1].markdown(
            f"{location} at output ({pr}, {pc}), channel {chan}: the window is input rows "
            f"{pool['input_origin'][0]}–{pool['input_origin'][0] + ph - 1}, columns "
            f"{pool['input_origin'][1]}–{pool['input_origin'][1] + pw - 1}. "
            f"Max = **{pool['max']:.4g}** (at {pool['argmax']}), average = {pool['sum']:.4g} / "
            f"{pool['count']} = **{pool['avg']:.4g}**. This layer keeps the {pool['mode']}: "
            f"Keras gives **{pool['keras_value']:.4g}**."
        )


def upsampling_versus_transposed(view: Chosen) -> None:
    """Up-sampling and a transposed convolution of the code, side by side."""
    _, _, _, _, _, report, _, _, _, acts = view
    st.subheader("Up-sampling versus transposed convolution")
    st.markdown(explain.explain_upsampling(report))
    code = ci.code_of(acts)
    grid = code[:3, :3, 0]
    demo = ci.upsample_vs_transpose(grid, size=(2, 2), strides=(2, 2))
    cols = st.columns(4)
    cols[0].markdown("Input: the top-left 3x3 of the code")
    cols[0].table(number_table(demo["grid"], 3))
    cols[1].markdown("Nearest up-sampling, size 2x2")
    cols[1].plotly_chart(heatmap(demo["upsampled"]), key="inspect_learn_up")
    cols[1].caption(demo["upsample_formula"])
    cols[2].markdown("Transposed convolution kernel (3x3 tent)")
    cols[2].table(number_table(demo["kernel"], 3))
    cols[3].markdown("Transposed convolution, stride 2, 'valid'")
    cols[3].plotly_chart(heatmap(demo["transposed"]), key="inspect_learn_deconv")
    cols[3].caption(demo["transpose_formula"])
    st.caption(
        "Up-sampling copies each value into a 2x2 block (no weights). The transposed convolution "
        "stamps value x kernel at every second position; where the stamps overlap they add up, so "
        "its output is smooth — with learned weights that is how a decoder grows and paints at once."
    )


def main() -> None:
    """Pick a run and an image, then look at it four ways."""
    view = choose()
    feature_tab, kernel_tab, map_tab, learn_tab = st.tabs(
        ["Feature maps", "Kernels", "Latent map", "Learn"]
    )
    with feature_tab:
        feature_maps(view)
    with kernel_tab:
        kernels(view)
    with map_tab:
        code_map(view)
    with learn_tab:
        worked_convolution(view)
        worked_pooling(view)
        upsampling_versus_transposed(view)


main()
