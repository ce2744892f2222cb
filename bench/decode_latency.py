"""Decode latency of one latent code: ``cae.latent.Decoder`` against Keras ``predict`` and a direct call.

The latent editor redraws the decoded image on every stroke, so one decode must be fast. This builds
the classic network (untrained weights are fine: the cost does not depend on them), warms all three
paths up, then decodes the same 7x7x1 code 200 times per path, interleaved round-robin in this one
process so that machine noise hits each path alike, and prints p50/p95 in milliseconds and the ratios.
Target: the compiled Decoder's p50 at most 5 ms. Figures only, no assertions.

Run: ``.venv/bin/python bench/decode_latency.py [--repeats 200]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

TARGET_P50_MS = 5.0


def main(argv: list[str] | None = None) -> int:
    """Measure and print the three decode paths."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200, help="decodes per path (default 200)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed decodes per path first")
    args = parser.parse_args(argv)

    from cae.builder import build
    from cae.latent import make_decoder
    from cae.spec import preset

    built = build(preset("classic"))
    decoder_model = built.decoder
    fast = make_decoder(decoder_model)
    z = np.random.default_rng(0).random(fast.latent_shape).astype(np.float32)
    batch = z[None]

    paths = {
        "cae Decoder": lambda: fast(z),
        "decoder(z)": lambda: decoder_model(batch, training=False).numpy()[0],
        "decoder.predict": lambda: decoder_model.predict(batch, verbose=0)[0],
    }
    reference = paths["decoder(z)"]()
    for label, run in paths.items():
        for _ in range(args.warmup):
            out = run()
        error = float(np.max(np.abs(out - reference)))
        print(f"warm-up {label:<16} max |diff| vs decoder(z) = {error:.2e}")

    times: dict[str, list[float]] = {label: [] for label in paths}
    for _ in range(args.repeats):
        for label, run in paths.items():
            start = time.perf_counter()
            run()
            times[label].append((time.perf_counter() - start) * 1e3)

    print(f"\none {fast.latent_shape} code, {args.repeats} decodes per path, interleaved")
    print(f"{'path':<16} {'p50 ms':>8} {'p95 ms':>8}")
    p50 = {}
    for label, values in times.items():
        p50[label] = float(np.percentile(values, 50))
        print(f"{label:<16} {p50[label]:8.3f} {float(np.percentile(values, 95)):8.3f}")
    ours = p50["cae Decoder"]
    print(f"\ndecoder(z) / cae Decoder p50      = {p50['decoder(z)'] / ours:6.1f}x")
    print(f"decoder.predict / cae Decoder p50 = {p50['decoder.predict'] / ours:6.1f}x")
    verdict = "meets" if ours <= TARGET_P50_MS else "MISSES"
    print(f"cae Decoder p50 {ours:.3f} ms {verdict} the target of <= {TARGET_P50_MS:g} ms")
    print(f"retraces: tracing count {fast.tracing_count} (1 = traced once)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
