"""AppTests of the Experiments page and its grid studies in the server's study queue: the plan
before start (runs, the estimate and what cannot train), a second experiment waiting in the queue
and saying so, a reload finding it again, Stop keeping what finished, and a grid study read back
after a server restart (the trial that trained told failed with what its worker saved, the one
still queued asked again)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cae.experiments import parallel_runs
from cae.jobs import JOBS
from cae.recipe import DataRecipe
from cae.spec import preset
from cae.store import new_workspace_id, workspace_root
from cae.studies import STUDIES, grid_view, studies_root
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
    is the gallery above it); the study queue is closed after the test."""
    global WORKSPACE
    WORKSPACE = new_workspace_id()  # a job or experiment of the test before is not its
    folder = workspace_root(WORKSPACE)
    folder.mkdir(parents=True)
    yield folder
    STUDIES.close(wait=120)


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
    # each Start is a study of its own: the second of one name is told apart
    assert sorted(o.split(" · ")[0] for o in shown.options) == ["classic", "classic (2)"]
    assert "Stop the experiment" in [button.label for button in app.button]
    for experiment_id, code in ((first, 1), (second, 2)):  # each as the form said
        found = STUDIES.get(experiment_id, str(models))
        record = found.snapshot()
        assert record["config"]["epochs"] == 1 and record["data"]["limit"] == 100
        assert [row["label"] for row in grid_view(found)["rows"]] == [f"code={code}"]
    # the first can be picked again, and the pick stays while its state changes
    app.selectbox(key="experiments_shown").set_value(first).run()
    assert not app.exception
    assert app.selectbox(key="experiments_shown").value == first
    STUDIES.stop(first)
    STUDIES.stop(second)
    assert STUDIES.wait(first, 120) and STUDIES.wait(second, 120)
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
    first = STUDIES.submit_grid(
        "someone else", "long one", preset("classic"), TrainConfig(epochs=500), recipe,
        [parse_vary("code=1")], num_train=270, root=models,
    )  # fmt: skip
    second = STUDIES.submit_grid(
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
    # the record is on disk as it is in the queue; the study holds its two points
    record = json.loads((studies_root(models) / f"{second.id}.grid.json").read_text())
    assert record["state"] == "queued" and record["trials"] == 2 and record["told"] == 0
    assert [row["state"] for row in grid_view(second)["rows"]] == ["running", "waiting"]
    # another session sees the first one's experiment read-only
    other = open_page()
    other.selectbox(key="experiments_shown").set_value(first.id).run()
    assert "only that session can stop it" in texts(other)
    # Stop: the queued one leaves the queue and nothing of it runs
    again.button(key="experiments_stop").click().run()
    assert not again.exception
    assert STUDIES.wait(second.id, 60) and second.state == "stopped"
    # the one asked was stopped before it started, the other never asked
    assert [row["state"] for row in grid_view(second)["rows"]] == ["stopped", "not run"]
    # a new experiment started now would wait too, and the form says so
    assert "this one's runs wait in the server's queue" in texts(again)
    STUDIES.stop(first.id)
    assert STUDIES.wait(first.id, 120)
    assert first.state == "stopped"
    # the run in progress is dropped (nothing of it saved), nothing else ran
    assert [row["state"] for row in grid_view(first)["rows"]] == ["stopped"]
    assert not [path for path in models.iterdir() if not path.name.startswith(".")]


def test_a_grid_study_survives_a_server_restart(models):
    """A server went down with trial 0 finished, trial 1 training (its worker saved its 3
    completed epochs as a run) and trial 2 waiting for a slot: the new server's queue finds the
    study, tells trial 1 failed with that run, asks trial 2's point again, skips the point that
    cannot train, and goes on; the finished trial stays."""
    import time

    from cae.admission import Scheduler
    from cae.experiments import ask_grid_candidate, open_grid_study
    from cae.jobs import JobManager
    from cae.search import finish_trial
    from cae.studies import StudyQueue
    from cae.training import TrainOutcome

    recipe, config = DataRecipe(limit=100), TrainConfig(epochs=1, preview_count=0)
    axes = [parse_vary("code=1,2,3,0")]
    study = open_grid_study(
        "before", axes, spec=preset("classic"), config=config, recipe=recipe, root=models
    )
    asked = [ask_grid_candidate(study, recipe.image_shape(), num_train=90) for _ in range(3)]
    assert [candidate.number for candidate in asked] == [0, 1, 2]
    done = TrainOutcome("finished", "", 1, False, validation_metrics={"psnr": 9.0})
    finish_trial(study, 0, done, run_id="r1", config=asked[0].config)
    (models / "r2").mkdir()  # what trial 1's worker saved when the server went away
    tag = {"id": "study:before", "kind": "grid", "study": "before", "trial": 1, "index": 1}
    train = {"experiment": tag, "outcome": {"state": "stopped", "epochs_completed": 3}}
    (models / "r2" / "train.json").write_text(json.dumps(train))
    record = {
        "id": "20260101-000000-abcdef", "kind": "grid", "study": "before", "owner": "x",
        "root": str(models.resolve()), "storage": None, "created": "2026-01-01T00:00:00",
        "ended": None, "state": "running", "message": "", "asked": 3, "told": 1,
        "trials": 3, "data": recipe.to_dict(), "config": config.to_dict(),
        "spec": preset("classic").to_dict(), "axes": [axis.to_dict() for axis in axes],
        "num_train": 90, "parallel": 2, "estimates": [1.0, 1.0, 1.0, None],
        "trial_seconds": 1.0, "running_trials": {"1": "k1", "2": "k2"}, "launched": [1],
    }  # fmt: skip
    path = studies_root(models) / f"{record['id']}.grid.json"
    path.write_text(json.dumps(record))
    jobs = JobManager(Scheduler(slots=1))
    holder = jobs.scheduler.submit("zoe", "train", 0, "holds the slot")  # nothing trains here
    queue = StudyQueue(jobs)  # a new server process
    try:
        (found,) = queue.all(models)
        assert found.id == record["id"] and found.kind == "grid" and found.active
        deadline = time.monotonic() + 60
        while not found.snapshot()["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.1)
        view = grid_view(found)
        states = [(row["number"], row["index"], row["state"]) for row in view["rows"]]
        assert states == [
            (0, 0, "finished"),
            (1, 1, "failed"),
            (2, 2, "requeued"),
            (3, 3, "skipped"),  # code=0: told skipped when asked, with its reason
            (4, 2, "running"),  # trial 2's point, asked again
        ]
        finished, interrupted = view["rows"][:2]
        assert finished["value"] == 9.0 and finished["run_id"] == "r1"  # kept
        assert interrupted["run_id"] == "r2"
        assert "stopped at epoch 3, saved as r2" in interrupted["reason"]
        assert "'filters' must be at least 1" in view["rows"][3]["reason"]
        (flight,) = view["record"]["in_flight"]
        assert flight["index"] == 2 and flight["label"] == "code=3" and flight["queued"]
        # point 2 (1 s estimated) left, and no run of it trains: at one at a time, not the
        # record's 2 slots (which gave half of that while another student held the slot)
        assert view["at_once"] == 0 and view["eta_seconds"] == pytest.approx(1.0)
        saved = json.loads(path.read_text())
        assert saved["told"] == 2 and saved["asked"] == 3 and list(saved["running_trials"]) == ["4"]
    finally:
        queue.close(wait=30)
        jobs.scheduler.release(holder.entry_id)
        jobs.stop_all(wait=30)


def test_parallel_runs_follow_the_free_cores():
    assert parallel_runs(1) == 1 and parallel_runs(2) == 1
    assert parallel_runs(4) == 2 and parallel_runs(16) == 8
    assert parallel_runs(16, busy=4) == 4
    assert parallel_runs(4, busy=3) == 1


@pytest.mark.slow
def test_the_comparison_of_a_finished_experiment(models):
    name = "<b>bold</b> [x](http://e.example)"
    experiment = STUDIES.submit_grid(
        "someone", name, preset("classic"), TrainConfig(epochs=1, preview_count=0),
        DataRecipe(limit=120), [parse_vary("code=1,2")], num_train=108, root=models,
    )  # fmt: skip
    assert STUDIES.wait(experiment.id, 300)
    assert experiment.state == "finished", experiment.record
    rows = grid_view(experiment)["rows"]
    run_ids = [row["run_id"] for row in rows]
    assert all(run_ids)
    for run_id, row in zip(run_ids, rows, strict=True):  # ordinary runs, tagged with the study
        train = json.loads((models / run_id / "train.json").read_text())
        assert train["experiment"]["study"] == experiment.record["study"]
        assert train["experiment"]["trial"] == row["number"]
        # the study's value is the run's validation PSNR; the table shows its test PSNR
        assert row["value"] == train["outcome"]["validation_metrics"]["psnr"]
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
        STUDIES.submit_grid(
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
        flights = [e.snapshot()["in_flight"] for e in experiments]
        seen.add(tuple(sum(trial["training"] for trial in flight) for flight in flights))
        STUDIES.wait(experiments[0].id, 0.2)
    # both students' runs trained at the same time, each in its worker
    assert [counts for counts in seen if min(counts) >= 1], seen
    # 4 idle slots: a student's second run takes one no other student's run waits for (the
    # work-conserving rule of cae.admission; its fairness is tested in tests/test_admission.py)
    assert max(sum(counts) for counts in seen) <= 4, seen
    assert experiments[0].record["parallel"] == 4
    for experiment in experiments:
        assert [row["state"] for row in grid_view(experiment)["rows"]] == ["finished"] * 2


@pytest.mark.slow
def test_stop_keeps_the_runs_already_finished(models):
    from cae.store import list_runs

    experiment = STUDIES.submit_grid(
        "someone", "stop me", preset("classic"), TrainConfig(epochs=1, preview_count=0),
        DataRecipe(limit=100), [parse_vary("code=1,2,3")], num_train=90, root=models,
    )  # fmt: skip

    def states() -> list[str]:
        return [row["state"] for row in grid_view(experiment)["rows"]]

    while experiment.active and states()[0] != "finished":
        STUDIES.wait(experiment.id, 0.2)
    STUDIES.stop(experiment.id)
    assert STUDIES.wait(experiment.id, 120)
    assert experiment.state == "stopped"
    found = states()
    # a point never asked says so: it showed "waiting" forever after the Stop
    assert found[0] == "finished" and found[2] in ("not run", "stopped") and "waiting" not in found
    assert found[1] in ("stopped", "not run", "finished")  # it may have ended meanwhile
    not_run = [row for row in grid_view(experiment)["rows"] if row["state"] == "not run"]
    assert all(row["reason"] == "its study was stopped before this point" for row in not_run)
    kept = {run.run_id for run in list_runs(models) if run.ok}
    rows = grid_view(experiment)["rows"]
    assert kept == {row["run_id"] for row in rows if row["state"] == "finished"}
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
    experiment = STUDIES.get(app.session_state["experiments_shown"], str(models))
    recipe = DataRecipe.from_dict(experiment.record["data"])
    assert recipe.dataset == "upload" and recipe.upload_name == "my digits.npy"
    assert recipe.upload_sha256 == hashlib.sha256(content).hexdigest()
    assert Path(recipe.upload_path) == saved.resolve() and recipe.seed == 7
    assert STUDIES.wait(experiment.id, 300)
    assert experiment.state == "finished", experiment.record
    run_id = grid_view(experiment)["rows"][0]["run_id"]
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
