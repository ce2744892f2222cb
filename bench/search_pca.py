"""Search efficiency against PCA: an Optuna TPE study over one family of 7x7x1-code designs on the
bundled sample, printing the best validation PSNR reached against wall time (issue 27's "search
efficiency" metric), then the best design's test PSNR beside PCA with the same 49 values.

The family (the ``wide`` preset is one of its points): per stage ``depth`` 3x3 convolutions of
``w1`` (28x28) then ``w2`` (14x14) filters, each optionally followed by batch normalisation, 2x2 max
pooling, a 3x3 one-filter code convolution (7x7x1 = 49 values) with a ReLU or linear activation;
the decoder mirrors it (``depth`` convolutions of ``w2`` at 7x7, up-sampling, ``depth`` of ``w1``
at 14x14, up-sampling, a 3x3 sigmoid convolution). The study also picks the learning rate and
the batch size; the loss stays binary cross-entropy so that the pruner compares like with like.

Each trial trains ``--epochs`` epochs with ``cae.training.train`` (the CLI's own training), its
validation loss reported to Optuna at every epoch end, where a median pruner may stop it. The
objective is the PSNR on the validation split (the last 10 % of the training images): the trial's
"test" set is that validation split, so the real test split stays untouched until the winner's
score is printed. Every candidate is shape-checked (``cae.shapes``) against ``--max-params``
before it trains.

    nice -n 10 .venv/bin/python bench/search_pca.py [--timeout 3600] [--trials N] [--epochs 10]
        [--storage sqlite:///study.db] [--study NAME] [--enqueue-wide] [--warmup-epochs 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cae.spec import ArchitectureSpec, BatchNorm, Conv, Pool, Upsample  # noqa: E402

WIDTHS_1 = (16, 24, 32, 48)
WIDTHS_2 = (32, 48, 64, 96)


def family(w1: int, w2: int, depth: int, code_activation: str, batchnorm: bool) -> ArchitectureSpec:
    """One design of the family: ``depth`` convolutions per stage of ``w1`` then ``w2`` filters
    down to a 7x7x1 code, mirrored back up."""

    def convs(filters: int) -> list[Any]:
        layers: list[Any] = []
        for _ in range(depth):
            layers.append(Conv(filters, (3, 3)))
            if batchnorm:
                layers.append(BatchNorm())
        return layers

    encoder = [
        *convs(w1),
        Pool("max", (2, 2)),
        *convs(w2),
        Pool("max", (2, 2)),
        Conv(1, (3, 3), activation=code_activation),
    ]
    decoder = [
        *convs(w2),
        Upsample((2, 2)),
        *convs(w1),
        Upsample((2, 2)),
        Conv(1, (3, 3), activation="sigmoid"),
    ]
    name = f"family-{w1}-{w2}-d{depth}-{code_activation}{'-bn' if batchnorm else ''}"
    return ArchitectureSpec(
        name=name, input_shape=(28, 28, 1), encoder=tuple(encoder), decoder=tuple(decoder)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds of search")
    parser.add_argument("--trials", type=int, default=None, help="at most this many trials")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per trial")
    parser.add_argument("--max-params", type=int, default=300_000)
    parser.add_argument("--storage", default=None, help="an Optuna storage URL (in memory)")
    parser.add_argument("--study", default="search-pca")
    parser.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    parser.add_argument(
        "--warmup-epochs",
        type=int,
        default=5,
        help="no pruning before this epoch (3 cut, at epoch 3, a design found ahead by hand)",
    )
    parser.add_argument(
        "--enqueue-wide",
        action="store_true",
        help="start from the wide preset's point (Optuna's enqueue_trial), as an engineer would",
    )
    args = parser.parse_args()

    import numpy as np
    import optuna

    from cae.baselines import pca_baseline
    from cae.data import Dataset
    from cae.datasets import load_dataset
    from cae.evaluation import evaluate_run
    from cae.preflight import validation_count
    from cae.recipe import DataRecipe
    from cae.shapes import compute_shapes
    from cae.training import TrainConfig, train

    data = load_dataset("mnist-sample", seed=0)
    n_val = validation_count(len(data.x_train), TrainConfig().validation_split)
    x_val = data.x_train[len(data.x_train) - n_val :]  # the last part, as train() holds out
    # the trials are scored on the validation split: train() scores its "test" images, so these
    # are the validation images; the real test split is scored once, for the winner
    searched = Dataset("mnist-sample (validation as test)", data.x_train, None, x_val, None)
    pca = pca_baseline(DataRecipe("mnist-sample", seed=0), 49, use_cache=False)["psnr"]
    print(f"PCA-49 test PSNR {pca:.2f} dB; {args.epochs} epochs per trial", flush=True)

    started = time.perf_counter()
    best: dict[str, Any] = {"value": -np.inf, "built": None, "trial": None}
    rows: list[tuple[float, int, str, float | None, float]] = []

    def objective(trial: optuna.Trial) -> float:
        spec = family(
            trial.suggest_categorical("w1", WIDTHS_1),
            trial.suggest_categorical("w2", WIDTHS_2),
            trial.suggest_int("depth", 1, 3),
            trial.suggest_categorical("code_activation", ["relu", "linear"]),
            trial.suggest_categorical("batchnorm", [False, True]),
        )
        config = TrainConfig(
            epochs=args.epochs,
            batch_size=trial.suggest_categorical("batch_size", [32, 64]),
            learning_rate=trial.suggest_float("learning_rate", 3e-4, 3e-3, log=True),
        )
        report = compute_shapes(spec)  # shape-checked before it trains
        if not report.matches or report.total_params > args.max_params:
            reason = report.problem or f"{report.total_params:,} parameters > {args.max_params:,}"
            trial.set_user_attr("refused", reason)
            raise optuna.TrialPruned(f"refused: {reason}")
        trial.set_user_attr("params", report.total_params)
        pruned = {"now": False, "epoch": 0}

        def progress(update: Any) -> None:
            if update.val_loss is None or update.epoch <= pruned["epoch"] or update.batch:
                return
            pruned["epoch"] = update.epoch
            trial.report(update.val_loss, update.epoch)
            pruned["now"] = trial.should_prune()

        result = train(
            spec,
            searched,
            config,
            progress=progress,
            should_stop=lambda: pruned["now"],
            tensorboard=False,
            report_interval=0.0,
        )
        if pruned["now"]:
            raise optuna.TrialPruned(f"pruned after epoch {result.epochs_completed}")
        value = float(result.test_metrics["psnr"])  # on the validation split, see above
        if value > best["value"]:
            best.update(value=value, built=result.built, trial=trial.number)
        return value

    def log(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        elapsed = time.perf_counter() - started
        value = trial.value if trial.state == optuna.trial.TrialState.COMPLETE else None
        rows.append((elapsed, trial.number, trial.state.name, value, best["value"]))
        shown = f"{value:.2f}" if value is not None else trial.state.name.lower()
        if "refused" in trial.user_attrs:
            shown = "refused"
        print(
            f"{elapsed / 60:6.1f} min  trial {trial.number:3d}  val PSNR {shown:>8}  "
            f"best {best['value']:.2f} dB  {trial.params}",
            flush=True,
        )

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=args.study,
        storage=args.storage,
        load_if_exists=True,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=args.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=args.warmup_epochs),
    )
    if args.enqueue_wide:
        study.enqueue_trial(
            {
                "w1": 32,
                "w2": 64,
                "depth": 2,
                "code_activation": "linear",
                "batchnorm": False,
                "batch_size": 32,
                "learning_rate": 1e-3,
            }
        )
    try:
        study.optimize(objective, n_trials=args.trials, timeout=args.timeout, callbacks=[log])
    except KeyboardInterrupt:  # Ctrl-C ends the search early: the summary still comes
        print("interrupted: the trial under way is left out", flush=True)

    print("\nbest validation PSNR against wall time (the search's efficiency):")
    for elapsed, number, state, _value, so_far in rows:
        print(
            f"  {elapsed / 60:6.1f} min  after trial {number:3d} ({state.lower()}): {so_far:.2f} dB"
        )
    if best["built"] is None:
        print("no trial completed")
        return
    test = evaluate_run(best["built"], data.x_test)["psnr"]
    print(
        f"best trial {best['trial']}: {study.best_trial.params}, val PSNR {best['value']:.2f} dB, "
        f"test PSNR {test:.2f} dB vs PCA-49 {pca:.2f} dB ({test - pca:+.2f} dB), "
        f"{len(rows)} trials in {(time.perf_counter() - started) / 60:.1f} min"
    )


if __name__ == "__main__":
    main()
