"""Searches on the server (cae.studies): a study's trials train as experiment runs through the
job manager and the one queue (real worker processes), the pruner stops a trial from the progress
the server receives, only the server tells the study, and a restart tells the trials that were
training failed and goes on."""

from __future__ import annotations

import json

import pytest

from cae.admission import Scheduler
from cae.jobs import JobManager
from cae.recipe import DataRecipe
from cae.search_space import SearchSpace
from cae.studies import StudyQueue, studies_root
from cae.training import TrainConfig
from tests.test_search import TINY

RECIPE = DataRecipe("mnist-sample", limit=128)


@pytest.fixture
def queue():
    jobs = JobManager(Scheduler(slots=1))
    studies = StudyQueue(jobs)
    yield studies
    studies.close(wait=60)
    jobs.stop_all(wait=30)


@pytest.mark.slow
def test_a_search_trains_its_trials_in_the_queue_and_prunes_from_their_progress(queue, tmp_path):
    import optuna

    from cae.search import open_study, trial_rows
    from cae.store import list_runs, read_run_json

    space = SearchSpace.from_dict(
        {
            **TINY,
            "parameters": {**TINY["parameters"], "learning_rate": [0.01, 1e-7], "epochs": 40},
            "pruner": {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
            "enqueue": [
                {"filters": 4, "code_channels": 1, "learning_rate": 0.01},
                {"filters": 4, "code_channels": 1, "learning_rate": 1e-7},
            ],
        }
    )
    root = tmp_path / "models"
    search = queue.submit(
        "a" * 32,
        "server-prune",
        space,
        RECIPE,
        TrainConfig(preview_count=0),
        2,
        num_train=115,
        root=root,
    )
    assert queue.wait(search.id, 600)
    record = queue.get(search.id).snapshot()
    assert record["state"] == "finished" and record["told"] == 2, record
    study = open_study("server-prune", root=root)
    first, second = study.trials
    assert first.state == optuna.trial.TrialState.COMPLETE
    assert second.state == optuna.trial.TrialState.PRUNED  # stopped by the server, not the worker
    assert second.user_attrs["epochs_completed"] < 40  # its job was stopped, not run out
    runs = list_runs(root)
    assert [run.run_id for run in runs] == [first.user_attrs["run_id"]]
    train = read_run_json(runs[0].run_id, "train.json", root)
    assert train["experiment"]["study"] == "server-prune" and train["experiment"]["trial"] == 0
    # the study's value is the run's validation PSNR, never its test split's
    assert first.value == pytest.approx(train["outcome"]["validation_metrics"]["psnr"])
    assert [row["state"] for row in trial_rows(study)] == ["finished", "pruned"]
    # a reload (another server object over the same folder) finds the search and its study
    again = StudyQueue(JobManager(Scheduler(slots=1)))
    (found,) = again.all(root)
    assert found.id == search.id and not found.active


def test_a_restart_tells_the_trials_that_were_training_failed_and_goes_on(tmp_path):
    import optuna

    from cae.search import ask_candidate, open_study

    root = tmp_path / "models"
    space = SearchSpace.from_dict(TINY)
    config = TrainConfig(preview_count=0)
    study = open_study("restart", space, root=root, recipe=RECIPE, base_config=config)
    candidate = ask_candidate(study, space, RECIPE.image_shape(), config, num_train=115)
    # the record a server left when it stopped with that trial training, its last to ask
    record = {
        "id": "20261206-120000-abcdef",
        "study": "restart",
        "owner": "b" * 32,
        "root": str(root.resolve()),
        "storage": None,
        "created": "2026-12-06T12:00:00",
        "ended": None,
        "state": "running",
        "message": "",
        "trials": 1,
        "asked": 1,
        "told": 0,
        "data": RECIPE.to_dict(),
        "config": config.to_dict(),
        "space": space.to_dict(),
        "num_train": 115,
        "trial_seconds": 1.0,
        "running_trials": {str(candidate.number): "search-x-0"},
        "launched": [candidate.number],  # its job had started
    }
    folder = studies_root(root)
    (folder / "20261206-120000-abcdef.search.json").write_text(json.dumps(record))
    queue = StudyQueue(JobManager(Scheduler(slots=1)))
    (search,) = queue.all(root)
    assert queue.wait(search.id, 30)
    (trial,) = open_study("restart", root=root).trials
    assert trial.state == optuna.trial.TrialState.FAIL
    assert trial.user_attrs["reason"] == "the server stopped while this trial trained"
    saved = json.loads((folder / "20261206-120000-abcdef.search.json").read_text())
    assert saved["state"] == "finished" and saved["running_trials"] == {} and saved["told"] == 1


def test_a_search_asks_for_a_sane_number_of_trials_and_counts_against_the_caps(
    queue, tmp_path, monkeypatch
):
    from cae.experiments import ExperimentCapError
    from cae.search import SearchError

    space = SearchSpace.from_dict(TINY)
    root = tmp_path / "models"
    with pytest.raises(SearchError, match=r"1 to 60 trials\. Received: trials=0"):
        queue.submit("c" * 32, "s", space, RECIPE, TrainConfig(), 0, num_train=115, root=root)
    monkeypatch.setattr("cae.experiments.MAX_QUEUED_HOURS", 1e-9)
    with pytest.raises(ExperimentCapError, match="estimated hours"):
        queue.submit("c" * 32, "s", space, RECIPE, TrainConfig(), 3, num_train=115, root=root)
    assert queue.all(root) == []


def test_the_figures_weigh_only_the_searched_parameters_and_mark_a_front_of_one(tmp_path):
    """Two trials that differ in filters only (depth and kernel fixed by the space): the importance
    figure lists filters alone, and the front, one trial that is smaller and better, is drawn as
    a point (a line through one point showed nothing but its legend)."""
    import optuna

    from cae.studies import ServerStudy, search_figures

    study = optuna.create_study(direction="maximize")
    distributions = {
        "depth": optuna.distributions.CategoricalDistribution([2]),
        "filters": optuna.distributions.CategoricalDistribution([4, 8]),
        "kernel": optuna.distributions.CategoricalDistribution([3]),
    }
    for filters, params, psnr in ((8, 2058, 6.48), (4, 598, 6.50)):
        study.add_trial(
            optuna.trial.create_trial(
                params={"depth": 2, "filters": filters, "kernel": 3},
                distributions=distributions,
                value=psnr,
                user_attrs={"param_count": params},
            )
        )
    search = ServerStudy({"study": "tiny", "root": str(tmp_path)}, tmp_path / "tiny.json")
    search._study = study  # the study the server would open from its storage
    figures = search_figures(search)
    importance = figures["importance"]
    assert list(importance.data[0].y) == ["filters"]
    front = figures["pareto"].data[0]
    assert front.name == "Pareto front" and list(front.x) == [598.0]
    assert "markers" in front.mode
    for key in ("history", "pareto"):  # legends under the plots: beside, they took half a phone
        assert figures[key].layout.legend.orientation == "h"
