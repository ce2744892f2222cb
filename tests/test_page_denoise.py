"""AppTests of denoising: the Train page's corruption choice and preview, and Results' noisy,
denoised and clean images and corrupted-input scores for a denoising run beside a plain one."""

from __future__ import annotations

import pytest

from cae.corruption import Corruption
from cae.evaluation import evaluate_corrupted
from cae.jobs import JOBS
from cae.recipe import DataRecipe, TestSplit, load_recipe
from cae.request import TrainRequest
from cae.spec import preset
from cae.store import load_run, run_test_split, save_trained
from cae.training import TrainConfig, train
from tests.test_page_train_results import RESULTS, TRAIN, open_page, widget
from ui.state import COMPARE_KEY


@pytest.fixture
def models(tmp_path, monkeypatch):
    monkeypatch.setenv("CAE_MODELS_DIR", str(tmp_path))
    return tmp_path


@pytest.mark.slow
def test_train_page_chooses_a_corruption_shows_it_and_trains_a_denoiser(models):
    app = open_page(TRAIN)
    assert not app.exception
    corruption = app.selectbox(key="train_corruption")
    assert corruption.value == "none"
    assert not [s for s in app.slider if s.key.startswith("train_strength")]
    corruption.set_value("erase").run()
    assert not app.exception
    strength = app.slider(key="train_strength_erase")
    assert (strength.value, strength.min, strength.max) == (0.25, 0.01, 0.9)
    assert any("Random erasing, fraction of area 0.25" in c.value for c in app.caption)
    assert any("cae-grid" in html.proto.body for html in app.get("html"))  # the preview
    strength.set_value(0.4).run()
    assert any("fraction of area 0.4" in c.value for c in app.caption)
    widget(app.number_input, "train_epochs").set_value(1)
    app.button(key="train_start").click().run()
    assert not app.exception
    job = JOBS.get(app.session_state["owner_id"])
    assert job is not None
    config = job.request.config
    assert (config.corruption, config.strength) == ("erase", 0.4)
    assert job.wait(180), "training did not finish"
    app.run()
    assert not app.exception and job.run_id is not None, job.snapshot().message


def save_run(root, name: str, **config) -> str:
    """One epoch of the classic network on 256 digits, saved as the worker saves it."""
    request = TrainRequest(
        spec=preset("classic"),
        data=DataRecipe("mnist-sample", limit=256, seed=0),
        config=TrainConfig(epochs=1, batch_size=32, preview_count=0, **config),
        name=name,
    )
    dataset = load_recipe(request.data)
    result = train(request.spec, dataset, request.config)
    return save_trained(result, request, TestSplit.of(dataset, request.data), root=root)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple:
    """A salt-and-pepper denoiser and a plain run, trained once for the Results tests below:
    the folder, the denoiser's id and the plain run's id."""
    root = tmp_path_factory.mktemp("denoise-runs")
    denoiser = save_run(root, "sp denoiser", corruption="salt-pepper", strength=0.2)
    return root, denoiser, save_run(root, "plain run")


@pytest.fixture
def runs(two_runs, monkeypatch) -> tuple:
    """:func:`two_runs`, their folder made the app's."""
    monkeypatch.setenv("CAE_MODELS_DIR", str(two_runs[0]))
    return two_runs


@pytest.mark.slow
def test_results_shows_triplets_and_corrupted_scores_of_a_denoiser_beside_a_plain_run(runs):
    models, denoiser, plain = runs
    app = open_page(RESULTS, {COMPARE_KEY: [denoiser, plain]})
    assert not app.exception
    assert any("sp denoiser is a denoising run" in c.value for c in app.caption)
    # the picker starts at the denoiser's own corruption
    kind = app.selectbox(key="results_corruption_salt-pepper_0.2")
    assert kind.value == "salt-pepper"
    assert app.slider(key="results_strength_salt-pepper_0.2_salt-pepper").value == 0.2
    table = next(t.value for t in app.dataframe if "trained with" in t.value.columns)
    assert list(table["name"]) == ["sp denoiser", "plain run"]
    assert list(table["trained with"]) == [
        "Salt and pepper, fraction of pixels 0.2",
        "clean inputs",
    ]
    for run_id, (_, row) in zip((denoiser, plain), table.iterrows(), strict=True):
        loaded = load_run(run_id, models)
        scores = evaluate_corrupted(
            loaded.built, run_test_split(run_id, models).images, Corruption("salt-pepper", 0.2)
        )
        assert row["output PSNR (dB)"] == f"{scores['denoise_psnr']:.2f}"
        assert row["output SSIM"] == f"{scores['denoise_ssim']:.4f}"
        assert row["corrupted input PSNR (dB)"] == f"{scores['corrupted_psnr']:.2f}"
        gain = scores["denoise_psnr"] - scores["corrupted_psnr"]
        assert row["gain (dB)"] == f"{gain:+.2f}"
    # the denoiser's stored scores at the end of training are these same numbers
    stored = load_run(denoiser, models).metrics
    assert f"{stored['denoise_psnr']:.2f}" == table["output PSNR (dB)"][0]
    # corrupted / denoised / output / clean rows of the picked test images
    grid = next(
        html.proto.body for html in app.get("html") if "denoised: sp denoiser" in html.proto.body
    )
    for title in ("corrupted", "output: plain run", "clean"):
        assert f"<span>{title}</span>" in grid

    # another corruption for both: the table follows
    kind.set_value("erase").run()
    assert not app.exception
    table = next(t.value for t in app.dataframe if "trained with" in t.value.columns)
    scores = evaluate_corrupted(
        load_run(plain, models).built,
        run_test_split(plain, models).images,
        Corruption("erase", 0.25),
    )
    assert table["output PSNR (dB)"][1] == f"{scores['denoise_psnr']:.2f}"
    # on a corruption it was not trained on, the denoiser's row is its output, not "denoised"
    grid = next(
        html.proto.body for html in app.get("html") if "output: sp denoiser" in html.proto.body
    )
    assert "denoised:" not in grid


@pytest.mark.slow
def test_results_on_plain_runs_offers_gaussian_noise(runs):
    _, _, plain = runs
    app = open_page(RESULTS, {COMPARE_KEY: [plain]})
    assert not app.exception
    assert any("None of these runs was trained to denoise" in c.value for c in app.caption)
    assert app.selectbox(key="results_corruption_gaussian_0.3").value == "gaussian"
    table = next(t.value for t in app.dataframe if "trained with" in t.value.columns)
    assert list(table["trained with"]) == ["clean inputs"]
