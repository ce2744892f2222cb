"""Look inside a network: every layer's feature maps, the learned kernels, a 2-D map of the codes, and
single convolution / pooling / up-sampling steps worked out by hand with the network's own numbers.

NumPy only at import time; TensorFlow/Keras are imported inside the functions that need them.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from cae.colours import colormap
from cae.pixels import as_float
from cae.spec import (
    KINDS,
    LAYER_BY_NAME,
    ArchitectureSpec,
    Conv,
    Deconv,
    Depthwise,
    Layer,
    Pool,
    SepConv,
)

if TYPE_CHECKING:  # pragma: no cover
    from cae.builder import BuiltModel

Activation = tuple[
    str, str, np.ndarray
]  # (keras layer name, location like "encoder[2]", (H, W, C))

_LOCATION_RE = re.compile(r"(encoder|decoder)\[(\d+)\]")

# Keras 3 defaults: leaky_relu negative_slope=0.2, elu alpha=1, gelu approximate=False.
_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805
_ACTIVATIONS: dict[str, Any] = {
    "linear": lambda x: x,
    "relu": lambda x: max(x, 0.0),
    "sigmoid": lambda x: (
        1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
    ),
    "tanh": math.tanh,
    "elu": lambda x: x if x > 0 else math.expm1(x),
    "selu": lambda x: _SELU_SCALE * (x if x > 0 else _SELU_ALPHA * math.expm1(x)),
    "softplus": lambda x: max(x, 0.0) + math.log1p(math.exp(-abs(x))),
    "leaky_relu": lambda x: x if x >= 0 else 0.2 * x,
    "gelu": lambda x: 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0))),
    "swish": lambda x: x * _ACTIVATIONS["sigmoid"](x),
}


def _layers(model: Any) -> list[Any]:
    """A sub-model's layers without its InputLayer, in spec order."""
    return [layer for layer in model.layers if layer.__class__.__name__ != "InputLayer"]


def parse_location(location: str) -> tuple[str, int]:
    """``"encoder[2]"`` -> ``("encoder", 2)``."""
    match = _LOCATION_RE.fullmatch(location.strip())
    if match is None:
        raise ValueError(
            f"A location looks like 'encoder[2]' or 'decoder[0]'. Received: location={location!r}"
        )
    return match.group(1), int(match.group(2))


def activations(built: BuiltModel, image: np.ndarray) -> list[Activation]:
    """Every layer's output for one image (H, W, C): encoder layers, then decoder layers fed the code."""
    import keras

    x = as_float(image)  # a uint8 image (as test splits hold them) counts as k/255
    expected = tuple(int(n) for n in built.encoder.input_shape[1:])
    if x.shape != expected:
        raise ValueError(f"The image must have shape {expected}. Received: image.shape={x.shape}")
    result: list[Activation] = []
    current = x[None]
    encoder = built.posterior if built.posterior is not None else built.encoder
    for part, model in (("encoder", encoder), ("decoder", built.decoder)):
        layers = _layers(model)
        probe = keras.Model(model.input, [layer.output for layer in layers])
        outputs = probe(current, training=False)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        arrays = [np.asarray(out, dtype=np.float32)[0] for out in outputs]
        for index, (layer, array) in enumerate(zip(layers, arrays, strict=True)):
            result.append((layer.name, _location(part, index, layer.name), array))
        current = code_of(result)[None] if part == "encoder" else arrays[-1][None]
    return result


_HEADS = {"_mean": "mean", "_log_var": "log-var"}  # cae.builder's names of the two code maps


def _location(part: str, index: int, name: str) -> str:
    """``encoder[2]``; a variational code map's as its shape row says it, ``encoder[4] mean``
    (both maps at the index where the shared encoder ends: the builder's name holds it)."""
    for suffix, head in _HEADS.items():
        if part == "encoder" and name.endswith(suffix):
            return f"encoder[{int(name.split('_')[1])}] {head}"
    return f"{part}[{index}]"


def code_of(acts: list[Activation]) -> np.ndarray:
    """The code in a list of :func:`activations`: the encoder's output, which the decoder takes
    (a variational run's mean map, not its log-variance)."""
    codes = [a for _, where, a in acts if where.startswith("encoder") and "log-var" not in where]
    if not codes:
        raise ValueError(f"no encoder activations. Received: {len(acts)} activations")
    return codes[-1]


def _bias(weights: list[np.ndarray], count: int) -> np.ndarray:
    """A layer's biases (its last weights), or zeros where it has none."""
    return np.asarray(weights[-1], np.float32) if len(weights) > 1 else np.zeros(count, np.float32)


def _conv_kernel(weights: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Conv2D keeps its kernel as (kh, kw, cin, cout) already."""
    kernel = np.asarray(weights[0], np.float32)
    return kernel, _bias(weights, kernel.shape[-1])


def _deconv_kernel(weights: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Conv2DTranspose keeps (kh, kw, cout, cin): swapped to (kh, kw, cin, cout) for the view (it
    spreads each input value by these weights rather than summing a window with them)."""
    kernel = np.asarray(weights[0], np.float32).transpose(0, 1, 3, 2)
    return kernel, _bias(weights, kernel.shape[-1])


def _sepconv_kernel(weights: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """SeparableConv2D's depthwise (kh, kw, cin, depth) and 1x1 (1, 1, cin*depth, cout) kernels
    folded into the one (kh, kw, cin, cout) kernel they add up to: both steps are linear, so
    kernel[a, b, c, f] = sum over m of depthwise[a, b, c, m] * pointwise[c * depth + m, f]."""
    depthwise = np.asarray(weights[0], np.float64)
    kh, kw, cin, depth = depthwise.shape
    pointwise = np.asarray(weights[1], np.float64).reshape(cin, depth, -1)
    kernel = np.einsum("abcm,cmf->abcf", depthwise, pointwise).astype(np.float32)
    return kernel, _bias(weights, kernel.shape[-1])


def _depthwise_kernel(weights: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """DepthwiseConv2D's (kh, kw, cin, depth) kernels as the (kh, kw, cin, cin * depth) kernel of a
    convolution that computes the same: output channel c * depth + m reads input channel c alone
    (zero weights on every other channel)."""
    depthwise = np.asarray(weights[0], np.float32)
    kh, kw, cin, depth = depthwise.shape
    kernel = np.zeros((kh, kw, cin, cin * depth), np.float32)
    for channel in range(cin):
        kernel[:, :, channel, channel * depth : (channel + 1) * depth] = depthwise[:, :, channel]
    return kernel, _bias(weights, cin * depth)


# The (kh, kw, cin, cout) kernel and the biases of each convolution kind, from its Keras weights:
# what the kernel view draws and, for a sliding kind, what the worked convolution multiplies.
KERNEL_VIEWS: dict[type[Layer], Any] = {
    Conv: _conv_kernel,
    Deconv: _deconv_kernel,
    SepConv: _sepconv_kernel,
    Depthwise: _depthwise_kernel,
}


def conv_kernels(built: BuiltModel) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The kernels (kh, kw, cin, cout) and biases (cout,) of every convolution of any kind, with
    their locations (a separable or depthwise one as the one convolution kernel it amounts to)."""
    from cae.builder import spec_type

    found = []
    for part, model in (("encoder", built.encoder), ("decoder", built.decoder)):
        for index, layer in enumerate(_layers(model)):
            cls = LAYER_BY_NAME.get(spec_type(layer))
            if cls in KERNEL_VIEWS:
                kernel, bias = KERNEL_VIEWS[cls](layer.get_weights())
                found.append((f"{part}[{index}]", kernel, bias))
    return found


def sliding_convolutions(spec: ArchitectureSpec) -> list[str]:
    """The locations whose output :func:`worked_convolution` works out by hand: every sliding
    (not transposed) convolution of any kind, ``encoder[0]`` first."""
    return [
        f"{part}[{index}]"
        for part in ("encoder", "decoder")
        for index, layer in enumerate(getattr(spec, part))
        if KINDS[type(layer)].convolution and not KINDS[type(layer)].transposed
    ]


def pca_2d(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Project codes (N, ...) onto their two main axes: (points (N, 2), variance ratios (2,),
    components (2, D)); centred SVD, each axis signed so its largest loading is positive."""
    x = np.asarray(codes, dtype=np.float64)
    if x.ndim < 1 or len(x) < 2:
        raise ValueError(f"PCA needs at least 2 codes. Received: codes.shape={np.shape(codes)}")
    x = x.reshape(len(x), -1)
    centred = x - x.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    variance = singular**2
    total = float(variance.sum())
    ratios = variance / total if total > 0 else np.zeros_like(variance)
    components = np.zeros((2, x.shape[1]))
    kept = min(2, vt.shape[0])
    components[:kept] = vt[:kept]
    for axis in range(kept):
        if components[axis, np.argmax(np.abs(components[axis]))] < 0:
            components[axis] = -components[axis]
    ratio2 = np.zeros(2)
    ratio2[:kept] = ratios[:kept]
    return centred @ components.T, ratio2, components


def _same_pad_before(n: int, k: int, s: int) -> int:
    """Zeros Keras adds before the first row/column for 'same' padding."""
    out = -(-n // s)
    return max((out - 1) * s + k - n, 0) // 2


def activate(name: str, value: float) -> float:
    """A Keras activation applied to one number, by hand."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"Unknown activation. Received: activation={name!r}")
    return float(_ACTIVATIONS[name](float(value)))


def _spec_layer(spec: ArchitectureSpec, location: str) -> tuple[str, int, Any]:
    part, index = parse_location(location)
    layers = getattr(spec, part)
    if index >= len(layers):
        raise ValueError(f"The {part} has {len(layers)} layers. Received: location={location!r}")
    return part, index, layers[index]


def _layer_input(acts: list[Activation], image: np.ndarray, location: str) -> np.ndarray:
    """The tensor that goes into the layer at ``location``."""
    names = [loc for _, loc, _ in acts]
    position = names.index(location)
    return np.asarray(image, np.float32) if position == 0 else acts[position - 1][2]


def worked_convolution(
    built: BuiltModel,
    spec: ArchitectureSpec,
    image: np.ndarray,
    location: str,
    row: int,
    col: int,
    out_channel: int,
    acts: list[Activation] | None = None,
) -> dict[str, Any]:
    """One output value of a convolution computed by hand (patch x kernel + bias, activation) and
    Keras's value at the same place; pass ``acts`` from ``activations`` to avoid recomputing them."""
    part, index, layer = _spec_layer(spec, location)
    kind = KINDS[type(layer)]
    if not kind.convolution or kind.transposed:
        raise ValueError(f"{location} is not a sliding convolution. Received: type={layer.type!r}")
    acts = acts if acts is not None else activations(built, image)
    x = _layer_input(acts, image, location)
    y = dict((loc, a) for _, loc, a in acts)[location]
    keras_layer = _layers(getattr(built, part))[index]
    kernel, biases = KERNEL_VIEWS[type(layer)](keras_layer.get_weights())
    out_h, out_w, out_c = y.shape
    if not (0 <= row < out_h and 0 <= col < out_w and 0 <= out_channel < out_c):
        raise ValueError(
            f"{location} outputs {out_h}x{out_w}x{out_c}. "
            f"Received: row={row}, col={col}, out_channel={out_channel}"
        )
    bias = float(biases[out_channel])
    (kh, kw), (sh, sw) = layer.kernel, layer.strides
    dh, dw = layer.dilation
    in_h, in_w, cin = x.shape
    # A dilated kernel reads every d-th pixel: its span k + (k - 1)(d - 1) sets the padding.
    span_h, span_w = kh + (kh - 1) * (dh - 1), kw + (kw - 1) * (dw - 1)
    top = _same_pad_before(in_h, span_h, sh) if layer.padding == "same" else 0
    left = _same_pad_before(in_w, span_w, sw) if layer.padding == "same" else 0
    r0, c0 = row * sh - top, col * sw - left
    patch = np.zeros((kh, kw, cin), np.float32)
    padded = np.ones((kh, kw), bool)
    for a in range(kh):
        for b in range(kw):
            r, c = r0 + a * dh, c0 + b * dw
            if 0 <= r < in_h and 0 <= c < in_w:
                patch[a, b] = x[r, c]
                padded[a, b] = False
    kernel_slice = kernel[:, :, :, out_channel]
    products = patch.astype(np.float64) * kernel_slice.astype(np.float64)
    total = float(products.sum())
    pre = total + bias
    return {
        "location": location,
        "layer_name": keras_layer.name,
        "row": row,
        "col": col,
        "out_channel": out_channel,
        "input_shape": tuple(int(n) for n in x.shape),
        "output_shape": tuple(int(n) for n in y.shape),
        "padding": layer.padding,
        "strides": (sh, sw),
        "dilation": (dh, dw),
        "pad_before": (top, left),
        "input_origin": (r0, c0),
        "patch": patch,
        "padded": padded,
        "kernel": kernel_slice,
        "products": products,
        "products_sum": total,
        "bias": bias,
        "pre_activation": pre,
        "activation": layer.activation,
        "value": activate(layer.activation, pre),
        "keras_value": float(y[row, col, out_channel]),
    }


def worked_pooling(input_window: np.ndarray) -> dict[str, Any]:
    """Max and average of one pooling window (a small 2-D array), with where the maximum sits."""
    window = np.asarray(input_window, dtype=np.float64)
    if window.ndim != 2 or window.size == 0:
        raise ValueError(f"A pooling window is a 2-D array. Received: shape={window.shape}")
    where = np.unravel_index(int(np.argmax(window)), window.shape)
    return {
        "window": window,
        "max": float(window.max()),
        "avg": float(window.mean()),
        "argmax": (int(where[0]), int(where[1])),
        "sum": float(window.sum()),
        "count": int(window.size),
    }


def pooling_example(
    spec: ArchitectureSpec,
    image: np.ndarray,
    acts: list[Activation],
    location: str,
    row: int,
    col: int,
    channel: int,
) -> dict[str, Any]:
    """One window of a 'valid'-placed pooling position (fully inside the input) worked out from the
    real activations, with Keras's pooled value there."""
    _, _, layer = _spec_layer(spec, location)
    if not isinstance(layer, Pool):
        raise ValueError(f"{location} is not a pooling layer. Received: type={layer.type!r}")
    x = _layer_input(acts, image, location)
    y = dict((loc, a) for _, loc, a in acts)[location]
    (ph, pw), (sh, sw) = layer.size, layer.effective_strides
    r0, c0 = row * sh, col * sw
    if r0 + ph > x.shape[0] or c0 + pw > x.shape[1] or channel >= x.shape[2]:
        raise ValueError(
            f"The window must lie inside the {x.shape} input. Received: row={row}, col={col}, "
            f"channel={channel}"
        )
    result = worked_pooling(x[r0 : r0 + ph, c0 : c0 + pw, channel])
    result |= {
        "location": location,
        "mode": layer.mode,
        "row": row,
        "col": col,
        "channel": channel,
        "input_origin": (r0, c0),
        "keras_value": float(y[row, col, channel]),
        "value": result[layer.mode],
    }
    return result


def transposed_conv_2d(
    grid: np.ndarray, kernel: np.ndarray, strides: tuple[int, int], padding: str = "valid"
) -> np.ndarray:
    """Single-channel transposed convolution, numpy: each input value spreads value x kernel onto the
    output at (i*s, j*s); overlaps add; 'same' keeps the middle n*s like Keras."""
    x = np.asarray(grid, dtype=np.float64)
    k = np.asarray(kernel, dtype=np.float64)
    if x.ndim != 2 or k.ndim != 2 or padding not in ("valid", "same"):
        raise ValueError(
            "grid and kernel are 2-D arrays, padding 'valid' or 'same'. "
            f"Received: grid.shape={x.shape}, kernel.shape={k.shape}, padding={padding!r}"
        )
    (n, m), (kh, kw), (sh, sw) = x.shape, k.shape, strides
    full = np.zeros(((n - 1) * sh + kh, (m - 1) * sw + kw))
    for i in range(n):
        for j in range(m):
            full[i * sh : i * sh + kh, j * sw : j * sw + kw] += x[i, j] * k
    if padding == "valid":
        return full
    top, left = max(kh - sh, 0) // 2, max(kw - sw, 0) // 2
    return full[top : top + n * sh, left : left + m * sw]


def upsample_vs_transpose(
    grid: np.ndarray,
    size: tuple[int, int] = (2, 2),
    kernel: np.ndarray | None = None,
    strides: tuple[int, int] = (2, 2),
    padding: str = "valid",
) -> dict[str, Any]:
    """Nearest up-sampling and a transposed convolution of one small grid, with the output-size
    formulas filled in (kernel default: a 3x3 tent)."""
    x = np.asarray(grid, dtype=np.float64)
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"grid is a non-empty 2-D array. Received: shape={x.shape}")
    k = (
        np.outer([0.5, 1.0, 0.5], [0.5, 1.0, 0.5])
        if kernel is None
        else np.asarray(kernel, dtype=np.float64)
    )
    n, m = x.shape
    (kh, kw), (sh, sw) = k.shape, strides
    upsampled = np.repeat(np.repeat(x, size[0], axis=0), size[1], axis=1)
    transposed = transposed_conv_2d(x, k, strides, padding)
    if padding == "valid":
        formula = (
            f"(n - 1) x s + k: ({n} - 1) x {sh} + {kh} = {(n - 1) * sh + kh} rows, "
            f"({m} - 1) x {sw} + {kw} = {(m - 1) * sw + kw} columns"
        )
    else:
        formula = f"n x s: {n} x {sh} = {n * sh} rows, {m} x {sw} = {m * sw} columns"
    return {
        "grid": x,
        "size": tuple(size),
        "upsampled": upsampled,
        "upsample_formula": (
            f"n x size: {n} x {size[0]} = {n * size[0]} rows, {m} x {size[1]} = {m * size[1]} columns"
        ),
        "kernel": k,
        "strides": (sh, sw),
        "padding": padding,
        "transposed": transposed,
        "transpose_formula": formula,
    }


def feature_mosaic(
    maps: np.ndarray, max_tiles: int = 16, columns: int = 8, scale: int = 4, gap: int = 2
) -> np.ndarray:
    """The first ``max_tiles`` channels of (H, W, C) as one RGB image (uint8), a tile per channel,
    one colour range for the whole layer."""
    a = np.asarray(maps, dtype=np.float64)
    if a.ndim != 3 or max_tiles < 1 or columns < 1 or scale < 1:
        raise ValueError(
            f"maps is (H, W, C); max_tiles, columns, scale >= 1. Received: shape={a.shape}, "
            f"max_tiles={max_tiles}, columns={columns}, scale={scale}"
        )
    h, w, c = a.shape
    count = min(c, max_tiles)
    cols = min(columns, count)
    rows = -(-count // cols)
    lo, hi = float(a.min()), float(a.max())
    norm = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    th, tw = h * scale, w * scale
    out = np.full((rows * th + (rows - 1) * gap, cols * tw + (cols - 1) * gap, 3), 255, np.uint8)
    for i in range(count):
        r, q = divmod(i, cols)
        tile = colormap(norm[:, :, i], 0.0, 1.0)  # the editor's scale: one palette
        tile = np.repeat(np.repeat(tile, scale, axis=0), scale, axis=1)
        out[r * (th + gap) : r * (th + gap) + th, q * (tw + gap) : q * (tw + gap) + tw] = tile
    return out


def kernel_mosaic(kernel: np.ndarray, max_in: int = 8, max_out: int = 16) -> np.ndarray:
    """Kernels (kh, kw, cin, cout) laid out as one 2-D array: a row per input channel, a column per
    output channel, NaN gaps between them (for one diverging heatmap)."""
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 4:
        raise ValueError(f"kernel is (kh, kw, cin, cout). Received: shape={k.shape}")
    kh, kw, cin, cout = k.shape
    ni, no = min(cin, max_in), min(cout, max_out)
    out = np.full((ni * (kh + 1) - 1, no * (kw + 1) - 1), np.nan)
    for i in range(ni):
        for o in range(no):
            out[i * (kh + 1) : i * (kh + 1) + kh, o * (kw + 1) : o * (kw + 1) + kw] = k[:, :, i, o]
    return out
