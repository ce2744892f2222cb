"""Where a run's images come from: the data recipe, and the test split it leads to.

A :class:`DataRecipe` is plain data: the source (a built-in dataset name, or an uploaded file by
path, name and SHA-256), the image cap ``limit``, the split ``seed`` and the ``test_fraction``.
:func:`load_recipe` is the one way from a recipe to images (train and test); a run records its
recipe in train.json and its test images in ``test_images.npz`` (``cae.store.run_test_split``
reads them back), so every page and command scores a run on images it never trained on, even
after the uploaded file is gone. No TensorFlow and no streamlit here.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from cae.data import Dataset, limit_dataset
from cae.datasets import DATASETS, load_dataset
from cae.pixels import as_float
from cae.uploads import load_array_file

UPLOAD = "upload"
SOURCES = (*DATASETS, UPLOAD)
MAX_LIMIT = 1_000_000  # more images than any built-in dataset holds
TEST_FRACTION_RANGE = (0.01, 0.5)


class RecipeError(ValueError):
    """A recipe that is incomplete or whose images cannot be had; the message says which."""


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class DataRecipe:
    """Where a run's images come from; validated when made, JSON both ways."""

    dataset: str = "mnist-sample"  # a built-in dataset name, or "upload"
    limit: int | None = None  # at most this many train and this many test images (seeded pick)
    seed: int = 0  # the train/test split and the pick under ``limit``
    test_fraction: float = 0.1  # mnist-sample and uploads; MNIST/Fashion-MNIST keep their split
    upload_path: str | None = None  # the uploaded file, written once and referenced
    upload_name: str | None = None  # its name as the user gave it
    upload_sha256: str | None = None  # its content, so a changed file is refused
    upload_array: str | None = None  # the images' array in an .npz (None: the default rule)

    def __post_init__(self) -> None:
        if self.dataset not in SOURCES:
            raise RecipeError(
                f"the data source must be one of {', '.join(SOURCES)}. "
                f"Received: dataset={self.dataset!r}"
            )
        if self.limit is not None and (not _is_int(self.limit) or not 1 <= self.limit <= MAX_LIMIT):
            raise RecipeError(
                f"limit must be None or an integer from 1 to {MAX_LIMIT:,}. Received: limit={self.limit!r}"
            )
        if not _is_int(self.seed) or not 0 <= self.seed < 2**31:
            raise RecipeError(
                f"seed must be an integer from 0 to 2**31 - 1. Received: seed={self.seed!r}"
            )
        low, high = TEST_FRACTION_RANGE
        if (
            isinstance(self.test_fraction, bool)
            or not isinstance(self.test_fraction, (int, float))
            or not math.isfinite(self.test_fraction)
            or not low <= self.test_fraction <= high
        ):
            raise RecipeError(
                f"test_fraction must be a number from {low} to {high}. "
                f"Received: test_fraction={self.test_fraction!r}"
            )
        upload_fields = (self.upload_path, self.upload_name, self.upload_sha256)
        if self.dataset == UPLOAD:
            if not all(isinstance(value, str) and value for value in upload_fields):
                raise RecipeError(
                    "an upload recipe needs the file's path, name and SHA-256. Received: "
                    f"upload_path={self.upload_path!r}, upload_name={self.upload_name!r}, "
                    f"upload_sha256={self.upload_sha256!r}"
                )
            if self.upload_array is not None and (
                not isinstance(self.upload_array, str)
                or not self.upload_array
                or not self.upload_name.lower().endswith(".npz")
            ):
                raise RecipeError(
                    "upload_array names an array of an .npz file. Received: "
                    f"upload_array={self.upload_array!r}, upload_name={self.upload_name!r}"
                )
        elif any(value is not None for value in (*upload_fields, self.upload_array)):
            raise RecipeError(
                f"only an upload recipe names a file. Received: dataset={self.dataset!r}, "
                f"upload_path={self.upload_path!r}"
            )

    @property
    def label(self) -> str:
        """The short name runs are listed under: the dataset name, or ``upload:<file name>`` (with
        ``[<array>]`` when an array of an .npz was chosen)."""
        if self.dataset != UPLOAD:
            return self.dataset
        array = f"[{self.upload_array}]" if self.upload_array is not None else ""
        return f"upload:{self.upload_name}{array}"

    def describe(self) -> str:
        """One line for people: source, cap, split seed."""
        cap = f", at most {self.limit:,} images a split" if self.limit else ""
        return f"{self.label}{cap}, split seed {self.seed}"

    def image_shape(self) -> tuple[int, int, int] | None:
        """The images' (H, W, C) when known without reading them (the built-in datasets)."""
        info = DATASETS.get(self.dataset)
        return None if info is None else tuple(info.image_shape)

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain JSON-able data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> DataRecipe:
        """A validated recipe from a dict; unknown keys are refused (a typo must not pass)."""
        if not isinstance(data, dict):
            raise RecipeError(f"a data recipe must be a dict. Received: type={type(data).__name__}")
        names = {item.name for item in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise RecipeError(f"unknown keys in the data recipe. Received: {unknown}")
        return cls(**data)

    @classmethod
    def for_file(
        cls,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        limit: int | None = None,
        seed: int = 0,
        test_fraction: float = 0.1,
        array: str | None = None,
    ) -> DataRecipe:
        """The recipe of an array or image file on disk (its SHA-256 is computed here);
        ``array`` names the images' array of an .npz."""
        resolved = Path(path).resolve()
        return cls(
            dataset=UPLOAD,
            limit=limit,
            seed=seed,
            test_fraction=test_fraction,
            upload_path=os.fspath(resolved),
            upload_name=name or resolved.name,
            upload_sha256=file_sha256(resolved),
            upload_array=array,
        )


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_recipe(recipe: DataRecipe) -> Dataset:
    """The images of a recipe, train and test: the one way from a recipe to data (the Train page,
    the worker, the CLI and runs made before test images were stored all come through here)."""
    if recipe.dataset != UPLOAD:
        return load_dataset(
            recipe.dataset, limit=recipe.limit, seed=recipe.seed, test_fraction=recipe.test_fraction
        )
    path = Path(str(recipe.upload_path))
    if not path.is_file():
        raise RecipeError(
            f"the uploaded file {recipe.upload_name!r} is no longer here; upload it again. "
            f"Received: upload_path={os.fspath(path)!r}"
        )
    if file_sha256(path) != recipe.upload_sha256:
        raise RecipeError(
            f"the file {recipe.upload_name!r} has changed since it was chosen; choose it again. "
            f"Received: upload_path={os.fspath(path)!r}"
        )
    dataset = load_array_file(
        path,
        recipe.upload_name,
        seed=recipe.seed,
        test_fraction=recipe.test_fraction,
        array=recipe.upload_array,
    )
    return limit_dataset(dataset, recipe.limit, recipe.seed)


def recipe_from_record(train: dict[str, Any]) -> DataRecipe:
    """The recipe a run's train.json records; runs made before recipes were recorded give theirs
    when their keys say it all (built-in dataset, ``limit`` and ``data_seed``), else RecipeError
    with one line saying what is missing (never a guess)."""
    if isinstance(train.get("data"), dict):
        return DataRecipe.from_dict(train["data"])
    dataset = train.get("dataset")
    if dataset not in DATASETS:
        raise RecipeError(
            "this run was saved before runs kept their test images, and its record does not say "
            f"where its images came from. Received: dataset={dataset!r}"
        )
    seed, limit = train.get("data_seed"), train.get("limit")
    if not _is_int(seed) or (limit is not None and not _is_int(limit)):
        raise RecipeError(
            "this run was saved before runs kept their test images, and its record does not say "
            f"which split it trained on. Received: data_seed={seed!r}, limit={limit!r}"
        )
    return DataRecipe(dataset=dataset, limit=limit, seed=seed)


# ------------------------------------------------------------------------------- test split


@dataclass(frozen=True, eq=False)
class TestSplit:
    """A run's test images with their labels, if any. ``pixels`` holds them as the dataset did
    (uint8 or float32 (N, H, W, C), ``cae.pixels``); :meth:`image` and :meth:`take` give float32
    in [0, 1] for the few a page shows, :attr:`images` all of them (a new float32 array each
    time: for metrics over the whole split)."""

    __test__ = False  # not a pytest test class

    pixels: np.ndarray
    labels: np.ndarray | None
    class_names: tuple[str, ...] | None
    recipe: DataRecipe
    stored: bool  # read from the run folder (True) or rebuilt from the recipe of an older run

    @property
    def images(self) -> np.ndarray:
        """Every test image as float32 (N, H, W, C) in [0, 1] (converted on each use)."""
        return as_float(self.pixels)

    def image(self, index: int) -> np.ndarray:
        """One test image as float32 (H, W, C) in [0, 1]."""
        return as_float(self.pixels[int(index)])

    def take(self, indices: Any) -> np.ndarray:
        """The test images at ``indices`` (a list, an index array or a slice) as float32
        (n, H, W, C) in [0, 1]."""
        return as_float(self.pixels[indices])

    @property
    def count(self) -> int:
        """Number of test images."""
        return int(self.pixels.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """The (H, W, C) shape of one image."""
        h, w, c = self.pixels.shape[1:]
        return int(h), int(w), int(c)

    @classmethod
    def of(cls, dataset: Dataset, recipe: DataRecipe, *, stored: bool = False) -> TestSplit:
        """The test part of a loaded dataset."""
        return cls(dataset.x_test, dataset.y_test, dataset.class_names, recipe, stored)


def test_split_bytes(split: TestSplit) -> bytes:
    """A test split as a compressed ``.npz``: uint8 pixels when held so, or when every float value
    is k/255 (all the built-in datasets and PNG/JPEG uploads: 8x smaller than float32), float32
    otherwise."""
    held = split.pixels
    if held.dtype == np.uint8:
        stored = held
    else:
        as_bytes = np.rint(held * 255.0).clip(0, 255).astype(np.uint8)
        stored = as_bytes if np.array_equal(as_float(as_bytes), held) else held.astype(np.float32)
    arrays: dict[str, np.ndarray] = {"x": stored}
    if split.labels is not None:
        arrays["y"] = np.asarray(split.labels, dtype=np.int64)
    if split.class_names is not None:
        arrays["class_names"] = np.array(split.class_names, dtype=np.str_)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def read_test_split(path: str | os.PathLike[str], recipe: DataRecipe) -> TestSplit:
    """A test split written by :func:`test_split_bytes` (read with ``allow_pickle=False``)."""
    with np.load(path, allow_pickle=False) as npz:
        x = npz["x"]
        labels = npz["y"] if "y" in npz.files else None
        names = tuple(str(n) for n in npz["class_names"]) if "class_names" in npz.files else None
    if x.ndim != 4 or x.dtype not in (np.uint8, np.float32):
        raise RecipeError(
            f"{Path(path).name} must hold uint8 or float32 images (N, H, W, C). "
            f"Received: shape={x.shape}, dtype={x.dtype}"
        )
    if labels is not None and labels.shape != (len(x),):
        raise RecipeError(
            f"{Path(path).name} must hold one label per image. Received: labels={labels.shape}, "
            f"images={len(x)}"
        )
    x.setflags(write=False)  # held as stored (uint8 stays uint8): converted a use at a time
    return TestSplit(x, labels, names, recipe, stored=True)
