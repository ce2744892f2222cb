"""What a trained autoencoder scores: its reconstructions and its test-set metrics.

:func:`reconstruct` runs the model over images a batch at a time (direct calls or one traced
function, never ``model.predict``); :func:`evaluate_run` scores a run's test split with every
metric of ``cae.metrics.METRICS`` and :func:`evaluate_corrupted` scores it on corrupted inputs.
Both work through the images a chunk at a time (``EVAL_CHUNK`` images, at most
``EVAL_CHUNK_BYTES`` as float32), so memory stays flat on big test sets. TensorFlow is imported
inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cae.builder import BuiltModel
from cae.corruption import EVAL_SEED, Corruption
from cae.pixels import (
    PREDICT_BATCH,
    activation_values,
    as_float,
    batch_for,
    float_bytes,
    inference_batch,
)

if TYPE_CHECKING:  # pragma: no cover
    import keras

EVAL_CHUNK = 1024  # test images per step of evaluate_run
EVAL_CHUNK_BYTES = 16 * 2**20  # ... and at most this many bytes of them as float32 at once (SSIM
# works in float64 on ~8 arrays of a chunk: 16 MiB keeps a chunk of 512x512 RGB images near 300 MB)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def reconstruct(
    model: keras.Model,
    images: np.ndarray,
    batch_size: int = PREDICT_BATCH,
    *,
    infer: Callable[[Any], Any] | None = None,
) -> np.ndarray:
    """The autoencoder's outputs for ``images`` (float32 numpy; uint8 ones are made float32 a
    batch at a time), ``batch_size`` at a time: direct calls, or ``infer`` (from
    :func:`inference_function`) when given. Never ``model.predict``, whose per-model retracing
    makes TensorFlow warn after a few trainings in one process."""
    x = np.asarray(images)
    call = infer if infer is not None else (lambda batch: model(batch, training=False))
    if len(x) == 0:
        return np.zeros((0, *(int(n) for n in model.output_shape[1:])), np.float32)
    batch_size = batch_for(x, inference_batch(activation_values(model), batch_size))
    parts = [
        np.asarray(call(as_float(x[start : start + batch_size])), dtype=np.float32)
        for start in range(0, len(x), batch_size)
    ]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def inference_function(model: keras.Model) -> Callable[[Any], Any]:
    """``model(x, training=False)`` as a ``tf.function`` traced once for any batch size."""
    import tensorflow as tf

    shape = tuple(int(n) for n in model.input_shape[1:])
    signature = [tf.TensorSpec((None, *shape), tf.float32)]
    return tf.function(lambda batch: model(batch, training=False), input_signature=signature)


def evaluate_run(
    built: BuiltModel,
    images: np.ndarray,
    *,
    corruption: Corruption | None = None,
    seed: int = EVAL_SEED,
    chunk: int = EVAL_CHUNK,
) -> dict[str, float]:
    """Test-set metrics (every entry of ``cae.metrics.METRICS``) of the autoencoder's
    reconstructions of ``images`` (a run's test split (N, H, W, C), held as uint8 or float32); with
    a ``corruption`` also those of :func:`evaluate_corrupted`. Works through the images ``chunk``
    at a time (fewer when ``chunk`` of them would take more than ``EVAL_CHUNK_BYTES`` as float32),
    each chunk made float32 alone, so memory stays flat on big test sets."""
    plan = _evaluation_plan(built, images, chunk)
    if plan is None:
        return {}
    model, images, chunk, infer = plan
    metrics = _chunked_metrics(model, images, chunk, infer=infer)["output"]
    if corruption is not None:
        metrics.update(_corrupted_scores(model, images, corruption, seed, chunk, infer))
    return metrics


@dataclass(frozen=True)
class SplitReport:
    """What the Results page shows of a run on a test split, without holding its
    reconstructions: every metric, each image's MSE and the squared error per pixel and channel
    averaged over the images."""

    metrics: dict[str, float]
    per_image_mse: np.ndarray  # (N,), over every channel
    mean_squared_error: np.ndarray  # (H, W, C)

    def error_map(self, channel: int | None = None) -> np.ndarray:
        """The mean squared error per pixel (H, W): of ``channel``, or averaged over them."""
        if channel is None:
            return self.mean_squared_error.mean(axis=-1)
        return self.mean_squared_error[..., channel]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (arrays as arrays: ``cae.protocol`` encodes them)."""
        return {
            "metrics": dict(self.metrics),
            "per_image_mse": self.per_image_mse,
            "mean_squared_error": self.mean_squared_error,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SplitReport:
        """The report :meth:`to_dict` wrote."""
        return cls(
            metrics={key: float(value) for key, value in data["metrics"].items()},
            per_image_mse=np.asarray(data["per_image_mse"], np.float64),
            mean_squared_error=np.asarray(data["mean_squared_error"], np.float64),
        )


def split_report(built: BuiltModel, images: np.ndarray, *, chunk: int = EVAL_CHUNK) -> SplitReport:
    """The :class:`SplitReport` of the autoencoder on ``images`` (a test split (N, H, W, C)),
    worked out ``chunk`` images at a time as :func:`evaluate_run` does: memory stays flat however
    many images there are, and no reconstruction is kept."""
    plan = _evaluation_plan(built, images, chunk)
    shape = tuple(int(n) for n in np.shape(images)[1:])
    if plan is None:
        return SplitReport({}, np.zeros(0), np.zeros(shape))
    model, images, chunk, infer = plan
    squared = np.zeros(shape, np.float64)
    scores = _chunked_metrics(model, images, chunk, infer=infer, squared_error=squared)
    return SplitReport(scores["output"], scores["mse"], squared / len(images))


def evaluate_corrupted(
    built: BuiltModel,
    images: np.ndarray,
    corruption: Corruption,
    *,
    seed: int = EVAL_SEED,
    chunk: int = EVAL_CHUNK,
) -> dict[str, float]:
    """How the autoencoder does on corrupted inputs: ``denoise_<metric>`` scores its outputs
    from ``corruption.apply(images, seed=seed)`` against the clean ``images``, and
    ``corrupted_<metric>`` the corrupted inputs themselves (what doing nothing scores), for every
    metric of ``cae.metrics.METRICS``. Any run can be scored so, denoiser or not."""
    plan = _evaluation_plan(built, images, chunk)
    if plan is None:
        return {}
    model, images, chunk, infer = plan
    return _corrupted_scores(model, images, corruption, seed, chunk, infer)


def _corrupted_scores(
    model: keras.Model,
    images: np.ndarray,
    corruption: Corruption,
    seed: int,
    chunk: int,
    infer: Callable[[Any], Any] | None,
) -> dict[str, float]:
    """The ``denoise_*`` and ``corrupted_*`` metrics of :func:`evaluate_corrupted`."""
    scores = _chunked_metrics(model, images, chunk, corruption=corruption, seed=seed, infer=infer)
    return {
        **{f"denoise_{key}": value for key, value in scores["output"].items()},
        **{f"corrupted_{key}": value for key, value in scores["input"].items()},
    }


def _bounded_chunk(images: np.ndarray, chunk: int) -> int:
    """``chunk``, or fewer images when ``chunk`` of them would take more than
    ``EVAL_CHUNK_BYTES`` as float32 (at least one)."""
    return max(1, min(chunk, EVAL_CHUNK_BYTES // max(1, float_bytes(images[:1]))))


def _evaluation_plan(
    built: BuiltModel, images: np.ndarray, chunk: int
) -> tuple[keras.Model, np.ndarray, int, Callable[[Any], Any] | None] | None:
    """How to evaluate ``images``: the autoencoder, the images as an array, the chunk size
    (bounded in bytes) and, for big test sets, one traced function for all chunks (small ones
    call the model directly); None for no images. Raises ValueError when the images do not fit
    the model or ``chunk`` is not a positive integer."""
    model = _check_evaluation(built, images, chunk)
    images = np.asarray(images)
    if len(images) == 0:
        return None
    chunk = _bounded_chunk(images, chunk)
    return model, images, chunk, inference_function(model) if len(images) > chunk else None


def _check_evaluation(built: BuiltModel, images: np.ndarray, chunk: int) -> keras.Model:
    """The autoencoder, once the images fit it and ``chunk`` is a positive integer."""
    model = built.autoencoder
    expected = tuple(int(n) for n in model.input_shape[1:])
    got = tuple(int(n) for n in np.shape(images)[1:])
    if expected != got:
        raise ValueError(
            "The images do not fit the model; evaluate on the test split of the run's own data. "
            f"Received: images={list(got)}, input_shape={list(expected)}"
        )
    if not _is_int(chunk) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer. Received: chunk={chunk!r}")
    return model


def _chunked_metrics(
    model: keras.Model,
    x: np.ndarray,
    chunk: int,
    *,
    corruption: Corruption | None = None,
    seed: int = EVAL_SEED,
    infer: Callable[[Any], Any] | None = None,
    squared_error: np.ndarray | None = None,
) -> dict[str, Any]:
    """``cae.metrics`` of the reconstructions (``"output"``, and each image's ``"mse"``) and,
    with a ``corruption``, of the corrupted inputs (``"input"``), against the clean ``x``,
    computed ``chunk`` images at a time; the squared error per pixel and channel is summed over
    the images into ``squared_error`` (H, W, C) when given."""
    from cae import metrics

    outputs, inputs = [], []
    for start in range(0, len(x), chunk):
        clean = as_float(x[start : start + chunk])
        given = clean
        if corruption is not None:
            given = corruption.apply(clean, seed=seed, indices=np.arange(start, start + len(clean)))
            inputs.append(metrics.per_image(clean, given))
        output = reconstruct(model, given, infer=infer)
        outputs.append(metrics.per_image(clean, output))
        if squared_error is not None:
            squared_error += np.square(clean - output, dtype=np.float64).sum(axis=0)
    per_image = metrics.concatenate(outputs)
    scores: dict[str, Any] = {"output": metrics.aggregate(per_image), "mse": per_image["mse"]}
    if inputs:
        scores["input"] = metrics.aggregate(metrics.concatenate(inputs))
    return scores
