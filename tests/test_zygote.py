"""cae.zygote: workers forked from a template process with TensorFlow imported behave like plain
``python -m cae.worker`` processes (environment, exit codes, a dead template, the switch)."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from cae import zygote
from cae.jobs import JobManager, WorkerProcess
from cae.recipe import DataRecipe
from cae.request import TrainRequest
from cae.spec import preset
from cae.training import TrainConfig

TIMEOUT = 120


def first_message(worker: WorkerProcess) -> dict:
    """The worker's first protocol line ("ready" once it can take a job)."""
    return next(worker.messages())


def start_template() -> None:
    """Make sure this process's template runs (by forking a worker that exits at once)."""
    worker = WorkerProcess()
    worker.close_input()
    worker.finish(60)
    worker.close()


def small_request(name: str) -> TrainRequest:
    config = TrainConfig(epochs=1, batch_size=32, validation_split=0.0, preview_count=0)
    return TrainRequest(preset("classic"), DataRecipe("mnist-sample", limit=64), config, name)


@pytest.fixture
def fresh_template():
    """This process's template ended before and after the test, so the test starts its own
    (each costs a TensorFlow import: only for tests that need a template of their own)."""
    zygote.close_shared()
    yield
    zygote.close_shared()


def test_workers_are_forked_from_one_template_and_say_ready():
    workers = [WorkerProcess(), WorkerProcess()]
    try:
        assert all(isinstance(w.process, zygote.ForkedChild) for w in workers)
        assert all(first_message(w)["kind"] == "ready" for w in workers)
        pids = {w.pid for w in workers}
        assert len(pids) == 2 and os.getpid() not in pids
        parents = {psutil.Process(pid).ppid() for pid in pids}
        # both children of the one template (this failed once under load, unexplained: the
        # message says which processes the parents were, for the next time)
        assert parents == {zygote._shared.process.pid}, (
            parents,
            zygote._shared.process.pid,
            [(p, psutil.Process(p).cmdline()) for p in parents if psutil.pid_exists(p)],
        )
        assert {psutil.Process(pid).name() for pid in pids} == {"cae-worker"}  # in top and ps
    finally:
        for worker in workers:
            worker.close_input()  # a worker without a job exits when its input closes
            assert worker.finish(30) == 0
            worker.close()


@pytest.mark.slow
def test_a_forked_worker_takes_the_callers_environment_at_its_start(tmp_path, monkeypatch):
    """CAE_STAGING_DIR is read by the worker when it keeps an unsaved model: set after the
    template started, it must still be the one the worker uses."""
    start_template()  # with the environment of before
    staging = tmp_path / "staging"
    monkeypatch.setenv("CAE_STAGING_DIR", str(staging))
    root = tmp_path / "missing" / "runs"  # cannot be made: the model is kept in the fallback
    root.parent.write_text("a file where the runs folder's parent should be")
    jobs = JobManager()
    job = jobs.start("zed", small_request("kept"), root=root)
    assert job.wait(TIMEOUT) and job.error is None, job.snapshot().message
    assert job.staged_path is not None and staging in job.staged_path.parents
    assert isinstance(job.worker_pid, int)


def test_an_import_time_variable_that_differs_gets_a_plain_process(monkeypatch):
    start_template()  # with today's TF_* variables
    monkeypatch.setenv(
        "TF_CPP_MIN_LOG_LEVEL", "1" if os.environ.get("TF_CPP_MIN_LOG_LEVEL") != "1" else "2"
    )
    worker = WorkerProcess()
    try:
        assert not isinstance(worker.process, zygote.ForkedChild)  # TensorFlow reads it at import
        assert first_message(worker)["kind"] == "ready"
    finally:
        worker.close_input()
        worker.finish(30)
        worker.close()


def test_the_switch_turns_forking_off(monkeypatch):
    before = zygote._shared
    monkeypatch.setenv(zygote.ENV_SWITCH, "0")
    with open(os.devnull, "wb") as sink:
        assert zygote.spawn_worker([], sink) is None
    assert zygote._shared is before  # no template was started for it (nor a TensorFlow import)


def test_a_killed_worker_reports_the_signal_like_popen():
    worker = WorkerProcess()
    try:
        assert first_message(worker)["kind"] == "ready"
        os.kill(worker.pid, signal.SIGKILL)
        assert worker.finish(30) == -signal.SIGKILL
        assert not worker.alive()
    finally:
        worker.close()


@pytest.mark.slow
def test_a_dead_template_leaves_its_workers_running_and_a_new_one_starts(fresh_template):
    first = WorkerProcess()
    try:
        assert first_message(first)["kind"] == "ready"
        old = zygote._shared
        old.process.kill()
        deadline = time.monotonic() + 30
        while not old.dead and time.monotonic() < deadline:
            time.sleep(0.05)
        assert old.dead and first.alive()  # the worker lives on without its template
        second = WorkerProcess()  # a new template forks it
        try:
            assert second.pid is None  # asked for while that template imports: nobody waits
            assert first_message(second)["kind"] == "ready"
            assert zygote._shared is not old
        finally:
            second.close_input()
            assert second.finish(30) == 0
            second.close()
        first.close_input()  # its exit code went with the template: ended is all we learn
        assert first.finish(30) == zygote.UNKNOWN_EXIT
    finally:
        first.close()


ORPHAN_SCRIPT = """
import ctypes, json, time
from cae import zygote
from cae.jobs import WorkerProcess

# This process adopts its orphaned descendants, as a server running as a container's PID 1 does.
assert ctypes.CDLL(None).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
worker = WorkerProcess()
assert next(worker.messages())["kind"] == "ready"
template = zygote._shared
template.process.kill()
while not template.dead:
    time.sleep(0.05)
worker.close_input()  # the worker, now this process's child, exits 0: reaped here with its code
print(json.dumps({"code": worker.finish(60)}))
"""


@pytest.mark.slow
def test_an_orphaned_worker_adopted_by_this_process_is_reaped_with_its_exit_code():
    import json
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", ORPHAN_SCRIPT], cwd=repo, capture_output=True, text=True,
        timeout=180, env={**os.environ, "PYTHONPATH": str(repo)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["code"] == 0  # its own code, not a zombie waited on for ever
