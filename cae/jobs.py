"""Background training jobs that a UI polls; each job trains in its own process.

``JOBS.start(owner, request)`` takes a :class:`cae.request.TrainRequest` (what to train, plain
data) and returns a :class:`TrainingJob` at once; a thread of this process hands the request, as
JSON, to a worker process (``python -m cae.worker``, see that module for why and for the protocol),
which loads the images from the request's data recipe itself, and turns the worker's messages into
a plain progress object. The worker is forked from a template process that has TensorFlow
imported already (``cae.zygote``), or started as a plain process where that cannot be, and where
the design needs oneDNN's custom operations off (``cae.onednn``: they crash its training). The page
polls ``job.snapshot()`` (a copy, taken under a lock) and calls ``job.stop()``. Each owner (a
browser session) has at most one running job; owners share nothing. A run that finishes normally
is saved by the worker; a stopped or failed one (its last completed epoch) is saved with
``job.save()``. ``JOBS.prewarm()`` keeps one worker with TensorFlow already
imported waiting, so a Train click starts at once.

Every job goes through the server's one queue (``cae.admission.SCHEDULER``): ``start`` queues it
with its estimated memory (``cae.preflight``) and seconds, and its worker starts when the queue
admits it (trainings within the slots, a student's second only on a slot nobody else's waits
for; memory within the budget; Train clicks before experiment runs). A queued job says its place and estimated start in its
progress message; ``stop()`` takes it out of the queue. The queue is written to
``<runs folder>/.queue.json``; ``JOBS.restore()`` at the server's start requeues the trainings that
were waiting and records the ones that were running as interrupted. No Streamlit here.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from cae.admission import SCHEDULER, Scheduler
from cae.onednn import environment_for
from cae.progress import Progress
from cae.protocol import encode_value, progress_from_message
from cae.ray_dispatch import cluster_address, dispatcher_command
from cae.request import TrainRequest
from cae.training import TrainOutcome
from cae.upload_files import hold_upload, release_upload
from cae.zygote import ForkedChild, spawn_worker, worker_environment


class JobBusy(RuntimeError):
    """The owner already has a training job running."""


class UnsavedEpochs(JobBusy):
    """The owner's last job kept epochs that are not saved, and the caller did not agree to
    discard them (``JobManager.start(..., discard_unsaved=False)``)."""


FEW_CPUS = 2  # with this many CPUs or fewer, no spare is started while a job trains
FINISHED_JOB_SECONDS = 6 * 3600  # a finished job (and its previews) is kept this long for its tab
MAX_FINISHED_JOBS = 200  # and at most this many finished jobs are kept in all, newest first
QUEUE_FILE = ".queue.json"  # in the runs folder: hidden, never listed as a run
DEFAULT_SECONDS = 60.0  # a training's estimated seconds when its number of images is not known
START_MESSAGE = "Starting a training process (TensorFlow takes a few seconds to load)."
ONEDNN_OFF_MESSAGE = (
    "Starting a training process with oneDNN off (a kernel 1 tap wide along a strided axis "
    "crashes oneDNN's; TensorFlow takes a few seconds to load)."
)


class WorkerProcess:
    """A ``python -m cae.worker`` child: JSON lines in and out, its standard error in a temp file."""

    def __init__(self, *, warm_up: bool = False, extra_env: dict[str, str] | None = None) -> None:
        """Start the process; it imports TensorFlow (``warm_up``: and trains a tiny model once,
        for a spare that waits anyway) and then waits for one job. ``extra_env`` is set on top of
        the caller's environment (a variable read at TensorFlow's import makes it a plain process)."""
        # closed in close(), after the process has ended
        self._log: IO[bytes] = tempfile.TemporaryFile(prefix="cae-worker-", suffix=".log")  # noqa: SIM115
        self.extra_env = dict(extra_env or {})
        env = {**worker_environment(), **self.extra_env}
        argv = ["--warm-up"] if warm_up else []
        command = [sys.executable, "-m", "cae.worker", *argv]
        self.cluster = cluster_address()  # where its job will run (a spare is kept for that)
        if self.cluster is not None:  # CAE_CLUSTER: the job runs on Ray (issue 29)
            forked, command = None, dispatcher_command()
        else:
            forked = spawn_worker(argv, self._log, env)  # TensorFlow imported: ~0.1 s, not ~4
        self.process: subprocess.Popen[str] | ForkedChild = forked or subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        self._write_lock = threading.Lock()
        self._ready = False

    @property
    def pid(self) -> int | None:
        """The process id (None while a forked worker waits for the template to fork it)."""
        return self.process.pid

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process.poll() is None

    def send(self, message: dict[str, Any]) -> bool:
        """Write one command line; False when the process no longer reads."""
        line = json.dumps(encode_value(message), separators=(",", ":"))
        with self._write_lock:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write(line + "\n")
                self.process.stdin.flush()
                return True
            except (BrokenPipeError, OSError, ValueError):
                return False

    def messages(self) -> Any:
        """The messages the worker writes, until it closes its output."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue  # not ours (the worker sends everything else to stderr)
            if isinstance(message, dict):
                if message.get("kind") == "ready":
                    self._ready = True
                yield message

    def ready_now(self) -> bool:
        """True once the worker has said it is ready (TensorFlow loaded), without waiting."""
        if self._ready:
            return True
        try:  # before a job, "ready" is the only line it writes: anything to read means ready
            readable, _, _ = select.select([self.process.stdout], [], [], 0)
        except (OSError, ValueError, TypeError):
            return False
        return bool(readable)

    def close_input(self) -> None:
        """Close the worker's input: a spare then exits, a training worker stops and saves."""
        with self._write_lock, contextlib.suppress(OSError, ValueError):
            if self.process.stdin is not None:
                self.process.stdin.close()

    def finish(self, timeout: float = 30.0) -> int:
        """Wait for the process to exit (killing it after ``timeout`` s); its exit code."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def log_tail(self, lines: int = 4) -> str:
        """The last lines the process wrote to standard error."""
        try:
            self._log.flush()
            size = self._log.seek(0, os.SEEK_END)
            self._log.seek(max(0, size - 4096))
            text = self._log.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        kept = [line.strip() for line in text.splitlines() if line.strip()]
        error = getattr(self.process, "error", "")  # a forked worker that never started
        return " | ".join([*kept[-lines:], *([error] if error else [])])

    def close(self) -> None:
        """Release the pipes and the log (after ``finish``)."""
        for stream in (self.process.stdin, self.process.stdout, self._log):
            with contextlib.suppress(OSError, ValueError):
                if stream is not None:
                    stream.close()


def _exit_description(code: int) -> str:
    if code < 0:
        signal_number = -code
        hint = " (the system may have run out of memory)" if signal_number == 9 else ""
        return f"it was killed by signal {signal_number}{hint}"
    return f"it exited with code {code}"


class TrainingJob:
    """One training run in a worker process, followed by a thread; public methods are thread-safe."""

    def __init__(
        self,
        owner: str,
        request: TrainRequest,
        *,
        root: Any = None,
        auto_save: bool = True,
        worker: WorkerProcess | None = None,
        student: str | None = None,
        kind: str = "train",
    ) -> None:
        """Prepare a job; ``start()`` launches it, on ``worker`` if given. ``student`` is whose
        work it is for the queue (default ``owner``, the key its tab finds it by); ``kind`` is
        ``train`` (a Train click) or ``experiment`` (a run of an experiment)."""
        if not isinstance(request, TrainRequest):
            raise ValueError(
                f"a job needs a cae.request.TrainRequest. Received: type={type(request).__name__}"
            )
        from cae.store import models_dir

        self.request = request
        self.job_id = secrets.token_hex(6)
        self.owner = owner
        self.student = student or owner
        self.kind = kind
        self.entry_id: str | None = None  # its entry in the queue, once queued
        self.scheduler: Scheduler | None = None
        self.launched = False  # True once the queue admitted it and its thread started
        self.name = request.name.strip()
        self.root = Path(root).resolve() if root is not None else models_dir()
        self.auto_save = auto_save
        self.created = time.time()
        self.result: TrainOutcome | None = None
        self.error: str | None = None
        self.run_id: str | None = None
        self.save_error: str | None = None
        self.on_done: Any = None  # called (with the job) once it has ended
        self.ended: float | None = None  # when it ended (time.time())
        self._spare: WorkerProcess | None = None  # handed to _run; stop() writes to _worker
        self._worker: WorkerProcess | None = None
        self._staged: Path | None = None
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._progress = Progress(state="starting", epochs=self.config.epochs)
        self._final: Progress | None = None
        self._extra_env = environment_for(request.spec)  # oneDNN off where the design needs it
        self._thread = threading.Thread(
            target=self._run, name=f"cae-train-{owner}-{self.job_id}", daemon=True
        )
        self._use_spare(worker)
        # Bounded disk (issue 26): the upload it trains on is kept from now (queued) to its end.
        with contextlib.suppress(OSError):  # a record that cannot be written: the job goes on
            hold_upload(request.data.upload_path, self.job_id, owner)

    @property
    def config(self) -> Any:
        """The request's training config (a ``cae.training.TrainConfig``)."""
        return self.request.config

    def _use_spare(self, worker: WorkerProcess | None) -> None:
        """Run on ``worker`` (a spare, maybe still loading TensorFlow) instead of a new one."""
        self._spare = worker
        ready = self._fits(worker) and worker is not None and worker.ready_now()
        if ready:
            self._progress.message = "Starting."
        else:
            self._progress.message = ONEDNN_OFF_MESSAGE if self._extra_env else START_MESSAGE

    def _fits(self, worker: WorkerProcess | None) -> bool:
        """True when ``worker`` runs and was started with the environment this job needs."""
        return worker is not None and worker.alive() and worker.extra_env == self._extra_env

    @property
    def onednn_off(self) -> bool:
        """True when this job's design trains with oneDNN's custom operations off."""
        return bool(self._extra_env)

    # -- control
    def start(self) -> TrainingJob:
        """Start the job (once)."""
        self.launched = True
        self._thread.start()
        return self

    @property
    def queued(self) -> bool:
        """True while the job waits in the queue (not launched, not ended)."""
        return not self.launched and not self.done

    def place(self) -> tuple[int, float] | None:
        """The queued job's place in the queue (1: next) and estimated start in seconds."""
        if not self.queued or self.scheduler is None or self.entry_id is None:
            return None
        return self.scheduler.where(self.entry_id)

    def stop(self) -> None:
        """Ask training to stop after the current batch (keeps the last completed epoch); a
        queued job leaves the queue and ends at once."""
        self._stop.set()
        if not self.launched and not self.done:
            with self._lock:
                self._progress.state = "stopped"
                self._progress.message = "Stopped in the queue, before it started."
            self._publish_end()
            if self.scheduler is not None and self.entry_id is not None:
                self.scheduler.release(self.entry_id, "stopped", "Stopped before it started.")
            callback = self.on_done
            if callback is not None:
                with contextlib.suppress(Exception):
                    callback(self)
            return
        with self._lock:
            worker = self._worker
        if worker is not None and not self.done:
            worker.send({"cmd": "stop"})

    @property
    def stop_requested(self) -> bool:
        """True once ``stop()`` was called."""
        return self._stop.is_set()

    @property
    def done(self) -> bool:
        """True once the job has ended (outcome or error set, the worker gone)."""
        return self._done.is_set()

    @property
    def running(self) -> bool:
        """True while the job has not ended."""
        return not self._done.is_set()

    @property
    def worker_pid(self) -> int | None:
        """The process id of the job's worker, once it has one."""
        with self._lock:
            return self._worker.pid if self._worker is not None else None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job is done (or ``timeout`` seconds pass); returns ``done``."""
        return self._done.wait(timeout)

    def snapshot(self) -> Progress:
        """A copy of the latest progress, safe to read while training goes on; a queued job's
        message says its place and estimated start."""
        where = self.place()
        with self._lock:
            progress = self._progress.copy()
        if where is not None:
            place, seconds = where
            progress.message = queue_message(place, seconds)
        return progress

    # -- the thread that follows the worker
    def _set_progress(self, progress: Progress) -> None:
        with self._lock:
            if progress.active:
                self._progress = progress
            else:  # the final word is published once the run is saved, together with ``done``
                self._final = progress

    def _update_message(self, message: str) -> None:
        with self._lock:
            progress = self._progress.copy()
            progress.message = message
            self._progress = progress

    def _command(self) -> dict[str, Any]:
        return {
            "cmd": "train",
            "job_id": self.job_id,
            "request": self.request.to_dict(),
            "root": os.fspath(self.root),
            "auto_save": self.auto_save,
        }

    def _follow(self, worker: WorkerProcess) -> bool:
        """Read the worker's messages until it ends; True when it said ``end``."""
        previous: Progress | None = None
        for message in worker.messages():
            kind = message.get("kind")
            if kind == "progress":
                previous = progress_from_message(message, previous)
                self._set_progress(previous)
            elif kind == "result":
                self.result = TrainOutcome.from_message(message)
                if self.result.saveable and self.auto_save and self.result.state == "finished":
                    self._update_message("Saving the run.")
            elif kind == "saved":
                self.run_id = str(message["run_id"])
            elif kind == "staged":
                self._staged = Path(str(message["path"]))
            elif kind == "save_error":
                self.save_error = str(message.get("message"))
            elif kind == "error":
                self.error = str(message.get("message"))
            elif kind == "end":
                return True
        return False

    def _run(self) -> None:
        worker, self._spare = self._spare, None
        try:
            command = self._command()
            if not self._fits(worker):
                if worker is not None:  # gone, or a spare whose oneDNN setting is not this job's
                    worker.close_input()
                    worker.finish(5.0)
                    worker.close()
                worker = WorkerProcess(extra_env=self._extra_env)
                self._update_message(ONEDNN_OFF_MESSAGE if self._extra_env else START_MESSAGE)
            if not worker.send(command):
                raise RuntimeError("the training process did not accept the job")
            with self._lock:  # only now may stop() write to it: the job line must come first
                self._worker = worker
            if self._stop.is_set():  # a stop that came before the worker had the job
                worker.send({"cmd": "stop"})
            ended = self._follow(worker)
            code = worker.finish()
            if not ended and self.error is None:
                tail = worker.log_tail()
                self.error = (
                    f"the training process ended unexpectedly: {_exit_description(code)}"
                    + (f"; its last words: {tail}" if tail else "")
                    + f". Received: exit_code={code}"
                )
        except Exception as error:  # noqa: BLE001 - reported to the page, never raised in a thread
            self.error = f"{type(error).__name__}: {error}"
            if worker is not None and worker.alive():
                worker.close_input()
                worker.finish(5.0)
        finally:
            if worker is not None:
                worker.close()
            with contextlib.suppress(OSError):  # its upload's keep time starts now
                release_upload(self.request.data.upload_path, self.job_id)
            self._publish_end()
            if self.scheduler is not None and self.entry_id is not None:
                state = "failed" if self.error is not None else "done"
                self.scheduler.release(self.entry_id, state, self.snapshot().message)
            callback = self.on_done
            if callback is not None:
                with contextlib.suppress(Exception):
                    callback(self)

    def _publish_end(self) -> None:
        """Set the final progress and ``done`` together, so a snapshot showing the end means done."""
        with self._lock:
            final = (self._final or self._progress).copy()
            if self.error is not None:
                final.state = "failed"
                final.message = f"Training failed: {self.error}"
            elif self.run_id is not None:
                final.message = f"{final.message} Saved as {self.run_id}.".strip()
            elif self.save_error is not None and self._staged is not None:
                final.message = (
                    f"{final.message} Saving failed ({self.save_error}); the trained model is "
                    "kept: fix the runs folder and save it again."
                ).strip()
            elif self.save_error is not None:
                final.message = f"{final.message} Saving failed: {self.save_error}".strip()
            self._progress = final
            self.ended = time.time()
            self._done.set()

    # -- saving
    def save(self, name: str | None = None) -> str:
        """Save the kept model of a stopped or failed job (its last completed epoch) as a run and
        return the run id; saving twice returns the same id."""
        from cae.store import publish_run

        with self._save_lock:
            if self.run_id is not None:
                return self.run_id
            if not self.done:
                raise RuntimeError(
                    "training is still running: stop it and wait until it has ended before "
                    f"saving. Received: state={self.snapshot().state!r}"
                )
            result = self.result
            if result is None:
                raise ValueError(
                    f"there is no trained model to save (training failed). Received: error={self.error!r}"
                )
            if result.epochs_completed == 0:
                raise ValueError(
                    "training stopped before the first epoch completed: there is nothing to save. "
                    "Received: epochs_completed=0"
                )
            if self._staged is None:
                raise ValueError(
                    "the trained model was not kept, so it cannot be saved. "
                    f"Received: save_error={self.save_error!r}"
                )
            name = (name or self.name).strip() or self.name
            self.run_id = publish_run(self._staged, name=name, root=self.root)
            self._staged = None
            self.name = name
            self.save_error = None  # a retry that worked: the earlier failure is history
        self._update_message(f"{result.message} Saved as {self.run_id}.")
        return self.run_id

    @property
    def staged_path(self) -> Path | None:
        """The folder of the kept, unsaved run, if any."""
        with self._save_lock:
            return self._staged

    @property
    def kept(self) -> bool:
        """True while the job's trained model is staged, waiting for a save (never otherwise)."""
        with self._save_lock:
            return self._staged is not None and self._staged.is_dir() and self.run_id is None

    @property
    def unsaved_epochs(self) -> int:
        """The completed epochs of an ended job that are kept but not saved (what ``discard()``
        or a new job of the same owner would delete); 0 when there are none."""
        with self._save_lock:
            staged, run_id = self._staged, self.run_id
        result = self.result
        if not self.done or run_id is not None or staged is None or result is None:
            return 0
        return int(result.epochs_completed)

    def discard(self) -> None:
        """Delete the kept model of an ended job that was not saved (nothing else is touched)."""
        with self._save_lock:
            staged, self._staged = self._staged, None
        if staged is not None and self.done:
            from cae.store import discard_staged  # both staging places of the job (issue 26)

            try:
                discard_staged(staged, self.root)
            except ValueError:  # not a staging folder of this runs folder: as before
                shutil.rmtree(staged.parent, ignore_errors=True)


def queue_message(place: int, seconds: float) -> str:
    """What a queued job says: its place and estimated start."""
    wait = "as soon as one ends" if seconds < 1 else f"in about {_duration(seconds)}"
    return (
        f"Queued: place {place} in the server's queue; estimated start {wait} "
        "(other trainings use the server's training slots or memory)."
    )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


STALE_JOB_FOLDER_SECONDS = 600.0


def remove_stale_job_folders(max_age_s: float = STALE_JOB_FOLDER_SECONDS) -> list[str]:
    """Remove ``cae-job-*`` folders of the temporary folder older than ``max_age_s``: earlier
    versions copied a job's images there as float32 ``.npy`` files, and a killed server left them
    behind (jobs now pass a data recipe and write nothing there). Returns the names removed."""
    removed = []
    cutoff = time.time() - max_age_s
    for folder in Path(tempfile.gettempdir()).glob("cae-job-*"):
        with contextlib.suppress(OSError):
            if folder.is_dir() and not folder.is_symlink() and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder.name)
    return removed


class JobManager:
    """The training jobs of every owner: one running job per owner, the latest kept per owner."""

    def __init__(self, scheduler: Scheduler | None = None, *, slots: int | None = None) -> None:
        """An empty manager (no spare worker until ``prewarm``) over ``scheduler`` (default: a
        queue of its own in memory, with ``slots`` training slots)."""
        self.scheduler = scheduler if scheduler is not None else Scheduler(slots=slots)
        self._lock = threading.Lock()
        self._jobs: dict[str, TrainingJob] = {}
        self._spare: WorkerProcess | None = None
        self._keep_spare = False
        self._closed = False
        self._restored = False
        atexit.register(self.close_spare)
        remove_stale_job_folders()

    def prewarm(self) -> None:
        """Keep one worker process with TensorFlow set up waiting for the next job: started
        now and after each job start, except that with 2 CPUs or fewer it is not started while
        a job trains (its warm-up takes ~0.9 CPU-seconds from it when forked from the template,
        ~5 as a plain process) but when that job ends."""
        with self._lock:
            self._keep_spare = True
            self._ensure_spare_locked()

    def _ensure_spare_locked(self) -> None:
        if not self._keep_spare or self._closed:
            return
        spare = self._spare
        if spare is not None and spare.alive() and spare.cluster == cluster_address():
            return
        if (os.cpu_count() or 1) <= FEW_CPUS and any(not job.done for job in self._jobs.values()):
            return
        if self._spare is not None:
            self._spare.close()
        self._spare = WorkerProcess(warm_up=True)

    def _take_spare_locked(self) -> WorkerProcess | None:
        spare, self._spare = self._spare, None
        if spare is not None and (not spare.alive() or spare.cluster != cluster_address()):
            spare.close()  # ended, or made for another backend (CAE_CLUSTER changed since)
            return None
        return spare

    def close_spare(self) -> None:
        """Let the waiting spare worker exit (at shutdown)."""
        with self._lock:
            self._closed = True
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.close_input()
            with contextlib.suppress(Exception):
                spare.finish(5.0)
            spare.close()

    def _job_ended(self, job: TrainingJob) -> None:
        with self._lock:
            self._prune_locked()
            self._ensure_spare_locked()

    def _prune_locked(self, now: float | None = None) -> None:
        """Drop finished jobs older than FINISHED_JOB_SECONDS, and the oldest beyond
        MAX_FINISHED_JOBS, freeing their previews. A kept, unsaved run of a dropped job stays on
        disk, where the unsaved-runs list offers it to anyone until it is cleaned a day later."""
        now = time.time() if now is None else now
        finished = sorted(
            ((owner, job) for owner, job in self._jobs.items() if job.done and job.ended),
            key=lambda pair: pair[1].ended or 0.0,
            reverse=True,
        )
        for rank, (owner, job) in enumerate(finished):
            if rank >= MAX_FINISHED_JOBS or now - (job.ended or now) > FINISHED_JOB_SECONDS:
                del self._jobs[owner]

    def start(
        self,
        owner: str,
        request: TrainRequest,
        *,
        root: Any = None,
        auto_save: bool = True,
        discard_unsaved: bool = True,
        student: str | None = None,
        kind: str = "train",
        seconds: float | None = None,
        group: str | None = None,
    ) -> TrainingJob:
        """Queue training ``request`` for ``owner``; JobBusy while that owner's previous job is
        queued or runs. ``student`` (default ``owner``), ``kind``, ``seconds`` (the estimate) and
        ``group`` (an experiment id) are what the queue schedules by.

        The previous job's kept but unsaved epochs are discarded; with ``discard_unsaved=False``
        (the Train page, until the user has said yes) ``UnsavedEpochs`` is raised instead.
        """
        if not isinstance(owner, str) or not owner:
            raise ValueError(f"owner must be a non-empty string. Received: owner={owner!r}")
        with self._lock:
            current = self._jobs.get(owner)
            if current is not None and not current.done:
                raise JobBusy(
                    "a training job is already running for this session; stop it or wait for "
                    f"it to finish. Received: owner={owner!r}, job_id={current.job_id!r}"
                )
            if current is not None and not discard_unsaved and current.unsaved_epochs:
                raise UnsavedEpochs(
                    f"the last training kept {current.unsaved_epochs} epoch(s) that are not "
                    "saved; save or discard them first. "
                    f"Received: job_id={current.job_id!r}, discard_unsaved=False"
                )
            job = TrainingJob(
                owner, request, root=root, auto_save=auto_save, student=student, kind=kind
            )
            job.on_done = self._job_ended
            self._jobs[owner] = job
        if current is not None:
            current.discard()  # its unsaved model is replaced by the new job
        self._queue(job, seconds, group)
        return job

    def _queue(self, job: TrainingJob, seconds: float | None, group: str | None) -> None:
        """Put ``job`` in the queue; it launches (on the spare when it fits) when admitted."""
        from cae.preflight import preflight

        check = preflight(
            job.request.spec,
            job.config,
            num_train=job.request.data.limit,
            with_fixes=False,
        )
        estimate = seconds if seconds is not None else (check.seconds or DEFAULT_SECONDS)
        payload = {
            "request": job.request.to_dict(),
            "root": os.fspath(job.root),
            "auto_save": job.auto_save,
            "key": job.owner,
        }
        job.scheduler = self.scheduler
        self._ensure_queue_file(job.root)
        entry = self.scheduler.submit(
            job.student,
            job.kind,
            int(check.memory_bytes or 0),
            job.name,
            seconds=float(estimate),
            group=group,
            payload=payload,
            on_admit=lambda admitted: self._launch(job, admitted.entry_id),
            on_stop=lambda _entry: job.stop(),
        )
        job.entry_id = entry.entry_id
        if job.launched:
            return
        if not job.done and entry.state == "queued":
            where = self.scheduler.where(entry.entry_id)
            if where is not None:
                job._update_message(queue_message(*where))

    def _launch(self, job: TrainingJob, entry_id: str) -> None:
        """Start an admitted job's thread, on the spare worker where it fits."""
        job.entry_id = entry_id  # before its thread can end and release it
        with self._lock:
            if job.done or job.launched:
                return
            if not job.onednn_off:  # the spare has oneDNN on: it stays for the next job
                job._use_spare(self._take_spare_locked())
            job.start()
            self._ensure_spare_locked()  # for the next Train click (not on 2 CPUs: see prewarm)

    def _ensure_queue_file(self, root: Path) -> None:
        """Give the server's queue its file in the first runs folder it serves."""
        if self.scheduler is SCHEDULER and SCHEDULER.path is None:
            SCHEDULER.path = Path(root) / QUEUE_FILE

    def restore(self, root: Any = None) -> list[TrainingJob]:
        """After a restart: read the queue file of the runs folder ``root``, record the jobs that
        were running as interrupted and queue again the trainings that were waiting (experiment
        runs are asked again by their studies' records, ``cae.studies``); the jobs queued."""
        from cae.request import TrainRequest
        from cae.store import models_dir

        folder = Path(root).resolve() if root is not None else models_dir()
        with self._lock:
            if self._restored:
                return []
            self._restored = True
        if self.scheduler.path is None:
            self.scheduler.path = folder / QUEUE_FILE
        from cae.store import sweep_expired

        with contextlib.suppress(OSError):
            sweep_expired(folder, force=True)  # what expired while the server was down
        requeued = []
        for entry in self.scheduler.restore():
            payload = entry.payload
            if entry.kind != "train" or not isinstance(payload.get("request"), dict):
                continue
            with contextlib.suppress(ValueError, OSError, JobBusy):
                requeued.append(
                    self.start(
                        str(payload.get("key") or entry.owner),
                        TrainRequest.from_dict(payload["request"]),
                        root=payload.get("root") or folder,
                        auto_save=bool(payload.get("auto_save", True)),
                        student=entry.owner,
                    )
                )
        return requeued

    def get(self, owner: str) -> TrainingJob | None:
        """The latest job of ``owner`` (running or done), or None."""
        with self._lock:
            return self._jobs.get(owner)

    def staged_paths(self) -> set[str]:
        """The kept, unsaved runs that belong to a job this manager still has: their owners'
        tabs control them (an unsaved-runs list must leave them alone)."""
        with self._lock:
            jobs = list(self._jobs.values())
        return {str(path) for job in jobs if (path := job.staged_path) is not None}

    def running_jobs(self) -> list[TrainingJob]:
        """Every job that has not finished (queued ones too), oldest first."""
        with self._lock:
            jobs = list(self._jobs.values())
        return sorted((job for job in jobs if not job.done), key=lambda job: job.created)

    def forget(self, owner: str) -> None:
        """Drop a finished job of ``owner`` (and its unsaved model); a running one is kept."""
        with self._lock:
            job = self._jobs.get(owner)
            if job is None or not job.done:
                return
            del self._jobs[owner]
        job.discard()

    def stop_all(self, wait: float | None = None) -> None:
        """Ask every running job to stop; optionally wait up to ``wait`` seconds for each."""
        for job in self.running_jobs():
            job.stop()
        if wait is not None:
            for job in self.running_jobs():
                job.wait(wait)


JOBS = JobManager(SCHEDULER)
