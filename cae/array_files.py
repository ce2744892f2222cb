"""Array files read safely: ``.npy``, ``.npz`` and zip archives, and IDX files (MNIST's format).

Both the built-in datasets (``cae.datasets``: the Keras MNIST cache, Fashion-MNIST's IDX files)
and uploads (``cae.uploads``) read through here, so one set of checks guards both: a header is
read and checked before any data, sizes are capped before anything is decompressed, archive
member names cannot leave the archive, and pickles are never loaded (``allow_pickle=False``).
Every problem is a ``ValueError`` naming the value received. numpy only.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zipfile
import zlib
from collections.abc import Collection
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np

from cae.text import first_bytes

MAX_ZIP_MEMBERS = 200_000
"""Largest number of entries in an archive (an uploaded .zip or .npz, the Keras MNIST cache)."""
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


def idx_header(path: Path) -> tuple[np.dtype, tuple[int, ...]]:
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
# .npy arrays and zip archives (.npz, uploads of images)


def npy_header(fp: BinaryIO, what: str) -> tuple[tuple[int, ...], np.dtype]:
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


def read_npy(fp: BinaryIO, what: str, max_bytes: int) -> np.ndarray:
    """Read one .npy stream safely: header checked first, size capped, no pickles."""
    # Peek at the header without consuming it, then let numpy read the whole thing.
    start = fp.tell() if fp.seekable() else None
    shape, dtype = npy_header(fp, what)
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


def open_zip(buf: bytes, what: str, max_uncompressed: int) -> zipfile.ZipFile:
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


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, what: str) -> bytes:
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


def read_npz(
    buf: bytes, what: str, max_uncompressed: int, keys: Collection[str] | None = None
) -> dict[str, np.ndarray]:
    """The .npy members of an .npz archive (all, or those in ``keys``), by key, in archive order
    (no pickles, sizes capped)."""
    zf = open_zip(buf, what, max_uncompressed)
    arrays: dict[str, np.ndarray] = {}
    with zf:
        for info in zf.infolist():
            if info.is_dir() or not info.filename.endswith(".npy"):
                continue
            key = info.filename[: -len(".npy")]
            if keys is not None and key not in keys:
                continue
            data = read_member(zf, info, what)
            arrays[key] = read_npy(io.BytesIO(data), f"{what}[{key!r}]", max_uncompressed)
    return arrays
