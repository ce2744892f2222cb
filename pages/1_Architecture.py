"""Architecture: edit the layers, see every shape and parameter count at once, fix mismatches."""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

from cae import explain
from cae.plots import shape_diagram
from cae.shapes import ShapeError, compute_shapes, mirror
from cae.spec import (
    ACTIVATIONS,
    INTERPOLATIONS,
    LAYER_BY_NAME,
    LAYER_TITLES,
    PADDINGS,
    POOL_MODES,
    PRESETS,
    ArchitectureSpec,
    layer_from_dict,
    layer_to_dict,
    preset,
)
from ui.state import SPEC_KEY, active_spec_dict, page_frame, remember

page_frame("Architecture")

VERSION_KEY = "arch_version"  # bumps on every structural change so widgets restart from the spec
UPLOAD_SEEN_KEY = "arch_upload_seen"
MESSAGE_KEY = "arch_message"

DEFAULT_LAYERS: dict[str, dict[str, Any]] = {
    "conv": {"type": "conv", "filters": 8, "kernel": [3, 3]},
    "deconv": {"type": "deconv", "filters": 8, "kernel": [3, 3], "strides": [2, 2]},
    "pool": {"type": "pool", "mode": "max", "size": [2, 2]},
    "upsample": {"type": "upsample", "size": [2, 2]},
    "crop": {"type": "crop", "amount": [[1, 1], [1, 1]]},
    "pad": {"type": "pad", "amount": [[1, 1], [1, 1]]},
    "batchnorm": {"type": "batchnorm"},
    "dropout": {"type": "dropout", "rate": 0.1},
}


def version() -> int:
    """The current widget generation."""
    return st.session_state.setdefault(VERSION_KEY, 0)


def replace_spec(data: dict[str, Any], message: str | None = None) -> None:
    """Swap in a new spec dict and restart every layer widget from it."""
    remember(SPEC_KEY, data)
    st.session_state[VERSION_KEY] = version() + 1
    if message:
        st.session_state[MESSAGE_KEY] = message


def spec_dict() -> dict[str, Any]:
    """A deep copy of the spec being edited."""
    return json.loads(json.dumps(active_spec_dict()))


def on_add(part: str) -> None:
    data = spec_dict()
    kind = st.session_state[f"arch_add_type_{part}"]
    data[part].append(dict(DEFAULT_LAYERS[kind]))
    replace_spec(data)


def on_remove(part: str, index: int) -> None:
    data = spec_dict()
    del data[part][index]
    replace_spec(data)


def on_move(part: str, index: int, step: int) -> None:
    data = spec_dict()
    layers = data[part]
    target = index + step
    if 0 <= target < len(layers):
        layers[index], layers[target] = layers[target], layers[index]
        replace_spec(data)


def on_change_type(part: str, index: int, key: str) -> None:
    data = spec_dict()
    data[part][index] = dict(DEFAULT_LAYERS[st.session_state[key]])
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
        st.session_state[MESSAGE_KEY] = f"Cannot mirror this encoder: {error}"
        return
    data["decoder"] = [layer_to_dict(layer) for layer in decoder]
    replace_spec(data, "The decoder now mirrors the encoder.")


def on_fix(fixed: dict[str, Any], description: str) -> None:
    replace_spec(fixed, f"Applied: {description}")


def number(column: Any, label: str, value: int, key: str, minimum: int, maximum: int) -> int:
    """One compact integer input."""
    return int(column.number_input(label, minimum, maximum, int(value), key=key))


def as_pair(value: Any) -> list[int]:
    """A kernel/stride/size value as [height, width]."""
    return list(value) if isinstance(value, (list, tuple)) else [value, value]


def layer_editor(part: str, index: int, layer: dict[str, Any], count: int) -> dict[str, Any]:
    """The widgets of one layer (two compact rows); returns the layer dict as edited."""
    key = f"arch_{part}_{index}"
    suffix = f"_v{version()}"
    kind = layer.get("type", "conv")
    out: dict[str, Any] = {"type": kind}
    with st.container(border=True):
        top = st.columns([5, 1, 1, 1], vertical_alignment="bottom")
        head = [top[0], *st.columns(3), *top[1:]]
        type_key = f"{key}_type{suffix}"
        head[0].selectbox(
            f"{part}[{index}]",
            list(DEFAULT_LAYERS),
            index=list(DEFAULT_LAYERS).index(kind) if kind in DEFAULT_LAYERS else 0,
            format_func=lambda name: LAYER_TITLES[LAYER_BY_NAME[name]],
            key=type_key,
            on_change=on_change_type,
            args=(part, index, type_key),
        )
        head[4].button(":material/arrow_upward:", key=f"{key}_up{suffix}", on_click=on_move,
                       args=(part, index, -1), disabled=index == 0, help="Move up")  # fmt: skip
        head[5].button(":material/arrow_downward:", key=f"{key}_down{suffix}", on_click=on_move,
                       args=(part, index, 1), disabled=index == count - 1, help="Move down")  # fmt: skip
        head[6].button(":material/delete:", key=f"{key}_remove{suffix}", on_click=on_remove,
                       args=(part, index), help="Remove this layer")  # fmt: skip
        if kind in ("conv", "deconv"):
            out["filters"] = number(
                head[1], "filters", layer.get("filters", 8), f"{key}_filters{suffix}", 1, 1024
            )
            out["activation"] = head[2].selectbox(
                "activation",
                ACTIVATIONS,
                index=ACTIVATIONS.index(layer.get("activation", "relu")),
                key=f"{key}_activation{suffix}",
            )
            out["padding"] = head[3].selectbox(
                "padding",
                PADDINGS,
                index=PADDINGS.index(layer.get("padding", "same")),
                key=f"{key}_padding{suffix}",
            )
            row = st.columns(4)
            kernel, strides = as_pair(layer.get("kernel", 3)), as_pair(layer.get("strides", 1))
            out["kernel"] = [
                number(row[0], "kernel H", kernel[0], f"{key}_kernel{suffix}_h", 1, 64),
                number(row[1], "kernel W", kernel[1], f"{key}_kernel{suffix}_w", 1, 64),
            ]
            out["strides"] = [
                number(row[2], "stride H", strides[0], f"{key}_strides{suffix}_h", 1, 16),
                number(row[3], "stride W", strides[1], f"{key}_strides{suffix}_w", 1, 16),
            ]
            if kind == "deconv":
                has_padding = st.toggle(
                    "output padding",
                    value=layer.get("output_padding") is not None,
                    key=f"{key}_has_op{suffix}",
                    help="Adds rows/columns on one side of a transposed convolution's output; must be below the stride.",
                )
                if has_padding:
                    extra = as_pair(layer.get("output_padding") or 0)
                    row = st.columns(4)
                    out["output_padding"] = [
                        number(row[0], "output padding H", extra[0], f"{key}_op{suffix}_h", 0, 15),
                        number(row[1], "output padding W", extra[1], f"{key}_op{suffix}_w", 0, 15),
                    ]
        elif kind == "pool":
            out["mode"] = head[1].selectbox(
                "mode",
                POOL_MODES,
                index=POOL_MODES.index(layer.get("mode", "max")),
                key=f"{key}_mode{suffix}",
            )
            out["padding"] = head[3].selectbox(
                "padding",
                PADDINGS,
                index=PADDINGS.index(layer.get("padding", "same")),
                key=f"{key}_padding{suffix}",
            )
            custom = head[2].toggle(
                "own strides",
                value=layer.get("strides") is not None,
                key=f"{key}_custom_strides{suffix}",
                help="By default a pool steps by its own size.",
            )
            row = st.columns(4)
            size = as_pair(layer.get("size", 2))
            out["size"] = [
                number(row[0], "size H", size[0], f"{key}_size{suffix}_h", 1, 64),
                number(row[1], "size W", size[1], f"{key}_size{suffix}_w", 1, 64),
            ]
            if custom:
                strides = as_pair(layer.get("strides") or out["size"])
                out["strides"] = [
                    number(row[2], "stride H", strides[0], f"{key}_strides{suffix}_h", 1, 16),
                    number(row[3], "stride W", strides[1], f"{key}_strides{suffix}_w", 1, 16),
                ]
        elif kind == "upsample":
            size = as_pair(layer.get("size", 2))
            out["size"] = [
                number(head[1], "size H", size[0], f"{key}_size{suffix}_h", 1, 16),
                number(head[2], "size W", size[1], f"{key}_size{suffix}_w", 1, 16),
            ]
            out["interpolation"] = head[3].selectbox(
                "interpolation",
                INTERPOLATIONS,
                index=INTERPOLATIONS.index(layer.get("interpolation", "nearest")),
                key=f"{key}_interpolation{suffix}",
            )
        elif kind in ("crop", "pad"):
            amount = layer_from_dict(
                {"type": "crop", "amount": layer.get("amount", 1)}, "amount"
            ).amount
            row = st.columns(4)
            names = ("top", "bottom", "left", "right")
            defaults = (amount[0][0], amount[0][1], amount[1][0], amount[1][1])
            values = [
                number(column, name, default, f"{key}_amount{suffix}_{name}", 0, 512)
                for column, name, default in zip(row, names, defaults)
            ]
            out["amount"] = [[values[0], values[1]], [values[2], values[3]]]
        elif kind == "dropout":
            out["rate"] = float(
                head[1].number_input(
                    "rate", 0.0, 0.9, float(layer.get("rate", 0.1)), 0.05, key=f"{key}_rate{suffix}"
                )
            )
    return out


def part_editor(part: str, data: dict[str, Any]) -> list[dict[str, Any]]:
    """All layers of the encoder or decoder, plus the add-a-layer row."""
    layers = data[part]
    edited = [layer_editor(part, index, layer, len(layers)) for index, layer in enumerate(layers)]
    columns = st.columns([3, 1])
    columns[0].selectbox(
        f"Add a layer to the {part}",
        list(DEFAULT_LAYERS),
        format_func=lambda name: LAYER_TITLES[LAYER_BY_NAME[name]],
        key=f"arch_add_type_{part}",
    )
    columns[1].button("Add", key=f"arch_add_{part}", on_click=on_add, args=(part,), width="stretch")
    return edited


def load_upload() -> None:
    """Apply an uploaded architecture JSON once per file."""
    upload = st.session_state.get("arch_upload")
    if upload is None or st.session_state.get(UPLOAD_SEEN_KEY) == upload.file_id:
        return
    st.session_state[UPLOAD_SEEN_KEY] = upload.file_id
    try:
        spec = ArchitectureSpec.from_json(upload.getvalue())
    except ValueError as error:
        st.session_state[MESSAGE_KEY] = f"❌ {upload.name} was not loaded: {error}"
        return
    replace_spec(spec.to_dict(), f"Loaded {upload.name}.")


# ---------------------------------------------------------------- page

st.title("Architecture")
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
top[3].button("Mirror the encoder", key="arch_mirror", on_click=on_mirror, width="stretch",
              help="Derive the decoder from the encoder: pooling becomes up-sampling, strided "
              "convolutions become transposed ones, and a sigmoid convolution gives the channels.")  # fmt: skip

message = st.session_state.pop(MESSAGE_KEY, None)
if message:
    (st.error if message.startswith(("❌", "Cannot")) else st.success)(message)

data = spec_dict()
editor, results = st.columns([1, 1], gap="large")
with editor:
    name = st.text_input(
        "Name", data.get("name", "custom"), max_chars=100, key=f"arch_name_v{version()}"
    )
    shape = data.get("input_shape", [28, 28, 1])
    columns = st.columns(3)
    height = columns[0].number_input(
        "input height", 1, 1024, int(shape[0]), key=f"arch_in_h_v{version()}"
    )
    width = columns[1].number_input(
        "input width", 1, 1024, int(shape[1]), key=f"arch_in_w_v{version()}"
    )
    channels = columns[2].number_input(
        "channels", 1, 4, int(shape[2]) if len(shape) > 2 else 1, key=f"arch_in_c_v{version()}"
    )
    st.subheader("Encoder")
    encoder = part_editor("encoder", data)
    st.subheader("Decoder")
    decoder = part_editor("decoder", data)

edited = {
    "name": name.strip() or "custom",
    "input_shape": [int(height), int(width), int(channels)],
    "encoder": encoder,
    "decoder": decoder,
}
remember(SPEC_KEY, edited)

with results:
    spec = None
    report = None
    try:
        spec = ArchitectureSpec.from_dict(edited)
        report = compute_shapes(spec)
    except ShapeError as error:
        st.error(f"**This design cannot be built.** {error}", icon=":material/block:")
        for number, fix in enumerate(error.fixes):
            st.button(f"Fix: {fix.description}", key=f"arch_fix_layer_{number}", on_click=on_fix,
                      args=(fix.spec.to_dict(), fix.description))  # fmt: skip
    except ValueError as error:
        st.error(f"**This design is not valid.** {error}", icon=":material/block:")

    if report is not None:
        metrics = st.columns(3)
        metrics[0].metric("Latent code", "x".join(str(n) for n in report.latent_shape))
        metrics[1].metric(
            "Compression", f"{report.compression_ratio:.1f}x", help="input values / code values"
        )
        metrics[2].metric("Parameters", f"{report.total_params:,}")
        output = "x".join(str(n) for n in report.output_shape)
        if report.matches:
            st.success(
                f"The decoder comes back to the input shape ({output}): this design can be trained.",
                icon=":material/check_circle:",
            )
        else:
            st.warning(f"**Shape mismatch.** {report.problem}", icon=":material/warning:")
            if report.fixes:
                st.markdown("Suggested fixes (each one checked):")
            for number, fix in enumerate(report.fixes):
                st.button(f"Fix: {fix.description}", key=f"arch_fix_{number}", on_click=on_fix,
                          args=(fix.spec.to_dict(), fix.description))  # fmt: skip
        st.plotly_chart(shape_diagram(report), width="stretch", key="arch_diagram")
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
