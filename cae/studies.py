"""Searches on the server: Optuna studies (``cae.search``) whose trials train as the server's
experiment runs, through its one queue.

``STUDIES.submit(owner, name, space, recipe, base_config, trials, num_train=..., root=...)`` opens
(or finds again) the study ``name`` in the workspace's storage (``cae.search.default_storage``: a
SQLite file in ``<root>/.studies/``), asks it for a first candidate (so a space that cannot train
here is refused at once) and keeps a small record beside it (``<root>/.studies/<id>.search.json``:
who started it, how many trials, its state). A dispatcher thread then keeps as many trials in
flight as the queue has training slots: each asked trial (``cae.search.ask_candidate``, shape-
checked and constrained) becomes a ``TrainRequest`` handed to the job manager (``cae.jobs.JOBS``)
as an ``experiment`` job of its owner, so the queue (``cae.admission``) starts it after Train
clicks, round-robin between students, within the slots and the memory budget. As a trial's
per-epoch progress arrives here, its validation loss is reported to the study and the pruner
consulted (``cae.search.EpochReporter``): a pruned trial's job is stopped. When a job ends, the
study is told (``cae.search.finish_trial``: its validation PSNR, never the test split's); only
this process writes the study. Stop keeps the finished trials; after a server restart an active
search goes on, its trials that were training told failed ("the server stopped"). A search's
trials count against its student's experiment caps. No Streamlit here.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cae.experiments import EXPERIMENTS, POLL_SECONDS
from cae.jobs import JOBS, JobManager, TrainingJob
from cae.recipe import DataRecipe
from cae.search_space import SearchSpace
from cae.training import TrainConfig, TrainOutcome

STUDIES_DIR = ".studies"  # beside the default SQLite storage; hidden, so never listed as runs
RECORD_SUFFIX = ".search.json"
ACTIVE_STATES = ("queued", "running", "stopping")
MAX_TRIALS = 60  # trials one search may ask for (the experiments' cap on queued runs)


def studies_root(root: str | os.PathLike[str]) -> Path:
    """Where a runs folder keeps its searches' records (and, by default, their storage)."""
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


class ServerSearch:
    """One search of the server: its record (plain data, kept in a JSON file) and its trials in
    flight."""

    def __init__(self, record: dict[str, Any], path: Path) -> None:
        """Wrap ``record``, kept at ``path``."""
        self.record = record
        self.path = path
        self.lock = threading.RLock()
        self.trials: dict[int, _Trial] = {}
        self._study: Any = None

    @property
    def id(self) -> str:
        """The search's id (its record's name)."""
        return str(self.record["id"])

    @property
    def owner(self) -> str:
        """The workspace that started it."""
        return str(self.record["owner"])

    @property
    def active(self) -> bool:
        """True while it has trials to ask or in flight."""
        return self.record.get("state") in ACTIVE_STATES

    def study(self) -> Any:
        """Its Optuna study, opened once."""
        from cae.search import open_study

        if self._study is None:
            self._study = open_study(
                self.record["study"], storage=self.record.get("storage"), root=self.record["root"]
            )
        return self._study

    def save(self) -> None:
        """Write the record (atomically)."""
        with self.lock:
            text = json.dumps(self.record, indent=1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".tmp-{secrets.token_hex(4)}-{self.path.name}")
        partial.write_text(text)
        os.replace(partial, self.path)

    def snapshot(self) -> dict[str, Any]:
        """A copy of the record, with the trials in flight and their progress."""
        with self.lock:
            record = json.loads(json.dumps(self.record))
            flight = list(self.trials.values())
        record["in_flight"] = [
            {
                "number": trial.number,
                "label": trial.label,
                "queued": trial.job.queued,
                "place": trial.job.place(),
                "epoch": trial.job.snapshot().epoch,
                "epochs": trial.config.epochs,
            }
            for trial in flight
        ]
        return record


class StudyQueue:
    """The server's searches: submitted, dispatched to the job manager, followed, told."""

    def __init__(self, jobs: JobManager = JOBS) -> None:
        """Searches over the job manager ``jobs``."""
        self._jobs = jobs
        self._lock = threading.Lock()
        self._searches: dict[str, ServerSearch] = {}
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
    ) -> ServerSearch:
        """Start (or go on with) the study ``name`` for ``owner``: ``trials`` more trials. The
        study is opened and its first candidate asked now, so a space or data it cannot take is
        refused here (SearchError, a ValueError, in one line); the caps of the owner's experiments
        apply (ExperimentCapError)."""
        from cae.preflight import fit_speed, training_seconds, training_work
        from cae.search import SearchError, ask_candidate, open_study
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
            running = [s for s in self._searches.values() if s.active and s.record["study"] == name]
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
        per_trial = training_seconds(work, num_train, first.config.epochs, speed)
        try:
            EXPERIMENTS.check_caps(owner, trials + self._waiting(owner), trials * per_trial)
        except ValueError:
            from cae.search import fail_trial

            fail_trial(study, first.number, "the search was refused by its student's caps")
            raise
        search_id = f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
        record = {
            "id": search_id,
            "study": name,
            "owner": owner,
            "root": os.fspath(root_path),
            "storage": storage,
            "created": _now(),
            "ended": None,
            "state": "queued",
            "message": "",
            "trials": trials,
            "asked": 0,
            "told": 0,
            "data": recipe.to_dict(),
            "config": base_config.to_dict(),
            "space": space.to_dict(),
            "num_train": num_train,
            "trial_seconds": round(per_trial, 1),
            "running_trials": {},
        }
        search = ServerSearch(record, studies_root(root_path) / f"{search_id}{RECORD_SUFFIX}")
        search._study = study
        with search.lock:
            self._start_trial(search, first)
        search.save()
        with self._lock:
            self._searches[search_id] = search
        self._ensure_thread()
        self._wake.set()
        return search

    def _waiting(self, owner: str) -> int:
        """Trials ``owner``'s active searches have yet to train (their part of the caps)."""
        with self._lock:
            mine = [s for s in self._searches.values() if s.active and s.owner == owner]
        return sum(max(0, s.record["trials"] - s.record["told"]) for s in mine)

    def get(
        self, search_id: str, root: str | os.PathLike[str] | None = None
    ) -> ServerSearch | None:
        """The search ``search_id`` (read from ``root``'s records when not seen yet)."""
        if root is not None:
            self._load(Path(root).resolve())
        with self._lock:
            return self._searches.get(search_id)

    def all(self, root: str | os.PathLike[str]) -> list[ServerSearch]:
        """The searches of the runs folder ``root``, newest first."""
        base = Path(root).resolve()
        self._load(base)
        with self._lock:
            mine = [s for s in self._searches.values() if Path(s.record["root"]) == base]
        return sorted(mine, key=lambda s: s.id, reverse=True)

    def stop(self, search_id: str) -> None:
        """Stop a search: no more trials are asked, those in flight are stopped (told failed:
        "stopped"); the finished ones stay in the study."""
        search = self.get(search_id)
        if search is None:
            return
        with search.lock:
            if not search.active:
                return
            search.record["stop_requested"] = True
            search.record["state"] = "stopping"
            flight = list(search.trials.values())
        for trial in flight:
            trial.job.stop()
        search.save()
        self._wake.set()

    def wait(self, search_id: str, timeout: float | None = None) -> bool:
        """Wait for a search to end; whether it has."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            search = self.get(search_id)
            if search is None or not search.active:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def close(self, wait: float | None = None) -> None:
        """Stop every active search (at shutdown, and in tests)."""
        with self._lock:
            active = [s.id for s in self._searches.values() if s.active]
        for search_id in active:
            self.stop(search_id)
        if wait is not None:
            for search_id in active:
                self.wait(search_id, wait)

    # -- records
    def _load(self, root: Path) -> None:
        """Read the records of ``root`` once; an active one left by a stopped server goes on,
        its trials that were training told failed."""
        key = os.fspath(root)
        with self._lock:
            if key in self._loaded:
                return
            self._loaded.add(key)
        restarted = False
        for path in sorted(studies_root(root).glob(f"*{RECORD_SUFFIX}")):
            try:
                record = json.loads(path.read_text())
                search_id = str(record["id"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            with self._lock:
                if search_id in self._searches:
                    continue
                search = self._searches[search_id] = ServerSearch(record, path)
            if search.active:
                self._interrupted(search)
                restarted = True
        if restarted:
            self._ensure_thread()
            self._wake.set()

    def _interrupted(self, search: ServerSearch) -> None:
        """Tell the study that the trials this search had in flight when the server stopped
        failed, so they do not stay running; the search asks new ones."""
        from cae.search import fail_trial

        with search.lock:
            numbers = [int(n) for n in search.record.get("running_trials", {})]
            search.record["running_trials"] = {}
            if search.record.get("stop_requested"):
                search.record["state"] = "stopped"
                search.record["ended"] = _now()
        for number in numbers:
            with contextlib.suppress(Exception):
                fail_trial(search.study(), number, "the server stopped while this trial trained")
            with search.lock:
                search.record["told"] += 1
        search.save()

    # -- the dispatcher
    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._dispatch, name="cae-searches", daemon=True
                )
                self._thread.start()

    def _dispatch(self) -> None:
        while True:
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()
            with self._lock:
                line = sorted((s for s in self._searches.values() if s.active), key=lambda s: s.id)
            for search in line:
                try:
                    self._step(search)
                except Exception as error:  # noqa: BLE001 - the search says why; the loop goes on
                    self._fail(search, f"{type(error).__name__}: {error}")

    def _fail(self, search: ServerSearch, message: str) -> None:
        with search.lock:
            search.record["state"] = "failed"
            search.record["message"] = message
            search.record["ended"] = _now()
            flight = list(search.trials.values())
        for trial in flight:
            trial.job.stop()
        search.save()

    def _step(self, search: ServerSearch) -> None:
        """Follow the trials in flight (report their epochs, prune, tell the ended ones), then
        ask new ones up to the queue's slots until the search has its trials."""
        from cae.search import SearchError, ask_candidate

        changed = False
        with search.lock:
            record = search.record
            for trial in list(search.trials.values()):
                if trial.job.launched and record["state"] == "queued":
                    record["state"] = "running"
                    changed = True
                if not trial.job.done:
                    history = trial.job.snapshot().history
                    if trial.reporter.update(history) and not trial.job.stop_requested:
                        trial.job.stop()  # pruned: its worker stops within a batch
                    continue
                self._tell(search, trial)
                changed = True
            if record.get("stop_requested"):
                if not search.trials:
                    record["state"] = "stopped"
                    record["message"] = f"Stopped; {self._finished(search)} finished trial(s) kept."
                    record["ended"] = _now()
                    changed = True
            else:
                slots = max(1, self._jobs.scheduler.slots)
                while len(search.trials) < slots and record["asked"] < record["trials"]:
                    space = SearchSpace.from_dict(record["space"])
                    recipe = DataRecipe.from_dict(record["data"])
                    try:
                        candidate = ask_candidate(
                            search.study(),
                            space,
                            recipe.image_shape(),
                            TrainConfig.from_dict(record["config"]),
                            num_train=record["num_train"],
                        )
                    except SearchError as error:  # a grid done, or nothing left that can train
                        record["trials"] = record["asked"]
                        record["message"] = str(error)
                        break
                    self._start_trial(search, candidate)
                    changed = True
                if not search.trials and record["asked"] >= record["trials"]:
                    record["state"] = "finished"
                    record["message"] = (
                        record["message"]
                        or f"{self._finished(search)} of {record['asked']} trials finished."
                    )
                    record["ended"] = _now()
                    changed = True
        if changed:
            search.save()
            self._wake.set()

    def _start_trial(self, search: ServerSearch, candidate: Any) -> None:
        """Hand one asked trial to the job manager, with its heartbeat and pruning reporter."""
        from cae.search import EpochReporter, Heartbeat, fail_trial, trial_request

        record = search.record
        study = search.study()
        record["asked"] += 1
        key = f"search-{search.id}-{candidate.number}"
        recipe = DataRecipe.from_dict(record["data"])
        try:
            job = self._jobs.start(
                key,
                trial_request(record["study"], candidate, recipe),
                root=record["root"],
                student=search.owner,
                kind="experiment",
                seconds=record.get("trial_seconds"),
                group=search.id,
            )
        except (ValueError, OSError, RuntimeError) as error:
            fail_trial(study, candidate.number, str(error))
            record["told"] += 1
            return
        search.trials[candidate.number] = _Trial(
            number=candidate.number,
            key=key,
            job=job,
            reporter=EpochReporter(study, candidate.number, candidate.config.epochs),
            heartbeat=Heartbeat(study, candidate.number).start(),
            config=candidate.config,
            label=candidate.label,
        )
        record["running_trials"][str(candidate.number)] = key

    def _tell(self, search: ServerSearch, trial: _Trial) -> None:
        """Tell the study how an ended trial's job went, and forget the job."""
        from cae.search import fail_trial, finish_trial

        study = search.study()
        job = trial.job
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
            elif search.record.get("stop_requested") and job.stop_requested:
                fail_trial(study, trial.number, "stopped with the search")
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
            del search.trials[trial.number]
            search.record["running_trials"].pop(str(trial.number), None)
            search.record["told"] += 1
            self._jobs.forget(trial.key)  # and its unsaved model (a pruned trial's)

    def _finished(self, search: ServerSearch) -> int:
        """How many of the study's trials completed."""
        from cae.search import trial_rows

        return sum(row["state"] == "finished" for row in trial_rows(search.study()))


def _params_label(params: dict[str, Any]) -> str:
    """A trial's sampled values as ``name=value, ...``."""
    return ", ".join(
        f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}"
        for key, value in params.items()
    )


def search_view(search: ServerSearch) -> dict[str, Any]:
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


LEGEND_BELOW = {"orientation": "h", "yanchor": "top", "y": -0.25, "x": 0}


def search_figures(search: ServerSearch) -> dict[str, Any]:
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


def restore_searches(root: str | os.PathLike[str] | None = None) -> None:
    """At the server's start: read the searches of the runs folder and of every workspace, so
    the active ones go on (their interrupted trials told failed)."""
    from cae.store import models_dir, workspaces_dir

    base = Path(root) if root is not None else models_dir()
    STUDIES.all(base)
    for folder in sorted(path for path in workspaces_dir(base).glob("*") if path.is_dir()):
        STUDIES.all(folder)
