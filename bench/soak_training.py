"""Soak: train 20 short runs one after another through cae.jobs.JobManager in one process and
print the resident memory (RSS) after each, then the growth from the first run to the last.

    .venv/bin/python bench/soak_training.py [--runs 20] [--images 256]

Runs are saved into a temporary folder that is removed at the end. A steady RSS after the first
few runs (TensorFlow's own warm-up) means a finished job leaks nothing that grows per run.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import psutil

from cae.data import Dataset, load_dataset
from cae.jobs import JobManager
from cae.spec import preset
from cae.training import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--images", type=int, default=256)
    args = parser.parse_args()
    process = psutil.Process()
    full = load_dataset("mnist-sample")
    n = args.images
    data = Dataset("soak", full.x_train[:n], None, full.x_test[:64], None)
    jobs = JobManager()
    rss: list[float] = []
    with tempfile.TemporaryDirectory() as root:
        for i in range(args.runs):
            start = time.perf_counter()
            job = jobs.start("soak", preset("classic"), data, "mnist-sample",
                             TrainConfig(epochs=1, batch_size=32, validation_split=0.0),
                             name=f"soak-{i}", root=root)  # fmt: skip
            job.wait()
            assert job.run_id is not None, job.snapshot().message
            rss.append(process.memory_info().rss / 2**20)
            print(f"run {i + 1:2d}: {time.perf_counter() - start:5.2f} s, RSS {rss[-1]:7.1f} MiB",
                  flush=True)  # fmt: skip
    print(f"RSS growth run 1 -> {args.runs}: {rss[-1] - rss[0]:+.1f} MiB; "
          f"run 5 -> {args.runs}: {rss[-1] - rss[min(4, len(rss) - 1)]:+.1f} MiB "
          f"({(rss[-1] - rss[min(4, len(rss) - 1)]) / max(1, len(rss) - 5):+.2f} MiB/run)")  # fmt: skip


if __name__ == "__main__":
    main()
