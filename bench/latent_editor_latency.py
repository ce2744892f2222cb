"""Latent editor latency in a real browser: mouse-up on the latent canvas to the new decoded image
on screen, against a bare page that only holds a canvas and an image, measured in the same run.

Trains a small classic run (mnist-sample, a few epochs) into a temporary ``CAE_MODELS_DIR``, serves
the app with ``tests.browser.serve_app``, opens the Latent Editor in Debian's Chromium (Playwright),
switches the brush to ``add`` (so every stroke changes the code) and paints ``--strokes`` strokes
on ``canvas.upper-canvas``. Each stroke is timed in the browser: from the ``mouseup`` event to the
first animation frame in which the decoded ``<img>`` has a new ``src`` and has loaded. The bare page
(a Streamlit script written to a temporary file: a canvas in a fragment that re-renders an image on
each stroke) is timed the same way. Also times ``cae.latent.Decoder`` alone.

Targets: editor p50 <= 500 ms and <= 1.5x the bare page; decode p50 <= 5 ms. Figures only.

Run: ``.venv/bin/python bench/latent_editor_latency.py [--strokes 12]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

TARGET_P50_S = 0.5
TARGET_RATIO = 1.5
TARGET_DECODE_MS = 5.0
IMG = ".st-key-le_decoded img"

BARE_APP = textwrap.dedent(
    """
    import numpy as np
    import streamlit as st
    from PIL import Image
    from streamlit_drawable_canvas import st_canvas

    st.session_state.setdefault("n", 0)

    def stroke():
        st.session_state.n += 1

    @st.fragment
    def body():
        cols = st.columns(2)
        with cols[0]:
            st_canvas(stroke_width=24, stroke_color="#ffffff", background_color="#000000",
                      height=280, width=280, drawing_mode="freedraw", return_image_data=True,
                      key="bare_canvas", on_change=stroke)
        with cols[1], st.container(key="le_decoded"):
            rng = np.random.default_rng(st.session_state.n)
            pixels = (rng.random((28, 28)) * 255).astype(np.uint8)
            st.image(Image.fromarray(pixels).resize((280, 280), Image.NEAREST), width=280)

    body()
    """
)

# Installed before each stroke: remembers the mouse-up (pointerup) time, then watches every animation frame
# for the decoded image to have a new src and be loaded.
ARM_JS = """
([sel]) => {
  const img = document.querySelector(sel);
  window.__le = {old: img ? img.src : null, up: null, shown: null};
  window.addEventListener('pointerup', () => { window.__le.up = performance.now(); },
                          {capture: true, once: true});
  const tick = () => {
    const now = document.querySelector(sel);
    if (window.__le.up !== null && now && now.src !== window.__le.old && now.complete
        && now.naturalWidth > 0) {
      window.__le.shown = performance.now();
      return;
    }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}
"""


def p50(values: list[float]) -> float:
    """The median."""
    return statistics.median(values)


def time_strokes(page, strokes: int, rows: list[int], cell: int) -> list[float]:
    """Seconds from mouse-up to the new image on screen, one per stroke."""
    from tests.browser import canvas_locator, wait_for_app_idle

    canvas = canvas_locator(page)
    times = []
    for i in range(strokes):
        wait_for_app_idle(page, 30_000, quiet_ms=300)
        page.evaluate(ARM_JS, [IMG])
        box = canvas_locator(page).bounding_box() if i else canvas.bounding_box()
        y = box["y"] + rows[i % len(rows)] * cell + cell / 2
        page.mouse.move(box["x"] + cell * 1.5, y)
        page.mouse.down()
        page.mouse.move(box["x"] + cell * 5.5, y, steps=8)
        page.mouse.up()
        page.wait_for_function("() => window.__le.shown !== null", timeout=30_000, polling=20)
        up, shown = page.evaluate("() => [window.__le.up, window.__le.shown]")
        times.append((shown - up) / 1000)
    return times


def decode_p50_ms(root: Path, repeats: int = 200) -> float:
    """p50 of one compiled decode of the trained run, in ms."""
    from cae.latent import make_decoder
    from cae.store import list_runs, load_run

    run = load_run(list_runs(root)[0].run_id, root=root)
    decoder = make_decoder(run.built.decoder)
    z = np.random.default_rng(0).random(decoder.latent_shape).astype(np.float32)
    for _ in range(10):
        decoder(z)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        decoder(z)
        samples.append((time.perf_counter() - start) * 1000)
    return p50(samples)


def main(argv: list[str] | None = None) -> int:
    """Train, serve, paint, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strokes", type=int, default=12, help="strokes per page (default 12)")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs (default 2)")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from tests.browser import launch_chromium, serve_app, wait_for_app_idle
    from tests.runs import make_trained_run

    with tempfile.TemporaryDirectory(prefix="le-bench-") as tmp:
        root = Path(tmp) / "models"
        root.mkdir()
        started = time.perf_counter()
        make_trained_run(root, epochs=args.epochs, limit=1000)
        print(f"trained a classic run in {time.perf_counter() - started:.1f} s")
        bare_path = Path(tmp) / "bare_canvas_app.py"
        bare_path.write_text(BARE_APP)
        decode_ms = decode_p50_ms(root)

        with sync_playwright() as playwright, launch_chromium(playwright) as browser:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            with serve_app("app.py", env={"CAE_MODELS_DIR": str(root)}) as url:
                page.goto(f"{url}/Latent_Editor")
                page.locator(IMG).wait_for(timeout=120_000)
                wait_for_app_idle(page, 60_000, quiet_ms=500)
                page.locator(".st-key-le_mode label").filter(has_text="add").click()
                wait_for_app_idle(page, 30_000, quiet_ms=500)
                editor = time_strokes(page, args.strokes, [1, 3, 5, 2, 4, 6, 0], 40)
            page.close()
            page = context.new_page()
            with serve_app(bare_path, env={"CAE_MODELS_DIR": str(root)}) as url:
                page.goto(url)
                page.locator(IMG).wait_for(timeout=60_000)
                wait_for_app_idle(page, 60_000, quiet_ms=500)
                bare = time_strokes(page, args.strokes, [1, 3, 5, 2, 4, 6, 0], 40)
            context.close()

    editor_p50, bare_p50 = p50(editor), p50(bare)
    ratio = editor_p50 / bare_p50
    print(f"strokes per page: {args.strokes}")
    print(
        "latent editor, mouse-up to new decoded image (s): " + ", ".join(f"{t:.3f}" for t in editor)
    )
    print(
        "bare canvas page, mouse-up to new image (s):      " + ", ".join(f"{t:.3f}" for t in bare)
    )
    print(f"latent editor p50: {editor_p50 * 1000:.0f} ms (target <= {TARGET_P50_S * 1000:.0f} ms)")
    print(f"bare page p50:     {bare_p50 * 1000:.0f} ms")
    print(f"ratio editor/bare: {ratio:.2f}x (target <= {TARGET_RATIO}x)")
    print(
        f"decode p50 (cae.latent.Decoder alone): {decode_ms:.2f} ms (target <= {TARGET_DECODE_MS} ms)"
    )
    ok = editor_p50 <= TARGET_P50_S and ratio <= TARGET_RATIO and decode_ms <= TARGET_DECODE_MS
    print("targets met" if ok else "targets NOT met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
