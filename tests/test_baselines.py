"""The PCA and mean-image baselines: closed forms, the recipe's own split, the cache, saved runs."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from cae import baselines
from cae.metrics import METRIC_KEYS, SSIM_K1
from cae.recipe import DataRecipe, load_recipe
from tests.runs import settle
from tests.test_cli_train import cli

SIDE = 4  # 4x4x1 images: 16 values
SCALES = (0.3, 0.2, 0.1)  # each image: 0.5 + sum of scale_i * (+-1) * axis_i


def _axes() -> np.ndarray:
    """Three orthonormal directions in 16 values (rows of a Hadamard matrix, over 4)."""
    h2 = np.array([[1, 1], [1, -1]])
    h16 = np.kron(np.kron(h2, h2), np.kron(h2, h2))
    return h16[1:4].astype(np.float64) / 4.0  # each row: 16 entries of +-1/4, unit length


def _images(coefficients: np.ndarray) -> np.ndarray:
    rows = 0.5 + coefficients @ _axes()
    return rows.reshape(len(rows), SIDE, SIDE, 1).astype(np.float32)


def _factorial_train() -> np.ndarray:
    """Every sign pattern of the three coefficients, twice: the training covariance is then
    exactly diagonal in the three axes, with variances 0.09, 0.04 and 0.01."""
    signs = np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)] * 2)
    return _images(signs * np.array(SCALES))


TEST_COEFFICIENTS = np.array([[0.25, -0.1, 0.05], [-0.2, 0.15, -0.1], [0.1, 0.05, 0.12]])


def _expected_mse(dropped: slice) -> float:
    """The mean test MSE when the axes in ``dropped`` are left out: their squared coefficients
    over the 16 values (the axes are orthonormal, so nothing else is lost)."""
    return float(np.mean(np.sum(TEST_COEFFICIENTS[:, dropped] ** 2, axis=1) / 16.0))


@pytest.mark.parametrize("method", ["covariance", "gram", "randomized"])
def test_pca_matches_the_closed_form_on_a_known_spectrum(method):
    x_train, x_test = _factorial_train(), _images(TEST_COEFFICIENTS)
    exact = baselines.pca_scores(x_train, x_test, 3, method=method)
    assert set(exact) == set(METRIC_KEYS)
    assert exact["mse"] < 1e-12  # the data lie in the 3-D subspace: nothing is lost
    assert exact["ssim"] == pytest.approx(1.0, abs=1e-6)
    for k, dropped in ((2, slice(2, 3)), (1, slice(1, 3))):
        scores = baselines.pca_scores(x_train, x_test, k, method=method)
        expected = _expected_mse(dropped)
        assert scores["mse"] == pytest.approx(expected, rel=1e-5)
        assert scores["psnr"] == pytest.approx(10 * math.log10(1 / expected), rel=1e-5)
    # the leading axes, in order of variance (up to sign)
    _, axes = baselines.principal_axes(x_train, 3, method=method)
    overlap = np.abs(axes.T @ _axes().T)
    np.testing.assert_allclose(overlap, np.eye(3), atol=1e-6)


def test_more_components_than_values_is_an_exact_copy():
    x_train, x_test = _factorial_train(), _images(TEST_COEFFICIENTS)
    scores = baselines.pca_scores(x_train, x_test, 10_000)
    assert scores["mse"] == 0.0 and scores["psnr"] == math.inf


def test_reconstructions_are_clipped_to_the_unit_range():
    # the test image lies far along the first axis: its projection leaves [0, 1] and is clipped
    x_train = _factorial_train()
    x_test = np.clip(_images(np.array([[3.0, 0.0, 0.0]])), 0.0, 1.0)
    clipped = baselines.pca_scores(x_train, x_test, 3)
    assert clipped["mse"] == pytest.approx(0.0, abs=1e-12)  # 0.5 +- 0.75 clipped = the image


def test_mean_image_against_a_hand_computation():
    x_train = np.stack([np.full((SIDE, SIDE, 1), 0.2), np.full((SIDE, SIDE, 1), 0.6)])
    x_test = np.full((1, SIDE, SIDE, 1), 0.5)
    scores = baselines.mean_image_scores(x_train.astype(np.float32), x_test.astype(np.float32))
    # every pixel is reconstructed as 0.4 against 0.5: error 0.1 everywhere
    assert scores["mse"] == pytest.approx(0.01, rel=1e-6)
    assert scores["mae"] == pytest.approx(0.1, rel=1e-6)
    assert scores["psnr"] == pytest.approx(20.0, rel=1e-6)
    # flat images: SSIM is the luminance term alone, (2 * 0.4 * 0.5 + C1) / (0.4^2 + 0.5^2 + C1)
    c1 = SSIM_K1**2
    assert scores["ssim"] == pytest.approx((0.4 + c1) / (0.41 + c1), rel=1e-6)


def test_bad_component_counts_are_refused_in_one_line():
    for bad in (0, -3, 2.5, True, "49"):
        with pytest.raises(baselines.BaselineError, match="Received: components="):
            baselines.pca_scores(_factorial_train(), _images(TEST_COEFFICIENTS), bad)


# ------------------------------------------------------------------------------------ recipes


@pytest.fixture
def subspace_recipe(tmp_path: Path) -> DataRecipe:
    """An uploaded .npy of 200 images lying in a 3-D subspace, split by the recipe's seed."""
    rng = np.random.default_rng(5)
    coefficients = rng.uniform(-1, 1, size=(200, 3)) * np.array(SCALES)
    path = tmp_path / "subspace.npy"
    np.save(path, _images(coefficients))
    return DataRecipe.for_file(path, seed=3, test_fraction=0.2)


def test_pca_baseline_fits_the_training_split_and_scores_the_test_split(subspace_recipe, tmp_path):
    root = tmp_path / "models"
    exact = baselines.pca_baseline(subspace_recipe, 3, root=root)
    assert set(exact) == set(METRIC_KEYS) and exact["mse"] < 1e-12
    dataset = load_recipe(subspace_recipe)
    assert dataset.num_test == 40  # the recipe's own split
    for k in (1, 2):
        scores = baselines.pca_baseline(subspace_recipe, k, root=root)
        assert scores == baselines.pca_scores(dataset.x_train, dataset.x_test, k)
        # the closed form: the test energy outside the top-k axes of the training covariance
        rows_train = dataset.x_train.reshape(len(dataset.x_train), -1).astype(np.float64)
        mean = rows_train.mean(axis=0)
        _, vectors = np.linalg.eigh(np.cov(rows_train, rowvar=False))
        top = vectors[:, ::-1][:, :k]
        centred = dataset.x_test.reshape(len(dataset.x_test), -1) - mean
        residual = centred - centred @ top @ top.T
        assert scores["mse"] == pytest.approx(float(np.mean(residual**2)), rel=1e-6)
    mean_scores = baselines.mean_image_baseline(subspace_recipe, root=root)
    hand = float(np.mean((dataset.x_test - dataset.x_train.mean(axis=0)) ** 2))
    assert mean_scores["mse"] == pytest.approx(hand, rel=1e-5)


def test_the_cache_is_read_back_and_a_corrupt_file_is_rewritten(subspace_recipe, tmp_path):
    root = tmp_path / "models"
    first = baselines.pca_baseline(subspace_recipe, 2, root=root)
    path = baselines.cache_path(subspace_recipe, "pca-2", root)
    assert path.parent == root / ".baselines" and path.is_file()
    record = json.loads(path.read_text())
    assert record["metrics"] == first and record["recipe"] == subspace_recipe.to_dict()

    # a hit: what the file says is what comes back (no recomputation)
    record["metrics"] = {key: 0.5 for key in METRIC_KEYS}
    path.write_text(json.dumps(record))
    assert baselines.pca_baseline(subspace_recipe, 2, root=root) == record["metrics"]

    # corrupt, truncated, wrong keys, another recipe's: ignored, recomputed and rewritten
    for text in (
        "{not json",
        "",
        json.dumps({**record, "metrics": {"mse": 1.0}}),
        json.dumps({**record, "recipe": {**record["recipe"], "seed": 99}}),
        json.dumps([1, 2, 3]),
        "\x00\xff" * 10,
    ):
        path.write_text(text, encoding="latin-1")
        assert baselines.pca_baseline(subspace_recipe, 2, root=root) == first
        assert json.loads(path.read_text())["metrics"] == first

    # a folder where the file should be: computed anyway, nothing raised
    path.unlink()
    path.mkdir()
    assert baselines.pca_baseline(subspace_recipe, 2, root=root) == first

    # the same images under another path share the cache; another seed does not
    other = DataRecipe.for_file(
        subspace_recipe.upload_path, name="renamed.npy", seed=3, test_fraction=0.2
    )
    assert baselines.recipe_digest(other) == baselines.recipe_digest(subspace_recipe)
    reseeded = DataRecipe.for_file(subspace_recipe.upload_path, seed=4, test_fraction=0.2)
    assert baselines.recipe_digest(reseeded) != baselines.recipe_digest(subspace_recipe)


def test_a_cache_folder_that_cannot_be_written_costs_only_speed(subspace_recipe, tmp_path):
    root = tmp_path / "models"
    root.mkdir()
    (root / ".baselines").write_text("a file, not a folder")
    scores = baselines.mean_image_baseline(subspace_recipe, root=root)
    assert set(scores) == set(METRIC_KEYS)


@pytest.mark.slow
def test_run_baselines_of_a_saved_run(tmp_path):
    from tests.runs import make_trained_run

    root = tmp_path / "models"
    run_id = make_trained_run(root, epochs=1, limit=256)
    result = baselines.run_baselines(run_id, root)
    assert result.components == 49  # the classic network's 7x7x1 code
    assert result.recipe == DataRecipe("mnist-sample", limit=256, seed=0)
    assert set(result.pca) == set(result.mean_image) == set(METRIC_KEYS)
    assert result.pca["mse"] < result.mean_image["mse"]  # 49 components beat the mean image
    assert result.pca == baselines.pca_baseline(result.recipe, 49, root=root)
    assert sorted(os.listdir(root / ".baselines")) == sorted(
        [
            baselines.cache_path(result.recipe, "pca-49", root).name,
            baselines.cache_path(result.recipe, "mean", root).name,
        ]
    )
    from cae.store import list_runs

    assert [info.run_id for info in list_runs(root)] == [run_id]  # the cache is not a run
    assert json.loads(json.dumps(result.to_dict()))["components"] == 49


# ------------------------------------------------------------------------------------ CLI


def test_cli_baseline_json_and_table(subspace_recipe, tmp_path, capsys):
    root = tmp_path / "models"
    common = ("--data", subspace_recipe.upload_path, "--seed", "3", "--test-fraction", "0.2")
    status, out, err = cli(
        capsys, "baseline", *common, "--components", "2", "--root", str(root), "--json"
    )
    assert status == 0, err
    record = json.loads(out)
    assert {"mse", "psnr", "ssim"} <= set(record)
    assert {key: record[key] for key in METRIC_KEYS} == baselines.pca_baseline(
        subspace_recipe, 2, root=root
    )
    assert record["components"] == 2
    assert record["mean_image"] == baselines.mean_image_baseline(subspace_recipe, root=root)
    assert DataRecipe.from_dict(record["recipe"]) == subspace_recipe

    status, out, err = cli(capsys, "baseline", *common, "--components", "3", "--root", str(root))
    assert status == 0, err
    lines = out.strip().splitlines()
    assert lines[1].startswith("PCA, 3 components: test MSE 0.00000,") and "PSNR inf dB" not in out
    assert lines[2].startswith("mean image: test MSE ")

    # as many components as values: an exact reconstruction, whose infinite PSNR is JSON's null
    # (it printed Python's "Infinity", which JSON parsers refuse)
    status, out, err = cli(
        capsys, "baseline", *common, "--components", str(SIDE * SIDE), "--root", str(root), "--json"
    )
    assert status == 0, err
    record = json.loads(out, parse_constant=lambda name: pytest.fail(f"{name} in --json"))
    assert record["mse"] == 0 and record["psnr"] is None and record["ssim"] == pytest.approx(1)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--dataset", "mnist-sample", "--components", "0"], "Received: components=0"),
        (["--dataset", "nope", "--components", "3"], "Received: dataset='nope'"),
        (["--data", "missing.npy", "--components", "3"], "Received: data='missing.npy'"),
        (
            ["--dataset", "mnist-sample", "--components", "3", "--test-fraction", "0.9"],
            "Received: test_fraction=0.9",
        ),
        (["--dataset", "mnist-sample"], "--components"),
        (["--components", "3"], "--dataset"),
    ],
)
def test_cli_baseline_bad_input_is_one_line(args, expected, tmp_path, capsys):
    status, out, err = cli(capsys, "baseline", *args, "--root", str(tmp_path / "models"))
    assert status == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err
    assert "Traceback" not in err


# ------------------------------------------------------------------------------------ Results


def _saved_run(root: Path, recipe: DataRecipe, name: str) -> str:
    """An untrained classic network saved as a run of ``recipe`` (with its test images)."""
    from cae.builder import build
    from cae.recipe import TestSplit
    from cae.spec import preset
    from cae.store import save_run

    return save_run(
        build(preset("classic")).autoencoder,
        preset("classic"),
        name=name,
        train_config={"data": recipe.to_dict(), "config": {"epochs": 1}},
        history={"loss": [0.3]},
        metrics={"mse": 0.1, "psnr": 10.0, "ssim": 0.1, "params": 2690, "wall_seconds": 1.0},
        test_split=TestSplit.of(load_recipe(recipe), recipe),
        root=root,
    )


@pytest.mark.slow
def test_results_shows_each_runs_baselines_beside_its_metrics(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    root = tmp_path / "models"
    recipe = DataRecipe("mnist-sample", limit=300, seed=1)
    run_id = _saved_run(root, recipe, "plain")
    # a run whose uploaded file is gone: its baselines cannot be fitted, said in one line
    images = load_recipe(DataRecipe("mnist-sample", limit=60)).x_train
    upload = tmp_path / "digits.npy"
    np.save(upload, images)
    gone_id = _saved_run(root, DataRecipe.for_file(upload), "gone")
    upload.unlink()
    monkeypatch.setenv("CAE_MODELS_DIR", str(root))

    app = AppTest.from_file(
        str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=180
    )
    app.run().switch_page("pages/3_Results.py").run()
    settle(app.multiselect(key="results_runs").set_value([run_id, gone_id]).run())
    assert not app.exception
    tables = [frame.value for frame in app.dataframe]
    table = next(frame for frame in tables if "baseline" in frame.columns)
    assert list(table["baseline"]) == ["PCA, 49 components", "mean image"]
    assert list(table["run id"]) == [run_id, run_id] and list(table["run"]) == ["plain"] * 2
    pca = baselines.pca_baseline(recipe, 49, root=root)
    mean = baselines.mean_image_baseline(recipe, root=root)
    assert list(table["test PSNR (dB)"]) == [f"{pca['psnr']:.2f}", f"{mean['psnr']:.2f}"]
    assert list(table["test SSIM"]) == [f"{pca['ssim']:.4f}", f"{mean['ssim']:.4f}"]
    # the run's own PSNR (the metrics table's) minus the baseline's
    own = float(next(t for t in tables if "epochs" in t.columns)["test PSNR (dB)"][0])
    gains = [float(value) for value in table["PSNR gain (dB)"]]
    assert gains[0] == pytest.approx(own - pca["psnr"], abs=0.011)
    assert gains[1] == pytest.approx(own - mean["psnr"], abs=0.011)
    captions = [caption.value for caption in app.caption]
    assert any(
        text.startswith("gone: no baselines") and "no longer here" in text for text in captions
    ), captions
