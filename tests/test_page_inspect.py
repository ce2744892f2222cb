"""AppTest of the Inspect page through app.py, on the shipped default run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
PAGE = "pages/5_Inspect.py"
DEFAULT_RUN = "classic-mnist-sample-default"


@pytest.fixture(scope="module")
def app():
    if not (REPO / "models" / DEFAULT_RUN / "run.json").exists():
        pytest.skip(f"the shipped run models/{DEFAULT_RUN} is missing")
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page(PAGE).run()
    assert not at.exception, [item.value for item in at.exception]
    return at


def feature_caption(at: AppTest) -> str:
    """The first layer's feature-map caption."""
    return next(c.value for c in at.caption if c.value.startswith("encoder_0_"))


def test_every_tab_has_its_content(app):
    assert [tab.label for tab in app.tabs] == ["Feature maps", "Kernels", "Latent map", "Learn"]
    assert app.title[0].value == "Inspect"
    captions = [c.value for c in app.caption]
    assert sum(c.startswith(("encoder_", "decoder_")) for c in captions) == 10  # every layer
    assert "28x28x16" in feature_caption(app)
    markdown = " ".join(m.value for m in app.markdown)
    assert "3x3 kernels · 1 input x 16 output channels" in markdown  # Kernels
    assert any("PCA" in c for c in captions)  # Latent map
    subheaders = [s.value for s in app.subheader]
    assert "One convolution output, by hand" in subheaders
    assert "A pooling window" in subheaders
    assert "Up-sampling versus transposed convolution" in subheaders


def test_worked_value_equals_keras(app):
    worked = app.session_state["inspect_worked"]
    assert worked["location"] == "encoder[0]"
    assert abs(worked["value"] - worked["keras_value"]) < 1e-5
    assert worked["keras_value"] > 0  # the default pixel is where the channel responds most
    markdown = " ".join(m.value for m in app.markdown)
    assert "— the same." in markdown


def test_another_image_changes_the_feature_maps(app):
    before = feature_caption(app)
    app.number_input(key="inspect_index").set_value(7).run()
    assert not app.exception, [item.value for item in app.exception]
    after = feature_caption(app)
    assert after != before and "image #7" in after
    assert re.search(r"values \S+ … \S+", after)
    worked = app.session_state["inspect_worked"]
    assert abs(worked["value"] - worked["keras_value"]) < 1e-5


def test_latent_editor_adopts_a_code_sent_from_the_map():
    if not (REPO / "models" / DEFAULT_RUN / "run.json").exists():
        pytest.skip(f"the shipped run models/{DEFAULT_RUN} is missing")
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.session_state["active_run"] = DEFAULT_RUN
    at.session_state["le_incoming"] = {
        "code": [[[0.5]] * 7] * 7, "label": "test image #3", "run": DEFAULT_RUN, "id": 1
    }  # fmt: skip
    at.switch_page("pages/4_Latent_Editor.py").run()
    assert not at.exception, [item.value for item in at.exception]
    assert at.radio(key="le_source").value == "From the latent map"
    assert at.session_state["le_editor"]["source"] == [[[0.5]] * 7] * 7
