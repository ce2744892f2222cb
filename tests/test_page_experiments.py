"""AppTests of the Experiments page and the experiment queue: the plan before start (runs, the
estimate and what cannot train), a second experiment waiting in the queue and saying so, a reload
finding it again, Stop keeping what finished, and records read back after a server restart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cae.experiments import EXPERIMENTS, ExperimentQueue, experiments_root, parallel_runs
from cae.jobs import JOBS
from cae.recipe import DataRecipe
from cae.spec import preset
from cae.store import new_workspace_id, workspace_root
from cae.sweep import parse_vary
from cae.training import TrainConfig
from ui.state import COMPARE_KEY, OWNER_KEY

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
PAGE = "pages/6_Experiments.py"


WORKSPACE = "0" * 32  # every page here opens in this browser's workspace: a fresh one per test


@pytest.fixture
def models(models):
    """The runs folder of this file's sessions, their workspace's (conftest's empty ``models``
    is the gallery above it); the experiment queue is closed after the test."""
    global WORKSPACE
    WORKSPACE = new_workspace_id()  # a job or experiment of the test before is not its
    folder = workspace_root(WORKSPACE)
    folder.mkdir(parents=True)
    yield folder
    EXPERIMENTS.close(wait=120)


def in_workspace(app: AppTest) -> AppTest:
    """``app`` as a tab of the browser whose workspace is WORKSPACE (its cookie's)."""
    app.session_state[OWNER_KEY] = WORKSPACE
    return app


def open_page(state=None, timeout=120):
    app = AppTest.from_file(APP, default_timeout=timeout)
    for key, value in {OWNER_KEY: WORKSPACE, **(state or {})}.items():
        app.session_state[key] = value
    return app.run().switch_page(PAGE).run()


def texts(app) -> str:
    parts = [*app.markdown, *app.caption, *app.info, *app.warning, *app.error]
    return "\n".join(str(part.value) for part in parts)


def test_the_plan_says_how_many_runs_how_long_and_what_cannot_train(models):
    app = open_page()
    assert not app.exception
    assert app.title[0].value == "Experiments"
    assert app.button(key="experiments_start").disabled  # nothing varied yet
    app.selectbox(key="experiments_field_0").set_value("encoder.0.filters").run()
    app.text_input(key="experiments_values_0").set_value("4, 8").run()
    app.selectbox(key="experiments_field_1").set_value("code").run()
    app.text_input(key="experiments_values_1").set_value("0, 1").run()
    assert not app.exception
    shown = texts(app)
    assert "**2 run(s)**" in shown and "2 combination(s) cannot train" in shown
    assert "The estimate is based on no run timed on this machine yet" in shown
    plan = app.dataframe[-1].value  # the plan (the last table on the page)
    assert list(plan["design"]) == [
        "encoder.0.filters=4, code=0",
        "encoder.0.filters=4, code=1",
        "encoder.0.filters=8, code=0",
        "encoder.0.filters=8, code=1",
    ]
    assert "'filters' must be at least 1" in plan["can train"][0]
    assert app.button(key="experiments_start").disabled is False
    # a bad value list is named before anything starts
    app.text_input(key="experiments_values_1").set_value("1,,2").run()
    assert "an empty value between commas" in texts(app)
    assert app.button(key="experiments_start").disabled


def test_the_plan_says_when_the_design_it_starts_from_is_variational(models):
    """The line read "classic · code 7x7x1 · 2,763 parameters": nothing said the runs would be
    variational autoencoders."""
    spec = preset("classic").to_dict()
    spec["variational"] = {"beta": 2.0, "warmup_epochs": 3}
    app = open_page({"active_spec": spec})
    assert not app.exception
    assert "2,763 parameters · variational, beta 2, KL warm-up 3 epochs (change it" in texts(app)


def start_from_the_page(app: AppTest, code: str) -> str:
    """Fill the form as a user does (the bundled sample, 100 images, 1 epoch, code=``code``;
    what the form keeps from a first start is not set again), press Start; the id of the
    experiment the page then shows."""
    if app.selectbox(key="experiments_field_0").value != "code":
        assert app.selectbox(key="experiments_dataset").value == "mnist-sample"
        app.select_slider(key="experiments_limit_mnist-sample").set_value(100)
        app.number_input(key="experiments_epochs").set_value(1)
        app.selectbox(key="experiments_field_0").set_value("code").run()
    app.text_input(key="experiments_values_0").set_value(code).run()
    assert "**1 run(s)**" in texts(app)
    app.button(key="experiments_start").click().run()
    assert not app.exception, app.exception
    return app.selectbox(key="experiments_shown").value


@pytest.mark.slow  # its runs start workers: 47-63 s at a load of 15 on 2 cores
def test_two_experiments_started_in_one_session_are_both_listed(models):
    """The second Start wrote the shown experiment's key after its selection box was drawn: the
    page crashed (StreamlitWidgetAlreadyInstantiatedError) while the runs trained unseen, so the
    user pressed Start again."""
    app = open_page()
    first = start_from_the_page(app, "1")
    second = start_from_the_page(app, "2")
    assert first != second
    shown = app.selectbox(key="experiments_shown")
    assert shown.value == second  # the one just started is shown, with its progress
    assert len(shown.options) == 2 and all(o.startswith("classic · ") for o in shown.options)
    assert "Stop the experiment" in [button.label for button in app.button]
    for experiment_id, code in ((first, 1), (second, 2)):  # each as the form said
        record = EXPERIMENTS.get(experiment_id, str(models)).snapshot()
        assert record["config"]["epochs"] == 1 and record["data"]["limit"] == 100
        assert [item["label"] for item in record["items"]] == [f"code={code}"]
    # the first can be picked again, and the pick stays while its state changes
    app.selectbox(key="experiments_shown").set_value(first).run()
    assert not app.exception
    assert app.selectbox(key="experiments_shown").value == first
    EXPERIMENTS.stop(first)
    EXPERIMENTS.stop(second)
    assert EXPERIMENTS.wait(first, 120) and EXPERIMENTS.wait(second, 120)
    app.run()
    assert not app.exception
    assert app.selectbox(key="experiments_shown").value == first
    assert "stopped" in app.selectbox(key="experiments_shown").options[-1]


@pytest.mark.slow
def test_a_second_experiment_waits_in_the_queue_and_a_reload_finds_it(models, monkeypatch):
    monkeypatch.setattr(JOBS.scheduler, "_slots", 1)  # one training slot, as on 2 cores
    app = open_page()
    owner = app.session_state["owner_id"]
    recipe = DataRecipe(limit=300)
    first = EXPERIMENTS.submit(
        "someone else", "long one", preset("classic"), TrainConfig(epochs=500), recipe,
        [parse_vary("code=1")], num_train=270, root=models,
    )  # fmt: skip
    second = EXPERIMENTS.submit(
        owner, "mine", preset("classic"), TrainConfig(epochs=1), recipe,
        [parse_vary("encoder.0.filters=4,8")], num_train=270, root=models,
    )  # fmt: skip
    # a reload of this tab (a new session with the same id) shows its experiment, queued
    again = open_page({"owner_id": owner})
    assert not again.exception
    assert again.selectbox(key="experiments_shown").value == second.id
    shown = texts(again)
    assert "Waiting in the server's queue: place 1, estimated start" in shown
    assert "0 of 2 runs done" in str([p.proto.text for p in again.get("progress")])
    assert again.button(key="experiments_stop").disabled is False  # this session started it
    # the record is on disk as it is in the queue
    record = json.loads((experiments_root(models) / second.id / "experiment.json").read_text())
    assert record["state"] == "queued" and [i["state"] for i in record["items"]] == ["queued"] * 2
    # another session sees the first one's experiment read-only
    other = open_page()
    other.selectbox(key="experiments_shown").set_value(first.id).run()
    assert "only that session can stop it" in texts(other)
    # Stop: the queued one leaves the queue and nothing of it runs
    again.button(key="experiments_stop").click().run()
    assert not again.exception
    assert second.state == "stopped"
    assert [item["state"] for item in second.snapshot()["items"]] == ["not run", "not run"]
    # a new experiment started now would wait too, and the form says so
    assert "this one's runs wait in the server's queue" in texts(again)
    EXPERIMENTS.stop(first.id)
    assert EXPERIMENTS.wait(first.id, 120)
    assert first.state == "stopped"
    # the run in progress is dropped (nothing of it saved), nothing else ran
    assert first.snapshot()["items"][0]["state"] in ("dropped", "not run")
    assert not [path for path in models.iterdir() if not path.name.startswith(".")]


def test_records_survive_a_server_restart_with_the_interrupted_run_as_it_is(models):
    folder = experiments_root(models) / "20260101-000000-abcdef"
    folder.mkdir(parents=True)
    record = {
        "id": "20260101-000000-abcdef", "name": "before", "owner": "x", "created": "2026-01-01",
        "state": "running", "queued_at": 1, "root": str(models),
        "items": [
            {"index": 0, "label": "code=1", "state": "finished", "run_id": "r1"},
            {"index": 1, "label": "code=2", "state": "running", "run_id": None},
            {"index": 2, "label": "code=3", "state": "running", "run_id": None},
            {"index": 3, "label": "code=0", "state": "invalid", "run_id": None},
        ],
    }  # fmt: skip
    (folder / "experiment.json").write_text(json.dumps(record))
    # the worker of run 1 saved its 3 completed epochs when the server went away
    (models / "r2").mkdir()
    tag = {"id": record["id"], "name": "before", "index": 1}
    train = {"experiment": tag, "outcome": {"state": "stopped", "epochs_completed": 3}}
    (models / "r2" / "train.json").write_text(json.dumps(train))
    queue = ExperimentQueue()
    found = queue.all(models)
    assert [e.id for e in found] == [record["id"]]
    items = found[0].record["items"]
    assert [item["state"] for item in items] == [
        "finished",
        "interrupted",
        "interrupted",
        "invalid",
    ]
    assert items[1]["run_id"] == "r2" and "stopped at epoch 3, saved as r2" in items[1]["error"]
    assert items[2]["run_id"] is None and "no completed epoch was saved" in items[2]["error"]
    assert found[0].state == "finished"  # nothing was left to requeue
    on_disk = json.loads((folder / "experiment.json").read_text())
    assert on_disk["items"][1]["state"] == "interrupted"


@pytest.mark.slow
def test_queued_runs_are_queued_again_after_a_restart(models):
    queue = ExperimentQueue()
    experiment = queue.submit(
        "x", "requeued", preset("classic"), TrainConfig(epochs=1, preview_count=0),
        DataRecipe(limit=100), [parse_vary("code=1")], num_train=90, root=models,
    )  # fmt: skip
    queue.stop(experiment.id)  # as if the server went down before it started
    # a real restart has no job left; here the job manager is this process's, so the stopped
    # job must have ended before the "new server" queues the run again under the same owner
    # (a loaded machine let the requeue meet it still running: JobBusy, the experiment failed)
    assert queue.wait(experiment.id, 120)
    record = json.loads((experiment.folder / "experiment.json").read_text())
    record["state"] = "queued"
    record.pop("stop_requested", None)
    for item in record["items"]:
        item["state"] = "queued"
    (experiment.folder / "experiment.json").write_text(json.dumps(record))
    restarted = ExperimentQueue()  # a new server process
    (again,) = restarted.all(models)
    assert again.state == "queued" and "Queued again" in again.record["message"]
    assert restarted.wait(again.id, 300)
    assert again.state == "finished" and again.record["items"][0]["run_id"]


def test_parallel_runs_follow_the_free_cores():
    assert parallel_runs(1) == 1 and parallel_runs(2) == 1
    assert parallel_runs(4) == 2 and parallel_runs(16) == 8
    assert parallel_runs(16, busy=4) == 4
    assert parallel_runs(4, busy=3) == 1


@pytest.mark.slow
def test_the_comparison_of_a_finished_experiment(models):
    name = "<b>bold</b> [x](http://e.example)"
    experiment = EXPERIMENTS.submit(
        "someone", name, preset("classic"), TrainConfig(epochs=1, preview_count=0),
        DataRecipe(limit=120), [parse_vary("code=1,2")], num_train=108, root=models,
    )  # fmt: skip
    assert EXPERIMENTS.wait(experiment.id, 300)
    assert experiment.state == "finished", experiment.record
    run_ids = [item["run_id"] for item in experiment.record["items"]]
    assert all(run_ids)
    for run_id in run_ids:  # ordinary runs, tagged with the experiment in their record
        train = json.loads((models / run_id / "train.json").read_text())
        assert train["experiment"]["id"] == experiment.id
    app = open_page()
    assert not app.exception
    assert app.selectbox(key="experiments_shown").value == experiment.id
    assert "2 of 2 runs done · finished" in str([p.proto.text for p in app.get("progress")])
    table = app.dataframe[0].value
    assert list(table["design"]) == ["code=1", "code=2"]
    assert list(table["code size"]) == [49, 98]
    assert list(table["run"]) == run_ids
    for column in ("parameters", "compression", "train time (s)", "test PSNR (dB)", "test SSIM"):
        assert table[column].notna().all(), column
    # 108 images for 1 epoch: no run beats the mean image, and the page says so
    assert list(table["learned"]) == ["did not learn", "did not learn"]
    assert table["PSNR vs PCA (dB)"].notna().all()
    (warning,) = [w.value for w in app.warning if "No run learned" in w.value]
    assert "not above the mean image's" in warning and "train for more epochs" in warning
    chart = json.loads(app.get("plotly_chart")[0].proto.spec)
    traces = {trace.get("name"): trace for trace in chart["data"]}
    assert {"Pareto front", "runs"} <= set(traces)
    assert traces["runs"]["marker"]["symbol"] == ["x", "x"]
    assert any(name.startswith("did not learn") for name in traces)
    hover = " ".join(traces["runs"]["text"])
    assert "&lt;b&gt;bold&lt;/b&gt;" in hover and "<b>bold" not in hover  # names as plain text
    # PCA and the mean image are lines at their PSNR; the axis spans the runs' parameters
    notes = [str(a.get("text")) for a in chart["layout"]["annotations"]]
    assert [n.split(":")[0] for n in notes] == ["PCA, 49 values", "PCA, 98 values", "mean image"]
    params = list(table["parameters"])
    low, high = chart["layout"]["xaxis"]["range"]
    assert low < min(params) and max(params) < high < 2 * max(params)
    # the code-size axis puts the PCA points at the code sizes
    app.radio(key="experiments_x").set_value("code_size").run()
    chart = json.loads(app.get("plotly_chart")[0].proto.spec)
    pca = next(t for t in chart["data"] if str(t.get("name")).startswith("PCA"))
    assert pca["x"] == [49, 98]
    assert app.button(key="experiments_open").disabled  # no row ticked yet
    assert app.get("download_button")[0].proto.label == "Download the table (CSV)"
    # a click on a row (on any cell of it) opens that run on Results, the link followed there
    table_key = f"experiments_table_{experiment.id}"
    app.session_state[table_key] = {
        "selection": {"rows": [], "columns": [], "cells": [[1, "code"]]}
    }
    app.run()
    assert not app.exception
    assert app.title[0].value == "Results"
    assert app.multiselect(key="results_runs").value == [run_ids[1]]
    assert app.session_state[COMPARE_KEY] == [run_ids[1]]
    assert "run" not in app.query_params


@pytest.mark.slow
def test_more_cores_train_several_students_runs_at_once(models, monkeypatch):
    monkeypatch.setattr(JOBS.scheduler, "_slots", 4)  # a bigger machine: 4 training slots
    experiments = [
        EXPERIMENTS.submit(
            owner,
            "at once",
            preset("classic"),
            TrainConfig(epochs=1, preview_count=0),
            DataRecipe(limit=100),
            [parse_vary("encoder.0.filters=4,8")],
            num_train=90,
            root=models,
        )  # fmt: skip
        for owner in ("ann", "ben")
    ]
    seen = set()
    while any(e.active for e in experiments):
        running = [e.snapshot()["items"] for e in experiments]
        seen.add(tuple(sum(item["state"] == "running" for item in items) for items in running))
        EXPERIMENTS.wait(experiments[0].id, 0.2)
    assert (1, 1) in seen  # both students' runs trained at the same time, each in its worker
    assert not [counts for counts in seen if max(counts) > 1]  # one running job per student
    assert experiments[0].record["parallel"] == 4
    for experiment in experiments:
        assert [item["state"] for item in experiment.record["items"]] == ["finished"] * 2


@pytest.mark.slow
def test_stop_keeps_the_runs_already_finished(models):
    from cae.store import list_runs

    experiment = EXPERIMENTS.submit(
        "someone", "stop me", preset("classic"), TrainConfig(epochs=1, preview_count=0),
        DataRecipe(limit=100), [parse_vary("code=1,2,3")], num_train=90, root=models,
    )  # fmt: skip
    while experiment.active and experiment.snapshot()["items"][0]["state"] != "finished":
        EXPERIMENTS.wait(experiment.id, 0.2)
    EXPERIMENTS.stop(experiment.id)
    assert EXPERIMENTS.wait(experiment.id, 120)
    states = [item["state"] for item in experiment.record["items"]]
    assert experiment.state == "stopped"
    assert states[0] == "finished" and states[2] == "not run"
    assert states[1] in ("dropped", "not run", "finished")  # it may have ended meanwhile
    kept = {run.run_id for run in list_runs(models) if run.ok}
    assert kept == {item["run_id"] for item in experiment.record["items"] if item["run_id"]}
    assert experiment.record["message"].startswith("Stopped; the ")


def upload_bytes(count: int = 120) -> bytes:
    """A small .npy of 28x28 grayscale images, as a user would upload it."""
    import io

    import numpy as np

    rng = np.random.default_rng(3)
    images = (rng.random((count, 28, 28)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    np.save(buffer, images)
    return buffer.getvalue()


@pytest.mark.slow
def test_the_upload_chosen_on_train_is_a_choice_and_its_runs_record_it(models):
    import hashlib

    from cae.store import uploads_dir

    content = upload_bytes()
    app = in_workspace(AppTest.from_file(APP, default_timeout=180)).run()
    app.switch_page("pages/2_Train.py").run()
    app.selectbox(key="train_dataset").set_value("upload").run()
    app.file_uploader(key="train_upload").upload("my digits.npy", content).run()
    app.number_input(key="train_seed").set_value(7).run()
    assert not app.exception
    saved = uploads_dir(models) / f"{hashlib.sha256(content).hexdigest()}.npy"
    assert saved.is_file()  # written once, by content, when chosen
    app.switch_page(PAGE).run()  # the Train page's file picker is gone; its recipe is not
    assert not app.exception
    choice = app.selectbox(key="experiments_dataset")
    assert choice.value == "(train page)"  # an upload is offered first
    assert "As on the Train page: your images, my digits.npy (28x28x1, split seed 7)" in (
        choice.options
    )
    assert "MNIST sample (bundled)" in choice.options  # beside the built-in datasets
    app.number_input(key="experiments_epochs").set_value(1).run()
    app.selectbox(key="experiments_field_0").set_value("code").run()
    app.text_input(key="experiments_values_0").set_value("1").run()
    assert "**1 run(s)**" in texts(app)
    app.button(key="experiments_start").click().run()
    assert not app.exception
    experiment = EXPERIMENTS.get(app.session_state["experiments_shown"], str(models))
    recipe = DataRecipe.from_dict(experiment.record["data"])
    assert recipe.dataset == "upload" and recipe.upload_name == "my digits.npy"
    assert recipe.upload_sha256 == hashlib.sha256(content).hexdigest()
    assert Path(recipe.upload_path) == saved.resolve() and recipe.seed == 7
    assert EXPERIMENTS.wait(experiment.id, 300)
    assert experiment.state == "finished", experiment.record
    run_id = experiment.record["items"][0]["run_id"]
    train = json.loads((models / run_id / "train.json").read_text())
    assert DataRecipe.from_dict(train["data"]) == recipe  # recorded like an ordinary run's
    # a reload (a new session with this tab's id) still offers it
    reloaded = in_workspace(AppTest.from_file(APP, default_timeout=180))
    reloaded.run().switch_page(PAGE).run()
    assert reloaded.selectbox(key="experiments_dataset").value == "(train page)"
    # once its file is gone (deleted by hand), it is no longer offered, and nothing breaks
    saved.unlink()
    reloaded.run()
    assert not reloaded.exception
    assert not any("Train page" in o for o in reloaded.selectbox(key="experiments_dataset").options)


def test_the_train_pages_built_in_data_is_offered_with_its_seed(models):
    from cae.datasets import dataset_status

    app = in_workspace(AppTest.from_file(APP, default_timeout=180)).run()
    app.switch_page("pages/2_Train.py").run()
    app.selectbox(key="train_dataset").set_value("mnist-sample").run()
    app.number_input(key="train_seed").set_value(5).run()
    app.switch_page(PAGE).run()
    assert not app.exception
    choice = app.selectbox(key="experiments_dataset")
    assert choice.value == "mnist-sample"  # a built-in dataset stays the default
    train_option = next(o for o in choice.options if o.startswith("As on the Train page"))
    assert "split seed 5" in train_option
    choice.set_value("(train page)").run()
    sizes = app.select_slider(key="experiments_limit_(train page)").options
    assert sizes[-1] == f"{dataset_status('mnist-sample').num_train:,}"  # every image, as on Train
    app.selectbox(key="experiments_field_0").set_value("code").run()
    app.text_input(key="experiments_values_0").set_value("1, 2").run()
    assert not app.exception
    assert "**2 run(s)**" in texts(app)
