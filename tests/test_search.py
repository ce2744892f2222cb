"""Searches on Optuna (cae.search, cae.search_space, ``python -m cae search``): a small study
through the CLI, pruning that really stops a trial, two processes sharing one study, heartbeats
of a killed process, a grid, and space files refused in one line naming the field and value."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cae.search_space import SearchSpace, SpaceError

REPO = Path(__file__).resolve().parents[1]
SHIPPED_SPACE = REPO / "cae" / "_data" / "search-mnist-sample.json"

# Small designs: two stages of 2-4 filters, a 7x7x1 code; a trial of 1 epoch on 115 images
TINY = {
    "name": "tiny",
    "parameters": {
        "depth": 2,
        "filters": [2, 4],
        "growth": 1,
        "code_channels": [1, 2],
        "learning_rate": 0.01,
        "batch_size": 32,
        "epochs": 1,
    },
    "constraints": {"max_code_values": 49},
    "sampler": {"name": "random", "seed": 0},
}
DATA = ["--dataset", "mnist-sample", "--limit", "128"]


def write_space(folder: Path, data: dict, name: str = "space.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``python -m cae`` in this process (TensorFlow is loaded once): status, stdout, stderr."""
    from cae.__main__ import main

    try:
        status = main(list(args))
    except SystemExit as exit_:  # argparse errors
        status = exit_.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# ------------------------------------------------------------------------------------ spaces


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"parameters": {"filters": {"low": 8, "high": 2000}}}, "parameters.filters.high=2000"),
        ({"parameters": {"kernel": [3, "five"]}}, 'parameters.kernel[1]="five"'),
        ({"parameters": {"depth": {"low": 3, "high": 1}}}, 'parameters.depth={"low": 3'),
        ({"parameters": {"width": [8, 16]}}, 'parameters="width"'),
        ({"parameters": {"activation": ["relu", "softmax"]}}, 'parameters.activation[1]="softmax"'),
        (
            {"parameters": {"learning_rate": {"low": 0, "high": 1, "log": True}}},
            "parameters.learning_rate.low=0",
        ),
        ({"constraints": {"max_code_values": 0}}, "constraints.max_code_values=0"),
        ({"constraints": {"max_flops": 10}}, 'constraints="max_flops"'),
        ({"sampler": {"name": "cmaes"}}, 'sampler.name="cmaes"'),
        (
            {"sampler": "grid", "parameters": {"filters": {"low": 2, "high": 8}}},
            "parameters.filters=",
        ),
        ({"pruner": {"name": "median", "n_warmup_steps": -1}}, "pruner.n_warmup_steps=-1"),
        ({"enqueue": [{"filters": 3}]}, "enqueue[0].filters=3"),
        ({"colour": "red"}, 'space="colour"'),
    ],
)
def test_a_bad_space_is_one_line_naming_the_field_and_the_value(change, expected):
    data = {**TINY, **{key: value for key, value in change.items() if key != "parameters"}}
    if "parameters" in change:
        data["parameters"] = {**TINY["parameters"], **change["parameters"]}
    with pytest.raises(SpaceError) as error:
        SearchSpace.from_dict(data)
    message = str(error.value)
    assert "\n" not in message and "Received: " in message, message
    assert expected in message, message
    assert message.startswith(expected.split("=")[0] + ": "), message


def test_the_cli_refuses_a_bad_space_file_in_one_line(tmp_path, capsys):
    bad = write_space(tmp_path, {**TINY, "parameters": {"filters": {"low": 8, "high": 2000}}})
    status, out, err = cli(capsys, "search", "--space", str(bad), "--trials", "1", *DATA)
    assert status == 2 and out == ""
    assert err.strip() == (
        "error: parameters.filters.high: must be from 1 to 1024. "
        "Received: parameters.filters.high=2000"
    )
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    status, _, err = cli(capsys, "search", "--space", str(broken), "--trials", "1", *DATA)
    assert status == 2 and err.startswith("error: space: not valid JSON") and err.count("\n") == 1


def test_the_shipped_space_starts_from_the_design_that_beats_pca():
    """The example space's first point is the hand-made design (7x7x1 code, 3x3 convolutions of
    32 then 64 filters, two per stage, mirrored), and it passes the checks before training."""
    from cae.search import check_candidate
    from cae.shapes import compute_shapes
    from cae.training import TrainConfig

    space = SearchSpace.load(SHIPPED_SPACE)
    assert (
        space.max_code_values == 49
        and space.to_dict() == SearchSpace.from_dict(space.to_dict()).to_dict()
    )
    values = space.values(dict(space.enqueue[0]))
    spec = space.design(values, (28, 28, 1))
    report = compute_shapes(spec, with_fixes=False)
    assert tuple(report.latent_shape) == (7, 7, 1)
    filters = [layer.filters for layer in spec.encoder if layer.type == "conv"]
    assert filters == [32, 32, 64, 64, 1]
    params, code = check_candidate(
        space, spec, space.config(values, TrainConfig()), image_shape=(28, 28, 1), num_train=4500
    )
    assert code == 49 and params == report.total_params


def test_a_grid_asks_each_point_once_and_then_says_it_is_done(tmp_path):
    """A grid study (Optuna's GridSampler) hands out each listed point once; a point that breaks
    a constraint is pruned with the reason, not trained; then asking says the grid is done."""
    import optuna

    from cae.search import SearchError, ask_candidate, open_study, trial_rows
    from cae.training import TrainConfig

    space = SearchSpace.from_dict({**TINY, "sampler": "grid"})
    study = open_study("grid", space, storage=optuna.storages.InMemoryStorage())
    asked = []
    with pytest.raises(SearchError, match="every point of the grid has been tried"):
        for _ in range(5):
            candidate = ask_candidate(study, space, (28, 28, 1), TrainConfig())
            asked.append(candidate.params)
            study.tell(candidate.number, 1.0)
    assert sorted(point["filters"] for point in asked) == [2, 4]
    assert all(point["code_channels"] == 1 for point in asked)
    rows = trial_rows(study)
    assert len(rows) == 4 and sorted(row["state"] for row in rows) == [
        "finished",
        "finished",
        "skipped",
        "skipped",
    ]
    skipped = [row for row in rows if row["state"] == "skipped"]
    assert all("max_code_values=49" in row["reason"] for row in skipped)
    pruned = study.get_trials(states=(optuna.trial.TrialState.PRUNED,))
    assert len(pruned) == 2


# ------------------------------------------------------------------------------------ studies


@pytest.mark.slow
def test_a_small_study_through_the_cli(tmp_path, capsys):
    """Three 1-epoch trials of the bundled sample through ``python -m cae search``: a point
    that breaks the code constraint is skipped first, each trial is an ordinary run tagged with
    the study, scored on its validation split, and the best is reported against PCA-49."""
    from cae.search import best_row, open_study, trial_rows
    from cae.store import list_runs, read_run_json

    models = tmp_path / "models"
    points = [{"code_channels": 2}] + [{"filters": n, "code_channels": 1} for n in (2, 3, 4)]
    data = {**TINY, "parameters": {**TINY["parameters"], "filters": [2, 3, 4]}, "enqueue": points}
    space = write_space(tmp_path, data)
    args = ["search", "--space", str(space), "--trials", "3", *DATA, "--root", str(models)]
    status, out, err = cli(capsys, *args)
    assert status == 0, err[-3000:]
    lines = out.strip().splitlines()
    assert lines[0].startswith("trial 0: skipped, the code has more values than max_code_values")
    assert "Received: code=7x7x2 (98 values)" in lines[0]
    summary = next(line for line in lines if line.startswith("study 'tiny' in sqlite:///"))
    assert "/.studies/studies.db: 3 trained here (1 skipped), 4 trials in the study" in summary
    table = lines[lines.index(summary) + 1 :]
    assert table[0].split()[:3] == ["#", "state", "parameters"] and len(table) == 1 + 4 + 1
    assert [line.split()[1] for line in table[1:5]] == ["skipped"] + ["finished"] * 3
    # the study is in the runs folder's SQLite file, found again by its name alone
    study = open_study("tiny", root=models)
    rows = trial_rows(study)
    best = best_row(study)
    finished = [row for row in rows if row["state"] == "finished"]
    assert [row["params"]["filters"] for row in finished] == [2, 3, 4]
    assert best["value"] == max(row["value"] for row in finished)
    assert table[-1].startswith(
        f"best: trial {best['number']}, validation PSNR {best['value']:.2f}"
    )
    assert "; PCA with the same 49 numbers " in table[-1] and best["run_id"] in table[-1]
    # the trials are runs of the runs folder, tagged with the study
    runs = {info.run_id: info for info in list_runs(models)}
    assert sorted(runs) == sorted(row["run_id"] for row in finished)
    for row in finished:
        train = read_run_json(runs[row["run_id"]].path, "train")
        assert train["experiment"]["study"] == "tiny"
        assert train["experiment"]["trial"] == row["number"]
        assert train["experiment"]["values"] == row["params"]
        # the objective is the validation split's PSNR, the test split's only recorded
        assert train["outcome"]["validation_metrics"]["psnr"] == pytest.approx(row["value"])
        assert runs[row["run_id"]].metrics["psnr"] == pytest.approx(row["test_psnr"])
        assert row["value"] != pytest.approx(row["test_psnr"], abs=1e-9)


@pytest.mark.slow
def test_pruning_stops_a_trial_and_its_record_says_pruned(tmp_path):
    """A median pruner with one start-up trial: the second trial, whose learning rate learns
    nothing, is stopped after its first of 3 epochs; its trial says pruned, and no run is saved
    for it."""
    import optuna

    from cae.recipe import DataRecipe
    from cae.search import open_study, run_search
    from cae.store import list_runs
    from cae.training import TrainConfig

    space = SearchSpace.from_dict(
        {
            **TINY,
            "parameters": {**TINY["parameters"], "learning_rate": [0.01, 1e-7], "epochs": 3},
            "pruner": {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
            "enqueue": [
                {"filters": 4, "code_channels": 1, "learning_rate": 0.01},
                {"filters": 4, "code_channels": 1, "learning_rate": 1e-7},
            ],
        }
    )
    models = tmp_path / "models"
    lines: list[str] = []
    summary = run_search(
        space,
        DataRecipe("mnist-sample", limit=128),
        TrainConfig(preview_count=0),
        study_name="prune",
        n_trials=2,
        root=models,
        log=lines.append,
    )
    assert summary.trained == [0, 1], lines
    study = open_study("prune", root=models)
    first, second = study.trials
    assert first.state == optuna.trial.TrialState.COMPLETE
    assert sorted(first.intermediate_values) == [1, 2, 3]
    assert second.state == optuna.trial.TrialState.PRUNED
    assert second.user_attrs["epochs_completed"] == 1  # stopped: 3 were asked for
    assert sorted(second.intermediate_values) == [1]
    assert second.user_attrs["reason"].startswith("pruned after epoch 1")
    assert "run_id" not in second.user_attrs
    assert [info.run_id for info in list_runs(models)] == [first.user_attrs["run_id"]]
    assert lines[-1].startswith("trial 1: pruned, pruned after epoch 1")


def _search_process(tmp_path: Path, space: Path, storage: Path, models: Path) -> subprocess.Popen:
    env = {**os.environ, "CAE_MODELS_DIR": str(models)}
    command = [sys.executable, "-m", "cae", "search", "--space", str(space), "--trials", "1"]
    command += [*DATA, "--storage", str(storage), "--study", "shared", "--json"]
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.slow
def test_two_processes_share_one_study(tmp_path):
    """Two ``python -m cae search --storage FILE.jsonl --study shared`` processes at once (a
    JournalStorage file, Optuna's way for processes on one file system): each trains its own
    trial and the study holds both."""
    from cae.search import open_study

    space = write_space(tmp_path, TINY)
    storage, models = tmp_path / "journal.jsonl", tmp_path / "models"
    processes = [_search_process(tmp_path, space, storage, models) for _ in range(2)]
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err[-3000:]
    trained = [json.loads(out)["trained"] for out, _ in outputs]
    assert sorted(number for numbers in trained for number in numbers) == [0, 1]
    study = open_study("shared", storage=str(storage))
    assert [trial.state.name for trial in study.trials] == ["COMPLETE", "COMPLETE"]
    run_ids = {trial.user_attrs["run_id"] for trial in study.trials}
    assert len(run_ids) == 2 and all((models / run_id).is_dir() for run_id in run_ids)


HEARTBEAT_CHILD = """
import sys, time
from cae.search import ask_candidate, heartbeat, make_storage, open_study
from cae.search_space import SearchSpace
from cae.training import TrainConfig
space = SearchSpace.load(sys.argv[1])
storage = make_storage(sys.argv[2], heartbeat_interval=1, grace_period=2)
study = open_study("beating", space, storage=storage)
candidate = ask_candidate(study, space, (28, 28, 1), TrainConfig())
with heartbeat(study, candidate.number):
    print(candidate.number, flush=True)
    time.sleep(120)
"""


def test_a_killed_process_trial_is_marked_failed_by_its_heartbeat(tmp_path):
    """A process killed in the middle of a trial stops beating; the next process to ask marks
    that trial failed (RDB heartbeats) instead of leaving it running forever."""
    import optuna

    from cae.search import ask_candidate, make_storage, open_study, trial_rows
    from cae.training import TrainConfig

    space_file = write_space(tmp_path, TINY)
    url = f"sqlite:///{tmp_path / 'beats.db'}"
    child = subprocess.Popen(
        [sys.executable, "-c", HEARTBEAT_CHILD, str(space_file), url],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        number = int(child.stdout.readline() or -1)
        assert number >= 0, child.stderr.read()[-2000:]
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    storage = make_storage(url, heartbeat_interval=1, grace_period=2)
    space = SearchSpace.load(space_file)
    study = open_study("beating", space, storage=storage)
    assert study.trials[number].state == optuna.trial.TrialState.RUNNING
    time.sleep(3.5)  # past the grace period
    ask_candidate(study, space, (28, 28, 1), TrainConfig())  # fails stale trials first
    killed = study.trials[number]
    assert killed.state == optuna.trial.TrialState.FAIL
    (row,) = [row for row in trial_rows(study) if row["number"] == number]
    assert row["state"] == "failed" and "marked failed by its heartbeat" in row["reason"]
