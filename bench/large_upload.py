"""A real-sized upload: 1,000 RGB 512x512 JPEGs (786 MB as uint8, 3.1 GB as float32), loaded
from a recipe and trained for one short epoch with a tiny design, in a process under a memory cap.

Issue 15: images are held as uint8 and made float32 a batch at a time, so this dataset is taken
by the default upload budget (2 GiB as held; its float32 form would be refused) and trains where
memory allows. The child process caps its address space (``RLIMIT_AS``, ``--cap-gb``), loads the
zip through ``cae.recipe.load_recipe`` as the training process does, trains one epoch (test
metrics, latent statistics and the preview included) and prints its RSS after loading and its
peak. No asserts: a bench, run by hand (tests cover the dtype and the budget on small inputs).

    PYTHONPATH=. .venv/bin/python bench/large_upload.py [--images 1000] [--cap-gb 10] [--epochs 1]
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
cap = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
path, epochs, batch = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def status(key):
    with open("/proc/self/status") as lines:
        for line in lines:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

def rss():
    return status("VmRSS")

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

import tensorflow  # counted before loading, as in the training process
from cae.recipe import DataRecipe, load_recipe
from cae.spec import ArchitectureSpec
from cae.training import TrainConfig, train

before = rss()
started = time.perf_counter()
try:
    data = load_recipe(DataRecipe.for_file(path))
except ValueError as error:
    print(json.dumps({"status": "refused", "message": str(error), "peak": peak()}))
    raise SystemExit(0)
loaded = time.perf_counter() - started
after_load, peak_load = rss(), peak()
spec = ArchitectureSpec.from_dict({
    "name": "tiny-512",
    "input_shape": [512, 512, 3],
    "encoder": [
        {"type": "conv", "filters": 4, "kernel": 3}, {"type": "pool", "size": 4},
        {"type": "conv", "filters": 4, "kernel": 3}, {"type": "pool", "size": 4},
    ],
    "decoder": [
        {"type": "upsample", "size": 4}, {"type": "conv", "filters": 4, "kernel": 3},
        {"type": "upsample", "size": 4},
        {"type": "conv", "filters": 3, "kernel": 3, "activation": "sigmoid"},
    ],
})
config = TrainConfig(epochs=epochs, batch_size=batch, validation_split=0.1, preview_count=6)
started = time.perf_counter()
result = train(spec, data, config, progress=lambda progress: None)
trained = time.perf_counter() - started
print(json.dumps({
    "status": result.state,
    "message": result.message,
    "dtype": str(data.x_train.dtype),
    "held": data.held_bytes,
    "images": [data.num_train, data.num_test],
    "before": before, "after_load": after_load, "peak_load": peak_load, "peak": peak(),
    "vm_peak": status("VmPeak"),
    "load_s": loaded, "train_s": trained,
    "loss": result.history["loss"], "test_mse": result.test_metrics.get("mse"),
}))
"""


def make_zip(path: Path, count: int) -> int:
    """``count`` 512x512 RGB JPEGs of smooth shapes and grain (~40 KB each), stored in a zip in
    two class folders; returns the zip's size."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:512, 0:512].astype(np.float32) / 512
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for index in range(count):
            fx, fy, phase = rng.uniform(1, 6, 3)
            base = np.stack(
                [
                    np.sin(fx * np.pi * xx + phase) * np.cos(fy * np.pi * yy),
                    np.cos(fy * np.pi * xx * yy + phase),
                    xx * yy,
                ],
                axis=-1,
            )
            grain = rng.normal(0, 0.08, (512, 512, 3)).astype(np.float32)
            pixels = np.clip((base * 0.5 + 0.5 + grain) * 255, 0, 255).astype(np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
            archive.writestr(f"class{index % 2}/{index:04d}.jpg", buffer.getvalue())
    return path.stat().st_size


def main() -> None:
    """Make the zip, run the capped child, print what it measured."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument(
        "--cap-gb",
        type=float,
        default=10.0,
        help="address-space cap of the child (TensorFlow reserves address space it never "
        "touches, thread stacks and allocator arenas: 4.7 GiB of it for a peak RSS of 2.5 GiB)",
    )
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        path = Path(temp) / "photos.zip"
        started = time.perf_counter()
        size = make_zip(path, args.images)
        print(
            f"{args.images} JPEGs of 512x512x3 in a {size / 1e6:,.1f} MB zip "
            f"({args.images * 512 * 512 * 3 / 1e6:,.0f} MB as uint8, "
            f"{args.images * 512 * 512 * 3 * 4 / 1e9:,.2f} GB as float32; "
            f"made in {time.perf_counter() - started:.0f} s)"
        )
        cap = int(args.cap_gb * 2**30)
        result = subprocess.run(
            [sys.executable, "-c", CHILD, str(cap), str(path), str(args.epochs), str(args.batch_size)],
            capture_output=True, text=True, cwd=REPO, timeout=3600,
            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "2"},
        )  # fmt: skip
    try:
        report = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        print(f"CRASHED (exit {result.returncode}) under a {args.cap_gb:g} GB cap:\n{tail}")
        return
    if report["status"] == "refused":
        print(f"refused: {report['message'][:200]} (peak {report['peak'] / 2**20:,.0f} MiB)")
        return
    mib = 2**20
    print(f"address space capped at {args.cap_gb:g} GB; images held as {report['dtype']}")
    print(
        f"loaded {report['images'][0]} train + {report['images'][1]} test images "
        f"({report['held'] / 1e6:,.0f} MB held) in {report['load_s']:.1f} s: RSS "
        f"{report['before'] / mib:,.0f} -> {report['after_load'] / mib:,.0f} MiB, "
        f"peak while loading {report['peak_load'] / mib:,.0f} MiB"
    )
    print(
        f"trained {args.epochs} epoch(s), batch {args.batch_size}, in {report['train_s']:.1f} s: "
        f"{report['status']}, loss {report['loss']}, test MSE {report['test_mse']:.4f}; "
        f"peak RSS {report['peak'] / mib:,.0f} MiB (address space at most "
        f"{report['vm_peak'] / 2**30:,.1f} GiB)"
    )


if __name__ == "__main__":
    main()
