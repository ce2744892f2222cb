"""Training memory: peak RSS of one epoch on 60,000 images, and RSS growth over ten trainings.

Each part runs in a fresh subprocess (peak RSS is per process). Part 1 trains the classic preset
for one epoch on Fashion-MNIST's 60,000 training images (Debian's dataset-fashion-mnist files via
cae.datasets; the bundled 5,000-digit sample tiled to 60,000 when those are missing), with validation,
test metrics and latent statistics, as the app does. Part 2 trains ten times in one process (small
epochs) and prints the RSS after each. Targets: peak <= 1.5 GB, growth <= 200 MB. No asserts.

    .venv/bin/python bench/train_memory.py [--runs N]
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MB = 1024 * 1024


def rss() -> int:
    """The resident set size of this process in bytes."""
    import psutil

    return psutil.Process().memory_info().rss


def peak_rss() -> int:
    """The peak resident set size of this process so far, in bytes (Linux: ru_maxrss is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def sixty_thousand():
    """60,000 training images: Fashion-MNIST if installed, else the sample tiled."""
    import numpy as np

    from cae.data import Dataset
    from cae.datasets import DatasetUnavailable, load_dataset

    try:
        return load_dataset("fashion-mnist"), "fashion-mnist (Debian files)"
    except DatasetUnavailable:
        sample = load_dataset("mnist-sample")
        reps = -(-60000 // sample.num_train)
        x = np.tile(sample.x_train, (reps, 1, 1, 1))[:60000]
        return Dataset("tiled", x, None, sample.x_test, None), "mnist-sample tiled to 60,000"


def part_peak() -> dict:
    """One epoch on 60,000 images: RSS before, after loading, and the peak."""
    import tensorflow  # noqa: F401 - counted in the baseline, as in the app

    from cae.spec import preset
    from cae.training import TrainConfig, train

    after_import = rss()
    data, source = sixty_thousand()
    after_data = rss()
    samples = [after_data]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(rss())
            time.sleep(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    started = time.perf_counter()
    result = train(preset("classic"), data, TrainConfig(epochs=1, batch_size=64))
    seconds = time.perf_counter() - started
    done.set()
    thread.join()
    return {
        "source": source,
        "train_images": data.num_train,
        "test_images": data.num_test,
        "rss_after_import_mb": after_import / MB,
        "rss_after_data_mb": after_data / MB,
        "rss_sampled_max_mb": max(samples) / MB,
        "peak_rss_mb": peak_rss() / MB,
        "train_seconds": seconds,
        "psnr": result.test_metrics["psnr"],
    }


def part_growth(runs: int = 10) -> dict:
    """Ten trainings in one process: RSS after each (after gc)."""
    from cae.datasets import load_dataset
    from cae.spec import preset
    from cae.training import TrainConfig, train

    data = load_dataset("mnist-sample", limit=1000)
    after = []
    for _ in range(runs):
        result = train(preset("classic"), data, TrainConfig(epochs=1, batch_size=64))
        del result
        gc.collect()
        after.append(rss() / MB)
    return {"rss_after_each_mb": after, "growth_mb": after[-1] - after[0]}


def main() -> None:
    """Run both parts in subprocesses and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--part",
        choices=("peak", "growth"),
        help="run one part in this process and print its RESULT line (what each subprocess does)",
    )
    parser.add_argument(
        "--runs", type=int, default=10, help="trainings of the growth part (default 10)"
    )
    args = parser.parse_args()
    if args.part == "peak":
        print("RESULT " + json.dumps(part_peak()))
        return
    if args.part == "growth":
        print("RESULT " + json.dumps(part_growth(args.runs)))
        return
    results = {}
    for part in ("peak", "growth"):
        proc = subprocess.run(
            [sys.executable, __file__, "--part", part, "--runs", str(args.runs)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode or not lines:
            print(f"{part}: failed\n{proc.stderr[-3000:]}")
            continue
        results[part] = json.loads(lines[-1][len("RESULT ") :])
    if "peak" in results:
        p = results["peak"]
        print(
            f"one epoch, {p['train_images']:,} images ({p['source']}), {p['train_seconds']:.1f} s: "
            f"RSS after import {p['rss_after_import_mb']:.0f} MB, after data "
            f"{p['rss_after_data_mb']:.0f} MB, peak {p['peak_rss_mb']:.0f} MB "
            f"(sampled max {p['rss_sampled_max_mb']:.0f} MB); target <= 1536 MB"
        )
    if "growth" in results:
        g = results["growth"]
        trail = ", ".join(f"{v:.0f}" for v in g["rss_after_each_mb"])
        runs = len(g["rss_after_each_mb"])
        print(f"{runs} trainings: RSS after each {trail} MB")
        print(f"growth from the 1st to the last: {g['growth_mb']:.0f} MB; target <= 200 MB")


if __name__ == "__main__":
    main()
