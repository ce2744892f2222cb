"""Datasets: how a set of images is held, split into train and test, and capped.

A :class:`Dataset` holds (N, H, W, C) images as they came (``cae.pixels``): uint8 for 8-bit
sources (the built-in datasets, PNG/JPEG uploads, uint8 arrays), a quarter of the memory of
float32, else float32 in [0, 1]; ``cae.pixels.as_float`` gives float32 a batch at a time. The
split (stratified by label when labels allow, seeded) and the cap (``limit``, a seeded pick) are
the ones every source uses. Where images come from lives elsewhere: the built-in datasets in
``cae.datasets``, uploads in ``cae.uploads``, the array file formats in ``cae.array_files``.
Nothing here imports streamlit, TensorFlow or PIL.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cae.pixels import HELD_DTYPES, as_float

__all__ = [
    "MAX_CHANNELS",
    "Dataset",
    "DatasetSummary",
    "check_limit",
    "check_split_args",
    "hold_images",
    "limit_dataset",
    "make_dataset",
    "normalise_images",
    "out_of_memory",
    "split_indices",
]

MAX_CHANNELS = 64
"""Most channels an image may have (multispectral images, feature stacks); the same as
``cae.spec.MAX_CHANNELS``, the most a design takes (a test checks they agree)."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images (N, H, W, C) held as uint8 (k means k/255) or float32 in [0, 1] (``cae.pixels``),
    optional integer labels, a train/test split. Models take ``cae.pixels.as_float`` of a batch."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray | None
    class_names: tuple[str, ...] | None = None
    source: str = ""

    def __post_init__(self) -> None:
        for field in ("x_train", "x_test"):
            x = getattr(self, field)
            if not isinstance(x, np.ndarray) or x.ndim != 4 or x.dtype not in HELD_DTYPES:
                raise ValueError(
                    f"Dataset.{field} must be a uint8 or float32 array of shape (N, H, W, C). "
                    f"Received: type={type(x).__name__}, shape={getattr(x, 'shape', None)}, "
                    f"dtype={getattr(x, 'dtype', None)}"
                )
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(
                "Dataset.x_train and x_test must hold images of the same shape. "
                f"Received: x_train.shape={self.x_train.shape}, x_test.shape={self.x_test.shape}"
            )
        for xf, yf in (("x_train", "y_train"), ("x_test", "y_test")):
            y = getattr(self, yf)
            n = len(getattr(self, xf))
            if y is not None and (not isinstance(y, np.ndarray) or y.shape != (n,)):
                raise ValueError(
                    f"Dataset.{yf} must be None or a 1-D array with one label per image of {xf}. "
                    f"Received: {yf}.shape={getattr(y, 'shape', None)}, {xf} has {n} images"
                )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """The (H, W, C) shape of one image."""
        h, w, c = self.x_train.shape[1:]
        return int(h), int(w), int(c)

    @property
    def num_train(self) -> int:
        """Number of training images."""
        return int(self.x_train.shape[0])

    @property
    def num_test(self) -> int:
        """Number of test images."""
        return int(self.x_test.shape[0])

    @property
    def num_classes(self) -> int | None:
        """Number of named classes, or None when the classes are unnamed or absent."""
        return None if self.class_names is None else len(self.class_names)

    @property
    def held_bytes(self) -> int:
        """Bytes the train and test images take in memory, as held."""
        return int(self.x_train.nbytes + self.x_test.nbytes)

    def first_images(self, count: int = 4) -> np.ndarray:
        """The first ``count`` test images (training ones when there is no test split), float32
        in [0, 1]: a few examples for a preview."""
        images = self.x_test if self.num_test else self.x_train
        return np.array(as_float(images[:count]), dtype=np.float32)

    def summary(self, samples: int = 4) -> DatasetSummary:
        """The few facts a page shows about the dataset, with ``samples`` of its images
        (:meth:`first_images`), not the rest."""
        return DatasetSummary(
            self.name,
            self.num_train,
            self.num_test,
            self.image_shape,
            self.class_names,
            str(self.x_train.dtype),
            self.held_bytes,
            self.y_train is not None,
            self.first_images(samples),
        )


@dataclass(frozen=True, eq=False)
class DatasetSummary:
    """What a loaded dataset is, with a few of its images (cheap to cache and to copy)."""

    name: str
    num_train: int
    num_test: int
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...] | None
    dtype: str  # how the images are held: "uint8" or "float32"
    held_bytes: int
    labelled: bool  # the training images have labels
    samples: np.ndarray  # the first few test images (training ones without a test split), float32


# --------------------------------------------------------------------------------------------
# Normalisation and splitting


def normalise_images(x: np.ndarray) -> np.ndarray:
    """Return images as float32 (N, H, W, C) in [0, 1] from (N, H, W) or (N, H, W, C) arrays."""
    return _normalise(x, owned=False)


def hold_images(x: np.ndarray, *, owned: bool = False) -> np.ndarray:
    """Images (N, H, W, C) as a dataset holds them, from (N, H, W) or (N, H, W, C) arrays: uint8
    for 8-bit sources (uint8 itself, without a copy; bool and other integers in 0..255), float32
    in [0, 1] for float ones. ``cae.pixels.as_float`` turns either into float32 in [0, 1]. A
    float32 array the caller ``owned`` is rescaled in place instead of copied."""
    return _normalise(x, owned=owned, hold=True)


def _normalise(x: np.ndarray, *, owned: bool, hold: bool = False) -> np.ndarray:
    """:func:`normalise_images` (``hold``: :func:`hold_images`); a float32 array the caller
    ``owned`` is rescaled in place instead of copied (one float32 copy of an upload, not two)."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., np.newaxis]
    if x.ndim != 4:
        raise ValueError(
            "Images must be an array of shape (N, H, W) or (N, H, W, C). "
            f"Received: shape={x.shape} ({x.ndim}-D)"
        )
    if not 1 <= x.shape[-1] <= MAX_CHANNELS:
        raise ValueError(
            f"Images must have 1 to {MAX_CHANNELS} channels in the last axis (N, H, W, C). "
            f"Received: shape={x.shape}"
        )
    if x.size == 0:
        raise ValueError(f"The image array is empty. Received: shape={x.shape}")
    if x.dtype == np.uint8:
        return x if hold else as_float(x)
    if x.dtype == np.bool_:
        return x.astype(np.uint8) * np.uint8(255) if hold else x.astype(np.float32)
    if np.issubdtype(x.dtype, np.integer):
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > 255:
            raise ValueError(
                "Integer images must hold values in 0..255. "
                f"Received: dtype={x.dtype}, min={lo}, max={hi}"
            )
        return x.astype(np.uint8) if hold else as_float(x.astype(np.uint8))
    if np.issubdtype(x.dtype, np.floating):
        if not np.all(np.isfinite(x)):
            bad = int(np.count_nonzero(~np.isfinite(x)))
            raise ValueError(
                f"Images contain NaN or infinite values. Received: {bad} non-finite values "
                f"in an array of shape={x.shape}"
            )
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 255.0:
            raise ValueError(
                "Float images must lie in [0, 1] (kept) or [0, 255] (rescaled). "
                f"Received: dtype={x.dtype}, min={lo:g}, max={hi:g}"
            )
        out = x.astype(np.float32, copy=not owned)  # a copy unless the caller owns x
        if hi > 1.0:
            np.divide(out, 255.0, out=out)
        return out
    raise ValueError(
        "Images must be uint8, another integer type with values 0..255, or float. "
        f"Received: dtype={x.dtype}"
    )


def check_split_args(test_fraction: float, seed: int) -> None:
    """ValueError unless ``test_fraction`` lies strictly between 0 and 1 and ``seed`` is a
    non-negative integer."""
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, (int, float))
        or not (0.0 < float(test_fraction) < 1.0)
    ):
        raise ValueError(
            f"test_fraction must be a number strictly between 0 and 1. "
            f"Received: test_fraction={test_fraction!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer. Received: seed={seed!r}")


def check_limit(limit: int | None) -> None:
    """ValueError unless ``limit`` is None or a positive integer."""
    if limit is None:
        return
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise ValueError(f"limit must be None or a positive integer. Received: limit={limit!r}")


def split_indices(
    n: int, y: np.ndarray | None, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Train/test indices: stratified by label when labels allow it, shuffled, deterministic."""
    if n < 2:
        raise ValueError(
            f"At least 2 images are needed to split into train and test. Received: {n} image"
            + ("" if n == 1 else "s")
        )
    if y is not None:
        train_parts, test_parts = [], []
        for cls in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == cls))
            k = int(np.floor(len(idx) * test_fraction + 0.5))
            test_parts.append(idx[:k])
            train_parts.append(idx[k:])
        train = np.concatenate(train_parts)
        test = np.concatenate(test_parts)
        if len(train) > 0 and len(test) > 0:
            return rng.permutation(train), rng.permutation(test)
    perm = rng.permutation(n)
    k = min(max(1, int(np.floor(n * test_fraction + 0.5))), n - 1)
    return perm[k:], perm[:k]


def _cap(n: int, limit: int | None, rng: np.random.Generator) -> np.ndarray | None:
    """Indices of the first ``limit`` items after a seeded shuffle, or None for 'all, in order'."""
    if limit is None:
        return None
    return rng.permutation(n)[: min(limit, n)]


def make_dataset(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray | None,
    x_test: np.ndarray,
    y_test: np.ndarray | None,
    *,
    class_names: tuple[str, ...] | None,
    source: str,
    limit: int | None = None,
    seed: int = 0,
) -> Dataset:
    """Apply ``limit`` (before normalising, so tiny subsets stay cheap) and build a Dataset."""
    rng = np.random.default_rng([seed, 1])
    tr = _cap(len(x_train), limit, rng)
    te = _cap(len(x_test), limit, rng)
    if tr is not None:
        x_train = x_train[tr]
        y_train = None if y_train is None else y_train[tr]
    if te is not None:
        x_test = x_test[te]
        y_test = None if y_test is None else y_test[te]
    return Dataset(
        name=name,
        x_train=hold_images(x_train),
        y_train=None if y_train is None else np.asarray(y_train, dtype=np.int64),
        x_test=hold_images(x_test),
        y_test=None if y_test is None else np.asarray(y_test, dtype=np.int64),
        class_names=class_names,
        source=source,
    )


def limit_dataset(dataset: Dataset, limit: int | None, seed: int) -> Dataset:
    """At most ``limit`` train and ``limit`` test images of an already loaded dataset, picked by
    the same seeded shuffle :func:`make_dataset` uses for the built-in ones."""
    check_limit(limit)
    if limit is None:
        return dataset
    rng = np.random.default_rng([seed, 1])
    tr = _cap(dataset.num_train, limit, rng)
    te = _cap(dataset.num_test, limit, rng)
    return Dataset(
        name=dataset.name,
        x_train=dataset.x_train[tr],
        y_train=None if dataset.y_train is None else dataset.y_train[tr],
        x_test=dataset.x_test[te],
        y_test=None if dataset.y_test is None else dataset.y_test[te],
        class_names=dataset.class_names,
        source=dataset.source,
    )


def out_of_memory(what: str) -> ValueError:
    """The one clear error for a load that ran out of memory (instead of a traceback)."""
    return ValueError(
        f"{what} does not fit in this machine's memory; use fewer or smaller images (a limit on "
        "the Train page or --limit). Received: MemoryError"
    )
