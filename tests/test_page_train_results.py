"""AppTests of the Train and Results pages: a short real training, saved, then compared."""

import json
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cae.builder import build
from cae.jobs import JOBS
from cae.progress import Progress
from cae.recipe import DataRecipe, TestSplit, load_recipe
from cae.request import TrainRequest
from cae.spec import preset
from cae.store import list_runs, new_workspace_id, save_run, workspace_root
from cae.training import TrainConfig
from ui.state import OWNER_KEY

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
TRAIN = "pages/2_Train.py"
RESULTS = "pages/3_Results.py"
WORKSPACE = "0" * 32  # every page here opens in this browser's workspace: a fresh one per test


@pytest.fixture
def models(models):
    """The runs folder of this file's sessions: their workspace's, where they save and delete
    (conftest's ``models`` above it is the gallery, empty here)."""
    global WORKSPACE
    WORKSPACE = new_workspace_id()  # a job or experiment of the test before is not its
    folder = workspace_root(WORKSPACE)
    folder.mkdir(parents=True)
    return folder


def open_page(page, state=None, timeout=120):
    """The page as the app serves it (through app.py's navigation, so page links resolve), in
    the browser whose workspace is WORKSPACE."""
    app = AppTest.from_file(APP, default_timeout=timeout)
    for key, value in {OWNER_KEY: WORKSPACE, **(state or {})}.items():
        app.session_state[key] = value
    return app.run().switch_page(page).run()


def widget(collection, prefix):
    matches = [item for item in collection if item.key and item.key.startswith(prefix)]
    assert matches, f"no widget with a key starting {prefix!r}"
    return matches[0]


@pytest.mark.slow
def test_train_page_trains_in_the_background_and_saves(models):
    app = open_page(TRAIN)
    assert not app.exception
    assert app.button(key="train_start").disabled is False
    widget(app.number_input, "train_epochs").set_value(1)
    app.text_input(key="train_name").set_value("apptest run")
    app.button(key="train_start").click().run()
    assert not app.exception
    job = JOBS.get(app.session_state["owner_id"])
    assert job is not None
    # the page shows the running job, and keeps showing it on a fresh run of the script
    assert app.button(key="train_start").disabled
    assert job.wait(120), "training did not finish"
    app.run()
    assert not app.exception
    assert job.run_id is not None, job.snapshot().message
    assert any(job.run_id in item.value for item in app.success)
    runs = list_runs(models)
    assert [run.run_id for run in runs] == [job.run_id]
    assert runs[0].ok and runs[0].epochs == 1 and runs[0].name == "apptest run"
    assert app.session_state["active_run"] == job.run_id


@pytest.mark.slow
def test_train_page_stop_keeps_the_form_usable(models):
    app = open_page(TRAIN)
    widget(app.number_input, "train_epochs").set_value(50)
    app.button(key="train_start").click().run()
    job = JOBS.get(app.session_state["owner_id"])
    # stopped part-way through an epoch after the first (issue 28's user trial: the view mixed
    # the stopped epoch's partial loss with the whole epochs' curves)
    deadline = time.monotonic() + 240
    while not (job.snapshot().epoch >= 1 and job.snapshot().batch >= 2):
        assert time.monotonic() < deadline and not job.done, job.snapshot().status()
        time.sleep(0.05)
    job.stop()
    assert job.wait(120)
    app.run()
    assert not app.exception
    assert app.button(key="train_start").disabled is False
    assert job.run_id is None  # a stopped run is saved only when the user asks
    progress = job.snapshot()
    kept = len(progress.history["loss"])
    assert progress.state == "stopped" and kept == progress.epoch >= 1
    assert progress.loss != progress.history["loss"][-1]  # the partial epoch's running mean
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics[f"loss · epoch {kept}"] == f"{progress.history['loss'][-1]:.4f}"
    assert metrics[f"validation loss · epoch {kept}"] == f"{progress.history['val_loss'][-1]:.4f}"
    (curves,) = [c for c in app.get("plotly_chart") if "kept: epoch" in c.proto.spec]
    shapes = json.loads(curves.proto.spec)["layout"]["shapes"]
    assert [shape["x0"] for shape in shapes] == [kept]
    assert any(f"Stopped during epoch {kept + 1}" in c.value for c in app.caption)


def test_train_page_says_the_estimated_time_and_memory(models):
    """The preflight's estimates, before the click, in a line of their own beside the Train
    button (issue 28: a grey caption below the page before), and what the time is based on:
    with no run timed in this folder, the default speed; the classic design at batch 64 takes
    about 700 MB."""
    import re

    def estimate(app):
        (line,) = [m.value for m in app.markdown if "Estimated time" in m.value]
        (basis,) = [c.value for c in app.caption if "The time is based on" in c.value]
        return line.replace("**", ""), basis

    app = open_page(TRAIN)
    assert not app.exception
    line, basis = estimate(app)
    assert re.search(r"Estimated time \d+:\d\d and memory about 69\d\.\d MB", line)
    assert "based on no run timed on this machine yet" in basis
    widget(app.number_input, "train_epochs").set_value(1)
    app.select_slider(key="train_batch").set_value(512).run()
    line, basis = estimate(app)
    assert "batches of 512" in basis and "Estimated time 0:0" in line
    assert re.search(r"memory about 7\d\d\.\d MB", line)


def test_train_page_refuses_a_mismatched_design(models):
    spec = preset("classic")
    app = open_page(TRAIN, {"active_spec": spec.with_layers(decoder=spec.decoder[2:]).to_dict()})
    assert not app.exception
    assert app.error and "14x14x1" in app.error[0].value
    assert app.button(key="train_start").disabled


def test_images_of_another_shape_adapt_the_design_in_one_click(models):
    """A design for 28x28x3 images and the bundled 28x28x1 digits: the input shape alone does not
    fit (the decoder ends in 3 channels), so the button brings the design's first checked fix
    (an RGB upload on a grey design got only a link to the Architecture page)."""
    from dataclasses import replace

    spec = preset("classic")
    rgb = replace(spec, input_shape=(28, 28, 3)).with_layers(
        decoder=(*spec.decoder[:-1], replace(spec.decoder[-1], filters=3))
    )
    app = open_page(TRAIN, {"active_spec": rgb.to_dict()})
    assert not app.exception
    assert any(
        "The images are 28x28x1 but the design expects 28x28x3" in w.value for w in app.warning
    )
    button = app.button(key="train_adapt_input")
    assert button.label == (
        "Use the images' shape as the design's input and decoder[4]: set filters to 1 to give "
        "1 channel(s)"
    )
    button.click().run()
    assert not app.exception
    assert app.session_state["active_spec"] == spec.to_dict()  # the classic design again
    assert app.button(key="train_start").disabled is False


@pytest.fixture
def two_runs(models):
    recipe = DataRecipe("mnist-sample", limit=64, seed=3)
    ids = []
    for name, epochs in (("first", 1), ("second", 2)):
        built = build(preset("classic"))
        ids.append(
            save_run(
                built.autoencoder,
                preset("classic"),
                name=name,
                train_config={"data": recipe.to_dict(), "config": {"epochs": epochs}},
                history={"loss": [0.3, 0.2][:epochs], "val_loss": [0.31, 0.21][:epochs]},
                metrics={
                    "mse": 0.1,
                    "psnr": 10.0,
                    "ssim": 0.1,
                    "params": 2690,
                    "wall_seconds": 1.5,
                },
                test_split=TestSplit.of(load_recipe(recipe), recipe),
                root=models,
            )
        )
    return ids


def test_results_page_compares_two_runs_and_keeps_the_comparison_across_pages(two_runs):
    app = open_page(RESULTS)
    assert not app.exception
    app.multiselect(key="results_runs").set_value(two_runs).run()
    assert not app.exception
    table = app.dataframe[0].value
    assert list(table["run id"]) == two_runs
    assert list(table.columns)[-1] == "run id"  # the long id last: the metrics stay in view
    assert set(table["name"]) == {"first", "second"}
    assert all(value != "–" for value in table["test PSNR (dB)"])
    assert app.get("download_button")
    # "Best and worst" names its runs as the rest of the page does, the same on a rerun
    focus = app.selectbox(key="results_focus")
    assert focus.options == ["first", "second"]
    focus.set_value(two_runs[0]).run()
    assert not app.exception
    assert app.selectbox(key="results_focus").value == two_runs[0]
    assert app.selectbox(key="results_focus").options == ["first", "second"]
    (chart,) = [c for c in app.get("plotly_chart") if "Where the error is" in c.proto.spec]
    title = json.loads(chart.proto.spec)["layout"]["title"]["text"]
    assert title == "Where the error is: squared error per pixel, the mean over the test set"
    # the comparison is kept across pages
    app.switch_page("pages/5_Inspect.py").run()  # another page: Results' widgets are gone
    app.switch_page(RESULTS).run()
    assert not app.exception, [item.value for item in app.exception]
    assert app.multiselect(key="results_runs").value == two_runs


@pytest.mark.slow
def test_results_page_deletes_with_confirmation(two_runs, models):
    app = open_page(RESULTS)
    app.multiselect(key="results_runs").set_value(two_runs[:1]).run()
    assert app.button(key=f"results_delete_{two_runs[0]}").disabled
    app.checkbox(key=f"results_confirm_{two_runs[0]}").check().run()
    app.button(key=f"results_delete_{two_runs[0]}").click().run()
    assert not app.exception
    assert [run.run_id for run in list_runs(models)] == [two_runs[1]]


def test_results_page_lists_broken_runs(two_runs, models):
    (models / two_runs[0] / "spec.json").write_text("{broken")
    app = open_page(RESULTS)
    assert not app.exception
    assert any(two_runs[0] in block.value for block in app.markdown)
    app.button(key=f"results_delete_broken_{two_runs[0]}").click().run()
    assert [run.run_id for run in list_runs(models)] == [two_runs[1]]


@pytest.mark.slow
def test_results_page_says_in_one_line_when_an_old_run_has_no_test_images(two_runs, models):
    """A run saved before runs kept their test images, whose record does not say its split: the
    page says so instead of scoring it on images it may have trained on."""
    run = models / two_runs[0]
    (run / "test_images.npz").unlink()
    (run / "train.json").write_text('{"name": "old", "dataset": "mnist-sample", "seed": 7}')
    app = open_page(RESULTS)
    app.multiselect(key="results_runs").set_value(two_runs).run()
    assert not app.exception
    table = app.dataframe[0].value
    assert list(table["test PSNR (dB)"]) == ["–", table["test PSNR (dB)"][1]]
    assert table["test PSNR (dB)"][1] != "–"
    notes = [item.value for item in app.caption if "does not say which split" in item.value]
    assert len(notes) == 1 and "Received: data_seed=None" in notes[0]
    # the comparison shows the other run's test images
    assert app.get("plotly_chart") and "second's" in " ".join(c.value for c in app.caption)


class FinishedJob:
    """A finished job as the Train page reads it, its preview of 5-channel test images."""

    job_id = "five-channels"
    name = "five channels"
    run_id = result = error = save_error = None
    done = True
    stop_requested = False
    kept = False
    unsaved_epochs = 0
    staged_path = None
    config = TrainConfig(epochs=1)
    request = TrainRequest(preset("classic"), DataRecipe("mnist-sample"), config, name)

    def snapshot(self) -> Progress:
        rng = np.random.default_rng(5)
        originals = rng.random((4, 16, 16, 5)).astype(np.float32)
        return Progress(
            state="finished",
            epoch=1,
            epochs=1,
            history={"loss": [0.2], "val_loss": [0.21]},
            preview_originals=originals,
            preview_reconstructions=originals[::-1].copy(),
        )


def test_train_preview_of_five_channel_images_shows_one_channel_at_a_time(models, monkeypatch):
    monkeypatch.setattr(JOBS, "prewarm", lambda: None)
    monkeypatch.setattr(JOBS, "get", lambda owner: FinishedJob())
    app = open_page(TRAIN)
    assert not app.exception, [item.value for item in app.exception]
    picker = app.selectbox(key="train_channel")
    assert picker.options == [f"channel {k}" for k in range(5)]
    before = preview_grid(app)
    assert "original" in before and "output" in before
    picker.set_value(3).run()
    assert not app.exception, [item.value for item in app.exception]
    assert preview_grid(app) != before


def preview_grid(app: AppTest) -> str:
    """The HTML of the Train page's image grid of the job's test images (one on the page)."""
    (grid,) = [html.proto.body for html in app.get("html") if "cae-grid" in html.proto.body]
    return grid


def test_results_page_survives_an_unloadable_run_and_deletes_it(two_runs, models):
    """The newest run's weights belong to another design: Results says so in one line, lists it
    as broken once the load has failed, and deletes it from there."""
    other = preset("classic").to_dict()
    other["encoder"][0]["filters"] = 8
    from cae.spec import ArchitectureSpec

    build(ArchitectureSpec.from_dict(other)).autoencoder.save(models / two_runs[1] / "model.keras")
    app = open_page(RESULTS, {"active_run": two_runs[1]})
    assert not app.exception, [item.value for item in app.exception]
    assert any("cannot be loaded" in item.value for item in app.warning)
    app.run()
    assert not app.exception
    app.button(key=f"results_delete_broken_{two_runs[1]}").click().run()
    assert not app.exception
    assert [run.run_id for run in list_runs(models)] == [two_runs[0]]


def test_results_page_names_a_run_that_fails_to_load_by_its_id_at_once(two_runs, models):
    """Names repeat, ids do not: a run whose weights do not load is named by its id in the
    warning and, in the same script run, among the broken runs (with its name), deletable there."""
    other = preset("classic").to_dict()
    other["encoder"][0]["filters"] = 8
    from cae.spec import ArchitectureSpec

    build(ArchitectureSpec.from_dict(other)).autoencoder.save(models / two_runs[1] / "model.keras")
    app = open_page(RESULTS, {"active_run": two_runs[1]})
    assert not app.exception, [item.value for item in app.exception]
    (warning,) = [item.value for item in app.warning if "cannot be loaded" in item.value]
    assert warning.startswith(f"second (run `{two_runs[1]}`) cannot be loaded: ")
    lines = [block.value for block in app.markdown if block.value.startswith("Run `")]
    assert lines == [f"Run `{two_runs[1]}` (second) — " + lines[0].split(" — ", 1)[1]]
    assert "model.keras cannot be loaded" in lines[0]
    app.button(key=f"results_delete_broken_{two_runs[1]}").click().run()
    assert [run.run_id for run in list_runs(models)] == [two_runs[0]]


def test_two_runs_of_one_name_keep_a_loss_curve_each(models):
    recipe = DataRecipe("mnist-sample", limit=32)
    ids = [
        save_run(
            build(preset("classic")).autoencoder,
            preset("classic"),
            name="same name",
            train_config={"data": recipe.to_dict()},
            history={"loss": [0.3, 0.2]},
            metrics={"mse": 0.1},
            test_split=TestSplit.of(load_recipe(recipe), recipe),
            root=models,
        )
        for _ in range(2)
    ]
    app = open_page(RESULTS)
    app.multiselect(key="results_runs").set_value(ids).run()
    assert not app.exception, [item.value for item in app.exception]
    chart = next(c for c in app.get("plotly_chart") if "results_curves" in str(c.proto.id))
    figure = json.loads(chart.proto.spec)
    names = {trace.get("name", "") for trace in figure["data"]}
    assert sum(1 for n in names if n.startswith("same name · ")) >= 2, names


def test_a_reloaded_train_page_does_not_make_its_last_run_active_again(models, monkeypatch):
    """The finished job's run was made active once; the user then chose another run. A reload
    (a new session that gets the remembered keys back) must not switch back."""
    from ui.state import ACTIVATED_KEY, REMEMBERED_KEYS

    assert ACTIVATED_KEY in REMEMBERED_KEYS
    job = FinishedJob()
    job.run_id = "the-trained-run"
    monkeypatch.setattr(JOBS, "prewarm", lambda: None)
    monkeypatch.setattr(JOBS, "get", lambda owner: job)
    app = open_page(TRAIN, {ACTIVATED_KEY: "the-trained-run", "active_run": "chosen-later"})
    assert not app.exception, [item.value for item in app.exception]
    assert app.session_state["active_run"] == "chosen-later"
