"""The layer editor's widgets: one function per layer kind, in a table keyed by the kind's class, and
the widgets the Architecture page draws in more than one place (the kind select, the padding select,
the suggested-fix buttons).

Every widget keeps its key (``arch_encoder_2_filters_v3``...): the page tests find widgets by key,
and the ``_v<n>`` generation makes every widget restart from the spec after a structural change.
Limits come from cae.spec, where the spec's validation reads them too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import streamlit as st

from cae.shapes import Fix, effective_kernel_text, runnable_output_padding
from cae.spec import (
    ACTIVATIONS,
    INTERPOLATIONS,
    KINDS,
    LAYER_BY_NAME,
    MAX_AMOUNT,
    MAX_DEPTH_MULTIPLIER,
    MAX_DILATION,
    MAX_FILTERS,
    MAX_KERNEL,
    MAX_SCALE,
    MAX_STRIDE,
    PADDINGS,
    POOL_MODES,
    BatchNorm,
    Conv,
    Crop,
    Deconv,
    Depthwise,
    Dropout,
    Layer,
    Pad,
    Pool,
    SepConv,
    Upsample,
    layer_from_dict,
    layer_to_dict,
)
from cae.text import plain_markdown

KIND_NAMES = list(LAYER_BY_NAME)  # the kinds a layer can have, in the order of LAYER_TYPES

# The layer a user gets when adding one of each kind, or switching a layer to it.
NEW_LAYERS: dict[type[Layer], Layer] = {
    Conv: Conv(8),
    Deconv: Deconv(8, strides=(2, 2)),  # up-samples by 2, what a transposed convolution is for
    SepConv: SepConv(8),
    Depthwise: Depthwise(),
    Pool: Pool(),
    Upsample: Upsample(),
    Crop: Crop(),
    Pad: Pad(),
    BatchNorm: BatchNorm(),
    Dropout: Dropout(),
}


@dataclass(frozen=True)
class Slot:
    """Where one layer's own widgets go: three columns of its header row, and its widget keys."""

    columns: Sequence[Any]  # the header's three free columns, left to right
    prefix: str  # the layer's place, e.g. "arch_encoder_2"
    generation: str  # e.g. "_v3"; bumps on every structural change

    def key(self, name: str, tail: str = "") -> str:
        """A widget key such as ``arch_encoder_2_kernel_v3_h``."""
        return f"{self.prefix}_{name}{self.generation}{tail}"


def new_layer(kind: str) -> dict[str, Any]:
    """The JSON dict of a new layer of the kind named ``kind`` (e.g. "pool")."""
    return layer_to_dict(NEW_LAYERS[LAYER_BY_NAME[kind]])


def kind_title(kind: str) -> str:
    """What the editor calls the kind named ``kind``: "pool" is "Pooling"."""
    return KINDS[LAYER_BY_NAME[kind]].title


KIND_HELP = "\n".join(f"- **{kind.title}**: {kind.summary}" for kind in KINDS.values())


def kind_select(container: Any, label: str, key: str, kind: Any = None, **options: Any) -> str:
    """A select of layer kinds shown by their titles, on ``kind`` (else the first); its help says
    what each kind computes."""
    index = KIND_NAMES.index(kind) if kind in KIND_NAMES else 0
    options.setdefault("help", KIND_HELP)
    return container.selectbox(
        label, KIND_NAMES, index=index, format_func=kind_title, key=key, **options
    )


def padding_select(column: Any, layer: dict[str, Any], key: str) -> str:
    """The 'same'/'valid' select of a convolution or a pooling layer."""
    return column.selectbox(
        "padding", PADDINGS, index=PADDINGS.index(layer.get("padding", "same")), key=key
    )


def fix_buttons(
    fixes: Sequence[Fix], key: str, on_fix: Callable[[dict[str, Any], str], None]
) -> None:
    """One "Fix: ..." button per suggested fix, keyed ``<key><number>``; a click calls
    ``on_fix(the fixed spec's dict, the fix's description)``."""
    for number, fix in enumerate(fixes):
        st.button(
            f"Fix: {fix.description}",
            key=f"{key}{number}",
            on_click=on_fix,
            args=(fix.spec.to_dict(), fix.description),
        )


def number(
    column: Any,
    label: str,
    value: int,
    key: str,
    minimum: int,
    maximum: int,
    help: str | None = None,
) -> int:
    """One compact integer input."""
    return int(column.number_input(label, minimum, maximum, int(value), key=key, help=help))


def as_pair(value: Any) -> list[int]:
    """A kernel/stride/size value as [height, width]."""
    return list(value) if isinstance(value, (list, tuple)) else [value, value]


# ---------------------------------------------------------------- widgets: one function per kind
# Each draws one kind's widgets for a layer dict (in the slot's header columns and rows below) and
# returns the fields as edited.


def convolution_widgets(layer: dict[str, Any], slot: Slot) -> dict[str, Any]:
    """Every convolution kind's widgets, as its fields ask: filters (or, for a kind without them,
    the depth multiplier), activation and padding in the header; kernel and strides below, then
    the dilation with the kernel's span (k + (k - 1)(d - 1)) when it is not 1, and the depth
    multiplier there for a kind with both."""
    head = slot.columns
    has = {item.name for item in fields(LAYER_BY_NAME[layer.get("type", "conv")])}
    depth_help = "Kernels per input channel: the layer's depthwise step gives channels x this."
    out: dict[str, Any] = {}
    if "filters" in has:
        out["filters"] = number(
            head[0], "filters", layer.get("filters", 8), slot.key("filters"), 1, MAX_FILTERS
        )
    out |= {
        "activation": head[1].selectbox(
            "activation",
            ACTIVATIONS,
            index=ACTIVATIONS.index(layer.get("activation", "relu")),
            key=slot.key("activation"),
        ),
        "padding": padding_select(head[2], layer, slot.key("padding")),
    }
    row = st.columns(4)
    kernel, strides = as_pair(layer.get("kernel", 3)), as_pair(layer.get("strides", 1))
    out["kernel"] = [
        number(row[0], "kernel H", kernel[0], slot.key("kernel", "_h"), 1, MAX_KERNEL),
        number(row[1], "kernel W", kernel[1], slot.key("kernel", "_w"), 1, MAX_KERNEL),
    ]
    out["strides"] = [
        number(row[2], "stride H", strides[0], slot.key("strides", "_h"), 1, MAX_STRIDE),
        number(row[3], "stride W", strides[1], slot.key("strides", "_w"), 1, MAX_STRIDE),
    ]
    row = st.columns(4)
    dilation = as_pair(layer.get("dilation", 1))
    spread = "Spreads the kernel's taps d apart: it spans k + (k - 1)(d - 1). Only with strides 1."
    out["dilation"] = [
        number(
            row[0], "dilation H", dilation[0], slot.key("dilation", "_h"), 1, MAX_DILATION, spread
        ),
        number(
            row[1], "dilation W", dilation[1], slot.key("dilation", "_w"), 1, MAX_DILATION, spread
        ),
    ]
    span = effective_kernel_text(_pair(out["kernel"]), _pair(out["dilation"]))
    if span:
        row[2].caption(plain_markdown(f"kernel span {span}"))  # its "*" are not emphasis
    if "depth_multiplier" in has:
        depth = layer.get("depth_multiplier", 1)
        column = row[3] if "filters" in has else head[0]
        out["depth_multiplier"] = number(
            column, "depth", depth, slot.key("depth"), 1, MAX_DEPTH_MULTIPLIER, depth_help
        )
    return out


def _pair(values: list[int]) -> tuple[int, int]:
    return (int(values[0]), int(values[1]))


def default_output_padding(layer: dict[str, Any]) -> list[int] | None:
    """The output padding the toggle starts from, as the shape check's rule gives it: 0 per axis,
    or 1 where TensorFlow cannot run 0 (padding 'same' with an even kernel span); None when no
    value below the strides runs, so the toggle stays off ([0, 0] while the layer is invalid)."""
    try:
        deconv = layer_from_dict({**layer, "type": "deconv", "output_padding": None})
    except ValueError:
        return [0, 0]
    extra = runnable_output_padding(deconv)  # type: ignore[arg-type]
    return None if extra is None else list(extra)


def deconv_widgets(layer: dict[str, Any], slot: Slot) -> dict[str, Any]:
    """A convolution's widgets, and an optional output padding below; switched on, it starts from
    a value TensorFlow can run, and it cannot be switched on where none exists."""
    out = convolution_widgets(layer, slot)
    start = default_output_padding(out)
    given = layer.get("output_padding")
    has_padding = st.toggle(
        "output padding",
        value=given is not None,
        key=slot.key("has_op"),
        disabled=given is None and start is None,
        help="Adds rows/columns on one side of a transposed convolution's output; must be below "
        "the stride, and at least 1 with padding 'same' and an even kernel span (TensorFlow "
        "cannot run 0 there).",
    )
    if has_padding:
        extra = as_pair(given) if given is not None else (start or [0, 0])
        row = st.columns(4)
        most = MAX_STRIDE - 1  # below the largest stride
        out["output_padding"] = [
            number(row[0], "output padding H", extra[0], slot.key("op", "_h"), 0, most),
            number(row[1], "output padding W", extra[1], slot.key("op", "_w"), 0, most),
        ]
    return out


def pool_widgets(layer: dict[str, Any], slot: Slot) -> dict[str, Any]:
    """Mode, own-strides toggle and padding in the header; size (and strides) below."""
    head = slot.columns
    out: dict[str, Any] = {
        "mode": head[0].selectbox(
            "mode",
            POOL_MODES,
            index=POOL_MODES.index(layer.get("mode", "max")),
            key=slot.key("mode"),
        ),
        "padding": padding_select(head[2], layer, slot.key("padding")),
    }
    custom = head[1].toggle(
        "own strides",
        value=layer.get("strides") is not None,
        key=slot.key("custom_strides"),
        help="By default a pool steps by its own size.",
    )
    row = st.columns(4)
    size = as_pair(layer.get("size", 2))
    out["size"] = [
        number(row[0], "size H", size[0], slot.key("size", "_h"), 1, MAX_KERNEL),
        number(row[1], "size W", size[1], slot.key("size", "_w"), 1, MAX_KERNEL),
    ]
    if custom:
        strides = as_pair(layer.get("strides") or out["size"])
        out["strides"] = [
            number(row[2], "stride H", strides[0], slot.key("strides", "_h"), 1, MAX_STRIDE),
            number(row[3], "stride W", strides[1], slot.key("strides", "_w"), 1, MAX_STRIDE),
        ]
    return out


def upsample_widgets(layer: dict[str, Any], slot: Slot) -> dict[str, Any]:
    """Size and interpolation, all in the header."""
    head = slot.columns
    size = as_pair(layer.get("size", 2))
    return {
        "size": [
            number(head[0], "size H", size[0], slot.key("size", "_h"), 1, MAX_SCALE),
            number(head[1], "size W", size[1], slot.key("size", "_w"), 1, MAX_SCALE),
        ],
        "interpolation": head[2].selectbox(
            "interpolation",
            INTERPOLATIONS,
            index=INTERPOLATIONS.index(layer.get("interpolation", "nearest")),
            key=slot.key("interpolation"),
        ),
    }


def amount_widgets(layer: dict[str, Any], slot: Slot) -> dict[str, Any]:
    """Top, bottom, left and right amounts of a crop or a zero padding, in a row below."""
    amount = layer_from_dict({"type": "crop", "amount": layer.get("amount", 1)}, "amount").amount
    row = st.columns(4)
    names = ("top", "bottom", "left", "right")
    defaults = (amount[0][0], amount[0][1], amount[1][0], amount[1][1])
    values = [
        number(column, name, default, slot.key("amount", f"_{name}"), 0, MAX_AMOUNT)
        for column, name, default in zip(row, names, defaults)
    ]
    return {"amount": [[values[0], values[1]], [values[2], values[3]]]}


def batchnorm_widgets(layer: dict[str, Any], slot: Slot) -> dict[str, Any]:
    """None: batch normalisation has nothing to set."""
    return {}


def dropout_widgets(layer: dict[str, Any], slot: Slot) -> dict[str, Any]:
    """The rate, in the header."""
    rate = slot.columns[0].number_input(
        "rate", 0.0, 0.9, float(layer.get("rate", 0.1)), 0.05, key=slot.key("rate")
    )
    return {"rate": float(rate)}


LAYER_WIDGETS: dict[type[Layer], Callable[[dict[str, Any], Slot], dict[str, Any]]] = {
    Conv: convolution_widgets,
    Deconv: deconv_widgets,
    SepConv: convolution_widgets,
    Depthwise: convolution_widgets,
    Pool: pool_widgets,
    Upsample: upsample_widgets,
    Crop: amount_widgets,
    Pad: amount_widgets,
    BatchNorm: batchnorm_widgets,
    Dropout: dropout_widgets,
}


def layer_widgets(layer: dict[str, Any], slot: Slot) -> dict[str, Any]:
    """The widgets of one layer dict's kind; returns the layer dict as edited (a layer of an unknown
    type keeps only its type)."""
    kind = layer.get("type", "conv")
    cls = LAYER_BY_NAME.get(kind) if isinstance(kind, str) else None
    return {"type": kind, **(LAYER_WIDGETS[cls](layer, slot) if cls is not None else {})}
