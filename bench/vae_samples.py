"""Random samples, plain against variational, sampler by sampler: how many look like a digit.

Per seed, a small CNN digit classifier is trained on the bundled mnist-sample's training split with
its labels (no download). Then, per seed, the same design is trained twice for the same epochs through
``cae.training.train``: plain, and variational (``"variational": {"beta": B}``, for each ``--betas``). Each
decodes 256 random codes of every sampler of ``cae sample --sampler`` and the Latent Editor, by the
rule of ``cae.sampling``: "gmm", a 10-component Gaussian mixture with full covariances fitted to the
codes (a variational run's means) of its training images (at most 5,000; the app's default),
"gaussian", one Gaussian fitted to the same codes (their mean and covariance), and for a
variational run "prior", N(0, 1). The classifier labels every sample; printed per run: the
fraction labelled with confidence >= 0.9 for each sampler side by side (and for the rule before
issue 28, a Gaussian fitted to the test codes: 0.266 for plain classic), the spread of the gmm
samples' classes (entropy in bits, 3.32 for ten equal classes, and the count per class), the fit's
time, the test PSNR of the run's reconstructions, and references for the samples' fraction: the
reconstructions of the test digits (a ceiling: a sample is decoded by the same decoder); for a
variational run its posterior samples of 256 test digits (the codes its decoder is trained on: the
gap to its prior samples is how far they are from the prior); and, for both, the codes the decoder
is trained on (a plain run's codes, a variational run's posterior samples) of all test digits
shuffled value by value across the digits: each value keeps its distribution and loses its
dependence on the others, which is all that a sample drawn value by value (the prior, or a
diagonal Gaussian) lacks besides the shape of that distribution. The targets of issue 28: the
plain run's gmm samples no worse than its test-code Gaussian's, and at least 1.5x the variational
run's prior samples. ``--no-paths`` skips the interpolation below.

Interpolation (``interpolation_paths``): 9 decoded frames on the line between the codes (posterior
means for a variational run, as in the Latent Editor) of 256 pairs of test digits of different
classes, judged against the pixel crossfade of the path's two decoded ends. A classifier's
confidence alone cannot tell a plausible middle from a double exposure (a crossfade of a 3 and a
7 is often labelled "3" confidently), so the main measure is the distance to the nearest
training digit: the path's worst interior frame over its ends' (1.0: as near real digits as the
ends; the crossfade's ratio beside it), and how often the path stays nearer real digits than the
crossfade. Then the medians over the seeds and the ratios of the confident fractions. No
asserts. ``--spec`` benches the design of an architecture file
instead of a preset (its ``variational`` field is dropped: ``--betas`` and ``--warmup`` set it).

    .venv/bin/python bench/vae_samples.py [--preset keras-denoiser | --spec FILE.json]
        [--epochs 20] [--seeds 0 1 2] [--betas 1] [--warmup 10] [--samples 256] [--no-paths]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cae.evaluation import reconstruct  # noqa: E402
from cae.latent import (  # noqa: E402
    MAX_FIT_CODES,
    Decoder,
    decode_samples,
    draw_codes,
    encode,
    fit_density,
    interpolate,
    sample_codes,
)
from cae.pixels import as_float  # noqa: E402
from cae.recipe import DataRecipe, load_recipe  # noqa: E402
from cae.spec import ArchitectureSpec, SpecError, Variational, preset  # noqa: E402
from cae.training import TrainConfig, train  # noqa: E402

CONFIDENT = 0.9


def digit_classifier(x: np.ndarray, y: np.ndarray, epochs: int, seed: int):
    """A small CNN (two conv + pool stages, a dense softmax) trained on (x, y)."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input(x.shape[1:]),
            keras.layers.Conv2D(32, 3, activation="relu", padding="same"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, activation="relu", padding="same"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


def score(classifier, images: np.ndarray) -> dict[str, object]:
    """Confident fraction, entropy (bits) of the predicted classes, and their counts."""
    probs = np.asarray(classifier(images, training=False))
    labels = probs.argmax(axis=1)
    counts = np.bincount(labels, minlength=10)
    p = counts / counts.sum()
    entropy = 0.0 - sum(q * math.log2(q) for q in p if q > 0)  # 0.0, not -0.0, for one class
    return {
        "confident": float((probs.max(axis=1) >= CONFIDENT).mean()),
        "entropy": entropy,
        "counts": counts.tolist(),
    }


def correlated_samples(built, x_test: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` decoded codes drawn from the Gaussian fitted to the test codes (means for a
    variational run) with their correlations, by the plain runs' rule (``cae.latent.sample_codes``):
    for a variational run, how far that fit, rather than the prior, would take it."""
    codes = encode(built.encoder, x_test)
    drawn = sample_codes(
        count, codes.shape[1:], variational=False, codes=codes, rng=np.random.default_rng(seed)
    )
    return np.clip(Decoder(built.decoder)(drawn), 0.0, 1.0)


def sampler_samples(built, x_train: np.ndarray, count: int, seed: int) -> dict[str, object]:
    """``count`` decoded samples of each sampler of ``cae.latent.SAMPLERS`` by the app's rule
    (``cae.sampling``): "gmm" and "gaussian" fitted to the codes (a variational run's means) of
    up to ``MAX_FIT_CODES`` training images, "prior" N(0, 1) for a variational run; with the
    fits' seconds and words."""
    rng = np.random.default_rng(seed)
    if len(x_train) > MAX_FIT_CODES:
        x_train = x_train[np.sort(rng.choice(len(x_train), MAX_FIT_CODES, replace=False))]
    codes = encode(built.encoder, x_train)
    latent_shape = codes.shape[1:]
    out: dict[str, object] = {}
    for sampler in ("gmm", "gaussian", "prior"):
        if sampler == "prior" and not built.variational:
            continue
        started = time.perf_counter()
        density = None
        if sampler != "prior":
            density = fit_density(codes, sampler, seed=seed, source="training codes")
            out[f"{sampler}_words"] = density.describe()
        out[f"{sampler}_seconds"] = time.perf_counter() - started
        drawn = draw_codes(
            sampler,
            count,
            latent_shape,
            variational=built.variational,
            density=density,
            rng=np.random.default_rng(seed),
        )
        out[sampler] = decode_samples(built.decoder, drawn)
    return out


def training_codes(built, x_test: np.ndarray, seed: int) -> np.ndarray:
    """The codes of the test digits as the decoder meets them in training: a plain run's codes,
    a variational run's posterior samples ``mean + exp(log_var / 2) * eps``."""
    if not built.variational:
        return encode(built.encoder, x_test)
    mean, log_var = (np.asarray(part) for part in built.posterior(x_test, training=False))
    eps = np.random.default_rng(seed).standard_normal(mean.shape).astype(np.float32)
    return (mean + np.exp(0.5 * log_var) * eps).astype(np.float32)


def shuffled(codes: np.ndarray, seed: int) -> np.ndarray:
    """``codes`` with each value permuted across the images on its own: every value keeps its
    observed distribution exactly, and loses its dependence on the others (as in the prior)."""
    rng = np.random.default_rng(seed)
    flat = codes.reshape(len(codes), -1)
    out = np.stack([rng.permutation(flat[:, k]) for k in range(flat.shape[1])], axis=1)
    return out.reshape(codes.shape).astype(np.float32)


def fraction(value: float) -> str:
    """``0.123``, or ``-`` for a value a run does not have (NaN)."""
    return "-" if math.isnan(value) else f"{value:.3f}"


PATH_KEYS = (
    "path_ratio",
    "fade_ratio",
    "nearer",
    "midpoint_confident",
    "fade_confident",
    "midpoint_end_class",
)
PATH_FRAMES = 9  # frames of an interpolation path, ends included: the middle one is at t = 0.5


def nearest_real(images: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Each image's RMS pixel distance to its nearest neighbour among ``real`` (flattened)."""
    a = images.reshape(len(images), -1).astype(np.float64)
    b = real.reshape(len(real), -1).astype(np.float64)
    b_norms = (b**2).sum(1)
    out = np.empty(len(a))
    for start in range(0, len(a), 512):
        block = a[start : start + 512]
        squared = (block**2).sum(1)[:, None] + b_norms[None] - 2.0 * block @ b.T
        out[start : start + 512] = np.sqrt(np.maximum(squared.min(1), 0.0) / a.shape[1])
    return out


def interpolation_paths(
    built, data, x_train: np.ndarray, classifier, seed: int, pairs: int = 256
) -> dict[str, float]:
    """How plausible the Latent Editor's interpolation is between the codes (a variational
    run's posterior means) of ``pairs`` random pairs of test digits of different classes.

    A path is ``PATH_FRAMES`` decoded codes on the line between the two codes (ends included);
    its reference is the pixel crossfade of its two decoded ends over the same frames. An image
    is judged by how far it is from the nearest training digit (RMS pixel distance: a double
    exposure or a blob is far from every real digit), relative to the path's ends (so that a
    blurrier decoder is not penalised for its blur, only for what it adds in between).
    Returned, medians over the pairs unless said: ``path_ratio`` (the path's worst interior
    frame, distance / its ends' mean distance), ``fade_ratio`` (the same for the crossfade),
    ``nearer`` (the fraction of pairs whose worst frame is nearer a real digit than the
    crossfade's worst), and the classifier's verdict on the middle frames: the fraction
    labelled with confidence >= 0.9 (``midpoint_confident``; the crossfade's in
    ``fade_confident``) and the fraction labelled confidently as one of the two ends' classes
    (``midpoint_end_class``)."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(data.x_test), (2, pairs * 4))
    keep = data.y_test[a] != data.y_test[b]
    a, b = a[keep][:pairs], b[keep][:pairs]
    codes = encode(built.encoder, data.x_test)  # a variational run's encoder gives the mean
    decoder = Decoder(built.decoder)
    paths = np.stack(
        [
            np.clip(decoder(interpolate(codes[i], codes[j], PATH_FRAMES)), 0.0, 1.0)
            for i, j in zip(a, b)
        ]
    )  # (pairs, frames, H, W, C)
    t = np.linspace(0.0, 1.0, PATH_FRAMES).reshape(1, -1, 1, 1, 1)
    fades = (1.0 - t) * paths[:, :1] + t * paths[:, -1:]
    shape = paths.shape
    real = nearest_real(paths.reshape(-1, *shape[2:]), x_train).reshape(shape[:2])
    fade_real = nearest_real(fades[:, 1:-1].reshape(-1, *shape[2:]), x_train).reshape(shape[0], -1)
    ends = real[:, [0, -1]].mean(1)
    path_worst, fade_worst = real[:, 1:-1].max(1), fade_real.max(1)
    middle = PATH_FRAMES // 2
    probs = np.asarray(classifier(paths[:, middle], training=False))
    end_class = np.maximum(
        probs[np.arange(len(a)), data.y_test[a]], probs[np.arange(len(b)), data.y_test[b]]
    )
    return {
        "path_ratio": float(np.median(path_worst / ends)),
        "fade_ratio": float(np.median(fade_worst / ends)),
        "nearer": float((path_worst < fade_worst).mean()),
        "midpoint_confident": score(classifier, paths[:, middle])["confident"],
        "fade_confident": score(classifier, fades[:, middle])["confident"],
        "midpoint_end_class": float((end_class >= CONFIDENT).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    design = parser.add_mutually_exclusive_group()
    design.add_argument("--preset", default="keras-denoiser")
    design.add_argument(
        "--spec", type=Path, help="an architecture file (its variational field ignored)"
    )
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--betas", type=float, nargs="+", default=[1.0])
    parser.add_argument("--warmup", type=int, default=10, help="KL warm-up epochs")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--classifier-epochs", type=int, default=8)
    parser.add_argument(
        "--no-paths",
        dest="paths",
        action="store_false",
        help="skip the interpolation paths (the samplers only)",
    )
    args = parser.parse_args()
    try:
        if args.spec is not None:
            plain_spec = dataclasses.replace(
                ArchitectureSpec.from_json(args.spec.read_bytes()), variational=None
            )
        else:
            plain_spec = preset(args.preset)
    except (OSError, SpecError) as error:
        parser.error(str(error))

    import tensorflow as tf

    # Without it, threads add up in another order run to run: two classifiers trained with seed
    # 0 differed (test accuracy 0.968 vs 0.976), and so did their verdict on blurry digits.
    tf.config.experimental.enable_op_determinism()
    data = load_recipe(DataRecipe("mnist-sample", seed=0))
    assert data.y_train is not None and data.y_test is not None, "mnist-sample has labels"
    x_train, x_test = as_float(data.x_train), as_float(data.x_test)  # held as uint8
    specs = {"plain": plain_spec}
    for beta in args.betas:
        variational = Variational(beta, args.warmup)
        specs[f"beta {beta:g}"] = dataclasses.replace(plain_spec, variational=variational)
    rows: dict[str, list[dict[str, object]]] = {kind: [] for kind in specs}
    for seed in args.seeds:
        # a classifier per seed too, so that the medians cover its own variation
        started = time.perf_counter()
        classifier = digit_classifier(x_train, data.y_train, args.classifier_epochs, seed)
        accuracy = float(
            (np.asarray(classifier(x_test, training=False)).argmax(1) == data.y_test).mean()
        )
        print(
            f"seed {seed} classifier: {len(data.x_train):,} training digits, test accuracy "
            f"{accuracy:.3f}, {time.perf_counter() - started:.0f} s; on the test digits "
            f"themselves: {score(classifier, x_test)['confident']:.3f} confident",
            flush=True,
        )
        for kind, spec in specs.items():
            config = TrainConfig(epochs=args.epochs, batch_size=64, seed=seed, preview_count=0)
            result = train(spec, data, config)
            drawn = sampler_samples(result.built, x_train, args.samples, seed)
            recon = reconstruct(result.built.autoencoder, x_test)
            codes = training_codes(result.built, x_test, seed)
            decode = Decoder(result.built.decoder)
            gmm = score(classifier, drawn["gmm"])
            row = {
                **gmm,
                "gaussian_confident": score(classifier, drawn["gaussian"])["confident"],
                "prior_confident": (
                    score(classifier, drawn["prior"])["confident"] if "prior" in drawn else math.nan
                ),
                "gmm_seconds": drawn["gmm_seconds"],
                "psnr": result.test_metrics["psnr"],
                "recon_confident": score(classifier, recon)["confident"],
                "correlated_confident": score(
                    classifier, correlated_samples(result.built, x_test, args.samples, seed)
                )["confident"],
                "posterior_confident": (
                    score(classifier, np.clip(decode(codes[: args.samples]), 0.0, 1.0))["confident"]
                    if result.built.variational
                    else math.nan
                ),
                "shuffled_confident": score(
                    classifier, np.clip(decode(shuffled(codes, seed)[: args.samples]), 0.0, 1.0)
                )["confident"],
                **(
                    interpolation_paths(result.built, data, x_train, classifier, seed)
                    if args.paths
                    else dict.fromkeys(PATH_KEYS, math.nan)
                ),
            }
            rows[kind].append(row)
            print(
                f"seed {seed} {kind:<8} samples confident: gmm {row['confident']:.3f} (entropy "
                f"{row['entropy']:.2f} bits, classes {row['counts']}; {drawn['gmm_words']}), "
                f"gaussian {row['gaussian_confident']:.3f}, prior "
                f"{fraction(row['prior_confident'])}, test-code Gaussian (the rule before) "
                f"{row['correlated_confident']:.3f}; test PSNR {row['psnr']:.2f} dB; confident: "
                f"reconstructions {row['recon_confident']:.3f}, posterior samples "
                f"{fraction(row['posterior_confident'])}, the same codes value by value "
                f"shuffled {row['shuffled_confident']:.3f}; interpolation: worst frame / ends "
                f"{fraction(row['path_ratio'])} (crossfade {fraction(row['fade_ratio'])}, nearer "
                f"a real digit than it in {fraction(row['nearer'])}), middle frame confident "
                f"{fraction(row['midpoint_confident'])} (crossfade "
                f"{fraction(row['fade_confident'])}), as an end's class "
                f"{fraction(row['midpoint_end_class'])}; {result.wall_seconds:.0f} s",
                flush=True,
            )
    keys = [key for key in rows["plain"][0] if key != "counts"]
    medians = {
        kind: {key: statistics.median(r[key] for r in runs) for key in keys}
        for kind, runs in rows.items()
    }
    print(
        f"\nmedians over seeds {args.seeds}, {plain_spec.name}, {args.epochs} epochs, KL warm-up "
        f"{args.warmup} epochs:"
    )
    for kind, m in medians.items():
        print(
            f"  {kind:<8} samples confident: gmm {m['confident']:.3f} (entropy "
            f"{m['entropy']:.2f} bits; fit {m['gmm_seconds']:.1f} s), gaussian "
            f"{m['gaussian_confident']:.3f}, prior {fraction(m['prior_confident'])}, test-code "
            f"Gaussian {m['correlated_confident']:.3f}; test PSNR {m['psnr']:.2f} dB; "
            f"confident: reconstructions {m['recon_confident']:.3f}, posterior samples "
            f"{fraction(m['posterior_confident'])}, shuffled {m['shuffled_confident']:.3f}\n"
            f"  {'':<8} interpolation: worst frame / ends {fraction(m['path_ratio'])} (crossfade "
            f"{fraction(m['fade_ratio'])}), nearer a real digit than the crossfade in "
            f"{fraction(m['nearer'])}; middle frame {fraction(m['midpoint_confident'])} confident "
            f"(crossfade {fraction(m['fade_confident'])}), "
            f"{fraction(m['midpoint_end_class'])} as an end's class"
        )
    plain = medians["plain"]
    print(
        f"  plain gmm / plain test-code Gaussian (target >= 1): "
        f"{ratio_text(plain['confident'], plain['correlated_confident'])} (per seed: "
        f"{per_seed(rows['plain'], rows['plain'], 'confident', 'correlated_confident')})"
    )
    for kind in list(specs)[1:]:
        vae = medians[kind]
        print(
            f"  plain gmm / {kind} prior (target >= 1.5): "
            f"{ratio_text(plain['confident'], vae['prior_confident'])} (per seed: "
            f"{per_seed(rows['plain'], rows[kind], 'confident', 'prior_confident')}); {kind} "
            f"gmm / its prior: {ratio_text(vae['confident'], vae['prior_confident'])}; "
            f"{kind} prior / plain gmm: {ratio_text(vae['prior_confident'], plain['confident'])}"
            f" (the old target, >= 2); PSNR given up: {plain['psnr'] - vae['psnr']:.2f} dB"
        )


def ratio_text(a: float, b: float) -> str:
    """``a / b`` as ``1.23x``."""
    if math.isnan(a) or math.isnan(b):
        return "-"
    if not b:
        return "unbounded" if a else "-"
    return f"{a / b:.2f}x"


def per_seed(rows_a: list[dict], rows_b: list[dict], key_a: str, key_b: str) -> str:
    """The per-seed ratios of ``key_a`` in ``rows_a`` over ``key_b`` in ``rows_b``."""
    return ", ".join(ratio_text(a[key_a], b[key_b]) for a, b in zip(rows_a, rows_b, strict=True))


if __name__ == "__main__":
    main()
