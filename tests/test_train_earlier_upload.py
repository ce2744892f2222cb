"""The Train page keeps an uploaded file across page switches: Streamlit's file picker empties when
the user leaves the page, and a student who went to fix the design should not upload again."""

import io
import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cae.jobs import JOBS
from cae.recipe import DataRecipe
from cae.store import list_runs, workspace_root
from tests.test_page_train_results import TRAIN, open_page, widget


def two_array_npz() -> bytes:
    """An .npz of two image arrays: 'x' (the default rule's pick) and 'digits' (the user's)."""
    rng = np.random.default_rng(5)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        x=(rng.random((150, 28, 28)) * 255).astype(np.uint8),
        digits=(rng.random((120, 28, 28)) * 255).astype(np.uint8),
    )
    return buffer.getvalue()


def captions(app: AppTest) -> str:
    return "\n".join(str(item.value) for item in app.caption)


@pytest.mark.slow
def test_an_upload_stays_chosen_after_a_page_switch_with_its_array_and_trains(models):
    app = open_page(TRAIN, timeout=180)
    app.selectbox(key="train_dataset").set_value("upload").run()
    app.file_uploader(key="train_upload").upload("two arrays.npz", two_array_npz()).run()
    array = widget(app.selectbox, "train_npz_array_")
    array.set_value("digits").run()
    assert not app.exception
    assert "uploaded earlier" not in captions(app)

    app.switch_page("pages/1_Architecture.py").run()  # the picker is emptied by the switch
    app.switch_page(TRAIN).run()
    assert not app.exception
    assert not app.file_uploader(key="train_upload").value
    shown = captions(app)
    assert "Using **two arrays.npz**, uploaded earlier" in shown
    assert "108 train / 12 test" in shown  # the 120 images of 'digits', not the 150 of 'x'
    assert widget(app.selectbox, "train_npz_array_").value == "digits"
    assert app.button(key="train_start").disabled is False

    widget(app.number_input, "train_epochs").set_value(1)
    app.button(key="train_start").click().run()
    assert not app.exception
    job = JOBS.get(app.session_state["owner_id"])
    assert job is not None and job.wait(180), "training did not finish"
    app.run()
    assert job.run_id is not None, job.snapshot().message
    (run,) = list_runs(workspace_root(app.session_state["owner_id"]))
    recipe = DataRecipe.from_dict(json.loads((run.path / "train.json").read_text())["data"])
    assert recipe.upload_name == "two arrays.npz" and recipe.upload_array == "digits"


def test_a_deleted_earlier_upload_is_not_offered(models):
    app = open_page(TRAIN, timeout=180)
    app.selectbox(key="train_dataset").set_value("upload").run()
    app.file_uploader(key="train_upload").upload("two arrays.npz", two_array_npz()).run()
    app.switch_page("pages/1_Architecture.py").run()
    for saved in (workspace_root(app.session_state["owner_id"]) / ".uploads").iterdir():
        saved.unlink()
    app.switch_page(TRAIN).run()
    assert not app.exception
    assert "uploaded earlier" not in captions(app)
    assert app.button(key="train_start").disabled  # nothing to train on until a file is chosen


def test_an_upload_shows_thumbnails_of_the_first_images_it_read(models):
    """Issue 28: an upload said its size and shape only; a student saw what it held after
    training. A row of its first images (its test split's) now comes with the caption."""
    app = open_page(TRAIN, timeout=180)
    app.selectbox(key="train_dataset").set_value("upload").run()
    app.file_uploader(key="train_upload").upload("two arrays.npz", two_array_npz()).run()
    assert not app.exception
    (image,) = app.get("image")
    (caption,) = image.captions
    assert "first 6 images read from the file" in caption
