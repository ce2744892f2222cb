"""Soak: train 20 short runs one after another through cae.jobs.JobManager (as the Train page
does, with a prewarmed worker) and print the resident memory (RSS) of this process, which plays
the server, after each run, plus the RSS of the worker processes still alive; then the growth.

    PYTHONPATH=. .venv/bin/python bench/soak_training.py [--runs 20] [--images 256] [--pause 8]

With ``--in-process`` the same runs go through ``cae.training.train`` in this process (the old
design, threads in the server) for comparison. Runs are saved into a temporary folder that is
removed at the end. Each job trains in its own process, so the server's RSS should stay flat.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # as the other benches: no PYTHONPATH

from cae.jobs import JobManager  # noqa: E402
from cae.recipe import DataRecipe, TestSplit, load_recipe  # noqa: E402
from cae.request import TrainRequest  # noqa: E402
from cae.spec import preset  # noqa: E402
from cae.training import TrainConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--in-process", action="store_true", help="train in this process")
    parser.add_argument(
        "--pause",
        type=float,
        default=0.0,
        help="seconds between runs, as a user looking at the result (lets the "
        "spare worker finish loading TensorFlow); not counted in the run times",
    )
    args = parser.parse_args()
    if args.runs < 6:
        parser.error(
            f"--runs must be at least 6 (growth is read from run 5 on). Received: {args.runs}"
        )
    process = psutil.Process()
    config = TrainConfig(epochs=1, batch_size=32, validation_split=0.0)
    request = TrainRequest(
        preset("classic"), DataRecipe("mnist-sample", limit=args.images), config, "soak"
    )
    jobs = JobManager()
    if not args.in_process:
        jobs.prewarm()
    rss: list[float] = []
    with tempfile.TemporaryDirectory() as root:
        for i in range(args.runs):
            time.sleep(args.pause)
            start = time.perf_counter()
            named = replace(request, name=f"soak-{i}")
            if args.in_process:
                from cae.store import save_trained
                from cae.training import train

                data = load_recipe(request.data)
                result = train(request.spec, data, config)
                save_trained(result, named, TestSplit.of(data, request.data), root=root)
                del result, data
            else:
                job = jobs.start("soak", named, root=root)
                job.wait()
                assert job.run_id is not None, job.snapshot().message
            rss.append(process.memory_info().rss / 2**20)
            children = process.children(recursive=True)
            child_rss = sum(child.memory_info().rss for child in children if child.is_running())
            print(
                f"run {i + 1:2d}: {time.perf_counter() - start:5.2f} s, RSS {rss[-1]:7.1f} MiB; "
                f"{len(children)} worker(s) alive, {child_rss / 2**20:7.1f} MiB",
                flush=True,
            )
    jobs.close_spare()
    print(
        f"RSS growth run 1 -> {args.runs}: {rss[-1] - rss[0]:+.1f} MiB; "
        f"run 5 -> {args.runs}: {rss[-1] - rss[min(4, len(rss) - 1)]:+.1f} MiB "
        f"({(rss[-1] - rss[min(4, len(rss) - 1)]) / max(1, len(rss) - 5):+.2f} MiB/run)"
    )


if __name__ == "__main__":
    main()
