"""Baselines a run is measured against: PCA with as many components as its code has values, and
the mean training image, both fitted on the recipe's training split and scored on its test split.

"This autoencoder vs PCA with 49 components" is the first question a student asks: PCA is the best
*linear* code of that size (in squared error, on the training images), so an autoencoder that does
not beat it has not learned anything a projection could not. Both are scored with the functions the
runs are scored with (``cae.metrics``), on the same test images (``cae.recipe.load_recipe``), so the
numbers compare one to one. Reconstructions are clipped to [0, 1], as a sigmoid output would be.

PCA is fitted with numpy alone: the D x D covariance accumulated over blocks of training rows, then
``numpy.linalg.eigh`` (D = pixels x channels, up to :data:`MAX_COVARIANCE_DIMS`), or above that a
randomised subspace iteration on the same blocks (Halko, Martinsson and Tropp 2011, with power
iterations), so memory stays at a few blocks of images plus D x (k + k/2) numbers. Measured here on
Fashion-MNIST (60,000 x 784 training images, MNIST's size), k = 49: 11.3 s from recipe to metrics
(load, fit, score 10,000 test images; median of 3 on this shared 2-core machine, load average 10),
165 MB peak; the mean image 2.6 s; a cached result 5 ms. Results are cached on disk per data recipe and component count in
``models/.baselines/`` (a hidden folder the run list skips); a cache file that cannot be read is
ignored and rewritten. No TensorFlow and no streamlit here.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cae import metrics as image_metrics
from cae.pixels import as_float
from cae.recipe import DataRecipe, load_recipe
from cae.store import RunError, RunInfo, get_run_info, models_dir, regular_file_problem

CACHE_DIR = ".baselines"  # inside the runs folder; hidden, so never listed as a run
CACHE_VERSION = 1  # bump when the way a baseline is computed changes: old files are then ignored
MAX_CACHE_BYTES = 1 << 20
ROW_BLOCK = 2048  # training or test images per block at most: bounds memory on big datasets
BLOCK_BYTES = 32 * 2**20  # ... and at most this many bytes of them as float64: a block of 2,048
# images of 512x512x3 was 12.9 GB (`cae baseline` on a 181 KB zip of black PNGs peaked at 11.9 GB)
OVERSAMPLE = 10  # extra directions of the randomised subspace iteration: at least 10, or k / 2
POWER_ITERATIONS = 4  # subspace iterations (Fashion-MNIST, k=49: test MSE within 0.1% of exact)
MAX_COVARIANCE_DIMS = 4096  # a D x D float64 covariance of at most 128 MiB
GRAM_SPEED = 2  # a multiply-add of the Gram matrix (one product of big blocks) against one of the
# subspace iteration (ten passes of thin products): measured 0.72 vs 1.5 ns on 180 images of
# 512x512x3 on this 2-core machine under load
MAX_WORK = 2e12  # multiply-adds: about a minute on 2 cores; more is refused in one line


class BaselineError(ValueError):
    """A baseline that cannot be computed (no training images, too large); the message says why."""


# ------------------------------------------------------------------------------------ arrays


def _rows(x: np.ndarray) -> np.ndarray:
    """Images (N, H, W, C) as rows (N, D), as held (uint8 or float32), without a copy when
    possible."""
    return np.asarray(x).reshape(len(x), -1)


def block_rows(dims: int) -> int:
    """Rows per block for images of ``dims`` values: :data:`ROW_BLOCK`, fewer for big images so
    that a block holds at most :data:`BLOCK_BYTES` as float64 (at least one row)."""
    return max(1, min(ROW_BLOCK, BLOCK_BYTES // (8 * max(1, int(dims)))))


def _starts(rows: np.ndarray) -> range:
    """The first row of each block of ``rows``."""
    return range(0, len(rows), block_rows(rows.shape[1]))


def _block(rows: np.ndarray, start: int) -> np.ndarray:
    """The block of rows from ``start`` as float64 in [0, 1] (uint8 counts as k/255)."""
    stop = start + block_rows(rows.shape[1])
    return np.asarray(as_float(rows[start:stop]), dtype=np.float64)


def check_components(components: Any) -> int:
    """``components`` as an int: a whole number, at least 1 (BaselineError otherwise)."""
    if (
        isinstance(components, bool)
        or not isinstance(components, (int, np.integer))
        or components < 1
    ):
        raise BaselineError(
            f"PCA needs a whole number of components, at least 1. Received: components={components!r}"
        )
    return int(components)


def _check_pair(x_train: np.ndarray, x_test: np.ndarray) -> None:
    if x_train.ndim != 4 or x_test.ndim != 4 or x_train.shape[1:] != x_test.shape[1:]:
        raise BaselineError(
            "the training and test images must be (N, H, W, C) arrays of one image shape. "
            f"Received: x_train={x_train.shape}, x_test={x_test.shape}"
        )
    if len(x_train) == 0 or len(x_test) == 0:
        raise BaselineError(
            "a baseline needs training and test images. "
            f"Received: x_train={len(x_train)}, x_test={len(x_test)}"
        )


def train_mean(x_train: np.ndarray) -> np.ndarray:
    """The mean training image as a float64 row (D,), summed block by block."""
    rows = _rows(x_train)
    total = np.zeros(rows.shape[1], dtype=np.float64)
    for start in _starts(rows):
        total += _block(rows, start).sum(axis=0)
    return total / len(rows)


def _covariance_times(rows: np.ndarray, mean: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """(X - mean)^T (X - mean) @ basis, never forming the covariance nor a centred copy of X:
    Y = (X - mean) @ basis by blocks of rows, then X^T Y - mean (1^T Y) by blocks of columns,
    so that each value of the (D, k) result is written once (adding a (D, k) product per block of
    a few rows of big images cost 85 s for 180 images of 512x512x3, against ~10 s)."""
    shift = mean @ basis
    projected = np.concatenate([_block(rows, start) @ basis - shift for start in _starts(rows)])
    totals = projected.sum(axis=0)
    out = np.empty_like(basis)
    for first in _column_blocks(rows):
        columns = _columns(rows, first)
        stop = first + columns.shape[1]
        out[first:stop] = columns.T @ projected - np.outer(mean[first:stop], totals)
    return out


def _column_blocks(rows: np.ndarray) -> range:
    """The first column of each block of columns of ``rows`` holding at most
    :data:`BLOCK_BYTES` as float64 (at least one column)."""
    return range(0, rows.shape[1], max(1, BLOCK_BYTES // (8 * max(1, len(rows)))))


def _columns(rows: np.ndarray, first: int) -> np.ndarray:
    """The block of columns of ``rows`` from ``first`` as float64 in [0, 1]."""
    step = max(1, BLOCK_BYTES // (8 * max(1, len(rows))))
    return np.asarray(as_float(rows[:, first : first + step]), dtype=np.float64)


def _gram_axes(rows: np.ndarray, mean: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` leading principal axes (D, k) from the N x N Gram matrix of the centred images,
    (X - mean)(X - mean)^T, accumulated over blocks of columns: the covariance's leading
    eigenvectors are (X - mean)^T u / sqrt(lambda) for the Gram matrix's (u, lambda). Two passes
    over the images, where the subspace iteration takes ten (180 images of 512x512x3)."""
    n = len(rows)
    gram = np.zeros((n, n), dtype=np.float64)
    products = np.zeros(n, dtype=np.float64)  # X @ mean
    for first in _column_blocks(rows):
        columns = _columns(rows, first)
        gram += columns @ columns.T
        products += columns @ mean[first : first + columns.shape[1]]
    gram += float(mean @ mean) - products[:, None] - products[None, :]
    _, vectors = np.linalg.eigh((gram + gram.T) / 2)  # ascending
    leading = vectors[:, ::-1][:, :k]
    totals = leading.sum(axis=0)
    axes = np.empty((rows.shape[1], leading.shape[1]), dtype=np.float64)
    for first in _column_blocks(rows):
        columns = _columns(rows, first)
        stop = first + columns.shape[1]
        axes[first:stop] = columns.T @ leading - np.outer(mean[first:stop], totals)
    # orthonormal columns in the same order (a direction of no variance becomes any unit vector
    # orthogonal to the others: it reconstructs nothing either way)
    axes, _ = np.linalg.qr(axes)
    if axes.shape[1] < k:  # more components than images: the rest add nothing
        extra = np.random.default_rng(0).standard_normal((rows.shape[1], k - axes.shape[1]))
        axes, _ = np.linalg.qr(np.concatenate([axes, extra], axis=1))
    return axes


def principal_axes(
    x_train: np.ndarray, components: int, *, method: str = "auto", seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), axes (D, k)): the mean training image and the ``components`` leading principal
    axes of the training images, orthonormal columns, by the largest variance first.

    ``method`` "covariance" accumulates the D x D covariance block by block and diagonalises it
    (exact); "gram" does the same with the N x N matrix of the images' products (exact, for few
    large images); "randomized" runs a seeded subspace iteration on the blocks; "auto" takes the
    covariance up to :data:`MAX_COVARIANCE_DIMS` values per image, else the Gram matrix of up to
    as many images when it is the less work (:data:`GRAM_SPEED`), else the subspace iteration."""
    components = check_components(components)
    rows = _rows(x_train)
    n, dims = rows.shape
    k = min(components, dims)
    mean = train_mean(x_train)
    width = min(dims, k + max(OVERSAMPLE, k // 2))
    works = {
        "covariance": n * dims * dims,
        "gram": n * n * dims,
        "randomized": (2 * POWER_ITERATIONS + 2) * n * dims * width,
    }
    if method == "auto":
        method = (
            "covariance"
            if dims <= MAX_COVARIANCE_DIMS
            else "gram"
            if n <= MAX_COVARIANCE_DIMS and works["gram"] <= GRAM_SPEED * works["randomized"]
            else "randomized"
        )
    if method not in works:
        raise BaselineError(
            f"method must be auto, covariance, gram or randomized. Received: method={method!r}"
        )
    work = works[method]
    if work > MAX_WORK:
        raise BaselineError(
            f"PCA of {n:,} training images of {dims:,} values with {k:,} components is too much "
            f"work for a baseline here (about {work:.1e} multiply-adds, limit {MAX_WORK:.0e}); "
            f"use a limit on the images. Received: images={n}, values={dims}, components={k}"
        )
    if method == "covariance":
        covariance = np.zeros((dims, dims), dtype=np.float64)
        for start in _starts(rows):
            block = _block(rows, start) - mean
            covariance += block.T @ block
        values, vectors = np.linalg.eigh(covariance)  # ascending
        return mean, vectors[:, ::-1][:, :k]
    if method == "gram":
        return mean, _gram_axes(rows, mean, k)
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((dims, width)))
    for _ in range(POWER_ITERATIONS):
        basis, _ = np.linalg.qr(_covariance_times(rows, mean, basis))
    small = basis.T @ _covariance_times(rows, mean, basis)  # Rayleigh-Ritz on the subspace
    values, vectors = np.linalg.eigh((small + small.T) / 2)
    return mean, (basis @ vectors[:, ::-1])[:, :k]


def _score(x_test: np.ndarray, reconstruct: Any) -> dict[str, float]:
    """Every metric of ``cae.metrics.METRICS`` of (test images, ``reconstruct(rows)`` clipped to
    [0, 1]), block by block, aggregated as a run's test metrics are."""
    rows = _rows(x_test)
    parts = []
    for start in _starts(rows):
        block = _block(rows, start)
        recon = np.clip(reconstruct(block), 0.0, 1.0)
        shape = (len(block), *x_test.shape[1:])
        parts.append(image_metrics.per_image(block.reshape(shape), recon.reshape(shape)))
    return image_metrics.aggregate(image_metrics.concatenate(parts))


def pca_scores(
    x_train: np.ndarray, x_test: np.ndarray, components: int, *, method: str = "auto"
) -> dict[str, float]:
    """The test metrics (keys of ``cae.metrics.METRICS``) of PCA with ``components`` components
    fitted on ``x_train``: each test image projected on the leading axes and back, clipped to
    [0, 1]. With as many components as values (or more) the reconstruction is exact."""
    _check_pair(x_train, x_test)
    components = check_components(components)
    dims = int(np.prod(x_train.shape[1:]))
    if components >= dims:
        return _score(x_test, lambda block: block)
    mean, axes = principal_axes(x_train, components, method=method)
    return _score(x_test, lambda block: ((block - mean) @ axes) @ axes.T + mean)


def mean_image_scores(x_train: np.ndarray, x_test: np.ndarray) -> dict[str, float]:
    """The test metrics of reconstructing every test image as the mean training image."""
    _check_pair(x_train, x_test)
    mean = train_mean(x_train)
    return _score(x_test, lambda block: np.broadcast_to(mean, block.shape))


# ------------------------------------------------------------------------------------ cache


def recipe_digest(recipe: DataRecipe) -> str:
    """A short digest of what a recipe's images are (source, content hash, limit, seed, test
    fraction; not where an upload happens to lie), naming its cache files."""
    fields = recipe.to_dict()
    fields.pop("upload_path", None)
    fields.pop("upload_name", None)
    text = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def cache_path(recipe: DataRecipe, kind: str, root: str | os.PathLike[str] | None = None) -> Path:
    """The cache file of one baseline (``kind`` e.g. ``pca-49`` or ``mean``) of a recipe."""
    base = models_dir() if root is None else Path(root)
    return base / CACHE_DIR / f"{recipe_digest(recipe)}-{kind}.json"


def _read_cache(path: Path, recipe: DataRecipe, kind: str) -> dict[str, float] | None:
    """The cached metrics, or None when the file is missing, unreadable, of another version or
    recipe, or not every metric of the table (such a file is then rewritten)."""
    if regular_file_problem(path, MAX_CACHE_BYTES):
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return None
    if data.get("kind") != kind or data.get("recipe") != recipe.to_dict():
        return None
    values = data.get("metrics")
    if not isinstance(values, dict) or set(values) != set(image_metrics.METRIC_KEYS):
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values.values()):
        return None
    return {key: float(values[key]) for key in image_metrics.METRIC_KEYS}


def _write_cache(
    path: Path, recipe: DataRecipe, kind: str, values: dict[str, float], seconds: float
) -> None:
    """Write a cache file atomically; a runs folder that cannot be written to only costs speed."""
    record = {
        "version": CACHE_VERSION,
        "kind": kind,
        "recipe": recipe.to_dict(),
        "metrics": values,
        "seconds": round(seconds, 3),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".tmp-{secrets.token_hex(6)}-{path.name}")
        partial.write_text(json.dumps(record, indent=2), encoding="utf-8")
        os.replace(partial, path)
    except OSError:
        return


def _cached(
    recipe: DataRecipe,
    kind: str,
    compute: Any,
    root: str | os.PathLike[str] | None,
    use_cache: bool,
    load: Any = load_recipe,
) -> dict[str, float]:
    if not isinstance(recipe, DataRecipe):
        raise BaselineError(
            f"a baseline needs a DataRecipe. Received: type={type(recipe).__name__}"
        )
    path = cache_path(recipe, kind, root)
    if use_cache:
        found = _read_cache(path, recipe, kind)
        if found is not None:
            return found
    started = time.perf_counter()
    dataset = load(recipe)
    values = compute(dataset.x_train, dataset.x_test)
    if use_cache:
        _write_cache(path, recipe, kind, values, time.perf_counter() - started)
    return values


# ------------------------------------------------------------------------------------ recipes


def pca_baseline(
    recipe: DataRecipe,
    components: int,
    *,
    root: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> dict[str, float]:
    """PCA with ``components`` components fitted on the recipe's training split and scored on its
    test split (the images a run of this recipe is scored on); reconstructions clipped to [0, 1],
    as a sigmoid output would be. Metrics keyed as ``cae.metrics.METRICS``; cached per recipe and
    component count in ``<root>/.baselines/``."""
    components = check_components(components)
    return _cached(
        recipe,
        f"pca-{components}",
        lambda x_train, x_test: pca_scores(x_train, x_test, components),
        root,
        use_cache,
    )


def mean_image_baseline(
    recipe: DataRecipe,
    *,
    root: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> dict[str, float]:
    """Every test image of the recipe reconstructed as its mean training image; metrics keyed as
    ``cae.metrics.METRICS``, cached per recipe."""
    return _cached(recipe, "mean", mean_image_scores, root, use_cache)


def recipe_baselines(
    recipe: DataRecipe,
    components: int,
    *,
    root: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> dict[str, dict[str, float]]:
    """``{"pca": pca_baseline(...), "mean_image": mean_image_baseline(...)}`` of a recipe, its
    images loaded at most once for both (decoding a zip of 1,000 PNGs twice cost seconds)."""
    components = check_components(components)
    loaded: list[Any] = []

    def load_once(wanted: DataRecipe) -> Any:
        if not loaded:
            loaded.append(load_recipe(wanted))
        return loaded[0]

    def pca(x_train: np.ndarray, x_test: np.ndarray) -> dict[str, float]:
        return pca_scores(x_train, x_test, components)

    return {
        "pca": _cached(recipe, f"pca-{components}", pca, root, use_cache, load_once),
        "mean_image": _cached(recipe, "mean", mean_image_scores, root, use_cache, load_once),
    }


@dataclass(frozen=True)
class RunBaselines:
    """A saved run's baselines: PCA with as many components as its code has values, and the mean
    image, on the run's data recipe."""

    run_id: str
    recipe: DataRecipe
    components: int  # values in the run's code (cae.shapes), PCA's component count
    pca: dict[str, float]
    mean_image: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data."""
        return {
            "run_id": self.run_id,
            "recipe": self.recipe.to_dict(),
            "components": self.components,
            "pca": dict(self.pca),
            "mean_image": dict(self.mean_image),
        }


def code_size(info: RunInfo) -> int:
    """The number of values in a run's code, from its spec's shapes (``cae.shapes``)."""
    if info.latent_shape is None:
        raise BaselineError(
            f"run {info.run_id!r} has no valid design, so no code size: {info.broken}. "
            f"Received: latent_shape=None"
        )
    return int(math.prod(info.latent_shape))


def run_baselines(
    run: str | os.PathLike[str] | RunInfo,
    root: str | os.PathLike[str] | None = None,
    *,
    use_cache: bool = True,
) -> RunBaselines:
    """The baselines of a saved run (a run id in ``root``, a folder path or its RunInfo): PCA with
    the code's number of values as components and the mean image, on the recipe its train.json
    records. RunError when the record does not say where its images came from; RecipeError when
    they cannot be had any more (an upload that is gone)."""
    info = run if isinstance(run, RunInfo) else get_run_info(run, root)
    if info.recipe is None:
        raise RunError(
            f"Run {info.run_id!r} has no baselines: {info.recipe_problem}",
            run_id=info.run_id,
            reason=info.recipe_problem,
        )
    components = code_size(info)
    cache_root = info.path.parent  # the runs folder the run lies in
    found = recipe_baselines(info.recipe, components, root=cache_root, use_cache=use_cache)
    return RunBaselines(
        run_id=info.run_id,
        recipe=info.recipe,
        components=components,
        pca=found["pca"],
        mean_image=found["mean_image"],
    )
