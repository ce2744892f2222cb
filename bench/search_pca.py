"""The search's efficiency against PCA (issue 27): the product's search (``cae.search.run_search``,
what ``cae search`` runs) on a space file, with the best validation PSNR reached printed against
wall time, the load average beside it, and at the end the winner's test PSNR against PCA with as
many components as its code has values.

Every trial is an ordinary run of a runs folder (a temporary one unless ``--root``), scored by
its validation split (the last 10 % of the training images); the test split is the objective of
nothing: the training scores it for the record, and this script reads it once, for the winner
(``cae.search.best_report``). ``--timeout`` is a hard limit: the trial running when it passes is
stopped and marked failed (unlike ``cae search --timeout``, which lets it finish), so the table
says what the search reached within the time and nothing after it.

    nice -n 10 .venv/bin/python bench/search_pca.py [--space cae/_data/search-mnist-sample.json]
        [--timeout 3600] [--dataset mnist-sample] [--limit N] [--no-enqueue] [--root DIR]
        [--study NAME] [--max-code-values 30] [--json-out FILE]

``--no-enqueue`` drops the space's ``enqueue`` points (the hand-made design it tries first), to
measure what the search reaches on its own.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _load_sampler(
    samples: list[tuple[float, float]], started: float, stop: threading.Event
) -> threading.Thread:
    """A thread appending (seconds, 1-minute load average) every 60 s until ``stop``."""

    def sample() -> None:
        while True:
            samples.append((time.monotonic() - started, os.getloadavg()[0]))
            if stop.wait(60):
                return

    thread = threading.Thread(target=sample, name="load-sampler", daemon=True)
    thread.start()
    return thread


def best_curve(study: Any, started_at: float) -> list[dict[str, Any]]:
    """Each finished, pruned or failed trial in the order it ended: minutes since the start,
    state, its validation PSNR, epochs trained and the best validation PSNR so far."""
    import optuna

    rows = []
    for trial in study.get_trials(deepcopy=False):
        if trial.datetime_complete is None or "skipped" in trial.user_attrs:
            continue
        ended = trial.datetime_complete.timestamp() - started_at
        value = trial.value if trial.state == optuna.trial.TrialState.COMPLETE else None
        epochs = trial.user_attrs.get("epochs_completed")
        if epochs is None and trial.intermediate_values:
            epochs = max(trial.intermediate_values)
        rows.append(
            {
                "minutes": ended / 60,
                "trial": trial.number,
                "state": trial.state.name.lower(),
                "value": value,
                "epochs": epochs,
                "params": dict(trial.params),
            }
        )
    rows.sort(key=lambda row: row["minutes"])
    best = float("-inf")
    for row in rows:
        if row["value"] is not None:
            best = max(best, row["value"])
        row["best"] = best if best > float("-inf") else None
    return rows


def main() -> None:
    """Run the search for ``--timeout`` seconds and print its efficiency table and winner."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default=str(REPO / "cae" / "_data" / "search-mnist-sample.json"))
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds (a hard limit)")
    parser.add_argument("--trials", type=int, default=10_000, help="at most this many trials")
    parser.add_argument("--dataset", default="mnist-sample")
    parser.add_argument("--limit", type=int, default=None, help="at most N train and N test images")
    parser.add_argument("--root", default=None, help="runs folder (a temporary one by default)")
    parser.add_argument("--study", default=None, help="study name (the space's name)")
    parser.add_argument(
        "--no-enqueue", action="store_true", help="drop the space's enqueued points"
    )
    parser.add_argument("--max-code-values", type=int, default=None, help="override the space's")
    parser.add_argument(
        "--patience", type=int, default=None, help="early stopping: keep the best epoch"
    )
    parser.add_argument("--json-out", default=None, help="write the table and winner as JSON")
    args = parser.parse_args()

    from cae.quiet import tensorflow_logs_captured
    from cae.recipe import DataRecipe
    from cae.search import best_report, make_storage, open_study, run_search
    from cae.search_space import SearchSpace
    from cae.training import TrainConfig

    space = SearchSpace.load(args.space)
    data = space.to_dict()
    if args.no_enqueue:
        data.pop("enqueue", None)
    if args.max_code_values is not None:
        data.setdefault("constraints", {})["max_code_values"] = args.max_code_values
    space = SearchSpace.from_dict(data)
    recipe = DataRecipe(args.dataset, limit=args.limit, seed=0)
    # as `cae search [--patience N]`: the space sets the rest
    config = TrainConfig(preview_count=0, patience=args.patience)
    root = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="search-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    storage = str(root / "studies.db")
    name = args.study or space.name
    print(
        f"space {args.space} ({'no enqueued points' if args.no_enqueue else f'{len(space.enqueue)} enqueued'}), "
        f"pruner {space.pruner}, patience {args.patience}, data {recipe.dataset} limit {recipe.limit}, {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.1f}, runs in {root}",
        flush=True,
    )

    started = time.monotonic()
    started_at = time.time()
    deadline = started + args.timeout
    loads: list[tuple[float, float]] = []
    stop_loads = threading.Event()
    _load_sampler(loads, started, stop_loads)

    def log(line: str) -> None:
        print(f"{(time.monotonic() - started) / 60:6.1f} min  {line}", flush=True)

    with tensorflow_logs_captured():
        summary = run_search(
            space,
            recipe,
            config,
            study_name=name,
            n_trials=args.trials,
            storage=storage,
            root=root,
            timeout=args.timeout,
            log=log,
            should_stop=lambda: time.monotonic() >= deadline,
        )
    stop_loads.set()
    store = make_storage(storage)
    study = open_study(name, storage=store)
    curve = best_curve(study, started_at)
    states = [row["state"] for row in curve]
    print(
        f"\n{summary.seconds / 60:.1f} min, stopped by {summary.stopped_by}: "
        f"{states.count('complete')} finished, {states.count('pruned')} pruned, "
        f"{states.count('fail')} failed (the one running at the limit), {summary.skipped} skipped"
    )
    print("\nbest validation PSNR against wall time (the search's efficiency):")
    print("   min  trial  state     epochs  val PSNR   best")
    for row in curve:
        value = f"{row['value']:.2f}" if row["value"] is not None else "-"
        best = f"{row['best']:.2f}" if row["best"] is not None else "-"
        print(
            f"  {row['minutes']:5.1f}  {row['trial']:5d}  {row['state']:8s}  "
            f"{row['epochs'] if row['epochs'] is not None else '-':>6}  {value:>8}  {best:>6}"
        )
    print("\nload average (1 min) during the search, every minute:")
    print("  " + " ".join(f"{load:.1f}" for _, load in loads))
    if loads:
        values = sorted(load for _, load in loads)
        print(f"  min {values[0]:.1f}, median {values[len(values) // 2]:.1f}, max {values[-1]:.1f}")
    best = best_report(study, recipe, root)  # the test split, read once, for the winner
    if best is None:
        print("no trial finished")
    else:
        print(
            f"\nwinner: trial {best['number']} {best['params']}, {best['param_count']:,} parameters, "
            f"{best['code_values']} code values, {best['epochs']} epochs, {best['seconds']:.0f} s; "
            f"validation PSNR {best['value']:.2f} dB, test PSNR {best['test_psnr']:.2f} dB vs "
            f"PCA-{best['pca_components']} {best['pca_psnr']:.2f} dB "
            f"({best.get('gain_over_pca', float('nan')):+.2f} dB); run {root / str(best['run_id'])}"
        )
    if args.json_out:
        record = {
            "space": space.to_dict(),
            "data": recipe.to_dict(),
            "seconds": summary.seconds,
            "curve": curve,
            "loads": loads,
            "best": {k: v for k, v in (best or {}).items() if k not in ("spec",)},
            "root": str(root),
        }
        Path(args.json_out).write_text(json.dumps(record, indent=1, default=str), "utf-8")


if __name__ == "__main__":
    main()
