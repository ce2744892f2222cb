"""AppTests of a variational run: the Architecture toggle, the Latent Editor painting its mean
code within the fitted spread of its training means and sampling the mixture fitted to them,
Inspect showing both code maps."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cae.spec import ArchitectureSpec, Variational, preset
from tests.runs import make_trained_run
from tests.test_page_architecture import table_rows
from ui.state import SPEC_KEY

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")


def widget(collection, prefix):
    matches = [item for item in collection if item.key and item.key.startswith(prefix)]
    assert matches, f"no widget with a key starting {prefix!r}"
    return matches[0]


def test_architecture_toggle_makes_the_design_variational():
    app = AppTest.from_file(str(REPO / "pages" / "1_Architecture.py"), default_timeout=60).run()
    assert not app.exception
    assert widget(app.toggle, "arch_variational").value is False
    widget(app.toggle, "arch_variational").set_value(True).run()
    widget(app.number_input, "arch_beta").set_value(2.5).run()
    widget(app.number_input, "arch_warmup").set_value(3).run()
    assert not app.exception, app.exception
    spec = ArchitectureSpec.from_dict(app.session_state[SPEC_KEY])
    assert spec.variational == Variational(beta=2.5, warmup_epochs=3)
    rows = table_rows(app)  # the design table, as it reads
    heads = [row for row in rows if row["layer"].startswith("encoder[4]")]
    assert [(row["layer"], row["output"], row["params"]) for row in heads] == [
        ("encoder[4] mean", "7x7x1", 73),
        ("encoder[4] log-var", "7x7x1", 73),
    ]
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Parameters"] == "2,763" and metrics["Latent code"] == "7x7x1"
    # the layer list's line names both maps (it showed the log-var map alone)
    (line,) = [m.value for m in app.markdown if m.value.startswith("`encoder[4]`")]
    assert line == "`encoder[4]` Conv 1 3x3 same linear → **7x7x1** each, mean and log-var maps"
    widget(app.toggle, "arch_variational").set_value(False).run()
    assert "variational" not in app.session_state[SPEC_KEY]


@pytest.fixture(scope="module")
def vae_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vae-models")
    spec = dataclasses.replace(preset("classic"), variational=Variational(beta=1.0))
    make_trained_run(root, epochs=2, limit=512, spec=spec, name="vae test")
    return root


@pytest.fixture
def editor(vae_root, monkeypatch) -> AppTest:
    monkeypatch.setenv("CAE_MODELS_DIR", str(vae_root))
    at = AppTest.from_file(APP, default_timeout=120).run()
    return at.switch_page("pages/4_Latent_Editor.py").run()


def fitted_density(root: Path):
    """The density the Latent Editor draws from for the one run in ``root``, fitted anew (the
    fit is seeded: the same as the page's)."""
    from cae.sampling import fit_run_density
    from cae.store import list_runs, load_run, run_test_split

    (info,) = list_runs(root)
    loaded = load_run(info.run_id, root)
    return fit_run_density(loaded, test_images=run_test_split(info.run_id, root).pixels)


@pytest.mark.slow
def test_latent_editor_paints_means_in_their_fitted_range_and_samples_the_mixture(editor, vae_root):
    app = editor
    assert not app.exception, app.exception
    assert any("A variational run" in caption.value for caption in app.caption)
    density = fitted_density(vae_root)
    assert (density.kind, density.count) == ("gmm", 512)  # the run's 512 training codes
    slider = app.slider(key="le_set_0")
    lows, highs = density.brush_ranges()
    # the spread of the means it learned, not +-3 sigma of N(0, 1) (issue 28)
    assert (slider.min, slider.max) == pytest.approx((lows[0], highs[0]))
    assert (slider.min, slider.max) != (-3.0, 3.0)
    state = app.session_state["le_editor"]
    assert np.asarray(state["code"]).shape == (7, 7, 1)

    app.radio(key="le_source").set_value("Random sample").run()
    assert not app.exception, app.exception
    captions = " ".join(caption.value for caption in app.caption)
    assert "10-component Gaussian mixture (full covariances) fitted to 512 training codes" in (
        captions
    )
    drawn = np.asarray(app.session_state["le_editor"]["source"], np.float32)
    assert np.allclose(drawn, density.sample(1, np.random.default_rng(0))[0], atol=1e-5)
    app.button(key="le_sample_again").click().run()
    again = np.asarray(app.session_state["le_editor"]["source"], np.float32)
    assert np.allclose(again, density.sample(1, np.random.default_rng(1))[0], atol=1e-5)

    # painting a value by number decodes a new image, as for a plain run
    before = app.session_state["le_decoded_mean"]
    app.number_input(key="le_cell_row").set_value(3)
    app.number_input(key="le_cell_col").set_value(3)
    app.number_input(key="le_cell_value").set_value(3.0)
    app.button(key="le_cell_set").click().run()
    assert not app.exception, app.exception
    assert np.asarray(app.session_state["le_editor"]["code"])[3, 3, 0] == pytest.approx(3.0)
    assert app.session_state["le_decoded_mean"] != pytest.approx(before, abs=1e-7)


def test_inspect_shows_the_mean_and_the_log_variance(vae_root, monkeypatch):
    monkeypatch.setenv("CAE_MODELS_DIR", str(vae_root))
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/5_Inspect.py").run()
    assert not at.exception, [item.value for item in at.exception]
    markdown = [m.value for m in at.markdown]
    assert any(text.startswith("**encoder[4] mean**") for text in markdown)
    assert any(text.startswith("**encoder[4] log-var**") for text in markdown)
    captions = [c.value for c in at.caption]
    assert sum(c.startswith(("encoder_", "decoder_")) for c in captions) == 11
    assert any("PCA" in c and "mean codes" in c for c in captions)  # the map shows the means
    worked = at.session_state["inspect_worked"]
    assert abs(worked["value"] - worked["keras_value"]) < 1e-5


@pytest.mark.slow
def test_train_page_trains_a_variational_design_with_both_terms(tmp_path, monkeypatch):
    from cae.jobs import JOBS
    from cae.store import list_runs, load_history, workspace_root

    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("CAE_MODELS_DIR", str(models))
    spec = dataclasses.replace(preset("classic"), variational=Variational(beta=2.0))
    app = AppTest.from_file(APP, default_timeout=120)
    app.session_state[SPEC_KEY] = spec.to_dict()
    app.run().switch_page("pages/2_Train.py").run()
    assert not app.exception, app.exception
    assert any("variational, beta 2" in m.value for m in app.markdown)
    widget(app.number_input, "train_epochs").set_value(2)
    app.button(key="train_start").click().run()
    job = JOBS.get(app.session_state["owner_id"])
    assert job is not None and job.wait(180), "training did not finish"
    app.run()
    assert not app.exception, app.exception
    progress = job.snapshot()
    assert len(progress.history["kl_loss"]) == 2  # the live curves' data
    figure = app.get("plotly_chart")
    names = " ".join(json.dumps(chart.proto.spec) for chart in figure)
    assert "reconstruction (train)" in names and "KL (train)" in names
    # the curves say how the loss adds up: the KL drawn is the term before its weight
    assert any(
        c.value.startswith("loss = reconstruction + weight x KL, the weight beta = 2;")
        for c in app.caption
    ), [c.value for c in app.caption]
    mine = workspace_root(app.session_state["owner_id"])  # saved in this browser's workspace
    runs = list_runs(mine)
    assert len(runs) == 1 and runs[0].ok and runs[0].params == 2763
    history = load_history(runs[0].run_id, root=mine)
    assert {"recon_loss", "kl_loss", "val_recon_loss", "val_kl_loss"} <= set(history)
