"""Denoisers against a plain run: same design, data, epochs and seed, scored on corrupted inputs.

Trains one plain run and one denoising run per corruption kind of ``cae.corruption.CORRUPTIONS``
(each at its default strength), then scores every run on every kind's corrupted test images
(``cae.evaluation.evaluate_corrupted``, the same images for every run) and prints the output PSNR
and SSIM, the corrupted input's own PSNR, and each denoiser's PSNR gain over the plain run (the
baseline, trained in this same process). Nothing is saved.

    python bench/denoising.py --preset classic --epochs 10
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="classic")
    parser.add_argument("--dataset", default="mnist-sample")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from cae.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    from cae.corruption import CORRUPTIONS, Corruption
    from cae.evaluation import evaluate_corrupted, evaluate_run
    from cae.recipe import DataRecipe, load_recipe
    from cae.spec import preset
    from cae.training import TrainConfig, train

    data = load_recipe(DataRecipe(dataset=args.dataset, limit=args.limit, seed=args.seed))
    spec = preset(args.preset)
    corruptions = [Corruption(kind.name, kind.default) for kind in CORRUPTIONS]
    print(
        f"{args.preset} on {args.dataset}: {data.num_train:,} train / {data.num_test:,} test "
        f"images, {args.epochs} epochs, seed {args.seed}"
    )
    runs = [("plain", None), *((c.kind, c) for c in corruptions)]
    scores, clean = {}, {}
    for name, corruption in runs:
        config = TrainConfig(
            epochs=args.epochs,
            seed=args.seed,
            preview_count=0,
            **(corruption.to_dict() if corruption else {}),
        )
        started = time.perf_counter()
        result = train(spec, data, config)
        seconds = time.perf_counter() - started
        clean[name] = evaluate_run(result.built, data.x_test)["psnr"]
        scores[name] = {
            c.kind: evaluate_corrupted(result.built, data.x_test, c) for c in corruptions
        }
        print(f"  trained {name:<12} {seconds:6.1f} s, clean test PSNR {clean[name]:.2f} dB")

    header = f"{'scored on':<42}{'input':>8}" + "".join(f"{name:>13}" for name, _ in runs)
    print(
        "\nPSNR (dB) of the outputs from corrupted test inputs (input: the corrupted input's own)"
    )
    print(header)
    for c in corruptions:
        row = f"{c.describe():<42}{scores['plain'][c.kind]['corrupted_psnr']:>8.2f}"
        row += "".join(f"{scores[name][c.kind]['denoise_psnr']:>13.2f}" for name, _ in runs)
        print(row)
    print(f"{'clean inputs':<42}{'':>8}" + "".join(f"{clean[name]:>13.2f}" for name, _ in runs))
    print("\nSSIM of the outputs from corrupted test inputs")
    print(header)
    for c in corruptions:
        row = f"{c.describe():<42}{scores['plain'][c.kind]['corrupted_ssim']:>8.3f}"
        row += "".join(f"{scores[name][c.kind]['denoise_ssim']:>13.3f}" for name, _ in runs)
        print(row)
    print("\nEach denoiser on its own corruption against the plain run (baseline, same process):")
    for c in corruptions:
        own = scores[c.kind][c.kind]["denoise_psnr"]
        base = scores["plain"][c.kind]["denoise_psnr"]
        print(f"  {c.describe():<42} {own:6.2f} vs {base:6.2f} dB: {own - base:+.2f} dB")


if __name__ == "__main__":
    main()
