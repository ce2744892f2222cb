"""Trainings on a real two-node Ray cluster on this machine (issue 29): ``CAE_CLUSTER`` set, the
server's job manager hands each admitted job to ``python -m cae.ray_dispatch``, which runs it as
a Ray actor on a node. Each node has one CPU and each job asks for one, so two jobs at once must
run on different nodes. Skipped when Ray is not installed (requirements-cluster.txt)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ray = pytest.importorskip(
    "ray", reason="Ray is not installed: pip install -r requirements-cluster.txt"
)
from ray.cluster_utils import Cluster  # noqa: E402

from cae.admission import Scheduler  # noqa: E402
from cae.jobs import JobManager, TrainingJob  # noqa: E402
from cae.recipe import DataRecipe  # noqa: E402
from cae.request import TrainRequest  # noqa: E402
from cae.spec import preset  # noqa: E402
from cae.store import load_run  # noqa: E402
from cae.training import TrainConfig  # noqa: E402

pytestmark = pytest.mark.slow
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


def ray_workers() -> list[psutil.Process]:
    """The ``cae.worker`` processes that a Ray actor started (they carry CAE_BACKEND)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "cae.worker" not in cmdline:
            continue
        try:
            if '"ray"' in process.environ().get("CAE_BACKEND", ""):
                found.append(process)
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            continue
    return found


def test_two_jobs_that_each_need_a_node_run_on_different_nodes_and_are_saved(
    cluster, jobs, tmp_path
):
    first = jobs.start("student-a", request("on-ray-a", epochs=2), root=tmp_path)
    second = jobs.start("student-b", request("on-ray-b", epochs=2), root=tmp_path)
    assert first.wait(TIMEOUT) and second.wait(TIMEOUT)
    nodes = {node.node_id for node in cluster.list_all_nodes()}
    assert len(nodes) == 2
    records = []
    for job in (first, second):
        assert job.error is None, job.error
        assert job.snapshot().state == "finished" and job.run_id is not None
        record = json.loads((tmp_path / job.run_id / "train.json").read_text())
        assert record["backend"] == "ray" and record["node_id"] in nodes
        records.append(record)
        assert load_run(job.run_id, root=tmp_path).info.epochs == 2
    assert records[0]["node_id"] != records[1]["node_id"]  # one CPU each: one job per node
    assert ray_workers() == []


def test_a_lost_ray_worker_ends_its_job_in_one_line_and_a_stop_keeps_the_epochs(
    cluster, jobs, tmp_path
):
    first = jobs.start("student-c", request("first", epochs=40, limit=512), root=tmp_path)
    second = jobs.start("student-d", request("second", epochs=40, limit=512), root=tmp_path)
    for job in (first, second):
        snap = wait_until(job, lambda s: s.epoch >= 1)
        assert not job.done, snap.message
    workers = ray_workers()
    nodes = {json.loads(process.environ()["CAE_BACKEND"])["node_id"] for process in workers}
    assert len(workers) == 2 and len(nodes) == 2  # one worker on each node
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
    assert record["backend"] == "ray" and record["outcome"]["epochs_completed"] == kept
    assert sorted(path.name for path in tmp_path.iterdir() if not path.name.startswith(".")) == [
        run_id
    ]
    assert ray_workers() == []


def test_the_cli_trains_on_the_cluster_when_cae_cluster_is_set(cluster, tmp_path):
    env = {**os.environ, "CAE_CLUSTER": cluster.address}
    done = subprocess.run(
        [sys.executable, "-m", "cae", "train", "--preset", "classic", "--dataset",
         "mnist-sample", "--limit", "128", "--epochs", "1", "--batch-size", "32",
         "--name", "cli-on-ray", "--root", str(tmp_path)],
        capture_output=True, text=True, timeout=TIMEOUT, env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("run ")]
    assert "on Ray node" in line and "1 epoch" in line, line
    (run,) = [path for path in tmp_path.iterdir() if path.name.startswith("cli-on-ray")]
    record = json.loads((run / "train.json").read_text())
    assert record["backend"] == "ray"
    assert record["node_id"] in {node.node_id for node in cluster.list_all_nodes()}
    assert ray_workers() == []
