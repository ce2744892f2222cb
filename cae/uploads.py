"""Uploads: an ``.npy``, an ``.npz`` or a ``.zip`` of PNG/JPEG images, read safely into a Dataset.

:func:`load_array_file` reads an upload as a seeded train/test split (``cae.data``); every size
is checked before the work, from headers (npy/npz shapes and dtypes, PNG/JPEG dimensions and
modes), against the limits here and the upload budget (:func:`upload_budget`, 2 GiB as held,
``CAE_UPLOAD_BUDGET``). Arrays are read by ``cae.array_files`` (``allow_pickle=False``, archives
checked before anything is decompressed). An ``.npz`` of several arrays is listed from headers
(:func:`npz_arrays`) so a page can choose the images' array (:func:`npz_image_key` is the rule
when none is chosen). Nothing here imports streamlit or TensorFlow; PIL only to decode images.
"""

from __future__ import annotations

import io
import math
import os
import zipfile
import zlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import numpy as np

from cae.array_files import npy_header, open_zip, read_member, read_npy, read_npz
from cae.data import (
    MAX_CHANNELS,
    Dataset,
    DatasetSummary,
    check_split_args,
    hold_images,
    out_of_memory,
    split_indices,
)
from cae.pixels import as_float, bytes_per_value
from cae.text import first_bytes

__all__ = [
    "MAX_HELD_BYTES",
    "MAX_IMAGE_SIDE",
    "MAX_UNCOMPRESSED_BYTES",
    "MAX_UPLOAD_BYTES",
    "NpzArray",
    "load_array_file",
    "npz_arrays",
    "npz_image_key",
    "npz_label_key",
    "npz_sources",
    "release_memory",
    "upload_budget",
    "upload_image_shape",
    "upload_summary",
]

MAX_UPLOAD_BYTES = 200 * 1024 * 1024
"""Largest upload accepted by :func:`load_array_file` (bytes as received, before decompression)."""

MAX_UNCOMPRESSED_BYTES = 512 * 1024 * 1024
"""Largest total uncompressed size of the members of an uploaded ``.zip``/``.npz`` (zip bombs)."""

MAX_IMAGE_SIDE = 512
"""Largest image height or width accepted from an upload."""

MAX_HELD_BYTES = 4 * MAX_UNCOMPRESSED_BYTES
"""Largest size the images of one upload may take in memory as held (2 GiB): 1 byte a value for
8-bit images (uint8), 4 for float ones (float32). It binds a ``.zip`` of well-compressed PNGs (a
flat 512x512 RGB PNG is about 1 KB in the archive and 768 KiB decoded) and uploads read with a
larger archive limit; a real 1,000-image 512x512 RGB set (786 MB as uint8) fits."""

_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_LABEL_KEYS = ("y", "labels")
_IMAGE_KEYS = ("x", "images")


# --------------------------------------------------------------------------------------------
# The arrays of an .npz


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
    with open_zip(data, filename, max_uncompressed) as zf:
        for info in zf.infolist():
            if info.is_dir() or not info.filename.endswith(".npy"):
                continue
            key = info.filename[: -len(".npy")]
            try:
                with zf.open(info) as fh:
                    shape, dtype = npy_header(fh, f"{filename}[{key!r}]")  # type: ignore[arg-type]
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


# --------------------------------------------------------------------------------------------
# Reading an upload


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
    train, test = split_indices(n, y, test_fraction, np.random.default_rng(seed))
    # Put the images in split order first (a copy in their own dtype, often uint8), then hold
    # them (uint8 stays uint8; floats become float32 in place): the train part is a view of that
    # one array, not a second copy (the peak stays ~2x the held bytes).
    x = np.asarray(x)
    images = hold_images(x[np.concatenate([train, test])], owned=True)
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
    arrays = read_npz(buf, filename, max_uncompressed, {image_key, label_key} - {None})
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
    arrays = read_npz(buf, filename, max_uncompressed, wanted & keys)
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
        arr = _image_to_array(read_member(zf, info, filename), info.filename, filename, max_side)
        if arr.shape[:2] != (height, width) or (arr.dtype != np.uint8 and dtype == np.uint8):
            return None
        if arr.ndim == 2:
            arr = arr[..., None]
        if dtype == np.float32:
            arr = as_float(arr)
        x[position[index]] = arr  # a grayscale image broadcasts to RGB when others are colour
    return x


def _image_members(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """A zip's image members by name: PNG/JPEG files, not folders nor macOS metadata."""
    return sorted(
        (
            info
            for info in zf.infolist()
            if not info.is_dir()
            and info.filename.lower().endswith(_IMAGE_EXTENSIONS)
            and not info.filename.startswith("__MACOSX/")
            and not PurePosixPath(info.filename).name.startswith("._")
        ),
        key=lambda info: info.filename,
    )


def _load_zip_upload(
    buf: bytes,
    filename: str,
    *,
    test_fraction: float,
    seed: int,
    max_uncompressed: int,
    max_side: int,
) -> Dataset:
    zf = open_zip(buf, filename, max_uncompressed)
    with zf:
        members = _image_members(zf)
        if len(members) < 2:
            raise ValueError(
                f"{filename}: at least 2 PNG/JPEG images are needed to split into train and "
                f"test. Received: {len(members)} image(s) among {len(zf.infolist())} entries"
            )
        plan = _check_headers(zf, members, filename, max_side)  # sizes, before any decoding
        y, class_names = _zip_labels(members)
        train, test = split_indices(len(members), y, test_fraction, np.random.default_rng(seed))
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
                read_member(zf, info, filename), info.filename, filename, max_side
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
    check_split_args(test_fraction, seed)
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
        x = read_npy(io.BytesIO(buf), filename, max_uncompressed_bytes)
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
        raise out_of_memory(f"the upload {filename or 'file'!r}") from None


# --------------------------------------------------------------------------------------------
# The images' size from headers alone (issue 26: the CLI refuses a mismatched upload first)


def _images_shape(shape: tuple[int, ...]) -> tuple[int, int, int] | None:
    """(H, W, C) of an (N, H, W) or (N, H, W, C) array's shape; None for another rank."""
    if len(shape) == 3:
        return shape[1], shape[2], 1
    if len(shape) == 4:
        return shape[1], shape[2], shape[3]
    return None


def upload_image_shape(
    path: str | os.PathLike[str], *, array: str | None = None
) -> tuple[int, int, int] | None:
    """The (height, width, channels) an upload's images will have, read from headers only: the
    ``.npy`` header, the chosen (or :func:`npz_image_key`'s) array header of an ``.npz``, the
    PNG/JPEG headers of a ``.zip`` (with the checks of those headers: side, mixed sizes, upload
    budget). Nothing is decoded; None when the headers do not tell (decoding then says why)."""
    source = Path(path)
    ext = source.suffix.lower()
    if ext == ".npy":
        with open(source, "rb") as handle:
            if handle.read(6) != b"\x93NUMPY":
                return None
            handle.seek(0)
            return _images_shape(npy_header(handle, source.name)[0])
    if ext not in (".npz", ".zip"):
        return None
    buf, _ = _read_upload_bytes(source, MAX_UPLOAD_BYTES)
    if ext == ".npz":
        members = {member.key: member.shape for member in npz_arrays(buf, source.name)}
        key = array if array is not None else npz_image_key(members)
        return _images_shape(members[key]) if key in members else None
    with open_zip(buf, source.name, MAX_UNCOMPRESSED_BYTES) as zf:
        images = _image_members(zf)  # the members _load_zip_upload decodes, in its order
        if len(images) < 2:
            return None
        plan = _check_headers(zf, images, source.name, MAX_IMAGE_SIDE)
    return None if plan is None else plan[:3]
