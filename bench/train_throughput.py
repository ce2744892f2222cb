"""Training throughput: cae.training.train (with a progress sink) against a bare keras Model.fit.

Same model (a preset), same images, same batch size, in one process, interleaved after a warm-up.
Steady-state speed: images per second over epochs 2..N (epoch 1 holds the tracing), timed at epoch
ends only, in wall time and per CPU-second of the process (the second shrugs off other programs
competing for the cores, which on a shared 2-core machine swing wall time by +-20%). The cae side reports progress to a sink that copies each snapshot under a lock, as the
Streamlit job does. Prints each round, the medians, their ratio and the median of per-round ratios (target >= 1.0). No asserts.

    .venv/bin/python bench/train_throughput.py [--preset classic] [--images 4500] [--batch-size 64]
        [--epochs 4] [--rounds 7] [--precision float32|mixed_float16]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cae.data import Dataset  # noqa: E402
from cae.datasets import load_dataset  # noqa: E402
from cae.progress import Progress  # noqa: E402
from cae.spec import preset  # noqa: E402
from cae.training import TrainConfig, train  # noqa: E402


def _rates(ends: list[tuple[float, float]], images: int) -> tuple[float, float]:
    """(images per wall second, images per CPU second of this process) between the first and
    the last epoch end."""
    (wall0, cpu0), (wall1, cpu1) = ends[0], ends[-1]
    return images / (wall1 - wall0), images / (cpu1 - cpu0)


def _now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def run_cae(
    spec, data: Dataset, epochs: int, batch_size: int, precision: str = "float32"
) -> tuple[float, float, int]:
    """Images/s (wall, CPU) of cae.training.train over epochs 2..N, and the progress reports."""
    lock = threading.Lock()
    latest: list[Progress] = []
    ends: list[tuple[float, float]] = []

    def sink(progress: Progress) -> None:
        if progress.message.startswith("Epoch "):
            ends.append(_now())
        snapshot = progress.copy()
        with lock:
            latest[:] = [snapshot]

    config = TrainConfig(
        epochs=epochs, batch_size=batch_size, validation_split=0.0, seed=1, precision=precision
    )
    reports = [0]

    def counted(progress: Progress) -> None:
        reports[0] += 1
        sink(progress)

    train(spec, data, config, progress=counted)
    return (*_rates(ends, data.num_train * (epochs - 1)), reports[0])


def run_bare(
    spec, data: Dataset, epochs: int, batch_size: int, precision: str = "float32"
) -> tuple[float, float]:
    """Images/s (wall, CPU) of a bare Model.fit over epochs 2..N (an epoch-end-only timer), on
    the images as float32 in [0, 1] (made once, before the clock starts, as a Keras user does)."""
    import keras

    from cae.builder import build
    from cae.pixels import as_float

    x = as_float(data.x_train)

    keras.utils.set_random_seed(1)
    model = build(spec, precision=precision).autoencoder
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.BinaryCrossentropy())
    ends: list[tuple[float, float]] = []
    timer = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: ends.append(_now()))
    model.fit(
        x,
        x,
        batch_size=batch_size,
        epochs=epochs,
        shuffle=True,
        verbose=0,
        callbacks=[timer],
    )
    return _rates(ends, data.num_train * (epochs - 1))


def main() -> None:
    """Warm up, then alternate cae and bare rounds; print the medians and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="classic")
    parser.add_argument("--images", type=int, default=4500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--precision", default="float32", choices=("float32", "mixed_float16"))
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error(f"--epochs must be at least 2: epoch 1 is not timed. Received: {args.epochs}")
    spec = preset(args.preset)
    full = load_dataset("mnist-sample", seed=0)
    data = Dataset("bench", full.x_train[: args.images], None, full.x_test[:500], None)
    print(
        f"{args.preset}: {data.num_train} images, batch {args.batch_size}, "
        f"epochs 2..{args.epochs} timed, {args.rounds} rounds after a warm-up"
    )
    import tensorflow as tf

    devices = [d.name for d in tf.config.list_logical_devices() if d.device_type != "CPU"]
    print(f"devices: {', '.join(devices) or 'CPU only'}; precision {args.precision}")
    run_cae(spec, data, 2, args.batch_size, args.precision)
    run_bare(spec, data, 2, args.batch_size, args.precision)
    ours: list[tuple[float, float]] = []
    bare: list[tuple[float, float]] = []
    for index in range(args.rounds):
        first_cae = index % 2 == 0  # alternate which goes first
        for which in ("cae", "bare") if first_cae else ("bare", "cae"):
            if which == "cae":
                wall, cpu, reports = run_cae(
                    spec, data, args.epochs, args.batch_size, args.precision
                )
                ours.append((wall, cpu))
                print(
                    f"round {index + 1} cae : {wall:8,.0f} images/s  {cpu:8,.0f} images/CPU-s"
                    f"  ({reports} progress reports)"
                )
            else:
                wall, cpu = run_bare(spec, data, args.epochs, args.batch_size, args.precision)
                bare.append((wall, cpu))
                print(f"round {index + 1} bare: {wall:8,.0f} images/s  {cpu:8,.0f} images/CPU-s")
    for label, column in (("images/s", 0), ("images/CPU-s", 1)):
        m_ours = statistics.median(r[column] for r in ours)
        m_bare = statistics.median(r[column] for r in bare)
        paired = statistics.median(a[column] / b[column] for a, b in zip(ours, bare))
        print(
            f"{label:>12}: median cae {m_ours:,.0f}, bare {m_bare:,.0f}, ratio {m_ours / m_bare:.3f}"
            f" (target >= 1.0); median of per-round ratios {paired:.3f}"
        )


if __name__ == "__main__":
    main()
