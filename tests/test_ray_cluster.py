"""Trainings on a real two-node Ray cluster on this machine (issue 29): ``CAE_CLUSTER`` set, the
server's job manager hands each admitted job to ``python -m cae.ray_dispatch``, which runs it as
a Ray actor on a node. Each node has one CPU and each job asks for one, so two jobs at once must
run on different nodes. Skipped when Ray is not installed (requirements-cluster.txt)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import psutil
import pytest

from cae.admission import Scheduler, training_slots
from cae.jobs import JobManager, TrainingJob
from cae.ray_dispatch import JobRunner, check_address, cluster_address, resources_for
from cae.recipe import DataRecipe
from cae.request import TrainRequest
from cae.spec import preset
from cae.store import list_runs, load_run
from cae.training import TrainConfig
from tests.test_cli_train import CLI_TELLS_TENSORFLOW

slow = pytest.mark.slow
TIMEOUT = 300  # seconds: Ray and TensorFlow start slowly on a loaded two-core machine


def processes_of(port: str) -> list[list[str]]:
    """The command lines of the processes that name the cluster's port (its Ray processes)."""
    return [
        process.info["cmdline"]
        for process in psutil.process_iter(["cmdline"])
        if any(port in part for part in (process.info["cmdline"] or []))
    ]


@pytest.fixture(scope="module")
def cluster():
    """A head and a second node, one CPU each; shut down (every Ray process) afterwards."""
    pytest.importorskip(
        "ray", reason="Ray is not installed: pip install -r requirements-cluster.txt"
    )
    from ray.cluster_utils import Cluster

    made = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    port = f":{made.address.rpartition(':')[2]}"
    try:
        made.add_node(num_cpus=1)
        assert processes_of(port)  # what the check below looks for does exist while it runs
        yield made
    finally:
        made.shutdown()
    deadline = time.monotonic() + 30
    while processes_of(port) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_of(port) == [], "Ray processes left after shutdown"


@pytest.fixture
def jobs(cluster, monkeypatch):
    """A job manager whose jobs run on ``cluster`` (two training slots)."""
    monkeypatch.setenv("CAE_CLUSTER", cluster.address)
    return JobManager(Scheduler(slots=2))


def request(name: str, epochs: int, limit: int = 128) -> TrainRequest:
    """The classic preset on ``limit`` mnist-sample images."""
    config = TrainConfig(epochs=epochs, batch_size=32)
    return TrainRequest(preset("classic"), DataRecipe("mnist-sample", limit=limit), config, name)


def wait_until(job: TrainingJob, condition, timeout: float = TIMEOUT):
    """The first snapshot for which ``condition`` holds (or the job's end)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snap = job.snapshot()
        if condition(snap) or job.done:
            return snap
        time.sleep(0.2)
    raise AssertionError(f"timed out; last snapshot {job.snapshot()}")


def ray_workers(cluster) -> list[psutil.Process]:
    """The ``cae.worker`` processes that a Ray actor of ``cluster`` started (they carry
    CAE_BACKEND with their node's id; another cluster's on this shared machine are not ours,
    nor is a child a worker forks, which has its command line until it runs another)."""
    nodes = {node.node_id for node in cluster.list_all_nodes()}
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if "cae.worker" not in (process.info["cmdline"] or []):
            continue
        try:
            backend = json.loads(process.environ().get("CAE_BACKEND") or "{}")
            parent = process.parent()
            forked = parent is not None and "cae.worker" in parent.cmdline()
        except (psutil.AccessDenied, psutil.NoSuchProcess, ValueError):
            continue
        if backend.get("backend") == "ray" and backend.get("node_id") in nodes and not forked:
            found.append(process)
    return found


def no_worker_left(cluster, grace: float = 15.0) -> bool:
    """True when no Ray worker of ``cluster`` is left once ``grace`` seconds have passed (a
    worker whose job has ended may still be exiting); the ones left are described otherwise."""
    left = psutil.wait_procs(ray_workers(cluster), timeout=grace)[1]
    if not left:
        return True
    described = []
    for process in left:
        with contextlib.suppress(psutil.Error):
            described.append(
                (process.pid, process.status(), process.ppid(), process.environ()["CAE_BACKEND"])
            )
    raise AssertionError(f"Ray workers left after their jobs ended: {described}")


def test_the_server_never_imports_ray_and_cae_cluster_chooses_the_backend(monkeypatch):
    code = (
        "import sys, cae.jobs, cae.studies, cae.experiments, cae.__main__; "
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'ray'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr[-1000:]
    assert cluster_address({"CAE_CLUSTER": "  "}) is None
    assert cluster_address({"CAE_CLUSTER": " ray://head:10001 "}) == "ray://head:10001"
    monkeypatch.setenv("CAE_CLUSTER_CPUS", "2")
    assert resources_for({}, 5 * 2**20) == {"num_cpus": 2.0, "num_gpus": 0.0, "memory": 5242880}
    assert resources_for({"resources": {"num_gpus": 1}}, None)["num_gpus"] == 1.0
    with pytest.raises(ValueError, match=r"num_cpus must be a number >= 0.*Received: num_cpus='x'"):
        resources_for({"resources": {"num_cpus": "x"}}, None)
    monkeypatch.setenv("CAE_TRAINING_SLOTS", "6")  # what the cluster holds, not this machine
    assert training_slots() == 6 and training_slots(2) == 1
    monkeypatch.setenv("CAE_TRAINING_SLOTS", "0")
    assert training_slots() == training_slots(None) and training_slots() <= 8


def test_a_bad_or_silent_cluster_address_is_one_line_at_once():
    check_address("auto")
    with pytest.raises(RuntimeError, match=r"must be auto, HOST:PORT or ray://HOST:PORT"):
        check_address("head-without-port")
    with pytest.raises(RuntimeError, match=r"no Ray cluster answers at 127.0.0.1:9 .*'ray://"):
        check_address("ray://127.0.0.1:9")


def test_a_node_keeps_a_shipped_upload_by_its_content_hash(tmp_path, monkeypatch):
    import hashlib

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    runner = object.__new__(JobRunner)  # its upload methods use no state of the actor
    data = b"an uploaded file's bytes"
    digest = hashlib.sha256(data).hexdigest()
    here = tmp_path / "up.npz"
    here.write_bytes(data)
    assert runner.local_upload(str(here), digest, ".npz") == str(here)  # the node sees it
    assert runner.local_upload("/no/such/up.npz", digest, ".npz") is None  # ship it
    with pytest.raises(ValueError, match="does not match its hash"):
        runner.store_upload(b"other bytes", digest, ".npz")
    kept = runner.store_upload(data, digest, ".npz")
    assert Path(kept) == tmp_path / "cae-cluster-uploads" / f"{digest}.npz"
    assert Path(kept).read_bytes() == data
    assert runner.local_upload("/no/such/up.npz", digest, ".npz") == kept  # shipped once


@slow
def test_the_cli_says_in_one_line_that_no_cluster_answers(tmp_path):
    env = {**os.environ, "CAE_CLUSTER": "127.0.0.1:9"}
    done = subprocess.run(
        [sys.executable, "-m", "cae", "train", "--preset", "classic", "--dataset",
         "mnist-sample", "--limit", "128", "--epochs", "1", "--root", str(tmp_path)],
        capture_output=True, text=True, timeout=TIMEOUT, env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    assert done.returncode != 0
    (line,) = done.stderr.strip().splitlines()
    assert "no Ray cluster answers at 127.0.0.1:9" in line, line
    assert line.endswith("Received: CAE_CLUSTER='127.0.0.1:9'") and list(tmp_path.iterdir()) == []


@slow
def test_two_jobs_run_on_different_nodes_a_lost_worker_ends_its_job_and_a_stop_keeps_the_epochs(
    cluster, jobs, tmp_path
):
    """Two jobs that each need a node's one CPU run at once on the two nodes (one of them on an
    uploaded file, which its node reads by its recorded hash); the Ray worker of one is killed
    mid-training: its job ends in one line, not retried, nothing saved; the other is stopped
    and its completed epochs are saved as a run that loads. (Two tests before, four Ray jobs: a
    job that finishes on its own is the CLI's and the search's below.)"""
    from tests.test_hostile_names import upload_recipe

    upload = upload_recipe(tmp_path.parent)  # an uploaded file: the node reads it (same path)
    on_upload = TrainRequest(  # 48 images: 3 batches an epoch, so many epochs
        preset("classic"), upload, TrainConfig(epochs=3000, batch_size=16), "on-ray-upload"
    )
    first = jobs.start("student-a", request("on-ray-sample", epochs=40, limit=512), root=tmp_path)
    second = jobs.start("student-b", on_upload, root=tmp_path)
    for job in (first, second):
        snap = wait_until(job, lambda s: s.epoch >= 1)
        assert not job.done, snap.message
    nodes = {node.node_id for node in cluster.list_all_nodes()}
    workers = ray_workers(cluster)
    on = {json.loads(process.environ()["CAE_BACKEND"])["node_id"] for process in workers}
    assert len(nodes) == 2 and len(workers) == 2 and on == nodes  # one job on each node
    victim = workers[0]
    os.kill(victim.parent().pid, signal.SIGKILL)  # the Ray worker (actor process) holding it
    deadline = time.monotonic() + TIMEOUT
    while not (first.done or second.done) and time.monotonic() < deadline:
        time.sleep(0.2)
    lost, other = (first, second) if first.done else (second, first)
    assert lost.done and not other.done
    message = lost.snapshot().message
    assert lost.snapshot().state == "failed" and "\n" not in message, message
    assert "was lost at epoch" in message and "not retried" in message, message
    assert lost.result is None and lost.run_id is None and lost.unsaved_epochs == 0
    psutil.wait_procs([victim], timeout=30)
    assert not victim.is_running()  # its worker went with it: nothing trains on unseen
    other.stop()  # what the Train page's Stop button calls
    assert other.wait(TIMEOUT)
    assert other.error is None and other.snapshot().state == "stopped"
    kept = other.unsaved_epochs
    assert kept >= 1
    run_id = other.save()
    record = json.loads((tmp_path / run_id / "train.json").read_text())
    assert record["backend"] == "ray" and record["node_id"] in nodes
    assert record["outcome"]["epochs_completed"] == kept
    assert load_run(run_id, root=tmp_path).info.epochs == kept
    if other is second:
        assert record["data"]["upload_sha256"] == upload.upload_sha256
    assert sorted(path.name for path in tmp_path.iterdir() if not path.name.startswith(".")) == [
        run_id
    ]
    assert no_worker_left(cluster)


@slow
def test_the_cli_trains_on_the_cluster_when_cae_cluster_is_set(cluster, tmp_path):
    env = {**os.environ, "CAE_CLUSTER": cluster.address}
    done = subprocess.run(
        [sys.executable, "-c", CLI_TELLS_TENSORFLOW, "train", "--preset", "classic", "--dataset",
         "mnist-sample", "--limit", "128", "--epochs", "1", "--batch-size", "32",
         "--name", "cli-on-ray", "--root", str(tmp_path)],
        capture_output=True, text=True, timeout=TIMEOUT, env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("run ")]
    assert "on Ray node" in line and "1 epoch" in line, line
    assert done.stdout.splitlines()[-1] == "tensorflow imported here: False"  # the node's job
    (run,) = [path for path in tmp_path.iterdir() if path.name.startswith("cli-on-ray")]
    record = json.loads((run / "train.json").read_text())
    assert record["backend"] == "ray"
    assert record["node_id"] in {node.node_id for node in cluster.list_all_nodes()}
    assert no_worker_left(cluster)


@slow
def test_a_search_runs_its_trials_at_once_on_the_two_nodes_and_only_the_server_tells_the_study(
    cluster, jobs, tmp_path
):
    """Issue 29, point 5: one student's search with two free slots trains both trials at once
    (cae.admission gives a student's second training a slot nobody else waits for), one on each
    one-CPU node; the study (SQLite in the runs folder, written by this process only: the nodes
    get a training request and send progress lines) ends as a local search's does."""
    import optuna

    from cae.search import open_study, trial_rows
    from cae.search_space import SearchSpace
    from cae.studies import StudyQueue, studies_root
    from tests.test_search import TINY

    space = SearchSpace.from_dict(
        {
            **TINY,
            "parameters": {**TINY["parameters"], "filters": [2, 4], "code_channels": 1},
            "pruner": {"name": "none"},
        }
    )
    studies = StudyQueue(jobs)
    root = tmp_path / "models"
    try:
        search = studies.submit(
            "a" * 32,
            "on-ray",
            space,
            DataRecipe("mnist-sample", limit=128),
            TrainConfig(preview_count=0),
            2,
            num_train=115,
            root=root,
        )
        most = 0  # the most trials seen training at once
        deadline = time.monotonic() + TIMEOUT
        while not studies.wait(search.id, 0.2) and time.monotonic() < deadline:
            most = max(most, len(ray_workers(cluster)))
        assert studies.get(search.id).snapshot()["state"] == "finished"
    finally:
        studies.close(wait=60)
    assert list(studies_root(root).glob("*.db"))  # the default storage: SQLite, by the server
    study = open_study("on-ray", root=root)
    assert [trial.state for trial in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    records = [
        json.loads((root / trial.user_attrs["run_id"] / "train.json").read_text())
        for trial in study.trials
    ]
    assert {record["backend"] for record in records} == {"ray"}
    assert [record["experiment"]["trial"] for record in records] == [0, 1]
    # at once: both workers alive together, and each run's interval on its node (the node
    # started it .. it was saved) overlaps the other's
    assert most == 2
    intervals = [
        (datetime.fromisoformat(record["started"]), datetime.fromisoformat(record["created"]))
        for record in records
    ]
    assert max(start for start, _ in intervals) < min(end for _, end in intervals), intervals
    nodes = {node.node_id for node in cluster.list_all_nodes()}
    assert {record["node_id"] for record in records} == nodes  # one CPU each: one trial a node
    # the same form as a local search's trials: every column the Search page shows, and a run
    # that Results lists (read from its JSON, as the page does: no TensorFlow here)
    listed = {info.run_id: info for info in list_runs(root)}
    for row in trial_rows(study):
        assert row["state"] == "finished" and row["reason"] is None, row
        assert isinstance(row["value"], float) and isinstance(row["test_psnr"], float)
        assert row["param_count"] > 0 and row["code_values"] > 0 and row["epochs"] == 1
        assert row["spec"] and row["config"] and row["seconds"] > 0
        run = listed[row["run_id"]]
        assert run.ok and run.epochs == 1 and run.params == row["param_count"], run
    assert no_worker_left(cluster)


@slow
def test_the_train_page_stops_and_saves_a_training_that_runs_on_the_cluster(
    cluster, models, monkeypatch
):
    from streamlit.testing.v1 import AppTest

    from cae.jobs import JOBS
    from cae.store import new_workspace_id, workspace_root
    from ui.state import OWNER_KEY

    monkeypatch.setenv("CAE_CLUSTER", cluster.address)
    workspace = new_workspace_id()
    folder = workspace_root(workspace)
    folder.mkdir(parents=True)
    app = AppTest.from_file(
        str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120
    )
    app.session_state[OWNER_KEY] = workspace
    app = app.run().switch_page("pages/2_Train.py").run()
    assert not app.exception
    next(item for item in app.number_input if item.key.startswith("train_epochs")).set_value(50)
    app.button(key="train_start").click().run()
    job = JOBS.get(app.session_state["owner_id"])
    assert job is not None
    wait_until(job, lambda s: s.epoch >= 1)
    assert not job.done, job.snapshot().message
    app.run()
    app.button(key="train_stop").click().run()  # the page's Stop button
    assert job.wait(TIMEOUT)
    app.run()
    assert not app.exception and job.error is None and job.snapshot().state == "stopped"
    assert any("completed epoch(s) kept" in item.value for item in app.info)
    app.button(key="train_save").click().run()
    assert not app.exception and job.run_id is not None
    record = json.loads((folder / job.run_id / "train.json").read_text())
    assert record["backend"] == "ray" and record["outcome"]["stopped"] is True
    assert no_worker_left(cluster)


@slow
def test_a_job_no_node_has_room_for_waits_saying_so_and_stops(cluster, jobs, tmp_path, monkeypatch):
    monkeypatch.setenv("CAE_CLUSTER_CPUS", "4")  # each node has one CPU
    job = jobs.start("student-e", request("too-big", epochs=1), root=tmp_path)
    snap = wait_until(job, lambda s: "Waiting for the Ray cluster" in s.message)
    assert "4 CPU" in snap.message and not job.done, snap.message
    job.stop()
    assert job.wait(60)
    final = job.snapshot()
    assert final.state == "stopped" and job.error is None and job.result is None
    assert final.message.startswith("Stopped before the Ray cluster had a node with room")
    assert list(tmp_path.iterdir()) == []
