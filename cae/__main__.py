"""Command line: ``python -m cae shapes | train | sweep | search | list | evaluate | baseline |
sample | notebook``.

Errors exit with status 2 and one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from cae.spec import PRESETS, ArchitectureSpec, preset
from cae.text import fmt_seconds, terminal_safe

if TYPE_CHECKING:  # pragma: no cover
    from cae.data import Dataset
    from cae.progress import Progress
    from cae.recipe import DataRecipe
    from cae.request import TrainRequest
    from cae.training import TrainResult


class CliError(Exception):
    """An error to print as one line and exit with status 2."""


def _load_spec_argument(args: argparse.Namespace) -> ArchitectureSpec:
    if getattr(args, "spec", None):
        path = Path(args.spec)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise CliError(
                f"cannot read the spec file: {error}. Received: spec={str(path)!r}"
            ) from None
        return ArchitectureSpec.from_json(text)
    return preset(args.preset or "classic")


def json_text(data: Any) -> str:
    """``data`` as standard JSON for ``--json``: a non-finite number (the PSNR of an exact
    reconstruction is infinite) is ``null``, not Python's ``Infinity``, which JSON parsers refuse."""

    def strict(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {key: strict(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [strict(item) for item in value]
        return value

    return json.dumps(strict(data), indent=2, allow_nan=False)


def command_shapes(args: argparse.Namespace) -> int:
    """Print the shape table of a preset or a spec file (or Keras's own shapes with --keras)."""
    from cae.shapes import compute_shapes, format_table

    spec = _load_spec_argument(args)
    report = compute_shapes(spec)
    if args.keras:
        from cae.builder import build, keras_rows

        rows = keras_rows(build(spec))
        if args.json:
            print(json_text(rows))
        else:
            for row in rows:
                shape = "x".join(str(n) for n in row["output_shape"])
                print(
                    f"{row['part']:<8} {row['index']:>2}  {row['type']:<10} {shape:<12} {row['params']:>10,}"
                    + (f"  {row['head']}" if row.get("head") else "")  # a variational code map
                )
        return 0
    if args.json:
        print(json_text([row.as_dict() for row in report.rows]))
    else:
        print(format_table(report))
    return 0


def _add_spec_arguments(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    """``--preset`` or ``--spec``, one of them (``required``: one must be given)."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--preset", choices=sorted(PRESETS), help="a built-in architecture")
    group.add_argument("--spec", metavar="FILE.json", help="an architecture file")


def _add_study_arguments(parser: argparse.ArgumentParser, *, folder: str, study: str) -> None:
    """``--storage`` and ``--study`` of ``search`` and ``sweep`` (``folder``: where the default
    SQLite file is; ``study``: the help of --study)."""
    parser.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="an Optuna RDB URL (sqlite:///f.db, postgresql://user@host/db) or a journal file "
        f"(.log/.jsonl) that several processes share (default: {folder}/.studies/studies.db)",
    )
    parser.add_argument("--study", default=None, metavar="NAME", help=study)


# ------------------------------------------------------------------------------------ train


class _ProgressPrinter:
    """Draws training progress: one line redrawn with \r on a terminal, a line per epoch otherwise."""

    def __init__(self, stream: TextIO | None) -> None:
        """Draw on ``stream``; None draws nothing."""
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.last_epoch = 0
        self.width = 0
        self.dirty = False

    def line(self, p: Progress) -> str:
        current = p.epoch if (not p.active or p.batch == 0) else p.epoch + 1
        parts = [f"epoch {max(1, min(current, p.epochs))}/{p.epochs}"]
        if p.active and p.batch and p.batches_per_epoch:
            parts.append(f"batch {p.batch}/{p.batches_per_epoch}")
        if p.loss is not None:
            parts.append(f"loss {p.loss:.5f}")
        if p.val_loss is not None:
            parts.append(f"val_loss {p.val_loss:.5f}")
        if p.images_per_second:
            parts.append(f"{p.images_per_second:,.0f} img/s")
        if p.active and p.eta_seconds is not None:
            parts.append(f"ETA {fmt_seconds(p.eta_seconds)}")
        return "  ".join(parts)

    def __call__(self, p: Progress) -> None:
        if self.stream is None:  # a worker that is not the chief: the chief reports progress
            return
        if self.tty:
            if p.state in ("starting",):
                return
            text = self.line(p)
            pad = " " * max(0, self.width - len(text))
            self.stream.write("\r" + text + pad)
            self.width = len(text)
            self.dirty = True
        elif p.epoch > self.last_epoch and p.state == "running":
            self.last_epoch = p.epoch
            self.stream.write(self.line(p) + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.dirty:
            self.stream.write("\n")
            self.stream.flush()
            self.dirty = False


def seed_argument(text: str) -> int:
    """``--seed``'s value: an integer within ``LIMITS["seed"]``, refused by argparse naming the
    flag (``argument --seed: ... Received: --seed=-1``)."""
    from cae.training import LIMITS

    low, high = (int(n) for n in LIMITS["seed"])
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(
            f"the seed must be an integer from {low:,} to {high:,}. Received: --seed={text}"
        )
    return value


def add_recipe_arguments(parser: argparse.ArgumentParser, *, seed_help: str) -> None:
    """The data recipe's arguments (``--dataset`` or ``--data``, ``--limit``, ``--seed``,
    ``--test-fraction``), read back by :func:`_data_recipe`: one set for every command."""
    from cae.datasets import list_datasets
    from cae.recipe import DataRecipe

    default = DataRecipe()
    builtins = "; ".join(f"{info.name}: {info.summary}" for info in list_datasets())
    seeded = [info.name for info in list_datasets() if info.split.follows_test_fraction]
    own = [info.name for info in list_datasets() if not info.split.follows_test_fraction]
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument(
        "--dataset",
        metavar="NAME",
        help=f"a built-in dataset ({builtins})".replace("%", "%%"),  # argparse formats with %
    )
    data.add_argument("--data", metavar="FILE", help="an .npy/.npz array or a .zip of images")
    parser.add_argument(
        "--array",
        metavar="NAME",
        help="the images' array in a --data .npz (default: x_train, x or images, else the first)",
    )
    parser.add_argument(
        "--limit", type=int, default=None, metavar="N", help="cap train/test images"
    )
    parser.add_argument(
        "--seed", type=seed_argument, default=default.seed, metavar="N", help=seed_help
    )
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=default.test_fraction,
        metavar="X",
        help=f"share of the images held out for testing ({' and '.join([*seeded, 'files'])}; "
        f"{' and '.join(own)} keep their own test set)",
    )


def _data_recipe(args: argparse.Namespace) -> DataRecipe:
    """The data recipe of the arguments of :func:`add_recipe_arguments`: a built-in dataset by
    name or an array/image file, capped by --limit, split by --seed and --test-fraction."""
    from cae.recipe import DataRecipe

    split = {"limit": args.limit, "seed": args.seed, "test_fraction": args.test_fraction}
    if args.data:
        path = Path(args.data)
        if not path.is_file():
            raise CliError(f"no such data file. Received: data={args.data!r}")
        return DataRecipe.for_file(path, **split, array=args.array)
    if args.array is not None:
        raise CliError(
            f"--array chooses an array of a --data .npz file. Received: array={args.array!r}"
        )
    return DataRecipe(dataset=args.dataset, **split)


def refuse_mismatched_upload(
    specs: Sequence[ArchitectureSpec], data: str | None, array: str | None
) -> None:
    """Refuse a --data file whose images' size, read from its headers, is not the designs' input
    shape, before anything is decoded and before TensorFlow is imported (a pixel-bomb zip of the
    wrong size costs nothing). Headers that do not tell, or a file with another problem, are
    left to loading, which says what is wrong as before."""
    if not data or not specs or not Path(data).is_file():
        return
    from cae.preflight import shape_mismatch_message
    from cae.uploads import upload_image_shape

    try:
        shape = upload_image_shape(data, array=array)
    except (ValueError, OSError, KeyError):
        return
    for spec in specs:
        if shape is not None and tuple(shape) != tuple(spec.input_shape):
            raise CliError(shape_mismatch_message(spec.input_shape, shape))


def _out_target(out: str | None) -> tuple[Path, str] | None:
    """(runs root, run id) of --out models/<id>; refuses a folder that exists."""
    if out is None:
        return None
    from cae.store import check_run_id

    path = Path(out)
    run_id = check_run_id(path.name)
    if path.exists():
        raise CliError(f"the output folder already exists; choose a new one. Received: out={out!r}")
    return path.parent, run_id


def _corruption_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """``corruption`` and ``strength`` of a training config from --corruption/--strength (a
    missing strength: the kind's default) or the older --noise (Gaussian of that std)."""
    from cae.corruption import corruption_of

    if args.noise is not None and args.corruption is not None:
        raise CliError(
            "--noise is Gaussian noise: give either --noise or --corruption. "
            f"Received: noise={args.noise}, corruption={args.corruption!r}"
        )
    if args.noise is not None:
        return {"corruption": "gaussian" if args.noise else None, "strength": args.noise}
    if args.corruption is None:
        if args.strength is not None:
            raise CliError(
                "--strength needs --corruption gaussian|salt-pepper|erase. "
                f"Received: strength={args.strength}"
            )
        return {}
    corruption = corruption_of(args.corruption, args.strength)
    return corruption.to_dict() if corruption is not None else {}


@contextlib.contextmanager
def _ctrl_c_stops(
    printer: _ProgressPrinter, stop: Callable[[], None], stopping: Callable[[], bool]
) -> Iterator[None]:
    """While inside: the first Ctrl-C calls ``stop`` (training stops after the current batch and
    keeps its completed epochs) and says so, a second one aborts (``stopping()`` is then True);
    the progress line is finished on the way out. Both ``train`` paths, here and on a Ray
    cluster, use it."""

    def on_interrupt(signum: int, frame: Any) -> None:
        if stopping():
            raise KeyboardInterrupt
        stop()
        printer.finish()
        print("Ctrl-C: stopping after the current batch (press again to abort)", flush=True)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        printer.finish()


def _train_config(args: argparse.Namespace) -> Any:
    """The training config of ``train`` and ``sweep`` from their arguments."""
    from cae.training import TrainConfig

    return TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        learning_rate=args.learning_rate,
        loss=args.loss,
        validation_split=args.validation_split,
        patience=args.patience,
        seed=args.seed,
        **_corruption_arguments(args),
        preview_count=0,
        precision=args.precision,
    )


def _variational_argument(spec: ArchitectureSpec, args: argparse.Namespace) -> ArchitectureSpec:
    """The spec made variational by ``--variational`` (``--beta``, ``--kl-warmup`` override a
    spec file's own values); those two without ``--variational`` on a plain spec are an error."""
    from dataclasses import replace

    from cae.spec import Variational

    given = {
        key: value
        for key, value in (("beta", args.beta), ("warmup_epochs", args.kl_warmup))
        if value is not None
    }
    if not args.variational and spec.variational is None:
        if given:
            names = {"beta": "--beta", "warmup_epochs": "--kl-warmup"}
            flags = " and ".join(names[key] for key in given)
            raise CliError(f"{flags} set a variational run: add --variational. Received: {given}")
        return spec
    base = spec.variational.to_dict() if spec.variational is not None else {}
    return replace(spec, variational=Variational.from_dict({**base, **given}))


def command_train(args: argparse.Namespace) -> int:
    """Train an autoencoder, print its progress, save the run and print a one-line summary."""
    from cae.recipe import load_recipe
    from cae.request import TrainRequest

    config = _train_config(args)
    spec = _variational_argument(_load_spec_argument(args), args)
    recipe = _data_recipe(args)
    request = TrainRequest(
        spec=spec,
        data=recipe,
        config=config,
        name=args.name or f"{spec.name}-{recipe.label}"[:80],
        strategy=args.strategy,
    )
    out = _out_target(args.out)
    root = out[0] if out else (Path(args.root) if args.root else None)
    if _trains_on_cluster(args):
        return _train_on_cluster(request, root, out)  # CAE_CLUSTER: on Ray (docs/cluster.md)
    dataset = load_recipe(recipe)
    from cae.preflight import preflight
    from cae.strategies import make_strategy
    from cae.training import train

    check = preflight(
        spec,
        config,
        image_shape=dataset.x_train.shape[1:],
        num_train=dataset.num_train,
        with_fixes=False,
    )
    check.raise_first("shape", "images")
    chief = True
    if args.strategy == "multiworker":
        from cae.cluster import Cluster, rendezvous

        cluster = Cluster.from_env()
        chief = cluster.is_chief
        rendezvous(cluster)  # TensorFlow would wait for a missing peer without limit
        strategy = make_strategy(args.strategy)
        from cae.quiet import first_op_quietly

        first_op_quietly()
    else:
        strategy = make_strategy(args.strategy)

    printer = _ProgressPrinter(sys.stdout if chief else None)
    stop = threading.Event()
    from cae.quiet import tensorflow_logs_captured

    try:
        with _ctrl_c_stops(printer, stop.set, stop.is_set), tensorflow_logs_captured():
            result = train(
                spec, dataset, config, progress=printer, should_stop=stop.is_set, strategy=strategy
            )
    except Exception as error:
        if args.strategy == "multiworker":
            from cae.quiet import quiet_until_exit

            quiet_until_exit()  # nothing after the error line: a peer's end logs for seconds
        if args.strategy == "multiworker" and type(error).__name__ in _PEER_ERRORS:
            from cae.errors import short_message

            raise CliError(
                "multi-worker training stopped: another worker failed or cannot be reached; "
                f"nothing was saved ({short_message(error, 150)}). Received: "
                f"{type(error).__name__}"
            ) from error
        raise
    if args.strategy != "multiworker":
        from cae.store import local_backend

        context = local_backend()
        print(_save_run(result, request, dataset, root, out, chief, strategy, context=context))
        return 0
    context = {"workers": cluster.size}
    try:
        line = _save_run(result, request, dataset, root, out, chief, strategy, context)
    except Exception:
        _leave_together(strategy, chief, failing=True)  # the others need not wait for this one
        raise
    problem = _leave_together(strategy, chief)
    print(line, flush=True)
    if problem:
        print(f"warning: {problem}", file=sys.stderr)
    return 0


def _train_on_cluster(
    request: TrainRequest, root: Path | None, out: tuple[Path, str] | None
) -> int:
    """``train`` with ``CAE_CLUSTER`` set: the job goes through a queue of its own and the Ray
    dispatcher, as the server's jobs do; progress printed, Ctrl-C stops and saves the epochs."""
    from cae.admission import Scheduler
    from cae.jobs import JobManager

    folder = root or _models_dir()
    job = JobManager(Scheduler(slots=1)).start("cli", request, root=folder)
    printer = _ProgressPrinter(sys.stdout)
    with _ctrl_c_stops(printer, job.stop, lambda: job.stop_requested):
        while not job.wait(0.25):
            printer(job.snapshot())
    final = job.snapshot()
    if job.error is not None:
        raise CliError(f"nothing was saved: {job.error}")
    if final.state == "failed" or job.result is None:
        raise CliError(f"{final.message} Nothing was saved. Received: state={final.state!r}")
    run_id = job.run_id
    if run_id is None:
        run_id = job.save()  # stopped with Ctrl-C: its completed epochs, as the local CLI does
    if out is not None:
        out_root, wanted = out
        source, target = out_root / run_id, out_root / wanted
        if target.exists():
            raise CliError(
                f"the output folder appeared while training; the run is saved as {source}. "
                f"Received: out={str(target)!r}"
            )
        os.rename(source, target)
        run_id = wanted
    record = json.loads((folder / run_id / "train.json").read_text(encoding="utf-8"))
    summary = f"{_summary(job.result)} on Ray node {record.get('node', '?')}"
    print(terminal_safe(f"run {run_id}: {summary} -> {folder / run_id}"))
    return 0


def _save_run(
    result: TrainResult,
    request: TrainRequest,
    dataset: Dataset,
    root: Path | None,
    out: tuple[Path, str] | None,
    chief: bool,
    strategy: Any,
    context: dict[str, Any],
) -> str:
    """Save a finished training as a run (on the chief) and return the summary line to print."""
    from cae.strategies import is_chief

    if result.failed:
        raise CliError(
            f"{result.message} Nothing was saved. Received: "
            f"epochs_completed={result.epochs_completed}, "
            f"learning_rate={result.config.learning_rate}"
        )
    if result.epochs_completed == 0:
        raise CliError(
            "stopped before the first epoch completed: nothing was saved. "
            "Received: epochs_completed=0"
        )
    from cae.recipe import TestSplit
    from cae.store import save_trained

    if not chief or not is_chief(strategy):
        return (
            f"{_epochs_text(result)}, {result.wall_seconds:.1f} s (this worker saves nothing: "
            "the chief evaluates and writes the run)"
        )
    summary = _summary(result)
    context = {"replicas": int(strategy.num_replicas_in_sync), **context}
    run_id = save_trained(
        result, request, TestSplit.of(dataset, request.data), root=root, context=context
    )
    if out is not None:
        out_root, wanted = out
        source, target = out_root / run_id, out_root / wanted
        if target.exists():
            raise CliError(
                f"the output folder appeared while training; the run is saved as {source}. "
                f"Received: out={str(target)!r}"
            )
        os.rename(source, target)  # same folder: atomic
        run_id = wanted
    folder = (out[0] if out else (root or _models_dir())) / run_id
    return terminal_safe(f"run {run_id}: {summary} -> {folder}")


def _leave_together(strategy: Any, chief: bool, *, failing: bool = False) -> str | None:
    """End a multi-worker training together (``cae.strategies.leave_together``): None once every
    task is here; on the chief, whose run is saved, a line saying which peer did not come; on the
    others a CliError, their run depends on the chief. With ``failing`` this task is ending with
    an error of its own, which is the one to report: nothing is raised or returned."""
    import tensorflow as tf

    from cae.quiet import quiet_until_exit, tensorflow_logs_captured
    from cae.strategies import leave_together

    try:
        with tensorflow_logs_captured():
            leave_together(strategy)
    except Exception as error:
        if failing:
            return None
        if not isinstance(error, tf.errors.OpError):
            raise
        from cae.errors import short_message

        reason = f"({short_message(error, 120)}). Received: {type(error).__name__}"
        if chief:
            return f"the run is saved, but another worker left before the end {reason}"
        raise CliError(
            f"the chief or another worker left before the end; the run may not be saved {reason}"
        ) from error
    finally:
        quiet_until_exit()  # TensorFlow has nothing left to say after the command's last line
    return None


# TensorFlow's errors when a peer of a multi-worker training dies or stops answering
_PEER_ERRORS = ("UnavailableError", "DeadlineExceededError", "AbortedError", "CancelledError")


def _models_dir() -> Path:
    from cae.store import models_dir

    return models_dir()


def _epochs_text(result: TrainResult) -> str:
    """The epochs a training completed, and how it ended when not by finishing them."""
    epochs = f"{result.epochs_completed} epoch{'s' if result.epochs_completed != 1 else ''}"
    if result.stopped:
        epochs += " (stopped)"
    elif result.early_stopped:
        epochs += f" (early stop, best epoch {result.best_epoch})"
    return epochs


def _summary(result: TrainResult) -> str:
    from cae.metrics import METRICS

    m = result.test_metrics
    epochs = _epochs_text(result)
    metrics = (
        "test "
        + ", ".join(
            f"{metric.title} {metric.format(m.get(metric.key))}{' ' + metric.unit if metric.unit else ''}"
            for metric in METRICS
        )
        if m
        else "no test images"
    )
    return f"{epochs}, {metrics}, {result.wall_seconds:.1f} s"


# ------------------------------------------------------------------------------------ sweep


def command_sweep(args: argparse.Namespace) -> int:
    """Train every combination of the --vary values one after another as the trials of an Optuna
    grid study, save each run in --out-dir with sweep.json and sweep.csv, and print the
    comparison table (each run that does not beat the mean image marked) and the winner."""
    from cae.experiments import run_grid
    from cae.sweep import format_rows, parse_vary

    axes = [parse_vary(text) for text in args.vary]
    spec = _load_spec_argument(args)
    recipe = _data_recipe(args)
    config = _train_config(args)
    from cae.quiet import tensorflow_logs_captured

    def log(line: str) -> None:
        print(terminal_safe(line), flush=True)

    with tensorflow_logs_captured():
        record = run_grid(
            spec,
            config,
            recipe,
            axes,
            args.out_dir,
            name=args.name or f"{spec.name} sweep",
            study_name=args.study,
            storage=args.storage,
            progress=lambda candidate: _ProgressPrinter(sys.stdout),
            log=log,
        )
    print(format_rows(record["runs"]))
    if record["winner"]:
        print(terminal_safe(record["winner"]))
    out = Path(args.out_dir)
    print(terminal_safe(f"study {record['study']!r} in {record['storage']}"))
    print(terminal_safe(f"wrote {out / 'sweep.json'} and {out / 'sweep.csv'}"))
    return 0


# ------------------------------------------------------------------------------------ search


SEARCH_SETTINGS = ("epochs", "batch_size", "learning_rate", "optimizer", "loss")
"""Training settings a search space may sample; given on the command line they fix it."""


def _search_space(args: argparse.Namespace) -> Any:
    """The --space file with the settings given on the command line fixed (``--epochs 1``
    overrides the file's range)."""
    from cae.search_space import SearchSpace

    space = SearchSpace.load(args.space)
    return space.with_fixed(**{key: getattr(args, key) for key in SEARCH_SETTINGS})


def _search_config(args: argparse.Namespace) -> Any:
    """The base training config of a search: the command's settings, defaults where a setting
    is left to the space."""
    from cae.training import TrainConfig

    given = {key: getattr(args, key) for key in SEARCH_SETTINGS if getattr(args, key) is not None}
    return TrainConfig(
        **given,
        validation_split=args.validation_split,
        patience=args.patience,
        seed=args.seed,
        **_corruption_arguments(args),
        preview_count=0,
        precision=args.precision,
    )


def command_search(args: argparse.Namespace) -> int:
    """Run --trials trials of a search study (Optuna) in this process, each trained and saved as
    a run, then print the study's trials and its best design against PCA with as many
    components as its code has values (or all of it as JSON)."""
    from cae.search import best_report, format_trials, open_study, run_search, trial_rows

    space = _search_space(args)
    recipe = _data_recipe(args)
    config = _search_config(args)
    root = Path(args.root) if args.root else _models_dir()
    name = args.study or space.name
    stream = sys.stderr if args.json else sys.stdout
    stop = threading.Event()

    def log(line: str) -> None:
        print(terminal_safe(line), file=stream, flush=True)

    def on_interrupt(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        log("Ctrl-C: stopping the running trial (it is marked failed; press again to abort)")

    from cae.quiet import tensorflow_logs_captured

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        with tensorflow_logs_captured():
            summary = run_search(
                space,
                recipe,
                config,
                study_name=name,
                n_trials=args.trials,
                storage=args.storage,
                root=root,
                timeout=args.timeout,
                log=log,
                progress=None if args.json else (lambda candidate: _ProgressPrinter(stream)),
                should_stop=stop.is_set,
            )
    finally:
        signal.signal(signal.SIGINT, previous)
    study = open_study(name, storage=args.storage, root=root)
    rows = trial_rows(study)
    best = best_report(study, recipe, root)
    if args.json:
        record = {
            "study": name,
            "storage": summary.storage,
            "objective": "validation PSNR (dB), maximised",
            "trained": summary.trained,
            "skipped": summary.skipped,
            "stopped_by": summary.stopped_by,
            "seconds": round(summary.seconds, 3),
            "trials": [
                {key: value for key, value in row.items() if key not in ("spec", "config")}
                for row in rows
            ],
            "best": best,
        }
        print(json_text(record))
        return 0
    ended = {"timeout": ", --timeout reached", "stop": ", stopped", "grid": ", the grid is done"}
    print(
        terminal_safe(
            f"study {name!r} in {summary.storage}: {len(summary.trained)} trained here "
            f"({summary.skipped} skipped), {len(rows)} trials in the study, "
            f"{fmt_seconds(summary.seconds)}{ended.get(summary.stopped_by, '')}"
        )
    )
    print(format_trials(rows))
    print(terminal_safe(_best_line(best)))
    return 0


def _best_line(best: dict[str, Any] | None) -> str:
    """The best trial in one line: validation and test PSNR, and PCA with as many numbers."""
    if best is None:
        return "best: none yet (no trial finished)"
    test = best.get("test_psnr")
    line = f"best: trial {best['number']}, validation PSNR {best['value']:.2f} dB"
    if isinstance(test, float):
        line += f", test PSNR {test:.2f} dB"
    pca = best.get("pca_psnr")
    if isinstance(pca, float) and isinstance(test, float):
        line += (
            f"; PCA with the same {best['pca_components']:,} numbers {pca:.2f} dB "
            f"({best['gain_over_pca']:+.2f} dB)"
        )
    return line + f"; run {best.get('run_id')}"


# ------------------------------------------------------------------------------------ list


def command_list(args: argparse.Namespace) -> int:
    """Print the saved runs as a table with every test metric (broken runs marked with the
    reason)."""
    from cae.metrics import METRICS
    from cae.store import list_runs, models_dir

    root = Path(args.root) if args.root else models_dir()
    runs = list_runs(root)
    if not runs:
        print(f"no runs in {root}")
        return 0
    header = ("ID", "NAME", "DATASET", "EPOCHS", *(f"test {m.label}" for m in METRICS))
    rows = [header]
    for info in runs:
        names = (info.run_id, info.name, info.dataset or "-")  # a name may hold escape codes
        cells = (*(terminal_safe(text) for text in names), str(info.epochs))
        if info.broken:
            rows.append((*cells, terminal_safe(f"BROKEN: {info.broken}")))
        else:
            rows.append((*cells, *(m.format(info.metrics.get(m.key)) for m in METRICS)))
    widths = [max(len(row[i]) for row in rows if i < len(row) - 1) for i in range(len(header) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])) + "  " + row[-1])
    return 0


# ------------------------------------------------------------------------------------ evaluate


def refuse_non_run_folder(args: argparse.Namespace) -> None:
    """Refuse, in one line and before TensorFlow is imported, a RUN argument that names a folder
    holding none of a run's files (a broken run, which holds some, is loaded and says why)."""
    from cae.store import JSON_FILES, MODEL_FILE, resolve_run_path

    root = Path(args.root) if args.root else None
    try:
        path = resolve_run_path(_run_argument(args.run, root), root)
    except ValueError:
        return  # not a run id: loading says so
    if path.is_dir() and not any(
        (path / name).exists() or (path / name).is_symlink() for name in (*JSON_FILES, MODEL_FILE)
    ):
        raise CliError(
            f"{path.name!r} is not a run folder (no run.json, spec.json or model.keras in it): "
            f"give a run id that 'cae list' shows, or a run's folder. Received: run={args.run!r}"
        )


def _run_argument(run: str, root: Path | None) -> str | Path:
    """A run id inside the root, or a folder path."""
    from cae.store import models_dir

    base = root or models_dir()
    looks_like_path = os.sep in run or run.startswith(".") or (os.altsep and os.altsep in run)
    if looks_like_path or (Path(run).is_dir() and not (base / run).is_dir()):
        return Path(run)
    return run


def command_evaluate(args: argparse.Namespace) -> int:
    """Print a run's stored test metrics beside ones computed now on its own test split (as a
    table, or with --json as ``{"stored": {...}, "fresh": {...}}``)."""
    from cae.corruption import EVAL_SEED, corruption_of
    from cae.metrics import METRICS_BY_KEY
    from cae.store import load_run, run_test_split

    root = Path(args.root) if args.root else None
    run = _run_argument(args.run, root)
    loaded = load_run(run, root)
    split = run_test_split(run, root)
    from cae.evaluation import evaluate_run
    from cae.training import recorded_config

    config = recorded_config(loaded.train_config)  # None: past today's limits, score clean
    own = config.input_corruption if config is not None else None
    if args.corruption is not None:
        corruption = corruption_of(args.corruption, args.strength)
    elif args.strength is not None:
        if own is None:
            raise CliError(
                "--strength needs --corruption gaussian|salt-pepper|erase for a run trained "
                f"on clean inputs. Received: strength={args.strength}"
            )
        corruption = corruption_of(own.kind, args.strength)
    else:
        corruption = own
    fresh = evaluate_run(loaded.built, split.pixels, corruption=corruption)
    # stored denoise_* scores are of the run's own corruption: beside another one they mislead
    comparable = corruption == own
    stored = {
        key: value
        for key, value in loaded.metrics.items()
        if key in fresh and (comparable or key in METRICS_BY_KEY)
    }
    if args.json:
        print(json_text({"stored": stored, "fresh": fresh}))
        return 0
    where = "stored with the run" if split.stored else "rebuilt from its recipe"
    print(
        terminal_safe(
            f"run {loaded.run_id} ({loaded.info.name}): {split.count:,} test images of "
            f"{split.recipe.describe()} ({where}), {loaded.info.epochs} "
            f"epoch{'' if loaded.info.epochs == 1 else 's'}"
        )
    )
    if corruption is not None:
        trained = "its own" if comparable else (own.describe() if own else "clean inputs")
        print(
            f"corrupted inputs: {corruption.describe()} (seed {EVAL_SEED}; trained with "
            f"{trained}); denoise_* scores outputs from them, corrupted_* the inputs themselves"
        )
    print(f"{'metric':<16}{'stored':>12}{'now':>12}")
    for key in fresh:
        metric = METRICS_BY_KEY.get(key.removeprefix("denoise_").removeprefix("corrupted_"))
        show = metric.format if metric is not None else _number
        print(f"{key:<16}{show(stored.get(key)):>12}{show(fresh.get(key)):>12}")
    return 0


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    return f"{value:.5f}" if abs(value) < 10 else f"{value:.3f}"


# ------------------------------------------------------------------------------------ sample


def command_sample(args: argparse.Namespace) -> int:
    """Decode ``--n`` random codes of a run and save them as one .npy, float32 (N, H, W, C) in
    [0, 1], drawn by ``--sampler``: a Gaussian mixture (the default) or a Gaussian fitted to the
    run's training codes, or a variational run's prior (``cae.sampling.sample_run``)."""
    import numpy as np

    from cae.sampling import sample_run
    from cae.store import RunError, load_run, run_test_split

    if args.n < 1 or args.n > MAX_SAMPLES:
        raise CliError(f"--n must be from 1 to {MAX_SAMPLES:,}. Received: n={args.n}")
    out = Path(args.out)
    if out.suffix != ".npy":
        raise CliError(f"--out must name a .npy file. Received: out={str(out)!r}")
    if not out.parent.is_dir():
        raise CliError(f"--out's folder does not exist. Received: out={str(out)!r}")
    root = Path(args.root) if args.root else None
    run = _run_argument(args.run, root)
    loaded = load_run(run, root)
    if args.sampler == "prior" and not loaded.built.variational:
        raise CliError(
            f"run {loaded.run_id} is a plain autoencoder: it has no prior to sample; use "
            f"--sampler gmm or gaussian. Received: --sampler {args.sampler}"
        )
    try:  # where the training images cannot be had, the test images' codes are fitted
        images = None if args.sampler == "prior" else run_test_split(run, root).pixels
    except RunError:
        images = None
    samples, source = sample_run(
        loaded, args.n, args.sampler, test_images=images, rng=np.random.default_rng(args.seed)
    )
    with open(out, "wb") as handle:
        np.save(handle, samples, allow_pickle=False)
    shape = "x".join(str(n) for n in samples.shape)
    print(terminal_safe(f"run {loaded.run_id}: {shape} samples from {source} -> {out}"))
    return 0


MAX_SAMPLES = 100_000  # decoded images one `cae sample` writes (78 MB of 28x28 float32)


# ------------------------------------------------------------------------------------ notebook


def command_notebook(args: argparse.Namespace) -> int:
    """Write a run as a runnable Jupyter notebook (``cae.notebook``: load the model, its test
    split, the Results page's metrics and grid), the notebook the Results page downloads."""
    from cae.notebook import notebook_text

    out = Path(args.out)
    if out.suffix != ".ipynb":
        raise CliError(f"--out must name an .ipynb file. Received: out={str(out)!r}")
    if not out.parent.is_dir():
        raise CliError(f"--out's folder does not exist. Received: out={str(out)!r}")
    root = Path(args.root) if args.root else None
    text = notebook_text(_run_argument(args.run, root), root)
    out.write_text(text, encoding="utf-8")
    print(terminal_safe(f"wrote {out}: run it with jupyter (python3 kernel) or nbclient"))
    return 0


# ------------------------------------------------------------------------------------ baseline


def command_baseline(args: argparse.Namespace) -> int:
    """Print the PCA baseline (``--components`` components) and the mean-image baseline of a
    data recipe: fitted on its training split, scored on its test split (or as JSON). They are
    computed in a worker process under the step's memory cap (``cae.offload``, as the server
    does): a 181 KB zip of black PNGs took this command to 11.9 GB when it ran here."""
    from cae.baselines import check_components
    from cae.metrics import METRICS
    from cae.offload import baselines_in_worker

    recipe = _data_recipe(args)
    root = Path(args.root) if args.root else None
    check_components(args.components)  # before a process is started for it
    found = baselines_in_worker(recipe, args.components, root)
    pca, mean = found["pca"], found["mean_image"]
    if args.json:
        record = {**pca, "components": args.components, "mean_image": mean}
        print(json_text({**record, "recipe": recipe.to_dict()}))
        return 0

    def scores(values: dict[str, float]) -> str:
        return ", ".join(
            f"{m.title} {m.format(values.get(m.key))}{' ' + m.unit if m.unit else ''}"
            for m in METRICS
        )

    print(terminal_safe(f"test split of {recipe.describe()} (fitted on its training split)"))
    print(f"PCA, {args.components} components: test {scores(pca)}")
    print(f"mean image: test {scores(mean)}")
    return 0


# ------------------------------------------------------------------------------------ parser


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "shapes": command_shapes,
    "train": command_train,
    "sweep": command_sweep,
    "search": command_search,
    "list": command_list,
    "evaluate": command_evaluate,
    "baseline": command_baseline,
    "sample": command_sample,
    "notebook": command_notebook,
}


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr with exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {' '.join(message.split())} (see {self.prog} --help)\n")


def _add_config_arguments(parser: argparse.ArgumentParser, *, search: bool = False) -> None:
    """The data and training-setting arguments that ``train``, ``sweep`` and ``search`` share
    (``search``: the settings a space may sample default to the space's, and fix it when
    given)."""
    from cae.builder import PRECISIONS
    from cae.corruption import CORRUPTION_NAMES, CORRUPTIONS
    from cae.training import LOSSES, OPTIMIZERS, TrainConfig

    defaults = TrainConfig().to_dict()
    if search:
        defaults.update(dict.fromkeys(SEARCH_SETTINGS))
    add_recipe_arguments(parser, seed_help="the split and the training seed")
    fixes = " (fixes the space's)" if search else ""
    parser.add_argument("--epochs", type=int, required=not search, metavar="N", help=fixes or None)
    parser.add_argument(
        "--batch-size", type=int, default=defaults["batch_size"], metavar="N", help=fixes or None
    )
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default=defaults["optimizer"])
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=defaults["learning_rate"],
        metavar="X",
        help=fixes or None,
    )
    parser.add_argument("--loss", choices=LOSSES, default=defaults["loss"])
    parser.add_argument(
        "--validation-split", type=float, default=defaults["validation_split"], metavar="X"
    )
    parser.add_argument("--patience", type=int, default=None, metavar="N", help="early stopping")
    corruption_help = ", ".join(
        f"{kind.name}: {kind.strength_label} {kind.low:g}-{kind.high:g}, default {kind.default:g}"
        for kind in CORRUPTIONS
    )
    parser.add_argument(
        "--corruption",
        choices=CORRUPTION_NAMES,
        default=None,
        help="train a denoiser: corrupt the inputs, keep the targets clean",
    )
    parser.add_argument(
        "--strength",
        type=float,
        default=None,
        metavar="S",
        help=f"of the corruption ({corruption_help})",
    )
    parser.add_argument(
        "--noise",
        type=float,
        default=None,
        metavar="X",
        help="same as --corruption gaussian --strength X",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="mixed_float16: float16 maths on a GPU (the last layer stays float32)",
    )


def make_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m cae``."""
    parser = _Parser(prog="python -m cae", description="CAE Studio command line")
    sub = parser.add_subparsers(dest="command", required=True)
    shapes = sub.add_parser("shapes", help="print every layer's output shape and parameters")
    _add_spec_arguments(shapes)
    shapes.add_argument("--json", action="store_true", help="print the rows as JSON")
    shapes.add_argument(
        "--keras", action="store_true", help="build the model and report Keras's shapes"
    )

    from cae.strategies import STRATEGIES

    train = sub.add_parser("train", help="train an autoencoder and save the run")
    _add_spec_arguments(train, required=True)
    _add_config_arguments(train)
    train.add_argument(
        "--variational",
        action="store_true",
        help="train as a variational autoencoder (code = mean and log-variance maps)",
    )
    train.add_argument(
        "--beta", type=float, default=None, metavar="B", help="with --variational: KL weight (1)"
    )
    train.add_argument(
        "--kl-warmup",
        type=int,
        default=None,
        metavar="N",
        help="with --variational: epochs over which the KL weight rises from 0 (0)",
    )
    train.add_argument("--strategy", choices=STRATEGIES, default="default")
    train.add_argument("--name", default=None, help="the run's name (default: <spec>-<dataset>)")
    train.add_argument("--out", metavar="DIR", help="save as this folder, e.g. models/my-run")
    train.add_argument(
        "--root", metavar="DIR", help="runs folder (default: $CAE_MODELS_DIR or models/)"
    )

    sweep = sub.add_parser("sweep", help="train every combination of --vary values and compare")
    _add_spec_arguments(sweep, required=True)
    sweep.add_argument(
        "--vary",
        action="append",
        required=True,
        metavar="FIELD=V1,V2",
        help="a field and its values (repeatable, up to 3): encoder.0.filters=8,16, kernel=3,5, "
        "code=1,2,4, lr=1e-3,3e-3, epochs, noise, batch, beta=0,1 (0: plain), "
        "corruption=none,erase, strength=0,0.3, config.<setting>",
    )
    _add_config_arguments(sweep)
    sweep.add_argument("--name", default=None, help="the sweep's name (default: <spec> sweep)")
    sweep.add_argument(
        "--out-dir", required=True, metavar="DIR", help="the runs, sweep.json and sweep.csv"
    )
    _add_study_arguments(
        sweep,
        folder="<out-dir>",
        study="the grid study: one of this name in --storage goes on from the points it tried "
        "(the same grid and data only); default: a new one named after --name",
    )

    search = sub.add_parser(
        "search",
        help="search designs and settings with Optuna: each trial trained, scored on its "
        "validation split and saved as a run",
    )
    search.add_argument(
        "--space", required=True, metavar="FILE.json", help="the search space (see README)"
    )
    search.add_argument(
        "--trials", type=int, required=True, metavar="N", help="trials this process trains"
    )
    search.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="start no trial after S seconds (the running one finishes)",
    )
    _add_study_arguments(search, folder="<root>", study="the study (default: the space's name)")
    search.add_argument("--json", action="store_true", help="print the study as JSON")
    _add_config_arguments(search, search=True)
    search.add_argument(
        "--root", metavar="DIR", help="runs folder (default: $CAE_MODELS_DIR or models/)"
    )

    listing = sub.add_parser("list", help="list the saved runs")
    listing.add_argument(
        "--root", metavar="DIR", help="runs folder (default: $CAE_MODELS_DIR or models/)"
    )

    evaluate = sub.add_parser("evaluate", help="stored and fresh test metrics of a run")
    evaluate.add_argument(
        "run", metavar="RUN", help="a run id in the runs folder, or a folder path"
    )
    evaluate.add_argument(
        "--root", metavar="DIR", help="runs folder (default: $CAE_MODELS_DIR or models/)"
    )
    evaluate.add_argument(
        "--json", action="store_true", help='print {"stored": {...}, "fresh": {...}} as JSON'
    )
    from cae.corruption import CORRUPTION_NAMES

    evaluate.add_argument(
        "--corruption",
        choices=CORRUPTION_NAMES,
        default=None,
        help="also score on inputs corrupted so (default: the run's own corruption, if any)",
    )
    evaluate.add_argument(
        "--strength", type=float, default=None, metavar="S", help="of the corruption"
    )

    baseline = sub.add_parser(
        "baseline", help="PCA and mean-image baselines on a data recipe's test split"
    )
    add_recipe_arguments(baseline, seed_help="the split seed")
    baseline.add_argument(
        "--components",
        type=int,
        required=True,
        metavar="K",
        help="PCA components, e.g. the code's number of values (49 for the classic network)",
    )
    baseline.add_argument(
        "--root",
        metavar="DIR",
        help="runs folder of the cache (default: $CAE_MODELS_DIR or models/)",
    )
    baseline.add_argument("--json", action="store_true", help="print the metrics as JSON")

    sample = sub.add_parser(
        "sample", help="decode random codes of a run into an .npy (N x H x W x C, [0, 1])"
    )
    sample.add_argument("run", metavar="RUN", help="a run id in the runs folder, or a folder path")
    sample.add_argument("--n", type=int, required=True, metavar="N", help="how many samples")
    sample.add_argument("--out", required=True, metavar="FILE.npy", help="where to write them")
    sample.add_argument(
        "--seed", type=seed_argument, default=0, metavar="N", help="the codes' seed"
    )
    from cae.latent import SAMPLERS

    sample.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default=SAMPLERS[0],
        help="gmm: a 10-component Gaussian mixture fitted to the run's training codes (the "
        "default); gaussian: one Gaussian fitted to them; prior: N(0, 1), variational runs only",
    )
    sample.add_argument(
        "--root", metavar="DIR", help="runs folder (default: $CAE_MODELS_DIR or models/)"
    )

    notebook = sub.add_parser(
        "notebook", help="write a run as a Jupyter notebook: its model, test split, metrics, grid"
    )
    notebook.add_argument(
        "run", metavar="RUN", help="a run id in the runs folder, or a folder path"
    )
    notebook.add_argument("--out", required=True, metavar="FILE.ipynb", help="where to write it")
    notebook.add_argument(
        "--root", metavar="DIR", help="runs folder (default: $CAE_MODELS_DIR or models/)"
    )
    return parser


def _specs_to_train(args: argparse.Namespace) -> list[ArchitectureSpec]:
    """The designs a ``train`` or ``sweep`` command will train (none for other commands), read
    before TensorFlow is imported, since one of them may need oneDNN off (``cae.onednn``). A
    wrong training setting, and for ``train`` a wrong design file or variational flag, is
    raised here, in the command's own order, so it is refused without TensorFlow's import; a
    sweep's variants that cannot be expanded give none (the command reports why)."""
    if args.command not in ("train", "sweep"):
        return []
    config = _train_config(args)
    if args.command == "train":
        return [_variational_argument(_load_spec_argument(args), args)]
    from cae.sweep import expand, parse_vary

    try:
        axes = [parse_vary(text) for text in args.vary]
        variants = expand(_load_spec_argument(args), config, axes)
    except Exception:  # noqa: BLE001 - the command itself raises it again, where it did before
        return []
    return [variant.spec for variant in variants if variant.spec is not None]


def _trains_on_cluster(args: argparse.Namespace) -> bool:
    """Whether this ``train`` command runs on the Ray cluster of ``CAE_CLUSTER`` (then this
    process only sends the request and prints the progress: no TensorFlow here)."""
    from cae.ray_dispatch import cluster_address

    return (
        args.command == "train" and args.strategy != "multiworker" and cluster_address() is not None
    )


def _onednn_for_search(args: argparse.Namespace) -> None:
    """Before TensorFlow is imported: oneDNN off when the space may stride a 1-tap kernel."""
    from cae.onednn import OFF, VARIABLE

    if _search_space(args).may_stride_one_tap() and "tensorflow" not in sys.modules:
        os.environ[VARIABLE] = OFF


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        if args.command in ("evaluate", "sample", "notebook"):
            refuse_non_run_folder(args)
        if args.command in ("train", "sweep", "search", "evaluate", "sample") or getattr(
            args, "keras", False
        ):
            from cae.onednn import turn_off_for
            from cae.quiet import import_tensorflow_quietly

            if args.command == "search":  # a bad space or storage: refused before TensorFlow
                from cae.search import make_storage

                _search_space(args)
                make_storage(args.storage, args.root)
                _onednn_for_search(args)
            if args.command == "sweep":  # bad fields or storage: refused before TensorFlow
                from cae.search import make_storage
                from cae.sweep import check_axes, parse_vary

                check_axes([parse_vary(text) for text in args.vary], _load_spec_argument(args))
                if args.storage is not None:
                    make_storage(args.storage)
            specs = _specs_to_train(args)
            refuse_mismatched_upload(
                specs, getattr(args, "data", None), getattr(args, "array", None)
            )
            turn_off_for(specs)  # before TensorFlow reads it, at its import
            if not _trains_on_cluster(args):  # there the node imports it, not this process
                import_tensorflow_quietly()  # TensorFlow's start-up lines are not ours to print
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 2
    except Exception as error:  # one short line, never a traceback (CAE_DEBUG=1 adds it)
        from cae.errors import error_line

        if os.environ.get("CAE_DEBUG"):
            traceback.print_exc()
        # cae's own errors say what and end with the values; others are named by their type
        ours = isinstance(error, (CliError, ValueError, OSError))
        print(terminal_safe(error_line(error, with_type=not ours)), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
