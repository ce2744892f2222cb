"""Experiments: sweeps (``cae.sweep``) trained as ordinary runs, queued on the server.

``EXPERIMENTS.submit(owner, name, spec, config, recipe, axes)`` expands the sweep, refuses it
when no combination can train or when it would take the owner past the caps
(:data:`MAX_QUEUED_RUNS` runs waiting, :data:`MAX_QUEUED_HOURS` estimated hours), writes
``<models>/.experiments/<id>/experiment.json`` and hands every run to the job manager
(``cae.jobs.JOBS``) as an ``experiment`` job of its owner: the server's one queue
(``cae.admission``) starts them, after the Train clicks, round-robin between students, within the
training slots and the memory budget (each run in its own worker process, saved by the worker as
an ordinary run tagged with the experiment in its train.json). ``stop(id)`` keeps the runs already
finished, drops the ones in progress and leaves the rest not run. The record is rewritten at every
change, so a reload, another tab or a server restart finds it again: after a restart its queued
runs are queued again, and a run that was training is recorded as ``interrupted`` with what
became of it (stopped at epoch N and saved as a run by its worker, or not saved). No Streamlit here.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import secrets
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from cae.admission import available_cpus, training_slots
from cae.jobs import JOBS, JobManager, TrainingJob
from cae.preflight import estimate_sweep
from cae.recipe import DataRecipe
from cae.spec import ArchitectureSpec
from cae.sweep import (
    Axis,
    SweepError,
    Variant,
    expand,
    rate_samples,
    variant_request,
)
from cae.text import clean_name
from cae.training import TrainConfig

EXPERIMENTS_DIR = ".experiments"  # hidden inside the runs folder, so never listed as a run
RECORD_FILE = "experiment.json"
MAX_NAME = 40
POLL_SECONDS = 0.2
ACTIVE_STATES = ("queued", "running", "stopping")
ENDED_STATES = ("finished", "stopped", "failed", "interrupted")
ITEM_DONE = ("finished", "failed", "dropped", "not run", "invalid", "interrupted")
MAX_QUEUED_RUNS = 60  # runs of one student's experiments waiting or training at once
MAX_QUEUED_HOURS = 4.0  # and their estimated hours together
DEFAULT_EPOCHS = 10
"""The Experiments page's epochs, with all the images: enough for the classic design to learn on
the bundled sample (measured: 2 epochs barely beat the mean image's 11.75 dB, 8.0-9.6 dB after 1;
10 give 16.8 dB; the figures in docs/benchmarks.md). 1,000 images for 5 epochs gave 6.7-8.8 dB."""


class ExperimentCapError(SweepError):
    """An experiment that would take its owner past a cap; the message names the cap."""


def parallel_runs(cpus: int | None = None, busy: int = 0) -> int:
    """How many runs train at once: the server's training slots (``cae.admission``) on ``cpus``
    (default: this machine's), less the ``busy`` other trainings (at least 1)."""
    slots = training_slots(available_cpus() if cpus is None else cpus)
    return max(1, slots - busy)


def experiments_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Where experiment records live: ``<runs folder>/.experiments``."""
    from cae.store import models_dir

    return (Path(root) if root is not None else models_dir()) / EXPERIMENTS_DIR


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _write_record(folder: Path, record: dict[str, Any]) -> None:
    """Write experiment.json atomically (a temp file renamed over it)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{RECORD_FILE}.{secrets.token_hex(4)}"
    tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    os.replace(tmp, folder / RECORD_FILE)


def read_record(path: Path) -> dict[str, Any] | None:
    """An experiment.json as a dict, or None when it is missing or not an experiment record."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("items"), list):
        return None
    return record


class Experiment:
    """One experiment: its record (plain data, what experiment.json holds) and its live jobs."""

    def __init__(self, record: dict[str, Any], folder: Path) -> None:
        """Wrap a record kept in ``folder``."""
        self.record = record
        self.folder = folder
        self.jobs: dict[int, TrainingJob] = {}  # item index -> its running job
        self.lock = threading.RLock()

    @property
    def id(self) -> str:
        """The experiment id (its folder name)."""
        return str(self.record["id"])

    @property
    def state(self) -> str:
        """queued, running, stopping, finished, stopped, failed or interrupted."""
        return str(self.record.get("state"))

    @property
    def active(self) -> bool:
        """True while queued or training."""
        return self.state in ACTIVE_STATES

    @property
    def owner(self) -> str:
        """The student whose experiment it is."""
        return str(self.record.get("owner"))

    def save(self) -> None:
        """Rewrite experiment.json (a failure to write is kept in the record's ``save_error``)."""
        with self.lock:
            record = copy.deepcopy(self.record)
        try:
            _write_record(self.folder, record)
        except OSError as error:
            with self.lock:
                self.record["save_error"] = str(error)

    def snapshot(self) -> dict[str, Any]:
        """A deep copy of the record, with each running item's live progress under ``progress``
        (a ``cae.progress.Progress``) and the ETA in ``eta_seconds``."""
        with self.lock:
            record = copy.deepcopy(self.record)
            jobs = dict(self.jobs)
        for item in record["items"]:
            job = jobs.get(item["index"])
            if job is not None:
                item["progress"] = job.snapshot()
        record["eta_seconds"] = eta_seconds(record)
        return record


def eta_seconds(record: dict[str, Any]) -> float | None:
    """Seconds left: the estimates of the runs not done, scaled by how long the finished ones
    took against their estimates, less the part of the running ones already done; None when the
    experiment is not active."""
    if record.get("state") not in ACTIVE_STATES:
        return None
    items = [item for item in record["items"] if item.get("estimate")]
    done = [item for item in items if item["state"] == "finished" and item.get("seconds")]
    scale = 1.0
    if done:
        scale = sum(item["seconds"] for item in done) / sum(item["estimate"] for item in done)
    left = 0.0
    for item in items:
        if item["state"] == "queued":
            left += item["estimate"] * scale
        elif item["state"] == "running":
            progress = item.get("progress")
            fraction = getattr(progress, "fraction", 0.0) or 0.0
            left += item["estimate"] * scale * (1.0 - fraction)
    slots = max(1, int(record.get("parallel") or 1))
    return left / slots


def _item(variant: Variant, request: dict[str, Any] | None, seconds: float) -> dict[str, Any]:
    return {
        "index": variant.index,
        "label": variant.label,
        "values": {field: list(v) if isinstance(v, tuple) else v for field, v in variant.values},
        "state": "queued" if variant.ok else "invalid",
        "problem": variant.problem,
        "params": variant.params,
        "latent_shape": None if variant.latent_shape is None else list(variant.latent_shape),
        "estimate": round(seconds, 2) if variant.ok else None,
        "request": request,
        "run_id": None,
        "error": None,
        "seconds": None,
    }


def _queue_order(experiment: Experiment) -> tuple[int, str]:
    queued_at = experiment.record.get("queued_at")
    return (queued_at if isinstance(queued_at, int) else 0, str(experiment.record.get("created")))


class ExperimentQueue:
    """Every experiment of this server, in one queue; a thread trains the first in line."""

    def __init__(self, jobs: JobManager = JOBS) -> None:
        """An empty queue over ``jobs``; records on disk are read on first use."""
        self._jobs = jobs
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._experiments: dict[str, Experiment] = {}
        self._loaded_roots: set[str] = set()
        self._thread: threading.Thread | None = None

    # -- records on disk
    def _load(self, root: str | os.PathLike[str] | None = None) -> None:
        """Read the experiment records of a runs folder once; those the server had queued or
        running when it went down are queued again: their finished runs stay, their queued runs
        wait again, a run that was training is ``interrupted`` (:func:`interrupted_item`)."""
        folder = experiments_root(root)
        key = os.fspath(folder.resolve()) if folder.exists() else os.fspath(folder)
        with self._lock:
            if key in self._loaded_roots:
                return
            self._loaded_roots.add(key)
        try:
            paths = sorted(folder.glob(f"*/{RECORD_FILE}"))
        except OSError:
            return
        requeued = False
        for path in paths:
            record = read_record(path)
            if record is None or not isinstance(record.get("id"), str):
                continue
            with self._lock:
                if record["id"] in self._experiments:
                    continue
                experiment = Experiment(record, path.parent)
                self._experiments[experiment.id] = experiment
            if record.get("state") in ACTIVE_STATES:
                runs_root = Path(str(record.get("root") or folder.parent))
                for item in record["items"]:
                    if item["state"] == "running":
                        interrupted_item(item, record["id"], runs_root)
                if record.get("state") == "stopping" or record.get("stop_requested"):
                    self._finish_stopped(experiment)
                elif any(item["state"] == "queued" for item in record["items"]):
                    record["state"] = "queued"
                    record["message"] = "Queued again after the server restarted."
                    requeued = True
                else:
                    self._finish(experiment)
                experiment.save()
        if requeued:
            self._ensure_thread()
            self._wake.set()

    # -- the public side
    def submit(
        self,
        owner: str,
        name: str,
        spec: ArchitectureSpec,
        config: TrainConfig,
        recipe: DataRecipe,
        axes: Sequence[Axis],
        *,
        num_train: int,
        root: str | os.PathLike[str] | None = None,
    ) -> Experiment:
        """Expand the sweep and queue it; SweepError when nothing in it can train."""
        from cae.store import list_runs, models_dir

        name = clean_name(str(name))[:MAX_NAME] or spec.name
        variants = expand(spec, config, axes, image_shape=recipe.image_shape())
        valid = [variant for variant in variants if variant.ok]
        if not valid:
            reasons = "; ".join(f"{v.label}: {v.problem}" for v in variants[:3])
            raise SweepError(f"no combination of this sweep can train. Received: {reasons}")
        root_path = Path(root) if root is not None else models_dir()
        runs = [variant.workload for variant in variants]
        guess = estimate_sweep(runs, num_train, rate_samples(list_runs(root_path)))
        self._load(root_path)
        self.check_caps(owner, len(valid), guess.seconds)
        experiment_id = f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
        items = []
        for variant, seconds in zip(variants, guess.parts, strict=True):
            request = None
            if variant.ok:
                request = variant_request(
                    variant, recipe, experiment_id=experiment_id, experiment_name=name
                ).to_dict()
            items.append(_item(variant, request, seconds))
        record = {
            "id": experiment_id,
            "name": name,
            "owner": owner,
            "created": _now(),
            "queued_at": time.time_ns(),  # the place in the queue
            "started": None,
            "ended": None,
            "state": "queued",
            "message": "",
            "root": os.fspath(root_path.resolve()),
            "spec": spec.to_dict(),
            "config": config.to_dict(),
            "data": recipe.to_dict(),
            "axes": [axis.to_dict() for axis in axes],
            "num_train": num_train,
            "estimate_seconds": round(guess.seconds, 1),
            "estimate_basis": guess.basis,
            "parallel": 1,
            "items": items,
        }
        experiment = Experiment(record, experiments_root(root_path) / experiment_id)
        experiment.save()
        with self._lock:
            self._experiments[experiment_id] = experiment
        self._jobs.prewarm()  # the next run's worker loads TensorFlow while this one trains
        self._ensure_thread()
        self._wake.set()
        return experiment

    def check_caps(self, owner: str, runs: int, seconds: float) -> None:
        """ExperimentCapError when ``runs`` more runs of ``seconds`` estimated seconds would take
        ``owner``'s active experiments past :data:`MAX_QUEUED_RUNS` or :data:`MAX_QUEUED_HOURS`."""
        with self._lock:
            mine = [e for e in self._experiments.values() if e.active and e.owner == owner]
        waiting = [
            item
            for experiment in mine
            for item in experiment.snapshot()["items"]
            if item["state"] in ("queued", "running")
        ]
        total_runs = len(waiting) + runs
        hours = (sum(item.get("estimate") or 0.0 for item in waiting) + seconds) / 3600
        if total_runs > MAX_QUEUED_RUNS:
            raise ExperimentCapError(
                f"a student may have at most {MAX_QUEUED_RUNS} experiment runs queued or training; "
                f"this experiment would make {total_runs}: wait for some to finish or stop one. "
                f"Received: runs={runs}, already_queued={len(waiting)}"
            )
        if hours > MAX_QUEUED_HOURS:
            raise ExperimentCapError(
                f"a student's queued experiments may take at most {MAX_QUEUED_HOURS:g} estimated "
                f"hours; with this one they would take {hours:.1f} h: train fewer runs, epochs or "
                f"images. Received: estimated_hours={seconds / 3600:.2f}, "
                f"already_queued_hours={hours - seconds / 3600:.2f}"
            )

    def get(
        self, experiment_id: str, root: str | os.PathLike[str] | None = None
    ) -> Experiment | None:
        """An experiment by id (live or read from disk), or None."""
        self._load(root)
        with self._lock:
            return self._experiments.get(experiment_id)

    def all(self, root: str | os.PathLike[str] | None = None) -> list[Experiment]:
        """Every experiment of this runs folder, newest first."""
        from cae.store import models_dir

        self._load(root)
        wanted = os.fspath((Path(root) if root is not None else models_dir()).resolve())
        with self._lock:
            found = [
                e
                for e in self._experiments.values()
                if os.fspath(e.folder.parent.parent.resolve()) == wanted
            ]
        return sorted(found, key=_queue_order, reverse=True)

    def place(self, experiment_id: str) -> tuple[int, float] | None:
        """Where a queued experiment's next run stands in the server's queue: its place (1: next)
        and estimated start in seconds; None when none of its runs waits."""
        experiment = self.get(experiment_id)
        if experiment is None:
            return None
        with experiment.lock:
            jobs = list(experiment.jobs.values())
        places = [where for job in jobs if (where := job.place()) is not None]
        return min(places) if places else None

    def stop(self, experiment_id: str) -> None:
        """Stop an experiment: the runs already finished are kept, the ones in progress are
        dropped, the others are not run. A queued one leaves the queue."""
        experiment = self.get(experiment_id)
        if experiment is None:
            return
        with experiment.lock:
            if not experiment.active:
                return
            experiment.record["stop_requested"] = True
            jobs = list(experiment.jobs.values())
            if not jobs:
                self._finish_stopped(experiment)
            else:
                experiment.record["state"] = "stopping"
        for job in jobs:
            job.stop()
        experiment.save()
        self._wake.set()

    def wait(self, experiment_id: str, timeout: float | None = None) -> bool:
        """Block until the experiment has ended (or ``timeout`` s pass); True when it has."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            experiment = self.get(experiment_id)
            if experiment is None or not experiment.active:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)

    # -- the dispatcher
    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._dispatch, name="cae-experiments", daemon=True
                )
                self._thread.start()

    def _dispatch(self) -> None:
        while True:
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()
            with self._lock:
                line = sorted((e for e in self._experiments.values() if e.active), key=_queue_order)
            for experiment in line:
                try:
                    self._step(experiment)
                except Exception as error:  # noqa: BLE001 - the experiment says why; the loop goes on
                    with experiment.lock:
                        experiment.record["state"] = "failed"
                        experiment.record["message"] = f"{type(error).__name__}: {error}"
                        experiment.record["ended"] = _now()
                        jobs = list(experiment.jobs.values())
                    for job in jobs:
                        job.stop()
                    experiment.save()

    def _owner(self, experiment: Experiment, index: int) -> str:
        return f"experiment-{experiment.id}-{index}"

    def _step(self, experiment: Experiment) -> None:
        """Queue the runs not queued yet, follow the ones the queue started, collect the ones
        that ended, end the experiment when all have."""
        changed = False
        with experiment.lock:
            record = experiment.record
            items = {item["index"]: item for item in record["items"]}
            for index, job in list(experiment.jobs.items()):
                item = items[index]
                if job.launched and item["state"] == "queued":
                    item["state"], item["started"] = "running", _now()
                    if record["state"] == "queued":
                        record["state"], record["started"] = "running", _now()
                    changed = True
                if not job.done:
                    continue
                item["seconds"] = round((job.ended or time.time()) - job.created, 2)
                item["ended"] = _now()
                if job.run_id is None and job.kept and not job.stop_requested:
                    with contextlib.suppress(ValueError, RuntimeError, OSError):
                        job.save()  # trained but not saved at the end: one more try
                if job.run_id is not None:
                    item["state"], item["run_id"] = "finished", job.run_id
                elif not job.launched:
                    item["state"] = "not run"
                elif job.stop_requested:
                    item["state"] = "dropped"
                    item["error"] = "stopped with the experiment; its epochs were not kept"
                else:
                    item["state"] = "failed"
                    item["error"] = job.error or job.save_error or job.snapshot().message
                del experiment.jobs[index]
                self._jobs.forget(self._owner(experiment, index))  # and its unsaved model
                changed = True
            if record.get("stop_requested"):
                if not experiment.jobs:
                    self._finish_stopped(experiment)
                    changed = True
            else:
                record["parallel"] = self._jobs.scheduler.slots
                for item in record["items"]:
                    if item["state"] == "queued" and item["index"] not in experiment.jobs:
                        self._start_item(experiment, item)
                        changed = True
                if not experiment.jobs:
                    self._finish(experiment)
                    changed = True
        if changed:
            experiment.save()
            self._wake.set()

    def _finish(self, experiment: Experiment) -> None:
        record = experiment.record
        finished = sum(item["state"] == "finished" for item in record["items"])
        record["state"] = "finished" if finished else "failed"
        record["message"] = (
            f"{finished} of {sum(i['state'] != 'invalid' for i in record['items'])} runs finished."
        )
        record["ended"] = _now()

    def _start_item(self, experiment: Experiment, item: dict[str, Any]) -> None:
        """Hand one run to the job manager: it waits in the server's queue as its owner's."""
        from cae.request import TrainRequest

        record = experiment.record
        try:
            request = TrainRequest.from_dict(item["request"])
            job = self._jobs.start(
                self._owner(experiment, item["index"]),
                request,
                root=record["root"],
                student=experiment.owner,
                kind="experiment",
                seconds=item.get("estimate"),
                group=experiment.id,
            )
        except (ValueError, OSError, RuntimeError) as error:
            item["state"], item["error"] = "failed", str(error)
            return
        experiment.jobs[item["index"]] = job

    def _finish_stopped(self, experiment: Experiment) -> None:
        record = experiment.record
        for item in record["items"]:
            if item["state"] in ("queued", "running"):
                item["state"] = "not run"
        finished = sum(item["state"] == "finished" for item in record["items"])
        record["state"] = "stopped"
        record["message"] = f"Stopped; the {finished} run(s) already finished are kept."
        record["ended"] = _now()

    def close(self, wait: float | None = None) -> None:
        """Stop every active experiment (at shutdown, and in tests)."""
        with self._lock:
            active = [e.id for e in self._experiments.values() if e.active]
        for experiment_id in active:
            self.stop(experiment_id)
        if wait is not None:
            for experiment_id in active:
                with contextlib.suppress(Exception):
                    self.wait(experiment_id, wait)


def restore_queue(root: str | os.PathLike[str] | None = None) -> None:
    """At the server's start (idempotent): requeue the trainings and experiments the server had
    queued when it stopped, in the runs folder and in every workspace of it, and record what was
    running as interrupted."""
    from cae.store import workspaces_dir

    JOBS.restore(root)
    EXPERIMENTS.all(root)  # the gallery's folder, then each workspace's (their own .experiments)
    for folder in sorted(path for path in workspaces_dir(root).glob("*") if path.is_dir()):
        EXPERIMENTS.all(folder)


def interrupted_item(item: dict[str, Any], experiment_id: str, root: Path) -> None:
    """Record a run that was training when the server went down as what it is: its worker
    stopped and saved its completed epochs as a run (found by the experiment tag in its
    train.json), or nothing was kept."""
    item["state"] = "interrupted"
    item["ended"] = item.get("ended") or _now()
    for path in sorted(root.glob("*/train.json")):
        try:
            train = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        tag = train.get("experiment") if isinstance(train, dict) else None
        if (
            isinstance(tag, dict)
            and tag.get("id") == experiment_id
            and tag.get("index") == item["index"]
        ):
            outcome = train.get("outcome") if isinstance(train.get("outcome"), dict) else {}
            epochs = outcome.get("epochs_completed", "?")
            item["run_id"] = path.parent.name
            item["error"] = (
                f"the server stopped during this run: stopped at epoch {epochs}, saved as "
                f"{path.parent.name}"
            )
            return
    item["error"] = "the server stopped during this run: no completed epoch was saved"


EXPERIMENTS = ExperimentQueue()
