"""Studies on the server: grid experiments (``cae.experiments``) and searches (``cae.search``),
Optuna studies whose trials train as the server's experiment runs, through its one queue.

``STUDIES.submit_grid(owner, name, spec, config, recipe, axes, num_train=..., root=...)`` checks
the sweep (``cae.sweep.expand``: refused when nothing in it can train), opens a new grid study in
the workspace's storage (``cae.search.default_storage``: a SQLite file in ``<root>/.studies/``)
with its points enqueued in the plan's order; ``STUDIES.submit(owner, name, space, recipe,
base_config, trials, ...)`` opens (or finds again) the search study ``name`` and asks it for a
first candidate (so a space that cannot train here is refused at once). Either keeps a small
record beside the storage (``<root>/.studies/<id>.<kind>.json``: who started it, how many trials,
their estimates, its state; the trials, parameters and values are the study's) and counts
against its student's caps (``cae.experiments.check_caps``). One dispatcher thread then keeps as
many trials of each study in flight as the queue has training slots: each asked trial becomes a
``TrainRequest`` (tagged with the study) handed to the job manager (``cae.jobs.JOBS``) as an
``experiment`` job of its owner, so the queue (``cae.admission``) starts it after Train clicks,
round-robin between students, within the slots and the memory budget. As a trial's per-epoch
progress arrives here, its validation loss is reported to the study and the pruner consulted
(``cae.search.EpochReporter``; a grid's pruner prunes nothing): a pruned trial's job is stopped.
When a job ends, the study is told (``cae.search.finish_trial``: its validation PSNR, never the
test split's); only this process writes the study. Stop keeps the finished trials; after a
server restart an active study goes on, its trials that were training told failed ("the server
stopped", with the run its worker saved, if any) and those still waiting for a slot asked again.
No Streamlit here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cae.experiments import MAX_NAME, check_caps
from cae.jobs import JOBS, JobManager, TrainingJob
from cae.recipe import DataRecipe
from cae.search_space import SearchSpace
from cae.spec import ArchitectureSpec
from cae.sweep import Axis
from cae.training import TrainConfig, TrainOutcome

STUDIES_DIR = ".studies"  # beside the default SQLite storage; hidden, so never listed as runs
KINDS = ("grid", "search")  # a record is <id>.<kind>.json
ACTIVE_STATES = ("queued", "running", "stopping")
MAX_TRIALS = 60  # trials one search may ask for (the experiments' cap on queued runs)
POLL_SECONDS = 0.2
OLD_EXPERIMENTS = ".experiments"  # the hand-written experiment records before grid studies
INTERRUPTED = "the server stopped while this trial trained"
LOG = logging.getLogger("cae.studies")


def studies_root(root: str | os.PathLike[str]) -> Path:
    """Where a runs folder keeps its studies' records (and, by default, their storage)."""
    return Path(root) / STUDIES_DIR


def _now() -> str:
    return datetime.now().isoformat(timespec="seconds")


@dataclass
class _Trial:
    """A trial in flight: its job, the reporter that prunes it, its heartbeat."""

    number: int
    key: str  # the job manager's key of its job
    job: TrainingJob
    reporter: Any  # cae.search.EpochReporter
    heartbeat: Any  # cae.search.Heartbeat
    config: TrainConfig
    label: str
    index: int  # its place in a grid's order (its number, for a search)


class ServerStudy:
    """One study of the server (a grid or a search): its record (plain data, kept in a JSON
    file) and its trials in flight."""

    def __init__(self, record: dict[str, Any], path: Path) -> None:
        """Wrap ``record``, kept at ``path``."""
        self.record = record
        self.path = path
        self.lock = threading.RLock()
        self.trials: dict[int, _Trial] = {}
        self._study: Any = None

    @property
    def id(self) -> str:
        """The study's id (its record's name)."""
        return str(self.record["id"])

    @property
    def owner(self) -> str:
        """The workspace that started it."""
        return str(self.record["owner"])

    @property
    def kind(self) -> str:
        """``grid`` (an experiment of the page's form, ``cae sweep``) or ``search``."""
        return str(self.record.get("kind") or "search")

    @property
    def active(self) -> bool:
        """True while it has trials to ask or in flight."""
        return self.record.get("state") in ACTIVE_STATES

    @property
    def state(self) -> str:
        """queued, running, stopping, finished, stopped or failed."""
        return str(self.record.get("state"))

    def study(self) -> Any:
        """Its Optuna study, opened once."""
        from cae.experiments import open_grid_study
        from cae.search import open_study

        if self._study is None:
            opener = open_grid_study if self.kind == "grid" else open_study
            self._study = opener(
                self.record["study"], storage=self.record.get("storage"), root=self.record["root"]
            )
        return self._study

    def ask(self) -> Any:
        """The study's next candidate that can train (SearchError when none is left)."""
        from cae.experiments import ask_grid_candidate
        from cae.search import ask_candidate

        record = self.record
        image_shape = DataRecipe.from_dict(record["data"]).image_shape()
        if self.kind == "grid":
            return ask_grid_candidate(self.study(), image_shape, num_train=record["num_train"])
        return ask_candidate(
            self.study(),
            SearchSpace.from_dict(record["space"]),
            image_shape,
            TrainConfig.from_dict(record["config"]),
            num_train=record["num_train"],
        )

    def request(self, candidate: Any) -> tuple[Any, int, str]:
        """The training request of a candidate (tagged with the study), its index (its place in
        a grid's order; a search's: its number) and its label."""
        from cae.experiments import grid_label, grid_request, point_index
        from cae.search import trial_request

        recipe = DataRecipe.from_dict(self.record["data"])
        if self.kind == "grid":
            axes = [Axis.from_dict(axis) for axis in self.record["axes"]]
            index = point_index(axes, candidate.params)
            request = grid_request(self.record["study"], candidate, recipe, axes)
            label = grid_label(candidate.params)
            return request, candidate.number if index is None else index, label
        request = trial_request(self.record["study"], candidate, recipe)
        return request, candidate.number, candidate.label

    def save(self) -> None:
        """Write the record (atomically)."""
        with self.lock:
            text = json.dumps(self.record, indent=1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".tmp-{secrets.token_hex(4)}-{self.path.name}")
        partial.write_text(text)
        os.replace(partial, self.path)

    def snapshot(self) -> dict[str, Any]:
        """A copy of the record, with the trials in flight: ``queued`` (waiting for a slot) or
        ``training`` (launched, not ended), and their progress (``progress``: a
        ``cae.progress.Progress``, not saved)."""
        with self.lock:
            record = json.loads(json.dumps(self.record))
            flight = list(self.trials.values())
        record["in_flight"] = []
        for trial in flight:
            progress = trial.job.snapshot()
            record["in_flight"].append(
                {
                    "number": trial.number,
                    "index": trial.index,
                    "label": trial.label,
                    "queued": trial.job.queued,
                    "training": trial.job.launched and not trial.job.done,
                    "place": trial.job.place(),
                    "epoch": progress.epoch,
                    "epochs": trial.config.epochs,
                    "progress": progress,
                }
            )
        return record


class StudyQueue:
    """The server's studies: submitted, dispatched to the job manager, followed, told."""

    def __init__(self, jobs: JobManager = JOBS) -> None:
        """Studies over the job manager ``jobs``."""
        self._jobs = jobs
        self._lock = threading.Lock()
        self._studies: dict[str, ServerStudy] = {}
        self._loaded: set[str] = set()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- in and out
    def submit(
        self,
        owner: str,
        name: str,
        space: SearchSpace,
        recipe: DataRecipe,
        base_config: TrainConfig,
        trials: int,
        *,
        num_train: int,
        root: str | os.PathLike[str],
        storage: str | None = None,
    ) -> ServerStudy:
        """Start (or go on with) the search study ``name`` for ``owner``: ``trials`` more
        trials. The study is opened and its first candidate asked now, so a space or data it
        cannot take is refused here (SearchError, a ValueError, in one line); the caps of the
        owner's experiments apply (ExperimentCapError)."""
        from cae.preflight import fit_speed, training_seconds, training_work
        from cae.search import SearchError, ask_candidate, fail_trial, open_study
        from cae.shapes import compute_shapes
        from cae.store import list_runs
        from cae.sweep import rate_samples

        if not isinstance(trials, int) or isinstance(trials, bool) or not 1 <= trials <= MAX_TRIALS:
            raise SearchError(
                f"a search asks for 1 to {MAX_TRIALS} trials. Received: trials={trials!r}"
            )
        root_path = Path(root).resolve()
        self._load(root_path)
        with self._lock:
            running = [s for s in self._studies.values() if s.active and s.record["study"] == name]
        if running:
            raise SearchError(
                f"that study is already being searched; stop it first or wait. Received: "
                f"study={name!r}"
            )
        study = open_study(
            name, space, storage=storage, root=root_path, recipe=recipe, base_config=base_config
        )
        first = ask_candidate(study, space, recipe.image_shape(), base_config, num_train=num_train)
        speed = fit_speed(rate_samples(list_runs(root_path)))
        work = training_work(compute_shapes(first.spec, with_fixes=False))
        # a trial's expected epochs under the pruner: successive halving stops most early
        per_trial = training_seconds(
            work, num_train, space.expected_epochs(first.config.epochs), speed
        )
        try:
            self.check_caps(owner, trials, trials * per_trial)
        except ValueError:
            fail_trial(study, first.number, "the search was refused by its student's caps")
            raise
        record = self._record("search", name, owner, root_path, storage, recipe, num_train)
        record.update(
            trials=trials,
            config=base_config.to_dict(),
            space=space.to_dict(),
            trial_seconds=round(per_trial, 1),
        )
        return self._begin(record, study, first)

    def submit_grid(
        self,
        owner: str,
        name: str,
        spec: ArchitectureSpec,
        config: TrainConfig,
        recipe: DataRecipe,
        axes: list[Axis],
        *,
        num_train: int,
        root: str | os.PathLike[str],
        storage: str | None = None,
    ) -> ServerStudy:
        """Start a grid experiment for ``owner``: the sweep of ``axes`` over ``spec`` and
        ``config`` as a new grid study (named ``name``, or ``name (2)``... when taken), every
        point that can train a trial. SweepError when nothing in it can train;
        ExperimentCapError past the owner's caps."""
        from cae.experiments import free_study_name, open_grid_study
        from cae.preflight import estimate_sweep
        from cae.store import list_runs
        from cae.sweep import SweepError, expand, rate_samples
        from cae.text import clean_name

        variants = expand(spec, config, axes, image_shape=recipe.image_shape())
        valid = [variant for variant in variants if variant.ok]
        if not valid:
            reasons = "; ".join(f"{v.label}: {v.problem}" for v in variants[:3])
            raise SweepError(f"no combination of this sweep can train. Received: {reasons}")
        root_path = Path(root).resolve()
        guess = estimate_sweep(
            [variant.workload for variant in variants],
            num_train,
            rate_samples(list_runs(root_path)),
        )
        self._load(root_path)
        self.check_caps(owner, len(valid), guess.seconds)
        title = clean_name(str(name))[:MAX_NAME] or spec.name
        study_name = free_study_name(title, storage, root_path)
        study = open_grid_study(
            study_name,
            axes,
            spec=spec,
            config=config,
            recipe=recipe,
            storage=storage,
            root=root_path,
        )
        record = self._record("grid", study_name, owner, root_path, storage, recipe, num_train)
        record.update(
            trials=len(valid),
            config=config.to_dict(),
            spec=spec.to_dict(),
            axes=[axis.to_dict() for axis in axes],
            estimates=[
                round(s, 2) if v.ok else None for v, s in zip(variants, guess.parts, strict=True)
            ],
            estimate_seconds=round(guess.seconds, 1),
            estimate_basis=guess.basis,
            trial_seconds=round(guess.seconds / len(valid), 1),
        )
        self._jobs.prewarm()  # the next run's worker loads TensorFlow while this one trains
        return self._begin(record, study, None)

    def _record(
        self,
        kind: str,
        name: str,
        owner: str,
        root: Path,
        storage: str | None,
        recipe: DataRecipe,
        num_train: int,
    ) -> dict[str, Any]:
        """A new study's record, its kind's fields to add."""
        return {
            "id": f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}",
            "kind": kind,
            "study": name,
            "owner": owner,
            "root": os.fspath(root),
            "storage": storage,
            "created": _now(),
            "ended": None,
            "state": "queued",
            "message": "",
            "asked": 0,
            "told": 0,
            "data": recipe.to_dict(),
            "num_train": num_train,
            "parallel": 1,
            "running_trials": {},
            "launched": [],
        }

    def _begin(self, record: dict[str, Any], study: Any, first: Any) -> ServerStudy:
        """Keep the new study, start its first trials (``first``: one asked already) and wake
        the dispatcher."""
        path = studies_root(record["root"]) / f"{record['id']}.{record['kind']}.json"
        found = ServerStudy(record, path)
        found._study = study
        with found.lock:
            if first is not None:
                self._start_trial(found, first)
            self._fill(found)
        found.save()
        with self._lock:
            self._studies[found.id] = found
        self._ensure_thread()
        self._wake.set()
        return found

    def check_caps(self, owner: str, runs: int, seconds: float) -> None:
        """ExperimentCapError when ``runs`` more runs of ``seconds`` estimated seconds would take
        ``owner``'s active studies (grids and searches) past the caps
        (``cae.experiments.check_caps``)."""
        with self._lock:
            mine = [s for s in self._studies.values() if s.active and s.owner == owner]
        waiting, waiting_seconds = 0, 0.0
        for found in mine:
            with found.lock:
                left = max(0, int(found.record["trials"]) - int(found.record["told"]))
                waiting += left
                waiting_seconds += left * float(found.record.get("trial_seconds") or 0.0)
        check_caps(runs, seconds, waiting, waiting_seconds)

    def get(self, study_id: str, root: str | os.PathLike[str] | None = None) -> ServerStudy | None:
        """The study ``study_id`` (read from ``root``'s records when not seen yet)."""
        if root is not None:
            self._load(Path(root).resolve())
        with self._lock:
            return self._studies.get(study_id)

    def all(self, root: str | os.PathLike[str], kind: str | None = None) -> list[ServerStudy]:
        """The studies (of ``kind``: grid or search; None: both) of the runs folder ``root``,
        newest first."""
        base = Path(root).resolve()
        self._load(base)
        with self._lock:
            mine = [
                s
                for s in self._studies.values()
                if Path(s.record["root"]) == base and kind in (None, s.kind)
            ]
        return sorted(mine, key=lambda s: s.id, reverse=True)

    def place(self, study_id: str) -> tuple[int, float] | None:
        """Where a study's next trial stands in the server's queue: its place (1: next) and
        estimated start in seconds; None when none of its trials waits there."""
        found = self.get(study_id)
        if found is None:
            return None
        with found.lock:
            jobs = [trial.job for trial in found.trials.values()]
        places = [where for job in jobs if (where := job.place()) is not None]
        return min(places) if places else None

    def stop(self, study_id: str) -> None:
        """Stop a study: no more trials are asked, those in flight are stopped (told failed,
        marked stopped: their epochs are not kept); the finished ones stay in the study."""
        found = self.get(study_id)
        if found is None:
            return
        with found.lock:
            if not found.active:
                return
            found.record["stop_requested"] = True
            found.record["state"] = "stopping"
            flight = list(found.trials.values())
        for trial in flight:
            trial.job.stop()
        found.save()
        self._wake.set()

    def wait(self, study_id: str, timeout: float | None = None) -> bool:
        """Wait for a study to end; whether it has."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            found = self.get(study_id)
            if found is None or not found.active:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def close(self, wait: float | None = None) -> None:
        """Stop every active study (at shutdown, and in tests)."""
        with self._lock:
            active = [s.id for s in self._studies.values() if s.active]
        for study_id in active:
            self.stop(study_id)
        if wait is not None:
            for study_id in active:
                self.wait(study_id, wait)

    # -- records
    def _load(self, root: Path) -> None:
        """Read the records of ``root`` once; an active one left by a stopped server goes on
        (:meth:`_restarted`)."""
        key = os.fspath(root)
        with self._lock:
            if key in self._loaded:
                return
            self._loaded.add(key)
        old = root / OLD_EXPERIMENTS
        if old.is_dir() and any(old.glob("*/experiment.json")):
            LOG.warning(
                "%s: experiment records from before grid studies are not read (their runs stay "
                "on Results)",
                old,
            )
        restarted = False
        for kind in KINDS:
            for path in sorted(studies_root(root).glob(f"*.{kind}.json")):
                try:
                    record = json.loads(path.read_text())
                    study_id = str(record["id"])
                except (OSError, ValueError, KeyError, TypeError):
                    continue
                record["kind"] = kind
                with self._lock:
                    if study_id in self._studies:
                        continue
                    found = self._studies[study_id] = ServerStudy(record, path)
                if found.active:
                    self._restarted(found)
                    restarted = True
        if restarted:
            self._ensure_thread()
            self._wake.set()

    def _restarted(self, found: ServerStudy) -> None:
        """After a restart, the trials a study had in flight: one that was training is told
        failed (with the run its worker saved of it, if any); one still waiting for a slot is
        asked again (a grid's point enqueued again). The study then goes on."""
        from cae.search import fail_trial

        with found.lock:
            numbers = [int(n) for n in found.record.get("running_trials", {})]
            launched = {int(n) for n in found.record.get("launched", [])}
            found.record["running_trials"], found.record["launched"] = {}, []
            if found.record.get("stop_requested"):
                found.record["state"] = "stopped"
                found.record["ended"] = _now()
        for number in numbers:
            saved = _saved_by_worker(Path(found.record["root"]), found.record["study"], number)
            try:
                study = found.study()
                if number in launched or saved is not None:
                    if saved is None:
                        fail_trial(study, number, INTERRUPTED)
                    else:
                        fail_trial(study, number, saved[1], run_id=saved[0])
                    with found.lock:
                        found.record["told"] += 1
                    continue
                if found.record.get("stop_requested"):  # it was being stopped: it stays so
                    fail_trial(study, number, "stopped with its study", mark="stopped")
                    with found.lock:
                        found.record["told"] += 1
                    continue
                trial = fail_trial(
                    study, number, "queued when the server stopped: asked again", mark="requeued"
                )
                if found.kind == "grid":
                    study.enqueue_trial(dict(trial.params))
                with found.lock:
                    found.record["asked"] -= 1
                    found.record["exhausted"] = False
            except Exception:  # noqa: BLE001 - a study that cannot be opened fails in _step
                continue
        found.save()

    # -- the dispatcher
    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._dispatch, name="cae-studies", daemon=True
                )
                self._thread.start()

    def _dispatch(self) -> None:
        while True:
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()
            with self._lock:
                line = sorted((s for s in self._studies.values() if s.active), key=lambda s: s.id)
            for found in line:
                try:
                    self._step(found)
                except Exception as error:  # noqa: BLE001 - the study says why; the loop goes on
                    self._fail(found, f"{type(error).__name__}: {error}")

    def _fail(self, found: ServerStudy, message: str) -> None:
        with found.lock:
            found.record["state"] = "failed"
            found.record["message"] = message
            found.record["ended"] = _now()
            flight = list(found.trials.values())
        for trial in flight:
            trial.job.stop()
        found.save()

    def _step(self, found: ServerStudy) -> None:
        """Follow the trials in flight (report their epochs, prune, tell the ended ones), then
        ask new ones up to the queue's slots until the study has its trials."""
        changed = False
        with found.lock:
            record = found.record
            for trial in list(found.trials.values()):
                if trial.job.launched and trial.number not in record["launched"]:
                    record["launched"].append(trial.number)
                    if record["state"] == "queued":
                        record["state"] = "running"
                    changed = True
                if not trial.job.done:
                    history = trial.job.snapshot().history
                    if trial.reporter.update(history) and not trial.job.stop_requested:
                        trial.job.stop()  # pruned: its worker stops within a batch
                    continue
                self._tell(found, trial)
                changed = True
            if record.get("stop_requested"):
                if not found.trials:
                    record["state"] = "stopped"
                    from cae.search import close_waiting  # optuna: imported where it is used

                    close_waiting(found.study(), "its study was stopped before this point")
                    kept = self._finished(found)
                    record["message"] = (
                        f"Stopped; the {kept} run(s) already finished are kept."
                        if found.kind == "grid"
                        else f"Stopped; {kept} finished trial(s) kept."
                    )
                    record["ended"] = _now()
                    changed = True
            else:
                changed = self._fill(found) or changed
                if not found.trials and not self._wants_more(found):
                    what = "runs" if found.kind == "grid" else "trials"
                    finished = self._finished(found)
                    record["state"] = "finished" if finished or found.kind == "search" else "failed"
                    record["message"] = (
                        record["message"] or f"{finished} of {record['asked']} {what} finished."
                    )
                    record["ended"] = _now()
                    changed = True
        if changed:
            found.save()
            self._wake.set()

    def _fill(self, found: ServerStudy) -> bool:
        """Ask trials and hand them to the job manager up to the queue's training slots, until
        the study has its trials (a grid done, or nothing left that can train, ends it early);
        whether any was asked."""
        from cae.search import GridDone, SearchError

        record = found.record
        slots = max(1, self._jobs.scheduler.slots)
        record["parallel"] = slots
        asked = False
        while len(found.trials) < slots and self._wants_more(found):
            try:
                candidate = found.ask()
            except SearchError as error:  # a grid done, or nothing left that can train
                record["trials"] = record["asked"]
                record["exhausted"] = True
                if found.kind == "search" or not isinstance(error, GridDone):
                    record["message"] = str(error)
                break
            self._start_trial(found, candidate)
            asked = True
        return asked

    @staticmethod
    def _wants_more(found: ServerStudy) -> bool:
        """Whether a study has trials left to ask: a search until it has asked its trials, a
        grid until its every point was asked (the last ones may be points that cannot train,
        told skipped when asked)."""
        record = found.record
        if record.get("exhausted"):
            return False
        return found.kind == "grid" or record["asked"] < record["trials"]

    def _start_trial(self, found: ServerStudy, candidate: Any) -> None:
        """Hand one asked trial to the job manager, with its heartbeat and pruning reporter."""
        from cae.search import EpochReporter, Heartbeat, fail_trial

        record = found.record
        study = found.study()
        record["asked"] += 1
        key = f"study-{found.id}-{candidate.number}"
        try:
            request, index, label = found.request(candidate)
            job = self._jobs.start(
                key,
                request,
                root=record["root"],
                student=found.owner,
                kind="experiment",
                seconds=record.get("trial_seconds"),
                group=found.id,
            )
        except (ValueError, OSError, RuntimeError) as error:
            fail_trial(study, candidate.number, str(error))
            record["told"] += 1
            return
        found.trials[candidate.number] = _Trial(
            number=candidate.number,
            key=key,
            job=job,
            reporter=EpochReporter(study, candidate.number, candidate.config.epochs),
            heartbeat=Heartbeat(study, candidate.number).start(),
            config=candidate.config,
            label=label,
            index=index,
        )
        record["running_trials"][str(candidate.number)] = key

    def _tell(self, found: ServerStudy, trial: _Trial) -> None:
        """Tell the study how an ended trial's job went, and forget the job."""
        from cae.search import fail_trial, finish_trial

        study = found.study()
        job = trial.job
        if job.run_id is None and job.kept and not job.stop_requested:
            with contextlib.suppress(ValueError, RuntimeError, OSError):
                job.save()  # trained but not saved at the end: one more try
        outcome = job.result
        try:
            if trial.reporter.pruned:
                outcome = outcome or TrainOutcome(
                    "stopped", "pruned", trial.reporter.pruned_at, True
                )
                finish_trial(  # a run it finished before the stop arrived is kept, named
                    study,
                    trial.number,
                    outcome,
                    pruned=True,
                    run_id=job.run_id,
                    config=trial.config,
                )
            elif found.record.get("stop_requested") and job.stop_requested and job.run_id is None:
                fail_trial(
                    study,
                    trial.number,
                    "stopped with its study; its epochs were not kept",
                    mark="stopped",
                )
            elif outcome is None:
                fail_trial(study, trial.number, job.error or "the training ended without a result")
            else:
                reason = job.save_error if job.run_id is None and job.save_error else None
                finish_trial(
                    study,
                    trial.number,
                    outcome,
                    run_id=job.run_id,
                    config=trial.config,
                    reason=reason,
                )
        finally:
            trial.heartbeat.stop()
            del found.trials[trial.number]
            found.record["running_trials"].pop(str(trial.number), None)
            if trial.number in found.record["launched"]:
                found.record["launched"].remove(trial.number)
            found.record["told"] += 1
            self._jobs.forget(trial.key)  # and its unsaved model (a pruned or stopped trial's)

    def _finished(self, found: ServerStudy) -> int:
        """How many of the study's trials completed."""
        from cae.search import trial_rows

        return sum(row["state"] == "finished" for row in trial_rows(found.study()))


def _saved_by_worker(root: Path, study: str, number: int) -> tuple[str, str] | None:
    """The run a trial's worker saved of its completed epochs when the server went down (found
    by the study tag in its train.json), with the words for it; None when nothing was saved."""
    for path in sorted(root.glob("*/train.json")):
        try:
            train = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        tag = train.get("experiment") if isinstance(train, dict) else None
        if isinstance(tag, dict) and tag.get("study") == study and tag.get("trial") == number:
            outcome = train.get("outcome") if isinstance(train.get("outcome"), dict) else {}
            epochs = outcome.get("epochs_completed", "?")
            run_id = path.parent.name
            return run_id, f"{INTERRUPTED}: stopped at epoch {epochs}, saved as {run_id}"
    return None


def _params_label(params: dict[str, Any]) -> str:
    """A trial's sampled values as ``name=value, ...``."""
    return ", ".join(
        f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}"
        for key, value in params.items()
    )


def search_view(search: ServerStudy) -> dict[str, Any]:
    """What a page shows of a search, as plain data: its record (with the trials in flight), a
    row per trial of its study (state, values, validation and test PSNR, size, time, run, why it
    was pruned or failed) and the best finished trial (with its design)."""
    from cae.search import trial_rows

    record = search.snapshot()
    rows = trial_rows(search.study())
    table = [
        {
            "trial": row["number"],
            "state": row["state"],
            "values": _params_label(row.get("params") or {}),
            "validation PSNR (dB)": row.get("value"),
            "test PSNR (dB)": row.get("test_psnr"),
            "parameters": row.get("param_count"),
            "code values": row.get("code_values"),
            "epochs": row.get("epochs"),
            "seconds": row.get("seconds"),
            "run id": row.get("run_id") or "",
            "why": row.get("reason") or "",
        }
        for row in rows
    ]
    finished = [row for row in rows if row["state"] == "finished" and row.get("spec")]
    best = None
    if finished:
        top = max(finished, key=lambda row: row["value"])
        best = {**top, "label": _params_label(top.get("params") or {})}
    return {"record": record, "rows": table, "best": best, "data": record["data"]}


def grid_view(found: ServerStudy) -> dict[str, Any]:
    """What a page shows of a grid experiment, as plain data: its record (with the trials in
    flight), a row per point (``cae.experiments.grid_rows``: state, what it varies, its run,
    why it failed), how many of its runs train now (``at_once``) and the seconds left
    (``cae.experiments.grid_eta`` at that pace; None once it ended). The pace is the runs
    training now, not the queue's slots: a slot another student waits for goes to them first
    (``cae.admission``), so counting every slot promised an end too soon."""
    from cae.experiments import grid_eta, grid_rows

    record = found.snapshot()
    rows = grid_rows(found.study())
    running = {
        trial["index"]: float(getattr(trial["progress"], "fraction", 0.0) or 0.0)
        for trial in record["in_flight"]
        if trial["training"]
    }
    eta = None
    if found.active:
        eta = grid_eta(rows, record.get("estimates") or [], running, len(running) or 1)
    return {"record": record, "rows": rows, "at_once": len(running), "eta_seconds": eta}


LEGEND_BELOW = {"orientation": "h", "yanchor": "top", "y": -0.25, "x": 0}


def search_figures(search: ServerStudy) -> dict[str, Any]:
    """Plotly figures of a search's study: Optuna's optimisation history and parameter
    importances (once two trials finished with different values), and each finished trial's
    parameters against its validation PSNR with the Pareto front (fewer parameters, higher
    PSNR)."""
    import optuna
    import plotly.graph_objects as go

    from cae.plots import pareto_front

    study = search.study()
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    figures: dict[str, Any] = {}
    if not complete:
        return figures
    history = optuna.visualization.plot_optimization_history(
        study, target_name="validation PSNR (dB)"
    )
    history.update_layout(
        title="Validation PSNR of each trial, and the best so far",
        height=360,
        legend=LEGEND_BELOW,  # beside the plot, it took half of a phone's width
    )
    figures["history"] = history
    # only the parameters whose value changed between trials: one the space fixes (a list of
    # one value) was drawn as '<0.01' beside the searched ones, as if it had been tried
    keys = sorted({key for trial in complete for key in trial.params})
    varied = [key for key in keys if len({repr(trial.params.get(key)) for trial in complete}) > 1]
    if len(complete) >= 2 and varied:
        try:
            importance = optuna.visualization.plot_param_importances(
                study, params=varied, target_name="validation PSNR (dB)"
            )
        except (ValueError, RuntimeError):  # too few distinct trials for the evaluator
            importance = None
        if importance is not None:
            importance.update_layout(title="Which values mattered (fANOVA)", height=320)
            figures["importance"] = importance
    usable = [t for t in complete if isinstance(t.user_attrs.get("param_count"), int)]
    points = [(float(t.user_attrs["param_count"]), float(t.value)) for t in usable]
    front = pareto_front(points)
    pareto = go.Figure()
    pareto.add_trace(
        go.Scatter(
            x=[points[i][0] for i in front],
            y=[points[i][1] for i in front],
            mode="lines+markers",  # a front of one trial is one point: a line alone drew nothing
            name="Pareto front",
            line={"shape": "hv"},
            marker={"size": 11, "symbol": "circle-open"},
            hoverinfo="skip",
        )
    )
    pareto.add_trace(
        go.Scatter(
            x=[p[0] for p in points],
            y=[p[1] for p in points],
            mode="markers",
            name="trials",
            text=[f"trial {t.number}: {_params_label(t.params)}" for t in usable],
            hovertemplate="%{text}<br>%{x:,} parameters<br>%{y:.2f} dB<extra></extra>",
        )
    )
    pareto.update_layout(
        title="Parameters against validation PSNR (the front: none smaller does better)",
        xaxis_title="parameters",
        yaxis_title="validation PSNR (dB)",
        height=360,
        legend=LEGEND_BELOW,
    )
    figures["pareto"] = pareto
    return figures


STUDIES = StudyQueue()


def restore_queue(root: str | os.PathLike[str] | None = None) -> None:
    """At the server's start (idempotent): requeue the trainings the server had queued when it
    stopped (``cae.jobs.JOBS.restore``), then read the studies of the runs folder and of every
    workspace, so the active ones go on (their interrupted trials told failed)."""
    from cae.store import models_dir, workspaces_dir

    JOBS.restore(root)
    base = Path(root) if root is not None else models_dir()
    STUDIES.all(base)
    for folder in sorted(path for path in workspaces_dir(base).glob("*") if path.is_dir()):
        STUDIES.all(folder)
