"""One truth per run: a run trained with split seed 7 is scored, shown and explored on its own
test split, disjoint from the images it trained on, by every consumer (the store, the Results,
Latent Editor and Inspect pages, ``cae evaluate``). Before the change the pages rebuilt a
seed-0 split: 455 of those 500 "test" images were this run's training images."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import ui.runs
from cae.evaluation import reconstruct
from cae.latent import encode
from cae.metrics import METRICS, summarize
from cae.recipe import DataRecipe, load_recipe
from cae.store import load_run, run_test_split
from tests.runs import make_trained_run

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")


def fingerprints(images: np.ndarray) -> set[str]:
    """One hash per image (the 5,000 digits of mnist-sample are all different)."""
    return {hashlib.sha1(image.tobytes()).hexdigest() for image in images}


@pytest.fixture(scope="module")
def seed7(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("seed7")
    run_id = make_trained_run(root, epochs=1, limit=None, seed=7, name="seed seven")
    return root, run_id


@pytest.fixture
def served(seed7, monkeypatch) -> tuple[Path, str, list[str]]:
    """The seed-7 run as the pages see it, with every call of the one test-split function."""
    root, run_id = seed7
    monkeypatch.setenv("CAE_MODELS_DIR", str(root))
    calls: list[str] = []
    real = ui.runs.run_test_split

    def recorded(run: str, root: str | None = None):
        calls.append(run)
        return real(run, root=root)

    monkeypatch.setattr(ui.runs, "run_test_split", recorded)
    ui.runs.cached_test_split.clear()
    return root, run_id, calls


def open_page(page: str, run_id: str) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=120)
    app.session_state["active_run"] = run_id
    app.run().switch_page(page).run()
    assert not app.exception, [item.value for item in app.exception]
    return app


@pytest.mark.slow
def test_the_stored_test_split_is_disjoint_from_the_training_split(seed7):
    root, run_id = seed7
    recipe = DataRecipe("mnist-sample", seed=7)
    assert load_run(run_id, root).info.recipe == recipe
    data = load_recipe(recipe)
    split = run_test_split(run_id, root)
    assert split.stored and split.count == 500 and split.recipe == recipe
    assert split.pixels.dtype == data.x_test.dtype == np.uint8  # held as uint8 on both sides
    assert np.array_equal(split.pixels, data.x_test)
    assert np.array_equal(split.images, data.x_test / np.float32(255))
    assert np.array_equal(split.labels, data.y_test)
    assert not fingerprints(split.pixels) & fingerprints(data.x_train)
    # the split seed-0 pages used to rebuild is mostly this run's training data
    seed0 = load_recipe(DataRecipe("mnist-sample", seed=0)).x_test
    assert len(fingerprints(seed0) & fingerprints(data.x_train)) > 400


def test_cae_evaluate_scores_the_run_on_its_own_test_split(seed7, capsys):
    from cae.__main__ import main

    root, run_id = seed7
    assert main(["evaluate", run_id, "--root", str(root), "--json"]) == 0
    fresh = json.loads(capsys.readouterr().out)["fresh"]
    split = run_test_split(run_id, root)
    model = load_run(run_id, root).built.autoencoder
    expected = summarize(split.images, reconstruct(model, split.images))
    assert fresh == pytest.approx(expected, rel=1e-5)
    assert set(fresh) == {metric.key for metric in METRICS}


@pytest.mark.slow
def test_results_page_scores_and_shows_the_runs_own_test_split(served):
    root, run_id, calls = served
    app = open_page("pages/3_Results.py", run_id)
    assert run_id in calls
    split = run_test_split(run_id, root)
    model = load_run(run_id, root).built.autoencoder
    expected = summarize(split.images, reconstruct(model, split.images))
    row = app.dataframe[0].value.iloc[0]
    for metric in METRICS:
        assert row[f"test {metric.label}"] == metric.format(expected[metric.key])
    captions = " ".join(item.value for item in app.caption)
    assert "500 test images of mnist-sample, split seed 7, never trained on" in captions


def test_latent_editor_starts_from_the_runs_own_test_images(served):
    root, run_id, calls = served
    app = open_page("pages/4_Latent_Editor.py", run_id)
    app.radio(key="le_source").set_value("Test image").run()
    app.number_input(key="le_index").set_value(3).run()
    assert not app.exception, [item.value for item in app.exception]
    assert run_id in calls
    split = run_test_split(run_id, root)
    encoder = load_run(run_id, root).built.encoder
    source = np.asarray(app.session_state["le_editor"]["source"])
    assert source == pytest.approx(encode(encoder, split.images[3]), abs=1e-5)


def test_inspect_looks_at_the_runs_own_test_images(served):
    root, run_id, calls = served
    app = open_page("pages/5_Inspect.py", run_id)
    app.number_input(key="inspect_index").set_value(5).run()
    assert not app.exception, [item.value for item in app.exception]
    assert run_id in calls
    split = run_test_split(run_id, root)
    captions = [image.caption for item in app.get("image") for image in item.proto.imgs]
    assert f"test image #5 (a {int(split.labels[5])})" in captions


def test_no_page_reads_images_except_through_the_one_function():
    """Pages and ui/ get a run's images only from cae.store.run_test_split (via ui.runs); only
    the Train page parses an upload, to check it before training."""
    readers = re.compile(r"\b(load_dataset|load_recipe|read_test_split|x_test|cached_test_set)\b")
    for path in [*REPO.glob("pages/*.py"), *REPO.glob("ui/*.py"), REPO / "app.py"]:
        found = readers.findall(path.read_text())
        assert not found, (path.name, found)
    for path in [*REPO.glob("pages/*.py"), *REPO.glob("ui/*.py")]:
        if "load_array_file" in path.read_text():
            assert path.name == "2_Train.py"
