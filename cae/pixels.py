"""How images are held in memory, and the one conversion to what models and metrics take.

Datasets and test splits hold their images as they came: ``uint8`` for 8-bit sources (every
built-in dataset, PNG/JPEG uploads, uint8 arrays), a quarter of the memory of float32, or
``float32`` in [0, 1] for float sources. Models, metrics and plots take float32 in [0, 1]; they get
it from :func:`as_float`, a batch or a chunk at a time (the training pipeline does the same
division inside the TensorFlow graph, see ``cae.pipeline.make_pipeline``). No TensorFlow here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

HELD_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32))
"""The dtypes images are held in: uint8 (value k means k/255) or float32 in [0, 1]."""

SCALE = 255.0
"""uint8 value k stands for k / 255."""


def as_float(images: Any) -> np.ndarray:
    """Images as float32 in [0, 1]: uint8 ones divided by 255 (a new array), float32 ones as they
    are (no copy), anything else converted to float32."""
    x = np.asarray(images)
    if x.dtype == np.uint8:
        out = x.astype(np.float32)
        np.divide(out, np.float32(SCALE), out=out)
        return out
    if x.dtype == np.float32:
        return x
    return x.astype(np.float32)


def bytes_per_value(dtype: Any) -> int:
    """Bytes one value takes once held: 1 for 8-bit sources (uint8, bool, other integers in
    0..255), 4 (float32) for the rest."""
    kind = np.dtype(dtype).kind
    return 1 if kind in "biu" else 4


def float_bytes(images: np.ndarray) -> int:
    """Bytes ``images`` take as float32 (4 a value, whatever they are held as)."""
    return int(images.size) * 4


BATCH_BYTES = 32 * 2**20
"""Most bytes of float32 images handed to a model in one call: 256 MNIST digits, but 10 RGB
images of 512x512 (256 of them, 805 MB, took over 1 GB more while a training computed its latent
statistics)."""


# A forward pass keeps about every layer's output of its batch at once: one inference batch may
# take at most this many bytes of them (measured: scoring 16 test images at once of 62
# convolutions of 19 filters on 448x448 peaked at 17 GB in one worker, bench/memory_estimate.py).
INFERENCE_BYTES = 256 * 2**20
PREDICT_BATCH = 256  # images an inference call takes at most (fewer under the two bounds here)


def activation_values(model: Any) -> int:
    """Values of every layer's output for one image (nested models walked), for a Keras model."""
    total = 0
    for layer in getattr(model, "layers", ()):
        if getattr(layer, "layers", None):
            total += activation_values(layer)
            continue
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):
            continue
        total += int(np.prod([int(n) for n in shape[1:] if n is not None], dtype=np.int64))
    return total


def inference_batch(values_per_image: int, batch_size: int) -> int:
    """``batch_size``, or fewer images when their layer outputs (``values_per_image`` float32
    values each) would take more than :data:`INFERENCE_BYTES` (at least one)."""
    per_image = 4 * max(1, int(values_per_image))
    return max(1, min(int(batch_size), INFERENCE_BYTES // per_image))


def batch_for(images: Any, batch_size: int) -> int:
    """``batch_size``, or fewer images when that many would take more than :data:`BATCH_BYTES`
    as float32 (at least one)."""
    per_image = 4 * int(np.prod(np.shape(images)[1:], dtype=np.int64))
    return max(1, min(int(batch_size), BATCH_BYTES // max(1, per_image)))


def float_chunks(images: np.ndarray, chunk_bytes: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, float32 block)`` over ``images`` in blocks of at most ``chunk_bytes`` as float32
    (at least one image a block), so no more than one block is ever converted at once."""
    n = len(images)
    per_image = max(1, float_bytes(images[:1]))
    step = max(1, int(chunk_bytes // per_image))
    for start in range(0, n, step):
        yield start, as_float(images[start : start + step])
