"""An uploaded .npz with several arrays: which one is used is said, and the user can choose it
(issue 13 item 6). The choice travels in the data recipe, so the worker, the CLI and the run's
record all read the same array."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from cae.recipe import DataRecipe, RecipeError, load_recipe
from cae.uploads import NpzArray, load_array_file, npz_arrays, npz_image_key


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _two_arrays() -> dict[str, np.ndarray]:
    """Clean digits (all 0) and noisy ones (all 255) of another count, with labels for clean."""
    return {
        "clean": np.zeros((20, 6, 6), np.uint8),
        "noisy": np.full((12, 6, 6, 1), 255, np.uint8),
        "y": np.repeat(np.arange(2), 10),
    }


def test_the_arrays_are_listed_from_their_headers_in_archive_order():
    listed = npz_arrays(_npz_bytes(**_two_arrays()), "pairs.npz")
    assert listed == (
        NpzArray("clean", (20, 6, 6), "uint8"),
        NpzArray("noisy", (12, 6, 6, 1), "uint8"),
        NpzArray("y", (20,), "int64"),
    )
    assert [a.is_images for a in listed] == [True, True, False]
    assert listed[1].describe() == "'noisy' (12x6x6x1, uint8)"


def test_listing_decompresses_nothing_past_the_headers():
    """A member whose data is corrupt after a good header still lists (its data is never read);
    loading it says it is corrupt."""
    good = _npz_bytes(x=np.arange(4 * 5 * 5, dtype=np.float32).reshape(4, 5, 5))
    src = zipfile.ZipFile(io.BytesIO(good))
    raw = src.read("x.npy")
    broken = io.BytesIO()
    with zipfile.ZipFile(broken, "w", zipfile.ZIP_STORED) as dst:
        dst.writestr("x.npy", raw[:-40])  # truncated data, intact header
    assert npz_arrays(broken.getvalue(), "cut.npz") == (NpzArray("x", (4, 5, 5), "float32"),)
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_array_file(broken.getvalue(), "cut.npz")


def test_the_default_rule_is_one_function():
    assert npz_image_key(["clean", "noisy", "y"]) == "clean"
    assert npz_image_key(["y", "pictures", "x"]) == "x"
    assert npz_image_key(["x_test", "x_train"]) == "x_train"
    assert npz_image_key(["labels", "y"]) is None


def test_a_chosen_array_is_used_with_labels_only_when_they_count_its_images():
    buf = _npz_bytes(**_two_arrays())
    first = load_array_file(buf, "pairs.npz")  # the default: the first array, with its labels
    assert first.num_train + first.num_test == 20 and first.y_train is not None
    assert float(first.x_train.max()) == 0.0
    with pytest.raises(ValueError, match="one label per image"):  # one image array: a mistake
        load_array_file(_npz_bytes(x=np.zeros((5, 4, 4)), y=np.arange(4)), "off.npz")
    chosen = load_array_file(buf, "pairs.npz", array="noisy")
    assert chosen.num_train + chosen.num_test == 12
    assert chosen.image_shape == (6, 6, 1) and int(chosen.x_train.min()) == 255  # held as uint8
    assert chosen.y_train is None  # "y" counts 20 images, not these 12


def test_x_test_alone_takes_its_own_labels():
    arrays = {
        "x_train": np.zeros((10, 4, 4), np.uint8),
        "y_train": np.arange(10) % 2,
        "x_test": np.full((8, 4, 4), 255, np.uint8),
        "y_test": np.arange(8) % 4,
    }
    ds = load_array_file(_npz_bytes(**arrays), "split.npz", array="x_test")
    assert ds.num_train + ds.num_test == 8 and int(ds.x_train.min()) == 255  # held as uint8
    assert sorted(set(ds.y_train.tolist()) | set(ds.y_test.tolist())) == [0, 1, 2, 3]


def test_a_missing_or_misplaced_array_is_refused_naming_the_choices():
    buf = _npz_bytes(**_two_arrays())
    with pytest.raises(
        ValueError, match=r"choose one of 'clean', 'noisy', 'y'\. Received: array='nope'"
    ):
        load_array_file(buf, "pairs.npz", array="nope")
    with pytest.raises(ValueError, match="images must be an array of shape"):
        load_array_file(buf, "pairs.npz", array="y")
    with pytest.raises(ValueError, match="only an .npz file holds named arrays"):
        load_array_file(b"\x93NUMPY", "one.npy", array="x")


def test_a_chosen_array_over_the_budget_is_refused_from_its_header(monkeypatch):
    monkeypatch.setenv("CAE_UPLOAD_BUDGET", str(12 * 6 * 6 - 1))  # uint8: a byte a value
    with pytest.raises(ValueError, match="CAE_UPLOAD_BUDGET"):
        load_array_file(_npz_bytes(**_two_arrays()), "pairs.npz", array="noisy")


def test_the_recipe_carries_the_choice_to_the_images(tmp_path):
    path = tmp_path / "pairs.npz"
    path.write_bytes(_npz_bytes(**_two_arrays()))
    recipe = DataRecipe.for_file(path, array="noisy")
    assert recipe.label == "upload:pairs.npz[noisy]"
    again = DataRecipe.from_dict(json.loads(json.dumps(recipe.to_dict())))
    assert again == recipe
    assert load_recipe(again).num_train + load_recipe(again).num_test == 12
    assert DataRecipe.for_file(path).upload_array is None  # older records: the default rule
    with pytest.raises(RecipeError, match="upload_array names an array of an .npz file"):
        DataRecipe.for_file(path, name="pairs.npy", array="noisy")
    with pytest.raises(RecipeError, match="only an upload recipe names a file"):
        DataRecipe(dataset="mnist-sample", upload_array="x")


@pytest.mark.slow
def test_cli_trains_on_the_chosen_array_and_records_it(tmp_path, capsys):
    from cae.__main__ import main

    digits = np.load("cae/_data/mnist_sample.npz")["x"][:120]
    path = tmp_path / "pairs.npz"
    np.savez(path, first=np.zeros((40, 5, 5), np.uint8), digits=digits)
    root = tmp_path / "runs"
    status = main(
        [
            "train", "--preset", "classic", "--data", str(path), "--array", "digits",
            "--epochs", "1", "--batch-size", "32", "--validation-split", "0",
            "--root", str(root),
        ]
    )  # fmt: skip
    assert status == 0, capsys.readouterr().err
    (run,) = root.iterdir()
    recorded = json.loads((run / "train.json").read_text())["data"]
    assert recorded["upload_array"] == "digits"
    assert json.loads((run / "train.json").read_text())["outcome"]  # it trained
    with np.load(run / "test_images.npz") as split:
        assert split["x"].shape[1:3] == (28, 28)  # the digits, not the 5x5 first array
    status = main(["train", "--preset", "classic", "--dataset", "mnist-sample", "--array", "x",
                   "--epochs", "1"])  # fmt: skip
    assert status != 0
    assert "--array chooses an array of a --data .npz file" in capsys.readouterr().err


def test_the_page_says_where_the_images_and_labels_come_from():
    from cae.uploads import npz_sources

    listed = npz_arrays(_npz_bytes(**_two_arrays()), "pairs.npz")
    assert npz_sources(listed, None, True) == "images from 'clean' (20x6x6, uint8), labels from 'y'"
    assert npz_sources(listed, "noisy", False) == "images from 'noisy' (12x6x6x1, uint8), no labels"
    one = npz_arrays(_npz_bytes(x=np.zeros((3, 4, 4))), "one.npz")
    assert npz_sources(one, None, False) == ""  # nothing to tell apart


def test_an_array_of_images_named_y_is_images_not_labels():
    """x = noisy, y = clean, the layout of a denoising pair: "y" was read as labels and the
    file refused ("labels must be a 1-D array ... Received: labels.shape=(150, 28, 28)")."""
    buf = _npz_bytes(x=np.zeros((100, 8, 8), np.uint8), y=np.full((150, 8, 8), 255, np.uint8))
    assert [array.is_images for array in npz_arrays(buf)] == [True, True]  # both are offered
    first = load_array_file(buf, "pair.npz")
    assert first.num_train + first.num_test == 100 and first.y_train is None
    chosen = load_array_file(buf, "pair.npz", array="y")
    assert chosen.num_train + chosen.num_test == 150 and chosen.y_train is None
    assert int(chosen.x_train.min()) == 255
    # 1-D labels named y are still labels
    labelled = load_array_file(
        _npz_bytes(x=np.zeros((10, 8, 8), np.uint8), y=np.arange(10) % 2), "labelled.npz"
    )
    assert labelled.y_train is not None
