"""TensorFlow 2.21's oneDNN CPU kernels and convolutions 1 tap wide along a strided axis (issue 25).

``crashes`` (default): which Conv2D / Conv2DTranspose layers (1x1, 1x3, 3x1; strides 2 and 3;
28, 32 and 64 pixels; 4 channels in, 8 filters, batch 16) crash a process, for a training epoch
(``fit``) and for a forward pass (``predict``). Each case runs in its own process, forked from this
one after it imported TensorFlow and ran no operation (as ``cae.zygote`` forks the job workers);
run it again under ``TF_ENABLE_ONEDNN_OPTS=0`` to see the same cases with oneDNN off.

``speed DESIGN``: seconds per epoch with oneDNN on vs off, rounds alternating which goes first,
each a fresh process that trains one warm-up epoch and times 3 (their median); the medians over
rounds and their ratio. ``classic`` is the preset on 4,096 random 28x28 images; ``strided`` a 64x64
design with 1x1 convolutions strided by 2 (two Conv2D, one Conv2DTranspose) on 2,048 images,
which oneDNN may crash: its "on" side is the same layers built as route 2 of the issue would
(a 1x1 max pooling with strides, then the unstrided convolution; for the transposed one a 1x1
convolution, then zeros inserted by an up-sampling and a mask, its bias left out).

``slice``: that a slice ``x[:, ::s_h, ::s_w]`` and a 1x1 max pooling with strides, followed by the
unstrided convolution with the same weights, equal the strided convolution, and that a transposed
1x1 convolution equals a 1x1 convolution, zeros inserted between its rows and columns, then the
bias; printed: the largest absolute differences.

    .venv/bin/python bench/onednn.py [crashes | speed classic|strided [--rounds 3] | slice]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def crash_case(kind: str, kernel: tuple[int, int], strides: int, size: int, mode: str) -> None:
    """Build one layer and run it: a forward pass, or one training epoch."""
    import keras
    import numpy as np

    layer = keras.layers.Conv2D if kind == "conv" else keras.layers.Conv2DTranspose
    x = keras.Input((size, size, 4))
    model = keras.Model(x, layer(8, kernel, strides=strides, padding="same")(x))
    images = np.random.default_rng(0).random((16, size, size, 4), dtype=np.float32)
    target = model.predict(images, verbose=0)
    if mode == "fit":
        model.compile("adam", "mse")
        model.fit(images, target, epochs=1, batch_size=16, verbose=0)


def crashes() -> None:
    """Every case in a forked child; its exit status."""
    import keras  # noqa: F401 - imported before the forks, no operation run

    cases = itertools.product(
        ("conv", "deconv"), ((1, 1), (1, 3), (3, 1)), (2, 3), (28, 32, 64), ("predict", "fit")
    )
    failed = 0
    for kind, kernel, strides, size, mode in cases:
        pid = os.fork()
        if pid == 0:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            try:
                crash_case(kind, kernel, strides, size, mode)
                os._exit(0)
            except BaseException:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        failed += code != 0
        label = f"{kind} {kernel[0]}x{kernel[1]} strides {strides} {size}px {mode}"
        print(f"{label:40s} {'ok' if code == 0 else f'CRASHED, exit {code}'}", flush=True)
    setting = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset (on)")
    print(f"TF_ENABLE_ONEDNN_OPTS={setting}: {failed} of 72 cases failed")


def speed_model(design: str):  # noqa: ANN201 - a keras.Model, imported lazily
    """The model and its image side and count for ``speed``."""
    import keras
    import numpy as np

    layers = keras.layers
    if design == "classic":
        from cae.builder import build
        from cae.spec import preset

        return build(preset("classic")).autoencoder, 28, 4096
    x = keras.Input((64, 64, 1))
    h = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    if design == "strided":
        h = layers.Conv2D(16, 1, strides=2, padding="same", activation="relu")(h)
        h = layers.Conv2D(8, 3, padding="same", activation="relu")(h)
        h = layers.Conv2D(8, 1, strides=2, padding="same", activation="relu")(h)
        h = layers.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu")(h)
        h = layers.Conv2DTranspose(16, 1, strides=2, padding="same", activation="relu")(h)
    else:  # "sliced": the same computation, with no strided 1-tap layer
        h = layers.MaxPooling2D(1, 2, padding="same")(h)
        h = layers.Conv2D(16, 1, padding="same", activation="relu")(h)
        h = layers.Conv2D(8, 3, padding="same", activation="relu")(h)
        h = layers.MaxPooling2D(1, 2, padding="same")(h)
        h = layers.Conv2D(8, 1, padding="same", activation="relu")(h)
        h = layers.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu")(h)
        h = layers.Conv2D(16, 1, padding="same", use_bias=False)(h)
        h = layers.UpSampling2D(2)(h)
        mask = np.zeros((1, 64, 64, 1), np.float32)
        mask[:, ::2, ::2] = 1
        h = layers.Multiply()([h, keras.ops.convert_to_tensor(mask) * keras.ops.ones_like(h)])
        h = layers.Activation("relu")(h)  # the transposed layer's bias left out: one add
    y = layers.Conv2D(1, 3, padding="same", activation="sigmoid")(h)
    return keras.Model(x, y), 64, 2048


def speed_one(design: str) -> None:
    """One round's side: a warm-up epoch, then the median seconds of 3 timed epochs, as JSON."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    model, size, count = speed_model(design)
    model.compile("adam", "mse")
    images = np.random.default_rng(0).random((count, size, size, 1), dtype=np.float32)
    model.fit(images, images, batch_size=64, epochs=1, verbose=0)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        model.fit(images, images, batch_size=64, epochs=1, verbose=0)
        times.append(time.perf_counter() - start)
    print(json.dumps(statistics.median(times)))


def speed(design: str, rounds: int) -> None:
    """Alternating rounds of oneDNN on and off, each a fresh process; medians and their ratio."""
    sides = {"on": design, "off": design}
    if design == "strided":  # oneDNN may crash on it: "on" trains the sliced equivalent
        sides["on"] = "sliced"
    seen: dict[str, list[float]] = {"on": [], "off": []}
    for round_ in range(rounds):
        for mode in ("on", "off") if round_ % 2 == 0 else ("off", "on"):
            env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
            if mode == "off":
                env["TF_ENABLE_ONEDNN_OPTS"] = "0"
            argv = [sys.executable, __file__, "speed-one", sides[mode]]
            done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
            seen[mode].append(float(done.stdout.strip().splitlines()[-1]))
            load = os.getloadavg()[0]
            print(f"round {round_ + 1} {mode:3s} ({sides[mode]}): {seen[mode][-1]:.2f} s/epoch, "
                  f"load {load:.1f}", flush=True)  # fmt: skip
    on, off = statistics.median(seen["on"]), statistics.median(seen["off"])
    print(f"{design}: oneDNN on {on:.2f} s/epoch, off {off:.2f} s/epoch (medians of {rounds}), "
          f"off / on {off / on:.2f}")  # fmt: skip


def slice_check() -> None:
    """Largest differences between the strided layers and their sliced equivalents."""
    import keras
    import numpy as np

    layers = keras.layers
    rng = np.random.default_rng(0)
    worst = 0.0
    kernels, strides_ = ((1, 1), (1, 3), (3, 1), (1, 5)), ((2, 2), (3, 3), (2, 1), (1, 3))
    for kernel, strides, padding, size in itertools.product(
        kernels, strides_, ("same", "valid"), (28, 32, 33, 64)
    ):
        axes = [a for a in (0, 1) if kernel[a] == 1 and strides[a] > 1]
        if not axes:
            continue
        x = rng.random((4, size, size + 3, 5), dtype=np.float32)
        conv = layers.Conv2D(7, kernel, strides=strides, padding=padding)
        strided = np.asarray(conv(x))
        apart = tuple(strides[a] if a in axes else 1 for a in (0, 1))
        kept = tuple(1 if a in axes else strides[a] for a in (0, 1))
        plain = layers.Conv2D(7, kernel, strides=kept, padding=padding)
        sliced_input = x[:, :: apart[0], :: apart[1]]
        plain.build(sliced_input.shape)
        plain.set_weights(conv.get_weights())
        pooled_input = layers.MaxPooling2D(1, apart, padding=padding)(x)
        for other in (np.asarray(plain(sliced_input)), np.asarray(plain(pooled_input))):
            assert other.shape == strided.shape, (kernel, strides, padding, size)
            worst = max(worst, float(np.abs(other - strided).max()))
    print(f"Conv2D: a slice or a 1x1 max pooling, then unstrided: largest difference {worst}")
    worst = 0.0
    for strides, padding, size in itertools.product(((2, 2), (3, 3), (2, 1)), ("same", "valid"),
                                                     (7, 14, 32)):  # fmt: skip
        x = rng.random((3, size, size, 4), dtype=np.float32)
        deconv = layers.Conv2DTranspose(6, 1, strides=strides, padding=padding)
        reference = np.asarray(deconv(x))
        kernel, bias = deconv.get_weights()  # kernel (1, 1, filters, channels)
        y = np.einsum("bhwc,oc->bhwo", x, kernel[0, 0])
        out = np.zeros((3, size * strides[0], size * strides[1], 6), np.float32)
        out[:, :: strides[0], :: strides[1]] = y
        out += bias
        assert out.shape == reference.shape, (strides, padding, size)
        worst = max(worst, float(np.abs(out - reference).max()))
    print(f"Conv2DTranspose 1x1: unstrided, zeros inserted, bias: largest difference {worst}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", nargs="?", default="crashes",
                        choices=["crashes", "speed", "speed-one", "slice"])  # fmt: skip
    parser.add_argument("design", nargs="?", default="classic")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.what == "crashes":
        crashes()
    elif args.what == "speed":
        speed(args.design, args.rounds)
    elif args.what == "speed-one":
        speed_one(args.design)
    else:
        slice_check()


if __name__ == "__main__":
    main()
