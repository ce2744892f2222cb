"""Issue 27: the wide preset's shipped run beats PCA with the same 49 code values, and Home and
Results show the lesson (classic vs wide vs PCA) with the numbers of the shipped runs."""

import functools
import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cae.baselines import pca_baseline
from cae.evaluation import reconstruct
from cae.metrics import summarize
from cae.recipe import DataRecipe
from cae.shapes import compute_shapes
from cae.spec import preset
from cae.store import DEFAULT_RUN_ID, list_runs, load_run, models_dir, run_test_split
from ui.lesson import WIDE_RUN_ID, shipped_lesson
from ui.state import OWNER_KEY

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
RECIPE = DataRecipe("mnist-sample", seed=0)


def shipped(run_id):
    return {run.run_id: run for run in list_runs(models_dir())}[run_id]


@functools.cache
def pca_49() -> float:
    return pca_baseline(RECIPE, 49, use_cache=False)["psnr"]


def test_the_wide_run_ships_small_and_beats_pca_49_of_its_recipe():
    run = shipped(WIDE_RUN_ID)
    assert run.ok, run.broken
    assert run.spec_name == "wide" and run.recipe == RECIPE
    assert tuple(run.latent_shape) == (7, 7, 1)  # 49 values, as PCA-49 and the classic run
    assert run.params == compute_shapes(preset("wide")).total_params
    assert sum(path.stat().st_size for path in run.path.iterdir()) < 3_000_000
    pca, classic = pca_49(), shipped(DEFAULT_RUN_ID).metrics["psnr"]
    assert classic < pca < run.metrics["psnr"] - 5.0, (classic, pca, run.metrics["psnr"])


@pytest.mark.slow  # loads the model with Keras
def test_the_wide_run_loads_and_reconstructs_its_test_split_as_recorded():
    loaded = load_run(WIDE_RUN_ID, root=models_dir())
    assert loaded.spec == preset("wide")  # trained from the preset as it is now
    split = run_test_split(WIDE_RUN_ID, root=models_dir())
    assert split.stored and split.count == 500
    measured = summarize(split.images, reconstruct(loaded.built.autoencoder, split.images))
    assert np.isclose(measured["psnr"], loaded.metrics["psnr"], atol=0.05)


def test_no_lesson_without_both_shipped_runs(tmp_path):
    shutil.copytree(models_dir() / DEFAULT_RUN_ID, tmp_path / DEFAULT_RUN_ID)
    assert shipped_lesson(str(tmp_path)) is None
    shutil.copytree(models_dir() / WIDE_RUN_ID, tmp_path / WIDE_RUN_ID)
    lesson = shipped_lesson(str(tmp_path))
    assert lesson is not None and lesson.components == 49


def lesson_numbers(app) -> dict[str, str]:
    return {metric.label: metric.value for metric in app.metric if metric.value.endswith(" dB")}


def expected_numbers() -> dict[str, str]:
    classic, wide = shipped(DEFAULT_RUN_ID), shipped(WIDE_RUN_ID)
    return {
        "PCA, 49 components": f"{pca_49():.2f} dB",
        classic.name: f"{classic.metrics['psnr']:.2f} dB",
        wide.name: f"{wide.metrics['psnr']:.2f} dB",
    }


def lesson_text(app) -> str:
    return next(block.value for block in app.markdown if "PCA by" in block.value)


def test_home_shows_the_lesson_with_the_shipped_runs_numbers():
    app = AppTest.from_file(APP, default_timeout=120).run()
    assert not app.exception, app.exception
    assert lesson_numbers(app) == expected_numbers()
    text = lesson_text(app)
    behind = pca_49() - shipped(DEFAULT_RUN_ID).metrics["psnr"]
    ahead = shipped(WIDE_RUN_ID).metrics["psnr"] - pca_49()
    assert f"loses to PCA by {behind:.1f} dB" in text and f"beats it by {ahead:.1f} dB" in text
    assert text.startswith("**The tiny classic network")  # named as the page names it
    assert "5 convolutions down to the code against 3" in text  # depth, read from the specs
    assert "32-32-64-64 filters against 16-8" in text  # width
    assert "both 7x7x1" in text and "linear" in text  # the code


@pytest.mark.slow
def test_results_shows_the_lesson_beside_the_comparison():
    app = AppTest.from_file(APP, default_timeout=180)
    app.session_state[OWNER_KEY] = "1" * 32  # a workspace of its own: the gallery's runs only
    app.run().switch_page("pages/3_Results.py").run()
    assert not app.exception, app.exception
    assert lesson_numbers(app) == expected_numbers()
    assert "the wide one beats it by" in lesson_text(app)
