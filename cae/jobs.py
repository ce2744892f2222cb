"""Background training jobs that a UI polls: a thread per job, a plain progress object, a stop flag.

``JOBS.start(owner, spec, dataset, dataset_name, config, name=...)`` starts ``cae.training.train``
in a daemon thread and returns a :class:`TrainingJob`; the page polls ``job.snapshot()`` (a copy,
taken under a lock) and calls ``job.stop()``. Each owner (a browser session) has at most one running
job; owners share nothing. A run that finishes normally is saved with ``cae.store.save_run``; a
stopped or failed one can be saved with ``job.save()`` (its last completed epoch). No Streamlit here.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

from cae.data import Dataset
from cae.spec import ArchitectureSpec
from cae.training import Progress, TrainConfig, TrainResult, train


def run_metrics(result: TrainResult) -> dict[str, Any]:
    """The metrics.json of a run: test metrics plus params, latent shape and wall time."""
    model = result.built
    return {
        **result.test_metrics,
        "params": int(model.autoencoder.count_params()),
        "latent_shape": [int(n) for n in model.encoder.output_shape[1:]],
        "wall_seconds": round(result.wall_seconds, 3),
        "epochs": result.epochs_completed,
    }


def result_train_config(
    result: TrainResult, dataset_name: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The train.json of a run: the config, the dataset name and what happened."""
    return {
        **result.config.to_dict(),
        **(extra or {}),
        "dataset": dataset_name,
        "epochs_completed": result.epochs_completed,
        "wall_seconds": round(result.wall_seconds, 3),
        "stopped": result.stopped,
        "state": result.state,
        "best_epoch": result.best_epoch,
        "early_stopped": result.early_stopped,
        "num_train": result.num_train,
        "num_validation": result.num_validation,
    }


def save_result(
    result: TrainResult,
    spec: ArchitectureSpec,
    *,
    name: str,
    train_config: dict[str, Any],
    root: Any = None,
) -> str:
    """Save a training result's model (its last completed epoch) with ``cae.store.save_run``."""
    from cae.store import save_run

    if result.epochs_completed == 0:
        raise ValueError(
            "training stopped before the first epoch completed: there is nothing to save. "
            "Received: epochs_completed=0"
        )
    return save_run(
        result.built.autoencoder,
        spec,
        name=name,
        train_config=train_config,
        history=result.history,
        metrics=run_metrics(result),
        latent_stats=result.latent_stats,
        root=root,
    )


class JobBusy(RuntimeError):
    """The owner already has a training job running."""


class TrainingJob:
    """One training run in a background thread; every public method is thread-safe."""

    def __init__(
        self,
        owner: str,
        spec: ArchitectureSpec,
        dataset: Dataset,
        dataset_name: str,
        config: TrainConfig,
        *,
        name: str,
        root: Any = None,
        auto_save: bool = True,
        strategy: Any = None,
        extra_train_config: dict[str, Any] | None = None,
    ) -> None:
        """Prepare a job (validating the config); ``start()`` launches it."""
        if not isinstance(spec, ArchitectureSpec):
            raise ValueError(
                f"spec must be an ArchitectureSpec. Received: type={type(spec).__name__}"
            )
        if not isinstance(dataset, Dataset):
            raise ValueError(
                f"dataset must be a cae.data.Dataset. Received: type={type(dataset).__name__}"
            )
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"a run needs a non-empty name. Received: name={name!r}")
        self.config = config.validate()
        self.job_id = secrets.token_hex(6)
        self.owner = owner
        self.name = name.strip()
        self.dataset_name = dataset_name
        self.spec = spec
        self.spec_dict = spec.to_dict()
        self.root = root
        self.auto_save = auto_save
        self.created = time.time()
        self.result: TrainResult | None = None
        self.error: str | None = None
        self.run_id: str | None = None
        self.save_error: str | None = None
        self._dataset: Dataset | None = dataset
        self._strategy = strategy
        self._extra = dict(extra_train_config or {})
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._progress = Progress(
            state="starting", epochs=config.epochs, message="Waiting to start."
        )
        self._final: Progress | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"cae-train-{owner}-{self.job_id}", daemon=True
        )

    # -- control
    def start(self) -> TrainingJob:
        """Start the training thread (once)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask training to stop after the current batch (keeps the last completed epoch)."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        """True once ``stop()`` was called."""
        return self._stop.is_set()

    @property
    def done(self) -> bool:
        """True once the thread has finished (result or error set, auto-save attempted)."""
        return self._done.is_set()

    @property
    def running(self) -> bool:
        """True while the job has not finished."""
        return not self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job is done (or ``timeout`` seconds pass); returns ``done``."""
        return self._done.wait(timeout)

    def snapshot(self) -> Progress:
        """A copy of the latest progress, safe to read while training goes on."""
        with self._lock:
            return self._progress.copy()

    # -- the thread
    def _set_progress(self, progress: Progress) -> None:
        with self._lock:
            if progress.active:
                self._progress = progress
            else:  # the final word is published by _run once saving is done, with ``done``
                self._final = progress

    def _run(self) -> None:
        dataset = self._dataset
        final: Progress | None = None
        try:
            assert dataset is not None
            result = train(
                self.spec,
                dataset,
                self.config,
                progress=self._set_progress,
                should_stop=self._stop.is_set,
                strategy=self._strategy,
            )
            self.result = result
            with self._lock:
                final = (self._final or self._progress).copy()
            if self.auto_save and result.state == "finished" and result.epochs_completed > 0:
                self._update_message("Saving the run.")
                try:
                    final.message = f"{final.message} Saved as {self.save()}."
                except Exception as error:  # noqa: BLE001 - reported, the model stays in memory
                    self.save_error = f"{type(error).__name__}: {error}"
                    final.message = f"{final.message} Saving failed: {self.save_error}"
        except Exception as error:  # noqa: BLE001 - reported to the page, never raised in a thread
            self.error = f"{type(error).__name__}: {error}"
            with self._lock:
                final = (self._final or self._progress).copy()
            final.state = "failed"
            final.message = f"Training failed: {self.error}"
        finally:
            self._dataset = None  # free the images; the result keeps the model
            with self._lock:  # a snapshot that shows the end always comes with done set
                if final is not None:
                    self._progress = final
                elif self._final is not None:
                    self._progress = self._final
                self._done.set()

    def _update_message(self, message: str) -> None:
        with self._lock:
            progress = self._progress.copy()
            progress.message = message
            self._progress = progress

    # -- saving
    def train_config(self) -> dict[str, Any]:
        """What goes into the run's train.json: the config plus dataset and outcome."""
        if self.result is None:
            return {**self.config.to_dict(), **self._extra, "dataset": self.dataset_name}
        return result_train_config(self.result, self.dataset_name, self._extra)

    def save(self, name: str | None = None) -> str:
        """Save the trained model (a stopped or failed run: its last completed epoch) with
        ``cae.store.save_run`` and return the run id; saving twice returns the same id."""
        with self._save_lock:
            if self.run_id is not None:
                return self.run_id
            if not self.done and threading.current_thread() is not self._thread:
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
            self.run_id = save_result(
                result,
                self.spec,
                name=(name or self.name).strip() or self.name,
                train_config=self.train_config(),
                root=self.root,
            )
        if self.done:  # a manual save; an automatic one is reported by _run
            self._update_message(f"{result.message} Saved as {self.run_id}.")
        return self.run_id


class JobManager:
    """The training jobs of every owner: one running job per owner, the latest kept per owner."""

    def __init__(self) -> None:
        """An empty manager."""
        self._lock = threading.Lock()
        self._jobs: dict[str, TrainingJob] = {}

    def start(
        self,
        owner: str,
        spec: ArchitectureSpec,
        dataset: Dataset,
        dataset_name: str,
        config: TrainConfig,
        *,
        name: str,
        root: Any = None,
        auto_save: bool = True,
        strategy: Any = None,
        extra_train_config: dict[str, Any] | None = None,
    ) -> TrainingJob:
        """Start a training job for ``owner``; JobBusy while that owner's previous job runs."""
        if not isinstance(owner, str) or not owner:
            raise ValueError(f"owner must be a non-empty string. Received: owner={owner!r}")
        with self._lock:
            current = self._jobs.get(owner)
            if current is not None and not current.done:
                raise JobBusy(
                    "a training job is already running for this session; stop it or wait for "
                    f"it to finish. Received: owner={owner!r}, job_id={current.job_id!r}"
                )
            job = TrainingJob(
                owner,
                spec,
                dataset,
                dataset_name,
                config,
                name=name,
                root=root,
                auto_save=auto_save,
                strategy=strategy,
                extra_train_config=extra_train_config,
            )
            self._jobs[owner] = job
            job.start()
        return job

    def get(self, owner: str) -> TrainingJob | None:
        """The latest job of ``owner`` (running or done), or None."""
        with self._lock:
            return self._jobs.get(owner)

    def running_jobs(self) -> list[TrainingJob]:
        """Every job that has not finished, oldest first."""
        with self._lock:
            jobs = list(self._jobs.values())
        return sorted((job for job in jobs if not job.done), key=lambda job: job.created)

    def forget(self, owner: str) -> None:
        """Drop a finished job of ``owner`` (frees its model); a running one is kept."""
        with self._lock:
            job = self._jobs.get(owner)
            if job is not None and job.done:
                del self._jobs[owner]

    def stop_all(self, wait: float | None = None) -> None:
        """Ask every running job to stop; optionally wait up to ``wait`` seconds for each."""
        for job in self.running_jobs():
            job.stop()
        if wait is not None:
            for job in self.running_jobs():
                job.wait(wait)


JOBS = JobManager()
