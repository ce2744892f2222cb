"""The latent code: encode images, decode codes fast, interpolate, and describe the code space.

``Decoder`` wraps a Keras decoder in a ``tf.function`` with a fixed input signature, traced once:
decoding one code costs about a millisecond on a CPU instead of ~90 ms for ``model.predict`` or
~18 ms for an eager call, which is what lets the latent editor redraw as you paint.
TensorFlow is imported inside the functions that need it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cae.pixels import activation_values, as_float, batch_for, inference_batch

if TYPE_CHECKING:  # pragma: no cover
    import keras

_PREDICT_ABOVE = 8  # batches: beyond this many, encode() hands the work to model.predict


def _model_input_shape(model: Any) -> tuple[int, ...]:
    """A Keras model's input shape without the batch axis."""
    shape = model.input_shape
    if isinstance(shape, list):
        shape = shape[0]
    return tuple(int(n) for n in shape[1:])


def _check_batch_size(batch_size: int) -> int:
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise ValueError(
            f"batch_size must be a positive integer. Received: batch_size={batch_size!r}"
        )
    return int(batch_size)


def encode(encoder: keras.Model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Codes of a batch of images (N, H, W, C) -> (N, *latent_shape) float32; one image (H, W, C)
    gives one code. Images held as uint8 are made float32 in [0, 1] a block at a time
    (``cae.pixels``). Small inputs use direct calls in batches, big ones ``predict``."""
    batch_size = _check_batch_size(batch_size)
    expected = _model_input_shape(encoder)
    x = np.asarray(images)
    if x.dtype != np.uint8:
        x = np.asarray(x, dtype=np.float32)
    single = x.shape == expected
    if single:
        x = x[None]
    if x.shape[1:] != expected:
        raise ValueError(
            f"Images do not fit the encoder, which takes (N, {', '.join(map(str, expected))}). "
            f"Received: images.shape={np.shape(images)}"
        )
    small = batch_for(x, batch_size) == batch_size
    # big images or big layers: fewer a call, and never ``predict``
    batch_size = batch_for(x, inference_batch(activation_values(encoder), batch_size))
    if small and len(x) > _PREDICT_ABOVE * batch_size:
        block = len(x) if x.dtype == np.float32 else _PREDICT_ABOVE * batch_size
        codes = np.concatenate(
            [
                np.asarray(
                    encoder.predict(
                        as_float(x[start : start + block]), batch_size=batch_size, verbose=0
                    ),
                    dtype=np.float32,
                )
                for start in range(0, len(x), block)
            ]
        )
    else:
        parts = [
            np.asarray(
                encoder(as_float(x[start : start + batch_size]), training=False), dtype=np.float32
            )
            for start in range(0, len(x), batch_size)
        ]
        latent = tuple(int(n) for n in encoder.output_shape[1:])
        codes = np.concatenate(parts) if parts else np.zeros((0, *latent), np.float32)
    return codes[0] if single else codes


class Decoder:
    """A Keras decoder compiled once as a ``tf.function`` with input signature
    ``(None, *latent_shape)`` float32; call it with one code or a batch, get numpy images."""

    def __init__(self, decoder_model: keras.Model, *, batch_size: int = 1024) -> None:
        """Wrap ``decoder_model`` and trace it once (batch size is free, so no retracing)."""
        import tensorflow as tf

        self.model = decoder_model
        self.batch_size = _check_batch_size(batch_size)
        self.latent_shape: tuple[int, ...] = _model_input_shape(decoder_model)
        self.output_shape: tuple[int, ...] = tuple(int(n) for n in decoder_model.output_shape[1:])
        signature = [tf.TensorSpec(shape=(None, *self.latent_shape), dtype=tf.float32)]

        def run(codes: Any) -> Any:
            return decoder_model(codes, training=False)

        self._function = tf.function(run, input_signature=signature)
        self._concrete = self._function.get_concrete_function()

    @property
    def tracing_count(self) -> int:
        """How many times the function was traced: 1 for the life of this object."""
        return int(self._function.experimental_get_tracing_count())

    def __call__(self, codes: np.ndarray) -> np.ndarray:
        """Decode one code (``latent_shape``) to one image, or a batch (N, ...) to (N, H, W, C)."""
        z = np.asarray(codes, dtype=np.float32)
        single = z.shape == self.latent_shape
        if single:
            z = z[None]
        if z.shape[1:] != self.latent_shape:
            raise ValueError(
                f"Codes do not fit the decoder, which takes {self.latent_shape} or a batch of them. "
                f"Received: codes.shape={np.shape(codes)}"
            )
        if not np.all(np.isfinite(z)):
            raise ValueError(
                "Codes must be finite numbers. "
                f"Received: {int(np.size(z) - np.isfinite(z).sum())} NaN/inf value(s)"
            )
        if len(z) == 0:
            return np.zeros((0, *self.output_shape), np.float32)
        parts = []
        for start in range(0, len(z), self.batch_size):
            chunk = np.ascontiguousarray(z[start : start + self.batch_size])
            parts.append(self._concrete(chunk).numpy())
        images = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return images[0] if single else images


def make_decoder(decoder_model: keras.Model) -> Decoder:
    """A compiled ``Decoder`` for a Keras decoder model (e.g. ``BuiltModel.decoder``)."""
    return Decoder(decoder_model)


def interpolate(z_a: np.ndarray, z_b: np.ndarray, steps: int) -> np.ndarray:
    """``steps`` codes evenly spaced on the line from ``z_a`` to ``z_b``, both ends included
    exactly, shape (steps, *z_a.shape), float32."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 2:
        raise ValueError(f"steps must be an integer of at least 2. Received: steps={steps!r}")
    a = np.asarray(z_a, dtype=np.float64)
    b = np.asarray(z_b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(
            f"The two codes must have the same shape. Received: z_a.shape={a.shape}, "
            f"z_b.shape={b.shape}"
        )
    t = np.linspace(0.0, 1.0, int(steps)).reshape((-1,) + (1,) * a.ndim)
    return ((1.0 - t) * a + t * b).astype(np.float32)


def latent_statistics(codes: np.ndarray) -> dict[str, Any]:
    """Plain-JSON statistics of a batch of codes (N, *latent_shape), channels last.

    Keys: ``shape`` (the latent shape), ``count``; per channel ``channel_min``, ``channel_max``,
    ``channel_mean``, ``channel_std`` (lists); per cell ``cell_mean`` and ``cell_std`` (nested lists
    of the latent shape); and global ``min``, ``max``, ``mean``, ``std``.
    """
    z = np.asarray(codes, dtype=np.float64)
    if z.ndim < 2 or z.shape[0] == 0:
        raise ValueError(
            f"Codes must be a non-empty batch shaped (N, *latent_shape). Received: shape={z.shape}"
        )
    if not np.all(np.isfinite(z)):
        raise ValueError(
            f"Codes must be finite numbers. Received: {int(z.size - np.isfinite(z).sum())} "
            "NaN/inf value(s)"
        )
    channels = z.reshape(-1, z.shape[-1])
    return {
        "shape": [int(n) for n in z.shape[1:]],
        "count": int(z.shape[0]),
        "channel_min": [float(v) for v in channels.min(axis=0)],
        "channel_max": [float(v) for v in channels.max(axis=0)],
        "channel_mean": [float(v) for v in channels.mean(axis=0)],
        "channel_std": [float(v) for v in channels.std(axis=0)],
        "cell_mean": z.mean(axis=0).tolist(),
        "cell_std": z.std(axis=0).tolist(),
        "min": float(z.min()),
        "max": float(z.max()),
        "mean": float(z.mean()),
        "std": float(z.std()),
    }


PRIOR_SIGMAS = 3.0  # a variational run's brush range: the prior's mean +- this many sigmas


def sample_codes(
    count: int,
    latent_shape: tuple[int, ...],
    *,
    variational: bool,
    codes: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """``count`` random codes (count, *latent_shape) float32 from the prior or one fitted
    Gaussian: the "prior" and "gaussian" samplers' rule (``CodeDensity.sample``).

    A variational run's come from its prior, N(0, 1) in every value. A plain run has no prior:
    its come from the Gaussian fitted to ``codes`` (N, *latent_shape), with their mean and their
    covariance (the correlations between values kept: ``mean + centred.T @ w / sqrt(N - 1)`` with
    ``w ~ N(0, I_N)``, so no covariance matrix is formed), clipped to each channel's observed
    range. Drawing each value on its own instead ignores how the values of one digit go together:
    bench/vae_samples.py: 0.023 vs 0.289 of the samples read as a confident digit (keras-denoiser)."""
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(f"count must be an integer of at least 0. Received: count={count!r}")
    shape = tuple(int(n) for n in latent_shape)
    rng = np.random.default_rng() if rng is None else rng
    if variational:
        return rng.standard_normal((int(count), *shape)).astype(np.float32)
    if codes is None:
        raise ValueError(
            "a plain run's codes come from a Gaussian fitted to its codes: pass them. "
            "Received: codes=None"
        )
    fitted = np.asarray(codes, dtype=np.float64)
    if fitted.ndim < 2 or fitted.shape[1:] != shape or len(fitted) == 0:
        raise ValueError(
            f"codes must be a non-empty batch of codes of latent_shape. Received: codes shape="
            f"{list(fitted.shape)}, latent_shape={list(shape)}"
        )
    flat = fitted.reshape(len(fitted), -1)
    mean = flat.mean(axis=0)
    centred = (flat - mean) / np.sqrt(max(len(flat) - 1, 1))
    weights = rng.standard_normal((int(count), len(flat)))
    drawn = (mean + weights @ centred).reshape(int(count), *shape)
    channels = fitted.reshape(-1, shape[-1])
    return np.clip(drawn, channels.min(axis=0), channels.max(axis=0)).astype(np.float32)


def brush_ranges(
    stats: dict[str, Any] | None, channels: int, *, variational: bool
) -> tuple[list[float], list[float]]:
    """Each channel's (lows, highs) for painting a code: a variational run's from its prior,
    +-``PRIOR_SIGMAS`` around 0 (where its codes are meant to be); a plain run's the channel's
    min..max over its codes (``stats``), a dead channel (one value) widened to a span of 1."""
    if variational:
        return [-PRIOR_SIGMAS] * channels, [PRIOR_SIGMAS] * channels
    if stats is None:
        raise ValueError("a plain run's brush range comes from its codes' stats. Received: None")
    lows = [float(v) for v in stats["channel_min"]]
    highs = [float(v) for v in stats["channel_max"]]
    if len(lows) != channels or len(highs) != channels:
        raise ValueError(
            f"stats have another number of channels. Received: {len(lows)} in stats, "
            f"channels={channels}"
        )
    highs = [high if high > low else low + 1.0 for low, high in zip(lows, highs, strict=True)]
    return lows, highs


SAMPLERS = (
    "gmm",
    "gaussian",
    "prior",
)  # `cae sample --sampler`, the bench; the first is the default
SAMPLER_TITLES = {
    "gmm": "a Gaussian mixture fitted to the training codes",
    "gaussian": "a Gaussian fitted to the training codes",
    "prior": "the prior N(0, 1)",
}
GMM_COMPONENTS = 10  # as Ghosh et al. (ICLR 2020) fit to their regularised autoencoders' codes
MAX_FIT_CODES = 5_000  # codes a density is fitted to at most (a seeded subset beyond)
MAX_GMM_VALUES = 256  # values of a code a full-covariance mixture is fitted to at most
# A cell's brush range: these percentiles of the fitted codes at that cell (issue 28). Not its
# mean +- 3 sigma: a ReLU code's values are skewed and stop at 0, and on the shipped run that top
# lay above every training code at 40 of the 49 cells (pinned to the channel's 6.02 where the
# cell's codes stopped at 5.2) and cut cell (0, 0)'s range to 3.78-4.52 where its codes span
# 2.31-4.33. A cell whose codes never vary (a dead ReLU) has nothing to go by: its channel's range.
CELL_PERCENTILES = (1.0, 99.0)


@dataclass(frozen=True)
class CodeDensity:
    """A density fitted after training to a run's codes, to draw random codes from: a Gaussian
    mixture with full covariances (``kind`` "gmm": ``weights`` (K,), ``means`` (K, D), ``factors``
    (K, D, D), each covariance's Cholesky factor), or one Gaussian with the codes' mean and
    covariance (``kind`` "gaussian": ``codes`` kept, drawn by :func:`sample_codes`). Samples are
    clipped to each channel's range over the fitted codes (``lows``, ``highs``). ``cell_low`` and
    ``cell_high`` (the latent shape) are each cell's brush range: the ``CELL_PERCENTILES`` of the
    fitted codes at that cell (a cell whose codes never vary: its channel's range, a dead
    channel's widened to a span of 1). ``count`` codes were fitted, of
    ``source`` (words), in ``seconds``; ``note`` says why a mixture was not fitted, if so."""

    kind: str
    latent_shape: tuple[int, ...]
    count: int
    lows: np.ndarray
    highs: np.ndarray
    cell_low: np.ndarray
    cell_high: np.ndarray
    seconds: float
    source: str = "codes"
    weights: np.ndarray | None = None
    means: np.ndarray | None = None
    factors: np.ndarray | None = None
    codes: np.ndarray | None = None
    note: str = ""

    @property
    def components(self) -> int:
        """How many Gaussians it mixes (1 for "gaussian")."""
        return 1 if self.weights is None else len(self.weights)

    def describe(self) -> str:
        """In words, for a caption or the CLI: what was fitted to what, and how long it took."""
        what = (
            f"a {self.components}-component Gaussian mixture (full covariances)"
            if self.kind == "gmm"
            else "a Gaussian (the codes' mean and covariance)"
        )
        note = f"; {self.note}" if self.note else ""
        return f"{what} fitted to {self.count:,} {self.source} in {self.seconds:.1f} s{note}"

    def sample(self, count: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """``count`` codes (count, *latent_shape) float32 drawn from the density, clipped to each
        channel's fitted range."""
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
            raise ValueError(f"count must be an integer of at least 0. Received: count={count!r}")
        rng = np.random.default_rng() if rng is None else rng
        if self.kind == "gaussian":
            assert self.codes is not None
            return sample_codes(
                int(count), self.latent_shape, variational=False, codes=self.codes, rng=rng
            )
        assert self.weights is not None and self.means is not None and self.factors is not None
        chosen = rng.choice(len(self.weights), size=int(count), p=self.weights)
        noise = rng.standard_normal((int(count), self.means.shape[1]))
        drawn = np.empty((int(count), self.means.shape[1]))
        for k in np.unique(chosen):  # a component at a time: no (count, D, D) array
            rows = chosen == k
            drawn[rows] = self.means[k] + noise[rows] @ self.factors[k].T
        drawn = drawn.reshape(int(count), *self.latent_shape)
        return np.clip(drawn, self.lows, self.highs).astype(np.float32)

    def brush_ranges(self) -> tuple[list[float], list[float]]:
        """Each channel's (lows, highs) for the brush's slider: from its cells' lowest
        ``cell_low`` to their highest ``cell_high`` (a stroke then holds each cell to its own)."""
        return channel_spans(self.cell_low, self.cell_high)


def channel_spans(cell_low: np.ndarray, cell_high: np.ndarray) -> tuple[list[float], list[float]]:
    """Each channel's (lows, highs) over its cells' ranges (``cell_low``, ``cell_high``: (h, w,
    c)), a channel of no span widened to a span of 1."""
    channels = np.shape(cell_low)[-1]
    lows = np.asarray(cell_low, np.float64).reshape(-1, channels).min(axis=0)
    highs = np.asarray(cell_high, np.float64).reshape(-1, channels).max(axis=0)
    highs = np.where(highs > lows, highs, lows + 1.0)
    return [float(v) for v in lows], [float(v) for v in highs]


def cell_ranges(
    lows: Sequence[float], highs: Sequence[float], latent_shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Every cell's brush range (two arrays of ``latent_shape``) where only each channel's is
    known (``lows``, ``highs``: a variational run's prior, a run without images to fit)."""
    shape = tuple(int(n) for n in latent_shape)
    if len(lows) != shape[-1] or len(highs) != shape[-1]:
        raise ValueError(
            f"one range per channel is needed. Received: {len(lows)} lows, {len(highs)} highs, "
            f"latent_shape={list(shape)}"
        )
    low = np.broadcast_to(np.asarray(lows, np.float32), shape).copy()
    high = np.broadcast_to(np.asarray(highs, np.float32), shape).copy()
    return low, high


def _check_codes(codes: np.ndarray) -> np.ndarray:
    """``codes`` as float64 (N, *latent_shape), refused when empty or not finite."""
    z = np.asarray(codes, dtype=np.float64)
    if z.ndim < 2 or len(z) == 0:
        raise ValueError(
            f"Codes must be a non-empty batch shaped (N, *latent_shape). Received: shape={z.shape}"
        )
    if not np.all(np.isfinite(z)):
        raise ValueError(
            f"Codes must be finite numbers. Received: {int(z.size - np.isfinite(z).sum())} "
            "NaN/inf value(s)"
        )
    return z


def mixture_fits(count: int, values: int, components: int = GMM_COMPONENTS) -> str:
    """Why a full-covariance mixture of ``components`` is not fitted to ``count`` codes of
    ``values`` values each, or "" when it is: each component needs more codes than a code has
    values (else its covariance is singular), and at most ``MAX_GMM_VALUES`` values keep the fit
    to seconds."""
    if values > MAX_GMM_VALUES:
        return (
            f"a code of {values:,} values is too big for a mixture with full covariances "
            f"(at most {MAX_GMM_VALUES}): one Gaussian instead"
        )
    if count < components * (values + 1):
        return (
            f"{count:,} codes are too few for {components} components of {values:,} values "
            f"(at least {components * (values + 1):,}): one Gaussian instead"
        )
    return ""


def fit_density(
    codes: np.ndarray,
    kind: str = "gmm",
    *,
    components: int = GMM_COMPONENTS,
    max_codes: int = MAX_FIT_CODES,
    seed: int = 0,
    source: str = "codes",
) -> CodeDensity:
    """The density ``kind`` ("gmm" or "gaussian") fitted to ``codes`` (N, *latent_shape): at most
    ``max_codes`` of them (a subset drawn with ``seed`` beyond), so the fit stays bounded. "gmm"
    is scikit-learn's ``GaussianMixture`` with ``components`` full covariances (seeded), or one
    Gaussian when the codes are too few or too big for it (:func:`mixture_fits`, said in
    ``note``)."""
    import time

    if kind not in ("gmm", "gaussian"):
        raise ValueError(f"kind must be 'gmm' or 'gaussian'. Received: kind={kind!r}")
    for name, value in (("components", components), ("max_codes", max_codes)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")
    started = time.perf_counter()
    z = _check_codes(codes)
    shape = tuple(int(n) for n in z.shape[1:])
    if len(z) > max_codes:
        z = z[np.sort(np.random.default_rng(seed).choice(len(z), max_codes, replace=False))]
    flat = z.reshape(len(z), -1)
    channels = z.reshape(-1, shape[-1])
    lows, highs = channels.min(axis=0), channels.max(axis=0)
    note = mixture_fits(len(flat), flat.shape[1], components) if kind == "gmm" else ""
    fitted: dict[str, Any] = {}
    if kind == "gmm" and not note:
        from sklearn.mixture import GaussianMixture
        from threadpoolctl import threadpool_limits

        mixture = GaussianMixture(
            n_components=int(components),
            covariance_type="full",
            max_iter=100,  # bounded: ~2 s for the classic run's 4,500 codes (53 iterations)
            random_state=int(seed),
        )
        # One BLAS thread: beside TensorFlow's threads, OpenBLAS's two took the classic run's fit
        # from 2.1 s to 227 s on this 2-core machine (53 EM iterations either way).
        with threadpool_limits(1), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a fit stopped at max_iter is still a density
            mixture.fit(flat)
        weights = np.asarray(mixture.weights_, dtype=np.float64)
        means = np.asarray(mixture.means_, dtype=np.float64)
        factors = np.linalg.cholesky(np.asarray(mixture.covariances_, dtype=np.float64))
        fitted = {"weights": weights / weights.sum(), "means": means, "factors": factors}
    else:
        fitted = {"codes": z.astype(np.float32)}
    cell_low = np.percentile(z, CELL_PERCENTILES[0], axis=0)
    cell_high = np.percentile(z, CELL_PERCENTILES[1], axis=0)
    channel_low = np.broadcast_to(lows, shape)
    channel_high = np.broadcast_to(np.where(highs > lows, highs, lows + 1.0), shape)
    dead = cell_high - cell_low <= 1e-6 * np.maximum(1.0, channel_high - channel_low)
    cell_low = np.where(dead, channel_low, cell_low)
    cell_high = np.where(dead, channel_high, cell_high)
    return CodeDensity(
        kind="gmm" if "weights" in fitted else "gaussian",
        latent_shape=shape,
        count=len(flat),
        lows=lows,
        highs=highs,
        cell_low=cell_low,
        cell_high=cell_high,
        seconds=time.perf_counter() - started,
        source=source,
        note=note,
        **fitted,
    )


def draw_codes(
    sampler: str,
    count: int,
    latent_shape: tuple[int, ...],
    *,
    variational: bool,
    density: CodeDensity | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """``count`` random codes by ``sampler`` (one of ``SAMPLERS``): "prior" N(0, 1) (variational
    runs only: a plain run has no prior), else from ``density`` (fitted by :func:`fit_density`)."""
    if sampler not in SAMPLERS:
        raise ValueError(
            f"sampler must be one of {', '.join(SAMPLERS)}. Received: sampler={sampler!r}"
        )
    if sampler == "prior":
        if not variational:
            raise ValueError(
                "A plain run has no prior to sample: use 'gmm' or 'gaussian', densities fitted "
                f"to its codes. Received: sampler={sampler!r}"
            )
        return sample_codes(count, latent_shape, variational=True, rng=rng)
    if density is None:
        raise ValueError(
            f"The {sampler!r} sampler draws from a density fitted to the run's codes: pass it. "
            "Received: density=None"
        )
    if tuple(density.latent_shape) != tuple(int(n) for n in latent_shape):
        raise ValueError(
            f"The density was fitted to codes of another shape. Received: density "
            f"{list(density.latent_shape)}, latent_shape={list(latent_shape)}"
        )
    return density.sample(count, rng)


def decode_samples(decoder_model: Any, codes: np.ndarray) -> np.ndarray:
    """Random codes decoded: float32 (N, H, W, C) clipped to [0, 1]."""
    if len(codes) == 0:
        output = tuple(int(n) for n in decoder_model.output_shape[1:])
        return np.zeros((0, *output), np.float32)
    images = Decoder(decoder_model)(codes)
    return np.clip(images, 0.0, 1.0).astype(np.float32)
