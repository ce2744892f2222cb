"""Shape and parameter arithmetic of an ArchitectureSpec, in pure Python (no TensorFlow).

Follows Keras exactly: ``same`` gives ceil(n / s); ``valid`` gives floor((n - k) / s) + 1; a transposed
convolution gives n * s (same) or n * s + max(k - s, 0) (valid), or, with output_padding,
(n - 1) * s + k % 2 + output_padding (same) or (n - 1) * s + k + output_padding (valid). A dilated
kernel counts with its span, k + (k - 1)(d - 1). Every row carries the formula with the numbers
filled in.

Where TensorFlow cannot run what Keras's symbolic shape promises, the layer is refused, with fixes
that are checked: a transposed convolution with padding ``same``, an even kernel span and an
output_padding of 0 has the symbolic size (n - 1) * s, but TensorFlow's conv2d_transpose needs
ceil(out / s) == n and aborts on a real batch (keras-team/keras#15666; measured here with
TensorFlow 2.21 and Keras 3.15, for every even span, strides 1-3 and either dilation form). A
(transposed) convolution whose kernel is 1 tap wide along an axis strided by 2 or more is accepted,
but oneDNN's CPU kernels crash its training on some sizes: :func:`needs_onednn_off` says so, and
such a design trains with oneDNN's custom operations off (``cae.onednn``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from itertools import chain, repeat
from typing import Any, Literal

from cae.spec import (
    KINDS,
    LAYER_BY_NAME,
    MAX_KERNEL,
    ArchitectureSpec,
    BatchNorm,
    Conv,
    Convolution,
    Crop,
    Deconv,
    Depthwise,
    Dropout,
    Layer,
    Pad,
    Pair,
    Pool,
    SepConv,
    Upsample,
    describe_layer,
    effective_kernel,
    kind_of,
)

Shape = tuple[int, int, int]
Part = Literal["encoder", "decoder"]
MAX_PARAMS = 50_000_000
MAX_ACTIVATION_VALUES = 4_000_000


@dataclass(frozen=True)
class Fix:
    """A suggested change, with the whole corrected spec ready to apply."""

    description: str
    spec: ArchitectureSpec


class ShapeError(ValueError):
    """A layer that cannot be applied to its input; carries suggested fixes when there are any."""

    def __init__(self, message: str, part: str, index: int, fixes: tuple[Fix, ...] = ()):
        super().__init__(message)
        self.part = part
        self.index = index
        self.fixes = fixes


@dataclass(frozen=True)
class LayerRow:
    """One layer's output shape and parameter count, with the formulas behind them."""

    part: Part
    index: int
    type: str
    label: str
    input_shape: Shape
    output_shape: Shape
    params: int
    formula: str
    params_formula: str
    head: str = ""  # a variational design's code maps: "mean" or "log-var" (else "")

    @property
    def location(self) -> str:
        """Where the layer is, e.g. ``encoder[2]`` (``encoder[4] log-var`` for a code map)."""
        return f"{self.part}[{self.index}]" + (f" {self.head}" if self.head else "")

    def as_dict(self) -> dict[str, object]:
        """The row as plain JSON data (the CLI's ``--json`` form); ``head`` only on the two code
        maps of a variational design."""
        out: dict[str, object] = {
            "part": self.part,
            "index": self.index,
            "type": self.type,
            "output_shape": list(self.output_shape),
            "params": self.params,
        }
        if self.head:
            out["head"] = self.head
        return out


@dataclass(frozen=True)
class ShapeReport:
    """The whole network: rows, code shape, totals, and whether the output matches the input."""

    spec: ArchitectureSpec
    rows: tuple[LayerRow, ...]
    input_shape: Shape
    latent_shape: Shape
    output_shape: Shape
    problem: str | None
    fixes: tuple[Fix, ...]

    @property
    def matches(self) -> bool:
        """True when the decoder comes back to the input shape."""
        return self.output_shape == self.input_shape

    @property
    def total_params(self) -> int:
        """All parameters, trainable or not (as Keras's count_params)."""
        return sum(row.params for row in self.rows)

    @property
    def encoder_params(self) -> int:
        """Parameters of the encoder."""
        return sum(row.params for row in self.rows if row.part == "encoder")

    @property
    def decoder_params(self) -> int:
        """Parameters of the decoder."""
        return sum(row.params for row in self.rows if row.part == "decoder")

    @property
    def latent_size(self) -> int:
        """Number of values in one code."""
        return _volume(self.latent_shape)

    @property
    def compression_ratio(self) -> float:
        """Input values per code value (e.g. 784 / 49 = 16 for the classic network)."""
        return _volume(self.input_shape) / self.latent_size


def _volume(shape: Shape) -> int:
    return shape[0] * shape[1] * shape[2]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _dims_text(parts: tuple[str, str]) -> str:
    return parts[0] if parts[0] == parts[1] else f"H: {parts[0]}; W: {parts[1]}"


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in shape)


# A fix for an impossible layer: what it says, and the layer to put in its place (several, or none
# to remove it).
Replacement = Layer | tuple[Layer, ...] | None


class _LayerProblem(Exception):
    def __init__(
        self, problem: str, received: str, fixes: tuple[tuple[str, Replacement], ...] = ()
    ):
        super().__init__(problem)
        self.problem = problem
        self.received = received
        self.fixes = fixes


def effective_kernel_text(kernel: Pair, dilation: Pair) -> str:
    """The span of a dilated kernel with its numbers, ``3 + (3 - 1)*(2 - 1) = 5`` (per axis when
    they differ); empty without dilation."""
    if dilation == (1, 1):
        return ""
    spans = effective_kernel(kernel, dilation)
    texts = [f"{k} + ({k} - 1)*({d} - 1) = {e}" for k, d, e in zip(kernel, dilation, spans)]
    return _dims_text((texts[0], texts[1]))


def _sliding_window(
    layer: Convolution | Pool,
    name: str,
    window: tuple[int, int],
    strides: tuple[int, int],
    size: tuple[int, int],
    dilation: Pair = (1, 1),
) -> tuple[list[int], list[str]]:
    """Output height and width of a convolution or pooling window, with each axis's formula; a
    dilated kernel slides its span, k + (k - 1)(d - 1)."""
    span = effective_kernel(window, dilation)
    if layer.padding == "valid" and (span[0] > size[0] or span[1] > size[1]):
        title = "kernel" if name == "kernel" else "pool size"
        shown = f"{window[0]}x{window[1]}"
        received = f"{name}={window}, input={size}"
        fixes: list[tuple[str, Replacement]] = [
            ("use padding 'same'", replace(layer, padding="same"))
        ]
        if dilation != (1, 1):
            shown += f" (spanning {span[0]}x{span[1]} with dilation {dilation[0]}x{dilation[1]})"
            received = f"{name}={window}, dilation={dilation}, input={size}"
            fixes.append(("use dilation 1", replace(layer, dilation=(1, 1))))
        raise _LayerProblem(
            f"{title} {shown} is larger than its input {size[0]}x{size[1]} with padding 'valid'",
            received,
            tuple(fixes),
        )
    outs: list[int] = []
    texts: list[str] = []
    for n, k, s in zip(size, span, strides):
        if layer.padding == "same":
            out = _ceil_div(n, s)
            texts.append(f"ceil({n} / {s}) = {out}")
        else:
            out = (n - k) // s + 1
            texts.append(f"floor(({n} - {k}) / {s}) + 1 = {out}")
        outs.append(out)
    return outs, texts


def _kernel_params(layer: Conv | Deconv, channels: int) -> tuple[int, str]:
    """Weights plus biases of a (transposed) convolution, and the formula with its numbers."""
    kh, kw = layer.kernel
    params = kh * kw * channels * layer.filters + layer.filters
    return params, f"{kh}*{kw}*{channels}*{layer.filters} + {layer.filters} = {params}"


def _separable_params(layer: SepConv, channels: int) -> tuple[int, str]:
    """A separable convolution's depthwise weights (kh*kw*channels*depth), 1x1 mixing weights
    (channels*depth*filters) and biases (filters), with the formula."""
    kh, kw = layer.kernel
    depth, filters = layer.depth_multiplier, layer.filters
    params = kh * kw * channels * depth + channels * depth * filters + filters
    return (
        params,
        f"{kh}*{kw}*{channels}*{depth} + {channels}*{depth}*{filters} + {filters} = {params}",
    )


def _depthwise_params(layer: Depthwise, channels: int) -> tuple[int, str]:
    """A depthwise convolution's weights (kh*kw*channels*depth) and biases (channels*depth)."""
    kh, kw = layer.kernel
    depth = layer.depth_multiplier
    params = kh * kw * channels * depth + channels * depth
    return params, f"{kh}*{kw}*{channels}*{depth} + {channels}*{depth} = {params}"


# ---------------------------------------------------------------- shape rules: one function per kind
# Each takes a layer and its input (height, width, channels) and returns its LayerOutput; one that
# cannot apply raises _LayerProblem, which compute_shapes turns into a ShapeError naming the layer
# and ending "Received: ...".

LayerOutput = tuple[Shape, int, str, str]  # output shape, parameters, shape formula, params formula


def _span_prefix(layer: Convolution) -> str:
    """``kernel span 3 + (3 - 1)*(2 - 1) = 5; `` before a dilated layer's formula, else empty."""
    text = effective_kernel_text(layer.kernel, layer.dilation)
    return f"kernel span {text}; " if text else ""


def _sliding_convolution(
    layer: Conv | SepConv | Depthwise, shape: Shape, channels: int, params: tuple[int, str]
) -> LayerOutput:
    """The shape rule every sliding (not transposed) convolution kind shares: ``same`` gives
    ceil(n / s), ``valid`` floor((n - k) / s) + 1 per axis, where a dilated kernel counts with its
    span k + (k - 1)(d - 1); ``channels`` out and the kind's ``params`` (count, formula)."""
    height, width, _ = shape
    out_hw, texts = _sliding_window(
        layer, "kernel", layer.kernel, layer.strides, (height, width), layer.dilation
    )
    return (
        (out_hw[0], out_hw[1], channels),
        params[0],
        f"{_span_prefix(layer)}{layer.padding}: {_dims_text((texts[0], texts[1]))}",
        params[1],
    )


def conv_output(layer: Conv, shape: Shape) -> LayerOutput:
    """A convolution: the sliding-window size per axis (``same`` ceil(n / s), ``valid``
    floor((n - k) / s) + 1, a dilated kernel counting with its span k + (k - 1)(d - 1)); the
    filters are the channels, with kh*kw*channels*filters weights + filters biases (dilation adds
    none).

    >>> conv_output(Conv(16, (3, 3), strides=(2, 2)), (28, 28, 1))
    ((14, 14, 16), 160, 'same: ceil(28 / 2) = 14', '3*3*1*16 + 16 = 160')
    >>> conv_output(Conv(4, (1, 3), padding="valid"), (28, 28, 1))[0]
    (28, 26, 4)
    >>> conv_output(Conv(4, (3, 3), padding="valid", dilation=(2, 2)), (28, 28, 1))[2]
    'kernel span 3 + (3 - 1)*(2 - 1) = 5; valid: floor((28 - 5) / 1) + 1 = 24'
    """
    return _sliding_convolution(layer, shape, layer.filters, _kernel_params(layer, shape[2]))


def sepconv_output(layer: SepConv, shape: Shape) -> LayerOutput:
    """A separable convolution: a convolution's size; ``filters`` channels from
    kh*kw*channels*depth depthwise weights, channels*depth*filters 1x1 weights and filters biases
    (a 3x3 separable convolution of 8 to 16 channels has 216 weights less than 1,168).

    >>> sepconv_output(SepConv(16, (3, 3)), (14, 14, 8))
    ((14, 14, 16), 216, 'same: ceil(14 / 1) = 14', '3*3*8*1 + 8*1*16 + 16 = 216')
    """
    return _sliding_convolution(layer, shape, layer.filters, _separable_params(layer, shape[2]))


def depthwise_output(layer: Depthwise, shape: Shape) -> LayerOutput:
    """A depthwise convolution: a convolution's size; channels x depth channels (each input channel
    keeps its own kernels), with kh*kw*channels*depth weights + channels*depth biases.

    >>> depthwise_output(Depthwise((3, 3), (2, 2), depth_multiplier=2), (28, 28, 3))
    ((14, 14, 6), 60, 'same: ceil(28 / 2) = 14', '3*3*3*2 + 3*2 = 60')
    """
    channels = shape[2] * layer.depth_multiplier
    return _sliding_convolution(layer, shape, channels, _depthwise_params(layer, shape[2]))


def _odd_kernel(k: int) -> int:
    """The odd kernel size next to an even ``k``: k + 1, or k - 1 at the kernel limit."""
    return k + 1 if k + 1 <= MAX_KERNEL else k - 1


def _tensorflow_refuses(layer: Deconv) -> list[int]:
    """The axes on which TensorFlow cannot run this transposed convolution although Keras gives it
    a shape: padding 'same', an even kernel span and output_padding 0. Keras's size is then
    (n - 1) * s, but TensorFlow's conv2d_transpose needs ceil(out / s) == n and aborts on a real
    batch ("Dimension 1 in both shapes must be equal"; keras-team/keras#15666)."""
    if layer.padding != "same" or layer.output_padding is None:
        return []
    spans = layer.effective_kernel
    return [axis for axis in (0, 1) if layer.output_padding[axis] == 0 and spans[axis] % 2 == 0]


def runnable_output_padding(layer: Deconv) -> Pair | None:
    """The smallest output_padding TensorFlow runs for this layer: 0 per axis, or 1 where 0 is
    refused (padding 'same' with an even kernel span); None when no value below the strides runs.

    >>> runnable_output_padding(Deconv(8, (4, 3), (2, 2)))
    (1, 0)
    >>> runnable_output_padding(Deconv(8, (4, 4), (1, 1))) is None
    True
    """
    zero = _tensorflow_refuses(replace(layer, output_padding=(0, 0)))
    extra = (int(0 in zero), int(1 in zero))
    return None if extra[0] >= layer.strides[0] or extra[1] >= layer.strides[1] else extra


def _refusal_fixes(layer: Deconv, axes: list[int]) -> tuple[tuple[str, Replacement], ...]:
    """Fixes for a transposed convolution TensorFlow cannot run: output_padding 1 on those axes
    (where the strides allow it), an odd kernel there, or no output_padding (n * s)."""
    assert layer.output_padding is not None
    fixes: list[tuple[str, Replacement]] = []
    if all(layer.strides[axis] > 1 for axis in axes):
        extra = [1 if axis in axes else layer.output_padding[axis] for axis in (0, 1)]
        fixes.append(
            (
                f"set output_padding to {extra[0]}x{extra[1]}",
                replace(layer, output_padding=(extra[0], extra[1])),
            )
        )
    kernel = [_odd_kernel(k) if axis in axes else k for axis, k in enumerate(layer.kernel)]
    fixes.append(
        (
            f"use an odd kernel, {kernel[0]}x{kernel[1]}",
            replace(layer, kernel=(kernel[0], kernel[1])),
        )
    )
    fixes.append(("drop output_padding (output n * strides)", replace(layer, output_padding=None)))
    return tuple(fixes)


def deconv_output(layer: Deconv, shape: Shape) -> LayerOutput:
    """A transposed convolution, as Keras computes it with the kernel span k (k + (k - 1)(d - 1)
    when dilated): ``same`` gives n * s, ``valid`` n * s + max(k - s, 0); with output_padding,
    (n - 1) * s + k % 2 + output_padding (``same``) or (n - 1) * s + k + output_padding
    (``valid``). Refused where TensorFlow cannot train it: ``same``, an even span and
    output_padding 0. Weights as a convolution's.

    >>> deconv_output(Deconv(2, (3, 3), (2, 2), "valid"), (7, 7, 1))
    ((15, 15, 2), 20, 'valid (transposed): 7 * 2 + max(3 - 2, 0) = 15', '3*3*1*2 + 2 = 20')
    >>> deconv_output(Deconv(1, (4, 4), (2, 2), output_padding=(1, 1)), (7, 7, 1))[2]
    'same (transposed): (7 - 1) * 2 + 4 % 2 + 1 = 13'
    """
    height, width, channels = shape
    refused = _tensorflow_refuses(layer)
    if refused:
        axis = refused[0]
        n, s = shape[axis], layer.strides[axis]
        span = layer.effective_kernel[axis]
        kernel = f"kernel span {span}" if layer.dilation != (1, 1) else f"kernel {span}"
        received = (
            f"kernel={layer.kernel}, strides={layer.strides}, output_padding={layer.output_padding}"
        )
        if layer.dilation != (1, 1):
            received += f", dilation={layer.dilation}"
        raise _LayerProblem(
            f"padding 'same', an even {kernel} and output_padding 0 give Keras's "
            f"{('height', 'width')[axis]} ({n} - 1) * {s} = {(n - 1) * s}, which TensorFlow "
            "cannot run on a real batch",
            received,
            _refusal_fixes(layer, refused),
        )
    out_hw = []
    texts = []
    padding = layer.output_padding
    for axis, (n, k, s) in enumerate(zip((height, width), layer.effective_kernel, layer.strides)):
        if padding is None:
            if layer.padding == "same":
                out = n * s
                texts.append(f"{n} * {s} = {out}")
            else:
                out = n * s + max(k - s, 0)
                texts.append(f"{n} * {s} + max({k} - {s}, 0) = {out}")
        elif layer.padding == "same":
            out = (n - 1) * s + k % 2 + padding[axis]
            texts.append(f"({n} - 1) * {s} + {k} % 2 + {padding[axis]} = {out}")
        else:
            out = (n - 1) * s + k + padding[axis]
            texts.append(f"({n} - 1) * {s} + {k} + {padding[axis]} = {out}")
        out_hw.append(out)
    params, params_text = _kernel_params(layer, channels)
    return (
        (out_hw[0], out_hw[1], layer.filters),
        params,
        f"{_span_prefix(layer)}{layer.padding} (transposed): {_dims_text((texts[0], texts[1]))}",
        params_text,
    )


def pool_output(layer: Pool, shape: Shape) -> LayerOutput:
    """Pooling: a window of the pool size stepping by the strides (by default the size), with the
    convolution's rounding; channels and parameters unchanged.

    >>> pool_output(Pool("max", (2, 2)), (7, 7, 8))
    ((4, 4, 8), 0, 'same: ceil(7 / 2) = 4', 'no weights = 0')
    """
    height, width, channels = shape
    out_hw, texts = _sliding_window(
        layer, "size", layer.size, layer.effective_strides, (height, width)
    )
    return (
        (out_hw[0], out_hw[1], channels),
        0,
        f"{layer.padding}: {_dims_text((texts[0], texts[1]))}",
        "no weights = 0",
    )


def upsample_output(layer: Upsample, shape: Shape) -> LayerOutput:
    """Up-sampling: n * size per axis, no weights.

    >>> upsample_output(Upsample((2, 3)), (7, 7, 8))
    ((14, 21, 8), 0, 'H: 7 * 2 = 14; W: 7 * 3 = 21', 'no weights = 0')
    """
    height, width, channels = shape
    sh, sw = layer.size
    texts = [f"{height} * {sh} = {height * sh}", f"{width} * {sw} = {width * sw}"]
    return (
        (height * sh, width * sw, channels),
        0,
        _dims_text((texts[0], texts[1])),
        "no weights = 0",
    )


def crop_output(layer: Crop, shape: Shape) -> LayerOutput:
    """Cropping: n - top - bottom rows, n - left - right columns; at least one of each must remain.

    >>> crop_output(Crop(((2, 2), (2, 2))), (32, 32, 16))
    ((28, 28, 16), 0, '32 - 2 - 2 = 28', 'no weights = 0')
    """
    height, width, channels = shape
    (top, bottom), (left, right) = layer.amount
    out_h, out_w = height - top - bottom, width - left - right
    if out_h < 1 or out_w < 1:
        fixes: tuple[tuple[str, Replacement], ...] = (("remove this crop", None),)
        if height > 1 and width > 1:
            rows = (height - 1) // 2
            cols = (width - 1) // 2
            fixes = (
                (
                    f"crop {rows} rows and {cols} columns per side",
                    Crop(((rows, rows), (cols, cols))),
                ),
            ) + fixes
        raise _LayerProblem(
            f"cropping {top}+{bottom} rows and {left}+{right} columns leaves nothing of a "
            f"{height}x{width} input",
            f"amount={layer.amount}, input={(height, width)}",
            fixes,
        )
    texts = [f"{height} - {top} - {bottom} = {out_h}", f"{width} - {left} - {right} = {out_w}"]
    return (out_h, out_w, channels), 0, _dims_text((texts[0], texts[1])), "no weights = 0"


def pad_output(layer: Pad, shape: Shape) -> LayerOutput:
    """Zero padding: n + top + bottom rows, n + left + right columns.

    >>> pad_output(Pad(((0, 1), (2, 0))), (7, 7, 1))
    ((8, 9, 1), 0, 'H: 7 + 0 + 1 = 8; W: 7 + 2 + 0 = 9', 'no weights = 0')
    """
    height, width, channels = shape
    (top, bottom), (left, right) = layer.amount
    out_h, out_w = height + top + bottom, width + left + right
    texts = [f"{height} + {top} + {bottom} = {out_h}", f"{width} + {left} + {right} = {out_w}"]
    return (out_h, out_w, channels), 0, _dims_text((texts[0], texts[1])), "no weights = 0"


def batchnorm_output(layer: BatchNorm, shape: Shape) -> LayerOutput:
    """Batch normalisation: the shape unchanged, four values per channel (two of them trained).

    >>> batchnorm_output(BatchNorm(), (14, 14, 16))[1:]
    (64, 'unchanged', '4*16 (gamma, beta, moving mean, moving variance) = 64')
    """
    params = 4 * shape[2]
    return (
        shape,
        params,
        "unchanged",
        f"4*{shape[2]} (gamma, beta, moving mean, moving variance) = {params}",
    )


def dropout_output(layer: Dropout, shape: Shape) -> LayerOutput:
    """Dropout: the shape unchanged, no weights.

    >>> dropout_output(Dropout(0.25), (14, 14, 16))
    ((14, 14, 16), 0, 'unchanged', 'no weights = 0')
    """
    return shape, 0, "unchanged", "no weights = 0"


SHAPE_RULES: dict[type[Layer], Callable[[Any, Shape], LayerOutput]] = {
    Conv: conv_output,
    Deconv: deconv_output,
    SepConv: sepconv_output,
    Depthwise: depthwise_output,
    Pool: pool_output,
    Upsample: upsample_output,
    Crop: crop_output,
    Pad: pad_output,
    BatchNorm: batchnorm_output,
    Dropout: dropout_output,
}


def layer_output(layer: Layer, shape: Shape) -> LayerOutput:
    """Output shape, parameter count, shape formula and parameter formula of one layer."""
    rule = SHAPE_RULES.get(type(layer))
    if rule is None:
        raise TypeError(f"not a layer. Received: layer={layer!r}")
    return rule(layer, shape)


def _replace_layer(
    spec: ArchitectureSpec, part: str, index: int, layer: Replacement
) -> ArchitectureSpec:
    layers = list(getattr(spec, part))
    if layer is None:
        new: tuple[Layer, ...] = ()
    elif isinstance(layer, tuple):
        new = layer
    else:
        new = (layer,)
    layers[index : index + 1] = new
    return spec.with_layers(**{part: tuple(layers)})


def _applies(layers: Replacement, shape: Shape) -> bool:
    """Whether a suggested replacement (one layer, several in turn, or none) applies to the input
    within the size limit: the check every offered fix for an impossible layer passes."""
    if layers is None:
        return True
    for layer in layers if isinstance(layers, tuple) else (layers,):
        try:
            shape = layer_output(layer, shape)[0]
        except _LayerProblem:
            return False
        if _volume(shape) > MAX_ACTIVATION_VALUES:
            return False
    return True


VARIATIONAL_HEADS = ("mean", "log-var")


def variational_head(spec: ArchitectureSpec, code_channels: int) -> tuple[int, Convolution]:
    """Where a variational design's shared encoder ends, and the layer each of its two code maps
    (the mean and the log-variance, both of the code's shape) is built as.

    A code made by a convolution of any kind is made twice, by two copies of that layer with a
    linear activation (a mean and a log-variance take any real value): ``encoder[4]`` of the
    classic design, ``Conv 1 3x3 same``, becomes two of 73 parameters each. A code made by any
    other kind (a pooling, say) stays, and two 1x1 linear convolutions to its ``code_channels``
    follow it, at index ``len(spec.encoder)``: (c + 1) * c parameters each."""
    last = spec.encoder[-1]
    if kind_of(last).convolution:
        return len(spec.encoder) - 1, replace(last, activation="linear")  # type: ignore[arg-type]
    return len(spec.encoder), Conv(code_channels, (1, 1), activation="linear")


def _row(
    part: str, index: int, layer: Layer, shape: Shape, spec: ArchitectureSpec, head: str = ""
) -> LayerRow:
    """One layer's row, or a ShapeError naming it (with checked fixes) when it cannot be applied
    or its output is over the size limit."""
    try:
        out, params, formula, params_formula = layer_output(layer, shape)
    except _LayerProblem as problem:
        checked = [(text, new) for text, new in problem.fixes if _applies(new, shape)]
        fixes = tuple(
            Fix(f"{part}[{index}]: {text}", _replace_layer(spec, part, index, new_layer))
            for text, new_layer in checked
        )
        fix = f"; fix: {checked[0][0]}" if checked else ""  # the one line names a fix too
        raise ShapeError(
            f"{part}[{index}] {layer.type}: {problem.problem}{fix}. Received: {problem.received}",
            part,
            index,
            fixes,
        ) from None
    if _volume(out) > MAX_ACTIVATION_VALUES:
        raise ShapeError(
            f"{part}[{index}] {layer.type}: the output {_fmt_shape(out)} holds more than "
            f"{MAX_ACTIVATION_VALUES:,} values per image (limit). Received: output_shape={out}",
            part,
            index,
        )
    label = describe_layer(layer) + (f" ({head})" if head else "")
    return LayerRow(
        part, index, layer.type, label, shape, out, params, formula, params_formula, head
    )  # type: ignore[arg-type]


def compute_shapes(spec: ArchitectureSpec, *, with_fixes: bool = True) -> ShapeReport:
    """Every layer's output shape and parameters, the code shape, and the whole-network check.

    Raises ShapeError (a ValueError) naming the layer when one cannot be applied to its input.
    With ``with_fixes`` a mismatch comes with verified suggested fixes. A variational design's
    two code maps (``variational_head``) are two rows, ``head`` "mean" and "log-var", each taking
    the shared encoder's output; the code is the mean (the log-variance has its shape).
    """
    rows: list[LayerRow] = []
    shape: Shape = spec.input_shape
    latent: Shape = shape
    for part in ("encoder", "decoder"):
        layers = list(enumerate(getattr(spec, part)))
        start = len(layers)
        if part == "encoder" and spec.variational is not None:
            start = variational_head(spec, 1)[0]
        for index, layer in layers[:start]:
            rows.append(_row(part, index, layer, shape, spec))
            shape = rows[-1].output_shape
        if part == "encoder" and spec.variational is not None:
            _, head = variational_head(spec, shape[2])
            rows += [_row(part, start, head, shape, spec, name) for name in VARIATIONAL_HEADS]
            shape = rows[-1].output_shape
        if part == "encoder":
            latent = shape
    total = sum(row.params for row in rows)
    if total > MAX_PARAMS:
        raise ShapeError(
            f"spec: the network has {total:,} parameters, more than the limit of {MAX_PARAMS:,}. "
            f"Received: params={total}",
            "spec",
            -1,
        )
    problem = None
    fixes: tuple[Fix, ...] = ()
    if shape != spec.input_shape:
        problem = (
            f"The decoder ends at {_fmt_shape(shape)} but the input is {_fmt_shape(spec.input_shape)}: "
            "the output must have the input's shape to be compared with it."
        )
        fixes = suggest_fixes(spec, shape) if with_fixes else ()
    return ShapeReport(spec, tuple(rows), spec.input_shape, latent, shape, problem, fixes)


def suggest_fixes(spec: ArchitectureSpec, output_shape: Shape) -> tuple[Fix, ...]:
    """Concrete changes that make the decoder come back to the input shape; each is verified."""
    target_h, target_w, target_c = spec.input_shape
    out_h, out_w, out_c = output_shape
    candidates: list[Fix] = []
    decoder = list(spec.decoder)
    last = decoder[-1] if decoder else None

    # 1. Channels: the last layer sets them where its kind has filters.
    if out_c != target_c:
        if last is not None and kind_of(last).filters:
            new_last = replace(last, filters=target_c)  # type: ignore[call-arg]
            candidates.append(
                Fix(
                    f"decoder[{len(decoder) - 1}]: set filters to {target_c} to give {target_c} channel(s)",
                    spec.with_layers(decoder=tuple(decoder[:-1] + [new_last])),
                )
            )
        else:
            candidates.append(
                Fix(
                    f"append a 1x1 sigmoid convolution with {target_c} filter(s)",
                    spec.with_layers(
                        decoder=tuple(decoder + [Conv(target_c, (1, 1), activation="sigmoid")])
                    ),
                )
            )
    base = candidates[0].spec if candidates else spec
    base_decoder = list(base.decoder)
    d_h, d_w = out_h - target_h, out_w - target_w

    # 2a. One resampling layer too many in the decoder: remove it.
    if d_h or d_w:
        for index, layer in enumerate(base_decoder):
            kind = kind_of(layer)
            resamples = kind.resizing or (kind.transposed and layer.strides != (1, 1))
            if resamples:
                candidates.append(
                    Fix(
                        f"decoder[{index}]: remove this {layer.type} layer",
                        base.with_layers(
                            decoder=tuple(base_decoder[:index] + base_decoder[index + 1 :])
                        ),
                    )
                )
    # 2b. A 'valid' convolution shrank the image: make it 'same'.
    if d_h or d_w:
        for part in ("encoder", "decoder"):
            for index, layer in enumerate(getattr(base, part)):
                if kind_of(layer).convolution and layer.padding == "valid":
                    candidates.append(
                        Fix(
                            f"{part}[{index}]: use padding 'same'",
                            _replace_layer(base, part, index, replace(layer, padding="same")),
                        )
                    )
    # 2c. One up-sampling too few: insert one before the last layer.
    if (
        0 < out_h < target_h
        and 0 < out_w < target_w
        and target_h % out_h == 0
        and target_w % out_w == 0
    ):
        factor = (target_h // out_h, target_w // out_w)
        candidates.append(
            Fix(
                f"insert an up-sampling by {factor[0]}x{factor[1]} before the last layer",
                base.with_layers(
                    decoder=tuple(base_decoder[:-1] + [Upsample(factor)] + base_decoder[-1:])
                ),
            )
        )

    # 3. Too large: crop, or turn the last stride-1 'same' convolution into a 'valid' one.
    if d_h >= 0 and d_w >= 0 and (d_h or d_w):
        (crop,) = _centred_trim(d_h, d_w)
        base_last = base_decoder[-1] if base_decoder else None
        if (
            base_last is not None
            and kind_of(base_last).convolution
            and not kind_of(base_last).transposed
            and base_last.strides == (1, 1)
            and base_last.padding == "same"
        ):
            kernel = (d_h + 1, d_w + 1)
            if max(kernel) <= 7:
                candidates.append(
                    Fix(
                        f"decoder[{len(base_decoder) - 1}]: use a {kernel[0]}x{kernel[1]} kernel with "
                        f"padding 'valid' (it trims {d_h} rows and {d_w} columns)",
                        base.with_layers(
                            decoder=tuple(
                                base_decoder[:-1]
                                + [
                                    replace(
                                        base_last, kernel=kernel, padding="valid", dilation=(1, 1)
                                    )
                                ]
                            )
                        ),
                    )
                )
        if base_last is not None:
            candidates.append(
                Fix(
                    f"insert a crop of {_amount_text(crop)} before the last layer",
                    base.with_layers(decoder=tuple(base_decoder[:-1] + [crop, base_last])),
                )
            )
        candidates.append(
            Fix(
                f"append a crop of {_amount_text(crop)}",
                base.with_layers(decoder=tuple(base_decoder + [crop])),
            )
        )
    # 4. Too small: zero-pad.
    elif d_h <= 0 and d_w <= 0 and (d_h or d_w):
        (pad,) = _centred_trim(d_h, d_w)
        # Padding in the encoder input so pooling divides evenly is often the better design.
        candidates.append(
            Fix(
                f"append zero padding of {_amount_text(pad)}",
                base.with_layers(decoder=tuple(base_decoder + [pad])),
            )
        )
    # 5. Mixed: crop one axis, pad the other.
    elif d_h or d_w:
        crop, pad = _centred_trim(d_h, d_w)
        candidates.append(
            Fix(
                f"append a crop of {_amount_text(crop)} and zero padding of {_amount_text(pad)}",
                base.with_layers(decoder=tuple(base_decoder + [crop, pad])),
            )
        )
    # 6. The classic cause: 'same' pooling rounded an odd size up. Try making each such pool 'valid'.
    for index, layer in enumerate(spec.encoder):
        if kind_of(layer).pooling and layer.padding == "same":
            trial = _replace_layer(spec, "encoder", index, replace(layer, padding="valid"))
            candidates.append(Fix(f"encoder[{index}]: use pool padding 'valid'", trial))

    # 7. Start the decoder over as the encoder's mirror (the Architecture page's Mirror): when
    #    the other fixes only pad or crop around a far smaller or larger output, this undoes it.
    try:
        mirrored: tuple[Layer, ...] | None = mirror(spec.encoder, spec.input_shape)
    except ValueError:  # a layer of the mirror is refused
        mirrored = None
    if mirrored is not None and mirrored != spec.decoder:
        candidates.append(
            Fix(
                f"replace the decoder with the encoder's mirror ({len(mirrored)} layers)",
                spec.with_layers(decoder=mirrored),
            )
        )

    verified: list[Fix] = []
    for fix in candidates:
        try:
            report = compute_shapes(fix.spec, with_fixes=False)
        except ValueError:
            continue
        if report.output_shape == spec.input_shape:
            verified.append(fix)
    return tuple(verified)


# ---------------------------------------------------------------- loading and mirroring
# These need the shape check, so they live here, above cae.spec: spec never imports shapes.


def repairs(data: dict[str, Any]) -> tuple[Fix, ...]:
    """Checked fixes for a design (as a dict) that the spec refuses, where a refusal has an
    obvious one: a convolution with strides and a dilation above 1 (which Keras refuses) gets
    "strides 1" and "dilation 1" (any convolution kind). Each fix is a valid spec whose shapes compute."""
    candidates: list[Fix] = []
    for part in ("encoder", "decoder"):
        layers = data.get(part) if isinstance(data, dict) else None
        if not isinstance(layers, list):
            continue
        for index, layer in enumerate(layers):
            kind = (
                KINDS.get(LAYER_BY_NAME.get(layer.get("type"))) if isinstance(layer, dict) else None
            )
            if kind is None or not kind.convolution:
                continue
            if _above_one(layer.get("strides", 1)) and _above_one(layer.get("dilation", 1)):
                for field in ("strides", "dilation"):
                    fixed_layers = [*layers[:index], {**layer, field: [1, 1]}, *layers[index + 1 :]]
                    try:
                        spec = ArchitectureSpec.from_dict({**data, part: fixed_layers})
                        compute_shapes(spec, with_fixes=False)
                    except (ValueError, TypeError):
                        continue
                    candidates.append(Fix(f"{part}[{index}]: use {field} 1", spec))
    return tuple(candidates)


def _above_one(value: Any) -> bool:
    values = value if isinstance(value, (list, tuple)) else [value]
    return any(isinstance(item, int) and not isinstance(item, bool) and item > 1 for item in values)


def load_spec(source: str | bytes | dict[str, Any]) -> ArchitectureSpec:
    """Load a spec from a JSON string/bytes or a dict and check its shapes (raises ValueError)."""
    spec = (
        ArchitectureSpec.from_dict(source)
        if isinstance(source, dict)
        else ArchitectureSpec.from_json(source)
    )
    compute_shapes(spec)
    return spec


def mirror(
    encoder: tuple[Layer, ...] | list[Layer], input_shape: tuple[int, int, int] = (28, 28, 1)
) -> tuple[Layer, ...]:
    """Derive a decoder from an encoder: reverse it, pooling becomes up-sampling and strided
    convolutions become transposed convolutions; a final 3x3 sigmoid conv gives the channels, and
    before it a crop takes off what rounding up added (7 -> 4 -> 8 gives 8, not 7) or zero padding
    gives back what 'valid' windows took. A mismatch's fixes offer this decoder too. Raises
    ShapeError when a layer of the mirror is refused."""
    decoder = _mirror_layers(encoder, input_shape[2])
    spec = ArchitectureSpec("mirror", tuple(input_shape), tuple(encoder), decoder)  # type: ignore[arg-type]
    out_h, out_w, _ = compute_shapes(spec, with_fixes=False).output_shape
    trim = _centred_trim(out_h - input_shape[0], out_w - input_shape[1])
    return (*decoder[:-1], *trim, decoder[-1])


def _centred_trim(d_h: int, d_w: int) -> tuple[Layer, ...]:
    """What brings an output ``d_h`` rows and ``d_w`` columns off the input's size back to it,
    split evenly (the odd one at the bottom and right): a crop of the excess, then zero padding
    of the shortfall (either, both or neither)."""

    def split(n: int) -> tuple[int, int]:
        return (n // 2, n - n // 2)

    trim: list[Layer] = []
    if d_h > 0 or d_w > 0:
        trim.append(Crop((split(max(d_h, 0)), split(max(d_w, 0)))))
    if d_h < 0 or d_w < 0:
        trim.append(Pad((split(max(-d_h, 0)), split(max(-d_w, 0)))))
    return tuple(trim)


def _mirror_convolution(layer: Convolution, widths: Iterator[int]) -> tuple[Layer, ...]:
    """A convolution kind, walking back up: a strided one becomes a transposed convolution of the
    next width (the one kind that up-samples while it learns), an unstrided one stays its kind
    with 'same' padding (taking the next width where it has filters; a depthwise one keeps the
    channels it is given)."""
    kind = kind_of(layer)
    if layer.strides != (1, 1):
        if not kind.filters:  # a depthwise stride: up-sample, then the depthwise kernel
            return (Upsample(layer.strides), Depthwise(layer.kernel, activation=layer.activation))
        return (Deconv(next(widths), layer.kernel, layer.strides, "same", layer.activation),)
    fields: dict[str, Any] = {"padding": "same", "strides": (1, 1)}
    if kind.transposed:  # an unstrided transposed convolution mirrors as a convolution
        return (Conv(next(widths), layer.kernel, (1, 1), "same", layer.activation, layer.dilation),)
    if kind.filters:
        fields["filters"] = next(widths)
    else:  # a kind without filters multiplies the channels: walking back, it keeps them
        fields["depth_multiplier"] = 1
    return (replace(layer, **fields),)


# How each kind walks back up in the decoder the mirror derives: the layers it becomes, given the
# widths left (filter counts of the encoder's convolutions, walking back).
MIRROR_RULES: dict[type[Layer], Callable[[Any, Iterator[int]], tuple[Layer, ...]]] = {
    Conv: _mirror_convolution,
    Deconv: _mirror_convolution,
    SepConv: _mirror_convolution,
    Depthwise: _mirror_convolution,
    Pool: lambda layer, widths: (Upsample(size=layer.effective_strides),),
    Upsample: lambda layer, widths: (Pool(mode="avg", size=layer.size),),
    Crop: lambda layer, widths: (Pad(amount=layer.amount),),
    Pad: lambda layer, widths: (Crop(amount=layer.amount),),
    BatchNorm: lambda layer, widths: (layer,),
    Dropout: lambda layer, widths: (layer,),
}


def _mirror_layers(
    encoder: tuple[Layer, ...] | list[Layer], output_channels: int
) -> tuple[Layer, ...]:
    widths = [layer.filters for layer in encoder if kind_of(layer).filters]  # type: ignore[union-attr]
    # The decoder's convolutions take the filter counts of the encoder's, walking back up.
    reversed_widths = list(reversed(widths[:-1])) if len(widths) > 1 else widths[:]
    last_width = widths[0] if widths else 16
    width_iter = chain(reversed_widths, repeat(last_width))
    decoder: list[Layer] = []
    for layer in reversed(encoder):
        decoder.extend(MIRROR_RULES[type(layer)](layer, width_iter))
    decoder.append(Conv(filters=output_channels, kernel=(3, 3), activation="sigmoid"))
    return tuple(decoder)


def _amount_text(layer: Crop | Pad) -> str:
    (top, bottom), (left, right) = layer.amount
    return f"{top}/{bottom} rows and {left}/{right} columns (top/bottom, left/right)"


def work_per_image(report: ShapeReport) -> float:
    """A training step's cost per image, in multiply-adds of the forward pass: each layer's weights
    times the positions they are applied at (a transposed kind's input positions, any other's
    output positions), plus one per value any layer writes."""
    work = 0.0
    for row in report.rows:
        transposed = KINDS[LAYER_BY_NAME[row.type]].transposed
        positions = (row.input_shape if transposed else row.output_shape)[:2]
        work += row.params * positions[0] * positions[1] + _volume(row.output_shape)
    return work


def format_table(report: ShapeReport) -> str:
    """A plain-text shape table for the terminal."""
    header = ("part", "#", "layer", "output", "params", "formula")
    lines = [("input", "", "Input", _fmt_shape(report.input_shape), "0", "")]
    for row in report.rows:
        lines.append(
            (
                row.part,
                str(row.index),
                row.label,
                _fmt_shape(row.output_shape),
                f"{row.params:,}",
                row.formula,
            )
        )
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    out = ["  ".join(cell.ljust(width) for cell, width in zip(header, widths)).rstrip()]
    out.append("  ".join("-" * width for width in widths))
    out += [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines
    ]
    out.append("")
    out.append(
        f"code {_fmt_shape(report.latent_shape)} ({report.latent_size:,} values, "
        f"compression {report.compression_ratio:.1f}x); parameters {report.total_params:,} "
        f"(encoder {report.encoder_params:,}, decoder {report.decoder_params:,})"
    )
    variational = report.spec.variational
    if variational is not None:
        warmup = (
            f", KL weight rising over {variational.warmup_epochs} epochs"
            if variational.warmup_epochs
            else ""
        )
        out.append(
            f"variational (beta {variational.beta:g}{warmup}): the encoder gives a mean and a "
            "log-variance map of the code's shape; training decodes a sample from them"
        )
    if report.problem:
        out.append(f"MISMATCH: {report.problem}")
        for fix in report.fixes:
            out.append(f"  fix: {fix.description}")
    else:
        out.append(f"output {_fmt_shape(report.output_shape)} matches the input")
    return "\n".join(out)


# ------------------------------------------------- designs oneDNN's CPU kernels cannot train


def _strided_single_taps(layer: Convolution) -> list[int]:
    """The axes on which the kernel is 1 tap wide but the strides are above 1."""
    return [axis for axis in (0, 1) if layer.kernel[axis] == 1 and layer.strides[axis] > 1]


def needs_onednn_off(spec: ArchitectureSpec) -> bool:
    """True when ``spec`` has a convolution of any kind whose kernel is 1 tap wide along an axis
    strided by 2 or more: TensorFlow 2.21's oneDNN CPU kernels crash the process training it on
    some sizes (uxlfoundation/oneDNN#6035), so it trains with ``TF_ENABLE_ONEDNN_OPTS=0``. The
    separable and depthwise kinds count too: their depthwise step is a strided 1-tap kernel (not
    measured one by one; off is the safe side, at 1.4-1.9x the time).

    Measured here, each case in its own process, fit and predict at 28, 32 and 64 pixels: a 1x1
    Conv2D with strides 2 crashed training at 64 pixels, a 1x1 Conv2DTranspose with strides 2 or 3
    at every size; 1x3 and 3x1 kernels ran here (a 1x3 with strides 3x1 crashed on 40x279 before);
    no forward pass crashed, and nothing crashed with oneDNN off.

    >>> needs_onednn_off(ArchitectureSpec("s", (64, 64, 1), (Conv(8, (3, 1), (2, 2)),), ()))
    True
    >>> needs_onednn_off(ArchitectureSpec("s", (64, 64, 1), (Conv(8, (3, 3), (2, 2)),), ()))
    False
    """
    return any(
        kind_of(layer).convolution and _strided_single_taps(layer)  # type: ignore[arg-type]
        for layer in (*spec.encoder, *spec.decoder)
    )
