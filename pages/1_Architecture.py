"""Architecture: edit the layers, see every shape and parameter count at once, fix mismatches."""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

from cae import explain
from cae.plots import shape_diagram
from cae.preflight import estimate_memory
from cae.shapes import ShapeError, compute_shapes, mirror, repairs
from cae.spec import (
    MAX_BETA,
    MAX_CHANNELS,
    MAX_IMAGE_SIDE,
    MAX_NAME_LENGTH,
    MAX_SPEC_BYTES,
    MAX_WARMUP_EPOCHS,
    PRESETS,
    ArchitectureSpec,
    layer_to_dict,
    preset,
)
from cae.text import plain_code, plain_markdown
from ui.layer_editor import (
    Slot,
    fix_buttons,
    kind_select,
    kind_title,
    layer_widgets,
    new_layer,
)
from ui.state import SPEC_KEY, active_spec_dict, page_frame, refresh_sidebar, remember

page_frame("Architecture")
DEFAULT_BATCH = 64  # the Train page's default batch size, for the memory estimate here

VERSION_KEY = "arch_version"  # bumps on every structural change so widgets restart from the spec
UPLOAD_SEEN_KEY = "arch_upload_seen"
MESSAGE_KEY = "arch_message"
OPEN_KEY = "arch_open"  # [part, index] of the one layer whose editor is open; None: all closed
# The shape summary (metrics, verdict, diagram) stays in view beside a long layer list on a wide
# screen; narrow screens stack the columns, and the list is compact there (one editor open).
# A layer's line (and an open layer's top row) stays one row on a narrow screen too, where
# Streamlit would stack each of its buttons on a row of its own.
LAYOUT_CSS = """<style>
@media (min-width: 640px) {
  [data-testid="stColumn"]:has(.st-key-arch_summary) {
    position: sticky; top: 3.75rem; align-self: flex-start; z-index: 1;
  }
}
[class*="st-key-arch_"][class*="_line_v"] { padding: 0.3rem 0.6rem !important; }
[class*="st-key-arch_"][class*="_line_v"] [data-testid="stMarkdownContainer"] { margin: 0 !important; }
[class*="st-key-arch_"][class*="_line_v"] p { margin: 0 !important; line-height: 1.45; }
@media (max-width: 640px) {
  [class*="st-key-arch_"][class*="_row_v"] [data-testid="stHorizontalBlock"] {
    flex-wrap: nowrap;
  }
  [class*="st-key-arch_"][class*="_row_v"] [data-testid="stColumn"] {
    min-width: 0 !important; width: auto !important; flex: 0 0 auto !important;
  }
  [class*="st-key-arch_"][class*="_row_v"] [data-testid="stColumn"]:first-child {
    flex: 1 1 0 !important;
  }
}
</style>"""


def version() -> int:
    """The current widget generation."""
    return st.session_state.setdefault(VERSION_KEY, 0)


def replace_spec(data: dict[str, Any], message: str | None = None) -> None:
    """Swap in a new spec dict and restart every layer widget from it."""
    remember(SPEC_KEY, data)
    st.session_state[VERSION_KEY] = version() + 1
    if message:
        st.session_state[MESSAGE_KEY] = ("ok", message)


def spec_dict() -> dict[str, Any]:
    """A deep copy of the spec being edited."""
    return json.loads(json.dumps(active_spec_dict()))


def open_layer() -> list[Any] | None:
    """[part, index] of the layer whose editor is open, or None."""
    return st.session_state.get(OPEN_KEY)


def on_open(part: str, index: int) -> None:
    """The edit button: open this layer's editor (closing the other), or close it."""
    st.session_state[OPEN_KEY] = None if open_layer() == [part, index] else [part, index]


def on_add(part: str) -> None:
    data = spec_dict()
    kind = st.session_state[f"arch_add_type_{part}"]
    data[part].append(new_layer(kind))
    st.session_state[OPEN_KEY] = [part, len(data[part]) - 1]  # the new layer, ready to set
    replace_spec(data)


def on_remove(part: str, index: int) -> None:
    data = spec_dict()
    del data[part][index]
    opened = open_layer()
    if opened is not None and opened[0] == part and opened[1] >= index:
        st.session_state[OPEN_KEY] = None if opened[1] == index else [part, opened[1] - 1]
    replace_spec(data)


def on_move(part: str, index: int, step: int) -> None:
    data = spec_dict()
    layers = data[part]
    target = index + step
    if 0 <= target < len(layers):
        layers[index], layers[target] = layers[target], layers[index]
        opened = open_layer()
        if opened == [part, index]:  # the open editor follows its layer
            st.session_state[OPEN_KEY] = [part, target]
        elif opened == [part, target]:
            st.session_state[OPEN_KEY] = [part, index]
        replace_spec(data)


def on_change_type(part: str, index: int, key: str) -> None:
    data = spec_dict()
    data[part][index] = new_layer(st.session_state[key])
    replace_spec(data)


def on_preset() -> None:
    name = st.session_state["arch_preset"]
    replace_spec(preset(name).to_dict(), f"Loaded the {name} preset.")


def on_mirror() -> None:
    data = spec_dict()
    try:
        spec = ArchitectureSpec.from_dict(data)
        decoder = mirror(spec.encoder, spec.input_shape)
    except ValueError as error:
        st.session_state[MESSAGE_KEY] = (
            "error",
            f"Cannot mirror this encoder: {plain_markdown(str(error))}",
        )
        return
    data["decoder"] = [layer_to_dict(layer) for layer in decoder]
    replace_spec(data, "The decoder now mirrors the encoder.")


def on_fix(fixed: dict[str, Any], description: str) -> None:
    replace_spec(fixed, f"Applied: {description}")


def move_buttons(columns: list[Any], part: str, index: int, count: int, key: str) -> None:
    """Open/close, move up, move down and remove: one icon button in each of four columns."""
    opened = open_layer() == [part, index]
    buttons = (  # (icon, key, callback, its arguments, disabled, help)
        (
            ":material/expand_less:" if opened else ":material/edit:",
            "edit",
            on_open,
            (part, index),
            False,
            "Close this layer's settings" if opened else "Edit this layer",
        ),
        (":material/arrow_upward:", "up", on_move, (part, index, -1), index == 0, "Move up"),
        (
            ":material/arrow_downward:",
            "down",
            on_move,
            (part, index, 1),
            index == count - 1,
            "Move down",
        ),
        (":material/delete:", "remove", on_remove, (part, index), False, "Remove this layer"),
    )
    for column, (icon, name, callback, args, disabled, help_text) in zip(
        columns, buttons, strict=True
    ):
        column.button(
            icon,
            key=f"{key}_{name}_v{version()}",
            on_click=callback,
            args=args,
            disabled=disabled,
            help=help_text,
            type="tertiary",
        )


def layer_editor(
    part: str, index: int, layer: dict[str, Any], count: int, lines: dict[tuple[str, int], Any]
) -> dict[str, Any]:
    """One layer: a one-line summary with its buttons, or, for the one open layer, its type and
    its kind's widgets (two compact rows); returns the layer dict as edited. A summary's line is
    an empty slot put in ``lines``, filled once the shapes of this run's design are known."""
    key = f"arch_{part}_{index}"
    suffix = f"_v{version()}"
    if open_layer() != [part, index]:
        with st.container(border=True, key=f"{key}_line{suffix}"):
            with st.container(key=f"{key}_row{suffix}"):
                top = st.columns([8, 1, 1, 1, 1], vertical_alignment="center", gap="small")
            lines[part, index] = top[0].empty()
            move_buttons(top[1:], part, index, count, key)
        return layer
    with st.container(border=True, key=f"{key}_open{suffix}"):
        with st.container(key=f"{key}_row{suffix}"):
            top = st.columns([5, 1, 1, 1, 1], vertical_alignment="bottom", gap="small")
        head = [top[0], *st.columns(3)]
        type_key = f"{key}_type{suffix}"
        kind_select(
            head[0],
            f"{part}[{index}]",
            type_key,
            layer.get("type", "conv"),
            on_change=on_change_type,
            args=(part, index, type_key),
        )
        move_buttons(top[1:], part, index, count, key)
        return layer_widgets(layer, Slot(head[1:4], key, suffix))


def part_editor(
    part: str, data: dict[str, Any], lines: dict[tuple[str, int], Any]
) -> list[dict[str, Any]]:
    """All layers of the encoder or decoder (one open at a time), plus the add-a-layer row."""
    layers = data[part]
    edited = [
        layer_editor(part, index, layer, len(layers), lines) for index, layer in enumerate(layers)
    ]
    columns = st.columns([3, 1], vertical_alignment="bottom")  # the button level with the select
    kind_select(columns[0], f"Add a layer to the {part}", f"arch_add_type_{part}")
    columns[1].button("Add", key=f"arch_add_{part}", on_click=on_add, args=(part,), width="stretch")
    return edited


def fill_lines(
    lines: dict[tuple[str, int], Any], edited: dict[str, Any], report: Any | None
) -> None:
    """Each closed layer's line: its place, its label and output shape from this run's report
    (the layer's kind alone when the design cannot be computed)."""
    rows: dict[tuple[str, int], list[Any]] = {}
    for row in report.rows if report is not None else ():
        rows.setdefault((row.part, row.index), []).append(row)
    for (part, index), slot in lines.items():
        found = rows.get((part, index))
        if found:
            row = found[0]
            shape = "x".join(str(n) for n in row.output_shape)
            label = row.label.removesuffix(f" ({row.head})") if row.head else row.label
            heads = " and ".join(each.head for each in found if each.head)
            # a variational code: one layer, two maps (the table has a row for each)
            maps = " " + plain_markdown(f"each, {heads} maps") if heads else ""
            text = f"{plain_markdown(label)} → **{shape}**{maps}"
        else:
            text = plain_markdown(kind_title(edited[part][index].get("type", "conv")))
        slot.markdown(f"{plain_code(f'{part}[{index}]')} {text}")


def load_upload() -> None:
    """Apply an uploaded architecture JSON once per file."""
    upload = st.session_state.get("arch_upload")
    if upload is None or st.session_state.get(UPLOAD_SEEN_KEY) == upload.file_id:
        return
    st.session_state[UPLOAD_SEEN_KEY] = upload.file_id
    try:
        if upload.size > MAX_SPEC_BYTES:  # refused before it is read into a string and parsed
            raise ValueError(
                f"an architecture file may hold at most {MAX_SPEC_BYTES:,} bytes. "
                f"Received: {upload.size:,} bytes"
            )
        spec = ArchitectureSpec.from_json(upload.getvalue())
    except ValueError as error:
        name, reason = plain_markdown(upload.name), plain_markdown(str(error))
        st.session_state[MESSAGE_KEY] = ("error", f"{name} was not loaded: {reason}")
        return
    replace_spec(spec.to_dict(), f"Loaded {plain_markdown(upload.name)}.")


def variational_editor(current: Any) -> dict[str, Any] | None:
    """The variational toggle with its beta and KL warm-up; the spec's ``variational`` object, or
    None for a plain autoencoder."""
    current = current if isinstance(current, dict) else None
    on = st.toggle(
        "Variational autoencoder",
        value=current is not None,
        key=f"arch_variational_v{version()}",
        help="The code becomes two maps of its shape, a mean and a log-variance; training decodes "
        "a sample from them and adds beta x the KL divergence from N(0, 1) to the loss, so "
        "random codes from N(0, 1) decode to plausible images.",
    )
    if not on:
        return None
    current = current or {}
    columns = st.columns(2)
    beta = columns[0].number_input(
        "beta (KL weight)",
        min_value=0.001,
        max_value=MAX_BETA,
        value=float(current.get("beta", 1.0)),
        step=0.1,
        format="%.3f",
        key=f"arch_beta_v{version()}",
        help="1 is the evidence lower bound with the bce loss; higher pulls the codes harder "
        "toward N(0, 1) (smoother samples, blurrier reconstructions).",
    )
    warmup = columns[1].number_input(
        "KL warm-up (epochs)",
        min_value=0,
        max_value=MAX_WARMUP_EPOCHS,
        value=int(current.get("warmup_epochs", 0)),
        key=f"arch_warmup_v{version()}",
        help="The KL weight rises linearly from 0 to beta over these first epochs (0: none).",
    )
    return {"beta": float(beta), "warmup_epochs": int(warmup)}


# ---------------------------------------------------------------- page

st.title("Architecture")
st.html(LAYOUT_CSS)
st.caption(
    "Edit the network; every shape, parameter count and formula below follows at once. "
    "The design carries over to the Train page."
)

top = st.columns([2, 1, 2, 2])
top[0].selectbox("Start from a preset", list(PRESETS), key="arch_preset")
top[1].button("Load preset", key="arch_load_preset", on_click=on_preset, width="stretch")
top[2].file_uploader(
    "…or upload an architecture JSON", type=["json"], key="arch_upload", on_change=load_upload
)
top[3].button(
    "Mirror the encoder",
    key="arch_mirror",
    on_click=on_mirror,
    width="stretch",
    help="Derive the decoder from the encoder: pooling becomes up-sampling, strided "
    "convolutions become transposed ones, and a sigmoid convolution gives the channels.",
)

message = st.session_state.pop(MESSAGE_KEY, None)
if message:  # (kind, markdown); material icons render without an emoji font (a ❌ did not)
    kind, text = message
    if kind == "error":
        st.error(text, icon=":material/error:")
    else:
        st.success(text, icon=":material/check_circle:")

data = spec_dict()
editor, results = st.columns([1, 1], gap="large")
with editor:
    name = st.text_input(
        "Name", data.get("name", "custom"), max_chars=MAX_NAME_LENGTH, key=f"arch_name_v{version()}"
    )
    shape = data.get("input_shape", [28, 28, 1])
    columns = st.columns(3)
    height = columns[0].number_input(
        "input height", 1, MAX_IMAGE_SIDE, int(shape[0]), key=f"arch_in_h_v{version()}"
    )
    width = columns[1].number_input(
        "input width", 1, MAX_IMAGE_SIDE, int(shape[1]), key=f"arch_in_w_v{version()}"
    )
    channels = columns[2].number_input(
        "channels",
        1,
        MAX_CHANNELS,
        int(shape[2]) if len(shape) > 2 else 1,
        key=f"arch_in_c_v{version()}",
    )
    variational = variational_editor(data.get("variational"))
    lines: dict[tuple[str, int], Any] = {}  # closed layers' summary lines, filled below
    st.subheader("Encoder")
    encoder = part_editor("encoder", data, lines)
    st.subheader("Decoder")
    decoder = part_editor("decoder", data, lines)

edited = {
    "name": name.strip() or "custom",
    "input_shape": [int(height), int(width), int(channels)],
    "encoder": encoder,
    "decoder": decoder,
}
if variational is not None:
    edited["variational"] = variational
remember(SPEC_KEY, edited)

with results, st.container(key="arch_summary"):
    spec = None
    report = None
    try:
        spec = ArchitectureSpec.from_dict(edited)
        report = compute_shapes(spec)
    except ShapeError as error:
        st.error(f"**This design cannot be built.** {error}", icon=":material/block:")
        fix_buttons(error.fixes, "arch_fix_layer_", on_fix)
    except ValueError as error:
        st.error(f"**This design is not valid.** {error}", icon=":material/block:")
        fix_buttons(repairs(edited), "arch_fix_value_", on_fix)

    if report is not None:
        metrics = st.columns(3)
        metrics[0].metric("Latent code", "x".join(str(n) for n in report.latent_shape))
        metrics[1].metric(
            "Compression", f"{report.compression_ratio:.1f}x", help="input values / code values"
        )
        metrics[2].metric("Parameters", f"{report.total_params:,}")
        output = "x".join(str(n) for n in report.output_shape)
        memory = estimate_memory(report, DEFAULT_BATCH)
        if report.matches and not memory.fits:
            st.error(
                f"**Too big to train here.** The decoder comes back to the input shape ({output}), "
                f"but the {memory.describe()}; the largest tensor is {memory.largest}. At most "
                f"batch {memory.batch_that_fits} fits.",
                icon=":material/memory:",
            )
        elif report.matches:
            st.success(
                f"The decoder comes back to the input shape ({output}): this design can be trained.",
                icon=":material/check_circle:",
            )
            st.caption(f"Estimated {memory.describe()}.")
        else:
            st.warning(f"**Shape mismatch.** {report.problem}", icon=":material/warning:")
            if report.fixes:
                st.markdown("Suggested fixes (each one checked):")
            fix_buttons(report.fixes, "arch_fix_", on_fix)
        st.plotly_chart(shape_diagram(report), width="stretch", key="arch_diagram")

fill_lines(lines, edited, report)
if report is not None and spec is not None:  # the details, full width below the editor
    table = [
        {
            "layer": row.location,
            "type": row.label,
            "output": "x".join(str(n) for n in row.output_shape),
            "params": row.params,
            "shape formula": row.formula,
            "parameter formula": row.params_formula,
        }
        for row in report.rows
    ]
    st.dataframe(table, hide_index=True, width="stretch", key="arch_table")
    st.caption(
        f"Encoder {report.encoder_params:,} parameters · decoder {report.decoder_params:,} · "
        f"code {report.latent_size} values from {report.input_shape[0] * report.input_shape[1] * report.input_shape[2]} inputs"
    )
    st.download_button(
        "Download the architecture (JSON)",
        spec.to_json(),
        file_name=f"{spec.name}.json",
        mime="application/json",
        key="arch_download",
    )
    st.subheader("The ideas, with your numbers")
    with st.expander("Convolution"):
        st.markdown(explain.explain_convolution(report))
    with st.expander("Padding"):
        st.markdown(explain.explain_padding(report))
    with st.expander("Pooling"):
        st.markdown(explain.explain_pooling(report))
    with st.expander("Up-sampling and transposed convolution"):
        st.markdown(explain.explain_upsampling(report))
    cropping = explain.explain_cropping(report)
    if cropping:
        with st.expander("Cropping and zero padding"):
            st.markdown(cropping)

refresh_sidebar()  # the sidebar was drawn before this page changed the design
