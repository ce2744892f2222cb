"""Input corruptions for denoising autoencoders: Gaussian noise, salt-and-pepper, random erasing.

:data:`CORRUPTIONS` is the one table of kinds (name, title, what the strength means, its range
and default, a numpy function for evaluation and a TensorFlow function for the training
pipeline). A :class:`Corruption` is one kind with one strength. Pixels are in [0, 1] and stay
there.

- numpy (:meth:`Corruption.apply`): image ``i`` of a test split is corrupted by its own
  generator seeded with ``(seed, i)``, so a chunk, a few picked images and the whole split see
  exactly the same corrupted pixels (the images Results shows are the ones it scores).
- TensorFlow (:meth:`Corruption.apply_tf`): a whole batch from stateless random ops and a
  ``[2]`` int64 seed, inside the ``tf.data`` pipeline (new corruption each batch and epoch).

The two draw different random numbers for a seed but follow the same rules; the tests check
their statistics alike. No TensorFlow import at module level.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cae.pixels import as_float

EVAL_SEED = 0
"""The seed of every evaluation on corrupted inputs (end of training, Results, ``cae evaluate``),
the same for every run, so runs are scored on the same corrupted test images."""

ERASE_FILL = 0.5  # erased rectangles are mid-grey: visible on dark and light images alike
ERASE_ASPECT = 2.0  # an erased rectangle's height/width ratio is log-uniform in [1/2, 2]


# ------------------------------------------------------------------------------------ numpy


def _gaussian_np(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    noisy = image + rng.normal(0.0, strength, size=image.shape)
    return np.clip(noisy, 0.0, 1.0)


def _salt_pepper_np(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape[:2]
    hit = rng.random((height, width, 1)) < strength
    salt = rng.random((height, width, 1)) < 0.5
    return np.where(hit, salt.astype(image.dtype), image)


def erase_box(
    height: int, width: int, strength: float, aspect: float, top: float, left: float
) -> tuple[int, int, int, int]:
    """The erased rectangle (top, left, rows, cols) of an image: area ``strength`` of the image
    (rounded to whole pixels), height/width ratio ``aspect`` where it fits, placed at the
    fractions ``top`` and ``left`` (in [0, 1)) of the free room."""
    area = strength * height * width
    rows = int(min(height, max(1, round(math.sqrt(area * aspect)))))
    cols = int(min(width, max(1, round(area / rows))))
    rows = int(min(height, max(1, round(area / cols))))  # when cols hit the side, grow rows
    return int(top * (height - rows + 1)), int(left * (width - cols + 1)), rows, cols


def _erase_np(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape[:2]
    aspect = math.exp(rng.uniform(-math.log(ERASE_ASPECT), math.log(ERASE_ASPECT)))
    top, left, rows, cols = erase_box(
        height, width, strength, aspect, float(rng.random()), float(rng.random())
    )
    out = image.copy()
    out[top : top + rows, left : left + cols] = ERASE_FILL
    return out


# ------------------------------------------------------------------------------------ TensorFlow


def _gaussian_tf(batch: Any, strength: float, seed: Any) -> Any:
    import tensorflow as tf

    jitter = tf.random.stateless_normal(tf.shape(batch), seed=seed, stddev=strength)
    return tf.clip_by_value(batch + jitter, 0.0, 1.0)


def _salt_pepper_tf(batch: Any, strength: float, seed: Any) -> Any:
    import tensorflow as tf

    shape = tf.concat([tf.shape(batch)[:3], [1]], axis=0)
    hit_seed, salt_seed = tf.unstack(tf.random.split(seed, 2))
    hit = tf.random.stateless_uniform(shape, seed=hit_seed) < strength
    salt = tf.cast(tf.random.stateless_uniform(shape, seed=salt_seed) < 0.5, batch.dtype)
    return tf.where(hit, salt, batch)


def _erase_tf(batch: Any, strength: float, seed: Any) -> Any:
    """The rule of :func:`erase_box`, one rectangle per image of the batch, as tensors."""
    import tensorflow as tf

    shape = tf.shape(batch)
    count = shape[0]
    height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    draws = tf.random.stateless_uniform((3, count), seed=seed)
    log_aspect = math.log(ERASE_ASPECT)
    aspect = tf.exp((2.0 * draws[0] - 1.0) * log_aspect)
    area = strength * height * width
    rows = tf.clip_by_value(tf.round(tf.sqrt(area * aspect)), 1.0, height)
    cols = tf.clip_by_value(tf.round(area / rows), 1.0, width)
    rows = tf.clip_by_value(tf.round(area / cols), 1.0, height)
    top = tf.floor(draws[1] * (height - rows + 1.0))
    left = tf.floor(draws[2] * (width - cols + 1.0))
    y = tf.range(height)[None, :, None]
    x = tf.range(width)[None, None, :]

    def column(values: Any) -> Any:
        return values[:, None, None]

    inside = (
        (y >= column(top))
        & (y < column(top + rows))
        & (x >= column(left))
        & (x < column(left + cols))
    )
    return tf.where(inside[..., None], tf.constant(ERASE_FILL, batch.dtype), batch)


# ------------------------------------------------------------------------------------ the table


@dataclass(frozen=True)
class CorruptionKind:
    """One kind of input corruption and what its strength means."""

    name: str
    title: str
    strength_label: str  # what the strength measures, e.g. "noise std"
    low: float  # the lowest strength (above 0: a strength of 0 is no corruption)
    high: float
    default: float
    step: float  # the Train page slider's step
    help: str
    numpy_fn: Callable[[np.ndarray, float, np.random.Generator], np.ndarray]  # one image
    tf_fn: Callable[[Any, float, Any], Any]  # a batch, a [2] int64 stateless seed


CORRUPTIONS: tuple[CorruptionKind, ...] = (
    CorruptionKind(
        "gaussian",
        "Gaussian noise",
        "noise std",
        0.01,
        1.0,
        0.3,
        0.01,
        "Each pixel value plus Gaussian noise of this standard deviation, clipped to [0, 1].",
        _gaussian_np,
        _gaussian_tf,
    ),
    CorruptionKind(
        "salt-pepper",
        "Salt and pepper",
        "fraction of pixels",
        0.01,
        1.0,
        0.2,
        0.01,
        "This fraction of the pixels (all channels of each) set to 0 or 1, half each.",
        _salt_pepper_np,
        _salt_pepper_tf,
    ),
    CorruptionKind(
        "erase",
        "Random erasing",
        "fraction of area",
        0.01,
        0.9,
        0.25,
        0.01,
        "One rectangle of this fraction of the image's area, height/width from 1/2 to 2, at a "
        "random place, filled with mid-grey (0.5).",
        _erase_np,
        _erase_tf,
    ),
)
"""Every corruption kind: the Train page, the CLI's ``--corruption``, the training pipeline and
the evaluation on corrupted inputs all read this table."""

CORRUPTION_NAMES: tuple[str, ...] = tuple(kind.name for kind in CORRUPTIONS)
CORRUPTIONS_BY_NAME: dict[str, CorruptionKind] = {kind.name: kind for kind in CORRUPTIONS}
STRENGTH_RANGE: tuple[float, float] = (0.0, max(kind.high for kind in CORRUPTIONS))
"""The widest strength any kind takes (0: none); each kind narrows it to (low, high)."""


def corruption_kind(name: Any) -> CorruptionKind:
    """The table's entry of ``name``, or ValueError naming the kinds."""
    if not isinstance(name, str) or name not in CORRUPTIONS_BY_NAME:
        raise ValueError(
            f"corruption must be one of {', '.join(CORRUPTION_NAMES)}. Received: corruption={name!r}"
        )
    return CORRUPTIONS_BY_NAME[name]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


@dataclass(frozen=True)
class Corruption:
    """One corruption kind with one strength; validated when made."""

    kind: str
    strength: float

    def __post_init__(self) -> None:
        info = corruption_kind(self.kind)
        value = self.strength
        if not _is_number(value) or not math.isfinite(value) or not info.low <= value <= info.high:
            raise ValueError(
                f"the strength of {self.kind} ({info.strength_label}) must be a number from "
                f"{info.low:g} to {info.high:g}. Received: corruption={self.kind!r}, "
                f"strength={value!r}"
            )
        object.__setattr__(self, "strength", float(value))

    @property
    def info(self) -> CorruptionKind:
        """The table's entry of this kind."""
        return CORRUPTIONS_BY_NAME[self.kind]

    def describe(self) -> str:
        """In words, e.g. ``Gaussian noise, noise std 0.3``."""
        return f"{self.info.title}, {self.info.strength_label} {self.strength:g}"

    def apply(
        self, images: np.ndarray, *, seed: int = EVAL_SEED, indices: Any = None
    ) -> np.ndarray:
        """Corrupted copies of ``images`` (N, H, W, C) in [0, 1], float32. Image ``k`` is
        corrupted by a generator seeded with ``(seed, indices[k])`` (``indices`` defaults to
        0..N-1): the same image index and seed always give the same corruption."""
        x = as_float(images)  # images held as uint8 count as k/255
        if x.ndim != 4:
            raise ValueError(
                f"images must be an array of shape (N, H, W, C). Received: shape={x.shape}"
            )
        where = np.arange(len(x)) if indices is None else np.asarray(indices, dtype=np.int64)
        if where.shape != (len(x),):
            raise ValueError(
                f"indices must give one index per image. Received: images={len(x)}, "
                f"indices={where.shape}"
            )
        out = np.empty_like(x)
        for k, index in enumerate(where):
            rng = np.random.default_rng((int(seed), int(index)))
            out[k] = self.info.numpy_fn(x[k], self.strength, rng)
        return out

    def apply_tf(self, batch: Any, seed: Any) -> Any:
        """A corrupted batch (float32 tensor (N, H, W, C)) from stateless ops and a ``[2]`` int64
        seed; for the ``tf.data`` pipeline."""
        return self.info.tf_fn(batch, self.strength, seed)

    def to_dict(self) -> dict[str, Any]:
        """``{"corruption": kind, "strength": s}``, the keys a training config records."""
        return {"corruption": self.kind, "strength": self.strength}


def corruption_of(kind: Any, strength: Any = None) -> Corruption | None:
    """A corruption from a kind (None or "none": no corruption) and a strength (None: the kind's
    default)."""
    if kind is None or kind == "none":
        return None
    info = corruption_kind(kind)
    return Corruption(kind, info.default if strength is None else strength)
