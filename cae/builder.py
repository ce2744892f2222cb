"""Build Keras models from an ArchitectureSpec: ``encoder``, ``decoder`` and the autoencoder.

The autoencoder is ``decoder(encoder(image))``: the two named sub-models share their weights with it,
so ``autoencoder.get_layer("encoder")`` and ``get_layer("decoder")`` are the parts to use for encoding
and decoding. TensorFlow/Keras are imported inside the functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cae.shapes import compute_shapes, variational_head
from cae.spec import (
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
    Pool,
    SepConv,
    Upsample,
    kind_of,
)

if TYPE_CHECKING:  # pragma: no cover
    import keras


@dataclass
class BuiltModel:
    """The three models of one spec; ``autoencoder`` holds the other two as layers.

    A variational design has a fourth: ``posterior``, image -> [mean, log_var], which the
    autoencoder holds instead of ``encoder`` (then image -> mean, the same layers): the
    autoencoder is ``decoder(sampling(posterior(image)))``."""

    spec: ArchitectureSpec | None
    encoder: keras.Model
    decoder: keras.Model
    autoencoder: keras.Model
    posterior: keras.Model | None = None

    @property
    def variational(self) -> bool:
        """True for a variational autoencoder (its code is a mean; the prior is N(0, 1))."""
        return self.posterior is not None


def layer_name(part: str, index: int, layer: Layer) -> str:
    """A unique, readable Keras layer name such as ``encoder_2_conv8_3x3`` (a convolution kind's
    type, filters and kernel), ``encoder_1_maxpool2x2`` or ``decoder_1_upsample2x2`` (a window's
    or a scale's size), else ``decoder_5_crop``."""
    kind = kind_of(layer)
    detail = f"{layer.mode}{layer.type}" if kind.pooling else layer.type  # type: ignore[union-attr]
    if kind.filters:
        detail += str(layer.filters)  # type: ignore[union-attr]
    if kind.convolution:
        detail += f"_{layer.kernel[0]}x{layer.kernel[1]}"  # type: ignore[union-attr]
    elif hasattr(layer, "size"):
        detail += f"{layer.size[0]}x{layer.size[1]}"
    return f"{part}_{index}_{detail}"


# ---------------------------------------------------------------- Keras layers: one function per kind
# Each builds the Keras layer of one spec layer; Keras is imported inside, when a model is built.


# The Keras argument of each field a convolution kind may have.
_KERAS_ARGUMENTS = {
    "filters": "filters",
    "kernel": "kernel_size",
    "strides": "strides",
    "padding": "padding",
    "activation": "activation",
    "dilation": "dilation_rate",
    "depth_multiplier": "depth_multiplier",
    "output_padding": "output_padding",
}


def _convolution(layer: Convolution, name: str) -> Any:
    """The Keras layer of any convolution kind (the class in KERAS_CLASS_NAMES), each of the
    kind's fields passed as its Keras argument: output_padding None when not set, the dilation as
    dilation_rate (TensorFlow runs every kind dilated on the CPU too, measured)."""
    from dataclasses import fields

    from keras import layers

    cls = getattr(layers, KERAS_CLASS_NAMES[type(layer)][0])
    arguments = {_KERAS_ARGUMENTS[item.name]: getattr(layer, item.name) for item in fields(layer)}
    return cls(**arguments, name=name)


def _pooling2d(layer: Pool, name: str) -> Any:
    """keras.layers.MaxPooling2D or AveragePooling2D; strides None means the pool size."""
    from keras import layers

    cls = layers.MaxPooling2D if layer.mode == "max" else layers.AveragePooling2D
    return cls(pool_size=layer.size, strides=layer.strides, padding=layer.padding, name=name)


def _upsampling2d(layer: Upsample, name: str) -> Any:
    """keras.layers.UpSampling2D."""
    from keras import layers

    return layers.UpSampling2D(size=layer.size, interpolation=layer.interpolation, name=name)


def _cropping2d(layer: Crop, name: str) -> Any:
    """keras.layers.Cropping2D."""
    from keras import layers

    return layers.Cropping2D(cropping=layer.amount, name=name)


def _zero_padding2d(layer: Pad, name: str) -> Any:
    """keras.layers.ZeroPadding2D."""
    from keras import layers

    return layers.ZeroPadding2D(padding=layer.amount, name=name)


def _batch_normalization(layer: BatchNorm, name: str) -> Any:
    """keras.layers.BatchNormalization."""
    from keras import layers

    return layers.BatchNormalization(name=name)


def _dropout(layer: Dropout, name: str) -> Any:
    """keras.layers.Dropout."""
    from keras import layers

    return layers.Dropout(layer.rate, name=name)


KERAS_LAYERS: dict[type[Layer], Callable[[Any, str], Any]] = {
    Conv: _convolution,
    Deconv: _convolution,
    SepConv: _convolution,
    Depthwise: _convolution,
    Pool: _pooling2d,
    Upsample: _upsampling2d,
    Crop: _cropping2d,
    Pad: _zero_padding2d,
    BatchNorm: _batch_normalization,
    Dropout: _dropout,
}

# The Keras class names each kind builds, so keras_rows can name a built layer's kind.
KERAS_CLASS_NAMES: dict[type[Layer], tuple[str, ...]] = {
    Conv: ("Conv2D",),
    Deconv: ("Conv2DTranspose",),
    SepConv: ("SeparableConv2D",),
    Depthwise: ("DepthwiseConv2D",),
    Pool: ("MaxPooling2D", "AveragePooling2D"),
    Upsample: ("UpSampling2D",),
    Crop: ("Cropping2D",),
    Pad: ("ZeroPadding2D",),
    BatchNorm: ("BatchNormalization",),
    Dropout: ("Dropout",),
}


def make_keras_layer(layer: Layer, name: str) -> Any:
    """The Keras layer for one spec layer."""
    make = KERAS_LAYERS.get(type(layer))
    if make is None:
        raise TypeError(f"not a layer. Received: layer={layer!r}")
    return make(layer, name)


PRECISIONS = ("float32", "mixed_float16")


def build(
    spec: ArchitectureSpec, *, require_match: bool = True, precision: str = "float32"
) -> BuiltModel:
    """Build encoder, decoder and autoencoder; raises ValueError for an impossible spec, or for a
    decoder that does not come back to the input shape unless ``require_match`` is False.

    ``precision="mixed_float16"`` computes in float16 with float32 weights (Keras's mixed
    policy; compile then adds loss scaling), except the last layer, kept in float32 so that the
    output (a sigmoid, say) and the loss on it keep their resolution near 0 and 1."""
    if precision not in PRECISIONS:
        raise ValueError(
            f"precision must be one of {', '.join(PRECISIONS)}. Received: precision={precision!r}"
        )
    report = compute_shapes(spec)
    if require_match and not report.matches:
        fixes = "; ".join(fix.description for fix in report.fixes) or "change the decoder"
        raise ValueError(
            f"{report.problem} Suggested: {fixes}. "
            f"Received: output_shape={report.output_shape}, input_shape={report.input_shape}"
        )
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)  # process-wide in Keras: restored below
    posterior = None
    try:
        image = keras.Input(shape=spec.input_shape, name="image")
        x = image
        start = len(spec.encoder)
        if spec.variational is not None:
            start, head = variational_head(spec, report.latent_shape[2])
        for index, layer in enumerate(spec.encoder[:start]):
            x = make_keras_layer(layer, layer_name("encoder", index, layer))(x)
        if spec.variational is not None:
            keras.config.set_dtype_policy("float32")  # exp(log_var) overflows float16 early
            name = layer_name("encoder", start, head)
            mean = make_keras_layer(head, f"{name}_mean")(x)
            log_var = make_keras_layer(head, f"{name}_log_var")(x)
            keras.config.set_dtype_policy(precision)
            encoder = keras.Model(image, mean, name="encoder")
            posterior = keras.Model(image, [mean, log_var], name="posterior")
        else:
            encoder = keras.Model(image, x, name="encoder")

        latent = keras.Input(shape=report.latent_shape, name="latent")
        y = latent
        last = len(spec.decoder) - 1
        for index, layer in enumerate(spec.decoder):
            if index == last:
                keras.config.set_dtype_policy("float32")
            y = make_keras_layer(layer, layer_name("decoder", index, layer))(y)
        keras.config.set_dtype_policy(precision)
        decoder = keras.Model(latent, y, name="decoder")

        autoencoder_input = keras.Input(shape=spec.input_shape, name="input_image")
        if posterior is not None:
            from cae.variational import SAMPLING_LAYER, sampling_layer_class

            code = sampling_layer_class()(
                beta=spec.variational.beta,
                values=math.prod(spec.input_shape),
                name=SAMPLING_LAYER,
                dtype="float32",
            )(posterior(autoencoder_input))
        else:
            code = encoder(autoencoder_input)
        autoencoder = keras.Model(autoencoder_input, decoder(code), name="autoencoder")
    finally:
        keras.config.set_dtype_policy(previous)
    return BuiltModel(spec, encoder, decoder, autoencoder, posterior)


def keras_rows(built: BuiltModel) -> list[dict[str, object]]:
    """Keras's own output shapes and parameter counts, in the same form as ``LayerRow.as_dict``."""
    rows: list[dict[str, object]] = []
    encoder = built.posterior if built.posterior is not None else built.encoder
    for part, model in (("encoder", encoder), ("decoder", built.decoder)):
        index = 0
        for layer in model.layers:
            if layer.__class__.__name__ == "InputLayer":
                continue
            shape = tuple(layer.output.shape[1:])
            row: dict[str, object] = {
                "part": part,
                "index": index,
                "type": spec_type(layer),
                "output_shape": [int(n) for n in shape],
                "params": int(layer.count_params()),
            }
            for suffix, head in (("_mean", "mean"), ("_log_var", "log-var")):
                if built.posterior is not None and layer.name.endswith(suffix):
                    row["head"] = head
                    row["index"] = index = int(layer.name.split("_")[1])
            rows.append(row)
            index += 1
    return rows


def spec_type(layer: Any) -> str:
    """The kind's type name of a built Keras layer (as in ``LayerRow.type``), else its class name."""
    name = layer.__class__.__name__
    for cls, names in KERAS_CLASS_NAMES.items():
        if name in names:
            return cls.type
    return name


def save_model(autoencoder: keras.Model, path: str | Path) -> None:
    """Save the autoencoder (with its encoder and decoder inside) as a ``.keras`` file."""
    autoencoder.save(str(path))


def load_model(path: str | Path, spec: ArchitectureSpec | None = None) -> BuiltModel:
    """Load a ``.keras`` autoencoder with Keras ``safe_mode`` and find its encoder and decoder
    (for a variational one, its posterior, and the encoder as the posterior's mean).

    The spec is not inside the ``.keras`` file; a run folder keeps it in spec.json beside it.
    """
    import keras

    from cae.variational import REGISTERED_NAME, sampling_layer_class

    autoencoder = keras.models.load_model(
        str(path),
        custom_objects={REGISTERED_NAME: sampling_layer_class()},  # registered, no code run
        compile=False,
        safe_mode=True,
    )
    decoder = autoencoder.get_layer("decoder")
    names = {layer.name for layer in autoencoder.layers}
    if "posterior" in names:
        posterior = autoencoder.get_layer("posterior")
        encoder = keras.Model(posterior.input, posterior.output[0], name="encoder")
        return BuiltModel(spec, encoder, decoder, autoencoder, posterior)
    return BuiltModel(spec, autoencoder.get_layer("encoder"), decoder, autoencoder)


def weights_digest(model: keras.Model) -> str:
    """A SHA-256 of a model's weights (order, shapes, dtypes and values), to check that a saved
    model is the one that was trained, across processes."""
    import hashlib

    import numpy as np

    digest = hashlib.sha256()
    for weights in model.get_weights():
        array = np.ascontiguousarray(weights)
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
