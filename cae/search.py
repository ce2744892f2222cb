"""Searches on Optuna: a study holds the trials, their parameters and values; each trial is a
design and training config sampled from a :class:`cae.search_space.SearchSpace`, shape-checked
before it trains, trained as an ordinary run and scored by its validation split's PSNR.

The pieces are plain functions, so the server's job queue can drive a study through ask and tell
as well as the command line's loop (:func:`run_search`) does:

- :func:`open_study` creates or loads a study in a storage (a SQLite file in the runs folder,
  ``<root>/.studies/studies.db``, by default; an Optuna RDB URL; a ``.log``/``.jsonl`` journal
  file), with the space's sampler (TPE, random, or a grid: Optuna's ``GridSampler``) and pruner
  (``MedianPruner`` on the validation loss);
- :func:`ask_candidate` asks the study for a trial and turns its parameters into a
  :class:`Candidate` (its ``ArchitectureSpec`` and ``TrainConfig``); a candidate that breaks a
  constraint (code values, parameters) or fails the shape check or the preflight is not trained:
  its trial is told ``PRUNED`` with the reason in its ``skipped`` user attribute (pruned, not
  failed, so TPE learns to avoid the region), and the next one is asked;
- :func:`trial_request` makes the candidate a :class:`cae.request.TrainRequest`, tagged with the
  study in train.json's ``experiment`` (``study``, ``trial``, ``values``);
- :class:`EpochReporter` (or :func:`report_epoch`) reports each completed epoch's validation loss
  to the trial as it arrives, negated so higher is better like the study's PSNR, and says when
  the pruner would stop it; the caller stops the training;
- :func:`finish_trial` tells the study how the training ended: ``COMPLETE`` with the validation
  PSNR, ``PRUNED`` or ``FAIL`` (user attributes: the run id, the test PSNR for the record, the
  reason);
- :class:`Heartbeat` (``with heartbeat(study, n):``) keeps a running trial's heartbeat in an RDB storage, so the trials of a
  killed process are marked failed (``fail_stale_trials``, run before each ask) instead of
  running forever.

The test split is never the objective: it is scored by the training (every run records its test
metrics) and read only for the table and the winner's report. Optuna is imported inside the
functions; no TensorFlow at import.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cae.search_space import SearchSpace, SpaceError
from cae.spec import ArchitectureSpec
from cae.training import TrainConfig, TrainOutcome

if TYPE_CHECKING:  # pragma: no cover
    import optuna

    from cae.recipe import DataRecipe
    from cae.request import TrainRequest

STUDIES_FILE = Path(".studies") / "studies.db"  # inside the runs folder (or a workspace's)
JOURNAL_SUFFIXES = (".log", ".jsonl")
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
HEARTBEAT_INTERVAL = 60  # seconds between a running trial's heartbeats (RDB storages)
GRACE_PERIOD = 180  # seconds without a heartbeat after which a running trial is marked failed
MAX_SKIPS = 200  # candidates in a row that break a constraint before the search gives up
OBJECTIVE = "validation PSNR"
STALE_REASON = "its process stopped beating (killed?): marked failed by its heartbeat"


class SearchError(ValueError):
    """A search that cannot go on (a storage, a study, a space); the message names the value."""


class GridDone(SearchError):
    """Every point of a grid has a trial: nothing is left to ask. ``skipped``: the points told
    skipped (number, reason) by the ask that found it."""

    def __init__(self, message: str, skipped: Sequence[tuple[int, str]] = ()) -> None:
        """The message, and the points skipped on the way."""
        super().__init__(message)
        self.skipped = tuple(skipped)


# ------------------------------------------------------------------------------------ storage


def default_storage(root: str | Path | None = None) -> str:
    """The SQLite URL of the studies file of a runs folder (``<root>/.studies/studies.db``; the
    folder is made): embedded, nothing to start."""
    from cae.store import models_dir

    path = (Path(root) if root is not None else models_dir()) / STUDIES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path.resolve()}"


def shown_storage(storage: str) -> str:
    """A storage URL as it may be printed: a password in it is hidden."""
    if "://" not in storage:
        return storage
    try:
        from sqlalchemy.engine import make_url

        return make_url(storage).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL sqlalchemy reads: show its scheme alone
        return storage.split("://", 1)[0] + "://..."


def make_storage(
    storage: str | None = None,
    root: str | Path | None = None,
    *,
    heartbeat_interval: int | None = HEARTBEAT_INTERVAL,
    grace_period: int | None = GRACE_PERIOD,
) -> optuna.storages.BaseStorage:
    """An Optuna storage: None is the runs folder's SQLite file (:func:`default_storage`); a
    path ending in .log or .jsonl a journal file (``JournalStorage``, several processes on one
    file system); a path ending in .db/.sqlite a SQLite file; an RDB URL
    (``postgresql://user@host/db``, ``mysql+pymysql://...``, ``sqlite:///...``) an
    ``RDBStorage`` with heartbeats, whose trials of a killed process are marked failed after
    ``grace_period`` seconds. One storage per URL and settings is made in a process and kept
    (an RDB storage holds a connection pool; opening one checks its schema, seconds on SQLite),
    so the server may call this for every request."""
    url = storage if storage is not None else default_storage(root)
    if not isinstance(url, str) or not url.strip():
        raise SearchError(f"--storage takes a URL or a file path. Received: storage={storage!r}")
    key = (url, heartbeat_interval, grace_period)
    with _STORAGES_LOCK:
        if key not in _STORAGES:
            _STORAGES[key] = _new_storage(url, storage, heartbeat_interval, grace_period)
        return _STORAGES[key]


_STORAGES: dict[tuple[Any, ...], Any] = {}
_STORAGES_LOCK = threading.Lock()


def _new_storage(
    url: str, storage: Any, heartbeat_interval: int | None, grace_period: int | None
) -> optuna.storages.BaseStorage:
    import optuna

    if "://" not in url:
        path = Path(url).expanduser()
        if path.suffix in JOURNAL_SUFFIXES:
            if not path.parent.is_dir():
                raise SearchError(
                    f"the journal file's folder does not exist. Received: storage={url!r}"
                )
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        if path.suffix in SQLITE_SUFFIXES:
            if not path.parent.is_dir():
                raise SearchError(
                    f"the SQLite file's folder does not exist. Received: storage={url!r}"
                )
            url = f"sqlite:///{path.resolve()}"
        else:
            raise SearchError(
                "--storage takes an RDB URL (sqlite:///file.db, postgresql://user@host/db), a "
                f"journal file (.log, .jsonl) or a SQLite file (.db). Received: storage={url!r}"
            )
    heartbeats: dict[str, Any] = {}
    if heartbeat_interval:
        heartbeats = {
            "heartbeat_interval": int(heartbeat_interval),
            "grace_period": int(grace_period) if grace_period else None,
        }
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs={"connect_args": {"timeout": 60}}
                if url.startswith("sqlite")
                else None,
                **heartbeats,
            )
    except ModuleNotFoundError as error:
        raise SearchError(
            f"the storage's database driver is not installed ({error.name}; for PostgreSQL: "
            f"pip install psycopg2-binary). Received: storage={shown_storage(url)!r}"
        ) from None
    except Exception as error:  # noqa: BLE001 - sqlalchemy's errors: one line with the URL
        from cae.errors import short_message

        hint = ""
        if "import DB access module" in str(error):  # Optuna's words for a missing driver
            hint = "; install its driver: psycopg2-binary for PostgreSQL, pymysql for MySQL"
        raise SearchError(
            f"cannot open the storage ({short_message(error, 160)}{hint}). "
            f"Received: storage={shown_storage(url)!r}"
        ) from None


# ------------------------------------------------------------------------------------ studies


def make_sampler(space: SearchSpace) -> optuna.samplers.BaseSampler:
    """The space's sampler: TPE (``n_startup_trials`` random ones first, the constant liar for
    trials running in parallel), random, or a grid of its lists (``GridSampler``)."""
    import optuna

    seed = space.sampler_seed
    if space.sampler == "grid":
        return grid_sampler(space.grid(), seed)
    if space.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            n_startup_trials=space.n_startup_trials, seed=seed, constant_liar=True
        )


def grid_sampler(grid: dict[str, list[Any]], seed: int | None) -> Any:
    """Optuna's ``GridSampler`` for ask and tell: its ``after_trial`` calls ``Study.stop``,
    which Optuna refuses outside ``optimize``; here the grid's end is found when asking
    (:func:`ask_candidate` says the grid is done)."""
    import optuna

    class AskTellGridSampler(optuna.samplers.GridSampler):
        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

    return AskTellGridSampler(grid, seed=seed)


def make_pruner(space: SearchSpace) -> optuna.pruners.BasePruner:
    """The space's pruner on the reported (negated) validation loss: ``MedianPruner``,
    ``SuccessiveHalvingPruner`` (``halving``: rungs at ``min_resource`` x
    ``reduction_factor``^k epochs, where a trial goes on only among the best 1 in
    ``reduction_factor`` of the trials that reached that rung: many designs get a few epochs,
    the promising ones long training), ``HyperbandPruner`` (several such brackets, up to the
    space's epochs), or none."""
    import optuna

    if space.pruner == "none":
        return optuna.pruners.NopPruner()
    if space.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=space.pruner_min_resource,
            reduction_factor=space.pruner_reduction_factor,
        )
    if space.pruner == "hyperband":
        epochs = space.by_name.get("epochs")
        fixed = epochs is not None and not epochs.sampled
        return optuna.pruners.HyperbandPruner(
            min_resource=space.pruner_min_resource,
            max_resource=int(epochs.value) if fixed else "auto",  # type: ignore[union-attr]
            reduction_factor=space.pruner_reduction_factor,
        )
    return optuna.pruners.MedianPruner(
        n_startup_trials=space.pruner_startup_trials, n_warmup_steps=space.pruner_warmup_steps
    )


def open_study(
    name: str,
    space: SearchSpace | None = None,
    *,
    storage: str | optuna.storages.BaseStorage | None = None,
    root: str | Path | None = None,
    recipe: DataRecipe | None = None,
    base_config: TrainConfig | None = None,
) -> optuna.Study:
    """The study ``name`` in ``storage`` (see :func:`make_storage`), created (maximising the
    validation PSNR) or loaded. The space, data recipe and base config are kept as the study's
    user attributes (``space``, ``data``, ``config``): a study is found again by name alone
    (``space`` None), and a process that brings another space or other data to it is refused, so
    every trial of a study is scored alike."""
    import optuna

    store = study_storage(name, storage, root)
    if space is None:
        summary = stored_study(name, store)
        stored = summary.user_attrs.get("space")
        if not isinstance(stored, dict):
            raise SearchError(f"the study holds no search space. Received: study={name!r}")
        space = SearchSpace.from_dict(stored)
    study = optuna.create_study(
        study_name=name,
        storage=store,
        sampler=make_sampler(space),
        pruner=make_pruner(space),
        direction="maximize",
        load_if_exists=True,
    )
    check_maximised(study)
    bind(study, "kind", "search")
    if space.enqueue and not study.get_trials(deepcopy=False) and "space" not in study.user_attrs:
        for point in space.enqueue:  # a new study tries these first
            study.enqueue_trial(point, skip_if_exists=True)
    bind(study, "space", space.to_dict())
    if recipe is not None:
        bind(study, "data", recipe.to_dict())
    if base_config is not None:
        bind(study, "config", base_config.to_dict())
    bind(study, "objective", OBJECTIVE)
    return study


def study_storage(
    name: str, storage: str | optuna.storages.BaseStorage | None, root: str | Path | None
) -> optuna.storages.BaseStorage:
    """The storage a study ``name`` opens in (:func:`make_storage` unless one is given), after
    checking the name (1 to 120 characters); Optuna's own log quieted (our tables say it)."""
    import optuna

    if not isinstance(name, str) or not name.strip() or len(name) > 120:
        raise SearchError(f"a study needs a name of 1 to 120 characters. Received: study={name!r}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return storage if not isinstance(storage, (str, type(None))) else make_storage(storage, root)


def stored_study(name: str, store: optuna.storages.BaseStorage) -> optuna.Study:
    """The study ``name`` as stored (to read what it was started with); SearchError when the
    storage has none of that name."""
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=store)
    except KeyError:
        raise SearchError(
            f"no study of that name in the storage. Received: study={name!r}"
        ) from None


def check_maximised(study: optuna.Study) -> None:
    """SearchError unless the study maximises (as every study here does: the validation PSNR)."""
    import optuna

    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise SearchError(
            f"the study maximises nothing ({OBJECTIVE} is maximised): choose another name. "
            f"Received: study={study.study_name!r}, direction={study.direction.name}"
        )


def _held(attrs: dict[str, Any], key: str) -> Any:
    """A study's user attribute ``key``; for ``kind``, a study made before kinds were recorded
    is a search (it holds a space) or a grid (it holds a grid)."""
    held = attrs.get(key)
    if key == "kind" and held is None:
        held = "search" if "space" in attrs else "grid" if "grid" in attrs else None
    return held


def bind_conflict(attrs: dict[str, Any], name: str, key: str, value: Any) -> str | None:
    """The one-line refusal of binding ``value`` as ``key`` to a study holding the user
    attributes ``attrs`` when it holds another (None when it holds none or the same)."""
    import json

    value = json.loads(json.dumps(value))  # tuples as lists, as the storage gives them back
    held = _held(attrs, key)
    if held is None or held == value:
        return None
    return (
        f"the study {name!r} was started with another {key}; use its own or choose a new "
        f"study name. Received: {key}={_short(value)}, the study's: {_short(held)}"
    )


def bind(study: optuna.Study, key: str, value: Any) -> None:
    """Record ``value`` as the study's user attribute ``key``, or refuse a different one."""
    import json

    problem = bind_conflict(study.user_attrs, study.study_name, key, value)
    if problem is not None:
        raise SearchError(problem)
    if study.user_attrs.get(key) is None:
        study.set_user_attr(key, json.loads(json.dumps(value)))


def study_conflict(
    name: str,
    attrs: dict[str, Any],
    storage: str | None = None,
    root: str | Path | None = None,
) -> str | None:
    """Why starting the study ``name`` with these user attributes (``kind``, ``space`` or
    ``grid``, ``data``, ``config``) would be refused, in the words of :func:`bind`, or None when
    no study of that name exists or it holds the same: what a form says before its Start."""
    from cae.store import models_dir

    base = Path(root) if root is not None else models_dir()
    if storage is None and not (base / STUDIES_FILE).is_file():
        return None  # no studies yet (and none made by asking: a new SQLite file takes seconds)
    try:
        store = make_storage(storage, root)
        held = store.get_study_user_attrs(store.get_study_id_from_name(name))
    except KeyError:  # no study of that name
        return None
    except Exception:  # noqa: BLE001 - a storage that cannot be read is refused by Start itself
        return None
    for key, value in attrs.items():
        problem = bind_conflict(held, name, key, value)
        if problem is not None:
            return problem
    return None


def _short(value: Any) -> str:
    import json

    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 100 else text[:97] + "..."


def study_space(study: optuna.Study) -> SearchSpace:
    """The space a study was started with."""
    stored = study.user_attrs.get("space")
    if not isinstance(stored, dict):
        raise SearchError(f"the study holds no search space. Received: study={study.study_name!r}")
    return SearchSpace.from_dict(stored)


def list_studies(
    storage: str | optuna.storages.BaseStorage | None = None, root: str | Path | None = None
) -> list[dict[str, Any]]:
    """The studies of a storage: name, trials, best validation PSNR (plain data)."""
    import optuna

    store = storage if not isinstance(storage, (str, type(None))) else make_storage(storage, root)
    found = []
    for summary in optuna.get_all_study_summaries(store, include_best_trial=True):
        best = summary.best_trial
        found.append(
            {
                "name": summary.study_name,
                "trials": summary.n_trials,
                "best_value": best.value if best is not None else None,
                "created": summary.datetime_start.isoformat() if summary.datetime_start else None,
            }
        )
    return found


# ------------------------------------------------------------------------------------ trials


@dataclass(frozen=True)
class Candidate:
    """One trial to train: its number in the study, the design and config its parameters make,
    the sampled parameters, and the trials skipped before it (number, reason)."""

    number: int
    spec: ArchitectureSpec
    config: TrainConfig
    params: dict[str, Any]
    param_count: int
    code_values: int
    skipped: tuple[tuple[int, str], ...] = field(default=())

    @property
    def label(self) -> str:
        """``filters=32, kernel=3``: the sampled parameters as plain text."""
        return ", ".join(f"{key}={_fmt(value)}" for key, value in self.params.items())


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _trial_id(study: optuna.Study, number: int) -> int:
    """The storage's id of trial ``number`` (Optuna's public API names trials by number)."""
    return study._storage.get_trial_id_from_study_id_trial_number(  # noqa: SLF001
        study._study_id,  # noqa: SLF001
        int(number),
    )


def _live_trial(study: optuna.Study, number: int) -> optuna.trial.Trial:
    """The running trial ``number`` of ``study`` as a ``Trial`` (for report and should_prune),
    from any process that opened the study."""
    import optuna

    return optuna.trial.Trial(study, _trial_id(study, number))


def fail_stale(study: optuna.Study) -> None:
    """Mark failed the running trials whose process stopped beating (RDB storages with
    heartbeats; nothing otherwise)."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def check_candidate(
    space: SearchSpace | None,
    spec: ArchitectureSpec,
    config: TrainConfig,
    *,
    image_shape: Sequence[int] | None = None,
    num_train: int | None = None,
    in_process: bool = False,
) -> tuple[int, int]:
    """(parameters, code values) of a candidate that may train; ValueError naming the
    constraint (the space's; none without one) or the check it fails (``cae.shapes`` and ``cae.preflight``: the design, its
    decoder's output, the images' shape, the memory, enough images; ``in_process``: a design
    oneDNN cannot train while this process has it on)."""
    from cae.onednn import is_off as onednn_is_off
    from cae.preflight import preflight
    from cae.shapes import compute_shapes, needs_onednn_off

    report = compute_shapes(spec, with_fixes=False)
    code_values = int(math.prod(report.latent_shape))
    if (
        space is not None
        and space.max_code_values is not None
        and code_values > space.max_code_values
    ):
        shape = "x".join(map(str, report.latent_shape))
        raise ValueError(
            f"the code has more values than max_code_values={space.max_code_values:,}. "
            f"Received: code={shape} ({code_values:,} values)"
        )
    if (
        space is not None
        and space.max_params is not None
        and report.total_params > space.max_params
    ):
        raise ValueError(
            f"more parameters than max_params={space.max_params:,}. "
            f"Received: params={report.total_params:,}"
        )
    if in_process and needs_onednn_off(spec) and not onednn_is_off():
        raise ValueError(
            "a kernel 1 tap wide on a strided axis, which oneDNN cannot train, and this "
            "process trains with oneDNN on (cae.onednn). Received: kernel=1, downsample=stride"
        )
    check = preflight(spec, config, image_shape=image_shape, num_train=num_train, with_fixes=False)
    check.raise_first("design", "mismatch", "shape", "memory", "images")
    return int(report.total_params), code_values


def ask_candidate(
    study: optuna.Study,
    space: SearchSpace,
    image_shape: Sequence[int],
    base_config: TrainConfig,
    *,
    num_train: int | None = None,
    max_skips: int = MAX_SKIPS,
    in_process: bool = False,
) -> Candidate:
    """Ask the study for the next trial that can train. Each asked trial's parameters make a
    design (``space.design``) and config (``base_config`` with the space's settings), checked
    by :func:`check_candidate`; one that fails is told ``PRUNED`` with the reason as its
    ``skipped`` user attribute, and another is asked (at most ``max_skips`` in a row: then
    SearchError). The trial that can train stays running, its spec, config, parameters and
    code size in its user attributes."""

    if base_config.validation_split <= 0:
        raise SearchError(
            f"a search scores each trial on its validation split: give a validation split above "
            f"0. Received: validation_split={base_config.validation_split}"
        )
    fail_stale(study)
    distributions = space.distributions()
    skipped: list[tuple[int, str]] = []
    for _ in range(max_skips):
        if space.sampler == "grid" and _grid_done(study, space):
            raise GridDone(
                f"every point of the grid has been tried. Received: {space.grid_size()} points"
            )
        with warnings.catch_warnings():  # heartbeats are ours to record (see heartbeat)
            warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
            trial = study.ask(distributions)
        values = space.values(trial.params)
        try:
            spec = space.design(values, image_shape, name=f"{space.name}-t{trial.number}")
            config = space.config(values, base_config)
            param_count, code_values = check_candidate(
                space,
                spec,
                config,
                image_shape=image_shape,
                num_train=num_train,
                in_process=in_process,
            )
        except ValueError as error:
            skipped.append(skip_trial(study, trial, str(error) or type(error).__name__))
            continue
        return accept_trial(
            trial, spec, config, dict(trial.params), (param_count, code_values), skipped
        )
    last = skipped[-1][1] if skipped else "-"
    raise SearchError(
        f"{max_skips} candidates in a row broke a constraint or the shape check; widen the "
        f"space or the constraints (the last: {last}). Received: space={space.name!r}"
    )


def skip_trial(study: optuna.Study, trial: optuna.trial.Trial, reason: str) -> tuple[int, str]:
    """Tell an asked trial that cannot train ``PRUNED``, the reason in its ``skipped``
    attribute (pruned, not failed: a sampler learns to avoid the region); (number, reason)."""
    import optuna

    trial.set_user_attr("skipped", reason)
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return trial.number, reason


def accept_trial(
    trial: optuna.trial.Trial,
    spec: ArchitectureSpec,
    config: TrainConfig,
    params: dict[str, Any],
    sizes: tuple[int, int],
    skipped: Sequence[tuple[int, str]],
) -> Candidate:
    """An asked trial that can train as a :class:`Candidate`: its spec, config, parameter count
    and code values (``sizes``) kept as its user attributes; it stays running."""
    param_count, code_values = sizes
    for key, value in (
        ("spec", spec.to_dict()),
        ("config", config.to_dict()),
        ("param_count", param_count),
        ("code_values", code_values),
    ):
        trial.set_user_attr(key, value)
    return Candidate(
        number=trial.number,
        spec=spec,
        config=config,
        params=params,
        param_count=param_count,
        code_values=code_values,
        skipped=tuple(skipped),
    )


def _grid_done(study: optuna.Study, space: SearchSpace) -> bool:
    """True when the grid's every point has a trial (running or finished)."""
    return len(study.get_trials(deepcopy=False)) >= space.grid_size()


def trial_request(study_name: str, candidate: Candidate, recipe: DataRecipe) -> TrainRequest:
    """The training request of a candidate, named after the study and trial and tagged in
    train.json's ``experiment`` with the study (``id`` and ``name``: the study; ``trial``;
    ``values``: the sampled parameters), so Results and ``cae list`` show it as a run."""
    from cae.request import MAX_RUN_NAME, TrainRequest

    label = candidate.label
    prefix = f"{study_name[:40]} #{candidate.number}"
    return TrainRequest(
        spec=candidate.spec,
        data=recipe,
        config=candidate.config,
        name=f"{prefix} · {label}"[:MAX_RUN_NAME],
        experiment={
            "id": f"study:{study_name}",
            "name": study_name,
            "kind": "study",
            "study": study_name,
            "trial": candidate.number,
            "index": candidate.number,
            "values": dict(candidate.params),
        },
    )


def report_epoch(
    study: optuna.Study,
    trial_number: int,
    epoch: int,
    val_loss: float,
    *,
    epochs: int | None = None,
) -> bool:
    """Report a completed epoch's validation loss to the running trial (as ``-val_loss`` at
    step ``epoch``: higher is better, as the study's PSNR) and return True when the pruner says
    to stop it. After the last of ``epochs`` nothing is pruned (the training is done)."""
    trial = _live_trial(study, trial_number)
    value = float(val_loss)
    if not math.isfinite(value):
        return False  # the training fails on its own; the pruner needs a number
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a step reported twice is ignored
        trial.report(-value, int(epoch))
    if epochs is not None and epoch >= epochs:
        return False
    return bool(trial.should_prune())


class EpochReporter:
    """Reports a training's per-epoch validation losses to its trial as they arrive (a progress
    snapshot's ``history``; epochs missed between two snapshots are reported from it too) and
    remembers the epoch at which the pruner stopped it.

    The command line wraps ``train``'s progress sink with it; the server calls
    :meth:`update` with each job's progress and stops the job when it returns True."""

    def __init__(
        self,
        study: optuna.Study,
        trial_number: int,
        epochs: int,
        forward: Callable[[Any], None] | None = None,
        on_prune: Callable[[], None] | None = None,
    ) -> None:
        """Report trial ``trial_number``'s epochs (``epochs`` in all); ``forward`` gets every
        snapshot after it; ``on_prune`` is called once when the pruner says stop."""
        self.study = study
        self.trial_number = trial_number
        self.epochs = epochs
        self.forward = forward
        self.on_prune = on_prune
        self.reported = 0
        self.pruned_at: int | None = None

    @property
    def pruned(self) -> bool:
        """True once the pruner said to stop this trial."""
        return self.pruned_at is not None

    def update(self, history: dict[str, Sequence[float]] | None) -> bool:
        """Report the epochs of ``history["val_loss"]`` not reported yet; True once pruned."""
        losses = list((history or {}).get("val_loss") or ())
        while not self.pruned and self.reported < len(losses):
            epoch = self.reported + 1
            self.reported = epoch
            if report_epoch(
                self.study, self.trial_number, epoch, losses[epoch - 1], epochs=self.epochs
            ):
                self.pruned_at = epoch
                if self.on_prune is not None:
                    self.on_prune()
        return self.pruned

    def __call__(self, progress: Any) -> None:
        """A progress sink (``cae.progress.Progress``): report, then forward the snapshot."""
        self.update(getattr(progress, "history", None))
        if self.forward is not None:
            self.forward(progress)


def objective_key(config: TrainConfig) -> str:
    """The validation metric a trial is scored by: ``psnr``, or for a denoiser
    ``denoise_psnr`` (its outputs from corrupted inputs against the clean images)."""
    return "denoise_psnr" if config.corruption is not None else "psnr"


def finish_trial(
    study: optuna.Study,
    trial_number: int,
    outcome: TrainOutcome,
    *,
    pruned: bool = False,
    run_id: str | None = None,
    config: TrainConfig | None = None,
    reason: str | None = None,
) -> optuna.trial.FrozenTrial:
    """Tell the study how trial ``trial_number``'s training ended: ``PRUNED`` when the pruner
    stopped it (``pruned``), ``COMPLETE`` with its validation PSNR when it finished, ``FAIL``
    otherwise (diverged, stopped by a person, no epoch, no validation score; the reason in the
    ``reason`` user attribute). The run id (``run_id``, a saved run), the test PSNR (for the
    record), the epochs and the wall time are kept as user attributes. Returns the finished
    trial."""
    import optuna

    trial = _live_trial(study, trial_number)
    config = config or _trial_config(study, trial_number)
    key = objective_key(config) if config is not None else "psnr"
    attrs: dict[str, Any] = {
        "epochs_completed": outcome.epochs_completed,
        "wall_seconds": round(float(outcome.wall_seconds), 3),
        "state": outcome.state,
    }
    test = outcome.test_metrics.get(key)
    if isinstance(test, float) and math.isfinite(test):
        attrs["test_psnr"] = test
    validation = outcome.validation_metrics.get(key)
    if run_id is not None:
        attrs["run_id"] = run_id
    state = optuna.trial.TrialState.COMPLETE
    value: float | None = None
    if pruned:
        state = optuna.trial.TrialState.PRUNED
        attrs["reason"] = reason or _prune_reason(study, outcome.epochs_completed)
    elif outcome.failed or outcome.stopped or outcome.epochs_completed == 0:
        state = optuna.trial.TrialState.FAIL
        attrs["reason"] = reason or outcome.message or outcome.state
    elif validation is None or math.isnan(validation):
        state = optuna.trial.TrialState.FAIL
        attrs["reason"] = reason or f"no {OBJECTIVE}: the run has no validation images"
    else:
        value = float(validation)
        if math.isinf(value):  # a perfect reconstruction: the best a study can hold
            value = math.copysign(1e9, value)
        if reason:
            attrs["reason"] = reason
    for name, item in attrs.items():
        trial.set_user_attr(name, item)
    if state == optuna.trial.TrialState.COMPLETE:
        return study.tell(trial, value)
    return study.tell(trial, state=state)


def _prune_reason(study: optuna.Study, epochs: int) -> str:
    """Why the study's pruner stopped a trial after ``epochs`` epochs, in its own rule's words."""
    import optuna

    pruner = study.pruner
    if isinstance(pruner, (optuna.pruners.SuccessiveHalvingPruner, optuna.pruners.HyperbandPruner)):
        factor = pruner._reduction_factor  # noqa: SLF001 - Optuna keeps no public accessor
        return (
            f"pruned after epoch {epochs}: its validation loss was not among the best 1 in "
            f"{factor} of the trials at that rung"
        )
    return (
        f"pruned after epoch {epochs}: its validation loss was above (worse than) the median of "
        "earlier trials at that epoch"
    )


def fail_trial(
    study: optuna.Study,
    trial_number: int,
    reason: str,
    *,
    mark: str | None = None,
    run_id: str | None = None,
) -> optuna.trial.FrozenTrial:
    """Tell the study that a trial could not run (an error before or during its training);
    ``mark`` (``stopped``: by a person with its study; ``requeued``: its point asked again) names
    a failure that is no error, as :func:`trial_rows` shows it; ``run_id``: what its worker saved
    of it."""
    import optuna

    trial = _live_trial(study, trial_number)
    trial.set_user_attr("reason", reason)
    for key, value in (("mark", mark), ("run_id", run_id)):
        if value is not None:
            trial.set_user_attr(key, value)
    return study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)


NOT_RUN = "not run"
"""The mark (and the row's state) of a waiting trial its study was stopped before asking."""


def close_waiting(study: optuna.Study, reason: str) -> int:
    """Tell failed, marked :data:`NOT_RUN` with ``reason``, the trials still waiting to be asked
    (a grid's enqueued points) of a study that will ask no more: a stopped study otherwise shows
    them "waiting" forever. Only for a study no other process asks (the server's own). Returns
    how many there were."""
    import optuna

    storage = study._storage  # noqa: SLF001 - Optuna's tell takes only running trials
    closed = 0
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
        trial_id = _trial_id(study, trial.number)
        storage.set_trial_user_attr(trial_id, "mark", NOT_RUN)
        storage.set_trial_user_attr(trial_id, "reason", reason)
        closed += bool(storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL))
    return closed


def _trial_config(study: optuna.Study, number: int) -> TrainConfig | None:
    record = study._storage.get_trial(_trial_id(study, number)).user_attrs.get("config")  # noqa: SLF001
    try:
        return TrainConfig.from_dict(record) if isinstance(record, dict) else None
    except ValueError:
        return None


class Heartbeat:
    """A running trial's heartbeat in an RDB storage with heartbeats (nothing otherwise): the
    first recorded by :meth:`start`, then one every ``heartbeat_interval`` seconds from a thread
    until :meth:`stop`, as Optuna's ``optimize`` does for the trials it runs. A killed process
    stops beating and its trial is marked failed by the next process's :func:`fail_stale`.
    The server starts one when a trial's job starts and stops it when the trial is told."""

    def __init__(self, study: optuna.Study, trial_number: int) -> None:
        """The heartbeat of trial ``trial_number`` of ``study`` (not started)."""
        self.study = study
        self.trial_number = trial_number
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Heartbeat:
        """Record the first heartbeat now (a trial killed at once has one to go stale: one
        without is never marked failed) and the others from a thread; returns self."""
        from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled

        storage = self.study._storage  # noqa: SLF001
        if self._thread is not None or not isinstance(storage, BaseHeartbeat):
            return self
        if not is_heartbeat_enabled(storage):
            return self
        trial_id = _trial_id(self.study, self.trial_number)
        interval = float(storage.get_heartbeat_interval() or HEARTBEAT_INTERVAL)
        storage.record_heartbeat(trial_id)

        def beat() -> None:
            while not self._stop.wait(interval):
                with contextlib.suppress(Exception):  # a storage hiccup: the next beat tries
                    storage.record_heartbeat(trial_id)

        self._thread = threading.Thread(
            target=beat, name=f"heartbeat-{self.trial_number}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating (before or after the trial is told; idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def heartbeat(study: optuna.Study, trial_number: int) -> Heartbeat:
    """``with heartbeat(study, n):`` keeps trial ``n`` beating while the block runs
    (:class:`Heartbeat`)."""
    return Heartbeat(study, trial_number)


# ------------------------------------------------------------------------------------ results


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """Every trial of the study as a plain row: number, state (``finished``, ``pruned``,
    ``skipped``: not trained, ``failed``, ``stopped`` and ``requeued`` (failed, marked by
    :func:`fail_trial`), ``not run`` (:func:`close_waiting`), ``running``, ``waiting``), the
    sampled parameters,
    validation and test PSNR, parameters, code values, epochs, seconds, run id and reason."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        state = trial.state.name.lower()
        state = {"complete": "finished", "fail": "failed"}.get(state, state)
        if state == "pruned" and "skipped" in attrs:
            state = "skipped"
        if state == "failed" and attrs.get("mark") in ("stopped", "requeued", NOT_RUN):
            state = attrs["mark"]
        reason = attrs.get("skipped") or attrs.get("reason")
        if state == "failed" and reason is None:  # finish_trial and fail_trial always say why
            reason = STALE_REASON
        rows.append(
            {
                "number": trial.number,
                "state": state,
                "params": dict(trial.params),
                "value": trial.value if trial.values else None,
                "test_psnr": attrs.get("test_psnr"),
                "param_count": attrs.get("param_count"),
                "code_values": attrs.get("code_values"),
                "epochs": attrs.get("epochs_completed"),
                "seconds": attrs.get("wall_seconds"),
                "run_id": attrs.get("run_id"),
                "reason": reason,
                "spec": attrs.get("spec"),
                "config": attrs.get("config"),
                "started": trial.datetime_start.isoformat() if trial.datetime_start else None,
            }
        )
    return rows


def best_row(study: optuna.Study) -> dict[str, Any] | None:
    """The row of the study's best finished trial (highest validation PSNR), or None."""
    finished = [row for row in trial_rows(study) if row["state"] == "finished"]
    if not finished:
        return None
    return max(finished, key=lambda row: row["value"])


def format_trials(rows: Sequence[dict[str, Any]]) -> str:
    """The trials as a plain-text table (what ``cae search`` prints)."""
    from cae.text import terminal_safe

    header = ["#", "state", "parameters", "params", "code", "val PSNR", "test PSNR", "seconds"]
    header.append("run / reason")
    lines = [header]

    def number(value: Any, digits: int = 2) -> str:
        return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"

    for row in rows:
        params = ", ".join(f"{key}={_fmt(value)}" for key, value in row["params"].items())
        lines.append(
            [
                str(row["number"]),
                row["state"],
                terminal_safe(params) or "-",
                f"{row['param_count']:,}" if isinstance(row.get("param_count"), int) else "-",
                str(row["code_values"]) if row.get("code_values") is not None else "-",
                number(row.get("value")),
                number(row.get("test_psnr")),
                number(row.get("seconds"), 1),
                terminal_safe(str(row.get("run_id") or _first_words(row.get("reason")) or "-")),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() for line in lines
    )


def _first_words(text: Any, limit: int = 70) -> str:
    if not isinstance(text, str):
        return ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------------------------ the loop


@dataclass
class SearchSummary:
    """What :func:`run_search` did: the study, its storage (as printable), the trials this
    process trained, skipped and why it stopped."""

    study_name: str
    storage: str
    trained: list[int] = field(default_factory=list)
    skipped: int = 0
    stopped_by: str = "trials"  # trials | timeout | stop | grid
    seconds: float = 0.0


def run_search(
    space: SearchSpace,
    recipe: DataRecipe,
    base_config: TrainConfig,
    *,
    study_name: str,
    n_trials: int,
    storage: str | None = None,
    root: str | Path | None = None,
    timeout: float | None = None,
    log: Callable[[str], None] = print,
    progress: Callable[[Any], Callable[[Any], None] | None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SearchSummary:
    """Train ``n_trials`` trials of the study ``study_name`` in this process, one after another
    (ask, shape check, train, prune on the validation loss, save, tell), saving each finished
    trial as a run in ``root`` (the runs folder). ``timeout`` seconds: no trial starts after
    them (the running one finishes, as in Optuna's ``optimize``). Several processes may run
    this on one storage at once: the study hands each its own trials. ``progress(candidate)``
    gives each training's progress sink; ``should_stop()`` ends the search within a batch (the
    running trial is told failed, finished ones stay)."""
    from cae.recipe import load_recipe

    if not isinstance(n_trials, int) or isinstance(n_trials, bool) or not 1 <= n_trials <= 10_000:
        raise SearchError(f"--trials must be from 1 to 10,000. Received: trials={n_trials!r}")
    if timeout is not None and (not math.isfinite(timeout) or timeout <= 0):
        raise SearchError(
            f"--timeout must be a number of seconds above 0. Received: timeout={timeout!r}"
        )
    store_url = storage if storage is not None else default_storage(root)
    study = open_study(
        study_name, space, storage=store_url, root=root, recipe=recipe, base_config=base_config
    )
    dataset = load_recipe(recipe)
    image_shape = tuple(int(n) for n in dataset.x_train.shape[1:])

    def ask() -> Candidate:
        return ask_candidate(
            study, space, image_shape, base_config, num_train=dataset.num_train, in_process=True
        )

    summary = SearchSummary(study_name, shown_storage(store_url))
    return train_trials(
        study,
        dataset,
        recipe,
        ask,
        lambda candidate: trial_request(study_name, candidate, recipe),
        summary,
        n_trials=n_trials,
        root=root,
        timeout=timeout,
        log=log,
        progress=progress,
        should_stop=should_stop,
    )


def train_trials(
    study: optuna.Study,
    dataset: Any,
    recipe: DataRecipe,
    ask: Callable[[], Candidate],
    request_of: Callable[[Candidate], TrainRequest],
    summary: SearchSummary,
    *,
    n_trials: int,
    root: str | Path | None = None,
    timeout: float | None = None,
    log: Callable[[str], None] = print,
    progress: Callable[[Any], Callable[[Any], None] | None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    skip_line: Callable[[int, str], str] | None = None,
) -> SearchSummary:
    """The command line's loop over a study, in this process: ``ask()`` the next candidate
    (:class:`GridDone` ends the loop), train it on ``dataset`` as ``request_of(candidate)`` says
    (pruned from its per-epoch validation loss), save a finished one as a run in ``root`` and
    tell the study; at most ``n_trials`` trained, none started after ``timeout`` seconds or
    once ``should_stop()``. ``skip_line(number, reason)`` words a skipped candidate's log line.
    Fills and returns ``summary``."""
    from cae.recipe import TestSplit
    from cae.store import save_trained
    from cae.training import train

    started = time.monotonic()
    split = TestSplit.of(dataset, recipe)
    while len(summary.trained) < n_trials:
        if timeout is not None and time.monotonic() - started >= timeout:
            summary.stopped_by = "timeout"
            break
        if should_stop is not None and should_stop():
            summary.stopped_by = "stop"
            break
        try:
            candidate = ask()
        except GridDone as done:
            skipped, candidate = done.skipped, None
        else:
            skipped = candidate.skipped
        summary.skipped += len(skipped)
        for number, reason in skipped:
            log(skip_line(number, reason) if skip_line else f"trial {number}: skipped, {reason}")
        if candidate is None:
            summary.stopped_by = "grid"
            break
        log(f"trial {candidate.number}: {candidate.label} ({candidate.param_count:,} parameters)")
        stop = threading.Event()
        sink = progress(candidate) if progress is not None else None
        reporter = EpochReporter(
            study, candidate.number, candidate.config.epochs, forward=sink, on_prune=stop.set
        )
        try:
            with heartbeat(study, candidate.number):
                request = request_of(candidate)
                result = train(
                    candidate.spec,
                    dataset,
                    candidate.config,
                    progress=reporter,
                    should_stop=lambda stop=stop: (
                        stop.is_set() or bool(should_stop and should_stop())
                    ),
                )
                if getattr(sink, "finish", None):
                    sink.finish()
                run_id = None
                if not reporter.pruned and result.state == "finished" and result.saveable:
                    run_id = save_trained(result, request, split, root=root)
                frozen = finish_trial(
                    study,
                    candidate.number,
                    result.outcome(),
                    pruned=reporter.pruned,
                    run_id=run_id,
                    config=candidate.config,
                )
        except BaseException as error:
            reason = "interrupted" if isinstance(error, KeyboardInterrupt) else str(error)
            with contextlib.suppress(Exception):
                fail_trial(study, candidate.number, reason or type(error).__name__)
            raise
        summary.trained.append(candidate.number)
        log(_trial_line(frozen))
        del result
    summary.seconds = time.monotonic() - started
    return summary


def _trial_line(trial: optuna.trial.FrozenTrial) -> str:
    attrs = trial.user_attrs
    state = trial.state.name.lower()
    if state == "complete":
        test = attrs.get("test_psnr")
        test_text = f", test {test:.2f} dB" if isinstance(test, float) else ""
        return (
            f"trial {trial.number}: {OBJECTIVE} {trial.value:.2f} dB{test_text}, "
            f"{attrs.get('wall_seconds', 0):.1f} s, run {attrs.get('run_id')}"
        )
    return f"trial {trial.number}: {state}, {attrs.get('reason', '')}"


def best_report(
    study: optuna.Study, recipe: DataRecipe, root: str | Path | None = None
) -> dict[str, Any] | None:
    """The best trial's row with, beside its validation and test PSNR, PCA's test PSNR with as
    many components as its code has values (``cae.baselines``, fitted on the recipe's training
    split, in a worker process) and the gain over it; None when no trial finished."""
    from cae.offload import baselines_in_worker

    row = best_row(study)
    if row is None:
        return None
    report = dict(row)
    if isinstance(row.get("code_values"), int):
        found = baselines_in_worker(recipe, row["code_values"], root)
        pca = found["pca"].get("psnr")
        report["pca_components"] = row["code_values"]
        report["pca_psnr"] = pca
        report["mean_image_psnr"] = found["mean_image"].get("psnr")
        test = row.get("test_psnr")
        if isinstance(pca, (int, float)) and isinstance(test, (int, float)):
            report["gain_over_pca"] = test - pca
    return report


__all__ = [
    "Candidate",
    "EpochReporter",
    "GridDone",
    "Heartbeat",
    "SearchError",
    "SearchSummary",
    "SpaceError",
    "accept_trial",
    "ask_candidate",
    "best_report",
    "best_row",
    "bind",
    "check_candidate",
    "default_storage",
    "fail_stale",
    "fail_trial",
    "finish_trial",
    "format_trials",
    "heartbeat",
    "list_studies",
    "make_storage",
    "open_study",
    "report_epoch",
    "run_search",
    "skip_trial",
    "study_conflict",
    "study_space",
    "train_trials",
    "trial_request",
    "trial_rows",
]
