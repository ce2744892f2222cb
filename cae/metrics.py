"""Reconstruction quality: MSE, MAE, PSNR and SSIM per image and in aggregate, in numpy only.

Images are float arrays in [0, 1] shaped (N, H, W, C); ``a`` is usually the original and ``b`` the
reconstruction. Every per-image metric returns a float64 array of length N. SSIM is Wang et al.'s,
computed the way ``tf.image.ssim`` computes it (11x11 Gaussian window, sigma 1.5, K1=0.01, K2=0.03,
'valid' filtering, mean over the map, then over channels), so the numbers match TensorFlow's.
No TensorFlow import here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cae.pixels import as_float

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
_SSIM_CHUNK = 512  # images per block, to bound memory on big test sets
BLOCK_BYTES = 16 * 2**20  # ... and at most this many bytes of one image batch as float64 at once


def _pair(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both image batches as float64 (N, H, W, C) arrays of the same shape, or ValueError (uint8
    images, as datasets hold them, count as k/255: ``cae.pixels``)."""
    x, y = np.asarray(a), np.asarray(b)
    _check_shapes(x, y)
    x = np.asarray(as_float(x) if x.dtype == np.uint8 else x, dtype=np.float64)
    y = np.asarray(as_float(y) if y.dtype == np.uint8 else y, dtype=np.float64)
    return x, y


def _check_shapes(x: np.ndarray, y: np.ndarray) -> None:
    """ValueError unless both are (N, H, W, C) batches of one shape with N >= 1."""
    if x.shape != y.shape:
        raise ValueError(
            f"The two image batches must have the same shape. Received: a.shape={x.shape}, "
            f"b.shape={y.shape}"
        )
    if x.ndim != 4:
        raise ValueError(
            f"Images must be an array of shape (N, H, W, C). Received: a.shape={x.shape}, "
            f"b.shape={y.shape}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"There are no images to compare. Received: a.shape={x.shape}")


def mse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean squared error of each image pair, shape (N,)."""
    x, y = _pair(a, b)
    return np.mean(np.square(x - y), axis=(1, 2, 3))


def mae(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean absolute error of each image pair, shape (N,)."""
    x, y = _pair(a, b)
    return np.mean(np.abs(x - y), axis=(1, 2, 3))


def _psnr_from_mse(values: np.ndarray, max_value: float) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(
            values > 0, 10.0 * np.log10(max_value**2 / np.maximum(values, 1e-300)), np.inf
        )


def _check_max_value(max_value: float) -> float:
    if isinstance(max_value, bool) or not np.isfinite(max_value) or max_value <= 0:
        raise ValueError(f"max_value must be a positive number. Received: max_value={max_value!r}")
    return float(max_value)


def psnr(a: np.ndarray, b: np.ndarray, max_value: float = 1.0) -> np.ndarray:
    """Peak signal-to-noise ratio in dB of each pair, 10*log10(max^2/MSE); identical images give
    ``np.inf`` (an MSE of 0 has no finite PSNR)."""
    max_value = _check_max_value(max_value)
    return _psnr_from_mse(mse(a, b), max_value)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """The normalised 1-D Gaussian of the SSIM window (the 2-D window is its outer product)."""
    coords = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-0.5 * np.square(coords) / sigma**2)
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of (N, H, W, C) over H and W with the 1-D kernel ``g``."""
    k = g.shape[0]
    h_out = x.shape[1] - k + 1
    w_out = x.shape[2] - k + 1
    rows = g[0] * x[:, 0:h_out]
    for j in range(1, k):
        rows = rows + g[j] * x[:, j : j + h_out]
    out = g[0] * rows[:, :, 0:w_out]
    for j in range(1, k):
        out = out + g[j] * rows[:, :, j : j + w_out]
    return out


def ssim_window_size(height: int, width: int) -> int:
    """The window side used for images of this size: 11, or the smaller side when below 11."""
    return int(min(SSIM_WINDOW, height, width))


def ssim(a: np.ndarray, b: np.ndarray, max_value: float = 1.0) -> np.ndarray:
    """Structural similarity of each pair, shape (N,), matching ``tf.image.ssim(a, b, max_value)``.

    Images smaller than 11 pixels on a side, which ``tf.image.ssim`` refuses, use a window shrunk
    to the smaller side (same sigma): the result then equals ``tf.image.ssim(..., filter_size=n)``.
    """
    max_value = _check_max_value(max_value)
    x, y = _pair(a, b)
    g = gaussian_window(ssim_window_size(x.shape[1], x.shape[2]))
    c1 = (SSIM_K1 * max_value) ** 2
    c2 = (SSIM_K2 * max_value) ** 2
    out = np.empty(x.shape[0], dtype=np.float64)
    step = min(_SSIM_CHUNK, _block_size(x, BLOCK_BYTES))
    for start in range(0, x.shape[0], step):
        xs = x[start : start + step]
        ys = y[start : start + step]
        mu_x = _filter_valid(xs, g)
        mu_y = _filter_valid(ys, g)
        num0 = 2.0 * mu_x * mu_y
        den0 = np.square(mu_x) + np.square(mu_y)
        luminance = (num0 + c1) / (den0 + c1)
        num1 = 2.0 * _filter_valid(xs * ys, g)
        den1 = _filter_valid(np.square(xs) + np.square(ys), g)
        contrast_structure = (num1 - num0 + c2) / (den1 - den0 + c2)
        per_channel = np.mean(luminance * contrast_structure, axis=(1, 2))
        out[start : start + len(xs)] = per_channel.mean(axis=-1)
    return out


def error_maps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel squared error averaged over channels, float32 of shape (N, H, W)."""
    x, y = _pair(a, b)
    return np.mean(np.square(x - y), axis=-1).astype(np.float32)


@dataclass(frozen=True)
class Metric:
    """One reconstruction metric: how to show it and how a test set's value is made.

    ``per_image(a, b)`` gives one value per image pair, or None for a metric derived from the
    others; ``aggregate(values)`` turns every metric's per-image values into the test-set value."""

    key: str
    title: str
    unit: str
    digits: int
    higher_is_better: bool
    per_image: Callable[[np.ndarray, np.ndarray], np.ndarray] | None
    aggregate: Callable[[dict[str, np.ndarray]], float]

    def format(self, value: Any) -> str:
        """The value with this metric's digits (``inf`` for an exact match), or a dash."""
        return format_number(value, self.digits)

    @property
    def label(self) -> str:
        """The title with its unit, e.g. ``PSNR (dB)``."""
        return f"{self.title} ({self.unit})" if self.unit else self.title


def format_number(value: Any, digits: int) -> str:
    """A number with ``digits`` decimals, ``inf`` for infinity, a dash for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return "–"
    if np.isnan(value):
        return "–"
    if np.isinf(value):
        return "inf"
    return f"{float(value):.{digits}f}"


def _mean_of(key: str) -> Callable[[dict[str, np.ndarray]], float]:
    def mean(values: dict[str, np.ndarray]) -> float:
        return float(np.mean(values[key]))

    return mean


def _psnr_of_mean_mse(values: dict[str, np.ndarray]) -> float:
    # The PSNR of the mean MSE, not the mean of per-image PSNRs (one exact image would make that
    # infinite): inf only when every image is reproduced exactly.
    return float(_psnr_from_mse(np.array(np.mean(values["mse"])), 1.0))


METRICS: tuple[Metric, ...] = (
    Metric("mse", "MSE", "", 5, False, mse, _mean_of("mse")),
    Metric("mae", "MAE", "", 5, False, mae, _mean_of("mae")),
    Metric("psnr", "PSNR", "dB", 2, True, None, _psnr_of_mean_mse),
    Metric("ssim", "SSIM", "", 4, True, ssim, _mean_of("ssim")),
)
"""Every metric a run records, in display order: metrics.json, chunked evaluation, the Results
table and the CLI's ``list`` and ``evaluate`` all read this table (pixels in [0, 1])."""

METRIC_KEYS: tuple[str, ...] = tuple(metric.key for metric in METRICS)
METRICS_BY_KEY: dict[str, Metric] = {metric.key: metric for metric in METRICS}


def _block_size(a: Any, limit: int) -> int:
    """Images per block so that one block of ``a`` as float64 stays within ``limit`` bytes."""
    per_image = 8 * int(np.prod(np.shape(a)[1:], dtype=np.int64))
    return max(1, int(limit // max(1, per_image)))


def per_image(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """Every per-image metric of the table: ``{"mse", "mae", "psnr", "ssim"}`` -> arrays (N,).
    Big batches (512x512 RGB test splits) go through in blocks of :data:`BLOCK_BYTES` as
    float64, so memory stays flat (SSIM keeps about eight arrays of a block)."""
    a, b = np.asarray(a), np.asarray(b)
    _check_shapes(a, b)
    step = _block_size(a, BLOCK_BYTES)
    if len(a) > step:
        return concatenate(
            [
                per_image(a[start : start + step], b[start : start + step])
                for start in range(0, len(a), step)
            ]
        )
    values = {
        metric.key: metric.per_image(a, b) for metric in METRICS if metric.per_image is not None
    }
    values["psnr"] = _psnr_from_mse(values["mse"], 1.0)
    return values


def aggregate(values: dict[str, np.ndarray]) -> dict[str, float]:
    """The test-set value of every metric from the per-image values (chunks concatenated)."""
    return {metric.key: metric.aggregate(values) for metric in METRICS}


def concatenate(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-image values of several chunks joined into one dict of arrays."""
    if not parts:
        raise ValueError("There are no image chunks to join. Received: parts=[]")
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def summarize(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Every metric of the table for a test set, as plain floats (see :data:`METRICS`)."""
    return aggregate(per_image(a, b))
