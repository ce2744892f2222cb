"""Tests for cae.data, cae.datasets and cae.uploads against the real files: the bundled sample,
Debian's Fashion-MNIST, uploads."""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cae import data, datasets, uploads
from cae.array_files import read_idx
from cae.data import Dataset, normalise_images
from cae.datasets import (
    DATASETS,
    DatasetUnavailable,
    dataset_status,
    list_datasets,
    load_dataset,
)
from cae.spec import MAX_CHANNELS
from cae.uploads import load_array_file

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
HAVE_DEBIAN_FASHION = (DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file()


@pytest.fixture
def empty_home(tmp_path, monkeypatch):
    """A HOME without a Keras cache (and no KERAS_HOME), so only shipped/system files count."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("KERAS_HOME", raising=False)
    return home


@pytest.fixture
def no_debian(tmp_path, monkeypatch):
    """Point the Debian Fashion-MNIST location at a folder that does not exist."""
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "not-installed")


def _row_hashes(x: np.ndarray) -> list[str]:
    flat = np.ascontiguousarray(x).reshape(len(x), -1)
    return [hashlib.sha1(row.tobytes()).hexdigest() for row in flat]


# ------------------------------------------------------------------------------------------
# Registry


def test_registry_lists_the_three_builtins():
    names = [info.name for info in list_datasets()]
    assert names == ["mnist-sample", "mnist", "fashion-mnist"]
    for info in list_datasets():
        assert DATASETS[info.name] is info
        assert info.image_shape == (28, 28, 1)
        assert info.title and info.description and info.source and info.license
        assert len(info.class_names) == 10
    assert DATASETS["fashion-mnist"].class_names[0] == "T-shirt/top"
    assert DATASETS["fashion-mnist"].class_names[-1] == "Ankle boot"
    assert DATASETS["mnist"].class_names == tuple("0123456789")


def test_unknown_dataset_name_is_rejected_with_the_value():
    with pytest.raises(ValueError, match=r"Received: name='cifar10'"):
        load_dataset("cifar10")
    with pytest.raises(ValueError, match="cifar10"):
        dataset_status("cifar10")


def test_name_aliases_are_accepted():
    assert load_dataset("MNIST_sample", limit=2).name == "mnist-sample"


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"limit": 0}, r"limit=0"),
        ({"limit": -3}, r"limit=-3"),
        ({"limit": 2.5}, r"limit=2.5"),
        ({"test_fraction": 0.0}, r"test_fraction=0.0"),
        ({"test_fraction": 1}, r"test_fraction=1"),
        ({"seed": -1}, r"seed=-1"),
    ],
)
def test_bad_load_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        load_dataset("mnist-sample", **kwargs)


def test_module_imports_no_tensorflow_streamlit_or_pil():
    code = (
        "import sys, cae.data, cae.datasets, cae.uploads, cae.array_files; "
        "bad = [m for m in ('tensorflow', 'keras', 'streamlit', 'PIL') if m in sys.modules]; "
        "print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------------
# mnist-sample


def test_bundled_sample_file_is_small_and_well_formed():
    path = datasets.MNIST_SAMPLE_PATH
    assert path.is_file()
    assert path.stat().st_size < 5 * 1024 * 1024
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["x", "y"]
        x, y = npz["x"], npz["y"]
    assert x.dtype == np.uint8 and x.shape == (5000, 28, 28)
    assert y.dtype == np.uint8 and y.shape == (5000,)
    assert np.bincount(y).tolist() == [500] * 10
    assert x.max() == 255 and x.min() == 0


def test_mnist_sample_shapes_dtype_range_and_classes():
    ds = load_dataset("mnist-sample")
    assert isinstance(ds, Dataset)
    assert ds.name == "mnist-sample"
    assert ds.x_train.shape == (4500, 28, 28, 1) and ds.x_test.shape == (500, 28, 28, 1)
    assert ds.x_train.dtype == np.uint8 and ds.x_test.dtype == np.uint8  # held as they came
    assert ds.image_shape == (28, 28, 1)
    assert (ds.num_train, ds.num_test) == (4500, 500)
    assert int(ds.x_train.min()) == 0 and int(ds.x_train.max()) == 255
    assert ds.held_bytes == 5000 * 28 * 28
    assert ds.class_names == tuple(str(d) for d in range(10))
    assert ds.num_classes == 10
    # 500 per class overall, stratified: 450 train + 50 test each.
    assert np.bincount(ds.y_train, minlength=10).tolist() == [450] * 10
    assert np.bincount(ds.y_test, minlength=10).tolist() == [50] * 10
    assert ds.y_train.dtype == np.int64


def test_mnist_sample_split_is_disjoint_and_complete():
    ds = load_dataset("mnist-sample", seed=3)
    with np.load(datasets.MNIST_SAMPLE_PATH, allow_pickle=False) as npz:
        raw = npz["x"]
    original = sorted(_row_hashes(raw))
    train = _row_hashes(ds.x_train)
    test = _row_hashes(ds.x_test)
    assert len(set(original)) == 5000  # the sample holds no duplicate images
    assert sorted(train + test) == original
    assert not set(train) & set(test)


def test_mnist_sample_is_deterministic_by_seed():
    a = load_dataset("mnist-sample", seed=7)
    b = load_dataset("mnist-sample", seed=7)
    c = load_dataset("mnist-sample", seed=8)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y_train, c.y_train)


def test_mnist_sample_test_fraction_and_limit():
    ds = load_dataset("mnist-sample", test_fraction=0.2)
    assert (ds.num_train, ds.num_test) == (4000, 1000)
    small = load_dataset("mnist-sample", limit=64, seed=1)
    assert (small.num_train, small.num_test) == (64, 64)
    assert small.y_train.shape == (64,) and small.x_train.dtype == np.uint8
    again = load_dataset("mnist-sample", limit=64, seed=1)
    np.testing.assert_array_equal(small.x_train, again.x_train)
    big = load_dataset("mnist-sample", limit=100_000)
    assert (big.num_train, big.num_test) == (4500, 500)


def test_mnist_sample_loads_fast():
    load_dataset("mnist-sample")  # warm the file cache
    start = time.perf_counter()
    load_dataset("mnist-sample")
    assert time.perf_counter() - start < 0.5


def test_mnist_sample_status():
    st = dataset_status("mnist-sample")
    assert st.available
    assert (st.num_train, st.num_test, st.image_shape) == (4500, 500, (28, 28, 1))


# ------------------------------------------------------------------------------------------
# mnist (Keras cache only: the machine is offline)


def test_mnist_without_cache_is_unavailable_and_says_what_to_do(empty_home):
    with pytest.raises(DatasetUnavailable) as info:
        load_dataset("mnist")
    msg = str(info.value)
    assert "not available offline" in msg
    assert "mnist.npz" in msg
    assert str(empty_home / ".keras" / "datasets") in msg
    assert "mnist-sample" in msg
    assert isinstance(info.value, ValueError)
    st = dataset_status("mnist")
    assert not st.available and st.downloadable
    assert st.reason == msg
    assert st.num_train is None


def test_keras_home_is_honoured(empty_home, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    assert datasets.keras_datasets_dir() == tmp_path / "kh" / "datasets"
    with pytest.raises(DatasetUnavailable, match=str(tmp_path / "kh" / "datasets")):
        load_dataset("mnist")


def _write_keras_mnist(path: Path, n_train: int = 30, n_test: int = 12) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": (np.arange(n_train) % 10).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": (np.arange(n_test) % 10).astype(np.uint8),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return arrays


def test_mnist_from_keras_cache_file(empty_home):
    arrays = _write_keras_mnist(empty_home / ".keras" / "datasets" / "mnist.npz")
    st = dataset_status("mnist")
    assert st.available and (st.num_train, st.num_test) == (30, 12)
    ds = load_dataset("mnist")
    assert ds.x_train.shape == (30, 28, 28, 1) and ds.x_test.shape == (12, 28, 28, 1)
    np.testing.assert_array_equal(ds.x_train[..., 0], arrays["x_train"])
    np.testing.assert_array_equal(ds.y_test, arrays["y_test"])
    assert ds.class_names == tuple("0123456789")
    small = load_dataset("mnist", limit=5, seed=2)
    assert (small.num_train, small.num_test) == (5, 5)


def test_mnist_corrupt_cache_file_is_reported(empty_home):
    path = empty_home / ".keras" / "datasets" / "mnist.npz"
    path.parent.mkdir(parents=True)
    path.write_text("not a zip")
    st = dataset_status("mnist")
    assert not st.available and "unreadable" in st.reason and str(path) in st.reason
    with pytest.raises(ValueError, match="not a valid zip"):
        load_dataset("mnist")


# ------------------------------------------------------------------------------------------
# fashion-mnist


@pytest.mark.skipif(not HAVE_DEBIAN_FASHION, reason="covered by the unavailable test below")
def test_fashion_mnist_full_from_debian_idx_files(empty_home):
    st = dataset_status("fashion-mnist")
    assert st.available and (st.num_train, st.num_test) == (60000, 10000)
    assert "dataset-fashion-mnist" in st.reason
    ds = load_dataset("fashion-mnist")
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    assert ds.x_train.dtype == np.uint8
    assert int(ds.x_train.min()) == 0 and int(ds.x_train.max()) == 255
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    # The official file order is kept when no limit is given (first labels: boot, top, top, dress).
    assert ds.y_train[:4].tolist() == [9, 0, 0, 3]
    assert ds.class_names[9] == "Ankle boot"
    assert "/usr/share/datasets/fashion-mnist" in ds.source


def test_fashion_mnist_limit_is_small_and_deterministic(empty_home):
    if not HAVE_DEBIAN_FASHION:
        with pytest.raises(DatasetUnavailable, match="apt-get install dataset-fashion-mnist"):
            load_dataset("fashion-mnist", limit=10)
        return
    a = load_dataset("fashion-mnist", limit=10, seed=4)
    b = load_dataset("fashion-mnist", limit=10, seed=4)
    assert (a.num_train, a.num_test) == (10, 10)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)


def test_fashion_mnist_unavailable_names_the_debian_package(empty_home, no_debian):
    with pytest.raises(DatasetUnavailable) as info:
        load_dataset("fashion-mnist")
    msg = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in msg
    assert str(empty_home / ".keras" / "datasets" / "fashion-mnist") in msg
    st = dataset_status("fashion-mnist")
    assert not st.available and st.downloadable and "apt-get install" in st.reason


def _idx_bytes(arr: np.ndarray) -> bytes:
    code = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}[arr.dtype]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.tobytes()


def _write_fashion_dir(folder: Path, n_train: int = 8, n_test: int = 4) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    parts = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for name, arr in parts.items():
        (folder / name).write_bytes(gzip.compress(_idx_bytes(arr)))


def test_fashion_mnist_prefers_the_keras_cache(empty_home):
    cache = empty_home / ".keras" / "datasets" / "fashion-mnist"
    _write_fashion_dir(cache)
    st = dataset_status("fashion-mnist")
    assert st.available and (st.num_train, st.num_test) == (8, 4)
    assert "Keras cache" in st.reason
    ds = load_dataset("fashion-mnist")
    assert (ds.num_train, ds.num_test) == (8, 4)
    assert ds.y_train.tolist() == list(range(8))


def test_fashion_mnist_bad_magic_in_cache_is_reported(empty_home, no_debian):
    cache = empty_home / ".keras" / "datasets" / "fashion-mnist"
    _write_fashion_dir(cache)
    (cache / "train-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(b"\x12\x34\x08\x03" + bytes(40))
    )
    with pytest.raises(DatasetUnavailable, match="bad magic number"):
        load_dataset("fashion-mnist")
    assert not dataset_status("fashion-mnist").available


def test_read_idx_parses_and_validates():
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(read_idx(_idx_bytes(arr)), arr)
    big_endian = np.array([1, -2, 70000], dtype=">i4")
    out = read_idx(_idx_bytes(big_endian))
    assert out.tolist() == [1, -2, 70000] and out.dtype.byteorder in "=|<"
    with pytest.raises(ValueError, match="bad magic"):
        read_idx(b"\x01\x00\x08\x01" + bytes(8))
    with pytest.raises(ValueError, match=r"Received: 23 data bytes"):
        read_idx(_idx_bytes(arr)[:-1])


# ------------------------------------------------------------------------------------------
# normalise_images


def test_normalise_images_variants():
    u8 = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    out = normalise_images(u8)
    assert out.shape == (1, 2, 2, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, :, :, 0], [[0, 1], [0.2, 0.4]], rtol=1e-6)
    unit = np.full((2, 3, 3, 3), 0.5, dtype=np.float64)
    np.testing.assert_array_equal(normalise_images(unit), unit.astype(np.float32))
    byte_range = np.full((2, 3, 3), 127.5, dtype=np.float32)
    np.testing.assert_allclose(normalise_images(byte_range), 0.5)
    ints = np.array([[[0, 255]]], dtype=np.int64)
    np.testing.assert_allclose(normalise_images(ints)[0, 0, :, 0], [0, 1])
    # The input is never modified in place.
    x = np.full((1, 2, 2), 200.0, dtype=np.float32)
    normalise_images(x)
    assert x[0, 0, 0] == 200.0


@pytest.mark.parametrize(
    ("array", "pattern"),
    [
        (np.zeros((2, 3), np.uint8), r"shape=\(2, 3\)"),
        (np.zeros((1, 2, 2, 2, 1), np.uint8), r"5-D"),
        (np.zeros((1, 2, 2, 65), np.uint8), r"1 to 64 channels.*shape=\(1, 2, 2, 65\)"),
        (np.zeros((1, 2, 2, 0), np.uint8), r"shape=\(1, 2, 2, 0\)"),
        (np.zeros((0, 2, 2), np.uint8), r"empty"),
        (np.full((1, 2, 2), -0.5, np.float32), r"min=-0.5"),
        (np.full((1, 2, 2), 300.0, np.float32), r"max=300"),
        (np.array([[[1.0, np.nan]]]), r"NaN"),
        (np.array([[[0, 256]]], dtype=np.int32), r"max=256"),
        (np.zeros((1, 2, 2), np.complex64), r"dtype=complex64"),
    ],
)
def test_normalise_images_rejects(array, pattern):
    with pytest.raises(ValueError, match=pattern):
        normalise_images(array)


# ------------------------------------------------------------------------------------------
# Uploads: helpers


def _npy_bytes(arr: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _png_bytes(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    return buf.getvalue()


def _gray(seed: int, size: tuple[int, int] = (12, 10)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)


# ------------------------------------------------------------------------------------------
# Uploads: good files


def test_upload_npy_uint8_nhw():
    x = np.random.default_rng(0).integers(0, 256, (20, 16, 12), dtype=np.uint8)
    ds = load_array_file(_npy_bytes(x), "digits.npy")
    assert ds.name == "upload:digits.npy"
    assert (ds.num_train, ds.num_test) == (18, 2)
    assert ds.image_shape == (16, 12, 1) and ds.x_train.dtype == np.uint8
    assert ds.y_train is None and ds.y_test is None and ds.class_names is None
    got = sorted(_row_hashes(np.concatenate([ds.x_train, ds.x_test])))
    assert got == sorted(_row_hashes(x[..., None]))
    again = load_array_file(_npy_bytes(x), "digits.npy")
    np.testing.assert_array_equal(ds.x_test, again.x_test)


def test_upload_npy_rgb_float_0_255_is_rescaled(tmp_path):
    x = np.random.default_rng(1).uniform(0, 255, (5, 8, 8, 3)).astype(np.float64)
    path = tmp_path / "colour.npy"
    np.save(path, x)
    ds = load_array_file(path)  # a path; the file name is taken from it
    assert ds.image_shape == (8, 8, 3) and (ds.num_train, ds.num_test) == (4, 1)
    assert ds.x_train.max() <= 1.0
    np.testing.assert_allclose(
        np.sort(np.concatenate([ds.x_train, ds.x_test]).ravel()),
        np.sort((x / 255).astype(np.float32).ravel()),
        rtol=1e-6,
    )


def test_upload_npz_float_with_labels_is_stratified():
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, (40, 6, 6)).astype(np.float32)
    y = np.repeat(np.arange(4), 10)
    ds = load_array_file(_npz_bytes(x=x, y=y), "mine.npz", test_fraction=0.2, seed=5)
    assert (ds.num_train, ds.num_test) == (32, 8)
    assert np.bincount(ds.y_test).tolist() == [2, 2, 2, 2]
    assert ds.y_train.dtype == np.int64
    assert float(ds.x_train.max()) <= 1.0 and float(ds.x_train.max()) > 0.9  # kept, not rescaled


def test_upload_npz_first_array_and_string_labels():
    x = np.random.default_rng(3).integers(0, 256, (6, 4, 4), dtype=np.uint8)
    labels = np.array(["cat", "dog", "cat", "dog", "cat", "dog"])
    ds = load_array_file(_npz_bytes(pictures=x, labels=labels), "pets.npz")
    assert ds.class_names == ("cat", "dog")
    assert ds.num_train + ds.num_test == 6
    assert set(ds.y_train.tolist()) | set(ds.y_test.tolist()) == {0, 1}


def test_upload_npz_with_keras_style_split():
    arrays = {
        "x_train": np.zeros((5, 4, 4), np.uint8),
        "y_train": np.arange(5),
        "x_test": np.full((3, 4, 4), 255, np.uint8),
        "y_test": np.arange(3),
    }
    ds = load_array_file(_npz_bytes(**arrays), "split.npz")
    assert (ds.num_train, ds.num_test) == (5, 3)
    assert int(ds.x_test.min()) == 255 and ds.y_train.tolist() == [0, 1, 2, 3, 4]


def test_upload_zip_of_pngs_with_folder_labels():
    members = {}
    for label in ("0", "3", "7"):
        for i in range(4):
            members[f"data/{label}/img{i}.png"] = _png_bytes(_gray(int(label) * 10 + i))
    members["data/README.txt"] = b"ignored"
    ds = load_array_file(_zip_bytes(members), "digits.zip", test_fraction=0.25)
    assert ds.image_shape == (12, 10, 1)
    assert ds.class_names == ("0", "3", "7")
    assert (ds.num_train, ds.num_test) == (9, 3)
    assert sorted(ds.y_test.tolist()) == [0, 1, 2]
    # Pixels survive the PNG round trip exactly.
    first = load_array_file(_zip_bytes(members), "digits.zip", test_fraction=0.25)
    np.testing.assert_array_equal(ds.x_train, first.x_train)
    assert ds.x_train.dtype == np.uint8  # 8-bit PNGs are held as uint8
    all_imgs = np.concatenate([ds.x_train, ds.x_test])
    expected = [
        _gray(int(label) * 10 + i)[..., None] for label in ("0", "3", "7") for i in range(4)
    ]
    assert sorted(_row_hashes(all_imgs)) == sorted(_row_hashes(np.stack(expected)))


def test_upload_zip_without_folders_has_no_labels():
    members = {f"img{i}.png": _png_bytes(_gray(i)) for i in range(3)}
    ds = load_array_file(_zip_bytes(members), "flat.zip")
    assert ds.y_train is None and ds.class_names is None
    assert (ds.num_train, ds.num_test) == (2, 1)


def test_upload_zip_rgb_and_jpeg():
    rng = np.random.default_rng(4)
    members = {
        f"c{i}.png": _png_bytes(rng.integers(0, 256, (8, 9, 3), dtype=np.uint8)) for i in range(3)
    }
    members["c3.jpg"] = _png_bytes(rng.integers(0, 256, (8, 9, 3), dtype=np.uint8), "JPEG")
    members["g4.png"] = _png_bytes(_gray(9, (8, 9)))  # grayscale mixed in: promoted to RGB
    ds = load_array_file(_zip_bytes(members), "colour.zip")
    assert ds.image_shape == (8, 9, 3)
    assert ds.num_train + ds.num_test == 5
    gray_only = {f"g{i}.jpeg": _png_bytes(_gray(i, (8, 9)), "JPEG") for i in range(2)}
    assert load_array_file(_zip_bytes(gray_only), "g.zip").image_shape == (8, 9, 1)


def test_upload_from_file_object():
    x = np.zeros((3, 4, 4), np.uint8)
    ds = load_array_file(io.BytesIO(_npy_bytes(x)), "f.npy")
    assert ds.num_train + ds.num_test == 3


# ------------------------------------------------------------------------------------------
# Uploads: bad files


def _bomb_zip(size: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("bomb.png", "w", force_zip64=True) as fh:
            chunk = bytes(1 << 22)
            for _ in range(size // len(chunk)):
                fh.write(chunk)
        zf.writestr("ok.png", _png_bytes(_gray(0)))
    return buf.getvalue()


def test_zip_bomb_is_rejected_before_extraction():
    payload = _bomb_zip(8 << 20)
    with pytest.raises(ValueError, match=r"zip bomb.*Received: total uncompressed size=8,38"):
        load_array_file(payload, "bomb.zip", max_uncompressed_bytes=1_000_000)


def test_zip_bomb_default_limit():
    payload = _bomb_zip(600 << 20)  # ~600 MB of zeros, a few MB compressed
    assert len(payload) < 10 << 20
    with pytest.raises(ValueError, match="limit of 536,870,912 bytes"):
        load_array_file(payload, "bomb.zip")
    with pytest.raises(ValueError, match="zip bomb"):
        load_array_file(payload, "bomb.npz")


def test_zip_member_lying_about_its_size_is_rejected():
    payload = bytearray(_zip_bytes({"a.png": bytes(100_000), "b.png": _png_bytes(_gray(1))}))
    # Shrink the declared uncompressed size of a.png in its central-directory entry.
    cd = payload.index(b"PK\x01\x02")
    struct.pack_into("<I", payload, cd + 24, 10)
    with pytest.raises(ValueError, match=r"'a\.png' is corrupt"):
        load_array_file(bytes(payload), "liar.zip")


@pytest.mark.parametrize(
    "member", ["../evil.png", "/abs/evil.png", "ok/../../evil.png", "C:/evil.png"]
)
def test_zip_unsafe_member_paths_are_rejected(member):
    payload = _zip_bytes({member: _png_bytes(_gray(0)), "b.png": _png_bytes(_gray(1))})
    with pytest.raises(ValueError, match=r"unsafe member path.*Received: member="):
        load_array_file(payload, "evil.zip")


def test_zip_mixed_image_sizes():
    payload = _zip_bytes(
        {"a.png": _png_bytes(_gray(0, (28, 28))), "b.png": _png_bytes(_gray(1, (32, 32)))}
    )
    with pytest.raises(ValueError, match=r"same size.*'b\.png' is 32x32.*'a\.png' is 28x28"):
        load_array_file(payload, "mixed.zip")


def test_zip_with_one_image():
    with pytest.raises(ValueError, match=r"at least 2.*Received: 1 image"):
        load_array_file(_zip_bytes({"only.png": _png_bytes(_gray(0))}), "one.zip")


def test_zip_with_no_images():
    with pytest.raises(ValueError, match=r"Received: 0 image"):
        load_array_file(_zip_bytes({"notes.txt": b"hello"}), "none.zip")


def test_zip_image_too_large():
    payload = _zip_bytes({"a.png": _png_bytes(_gray(0, (513, 20))), "b.png": _png_bytes(_gray(1))})
    with pytest.raises(ValueError, match=r"larger than 512x512.*Received: 513x20"):
        load_array_file(payload, "big.zip")


def test_zip_corrupt_image():
    payload = _zip_bytes({"a.png": _png_bytes(_gray(0))[:40], "b.png": _png_bytes(_gray(1))})
    with pytest.raises(ValueError, match=r"'a\.png' cannot be read"):
        load_array_file(payload, "broken.zip")


def test_truncated_zip():
    members = {f"{i}.png": _png_bytes(_gray(i)) for i in range(3)}
    payload = _zip_bytes(members)
    with pytest.raises(ValueError, match="not a valid zip archive"):
        load_array_file(payload[: len(payload) // 2], "cut.zip")


def test_truncated_npz():
    payload = _npz_bytes(x=np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8))
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_array_file(payload[: len(payload) - 100], "cut.npz")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_array_file(payload[:200], "cut.npz")


def test_truncated_npy():
    payload = _npy_bytes(np.zeros((10, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_array_file(payload[:-5], "cut.npy")


def test_pickled_object_array_is_never_loaded(tmp_path):
    obj = np.empty(3, dtype=object)
    obj[:] = [{"a": 1}, [2], "three"]
    path = tmp_path / "objects.npz"
    np.savez(path, x=obj, allow_pickle=True)
    with pytest.raises(ValueError, match=r"pickled object array.*Received: dtype=object"):
        load_array_file(path)
    with pytest.raises(ValueError, match="pickled object array"):
        load_array_file(_npy_bytes(obj, allow_pickle=True), "objects.npy")


def test_text_file_renamed_npz(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("just some text, not numpy\n")
    with pytest.raises(ValueError, match=r'not a valid \.npz.*Received: first bytes "just som"'):
        load_array_file(path)
    with pytest.raises(ValueError, match=r"not a valid \.npy"):
        load_array_file(b"hello world", "notes.npy")


def test_five_dimensional_array():
    with pytest.raises(ValueError, match=r"Received: shape=\(2, 3, 4, 5, 1\) \(5-D\)"):
        load_array_file(_npy_bytes(np.zeros((2, 3, 4, 5, 1), np.uint8)), "five.npy")


def test_too_many_channels():
    with pytest.raises(ValueError, match=r"1 to 64 channels.*shape=\(3, 4, 4, 65\)"):
        load_array_file(_npy_bytes(np.zeros((3, 4, 4, 65), np.uint8)), "many.npy")


def test_the_channel_limit_is_the_designs():
    assert data.MAX_CHANNELS == MAX_CHANNELS == 64


@pytest.mark.parametrize("channels", [2, 5, 64])
def test_uploads_with_many_channels(channels):
    """Multispectral images and feature stacks: every channel kept, split as for 1 channel."""
    rng = np.random.default_rng(channels)
    x = rng.integers(0, 256, (20, 6, 5, channels), dtype=np.uint8)
    y = np.arange(20) % 2
    ds = load_array_file(_npz_bytes(x=x, y=y), "stack.npz", test_fraction=0.2, seed=1)
    assert ds.image_shape == (6, 5, channels)
    assert (ds.num_train, ds.num_test) == (16, 4)
    assert ds.x_train.dtype == ds.x_test.dtype == np.uint8
    both = np.concatenate([ds.x_train, ds.x_test])
    assert sorted(_row_hashes(both)) == sorted(_row_hashes(x))
    plain = load_array_file(_npy_bytes(x.astype(np.float32)), "floats.npy")
    assert plain.image_shape == (6, 5, channels) and float(plain.x_train.max()) <= 1.0


def test_a_split_upload_shares_no_memory_with_its_test_part():
    """The test part is its own array (a kept test split holds only its images); the float32
    upload itself is never changed."""
    x = np.full((10, 4, 4, 3), 200.0, np.float32)
    ds = load_array_file(_npy_bytes(x), "f.npy")
    assert not np.shares_memory(ds.x_train, ds.x_test)
    assert ds.x_test.base is None
    np.testing.assert_allclose(ds.x_train, 200 / 255, rtol=1e-6)


def test_images_too_large_as_held(monkeypatch):
    """The budget counts bytes as held: 1 a value for 8-bit images, 4 for float ones."""
    monkeypatch.setattr(uploads, "MAX_HELD_BYTES", 10 * 4 * 4 * 8 - 1)
    with pytest.raises(ValueError, match=r"in memory .*more than the limit.*shape=\(10, 4, 4, 8\)"):
        load_array_file(_npy_bytes(np.zeros((10, 4, 4, 8), np.uint8)), "big.npy")
    monkeypatch.setattr(uploads, "MAX_HELD_BYTES", 10 * 4 * 4 * 8)
    assert load_array_file(_npy_bytes(np.zeros((10, 4, 4, 8), np.uint8)), "big.npy").num_test
    with pytest.raises(ValueError, match=r"more than the limit.*dtype=float32"):
        load_array_file(_npy_bytes(np.zeros((10, 4, 4, 8), np.float32)), "big.npy")
    members = {f"im{i}.png": _png_bytes(np.zeros((8, 8), np.uint8)) for i in range(3)}
    monkeypatch.setattr(uploads, "MAX_HELD_BYTES", 2 * 8 * 8)
    with pytest.raises(ValueError, match=r"in memory.*Received: 3 of 3 image headers read"):
        load_array_file(_zip_bytes(members), "flat.zip")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values(bad):
    x = np.zeros((4, 5, 5), np.float32)
    x[2, 1, 1] = bad
    with pytest.raises(ValueError, match=r"NaN or infinite.*Received: 1 non-finite"):
        load_array_file(_npz_bytes(x=x), "nan.npz")


def test_float_out_of_range():
    x = np.full((4, 5, 5), 1000.0, np.float32)
    with pytest.raises(ValueError, match=r"\[0, 1\].*\[0, 255\].*max=1000"):
        load_array_file(_npy_bytes(x), "hot.npy")


def test_empty_inputs():
    with pytest.raises(ValueError, match=r"empty.*Received: 0 bytes"):
        load_array_file(b"", "nothing.npy")
    with pytest.raises(ValueError, match=r"empty.*shape=\(0, 28, 28\)"):
        load_array_file(_npy_bytes(np.zeros((0, 28, 28), np.uint8)), "zero.npy")
    with pytest.raises(ValueError, match=r"no arrays"):
        load_array_file(_zip_bytes({}), "empty.npz")


def test_one_image_cannot_be_split():
    with pytest.raises(ValueError, match=r"at least 2 images.*Received: 1 image"):
        load_array_file(_npy_bytes(np.zeros((1, 28, 28), np.uint8)), "one.npy")


def test_npy_image_too_large():
    with pytest.raises(ValueError, match=r"larger than 512x512.*Received: 600x20"):
        load_array_file(_npy_bytes(np.zeros((2, 600, 20), np.uint8)), "wide.npy")


def test_unsupported_extension():
    with pytest.raises(ValueError, match=r"Unsupported file type.*Received: filename='pic\.gif'"):
        load_array_file(b"GIF89a....", "pic.gif")


def test_upload_over_the_byte_limit():
    with pytest.raises(ValueError, match=r"limit of 100 bytes.*Received: 928 bytes"):
        load_array_file(_npy_bytes(np.zeros((2, 20, 20), np.uint8)), "x.npy", max_bytes=100)
    assert uploads.MAX_UPLOAD_BYTES == 200 * 1024 * 1024


def test_labels_of_the_wrong_length():
    payload = _npz_bytes(x=np.zeros((4, 3, 3), np.uint8), y=np.arange(3))
    with pytest.raises(ValueError, match=r"one label per image.*labels\.shape=\(3,\), 4 images"):
        load_array_file(payload, "bad_labels.npz")


def test_npz_with_only_labels():
    with pytest.raises(ValueError, match="only labels"):
        load_array_file(_npz_bytes(y=np.arange(3)), "labels.npz")


def test_running_out_of_memory_is_one_clear_message(monkeypatch):
    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(uploads, "read_npy", no_memory)
    monkeypatch.setattr(datasets, "make_dataset", no_memory)
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="does not fit in this machine's memory.*MemoryError"):
        load_array_file(buffer.getvalue(), "tiny.npy")
    with pytest.raises(ValueError, match="the dataset 'mnist-sample' does not fit"):
        load_dataset("mnist-sample", limit=4)


def test_the_upload_budget_is_configurable_and_read_from_headers(monkeypatch):
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((10, 8, 8), np.uint8))  # 640 bytes as uint8 (2,560 as float32)
    monkeypatch.setenv("CAE_UPLOAD_BUDGET", "600")
    with pytest.raises(ValueError, match="more than the limit of 600 \\(CAE_UPLOAD_BUDGET\\)"):
        load_array_file(buffer.getvalue(), "ten.npy")
    monkeypatch.setenv("CAE_UPLOAD_BUDGET", "640")
    assert load_array_file(buffer.getvalue(), "ten.npy").num_train > 0


# ------------------------------------------------------------------------------------------
# Images held as uint8 (issue 15): 8-bit sources stay uint8, converted a batch at a time


def test_uint8_sources_are_held_as_uint8_and_convert_to_the_same_floats():
    from cae.data import hold_images
    from cae.pixels import as_float

    x = np.random.default_rng(5).integers(0, 256, (40, 6, 5, 3), dtype=np.uint8)
    ds = load_array_file(_npy_bytes(x), "u8.npy")
    assert ds.x_train.dtype == ds.x_test.dtype == np.uint8
    both = np.concatenate([ds.x_train, ds.x_test])
    assert sorted(_row_hashes(both)) == sorted(_row_hashes(x))
    assert ds.held_bytes == x.nbytes and ds.summary().dtype == "uint8"
    # every byte value k converts to exactly what normalise_images makes of it
    every = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    assert np.array_equal(as_float(every), normalise_images(every))
    assert as_float(every).dtype == np.float32
    assert np.array_equal(as_float(both), normalise_images(both))
    # float sources stay float32 (not rounded to bytes); float32 converts without a copy
    floats = load_array_file(_npy_bytes(x.astype(np.float32) / 3.3), "f.npy")
    assert floats.x_train.dtype == np.float32 and as_float(floats.x_train) is floats.x_train
    # other integers in 0..255 and booleans are held as uint8 too
    assert np.array_equal(hold_images(x.astype(np.int64)), x)
    assert hold_images(np.array([[[True, False]]])).tolist() == [[[[255], [0]]]]


def test_zip_images_are_held_as_uint8_unless_16_bit():
    gray = {f"g{i}.png": _png_bytes(_gray(i, (8, 8))) for i in range(3)}
    rgb = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    mixed = load_array_file(_zip_bytes({**gray, "rgb.png": _png_bytes(rgb)}), "mixed.zip")
    assert mixed.x_train.dtype == np.uint8 and mixed.image_shape == (8, 8, 3)
    all_images = np.concatenate([mixed.x_train, mixed.x_test])
    assert sorted(_row_hashes(all_images)) == sorted(
        _row_hashes(
            np.stack([np.repeat(_gray(i, (8, 8))[..., None], 3, -1) for i in range(3)] + [rgb])
        )
    )
    deep = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000
    wide = load_array_file(_zip_bytes({**gray, "deep.png": _png_bytes(deep)}), "deep.zip")
    assert wide.x_train.dtype == np.float32  # 16-bit values do not fit a byte
    values = np.concatenate([wide.x_train, wide.x_test])
    assert any(np.array_equal(v[..., 0], deep / np.float32(65535)) for v in values)
    assert any(np.array_equal(v[..., 0], _gray(0, (8, 8)) / np.float32(255)) for v in values)


def test_a_uint8_set_over_the_budget_as_float32_is_accepted(monkeypatch):
    """300 RGB 32x32 PNGs hold 921,600 bytes as uint8 (3.7 MB as float32): a 1 MB budget takes
    them, and refuses the same images as a float32 array."""
    rng = np.random.default_rng(2)
    pictures = rng.integers(0, 256, (300, 32, 32, 3), dtype=np.uint8)
    members = {f"c{i % 3}/im{i:03d}.png": _png_bytes(pictures[i]) for i in range(300)}
    monkeypatch.setenv("CAE_UPLOAD_BUDGET", "1000000")
    ds = load_array_file(_zip_bytes(members), "many.zip")
    assert ds.x_train.dtype == np.uint8 and ds.held_bytes == pictures.nbytes == 921_600
    assert (ds.num_train, ds.num_test) == (270, 30) and ds.class_names == ("c0", "c1", "c2")
    both = np.concatenate([ds.x_train, ds.x_test])
    assert sorted(_row_hashes(both)) == sorted(_row_hashes(pictures))
    assert load_array_file(_npy_bytes(pictures), "many.npy").held_bytes == 921_600
    with pytest.raises(ValueError, match=r"more than the limit of 1,000,000 .*dtype=float32"):
        load_array_file(_npy_bytes(pictures.astype(np.float32) / 255), "many.npy")
    monkeypatch.setenv("CAE_UPLOAD_BUDGET", "900000")
    with pytest.raises(ValueError, match=r"900,096 bytes in memory.*293 of 300 image headers read"):
        load_array_file(_zip_bytes(members), "many.zip")


def test_recipes_and_test_splits_keep_uint8(tmp_path):
    from cae.recipe import DataRecipe, TestSplit, load_recipe, read_test_split, test_split_bytes

    x = np.random.default_rng(3).integers(0, 256, (30, 4, 4, 2), dtype=np.uint8)
    path = tmp_path / "u8.npy"
    path.write_bytes(_npy_bytes(x))
    recipe = DataRecipe.for_file(path)
    data = load_recipe(recipe)
    assert data.x_train.dtype == data.x_test.dtype == np.uint8
    assert load_recipe(DataRecipe("mnist-sample", limit=8)).x_train.dtype == np.uint8
    split = TestSplit.of(data, recipe)
    stored = tmp_path / "test_images.npz"
    stored.write_bytes(test_split_bytes(split))
    back = read_test_split(stored, recipe)
    assert back.pixels.dtype == np.uint8 and np.array_equal(back.pixels, data.x_test)
    assert back.images.dtype == np.float32
    assert np.array_equal(back.images, data.x_test / np.float32(255))
    assert np.array_equal(back.image(1), data.x_test[1] / np.float32(255))
    assert np.array_equal(back.take([0, 2]), data.x_test[[0, 2]] / np.float32(255))
    # a float split of k/255 values is stored as bytes and read back as the same floats
    floats = TestSplit(back.images, None, None, recipe, stored=False)
    stored.write_bytes(test_split_bytes(floats))
    again = read_test_split(stored, recipe)
    assert again.pixels.dtype == np.uint8 and np.array_equal(again.images, back.images)


def test_an_upload_summary_keeps_no_images_and_no_frames():
    """The Train page keeps only a summary of an upload; a refusal carries no traceback chain
    (whose frames would hold the decoded images) and says what load_array_file says."""
    from cae.data import DatasetSummary
    from cae.uploads import upload_summary

    x = np.random.default_rng(4).integers(0, 256, (20, 6, 5, 3), dtype=np.uint8)
    summary = upload_summary(_npy_bytes(x), "u8.npy")
    assert isinstance(summary, DatasetSummary) and summary.name == "upload:u8.npy"
    assert (summary.num_train, summary.num_test, summary.image_shape) == (18, 2, (6, 5, 3))
    assert (summary.dtype, summary.held_bytes, summary.labelled) == ("uint8", x.nbytes, False)
    assert summary.samples.shape == (2, 6, 5, 3) and summary.samples.dtype == np.float32
    members = {f"im{i}.png": _png_bytes(_gray(i, (8, 8))) for i in range(3)}
    members["odd.png"] = _png_bytes(_gray(9, (8, 9)))
    with pytest.raises(ValueError) as direct:
        load_array_file(_zip_bytes(members), "odd.zip")
    with pytest.raises(ValueError) as refused:
        upload_summary(_zip_bytes(members), "odd.zip")
    assert str(refused.value) == str(direct.value) and "same size" in str(refused.value)
    assert refused.value.__cause__ is None and refused.value.__context__ is None


def test_zip_images_decode_straight_into_one_array_as_the_headers_say(monkeypatch):
    """When every header is read and the sizes agree, images are decoded into their rows of one
    array (no list of decoded images besides it): the same dataset as decoding them one by one."""
    rng = np.random.default_rng(6)
    members = {
        f"{'ab'[i % 2]}/im{i}.png": _png_bytes(
            rng.integers(0, 256, (9, 7, 3) if i % 3 else (9, 7), dtype=np.uint8)
        )
        for i in range(12)
    }
    calls = []
    original = uploads._decode_in_place

    def recording(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(uploads, "_decode_in_place", recording)
    direct = load_array_file(_zip_bytes(members), "mix.zip", seed=3)
    assert calls and direct.x_train.dtype == np.uint8 and direct.image_shape == (9, 7, 3)
    monkeypatch.setattr(uploads, "_decode_in_place", lambda *args, **kwargs: None)
    listed = load_array_file(_zip_bytes(members), "mix.zip", seed=3)
    for field in ("x_train", "x_test", "y_train", "y_test"):
        assert np.array_equal(getattr(direct, field), getattr(listed, field))
    assert direct.class_names == listed.class_names == ("a", "b")
