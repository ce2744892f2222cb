"""The real-browser harness itself: a tiny Streamlit script in Chromium, a click and a stroke."""

from __future__ import annotations

import json
import textwrap

import pytest

from tests.browser import (
    CANVAS_SELECTOR,
    draw_stroke,
    expect_rerun,
    open_app,
    screenshot,
    serve_app,
    watch_runs,
)

pytestmark = pytest.mark.browser

DEMO = textwrap.dedent(
    """
    import json

    import numpy as np
    import streamlit as st
    from streamlit_drawable_canvas import st_canvas

    st.session_state.setdefault("count", 0)
    if st.button("Increment", key="inc"):
        st.session_state.count += 1
    with st.container(key="counter"):
        st.text(f"count={st.session_state.count}")

    result = st_canvas(
        stroke_width=20,
        stroke_color="#ffffff",
        background_color="#000000",
        drawing_mode="freedraw",
        width=280,
        height=280,
        return_image_data=True,
        key="canvas",
    )
    info = {"image": None}
    if result.image_data is not None:
        img = np.asarray(result.image_data)
        painted = img[..., :3].max(axis=-1) > 127  # background_color: alpha is 255 everywhere
        ys, xs = np.nonzero(painted)
        info = {
            "image": list(img.shape),
            "alpha_min": int(img[..., 3].min()),
            "painted": int(painted.sum()),
            "bbox": [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())] if len(xs) else None,
            "objects": len((result.json_data or {}).get("objects", [])),
        }
    with st.container(key="canvas_info"):
        st.text("info=" + json.dumps(info))
    """
)


def _info(page) -> dict:
    text = page.locator(".st-key-canvas_info").inner_text().strip()
    assert text.startswith("info="), text
    return json.loads(text.removeprefix("info="))


def test_click_and_canvas_stroke_reach_the_script(page, tmp_path):
    (tmp_path / "demo.py").write_text(DEMO)
    with serve_app("demo.py", cwd=tmp_path) as url:
        open_app(page, url)
        counter = page.locator(".st-key-counter")
        assert counter.inner_text().strip() == "count=0"
        assert _info(page) == {"image": None}
        screenshot(page, "harness-loaded")

        # A button click reruns the script.
        with expect_rerun(page):
            page.locator(".st-key-inc button").click()
        assert counter.inner_text().strip() == "count=1"

        # The canvas renders in a shadow root of the main document, not in an iframe.
        canvas = page.locator(CANVAS_SELECTOR)
        assert canvas.count() == 1
        assert page.locator("iframe").count() == 0
        assert canvas.evaluate("el => el.getRootNode() instanceof ShadowRoot")
        box = canvas.bounding_box()
        assert box is not None and (box["width"], box["height"]) == (280, 280)

        # A vertical stroke at x=60 from y=70 to y=210, brush 20 px wide (round caps).
        with expect_rerun(page):
            draw_stroke(page, [(60, 70), (60, 210)], key="canvas")
        info = _info(page)
        screenshot(page, "harness-after-stroke")
        assert info["image"] == [280, 280, 4]
        assert info["alpha_min"] == 255
        assert info["objects"] == 1
        assert info["painted"] > 0.8 * 20 * 140
        x0, y0, x1, y1 = info["bbox"]
        assert 45 <= x0 <= 52 and 68 <= x1 <= 75, info
        assert 55 <= y0 <= 62 and 218 <= y1 <= 225, info

        # A second stroke adds to the first; the click counter is untouched.
        with expect_rerun(page):
            draw_stroke(page, [(150, 140), (250, 140)])
        info2 = _info(page)
        assert info2["objects"] == 2
        assert info2["painted"] > info["painted"] + 0.8 * 20 * 100
        assert info2["bbox"][2] >= 255
        assert counter.inner_text().strip() == "count=1"
        assert watch_runs(page).finished == 4  # first run, click, two strokes
