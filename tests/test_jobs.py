"""cae.jobs: background training jobs (thread, snapshots, stop, save, one job per owner)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from cae.data import Dataset, load_dataset
from cae.jobs import JOBS, JobBusy, JobManager, TrainingJob
from cae.spec import preset
from cae.store import list_runs, load_run
from cae.training import TrainConfig

TIMEOUT = 120


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("mnist-sample", limit=512, seed=0)


def small(dataset: Dataset, n: int) -> Dataset:
    return Dataset(dataset.name, dataset.x_train[:n], None, dataset.x_test[:64], None)


def poll_until(job: TrainingJob, condition, timeout: float = TIMEOUT) -> list:
    """Snapshots taken every 20 ms until ``condition(snapshot)`` or the job ends."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snap = job.snapshot()
        seen.append(snap)
        if not snap.active:  # the end is only shown once the job is done (and saved)
            assert job.done
        if condition(snap) or job.done:
            return seen
        time.sleep(0.02)
    raise AssertionError(f"timed out; last snapshot {seen[-1]}")


def test_default_manager_exists():
    assert isinstance(JOBS, JobManager)


def test_a_job_runs_in_the_background_finishes_and_is_saved(digits, tmp_path):
    jobs = JobManager()
    job = jobs.start(
        "alice",
        preset("classic"),
        small(digits, 256),
        "mnist-sample",
        TrainConfig(epochs=3, batch_size=8, preview_count=2),
        name="background run",
        root=tmp_path,
    )
    assert jobs.get("alice") is job and not job.done
    assert jobs.running_jobs() == [job]
    seen = poll_until(job, lambda s: not s.active)
    assert job.wait(TIMEOUT) and job.done and job.error is None
    states = {s.state for s in seen}
    assert "running" in states
    assert len({(s.epoch, s.batch) for s in seen}) >= 3  # it moved while we watched
    first = seen[0]
    first.history["loss"] = ["changed"]  # a copy: the job's own snapshot is untouched
    assert job.snapshot().history.get("loss") != ["changed"]
    final = job.snapshot()
    assert final.state == "finished" and final.epoch == 3
    assert job.result.epochs_completed == 3 and not job.result.stopped
    assert job.run_id and job.run_id in final.message
    runs = list_runs(tmp_path)
    assert [r.run_id for r in runs] == [job.run_id]
    info = runs[0]
    assert info.ok and info.epochs == 3 and info.dataset == "mnist-sample"
    assert info.name == "background run"
    assert set(info.metrics) >= {"mse", "psnr", "ssim", "params", "latent_shape", "wall_seconds"}
    assert info.metrics["params"] == 2690 and info.metrics["latent_shape"] == [7, 7, 1]
    assert jobs.running_jobs() == []
    assert job.save() == job.run_id  # saving again gives the same run


def test_stop_then_save_keeps_the_last_completed_epoch(digits, tmp_path):
    jobs = JobManager()
    job = jobs.start(
        "bob",
        preset("classic"),
        small(digits, 256),
        "mnist-sample",
        TrainConfig(epochs=200, batch_size=32, validation_split=0.0, preview_count=0),
        name="stopped run",
        root=tmp_path,
    )
    poll_until(job, lambda s: s.epoch >= 1)
    with pytest.raises(RuntimeError, match="still running"):
        job.save()
    job.stop()
    assert job.wait(TIMEOUT)
    result = job.result
    assert result.stopped and result.state == "stopped" and job.snapshot().state == "stopped"
    assert 1 <= result.epochs_completed < 200
    assert job.run_id is None and list_runs(tmp_path) == []  # a stopped run is not auto-saved
    run_id = job.save()
    loaded = load_run(run_id, tmp_path)
    assert loaded.info.epochs == result.epochs_completed
    assert loaded.train_config["stopped"] is True
    assert loaded.train_config["epochs_completed"] == result.epochs_completed
    saved = loaded.built.autoencoder.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(saved, result.built.autoencoder.get_weights()))


def test_a_job_stopped_before_its_first_epoch_cannot_be_saved(digits, tmp_path):
    jobs = JobManager()
    job = jobs.start(
        "carol",
        preset("classic"),
        small(digits, 64),
        "mnist-sample",
        TrainConfig(epochs=2, batch_size=32),
        name="early",
        root=tmp_path,
    )
    job.stop()
    assert job.wait(TIMEOUT)
    assert job.result.epochs_completed == 0
    with pytest.raises(ValueError, match="Received: epochs_completed=0"):
        job.save()


def test_two_owners_train_at_once_and_see_only_their_own_progress(digits, tmp_path):
    jobs = JobManager()
    a = jobs.start(
        "ann",
        preset("classic"),
        small(digits, 256),
        "mnist-sample",
        TrainConfig(epochs=2, batch_size=16, validation_split=0.0),
        name="a",
        root=tmp_path,
    )
    b = jobs.start(
        "ben",
        preset("classic"),
        small(digits, 192),
        "mnist-sample",
        TrainConfig(epochs=3, batch_size=32, validation_split=0.0),
        name="b",
        root=tmp_path,
    )
    both_running = False
    deadline = time.monotonic() + TIMEOUT
    while not (a.done and b.done) and time.monotonic() < deadline:
        sa, sb = a.snapshot(), b.snapshot()
        both_running = both_running or len(jobs.running_jobs()) == 2
        assert sa.epochs == 2 and sb.epochs == 3
        if sa.batches_per_epoch and sa.state != "starting":
            assert sa.batches_per_epoch == 16
        if sb.batches_per_epoch and sb.state != "starting":
            assert sb.batches_per_epoch == 6
        time.sleep(0.02)
    assert a.wait(TIMEOUT) and b.wait(TIMEOUT)
    assert both_running
    assert jobs.get("ann") is a and jobs.get("ben") is b
    assert len(a.result.history["loss"]) == 2 and len(b.result.history["loss"]) == 3
    assert {r.name for r in list_runs(tmp_path)} == {"a", "b"}


def test_the_same_owner_cannot_start_twice(digits, tmp_path):
    jobs = JobManager()
    config = TrainConfig(epochs=200, batch_size=32, validation_split=0.0)
    first = jobs.start(
        "dan",
        preset("classic"),
        small(digits, 128),
        "mnist-sample",
        config,
        name="one",
        root=tmp_path,
    )
    with pytest.raises(JobBusy, match="Received: owner='dan'"):
        jobs.start(
            "dan",
            preset("classic"),
            small(digits, 128),
            "mnist-sample",
            config,
            name="two",
            root=tmp_path,
        )
    first.stop()
    assert first.wait(TIMEOUT)
    second = jobs.start(
        "dan",
        preset("classic"),
        small(digits, 64),
        "mnist-sample",
        TrainConfig(epochs=1, batch_size=32),
        name="three",
        root=tmp_path,
        auto_save=False,
    )
    assert second.wait(TIMEOUT) and jobs.get("dan") is second
    assert second.result.epochs_completed == 1 and second.run_id is None


def test_a_failing_job_reports_its_error(tmp_path):
    jobs = JobManager()
    x = np.zeros((8, 32, 32, 1), np.float32)
    job = jobs.start(
        "eve",
        preset("classic"),
        Dataset("big", x, None, x, None),
        "big",
        TrainConfig(epochs=1),
        name="bad",
        root=tmp_path,
    )
    assert job.wait(TIMEOUT)
    assert job.result is None and "do not fit" in job.error
    snap = job.snapshot()
    assert snap.state == "failed" and "do not fit" in snap.message
    with pytest.raises(ValueError, match="no trained model"):
        job.save()
