"""Architecture specs: layers as frozen dataclasses, JSON round trip, validation and presets.

Pure Python: importing this module never imports TensorFlow. The JSON format is the one in
DESIGN.md ("The architecture file"). Every error is a ``ValueError`` naming the layer (``encoder[2]``)
and ending with the value received.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar

from cae.text import Shown, clean_name, json_error

PADDINGS = ("same", "valid")
ACTIVATIONS = (
    "relu",
    "sigmoid",
    "tanh",
    "linear",
    "elu",
    "selu",
    "softplus",
    "leaky_relu",
    "gelu",
    "swish",
)
POOL_MODES = ("max", "avg")
INTERPOLATIONS = ("nearest", "bilinear")

# Limits that keep an absurd design from ever reaching TensorFlow.
MAX_FILTERS = 1024
MAX_KERNEL = 64
MAX_SCALE = 16
MAX_AMOUNT = 512
MAX_LAYERS_PER_PART = 64
MAX_IMAGE_SIDE = 1024
# Strides and dilations: Keras takes any positive value, and one past the image side acts like the
# side itself (a stride of 20 on a 7-pixel input gives one pixel), so the image side is the cap: a
# pool of 20 with strides 20 is a real layer. What they make is bounded by the output-size and
# parameter limits in cae/shapes.py.
MAX_STRIDE = MAX_IMAGE_SIDE
MAX_DILATION = MAX_IMAGE_SIDE
MAX_CHANNELS = 64
MAX_DEPTH_MULTIPLIER = 64  # a depthwise kernel's outputs per input channel
MAX_NAME_LENGTH = 100
MAX_SPEC_BYTES = 1_000_000  # an architecture file: the biggest valid one is ~30 KB
MAX_BETA = 1000.0  # the KL weight of a variational design; far above any useful value
MAX_WARMUP_EPOCHS = 10_000  # as many as cae.training.LIMITS allows epochs

Pair = tuple[int, int]
Amount = tuple[tuple[int, int], tuple[int, int]]


class SpecError(ValueError):
    """A spec that cannot be loaded: wrong keys, types or values."""


def _safe_repr(value: Any, limit: int = 300) -> str:
    """``repr(value)``, cut to ``limit`` characters; never raises (a 5,000-digit int or a list
    nested 100,000 deep cannot be shown whole)."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):
        return f"<{type(value).__name__} too large to show>"
    return text if len(text) <= limit else text[:limit] + "..."


def _received(**values: Any) -> str:
    return "Received: " + ", ".join(f"{key}={_safe_repr(value)}" for key, value in values.items())


def _fail(where: str, problem: str, **values: Any) -> SpecError:
    return SpecError(f"{where}: {problem}. {_received(**values)}")


def _refuse_unknown_keys(
    data: dict[Any, Any], allowed: set[str], where: str, what: str = ""
) -> None:
    """A SpecError naming the first key (sorted) of ``data`` not in ``allowed``, if any."""
    unknown = sorted(str(key) for key in data if key not in allowed)
    if unknown:
        raise _fail(
            where,
            f"unknown key {unknown[0]!r}{what} (allowed: {', '.join(sorted(allowed))})",
            key=unknown[0],
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _pair(value: Any, where: str, key: str, *, minimum: int = 1, maximum: int) -> Pair:
    """An int or a [a, b] list as a (a, b) tuple of ints in [minimum, maximum]."""
    if _is_int(value):
        items: tuple[Any, ...] = (value, value)
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        items = tuple(value)
    else:
        raise _fail(where, f"'{key}' must be an integer or a list of two integers", **{key: value})
    for item in items:
        if not _is_int(item):
            raise _fail(where, f"'{key}' must hold integers", **{key: value})
        if item < minimum:
            raise _fail(where, f"'{key}' must be at least {minimum}", **{key: value})
        if item > maximum:
            raise _fail(where, f"'{key}' must be at most {maximum} (limit)", **{key: value})
    return (int(items[0]), int(items[1]))


def _amount(value: Any, where: str) -> Amount:
    """A crop/pad amount as Keras takes it: int, [rows, cols] or [[top, bottom], [left, right]]."""
    if _is_int(value):
        rows = cols = (value, value)
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_int(v) for v in value):
        rows, cols = (value[0], value[0]), (value[1], value[1])
    elif (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, (list, tuple)) and len(v) == 2 for v in value)
        and all(_is_int(item) for v in value for item in v)
    ):
        rows, cols = (value[0][0], value[0][1]), (value[1][0], value[1][1])
    else:
        raise _fail(
            where,
            "'amount' must be an integer, [rows, cols] or [[top, bottom], [left, right]]",
            amount=value,
        )
    for item in (*rows, *cols):
        if item < 0:
            raise _fail(where, "'amount' must not be negative", amount=value)
        if item > MAX_AMOUNT:
            raise _fail(where, f"'amount' must be at most {MAX_AMOUNT} (limit)", amount=value)
    return ((int(rows[0]), int(rows[1])), (int(cols[0]), int(cols[1])))


def _int(value: Any, where: str, key: str, *, minimum: int, maximum: int) -> int:
    if not _is_int(value):
        raise _fail(where, f"'{key}' must be an integer", **{key: value})
    if value < minimum:
        raise _fail(where, f"'{key}' must be at least {minimum}", **{key: value})
    if value > maximum:
        raise _fail(where, f"'{key}' must be at most {maximum} (limit)", **{key: value})
    return int(value)


def _choice(value: Any, where: str, key: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise _fail(where, f"'{key}' must be one of {', '.join(choices)}", **{key: value})
    return value


def effective_kernel(kernel: Pair, dilation: Pair) -> Pair:
    """The span of a dilated kernel, k + (k - 1)(d - 1) per axis: a 3x3 kernel with dilation 2
    covers 5x5 (its taps 2 apart). Keras's and TensorFlow's shape rules use this span."""
    return (
        kernel[0] + (kernel[0] - 1) * (dilation[0] - 1),
        kernel[1] + (kernel[1] - 1) * (dilation[1] - 1),
    )


class _Kernel:
    """The kernel span of a convolution kind (its ``kernel`` and ``dilation`` fields)."""

    kernel: Pair
    dilation: Pair

    @property
    def effective_kernel(self) -> Pair:
        """The kernel's span with its dilation, k + (k - 1)(d - 1) per axis."""
        return effective_kernel(self.kernel, self.dilation)


@dataclass(frozen=True)
class Conv(_Kernel):
    """A 2-D convolution (Keras Conv2D)."""

    filters: int
    kernel: Pair = (3, 3)
    strides: Pair = (1, 1)
    padding: str = "same"
    activation: str = "relu"
    dilation: Pair = (1, 1)  # Keras's dilation_rate: taps d apart; only with strides 1
    type: ClassVar[str] = "conv"


@dataclass(frozen=True)
class Deconv(_Kernel):
    """A transposed convolution, "deconvolution" (Keras Conv2DTranspose)."""

    filters: int
    kernel: Pair = (3, 3)
    strides: Pair = (1, 1)
    padding: str = "same"
    activation: str = "relu"
    output_padding: Pair | None = None
    dilation: Pair = (1, 1)  # as a convolution's; only with strides 1
    type: ClassVar[str] = "deconv"


@dataclass(frozen=True)
class SepConv(_Kernel):
    """A depthwise separable convolution (Keras SeparableConv2D): a kernel per input channel
    (``depth_multiplier`` of them), then a 1x1 convolution mixing them into ``filters`` channels."""

    filters: int
    kernel: Pair = (3, 3)
    strides: Pair = (1, 1)
    padding: str = "same"
    activation: str = "relu"
    dilation: Pair = (1, 1)
    depth_multiplier: int = 1  # depthwise kernels per input channel before the 1x1 mixing
    type: ClassVar[str] = "sepconv"


@dataclass(frozen=True)
class Depthwise(_Kernel):
    """A depthwise convolution (Keras DepthwiseConv2D): each input channel convolved with its own
    ``depth_multiplier`` kernels, never mixed, so it gives channels x depth_multiplier channels."""

    kernel: Pair = (3, 3)
    strides: Pair = (1, 1)
    padding: str = "same"
    activation: str = "relu"
    dilation: Pair = (1, 1)
    depth_multiplier: int = 1
    type: ClassVar[str] = "depthwise"


@dataclass(frozen=True)
class Pool:
    """Max or average pooling; ``strides`` None means the pool size, as in Keras."""

    mode: str = "max"
    size: Pair = (2, 2)
    strides: Pair | None = None
    padding: str = "same"
    type: ClassVar[str] = "pool"

    @property
    def effective_strides(self) -> Pair:
        """The strides Keras uses: the given ones, else the pool size."""
        return self.strides if self.strides is not None else self.size


@dataclass(frozen=True)
class Upsample:
    """Up-sampling by repetition or bilinear interpolation (Keras UpSampling2D)."""

    size: Pair = (2, 2)
    interpolation: str = "nearest"
    type: ClassVar[str] = "upsample"


@dataclass(frozen=True)
class Crop:
    """Cropping rows and columns off the border (Keras Cropping2D)."""

    amount: Amount = ((1, 1), (1, 1))
    type: ClassVar[str] = "crop"


@dataclass(frozen=True)
class Pad:
    """Zero padding around the border (Keras ZeroPadding2D)."""

    amount: Amount = ((1, 1), (1, 1))
    type: ClassVar[str] = "pad"


@dataclass(frozen=True)
class BatchNorm:
    """Batch normalisation over the channel axis."""

    type: ClassVar[str] = "batchnorm"


@dataclass(frozen=True)
class Dropout:
    """Dropout with the given rate (active in training only)."""

    rate: float = 0.1
    type: ClassVar[str] = "dropout"


Layer = Conv | Deconv | SepConv | Depthwise | Pool | Upsample | Crop | Pad | BatchNorm | Dropout
Convolution = Conv | Deconv | SepConv | Depthwise  # the kinds with a learned, sliding kernel


# ---------------------------------------------------------------- parse: one function per kind
# Each takes a layer's JSON dict (type and keys already checked) and returns the dataclass's fields,
# validated; defaults are DESIGN.md's.


def _parse_convolution(data: dict[str, Any], where: str) -> dict[str, Any]:
    """The fields every convolution kind shares, with those its class has: filters (required where
    the kind has them), kernel 3, strides 1, padding "same", activation "relu", dilation 1, and a
    depth_multiplier of 1 where the kind has one.

    Strides above 1 with a dilation above 1 (on any axes) are refused where Keras refuses them
    (Conv2D and Conv2DTranspose; its separable and depthwise layers run them, measured).
    """
    cls = LAYER_BY_NAME[data["type"]]
    has = {item.name for item in fields(cls)}
    values: dict[str, Any] = {}
    if "filters" in has:
        if "filters" not in data:
            raise _fail(where, f"a {data['type']} layer needs 'filters'", filters=None)
        values["filters"] = _int(data["filters"], where, "filters", minimum=1, maximum=MAX_FILTERS)
    values |= {
        "kernel": _pair(data.get("kernel", 3), where, "kernel", maximum=MAX_KERNEL),
        "strides": _pair(data.get("strides", 1), where, "strides", maximum=MAX_STRIDE),
        "padding": _choice(data.get("padding", "same"), where, "padding", PADDINGS),
        "activation": _choice(data.get("activation", "relu"), where, "activation", ACTIVATIONS),
        "dilation": _pair(data.get("dilation", 1), where, "dilation", maximum=MAX_DILATION),
    }
    if "depth_multiplier" in has:
        values["depth_multiplier"] = _int(
            data.get("depth_multiplier", 1),
            where,
            "depth_multiplier",
            minimum=1,
            maximum=MAX_DEPTH_MULTIPLIER,
        )
    dilated_and_strided = max(values["strides"]) > 1 and max(values["dilation"]) > 1
    if dilated_and_strided and not KINDS[cls].strided_dilation:
        raise _fail(
            where,
            "Keras cannot combine strides above 1 with a dilation above 1: set strides to 1 "
            "or dilation to 1",
            strides=data.get("strides"),
            dilation=data.get("dilation"),
        )
    return values


def _parse_deconv(data: dict[str, Any], where: str) -> dict[str, Any]:
    """A conv's fields, plus an optional output_padding below the strides (as Keras requires)."""
    values = _parse_convolution(data, where)
    if data.get("output_padding") is not None:
        output_padding = _pair(
            data["output_padding"], where, "output_padding", minimum=0, maximum=MAX_STRIDE
        )
        strides = values["strides"]
        if output_padding[0] >= strides[0] or output_padding[1] >= strides[1]:
            raise _fail(
                where,
                f"'output_padding' must be smaller than the strides {list(strides)}",
                output_padding=data["output_padding"],
            )
        values["output_padding"] = output_padding
    return values


def _parse_pool(data: dict[str, Any], where: str) -> dict[str, Any]:
    """Mode "max", size 2, strides only when given (else the size), padding "same"."""
    values: dict[str, Any] = {
        "mode": _choice(data.get("mode", "max"), where, "mode", POOL_MODES),
        "size": _pair(data.get("size", 2), where, "size", maximum=MAX_KERNEL),
    }
    if data.get("strides") is not None:
        values["strides"] = _pair(data["strides"], where, "strides", maximum=MAX_STRIDE)
    values["padding"] = _choice(data.get("padding", "same"), where, "padding", PADDINGS)
    return values


def _parse_upsample(data: dict[str, Any], where: str) -> dict[str, Any]:
    """Size 2, interpolation "nearest"."""
    return {
        "size": _pair(data.get("size", 2), where, "size", maximum=MAX_SCALE),
        "interpolation": _choice(
            data.get("interpolation", "nearest"), where, "interpolation", INTERPOLATIONS
        ),
    }


def _parse_amount(data: dict[str, Any], where: str) -> dict[str, Any]:
    """A crop's or a zero padding's amount, 1 by default, in any of the forms Keras takes."""
    return {"amount": _amount(data.get("amount", 1), where)}


def _parse_batchnorm(data: dict[str, Any], where: str) -> dict[str, Any]:
    """Nothing to set: batch normalisation has no options here."""
    return {}


def _parse_dropout(data: dict[str, Any], where: str) -> dict[str, Any]:
    """A finite rate in [0, 1), 0.1 by default."""
    rate = data.get("rate", 0.1)
    if (
        not isinstance(rate, (int, float))
        or isinstance(rate, bool)
        or (isinstance(rate, float) and not math.isfinite(rate))
    ):
        raise _fail(where, "'rate' must be a number", rate=rate)
    if not 0 <= rate < 1:
        raise _fail(where, "'rate' must be at least 0 and below 1", rate=rate)
    return {"rate": float(rate)}


# ---------------------------------------------------------------- labels: one function per kind


def _size(pair: Pair) -> str:
    return f"{pair[0]}x{pair[1]}"


def _convolution_label(layer: Convolution) -> str:
    """``Conv 16 3x3 same relu``: the kind's short name, the filters where it has them, the kernel,
    ``stride 2x2`` / ``dilation 2x2`` where not 1, padding and activation, then ``x2 depth`` for a
    depth multiplier above 1 and ``out-pad 1x1`` for a set output_padding."""
    kind = KINDS[type(layer)]
    text = kind.short
    if kind.filters:
        text += f" {layer.filters}"  # type: ignore[union-attr]
    text += f" {_size(layer.kernel)}"
    if layer.strides != (1, 1):
        text += f" stride {_size(layer.strides)}"
    if layer.dilation != (1, 1):
        text += f" dilation {_size(layer.dilation)}"
    text += f" {layer.padding} {layer.activation}"
    if getattr(layer, "depth_multiplier", 1) != 1:
        text += f" x{layer.depth_multiplier} depth"  # type: ignore[union-attr]
    if getattr(layer, "output_padding", None) is not None:
        text += f" out-pad {_size(layer.output_padding)}"  # type: ignore[union-attr]
    return text


def _pool_label(layer: Pool) -> str:
    """``MaxPool 2x2 same``; ``stride 1x1`` after the size when the strides differ from it."""
    text = f"{layer.mode.capitalize()}Pool {_size(layer.size)}"
    if layer.strides is not None and layer.strides != layer.size:
        text += f" stride {_size(layer.strides)}"
    return f"{text} {layer.padding}"


def _upsample_label(layer: Upsample) -> str:
    """``UpSample 2x2 nearest``."""
    return f"UpSample {_size(layer.size)} {layer.interpolation}"


def _amount_label(layer: Crop | Pad) -> str:
    """``Crop t2 b2 l2 r2`` (rows off the top and bottom, columns off the left and right) or
    ``Pad t1 b1 l1 r1`` (zero rows and columns added)."""
    (top, bottom), (left, right) = layer.amount
    return f"{KINDS[type(layer)].short} t{top} b{bottom} l{left} r{right}"


def _batchnorm_label(layer: BatchNorm) -> str:
    """``BatchNorm``."""
    return "BatchNorm"


def _dropout_label(layer: Dropout) -> str:
    """``Dropout 0.1``."""
    return f"Dropout {layer.rate:g}"


# ---------------------------------------------------------------- the registry: one record per kind


@dataclass(frozen=True)
class LayerKind:
    """One layer kind: how the architecture file reads it, what people call it, and what it is.

    Every concern reads the traits instead of naming kinds: the shape fixes and the mirror, the
    builder, the editor, the explanations, Inspect and the sweeps' work estimate. The concerns that
    need code of their own (a shape rule, a Keras layer, editor widgets, a mirror, an explanation, a
    kernel view) keep one table each keyed by the kind's class, and tests/test_layer_tables.py names
    the table a kind is missing from.
    """

    cls: type[Layer]
    title: str  # what the editor calls it: "Transposed convolution"
    short: str  # the first word of its label: "Deconv"
    summary: str  # one sentence: what it computes (the editor's help)
    parse: Callable[[dict[str, Any], str], dict[str, Any]]  # JSON dict -> validated fields
    label: Callable[[Any], str]  # layer -> "Conv 16 3x3 same relu"
    convolution: bool = False  # a learned kernel slides over the input (kernel, strides, padding,
    # dilation, activation fields)
    transposed: bool = False  # spreads each input value over a patch: strides enlarge the output
    filters: bool = False  # its 'filters' set the output's channel count
    pooling: bool = False  # a window with no weights (size, strides, padding)
    resizing: bool = False  # changes the height and width by its own amount (up-sample, crop, pad)
    strided_dilation: bool = False  # Keras runs it with strides and a dilation both above 1

    @property
    def name(self) -> str:
        """The ``type`` of the architecture file: "conv"."""
        return self.cls.type


KINDS: dict[type[Layer], LayerKind] = {
    kind.cls: kind
    for kind in (
        LayerKind(
            Conv,
            "Convolution",
            "Conv",
            "Slides 'filters' learned kernels over all input channels; each gives one channel.",
            _parse_convolution,
            _convolution_label,
            convolution=True,
            filters=True,
        ),
        LayerKind(
            Deconv,
            "Transposed convolution",
            "Deconv",
            "Spreads each input value over a kernel-sized patch of the output (strides enlarge it).",
            _parse_deconv,
            _convolution_label,
            convolution=True,
            transposed=True,
            filters=True,
        ),
        LayerKind(
            SepConv,
            "Separable convolution",
            "SepConv",
            "A kernel per input channel (depth multiplier of them), then a 1x1 convolution mixing "
            "them into 'filters' channels: far fewer weights than a convolution.",
            _parse_convolution,
            _convolution_label,
            convolution=True,
            filters=True,
            strided_dilation=True,
        ),
        LayerKind(
            Depthwise,
            "Depthwise convolution",
            "Depthwise",
            "Each input channel convolved with its own kernels (depth multiplier of them), never "
            "mixed: channels x depth multiplier outputs.",
            _parse_convolution,
            _convolution_label,
            convolution=True,
            strided_dilation=True,
        ),
        LayerKind(
            Pool,
            "Pooling",
            "Pool",
            "Keeps the largest (max) or the average value of each window: no weights.",
            _parse_pool,
            _pool_label,
            pooling=True,
        ),
        LayerKind(
            Upsample,
            "Up-sampling",
            "UpSample",
            "Repeats (nearest) or interpolates (bilinear) each value over a block: no weights.",
            _parse_upsample,
            _upsample_label,
            resizing=True,
        ),
        LayerKind(
            Crop,
            "Crop",
            "Crop",
            "Cuts rows and columns off the border.",
            _parse_amount,
            _amount_label,
            resizing=True,
        ),
        LayerKind(
            Pad,
            "Zero padding",
            "Pad",
            "Adds rows and columns of zeros around the border.",
            _parse_amount,
            _amount_label,
            resizing=True,
        ),
        LayerKind(
            BatchNorm,
            "Batch normalisation",
            "BatchNorm",
            "Scales each channel to zero mean and unit variance over the batch, then by two "
            "learned values.",
            _parse_batchnorm,
            _batchnorm_label,
        ),
        LayerKind(
            Dropout,
            "Dropout",
            "Dropout",
            "Zeroes a random share ('rate') of the values while training.",
            _parse_dropout,
            _dropout_label,
        ),
    )
}

# Every layer kind, in the order the editor offers them.
LAYER_TYPES: tuple[type[Layer], ...] = tuple(KINDS)
LAYER_BY_NAME: dict[str, type[Layer]] = {cls.type: cls for cls in LAYER_TYPES}


def kind_of(layer: Layer | type[Layer]) -> LayerKind:
    """The registry record of a layer (or of its class)."""
    cls = layer if isinstance(layer, type) else type(layer)
    if cls not in KINDS:
        raise TypeError(f"not a layer kind. Received: layer={layer!r}")
    return KINDS[cls]


def layer_from_dict(data: Any, where: str = "layer") -> Layer:
    """Build one layer from its JSON dict, validating every key and value."""
    if not isinstance(data, dict):
        raise _fail(where, "a layer must be a JSON object", layer=data)
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in LAYER_BY_NAME:
        raise _fail(where, f"'type' must be one of {', '.join(LAYER_BY_NAME)}", type=kind)
    cls = LAYER_BY_NAME[kind]
    _refuse_unknown_keys(
        data, {f.name for f in fields(cls)} | {"type"}, where, f" for a {kind} layer"
    )
    return cls(**KINDS[cls].parse(data, where))


def layer_to_dict(layer: Layer) -> dict[str, Any]:
    """The JSON dict of one layer, with every field spelled out (lists, not tuples)."""
    out: dict[str, Any] = {"type": layer.type}
    for item in fields(layer):
        value = getattr(layer, item.name)
        if value is None:
            continue
        if isinstance(value, tuple):
            value = [list(v) if isinstance(v, tuple) else v for v in value]
        out[item.name] = value
    return out


def describe_layer(layer: Layer) -> str:
    """A short human label such as ``Conv 16 3x3 stride 2x2 same relu``."""
    return kind_of(layer).label(layer)


@dataclass(frozen=True)
class Variational:
    """Train the design as a variational autoencoder: the code becomes a mean and a log-variance
    map, training decodes a sample from them, and the loss adds ``beta`` times the KL divergence
    from the prior N(0, 1), its weight rising linearly from 0 over the first ``warmup_epochs``."""

    beta: float = 1.0  # 1 is the evidence lower bound with the bce loss; higher pulls harder
    warmup_epochs: int = 0  # 0: the full weight from the first epoch

    def describe(self) -> str:
        """``variational, beta 2, KL warm-up 3 epochs``: the objective, for people."""
        warmup = self.warmup_epochs
        return f"variational, beta {self.beta:g}" + (
            f", KL warm-up {warmup} epoch{'s' if warmup != 1 else ''}" if warmup else ""
        )

    @classmethod
    def from_dict(cls, data: Any) -> Variational:
        """Load and validate the spec's ``variational`` object."""
        where = "spec.variational"
        if not isinstance(data, dict):
            raise _fail(
                where,
                "'variational' must be a JSON object such as {\"beta\": 1.0}",
                variational=_short(data),
            )
        _refuse_unknown_keys(data, {"beta", "warmup_epochs"}, where)
        beta = data.get("beta", 1.0)
        if (
            not isinstance(beta, (int, float))
            or isinstance(beta, bool)
            or not math.isfinite(beta)
            or not 0 < beta <= MAX_BETA
        ):
            raise _fail(
                where, f"'beta' must be a number above 0 and at most {MAX_BETA:g}", beta=beta
            )
        warmup = _int(
            data.get("warmup_epochs", 0),
            where,
            "warmup_epochs",
            minimum=0,
            maximum=MAX_WARMUP_EPOCHS,
        )
        return cls(float(beta), warmup)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the spec's ``variational`` field."""
        return {"beta": self.beta, "warmup_epochs": self.warmup_epochs}

    def weight(self, epoch: int) -> float:
        """The KL weight in (0-based) ``epoch``: ``beta * epoch / warmup_epochs`` during the
        warm-up, ``beta`` after it (and always without one)."""
        if self.warmup_epochs <= 0:
            return self.beta
        return self.beta * min(1.0, max(0, epoch) / self.warmup_epochs)


@dataclass(frozen=True)
class ArchitectureSpec:
    """A whole autoencoder: input shape, encoder layers (ending at the code) and decoder layers;
    ``variational`` set makes it a variational autoencoder (absent: a plain one)."""

    name: str
    input_shape: tuple[int, int, int]
    encoder: tuple[Layer, ...]
    decoder: tuple[Layer, ...] = field(default_factory=tuple)
    variational: Variational | None = None

    @classmethod
    def from_dict(cls, data: Any) -> ArchitectureSpec:
        """Load and validate a spec from its JSON dict."""
        if not isinstance(data, dict):
            raise _fail("spec", "the architecture must be a JSON object", spec=_short(data))
        _refuse_unknown_keys(
            data, {"name", "input_shape", "encoder", "decoder", "variational"}, "spec"
        )
        name = data.get("name", "custom")
        if isinstance(name, str):  # no control or bidi characters, one line (cae.text)
            name = clean_name(name)
        if not isinstance(name, str) or not name.strip():
            raise _fail("spec", "'name' must be a non-empty string", name=name)
        if len(name) > MAX_NAME_LENGTH:
            raise _fail(
                "spec",
                f"'name' must be at most {MAX_NAME_LENGTH} characters",
                name=name[:40] + "...",
            )
        input_shape = _input_shape(data.get("input_shape"))
        parts: dict[str, tuple[Layer, ...]] = {}
        for part in ("encoder", "decoder"):
            layers = data.get(part)
            if not isinstance(layers, list):
                raise _fail("spec", f"'{part}' must be a list of layers", **{part: _short(layers)})
            if part == "encoder" and not layers:
                raise _fail("spec", "'encoder' needs at least one layer", encoder=layers)
            if len(layers) > MAX_LAYERS_PER_PART:
                raise _fail(
                    "spec",
                    f"'{part}' may have at most {MAX_LAYERS_PER_PART} layers (limit)",
                    layers=len(layers),
                )
            parts[part] = tuple(
                layer_from_dict(layer, f"{part}[{index}]") for index, layer in enumerate(layers)
            )
        variational = data.get("variational")
        return cls(
            name.strip(),
            input_shape,
            parts["encoder"],
            parts["decoder"],
            None if variational is None else Variational.from_dict(variational),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON dict of this spec (the format of DESIGN.md); ``variational`` only when set."""
        out: dict[str, Any] = {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "encoder": [layer_to_dict(layer) for layer in self.encoder],
            "decoder": [layer_to_dict(layer) for layer in self.decoder],
        }
        if self.variational is not None:
            out["variational"] = self.variational.to_dict()
        return out

    @classmethod
    def from_json(cls, text: str | bytes) -> ArchitectureSpec:
        """Load a spec from JSON text; malformed JSON is a ``SpecError`` too, and so is text over
        ``MAX_SPEC_BYTES`` (checked before parsing: 190 MB of ``{},`` took 5 GB to parse)."""
        size = len(text.encode("utf-8") if isinstance(text, str) else text)
        if size > MAX_SPEC_BYTES:
            raise SpecError(
                f"spec: an architecture file may hold at most {MAX_SPEC_BYTES:,} bytes. "
                f"Received: {size:,} bytes"
            )
        try:
            text = text.decode("utf-8") if isinstance(text, (bytes, bytearray)) else text
            data = json.loads(text)
        except (ValueError, RecursionError) as error:
            problem, received = json_error(error, text)
            raise SpecError(f"spec: not valid JSON: {problem}. Received: {received}") from None
        return cls.from_dict(data)

    def to_json(self, indent: int | None = 2) -> str:
        """The spec as JSON text."""
        return json.dumps(self.to_dict(), indent=indent)

    def with_layers(
        self, encoder: tuple[Layer, ...] | None = None, decoder: tuple[Layer, ...] | None = None
    ) -> ArchitectureSpec:
        """A copy with the encoder and/or decoder replaced."""
        return replace(
            self,
            encoder=self.encoder if encoder is None else tuple(encoder),
            decoder=self.decoder if decoder is None else tuple(decoder),
        )


def _short(value: Any, limit: int = 60) -> Any:
    """``value``, or its repr cut to ``limit`` characters (shown as is, not quoted again)."""
    text = _safe_repr(value, limit=10**9)
    return value if len(text) <= limit else Shown(text[:limit] + "...")


def _input_shape(value: Any) -> tuple[int, int, int]:
    where = "spec"
    if not isinstance(value, (list, tuple)) or len(value) not in (2, 3):
        raise _fail(where, "'input_shape' must be [height, width, channels]", input_shape=value)
    if not all(_is_int(item) for item in value):
        raise _fail(where, "'input_shape' must hold integers", input_shape=value)
    height, width = value[0], value[1]
    channels = value[2] if len(value) == 3 else 1
    if min(height, width, channels) < 1:
        raise _fail(where, "'input_shape' sizes must be positive", input_shape=value)
    if max(height, width) > MAX_IMAGE_SIDE:
        raise _fail(
            where,
            f"'input_shape' sides must be at most {MAX_IMAGE_SIDE} (limit)",
            input_shape=value,
        )
    if channels > MAX_CHANNELS:
        raise _fail(
            where,
            f"'input_shape' channels must be at most {MAX_CHANNELS} (limit)",
            input_shape=value,
        )
    return (int(height), int(width), int(channels))


# ---------------------------------------------------------------- presets


def preset_classic() -> ArchitectureSpec:
    """Two convolution + max-pooling stages down to a 7x7x1 code (16x smaller), 2,690 parameters.

    3x3 convolutions of 16, 8 and 1 filters with 2x2 max pooling on the way down; 8 and 16 filters
    with 2x2 nearest up-sampling on the way up; a 1x3 sigmoid convolution back to one channel. It is
    in the style of the convolutional autoencoder of the Keras blog post "Building Autoencoders in
    Keras" but is not that network, whose code is 4x4x8 (three pooling stages, and a 'valid'
    convolution in its decoder).
    """
    return ArchitectureSpec(
        name="classic",
        input_shape=(28, 28, 1),
        encoder=(
            Conv(16, (3, 3)),
            Pool("max", (2, 2)),
            Conv(8, (3, 3)),
            Pool("max", (2, 2)),
            Conv(1, (3, 3)),
        ),
        decoder=(
            Conv(8, (3, 3)),
            Upsample((2, 2)),
            Conv(16, (3, 3)),
            Upsample((2, 2)),
            Conv(1, (1, 3), activation="sigmoid"),
        ),
    )


def preset_keras_denoiser() -> ArchitectureSpec:
    """The Keras denoising example: a 7x7x32 code and transposed convolutions, 28,353 parameters."""
    return ArchitectureSpec(
        name="keras-denoiser",
        input_shape=(28, 28, 1),
        encoder=(
            Conv(32, (3, 3)),
            Pool("max", (2, 2)),
            Conv(32, (3, 3)),
            Pool("max", (2, 2)),
        ),
        decoder=(
            Deconv(32, (3, 3), strides=(2, 2)),
            Deconv(32, (3, 3), strides=(2, 2)),
            Conv(1, (3, 3), activation="sigmoid"),
        ),
    )


def preset_deep() -> ArchitectureSpec:
    """Three down-sampling stages (28 -> 14 -> 7 -> 4, a 4x4x4 code); the decoder crops 32 back to 28."""
    return ArchitectureSpec(
        name="deep",
        input_shape=(28, 28, 1),
        encoder=(
            Conv(32, (3, 3)),
            Pool("max", (2, 2)),
            Conv(16, (3, 3)),
            Pool("max", (2, 2)),
            Conv(8, (3, 3)),
            Pool("max", (2, 2)),
            Conv(4, (3, 3)),
        ),
        decoder=(
            Conv(8, (3, 3)),
            Upsample((2, 2)),
            Conv(16, (3, 3)),
            Upsample((2, 2)),
            Conv(32, (3, 3)),
            Upsample((2, 2)),
            Crop(((2, 2), (2, 2))),
            Conv(1, (3, 3), activation="sigmoid"),
        ),
    )


def preset_wide() -> ArchitectureSpec:
    """The classic network's 7x7x1 code (49 values) behind a deeper, wider network that beats PCA
    with as many values: 131,138 parameters.

    Two 3x3 convolutions per stage (32 filters at 28x28, 64 at 14x14) with 2x2 max pooling, then a
    3x3 one-filter convolution with a linear activation to the code, so that a code value can be
    negative (a ReLU code loses every value below 0); mirrored on the way up: two convolutions of
    64 at 7x7, up-sampling, two of 32 at 14x14, up-sampling, a 3x3 sigmoid convolution. The shipped
    run ``models/wide-mnist-sample`` (docs/benchmarks.md, "Designs that beat PCA") says how it
    was found and what it scores.
    """
    return ArchitectureSpec(
        name="wide",
        input_shape=(28, 28, 1),
        encoder=(
            Conv(32, (3, 3)),
            Conv(32, (3, 3)),
            Pool("max", (2, 2)),
            Conv(64, (3, 3)),
            Conv(64, (3, 3)),
            Pool("max", (2, 2)),
            Conv(1, (3, 3), activation="linear"),
        ),
        decoder=(
            Conv(64, (3, 3)),
            Conv(64, (3, 3)),
            Upsample((2, 2)),
            Conv(32, (3, 3)),
            Conv(32, (3, 3)),
            Upsample((2, 2)),
            Conv(1, (3, 3), activation="sigmoid"),
        ),
    )


PRESETS = {
    "classic": preset_classic,
    "keras-denoiser": preset_keras_denoiser,
    "deep": preset_deep,
    "wide": preset_wide,
}


def preset(name: str) -> ArchitectureSpec:
    """A preset spec by name (classic, keras-denoiser, deep, wide)."""
    if name not in PRESETS:
        raise SpecError(
            f"unknown preset; choose one of {', '.join(PRESETS)}. Received: preset={name!r}"
        )
    return PRESETS[name]()
