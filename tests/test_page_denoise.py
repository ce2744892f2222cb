"""AppTests of denoising: the Train page's corruption choice and preview, and Results' noisy,
denoised and clean images and corrupted-input scores for a denoising run beside a plain one."""

from __future__ import annotations

import pytest

from cae.jobs import JOBS
from tests.test_page_train_results import TRAIN, open_page, widget


@pytest.fixture
def models(tmp_path, monkeypatch):
    monkeypatch.setenv("CAE_MODELS_DIR", str(tmp_path))
    return tmp_path


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
    assert len(app.get("plotly_chart")) >= 1  # the clean/corrupted preview
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
