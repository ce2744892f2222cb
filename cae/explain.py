"""The ideas behind each layer, explained with the user's own network and numbers (Markdown text).

Formulas come from cae.shapes as plain text (``3*3*1*16 + 16 = 160``, as the shape table shows
them) and go into the text as code spans (``_m``), shown verbatim: as plain markdown two ``*``
made the digits between them italic and the signs vanished ("(331*16 + 16 = 160)", issue 13).

Pure Python: these texts are computed from a ShapeReport, so the Architecture page can show them
without TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cae.shapes import LayerRow, ShapeReport, effective_kernel_text
from cae.spec import (
    KINDS,
    BatchNorm,
    Conv,
    Convolution,
    Crop,
    Deconv,
    Depthwise,
    Dropout,
    Layer,
    Pad,
    Pool,
    SepConv,
    Upsample,
    kind_of,
)
from cae.text import plain_code as _m


def _layer(report: ShapeReport, row: LayerRow) -> Layer:
    return getattr(report.spec, row.part)[row.index]


def _first_of_each(report: ShapeReport, kinds: tuple[type, ...]) -> list[tuple[LayerRow, Layer]]:
    """The first layer of each of ``kinds`` in the network, in the network's order."""
    found: dict[type, tuple[LayerRow, Layer]] = {}
    for row in report.rows:
        if row.head:  # a variational design's code maps are not layers of the spec
            continue
        layer = _layer(report, row)
        if type(layer) in kinds and type(layer) not in found:
            found[type(layer)] = (row, layer)
    return list(found.values())


def _first(report: ShapeReport, kinds: tuple[type, ...]) -> tuple[LayerRow, Layer] | None:
    found = _first_of_each(report, kinds)
    return found[0] if found else None


def _hw(shape: tuple[int, ...]) -> str:
    return f"{shape[0]}x{shape[1]}"


def _kinds(**trait: bool) -> tuple[type[Layer], ...]:
    """The kinds whose registry traits have the given values, in the registry's order."""
    return tuple(
        cls
        for cls, kind in KINDS.items()
        if all(getattr(kind, name) == value for name, value in trait.items())
    )


# ---------------------------------------------------------------- one paragraph per kind
# Each explains one layer of its kind with its row's numbers (input, output, formulas).


def _strides_and_dilation(row: LayerRow, layer: Convolution) -> str:
    """The sentences on a sliding kernel's strides and dilation, empty when both are 1."""
    text = ""
    if layer.strides != (1, 1):
        text += (
            f" With strides {layer.strides[0]}x{layer.strides[1]} the window jumps "
            f"{layer.strides[0]} rows and {layer.strides[1]} columns at a time, which down-samples."
        )
    if layer.dilation != (1, 1):
        (kh, kw), (dh, dw) = layer.kernel, layer.dilation
        sh, sw = layer.effective_kernel
        text += (
            f" With dilation {dh}x{dw} the {kh}x{kw} taps sit {dh} rows and {dw} columns apart, so "
            f"the window spans {sh}x{sw} pixels (k + (k - 1)(d - 1): "
            f"{_m(effective_kernel_text(layer.kernel, layer.dilation))}) with the same weights: a "
            "wider view for no extra parameters."
            + (
                " Keras allows it only with strides 1."
                if not kind_of(layer).strided_dilation
                else ""
            )
        )
    return text


def _output_size(row: LayerRow) -> str:
    return (
        f"\n\nOutput size: {_m(row.formula)}, so {_hw(row.input_shape)} becomes "
        f"{_hw(row.output_shape)}."
    )


def _conv_paragraph(row: LayerRow, layer: Conv) -> str:
    kh, kw = layer.kernel
    cin = row.input_shape[2]
    weights = kh * kw * cin
    return (
        f"**{row.location}** slides a {kh}x{kw} window over its {_hw(row.input_shape)}x{cin} input. "
        f"At each position it multiplies the {kh}x{kw}x{cin} = {weights} input values under the window by "
        f"{weights} weights, adds them up with a bias and applies `{layer.activation}`: that is one output "
        f"value. It does this with {layer.filters} different kernels, giving {layer.filters} channels, so "
        f"the layer learns {weights} x {layer.filters} weights + {layer.filters} biases = "
        f"**{row.params:,} parameters** ({_m(row.params_formula)})."
        + _output_size(row)
        + _strides_and_dilation(row, layer)
    )


def _sepconv_paragraph(row: LayerRow, layer: SepConv) -> str:
    kh, kw = layer.kernel
    cin, depth, filters = row.input_shape[2], layer.depth_multiplier, layer.filters
    dense = kh * kw * cin * filters + filters
    return (
        f"**{row.location}** (separable convolution) works in two steps. First each of its {cin} "
        f"input channel(s) is convolved on its own with {depth} {kh}x{kw} kernel(s) "
        f"({kh * kw * cin * depth} weights), giving {cin * depth} maps; then a 1x1 convolution "
        f"mixes those maps into {filters} channels ({cin * depth * filters} weights + {filters} "
        f"biases), and `{layer.activation}` is applied. That is **{row.params:,} parameters** "
        f"({_m(row.params_formula)}) where a plain {kh}x{kw} convolution to {filters} channels "
        f"would need {dense:,}: the same window, far fewer weights, because a kernel no longer "
        "looks at every channel at once." + _output_size(row) + _strides_and_dilation(row, layer)
    )


def _depthwise_paragraph(row: LayerRow, layer: Depthwise) -> str:
    kh, kw = layer.kernel
    cin, depth = row.input_shape[2], layer.depth_multiplier
    return (
        f"**{row.location}** (depthwise convolution) convolves each of its {cin} input channel(s) "
        f"on its own with {depth} {kh}x{kw} kernel(s), never mixing channels: {cin} x {depth} = "
        f"{cin * depth} output channels, **{row.params:,} parameters** ({_m(row.params_formula)}). "
        "It sees shapes within a channel but cannot combine channels; a 1x1 convolution after it "
        "does that (together they make a separable convolution)."
        + _output_size(row)
        + _strides_and_dilation(row, layer)
    )


def _deconv_paragraph(row: LayerRow, layer: Deconv) -> str:
    text = (
        f"**{row.location}** (transposed convolution, often called deconvolution) spreads each input "
        f"value over a {layer.kernel[0]}x{layer.kernel[1]} patch of the output, scaled by learned "
        f"weights, stepping {layer.strides[0]}x{layer.strides[1]}; overlapping patches add up. "
        f"Output size: {_m(row.formula)}, so {_hw(row.input_shape)} becomes {_hw(row.output_shape)}, "
        f"with {row.params:,} parameters ({_m(row.params_formula)})."
    )
    if layer.dilation != (1, 1):
        sh, sw = layer.effective_kernel
        text += (
            f" Its dilation {layer.dilation[0]}x{layer.dilation[1]} spreads the kernel's taps "
            f"apart, so each patch spans {sh}x{sw}."
        )
    return text


def _pool_paragraph(row: LayerRow, layer: Pool) -> str:
    ph, pw = layer.size
    sh, sw = layer.effective_strides
    kept = "the largest" if layer.mode == "max" else "the average"
    return (
        f"**{row.location}** cuts each channel into {ph}x{pw} windows (stepping {sh}x{sw}) and keeps "
        f"{kept} of the {ph * pw} values in each: {_hw(row.input_shape)} becomes "
        f"{_hw(row.output_shape)} ({_m(row.formula)}). It has no weights, keeps the channel count "
        f"({row.output_shape[2]}), and throws away {100 * (1 - 1 / (sh * sw)):.0f}% of the positions: "
        f"this is where the encoder squeezes the image."
    )


def _upsample_paragraph(row: LayerRow, layer: Upsample) -> str:
    how = "repeats each value" if layer.interpolation == "nearest" else "interpolates bilinearly"
    return (
        f"**{row.location}** (up-sampling) {how} to fill a {layer.size[0]}x{layer.size[1]} block: "
        f"{_hw(row.input_shape)} becomes {_hw(row.output_shape)} ({_m(row.formula)}). No weights: the "
        "convolution after it learns to sharpen the blocky result."
    )


def _amount_paragraph(row: LayerRow, layer: Crop | Pad, verb: str) -> str:
    (top, bottom), (left, right) = layer.amount
    return (
        f"**{row.location}** {verb} {top} row(s) at the top, {bottom} at the bottom, {left} column(s) at "
        f"the left and {right} at the right: {_m(row.formula)}."
    )


def _crop_paragraph(row: LayerRow, layer: Crop) -> str:
    return _amount_paragraph(row, layer, "removes")


def _pad_paragraph(row: LayerRow, layer: Pad) -> str:
    return _amount_paragraph(row, layer, "adds zeros for")


def _batchnorm_paragraph(row: LayerRow, layer: BatchNorm) -> str:
    channels = row.output_shape[2]
    return (
        f"**{row.location}** (batch normalisation) rescales each of its {channels} channel(s) to "
        "zero mean and unit variance over the batch while training (over the averages it kept, "
        "once trained), then by a learned scale and shift: "
        f"{_m(row.params_formula)} values, half of them trained. It keeps the shape "
        f"({_hw(row.output_shape)}x{channels}) and often lets a deeper network train faster."
    )


def _dropout_paragraph(row: LayerRow, layer: Dropout) -> str:
    return (
        f"**{row.location}** (dropout) sets a random {100 * layer.rate:g}% of its values to zero at "
        f"each training step and scales the rest up by 1 / (1 - {layer.rate:g}), so no value can be "
        "relied on alone; when the network is used it passes everything through unchanged. No "
        "weights, the shape unchanged."
    )


KIND_EXPLANATIONS: dict[type[Layer], Callable[[LayerRow, Any], str]] = {
    Conv: _conv_paragraph,
    Deconv: _deconv_paragraph,
    SepConv: _sepconv_paragraph,
    Depthwise: _depthwise_paragraph,
    Pool: _pool_paragraph,
    Upsample: _upsample_paragraph,
    Crop: _crop_paragraph,
    Pad: _pad_paragraph,
    BatchNorm: _batchnorm_paragraph,
    Dropout: _dropout_paragraph,
}


def _paragraphs(report: ShapeReport, kinds: tuple[type[Layer], ...]) -> list[str]:
    """The paragraph of the first layer of each of ``kinds`` present, in the network's order."""
    return [
        KIND_EXPLANATIONS[type(layer)](row, layer) for row, layer in _first_of_each(report, kinds)
    ]


# ---------------------------------------------------------------- topics: the page's explanations


def explain_convolution(report: ShapeReport) -> str:
    """What a convolution computes, with the first layer of each sliding convolution kind."""
    parts = _paragraphs(report, _kinds(convolution=True, transposed=False))
    if not parts:
        return "This network has no convolution yet: add one to see how it works."
    return "\n\n".join(parts)


def explain_padding(report: ShapeReport) -> str:
    """What 'same' and 'valid' padding do at the border, with the first convolution of any kind."""
    found = _first(report, _kinds(convolution=True))
    if found is None:
        return "Padding matters for convolutions; this network has none yet."
    row, layer = found
    kh, kw = layer.effective_kernel  # type: ignore[union-attr]  # a dilated kernel pads by its span
    n_h, n_w = row.input_shape[0], row.input_shape[1]
    valid_h, valid_w = n_h - kh + 1, n_w - kw + 1
    extra_h, extra_w = kh - 1, kw - 1
    spans = " (the span of its dilated kernel)" if layer.dilation != (1, 1) else ""  # type: ignore[union-attr]
    return (
        f"A {kh}x{kw} kernel{spans} centred on a border pixel hangs over the edge. With **'valid'** padding the "
        f"window only visits positions where it fits: a {n_h}x{n_w} input gives "
        f"({n_h} - {kh} + 1) x ({n_w} - {kw} + 1) = {valid_h}x{valid_w}. With **'same'** padding Keras adds "
        f"{extra_h} row(s) and {extra_w} column(s) of zeros around the border "
        f"({extra_h // 2} on top, {extra_h - extra_h // 2} at the bottom; {extra_w // 2} left, "
        f"{extra_w - extra_w // 2} right), so with stride 1 the output keeps the input's {n_h}x{n_w}. "
        f"{row.location} uses **'{layer.padding}'**: {_m(row.formula)}."  # type: ignore[union-attr]
    )


def explain_pooling(report: ShapeReport) -> str:
    """What max/average pooling keeps, with the first pooling layer."""
    parts = _paragraphs(report, _kinds(pooling=True))
    if not parts:
        return "This network does not pool; strided convolutions or none at all also work."
    return f"{parts[0]} {_pool_rounding(report)}"


def _pool_rounding(report: ShapeReport) -> str:
    """Where this network's pooling rounds a side (the decoder must undo it), or that none does."""
    for row in report.rows:
        layer = _layer(report, row) if not row.head else None
        if layer is None or not kind_of(layer).pooling:
            continue
        sides = zip(row.input_shape[:2], row.output_shape[:2], layer.effective_strides)
        if any(n != out * s for n, out, s in sides):
            same = layer.padding == "same"
            how = (
                "'same' padding keeps the part-filled window at the edge, so it rounds up"
                if same
                else "'valid' padding keeps whole windows only, so it rounds down"
            )
            return (
                f"Here {row.location} does not divide its input evenly: {how}, "
                f"{_hw(row.input_shape)} -> {_hw(row.output_shape)}, and the decoder must undo "
                f"that with {'a crop' if same else 'zero padding'} to come back to the input's size."
            )
    return (
        "Every pooling here divides its input evenly, so nothing is rounded; an odd side would be: "
        "'same' padding rounds 7 up to 4 (the decoder must then crop), 'valid' rounds it down to 3."
    )


def explain_upsampling(report: ShapeReport) -> str:
    """What up-sampling and transposed convolution ("deconvolution") do, with the decoder's layers."""
    parts = _paragraphs(report, (Upsample, *_kinds(transposed=True)))
    if not parts:
        return (
            "This decoder neither up-samples nor uses transposed convolutions, so it cannot grow the "
            "code back to the image size unless the code already has it."
        )
    return "\n\n".join(parts)


def explain_cropping(report: ShapeReport) -> str:
    """What crop and zero-padding layers do, if the network has any (else empty)."""
    found = _first(report, (Crop, Pad))
    return "" if found is None else KIND_EXPLANATIONS[type(found[1])](*found)


def explain_regularising(report: ShapeReport) -> str:
    """What batch normalisation and dropout do, if the network has any (else empty)."""
    return "\n\n".join(_paragraphs(report, (BatchNorm, Dropout)))


@dataclass(frozen=True)
class Topic:
    """One explanation on the Architecture page: its title, the kinds it explains, and the text
    with the network's numbers (empty: the network has nothing it explains, and it is not shown)."""

    title: str
    kinds: tuple[type[Layer], ...]
    explain: Callable[[ShapeReport], str]


# The Architecture page's explanations, in order; every kind is explained by at least one.
TOPICS: tuple[Topic, ...] = (
    Topic("Convolution", _kinds(convolution=True, transposed=False), explain_convolution),
    Topic("Padding", _kinds(convolution=True), explain_padding),
    Topic("Pooling", _kinds(pooling=True), explain_pooling),
    Topic(
        "Up-sampling and transposed convolution",
        (Upsample, *_kinds(transposed=True)),
        explain_upsampling,
    ),
    Topic("Cropping and zero padding", (Crop, Pad), explain_cropping),
    Topic("Batch normalisation and dropout", (BatchNorm, Dropout), explain_regularising),
)
