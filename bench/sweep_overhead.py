"""An experiment's overhead: the same runs trained as a grid study by the server's study queue
(cae.studies: Optuna, the job manager's worker processes, progress) against back to back with
the CLI.

Each round trains the runs of one sweep twice, alternating which goes first: once as an
experiment (``STUDIES.submit_grid`` to the end of its last run), once as ``python -m cae train
--spec ...`` processes one after another (what a user would script). Both save every run. Prints
each round and the median ratio of wall times (target: at most 1.10).

    .venv/bin/python bench/sweep_overhead.py [--rounds 3] [--epochs 2] [--limit 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def cli_round(variants, recipe, config, root: Path) -> float:
    """The runs trained back to back, one ``cae train`` process each; wall seconds."""
    env = dict(os.environ, CAE_MODELS_DIR=str(root))
    started = time.perf_counter()
    for variant in variants:
        spec_file = root / f"spec-{variant.index}.json"
        spec_file.write_text(variant.spec.to_json())
        command = [
            sys.executable, "-m", "cae", "train", "--spec", str(spec_file),
            "--dataset", recipe.dataset, "--limit", str(recipe.limit), "--seed", str(recipe.seed),
            "--epochs", str(variant.config.epochs), "--batch-size", str(variant.config.batch_size),
            "--learning-rate", str(variant.config.learning_rate), "--name", variant.label,
            "--root", str(root),
        ]  # fmt: skip
        subprocess.run(command, check=True, cwd=REPO, env=env, capture_output=True)
    return time.perf_counter() - started


def experiment_round(spec, config, recipe, axes, num_train: int, root: Path) -> float:
    """The same runs as one experiment of the server's queue; wall seconds to its end."""
    from cae.experiments import grid_rows
    from cae.studies import STUDIES

    started = time.perf_counter()
    experiment = STUDIES.submit_grid(
        "bench", "bench", spec, config, recipe, axes, num_train=num_train, root=root
    )
    STUDIES.wait(experiment.id)
    seconds = time.perf_counter() - started
    states = [row["state"] for row in grid_rows(experiment.study())]
    if set(states) != {"finished"}:
        raise SystemExit(f"the experiment did not finish every run: {states}")
    return seconds


def main() -> None:
    """Alternate rounds, print each and the median ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--vary", default="encoder.0.filters=8,16,32")
    args = parser.parse_args()

    from cae.experiments import parallel_runs
    from cae.jobs import JOBS
    from cae.recipe import DataRecipe
    from cae.spec import preset
    from cae.sweep import expand, parse_vary
    from cae.training import TrainConfig

    spec = preset("classic")
    config = TrainConfig(epochs=args.epochs, preview_count=0)
    recipe = DataRecipe(dataset="mnist-sample", limit=args.limit)
    axes = [parse_vary(args.vary)]
    variants = [v for v in expand(spec, config, axes) if v.ok]
    num_train = int(args.limit * (1 - config.validation_split))
    JOBS.prewarm()  # as the app's server does: one worker with TensorFlow loaded waits
    print(
        f"{len(variants)} runs ({args.vary}), {args.epochs} epochs on {args.limit:,} images, "
        f"{parallel_runs()} at once in the experiment, {os.cpu_count()} CPUs"
    )
    ratios = []
    with tempfile.TemporaryDirectory(prefix="cae-sweep-bench-") as tmp:
        for number in range(args.rounds):
            exp_root = Path(tmp) / f"experiment-{number}"
            cli_root = Path(tmp) / f"cli-{number}"
            exp_root.mkdir()
            cli_root.mkdir()
            if number % 2 == 0:
                cli = cli_round(variants, recipe, config, cli_root)
                experiment = experiment_round(spec, config, recipe, axes, num_train, exp_root)
            else:
                experiment = experiment_round(spec, config, recipe, axes, num_train, exp_root)
                cli = cli_round(variants, recipe, config, cli_root)
            ratios.append(experiment / cli)
            print(
                f"round {number + 1}: experiment {experiment:.1f} s, CLI back to back {cli:.1f} s, "
                f"ratio {experiment / cli:.2f}",
                flush=True,
            )
    from cae.studies import STUDIES

    STUDIES.close()
    print(json.dumps({"median_ratio": round(statistics.median(ratios), 3), "rounds": len(ratios)}))
    print(f"median ratio experiment / CLI: {statistics.median(ratios):.2f} (target <= 1.10)")


if __name__ == "__main__":
    main()
