"""The ideas behind each layer, explained with the user's own network and numbers (Markdown text).

Formulas come from cae.shapes as plain text (``3*3*1*16 + 16 = 160``, as the shape table shows
them) and go into the text as code spans (``_m``), shown verbatim: as plain markdown two ``*``
made the digits between them italic and the signs vanished ("(331*16 + 16 = 160)", issue 13).

Pure Python: these texts are computed from a ShapeReport, so the Architecture page can show them
without TensorFlow.
"""

from __future__ import annotations

from cae.shapes import LayerRow, ShapeReport, effective_kernel_text
from cae.spec import Conv, Crop, Deconv, Layer, Pad, Pool, Upsample
from cae.text import plain_code as _m


def _layer(report: ShapeReport, row: LayerRow) -> Layer:
    return getattr(report.spec, row.part)[row.index]


def _first(report: ShapeReport, kinds: tuple[type, ...]) -> tuple[LayerRow, Layer] | None:
    for row in report.rows:
        if row.head:  # a variational design's code maps are not layers of the spec
            continue
        layer = _layer(report, row)
        if isinstance(layer, kinds):
            return row, layer
    return None


def _hw(shape: tuple[int, ...]) -> str:
    return f"{shape[0]}x{shape[1]}"


def explain_convolution(report: ShapeReport) -> str:
    """What a convolution computes, with the first convolution of the network."""
    found = _first(report, (Conv,))
    if found is None:
        return "This network has no convolution yet: add one to see how it works."
    row, layer = found
    kh, kw = layer.kernel
    cin = row.input_shape[2]
    weights = kh * kw * cin
    text = (
        f"**{row.location}** slides a {kh}x{kw} window over its {_hw(row.input_shape)}x{cin} input. "
        f"At each position it multiplies the {kh}x{kw}x{cin} = {weights} input values under the window by "
        f"{weights} weights, adds them up with a bias and applies `{layer.activation}`: that is one output "
        f"value. It does this with {layer.filters} different kernels, giving {layer.filters} channels, so "
        f"the layer learns {weights} x {layer.filters} weights + {layer.filters} biases = "
        f"**{row.params:,} parameters** ({_m(row.params_formula)}).\n\n"
        f"Output size: {_m(row.formula)}, so {_hw(row.input_shape)} becomes {_hw(row.output_shape)}."
    )
    if layer.strides != (1, 1):
        text += (
            f" With strides {layer.strides[0]}x{layer.strides[1]} the window jumps "
            f"{layer.strides[0]} rows and {layer.strides[1]} columns at a time, which down-samples."
        )
    if layer.dilation != (1, 1):
        dh, dw = layer.dilation
        sh, sw = layer.effective_kernel
        text += (
            f" With dilation {dh}x{dw} the {kh}x{kw} taps sit {dh} rows and {dw} columns apart, so "
            f"the window spans {sh}x{sw} pixels (k + (k - 1)(d - 1): "
            f"{_m(effective_kernel_text(layer.kernel, layer.dilation))}) with the same {weights} "
            "weights per filter: a wider view for no extra parameters. Keras allows it only with "
            "strides 1."
        )
    return text


def explain_padding(report: ShapeReport) -> str:
    """What 'same' and 'valid' padding do at the border, with the first convolution."""
    found = _first(report, (Conv, Deconv))
    if found is None:
        return "Padding matters for convolutions; this network has none yet."
    row, layer = found
    kh, kw = layer.effective_kernel  # a dilated kernel pads and trims by its span
    n_h, n_w = row.input_shape[0], row.input_shape[1]
    valid_h, valid_w = n_h - kh + 1, n_w - kw + 1
    extra_h, extra_w = kh - 1, kw - 1
    spans = " (the span of its dilated kernel)" if layer.dilation != (1, 1) else ""
    return (
        f"A {kh}x{kw} kernel{spans} centred on a border pixel hangs over the edge. With **'valid'** padding the "
        f"window only visits positions where it fits: a {n_h}x{n_w} input gives "
        f"({n_h} - {kh} + 1) x ({n_w} - {kw} + 1) = {valid_h}x{valid_w}. With **'same'** padding Keras adds "
        f"{extra_h} row(s) and {extra_w} column(s) of zeros around the border "
        f"({extra_h // 2} on top, {extra_h - extra_h // 2} at the bottom; {extra_w // 2} left, "
        f"{extra_w - extra_w // 2} right), so with stride 1 the output keeps the input's {n_h}x{n_w}. "
        f"{row.location} uses **'{layer.padding}'**: {_m(row.formula)}."
    )


def explain_pooling(report: ShapeReport) -> str:
    """What max/average pooling keeps, with the first pooling layer."""
    found = _first(report, (Pool,))
    if found is None:
        return "This network does not pool; strided convolutions or none at all also work."
    row, layer = found
    ph, pw = layer.size
    sh, sw = layer.effective_strides
    kept = "the largest" if layer.mode == "max" else "the average"
    return (
        f"**{row.location}** cuts each channel into {ph}x{pw} windows (stepping {sh}x{sw}) and keeps "
        f"{kept} of the {ph * pw} values in each: {_hw(row.input_shape)} becomes "
        f"{_hw(row.output_shape)} ({_m(row.formula)}). It has no weights, keeps the channel count "
        f"({row.output_shape[2]}), and throws away {100 * (1 - 1 / (sh * sw)):.0f}% of the positions: "
        f"this is where the encoder squeezes the image. {_pool_rounding(report)}"
    )


def _pool_rounding(report: ShapeReport) -> str:
    """Where this network's pooling rounds a side (the decoder must undo it), or that none does."""
    for row in report.rows:
        layer = _layer(report, row) if not row.head else None
        if not isinstance(layer, Pool):
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
    parts: list[str] = []
    up = _first(report, (Upsample,))
    if up is not None:
        row, layer = up
        how = (
            "repeats each value" if layer.interpolation == "nearest" else "interpolates bilinearly"
        )
        parts.append(
            f"**{row.location}** (up-sampling) {how} to fill a {layer.size[0]}x{layer.size[1]} block: "
            f"{_hw(row.input_shape)} becomes {_hw(row.output_shape)} ({_m(row.formula)}). No weights: the "
            "convolution after it learns to sharpen the blocky result."
        )
    deconv = _first(report, (Deconv,))
    if deconv is not None:
        row, layer = deconv
        parts.append(
            f"**{row.location}** (transposed convolution, often called deconvolution) spreads each input "
            f"value over a {layer.kernel[0]}x{layer.kernel[1]} patch of the output, scaled by learned "
            f"weights, stepping {layer.strides[0]}x{layer.strides[1]}; overlapping patches add up. "
            f"Output size: {_m(row.formula)}, so {_hw(row.input_shape)} becomes {_hw(row.output_shape)}, "
            f"with {row.params:,} parameters ({_m(row.params_formula)})."
        )
        if layer.dilation != (1, 1):
            sh, sw = layer.effective_kernel
            parts[-1] += (
                f" Its dilation {layer.dilation[0]}x{layer.dilation[1]} spreads the kernel's taps "
                f"apart, so each patch spans {sh}x{sw}."
            )
    if not parts:
        return (
            "This decoder neither up-samples nor uses transposed convolutions, so it cannot grow the "
            "code back to the image size unless the code already has it."
        )
    return "\n\n".join(parts)


def explain_cropping(report: ShapeReport) -> str:
    """What crop and zero-padding layers do, if the network has any."""
    found = _first(report, (Crop, Pad))
    if found is None:
        return ""
    row, layer = found
    verb = "removes" if isinstance(layer, Crop) else "adds zeros for"
    (top, bottom), (left, right) = layer.amount
    return (
        f"**{row.location}** {verb} {top} row(s) at the top, {bottom} at the bottom, {left} column(s) at "
        f"the left and {right} at the right: {_m(row.formula)}."
    )
