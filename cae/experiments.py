"""Grid experiments as Optuna studies: a sweep (``cae.sweep``: up to three fields of a design or
its training settings, each over a list of values) is a study whose trials are the grid's points.

:func:`open_grid_study` creates (or finds again) the study with Optuna's ``GridSampler`` over the
fields' values, their names kept as the parameters' (``encoder.0.filters``, ``code``, ``lr``), and
enqueues every point in the sweep's order (``enqueue_trial``), so trial *n* of a new study is
combination *n* of the plan. The base design, settings and fields are the study's ``grid`` user
attribute and the data its ``data``: a study is found again by name alone, and another grid or
other data under its name is refused. :func:`ask_grid_candidate` asks for the next point and
makes it a :class:`cae.search.Candidate` (``cae.sweep.make_variant``: a point that cannot train is
told ``PRUNED`` as skipped, with its reason); a trial is scored, as a search's, by its validation
PSNR (``cae.search.finish_trial``), the test split kept for the table and the winner's report.

The server's one study queue (``cae.studies.STUDIES.submit_grid``) and ``python -m cae sweep``
(:func:`run_grid`, which also writes sweep.json and sweep.csv) drive these studies. The caps on a
student's queued experiment runs (:func:`check_caps`) hold for grids and searches alike. No
Streamlit; Optuna and TensorFlow are imported inside the functions that need them.
"""

from __future__ import annotations

import itertools
import json
import math
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cae.admission import available_cpus, training_slots
from cae.search import Candidate, GridDone, SearchError, bind, check_maximised, make_storage
from cae.spec import ArchitectureSpec
from cae.sweep import (
    Axis,
    SweepError,
    format_value,
    make_variant,
    parse_value,
    run_name,
)
from cae.training import TrainConfig

if TYPE_CHECKING:  # pragma: no cover
    import optuna

    from cae.recipe import DataRecipe
    from cae.request import TrainRequest

MAX_NAME = 40
MAX_QUEUED_RUNS = 60  # runs of one student's experiments (grids and searches) waiting or training
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


def check_caps(runs: int, seconds: float, waiting: int, waiting_seconds: float) -> None:
    """ExperimentCapError when ``runs`` more runs of ``seconds`` estimated seconds, beside the
    ``waiting`` runs (``waiting_seconds``) a student's active experiments have yet to train,
    would take the student past :data:`MAX_QUEUED_RUNS` or :data:`MAX_QUEUED_HOURS`."""
    total_runs = waiting + runs
    hours = (waiting_seconds + seconds) / 3600
    if total_runs > MAX_QUEUED_RUNS:
        raise ExperimentCapError(
            f"a student may have at most {MAX_QUEUED_RUNS} experiment runs queued or training; "
            f"this experiment would make {total_runs}: wait for some to finish or stop one. "
            f"Received: runs={runs}, already_queued={waiting}"
        )
    if hours > MAX_QUEUED_HOURS:
        raise ExperimentCapError(
            f"a student's queued experiments may take at most {MAX_QUEUED_HOURS:g} estimated "
            f"hours; with this one they would take {hours:.1f} h: train fewer runs, epochs or "
            f"images. Received: estimated_hours={seconds / 3600:.2f}, "
            f"already_queued_hours={waiting_seconds / 3600:.2f}"
        )


# ------------------------------------------------------------------------------------ the grid


def _encode(value: Any) -> Any:
    """A value as Optuna's grid keeps it (a number, a word; a pair as typed: ``3x5``)."""
    return format_value(value) if isinstance(value, (tuple, list)) else value


def _decode(value: Any) -> Any:
    """A grid's value back as the sweep's (``3x5`` a pair again; words stay words)."""
    return parse_value(value) if isinstance(value, str) else value


def grid_points(axes: Sequence[Axis]) -> list[dict[str, Any]]:
    """The grid's points in the sweep's order (the last field varies fastest), as Optuna keeps
    them: ``{"encoder.0.filters": 8, "kernel": "3x5"}``."""
    fields = [axis.field for axis in axes]
    return [
        dict(zip(fields, map(_encode, combination), strict=True))
        for combination in itertools.product(*(axis.values for axis in axes))
    ]


def grid_label(params: dict[str, Any]) -> str:
    """``encoder.0.filters=8, kernel=3x5``: a point as the sweep's plan names it."""
    return ", ".join(f"{key}={format_value(_decode(value))}" for key, value in params.items())


def study_grid(study: optuna.Study) -> tuple[ArchitectureSpec, TrainConfig, list[Axis]]:
    """The base design, settings and fields a grid study was started with."""
    grid = study.user_attrs.get("grid")
    if not isinstance(grid, dict):
        raise SearchError(
            f"the study is not a grid experiment. Received: study={study.study_name!r}"
        )
    axes = [Axis.from_dict(axis) for axis in grid["axes"]]
    return ArchitectureSpec.from_dict(grid["spec"]), TrainConfig.from_dict(grid["config"]), axes


def grid_attrs(
    spec: ArchitectureSpec,
    config: TrainConfig,
    axes: Sequence[Axis],
    recipe: DataRecipe | None = None,
) -> dict[str, Any]:
    """The user attributes a grid study is bound to (``kind``, ``grid`` and, given the recipe,
    ``data``): what :func:`cae.search.study_conflict` compares a new start with."""
    grid = {
        "spec": spec.to_dict(),
        "config": config.to_dict(),
        "axes": [axis.to_dict() for axis in axes],
    }
    attrs: dict[str, Any] = {"kind": "grid", "grid": grid}
    if recipe is not None:
        attrs["data"] = recipe.to_dict()
    return attrs


def open_grid_study(
    name: str,
    axes: Sequence[Axis] | None = None,
    *,
    spec: ArchitectureSpec | None = None,
    config: TrainConfig | None = None,
    recipe: DataRecipe | None = None,
    storage: str | optuna.storages.BaseStorage | None = None,
    root: str | Path | None = None,
) -> optuna.Study:
    """The grid study ``name`` in ``storage`` (``cae.search.make_storage``: the runs folder's
    SQLite file by default): created with its points enqueued in order, or loaded (by name
    alone when ``axes`` is None). A study of that name started with another grid, other data or
    as a search is refused (SearchError, one line)."""
    import optuna

    from cae.search import OBJECTIVE, grid_sampler, stored_study, study_storage

    store = study_storage(name, storage, root)
    if axes is None:
        summary = stored_study(name, store)
        spec, config, axes = study_grid(summary)
    if spec is None or config is None:
        raise SearchError(
            f"a new grid study needs its design and settings. Received: study={name!r}"
        )
    fields, lists = _grid_lists(axes)
    study = optuna.create_study(
        study_name=name,
        storage=store,
        sampler=grid_sampler(dict(zip(fields, lists, strict=True)), 0),
        pruner=optuna.pruners.NopPruner(),  # every point trains to the end: a grid compares them
        direction="maximize",
        load_if_exists=True,
    )
    check_maximised(study)
    fresh = not study.get_trials(deepcopy=False) and "grid" not in study.user_attrs
    for key, value in grid_attrs(spec, config, axes, recipe).items():
        bind(study, key, value)
    bind(study, "objective", OBJECTIVE)
    if fresh:
        for point in grid_points(axes):
            study.enqueue_trial(point)
    return study


def _grid_lists(axes: Sequence[Axis]) -> tuple[list[str], list[list[Any]]]:
    return [axis.field for axis in axes], [[_encode(v) for v in axis.values] for axis in axes]


def grid_size(axes: Sequence[Axis]) -> int:
    """How many points the grid has."""
    return math.prod(len(axis.values) for axis in axes)


def grid_done(study: optuna.Study, axes: Sequence[Axis]) -> bool:
    """True when every point has a trial that was asked (none waits)."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    waiting = any(trial.state == optuna.trial.TrialState.WAITING for trial in trials)
    return not waiting and len(trials) >= grid_size(axes)


def point_index(axes: Sequence[Axis], params: dict[str, Any]) -> int | None:
    """The place of a point (a trial's parameters) in the sweep's order, or None."""
    try:
        return grid_points(axes).index(dict(params))
    except ValueError:
        return None


def ask_grid_candidate(
    study: optuna.Study,
    image_shape: Sequence[int] | None,
    *,
    num_train: int | None = None,
    in_process: bool = False,
) -> Candidate:
    """Ask the grid study for its next point that can train (``cae.sweep.make_variant`` checks
    it, with ``num_train`` images; ``in_process``: and oneDNN as in
    ``cae.search.check_candidate``). A point that cannot is told ``PRUNED`` with the reason as
    its ``skipped`` attribute and the next is asked; GridDone when none is left."""
    from optuna.distributions import CategoricalDistribution

    from cae.search import accept_trial, check_candidate, fail_stale, skip_trial

    spec, config, axes = study_grid(study)
    if config.validation_split <= 0:
        raise SearchError(
            "a grid study scores each run on its validation split: give a validation split above "
            f"0. Received: validation_split={config.validation_split}"
        )
    fields, lists = _grid_lists(axes)
    distributions = {
        field: CategoricalDistribution(values) for field, values in zip(fields, lists, strict=True)
    }
    fail_stale(study)
    skipped: list[tuple[int, str]] = []
    while not grid_done(study, axes):
        with warnings.catch_warnings():  # heartbeats are the caller's (cae.search.Heartbeat)
            warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
            trial = study.ask(distributions)
        params = {field: trial.params[field] for field in fields}
        values = tuple((field, _decode(params[field])) for field in fields)
        variant = make_variant(
            spec, config, trial.number, values, image_shape=image_shape, num_train=num_train
        )
        problem = variant.problem
        if problem is None:
            try:
                sizes = check_candidate(None, variant.spec, variant.config, in_process=in_process)
            except ValueError as error:
                problem = str(error) or type(error).__name__
        if problem is not None:
            skipped.append(skip_trial(study, trial, problem))
            continue
        return accept_trial(trial, variant.spec, variant.config, params, sizes, skipped)
    raise GridDone(
        f"every point of the grid has been tried. Received: {grid_size(axes)} points",
        skipped,
    )


def grid_request(
    study_name: str, candidate: Candidate, recipe: DataRecipe, axes: Sequence[Axis]
) -> TrainRequest:
    """A grid trial's training request: named ``<study> · <what it varies>`` and tagged in
    train.json's ``experiment`` with the study (``kind`` grid, ``study``, ``trial``, ``index``:
    its place in the sweep's order, ``values``)."""
    from cae.request import TrainRequest

    label = grid_label(candidate.params)
    index = point_index(axes, candidate.params)
    return TrainRequest(
        spec=candidate.spec,
        data=recipe,
        config=candidate.config,
        name=run_name(study_name, label),
        experiment={
            "id": f"study:{study_name}",
            "name": study_name,
            "kind": "grid",
            "study": study_name,
            "trial": candidate.number,
            "index": candidate.number if index is None else index,
            "values": {key: _plain(_decode(v)) for key, v in candidate.params.items()},
        },
    )


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def free_study_name(name: str, storage: str | None = None, root: str | Path | None = None) -> str:
    """``name``, or ``name (2)``, ``name (3)``...: the first no study of the storage has (each
    Start of the page's form is an experiment of its own)."""
    import optuna

    taken = set(optuna.get_all_study_names(make_storage(storage, root)))
    if name not in taken:
        return name
    return next(f"{name} ({n})" for n in itertools.count(2) if f"{name} ({n})" not in taken)


def grid_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """Every trial of a grid study as ``cae.search.trial_rows`` gives it, with its ``index`` in
    the sweep's order and its ``label`` (what it varies)."""
    from cae.search import trial_rows

    _, _, axes = study_grid(study)
    fixed = {  # a waiting trial's point is its enqueued parameters
        trial.number: trial.system_attrs.get("fixed_params") or {}
        for trial in study.get_trials(deepcopy=False)
    }
    rows = []
    for row in trial_rows(study):
        params = row["params"] or fixed.get(row["number"], {})
        index = point_index(axes, params)
        rows.append(
            {
                **row,
                "params": params,
                "index": row["number"] if index is None else index,
                "label": grid_label(params),
            }
        )
    return rows


def comparison_rows(rows: Sequence[dict[str, Any]], runs: dict[str, Any]) -> list[dict[str, Any]]:
    """The comparison rows (``cae.sweep.result_row``) of a grid's finished trials whose run is
    among ``runs`` (run id to ``RunInfo``), in the sweep's order."""
    from cae.sweep import result_row

    found = [
        result_row(row["index"], row["label"], runs[row["run_id"]])
        for row in rows
        if row["state"] == "finished" and row.get("run_id") in runs
    ]
    return sorted(found, key=lambda item: item["index"])


def grid_eta(
    rows: Sequence[dict[str, Any]],
    estimates: Sequence[float | None],
    running: dict[int, float],
    slots: int,
) -> float:
    """Seconds left: the estimates of the points not trained yet, scaled by how long the
    finished ones took against theirs, less the done part (``running``: index to fraction) of
    the running ones, shared by ``slots`` trainings at once."""
    # a point with a trial running or waiting is not ended, even when an earlier trial of it
    # was requeued (or failed) and its point asked again
    pending = {row["index"] for row in rows if row["state"] in ("running", "waiting")}
    ended = {row["index"] for row in rows} - pending
    done = [
        (row["seconds"], estimates[row["index"]])
        for row in rows
        if row["state"] == "finished"
        and isinstance(row.get("seconds"), (int, float))
        and row["seconds"] > 0  # a run with no time recorded says nothing of the pace
        and 0 <= row["index"] < len(estimates)
        and estimates[row["index"]]
    ]
    scale = sum(took for took, _ in done) / sum(guess for _, guess in done) if done else 1.0
    left = 0.0
    for index, guess in enumerate(estimates):
        if guess and index not in ended:
            left += guess * scale * (1.0 - running.get(index, 0.0))
    return left / max(1, slots)


# ------------------------------------------------------------------------------------ the CLI


def run_grid(
    spec: ArchitectureSpec,
    config: TrainConfig,
    recipe: DataRecipe,
    axes: Sequence[Axis],
    out_dir: str | Path,
    *,
    name: str = "sweep",
    study_name: str | None = None,
    storage: str | None = None,
    progress: Callable[[Any], Any] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train a sweep as a grid study in this process (the CLI's ``sweep``): every point that can
    train, one after another, each saved as a run in ``out_dir``; then score the mean image and
    PCA with each run's code size on the same data, mark the runs that did not learn, and write
    ``sweep.json`` and ``sweep.csv`` there. The study is ``study_name`` (going on from the points
    it has tried: the same grid and data only) or a new one named after ``name``, in
    ``storage`` (default: ``<out_dir>/.studies/studies.db``). Returns the sweep.json record."""
    from cae.preflight import check_input_shape
    from cae.recipe import load_recipe
    from cae.search import SearchSummary, default_storage, shown_storage, train_trials
    from cae.store import list_runs
    from cae.sweep import expand, mark_learning, rows_csv, winner_sentence

    out = Path(out_dir)
    if (out / "sweep.json").exists():
        raise SweepError(
            f"this folder already holds a sweep; choose a new --out-dir. Received: out_dir={str(out)!r}"
        )
    variants = expand(spec, config, axes, image_shape=recipe.image_shape())
    if not any(variant.ok for variant in variants):
        raise SweepError(
            f"no combination of this sweep can train. Received: {len(variants)} invalid"
        )
    dataset = load_recipe(recipe)
    check_input_shape(spec, dataset)
    out.mkdir(parents=True, exist_ok=True)
    store_url = storage if storage is not None else default_storage(out)
    study_name = study_name or free_study_name(name, store_url, out)
    study = open_grid_study(
        study_name, axes, spec=spec, config=config, recipe=recipe, storage=store_url, root=out
    )
    image_shape = tuple(int(n) for n in dataset.x_train.shape[1:])
    labels = {variant.index: variant.label for variant in variants}

    def ask() -> Candidate:
        return ask_grid_candidate(study, image_shape, num_train=dataset.num_train, in_process=True)

    def skip_line(number: int, reason: str) -> str:
        return f"skipped #{number} {labels.get(number, '')}: {reason}"

    train_trials(
        study,
        dataset,
        recipe,
        ask,
        lambda candidate: grid_request(study_name, candidate, recipe, axes),
        SearchSummary(study_name, shown_storage(store_url)),
        n_trials=grid_size(axes),
        root=out,
        log=log,
        progress=progress,
        skip_line=skip_line,
    )
    trials = grid_rows(study)
    runs = {run.run_id: run for run in list_runs(out) if run.ok}
    rows: list[dict[str, Any]] = comparison_rows(trials, runs)
    rows += [
        {"index": row["index"], "design": row["label"], "error": row["reason"]}
        for row in trials
        if row["state"] == "failed"
    ]
    rows.sort(key=lambda row: row["index"])
    pca, mean = grid_baselines(recipe, rows, out, log)
    if mean is not None:
        rows = mark_learning(rows, mean)
    record = {
        "id": f"study:{study_name}",
        "name": name,
        "study": study_name,
        "storage": shown_storage(store_url),
        "created": datetime.now().astimezone().isoformat(timespec="seconds"),
        "spec": spec.to_dict(),
        "config": config.to_dict(),
        "data": recipe.to_dict(),
        "axes": [axis.to_dict() for axis in axes],
        "objective": "validation PSNR (dB), maximised; the table's metrics are the test split's",
        "runs": rows,
        "invalid": [
            {"index": row["index"], "design": row["label"], "problem": row["reason"]}
            for row in trials
            if row["state"] == "skipped"
        ],
        "mean_image_psnr": mean,
        "pca_psnr": {str(k): v for k, v in pca.items()},
        "winner": winner_sentence(rows, pca, mean),
    }
    (out / "sweep.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    (out / "sweep.csv").write_text(rows_csv(rows), encoding="utf-8")
    return record


def grid_baselines(
    recipe: DataRecipe,
    rows: Sequence[dict[str, Any]],
    root: str | Path,
    log: Callable[[str], None] = print,
) -> tuple[dict[int, float], float | None]:
    """PCA's test PSNR at each code size of the rows and the mean image's, on the recipe's data
    (``cae.baselines``, cached in ``<root>/.baselines``); what cannot be scored is left out
    with a line in ``log``."""
    from cae.baselines import recipe_baselines

    pca: dict[int, float] = {}
    mean: float | None = None
    for size in sorted({row["code_size"] for row in rows if row.get("code_size")}):
        try:
            found = recipe_baselines(recipe, int(size), root=root)
        except (ValueError, OSError, MemoryError) as error:
            log(f"no baselines for code size {size}: {error}")
            continue
        if isinstance(found["pca"].get("psnr"), (int, float)):
            pca[int(size)] = float(found["pca"]["psnr"])
        if isinstance(found["mean_image"].get("psnr"), (int, float)):
            mean = float(found["mean_image"]["psnr"])
    return pca, mean
