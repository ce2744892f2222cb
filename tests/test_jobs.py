"""cae.jobs: background training jobs (a worker process each; snapshots, stop, save, one job per
owner, a prewarmed spare, crashes)."""

from __future__ import annotations

import json
import os
import signal
import socket
import time

import numpy as np
import psutil
import pytest

from cae.builder import weights_digest
from cae.jobs import (
    JOBS,
    ONEDNN_OFF_MESSAGE,
    START_MESSAGE,
    JobBusy,
    JobManager,
    TrainingJob,
    WorkerProcess,
)
from cae.recipe import DataRecipe
from cae.request import TrainRequest
from cae.spec import ArchitectureSpec, preset
from cae.store import list_runs, load_run
from cae.training import TrainConfig
from tests.runs import STRIDED_ONE_TAP_64

TIMEOUT = 120


def request(
    data: int | DataRecipe, config: TrainConfig, name: str, spec: ArchitectureSpec | None = None
) -> TrainRequest:
    """The classic preset on ``data`` mnist-sample images (train and test each), or a recipe."""
    recipe = data if isinstance(data, DataRecipe) else DataRecipe("mnist-sample", limit=data)
    return TrainRequest(spec or preset("classic"), recipe, config, name)


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


@pytest.mark.slow
def test_a_job_runs_in_the_background_finishes_and_is_saved(tmp_path):
    jobs = JobManager()
    job = jobs.start(
        "alice",
        request(256, TrainConfig(epochs=3, batch_size=8, preview_count=2), "background run"),
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
    record = json.loads((tmp_path / job.run_id / "train.json").read_text())
    assert record["backend"] == "local"  # where it ran (issue 29: "ray" on a cluster)
    assert record["host"] == socket.gethostname()  # the estimate counts only runs timed here
    assert set(info.metrics) >= {"mse", "psnr", "ssim", "params", "latent_shape", "wall_seconds"}
    assert info.metrics["params"] == 2690 and info.metrics["latent_shape"] == [7, 7, 1]
    assert jobs.running_jobs() == []
    assert job.save() == job.run_id  # saving again gives the same run


@pytest.mark.slow
def test_stop_then_save_keeps_the_last_completed_epoch(tmp_path):
    jobs = JobManager()
    job = jobs.start(
        "bob",
        request(
            256,
            TrainConfig(epochs=200, batch_size=32, validation_split=0.0, preview_count=0),
            "stopped run",
        ),
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
    outcome = loaded.train_config["outcome"]
    assert outcome["stopped"] is True and outcome["state"] == "stopped"
    assert outcome["epochs_completed"] == result.epochs_completed
    assert loaded.train_config["data"] == DataRecipe("mnist-sample", limit=256).to_dict()
    # the saved model is the trained one (its weights travelled through a file, not this process)
    assert result.weights_digest == weights_digest(loaded.built.autoencoder)
    assert not list(tmp_path.glob(".tmp-*"))  # the staging folder is gone once published


@pytest.mark.slow
def test_a_job_stopped_before_its_first_epoch_cannot_be_saved(tmp_path):
    jobs = JobManager()
    job = jobs.start(
        "carol",
        request(64, TrainConfig(epochs=2, batch_size=32), "early"),
        root=tmp_path,
    )
    job.stop()
    assert job.wait(TIMEOUT)
    assert job.result.epochs_completed == 0
    with pytest.raises(ValueError, match="Received: epochs_completed=0"):
        job.save()


@pytest.mark.slow
def test_two_owners_train_at_once_and_see_only_their_own_progress(tmp_path):
    jobs = JobManager(slots=2)  # two training slots (the queue gives one per 2 cores)
    a = jobs.start(
        "ann",
        request(256, TrainConfig(epochs=2, batch_size=16, validation_split=0.0), "a"),
        root=tmp_path,
    )
    b = jobs.start(
        "ben",
        request(192, TrainConfig(epochs=3, batch_size=32, validation_split=0.0), "b"),
        root=tmp_path,
    )
    both_running = False
    deadline = time.monotonic() + TIMEOUT
    while not (a.done and b.done) and time.monotonic() < deadline:
        sa, sb = a.snapshot(), b.snapshot()
        both_running = both_running or (a.launched and b.launched and not (a.done or b.done))
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


@pytest.mark.slow
def test_the_same_owner_cannot_start_twice(tmp_path):
    jobs = JobManager()
    config = TrainConfig(epochs=200, batch_size=32, validation_split=0.0)
    first = jobs.start(
        "dan",
        request(128, config, "one"),
        root=tmp_path,
    )
    with pytest.raises(JobBusy, match="Received: owner='dan'"):
        jobs.start(
            "dan",
            request(128, config, "two"),
            root=tmp_path,
        )
    first.stop()
    assert first.wait(TIMEOUT)
    second = jobs.start(
        "dan",
        request(64, TrainConfig(epochs=1, batch_size=32), "three"),
        root=tmp_path,
        auto_save=False,
    )
    assert second.wait(TIMEOUT) and jobs.get("dan") is second
    assert second.result.epochs_completed == 1 and second.run_id is None


def test_a_job_that_cannot_train_is_refused_at_once(tmp_path):
    jobs = JobManager()
    wide = preset("classic").to_dict() | {"input_shape": [32, 32, 1]}
    with pytest.raises(ValueError, match="do not fit.*Received: images=\\[28, 28, 1\\]"):
        jobs.start(
            "eve",
            request(64, TrainConfig(epochs=1), "bad", ArchitectureSpec.from_dict(wide)),
            root=tmp_path,
        )
    assert jobs.get("eve") is None and jobs.running_jobs() == []


def test_an_error_in_the_worker_fails_the_job_with_its_message(tmp_path):
    """The worker loads the images from the request's recipe; a file that changed after it was
    chosen ends the job with the worker's own error message (and the next job of the same owner
    is not blocked)."""
    images = tmp_path / "images.npy"
    np.save(images, np.zeros((16, 28, 28), np.uint8))
    recipe = DataRecipe.for_file(images)
    np.save(images, np.ones((16, 28, 28), np.uint8))  # changed after it was chosen
    jobs = JobManager()
    job = start(jobs, "eve", recipe, TrainConfig(epochs=1), "bad", tmp_path / "runs")
    assert job.wait(TIMEOUT)
    assert job.result is None and job.error.startswith("RecipeError: "), job.error
    assert "has changed" in job.error
    snap = job.snapshot()
    assert snap.state == "failed" and snap.message.startswith("Training failed: RecipeError")
    assert job.run_id is None and list_runs(tmp_path / "runs") == []
    with pytest.raises(ValueError, match="no trained model"):
        job.save()


# ------------------------------------------------------------------ the worker process


def start(
    jobs: JobManager,
    owner: str,
    data: int | DataRecipe,
    config: TrainConfig,
    name: str,
    root,
    **options,
) -> TrainingJob:
    """``jobs.start`` for the classic preset on ``data`` mnist-sample images (or a recipe)."""
    return jobs.start(owner, request(data, config, name), root=root, **options)


@pytest.mark.slow
def test_training_runs_in_a_separate_process_that_exits(tmp_path):
    jobs = JobManager()
    job = start(jobs, "fay", 64, TrainConfig(epochs=1, batch_size=32), "elsewhere", tmp_path)
    poll_until(job, lambda s: job.worker_pid is not None)
    pid = job.worker_pid
    assert pid is not None and pid != os.getpid()
    assert job.wait(TIMEOUT) and job.run_id, job.snapshot().message
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not list(tmp_path.glob(".tmp-*"))


@pytest.mark.slow
def test_a_killed_worker_fails_the_job_with_a_message_and_saves_nothing(
    tmp_path, tmp_path_factory, monkeypatch
):
    # a killed worker runs no exit handler: AutoGraph's files go to pytest's folders, not /tmp
    monkeypatch.setenv("TMPDIR", str(tmp_path_factory.mktemp("killed-worker-tmp")))
    jobs = JobManager()
    job = start(
        jobs,
        "gus",
        256,
        TrainConfig(epochs=200, batch_size=32, validation_split=0.0),
        "killed",
        tmp_path,
    )
    poll_until(job, lambda s: s.state == "running")
    os.kill(job.worker_pid, signal.SIGKILL)  # what the kernel's out-of-memory killer does
    assert job.wait(TIMEOUT)
    snap = job.snapshot()
    assert snap.state == "failed"
    assert "killed by signal 9" in snap.message and "Received: exit_code=-9" in snap.message
    assert job.result is None and job.run_id is None
    with pytest.raises(ValueError, match="no trained model"):
        job.save()
    assert list_runs(tmp_path) == []
    # the manager is fine: the same owner trains again at once
    again = start(
        jobs,
        "gus",
        64,
        TrainConfig(epochs=1, batch_size=32),
        "after the crash",
        tmp_path,
    )
    assert again.wait(TIMEOUT) and again.run_id, again.snapshot().message


@pytest.mark.slow
def test_a_new_job_discards_the_unsaved_model_of_the_last_one(tmp_path):
    jobs = JobManager()
    config = TrainConfig(epochs=1, batch_size=32, validation_split=0.0)
    first = start(jobs, "hal", 64, config, "kept for a while", tmp_path, auto_save=False)
    assert first.wait(TIMEOUT) and first.result.saveable and first.run_id is None
    assert len(list(tmp_path.glob(".tmp-staged-*"))) == 1  # waiting for the user's Save
    assert list_runs(tmp_path) == []  # and not listed as a run
    second = start(jobs, "hal", 64, config, "next", tmp_path, auto_save=False)
    assert not list(tmp_path.glob(f".tmp-staged-{first.job_id}"))
    assert second.wait(TIMEOUT)
    with pytest.raises(ValueError, match="not kept"):
        first.save()
    jobs.forget("hal")
    assert not list(tmp_path.glob(".tmp-*"))


@pytest.mark.slow
def test_prewarm_keeps_a_ready_worker_for_the_next_job(tmp_path, monkeypatch):
    import cae.jobs

    monkeypatch.setattr(cae.jobs, "FEW_CPUS", 10**6)  # a small machine: no spare while training
    jobs = JobManager()
    try:
        jobs.prewarm()
        spare = jobs._spare
        assert spare is not None and spare.alive()
        messages = spare.messages()
        assert next(messages)["kind"] == "ready"  # TensorFlow imported, waiting for a job
        job = start(jobs, "ivy", 64, TrainConfig(epochs=1, batch_size=32), "warm", tmp_path)
        seen = poll_until(job, lambda s: job.worker_pid is not None)
        assert job.worker_pid == spare.pid
        assert START_MESSAGE not in {s.message for s in seen}  # no "TensorFlow takes a few s"
        assert jobs._spare is None  # not replaced while a job trains
        assert job.wait(TIMEOUT) and job.run_id, job.snapshot().message
        deadline = time.monotonic() + 10
        while jobs._spare is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert jobs._spare is not None and jobs._spare.pid != spare.pid
        # a bigger machine starts the next spare as soon as a job has taken the last one
        monkeypatch.setattr(cae.jobs, "FEW_CPUS", 0)
        second_spare = jobs._spare
        job = start(jobs, "ivy", 64, TrainConfig(epochs=1, batch_size=32),
                    "warm again", tmp_path)  # fmt: skip
        assert jobs._spare is not None and jobs._spare is not second_spare and not job.done
        assert job.wait(TIMEOUT) and job.run_id, job.snapshot().message
    finally:
        jobs.close_spare()
    assert jobs._spare is None


@pytest.mark.slow
def test_a_worker_whose_server_goes_away_saves_what_it_trained(tmp_path):
    """The server process dies mid-training: its worker sees its input close, stops after the
    current batch and saves the completed epochs as a run, marked server_exited."""
    root = tmp_path / "runs"
    config = TrainConfig(epochs=200, batch_size=32, validation_split=0.0)
    job = {"cmd": "train", "job_id": "orphan1", "request": request(256, config, "orphan").to_dict()}
    worker = WorkerProcess()
    try:
        assert worker.send({**job, "root": str(root), "auto_save": False})
        kinds = []
        for message in worker.messages():
            kinds.append(message["kind"])
            if message["kind"] == "progress" and message["epoch"] >= 1:
                worker.close_input()  # what the server's death looks like from the worker
            if message["kind"] in ("saved", "error"):
                saved = message
        assert worker.finish(TIMEOUT) == 0
    finally:
        worker.close()
    assert kinds[0] == "ready" and kinds[-1] == "end" and "result" in kinds
    assert saved["kind"] == "saved", saved
    run = load_run(saved["run_id"], root)
    assert run.train_config["server_exited"] is True and run.train_config["outcome"]["stopped"]
    assert 1 <= run.info.epochs < 200


def test_progress_messages_round_trip():
    from cae.progress import Progress
    from cae.protocol import progress_from_message, progress_to_message

    images = np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)
    progress = Progress(state="running", epoch=2, epochs=5, batch=7, batches_per_epoch=9,
                        loss=0.25, val_loss=float("nan"), history={"loss": [0.5, 0.3]},
                        preview_originals=images, preview_reconstructions=images[::-1],
                        message="hi")  # fmt: skip
    line = json.dumps(progress_to_message(progress))
    back = progress_from_message(json.loads(line))
    assert back.epoch == 2 and back.history == {"loss": [0.5, 0.3]} and back.message == "hi"
    assert np.isnan(back.val_loss) and back.preview_inputs is None
    assert np.array_equal(back.preview_originals, images)
    assert np.array_equal(back.preview_reconstructions, images[::-1])
    # the next report with the same preview objects does not send them again
    later = Progress(state="running", epoch=2, epochs=5, batch=8, batches_per_epoch=9,
                     preview_originals=images, preview_reconstructions=images[::-1].copy())  # fmt: skip
    message = progress_to_message(later, progress)
    assert message["preview_originals"] == {"__same__": True}
    assert message["preview_reconstructions"] != {"__same__": True}  # a new array
    assert len(json.dumps(message)) < len(line)
    again = progress_from_message(json.loads(json.dumps(message)), back)
    assert again.preview_originals is back.preview_originals and again.batch == 8
    assert np.array_equal(again.preview_reconstructions, images[::-1])
    bad = progress_to_message(progress)
    bad["preview_originals"]["dtype"] = "|O"
    with pytest.raises(ValueError, match="only numeric arrays"):
        progress_from_message(bad)


@pytest.mark.slow
def test_a_stop_at_once_on_a_spare_worker_ends_the_job_cleanly(tmp_path):
    """stop() right after start, while the job line may not have reached the spare yet."""
    jobs = JobManager()
    try:
        jobs.prewarm()
        assert next(jobs._spare.messages())["kind"] == "ready"
        job = start(jobs, "joe", 64, TrainConfig(epochs=5), "stopped at once",
                    tmp_path)  # fmt: skip
        job.stop()
        assert job.wait(TIMEOUT)
        assert job.error is None, job.error
        assert job.result.state == "stopped" and job.result.epochs_completed == 0
        assert job.run_id is None and list_runs(tmp_path) == []
    finally:
        jobs.close_spare()


def test_a_diverging_job_ends_failed_with_the_reason_and_nothing_saved(tmp_path):
    # linear activations and SGD at the largest learning rate the limits allow: the loss is
    # inf/NaN within the first few batches
    linear = preset("classic").to_dict()
    for layer in linear["encoder"] + linear["decoder"]:
        if layer["type"] == "conv":
            layer["activation"] = "linear"
    config = TrainConfig(
        epochs=2, batch_size=16, optimizer="sgd", learning_rate=10.0, loss="mse",
        validation_split=0.0,
    )  # fmt: skip
    jobs = JobManager()
    spec = ArchitectureSpec.from_dict(linear)
    job = jobs.start("kim", request(64, config, "diverging", spec), root=tmp_path)
    assert job.wait(TIMEOUT)
    snap = job.snapshot()
    assert (
        snap.state == "failed"
        and "diverged" in snap.message
        and "lower learning rate" in snap.message
    )
    assert job.error is None and job.result.failed and job.result.epochs_completed == 0
    with pytest.raises(ValueError, match="Received: epochs_completed=0"):
        job.save()
    assert list_runs(tmp_path) == [] and not list(tmp_path.glob(".tmp-*"))


@pytest.mark.slow
def test_a_job_leaves_no_autograph_files_in_the_temporary_folder(tmp_path, monkeypatch):
    """TensorFlow's AutoGraph writes the code it converts to the temporary folder and deletes it
    at exit, which the worker's quick exit skipped: a job left 4 files there, a server thousands."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))
    jobs = JobManager()
    config = TrainConfig(epochs=1, batch_size=32, preview_count=2)
    job = start(jobs, "gil", 64, config, "tidy", tmp_path / "runs")
    poll_until(job, lambda s: job.worker_pid is not None)
    pid = job.worker_pid
    assert job.wait(TIMEOUT) and job.run_id, job.snapshot().message
    deadline = time.monotonic() + TIMEOUT
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the worker did not exit"
        time.sleep(0.05)
    assert not list(temporary.glob("__autograph_generated_file*"))


def strided_request(tmp_path, name: str) -> TrainRequest:
    """One step (8 images, batch 8, no validation) of STRIDED_ONE_TAP_64 on random 64x64 images."""
    path = tmp_path / "noise64.npy"
    np.save(path, np.random.default_rng(0).integers(0, 256, (18, 64, 64), dtype=np.uint8))
    config = TrainConfig(epochs=1, batch_size=8, validation_split=0.0, preview_count=0)
    recipe = DataRecipe.for_file(path, limit=8)
    return TrainRequest(ArchitectureSpec.from_dict(STRIDED_ONE_TAP_64), recipe, config, name)


@pytest.mark.slow
def test_a_strided_one_tap_design_trains_in_a_worker_with_onednn_off(tmp_path, monkeypatch):
    """oneDNN's CPU kernels crash a worker training a 1x1 (transposed) convolution strided by 2
    (a SIGSEGV, measured): such a job gets a plain worker with TF_ENABLE_ONEDNN_OPTS=0 and
    trains; the waiting spare (oneDNN on) is left for the next job."""
    import cae.jobs

    monkeypatch.setattr(cae.jobs, "FEW_CPUS", 10**6)  # no second spare while the job trains
    jobs = JobManager()
    try:
        jobs.prewarm()
        spare = jobs._spare
        job = jobs.start("una", strided_request(tmp_path, "strided"), root=tmp_path)
        assert job.onednn_off and jobs._spare is spare  # the spare is not this job's
        seen = poll_until(job, lambda s: not s.active)
        assert job.wait(TIMEOUT) and job.error is None and job.run_id, job.snapshot().message
        assert ONEDNN_OFF_MESSAGE in {s.message for s in seen}
        assert job.result.epochs_completed == 1 and job.worker_pid != spare.pid
        (info,) = list_runs(tmp_path)
        assert info.metrics["latent_shape"] == [32, 32, 4]
    finally:
        jobs.close_spare()


def test_a_worker_with_onednn_on_refuses_a_strided_one_tap_design_instead_of_crashing(tmp_path):
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0":
        pytest.skip("oneDNN is off for every worker here")
    worker = WorkerProcess()  # the template's oneDNN setting: on
    try:
        command = {
            "cmd": "train",
            "job_id": "abc",
            "request": strided_request(tmp_path, "refused").to_dict(),
            "root": str(tmp_path),
        }
        assert worker.send(command)
        messages = list(worker.messages())
        (error,) = [m["message"] for m in messages if m["kind"] == "error"]
        assert "oneDNN cannot train" in error and "Received: TF_ENABLE_ONEDNN_OPTS=" in error
        assert messages[-1]["kind"] == "end" and worker.finish(30) == 1
    finally:
        worker.close()
