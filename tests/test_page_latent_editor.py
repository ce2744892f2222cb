"""AppTest of the Latent Editor page: a small trained run, a code set by number, decoded anew."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.runs import make_trained_run

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
PAGE = "pages/4_Latent_Editor.py"


@pytest.fixture(scope="module")
def trained_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("le-models")
    make_trained_run(root)
    return root


@pytest.fixture
def app(trained_root, monkeypatch) -> AppTest:
    monkeypatch.setenv("CAE_MODELS_DIR", str(trained_root))
    at = AppTest.from_file(APP, default_timeout=120).run()
    return at.switch_page(PAGE).run()


def editor_state(app: AppTest) -> dict:
    return app.session_state["le_editor"]


@pytest.mark.slow
def test_page_opens_on_the_newest_run_with_a_test_image(app):
    assert not app.exception, app.exception
    assert app.title[0].value == "Latent Editor"
    state = editor_state(app)
    code = np.asarray(state["code"])
    assert code.shape == (7, 7, 1)
    assert np.array_equal(code, np.asarray(state["source"]))
    assert app.session_state["active_run"] == app.selectbox(key="le_run").value
    assert any("decode #" in caption.value for caption in app.caption)


def test_setting_a_cell_by_number_changes_the_code_and_the_decoded_image(app):
    before_mean = app.session_state["le_decoded_mean"]
    before = np.asarray(editor_state(app)["code"])
    app.number_input(key="le_cell_row").set_value(3)
    app.number_input(key="le_cell_col").set_value(4)
    value = float(before.max()) + 5.0
    app.number_input(key="le_cell_value").set_value(value)
    app.button(key="le_cell_set").click().run()
    assert not app.exception, app.exception
    after = np.asarray(editor_state(app)["code"])
    assert after[3, 4, 0] == pytest.approx(value)
    changed = np.argwhere(after != before)
    assert changed.tolist() == [[3, 4, 0]]
    assert app.session_state["le_decoded_mean"] != pytest.approx(before_mean, abs=1e-7)
    assert editor_state(app)["changed"] == [[3, 4]]

    app.button(key="le_undo").click().run()
    assert np.array_equal(np.asarray(editor_state(app)["code"]), before)
    assert app.session_state["le_decoded_mean"] == pytest.approx(before_mean, abs=1e-6)


def test_other_starting_points(app):
    for kind in ("Mean code", "Random sample", "Draw a digit"):
        app.radio(key="le_source").set_value(kind).run()
        assert not app.exception, (kind, app.exception)
        state = editor_state(app)
        assert np.asarray(state["code"]).shape == (7, 7, 1)
        assert np.array_equal(np.asarray(state["code"]), np.asarray(state["source"]))
    first = np.asarray(editor_state(app)["source"])
    app.radio(key="le_source").set_value("Random sample").run()
    one = np.asarray(editor_state(app)["source"])
    captions = " ".join(c.value for c in app.caption)
    # the run's 512 training codes (not its test codes), a mixture as for a variational run
    assert "10-component Gaussian mixture (full covariances) fitted to 512 training codes" in (
        captions
    )
    app.button(key="le_sample_again").click().run()
    two = np.asarray(editor_state(app)["source"])
    assert not np.array_equal(one, two)
    assert first.shape == one.shape


@pytest.mark.slow
def test_the_default_brush_value_visibly_changes_the_decoded_image(tmp_path, monkeypatch):
    """Issue 28: the brush started at the middle of the channel's range, where a plain run's
    codes mostly are, so a stroke often showed nothing. It starts at the end of the range
    farther from the channel's mean. On the shipped default run (range 0 to 6.02, mean 3.51: the
    brush starts at 0), three cells of test image 0 (where the editor opens) set to it change
    82 decoded pixels by more than a quarter of black to white; the middle (3.01) changed 2."""
    import shutil

    from cae.latent import encode, make_decoder
    from cae.store import load_run, models_dir, run_test_split

    shipped = "classic-mnist-sample-default"
    shutil.copytree(models_dir() / shipped, tmp_path / shipped)
    monkeypatch.setenv("CAE_MODELS_DIR", str(tmp_path))
    app = AppTest.from_file(APP, default_timeout=120).run().switch_page(PAGE).run()
    assert not app.exception, app.exception
    run = load_run(shipped, root=tmp_path)
    stats = run.latent_stats
    low, high, mean = (stats[key][0] for key in ("channel_min", "channel_max", "channel_mean"))
    slider = app.slider(key="le_set_0")
    # the slider spans the cells' ranges (1st to 99th percentile of each cell's training codes,
    # issue 28): from the lowest, 0, to below the one highest code
    assert slider.min == pytest.approx(low) and high - 0.6 < slider.max < high
    assert slider.value == pytest.approx(low if mean - low >= slider.max - mean else slider.max)
    assert "its own range" in slider.help
    # the cell picked under "Type the numbers" says its own range: the corner's, not the slider's
    (corner,) = [c.value for c in app.caption if c.value.startswith("Cell (0, 0): ")]
    corner_low, corner_high = (float(v) for v in re.findall(r"from (\S+) to (\S+);", corner)[0])
    assert 3.0 < corner_low < corner_high < 4.5, corner
    decoder = make_decoder(run.built.decoder)
    code = encode(run.built.encoder, run_test_split(shipped, root=tmp_path).image(0))
    assert np.allclose(code, np.asarray(editor_state(app)["code"], np.float32))

    def visible(value: float) -> int:
        painted = code.copy()
        painted[3, 2:5, 0] = value  # three cells across the middle: one short stroke
        return int((np.abs(decoder(painted) - decoder(code)) > 0.25).sum())

    assert visible(slider.value) >= 40, (slider.value, visible(slider.value))
    assert visible(slider.value) > 2 * visible((low + high) / 2)


@pytest.mark.slow
def test_the_typed_value_starts_at_each_runs_own_brush_top(tmp_path, monkeypatch):
    """The shipped runs' codes span 0-6 (classic) and about -3-16 (wide): the Value field of
    "Type the numbers" starts at the top of the picked cell's brush (the caption's range), never
    above the channel's, again after a switch of run (it kept the wide run's 16.252 on the
    classic run); a value typed stays while another cell is picked."""
    import shutil

    for run_id in ("classic-mnist-sample-default", "wide-mnist-sample"):
        shutil.copytree(REPO / "models" / run_id, tmp_path / run_id)
    monkeypatch.setenv("CAE_MODELS_DIR", str(tmp_path))
    app = AppTest.from_file(APP, default_timeout=180).run().switch_page(PAGE).run()
    tops = {}
    for run_id in ("wide-mnist-sample", "classic-mnist-sample-default"):
        app.selectbox(key="le_run").set_value(run_id).run()
        assert not app.exception, app.exception
        top = app.slider(key="le_set_0").max
        value = app.number_input(key="le_cell_value").value
        caption = next(c.value for c in app.caption if c.value.startswith("Cell (0, 0)"))
        cell_top = re.search(r"to (\S+); a typed", caption)[1]  # 3 significant digits
        assert f"{value:.3g}" == cell_top and value <= top + 1e-3, (value, caption)
        tops[run_id] = top
    assert tops["wide-mnist-sample"] > tops["classic-mnist-sample-default"] + 1
    app.number_input(key="le_cell_value").set_value(1.25).run()
    app.number_input(key="le_cell_row").set_value(3).run()
    assert app.number_input(key="le_cell_value").value == 1.25
