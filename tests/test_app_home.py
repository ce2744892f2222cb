"""The home page renders without TensorFlow and shows the active design."""

import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]


def test_home_page_shows_the_classic_design_and_says_where_to_start_in_one_line():
    """One page start for two looks at the same first run of Home (tests/test_smoke_pages.py's
    "home runs without exception" was this test's first assert, and is gone)."""
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    assert not app.exception
    assert app.title[0].value.endswith("CAE Studio")
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Design"] == "classic"
    assert metrics["Latent code"] == "7x7x1"
    assert metrics["Parameters"] == "2,690"
    texts = " ".join(block.value for block in app.markdown)
    assert "Active run: **classic (default)**" in texts  # the shipped default run
    assert "PSNR 17.7 dB" in texts
    # "How it works" names the Experiments page's Search (issue 28's user trial)
    assert "**Search** (Optuna)" in texts and "beat PCA" in texts
    # Issue 28: a new user read the whole page before knowing where to begin
    (line,) = [m.value for m in app.markdown if "Start here" in m.value]
    assert "**Train**" in line and "\n" not in line


@pytest.mark.slow
def test_home_page_does_not_import_tensorflow():
    code = (
        "import sys; from streamlit.testing.v1 import AppTest; "
        f"app = AppTest.from_file({str(REPO / 'app.py')!r}, default_timeout=60).run(); "
        "assert not app.exception, app.exception; "
        "print('tensorflow' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("False"), result.stdout


def home_caption(app) -> str:
    return " ".join(caption.value for caption in app.caption if caption.value.startswith("Dataset"))


def test_home_describes_the_dataset_chosen_from_its_own_entry():
    """Issue 13: Home said "5,000 real MNIST digits" whatever the dataset."""
    from cae.datasets import DATASETS

    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    assert "5,000 real handwritten digits" in home_caption(app)
    app.session_state["active_dataset"] = "fashion-mnist"
    app.run()
    shown = home_caption(app)
    assert "Fashion-MNIST" in shown and "Zalando" in shown and "MNIST digits" not in shown, shown
    assert DATASETS["fashion-mnist"].description.split(" (")[0] in shown
    app.session_state["active_dataset"] = "upload"
    app.session_state["active_upload_name"] = "my_images*.npz"
    app.run()
    shown = home_caption(app)
    assert "your own images" in shown and "my_images\\*.npz" in shown, shown  # escaped name


def test_the_sidebar_shows_the_design_the_page_shows():
    """Issue 13: the sidebar was drawn before the Architecture page applied an edit, so its
    parameter count lagged one edit behind."""
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    app.switch_page("pages/1_Architecture.py").run()
    next(b for b in app.button if b.key.startswith("arch_encoder_0_edit")).click().run()
    filters = next(w for w in app.number_input if w.key.startswith("arch_encoder_0_filters"))
    filters.set_value(32).run()
    assert not app.exception, app.exception
    page_params = next(m.value for m in app.main.metric if m.label == "Parameters")
    sidebar = " ".join(c.value for c in app.sidebar.caption)
    assert page_params != "2,690"
    assert f"{page_params} parameters" in sidebar, (page_params, sidebar)


@pytest.mark.slow
def test_train_names_a_run_by_design_data_and_counter_and_warns_of_a_taken_name(
    tmp_path, monkeypatch
):
    """Issue 13: three "classic-mnist-sample" runs from three clicks; the name kept the last
    data's name after the data changed; an edited design kept the preset's name."""
    from cae.spec import preset
    from tests.runs import make_trained_run

    make_trained_run(tmp_path, epochs=1, limit=128, name="classic-mnist-sample-1")
    monkeypatch.setenv("CAE_MODELS_DIR", str(tmp_path))
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    app.switch_page("pages/2_Train.py").run()
    assert not app.exception, app.exception
    name = app.text_input(key="train_name")
    assert name.value == "classic-mnist-sample-2"  # -1 is taken
    assert not app.warning or all("already exists" not in w.value for w in app.warning)

    app.selectbox(key="train_dataset").set_value("fashion-mnist").run()
    assert app.text_input(key="train_name").value == "classic-fashion-mnist-1"
    sidebar = " ".join(c.value for c in app.sidebar.caption)
    assert "Dataset **fashion-mnist**" in sidebar, sidebar  # not the one chosen before
    # an earlier suggestion still follows the data: a page run cut short by the next one (a new
    # upload reruns twice) left the field one default behind, and a run was saved under it
    app.text_input(key="train_name").set_value("classic-mnist-sample-2").run()
    assert app.text_input(key="train_name").value == "classic-fashion-mnist-1"

    app.text_input(key="train_name").set_value("classic-mnist-sample-1").run()
    warnings = " ".join(w.value for w in app.warning)
    assert "already exists" in warnings and "classic-mnist-sample-1" in warnings, warnings

    edited = preset("classic").to_dict()
    edited["encoder"][0]["filters"] = 32
    app.session_state["active_spec"] = edited
    app.text_input(key="train_name").set_value("classic-fashion-mnist-1").run()  # a default
    app.run()
    assert app.text_input(key="train_name").value == "classic-edited-fashion-mnist-1"
