"""Inputs of any channel count (1 to 64): one channel is grayscale, three are RGB, any other count is
shown one channel at a time with a picker; the display helpers and the Results, Latent Editor and
Inspect pages on small uploaded arrays of 2 and 5 channels, trained for real (one epoch)."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from cae import latent_edit as le
from cae.plots import grid_png, heatmap, image_grid
from cae.recipe import DataRecipe, TestSplit, load_recipe
from cae.request import TrainRequest
from cae.spec import ArchitectureSpec
from cae.store import save_trained
from cae.training import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
SIDE = 16


def stack(channels: int, count: int = 40, seed: int = 0) -> np.ndarray:
    """Images (count, 16, 16, channels) uint8: faint noise, and in channel k a bright square at
    (2k, 2k), so every channel looks different."""
    rng = np.random.default_rng(seed + channels)
    x = (rng.random((count, SIDE, SIDE, channels)) * 60).astype(np.uint8)
    for k in range(channels):
        x[:, 2 * k : 2 * k + 4, 2 * k : 2 * k + 4, k] = 255
    return x


# ---------------------------------------------------------------------------- display helpers


@pytest.mark.parametrize(
    ("channels", "options", "labels"),
    [
        (1, [None], ["grayscale"]),
        (2, [0, 1], ["channel 0", "channel 1"]),
        (3, [None, 0, 1, 2], ["RGB", "channel 0", "channel 1", "channel 2"]),
        (4, [0, 1, 2, 3], ["channel 0", "channel 1", "channel 2", "channel 3"]),
        (5, [0, 1, 2, 3, 4], [f"channel {k}" for k in range(5)]),
    ],
)
def test_channel_options(channels, options, labels):
    assert le.channel_options(channels) == options
    assert [le.channel_label(option, channels) for option in options] == labels


def test_channel_options_reach_64_and_refuse_nonsense():
    assert le.channel_options(64) == list(range(64))
    for bad in (0, -1, True, 2.0):
        with pytest.raises(ValueError, match="Received: channels="):
            le.channel_options(bad)


@pytest.mark.parametrize("channels", [2, 3, 5])
def test_image_view_shows_one_channel_or_rgb(channels):
    image = stack(channels)[0] / np.float32(255)
    for k in range(channels):
        view = le.image_view(image, k)
        assert view.shape == (SIDE, SIDE) and view.dtype == np.float32
        np.testing.assert_array_equal(view, image[..., k])
    whole = le.image_view(image)
    if channels == 3:
        np.testing.assert_array_equal(whole, image)  # RGB
    else:
        np.testing.assert_array_equal(whole, image[..., 0])  # never an error: channel 0
    with pytest.raises(ValueError, match=rf"0 to {channels - 1}.*Received: channel={channels}"):
        le.image_view(image, channels)


def test_image_view_grayscale_and_clipping():
    gray = np.array([[-0.5, 0.25], [np.nan, 3.0]], np.float32)
    np.testing.assert_array_equal(le.image_view(gray), [[0.0, 0.25], [0.0, 1.0]])
    np.testing.assert_array_equal(le.image_view(gray[..., None], 0), le.image_view(gray))
    with pytest.raises(ValueError, match=r"Received: shape=\(2, 2, 2, 2\)"):
        le.image_view(np.zeros((2, 2, 2, 2)))


@pytest.mark.parametrize("channels", [1, 2, 3, 5])
def test_upscale_any_channel_count(channels):
    image = stack(channels)[0] / np.float32(255)
    big = le.upscale(image, 3)
    assert big.dtype == np.uint8
    assert big.shape == ((SIDE * 3, SIDE * 3, 3) if channels == 3 else (SIDE * 3, SIDE * 3))
    Image.fromarray(big)  # PIL takes it as it is (L or RGB)
    last = le.upscale(image, 2, channels - 1)
    assert last.shape == (SIDE * 2, SIDE * 2)
    np.testing.assert_array_equal(last[::2, ::2], np.round(image[..., -1] * 255))


@pytest.mark.parametrize("channels", [2, 3, 5])
def test_image_grid_and_png_follow_the_channel(channels):
    x = stack(channels, count=3) / np.float32(255)
    rows = [x, 1 - x]
    grids = {k: image_grid(rows, ["a", "b"], channel=k) for k in le.channel_options(channels)}
    tiles = {k: grid_tiles(grid) for k, grid in grids.items()}
    for k, shown in tiles.items():
        assert len(shown) == 6  # one tile per image, column by column: image 0's two rows first
        expected = x[0] if k is None else np.repeat(x[0][..., k : k + 1], 3, axis=-1)
        np.testing.assert_array_equal(shown[0], np.round(expected * 255))
        np.testing.assert_array_equal(shown[1], np.round((1 - expected) * 255))
    assert len({b"".join(t.tobytes() for t in shown) for shown in tiles.values()}) == len(tiles)
    pngs = {k: grid_png(rows, scale=2, gap=1, channel=k) for k in le.channel_options(channels)}
    assert len(set(pngs.values())) == len(pngs)
    picture = np.asarray(Image.open(io.BytesIO(pngs[le.channel_options(channels)[-1]])))
    assert picture.shape == (2 * (2 * SIDE + 1), 2 * (3 * SIDE + 2), 3)
    assert grid_tiles(image_grid(rows, ["a", "b"]))  # no channel given: never an error


def test_image_grid_titles_come_first_in_a_column_of_their_own():
    """Issue 28: rotated row titles printed over each other ("outputcorrupted inpuoriginal").
    Each title is now a cell of the left column, as tall as its row's tiles, written across;
    a shorter row leaves empty cells, so every image stays under its own column."""
    rows = [np.ones((4, SIDE, SIDE, 1)), np.zeros((2, SIDE, 8, 1)), np.ones((4, SIDE, SIDE, 1))]
    grid = image_grid(rows, ["first", "corrupted input", "third"])
    columns = re.findall(r"<div class='cae-grid-col'>(.*?)<div></div></div>", grid)
    assert len(columns) == 5  # the titles, then one column per image
    labels = re.findall(r"<div class='cae-grid-label' style='([^']*)'><span>([^<]*)</span>", grid)
    assert [text for _, text in labels] == ["first", "corrupted input", "third"]
    assert all(style == f"aspect-ratio:{SIDE}/{SIDE}" for style, _ in labels)  # as tall as a tile
    assert "cae-grid-label" in columns[0] and "<img" not in columns[0]
    assert [column.count("<img") for column in columns[1:]] == [3, 3, 2, 2]
    tiles = grid_tiles(grid)
    assert all(tile.shape == (SIDE, SIDE, 3) for tile in tiles)  # a narrow image, padded white
    assert (tiles[1][:, :8] == 0).all() and (tiles[1][:, 8:] == 255).all()  # at the left
    assert "rotate" not in grid and "textangle" not in grid
    assert re.search(r"minmax\((\d+)px", grid).group(1) == "64"  # a tile is never narrower


def grid_tiles(grid: str) -> list[np.ndarray]:
    """The pixels of an image grid's tiles (its PNG data URIs, in order), each (H, W, 3) uint8."""
    sources = re.findall(r"src='data:image/png;base64,([^']+)'", grid)
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(data)))) for data in sources]


def test_heatmap_takes_one_plane():
    assert heatmap(np.zeros((4, 4, 1))).data[0].z.shape == (4, 4)
    with pytest.raises(ValueError, match=r"pick a channel.*Received: shape=\(4, 4, 5\)"):
        heatmap(np.zeros((4, 4, 5)))


def test_a_drawing_fills_every_channel_or_one():
    drawing = np.zeros((32, 32, 4), np.uint8)
    drawing[..., 3] = 255
    drawing[:8, :8, :3] = 255
    every = le.drawing_to_image(drawing, (16, 16, 5))
    assert every.shape == (16, 16, 5) and (every[:4, :4] == 1).all()
    one = le.drawing_to_image(drawing, (16, 16, 5), channel=3)
    assert (one[:4, :4, 3] == 1).all() and one.sum() == 16
    with pytest.raises(ValueError, match="Received: channel=5"):
        le.drawing_to_image(drawing, (16, 16, 5), channel=5)


# ------------------------------------------------------------------------------- the pages


def tiny_spec(channels: int) -> ArchitectureSpec:
    """16x16xC -> an 8x8x2 code -> 16x16xC."""
    return ArchitectureSpec.from_dict(
        {
            "name": f"tiny-{channels}ch",
            "input_shape": [SIDE, SIDE, channels],
            "encoder": [
                {"type": "conv", "filters": 4, "kernel": 3},
                {"type": "pool", "mode": "max", "size": [2, 2]},
                {"type": "conv", "filters": 2, "kernel": 3},
            ],
            "decoder": [
                {"type": "conv", "filters": 4, "kernel": 3},
                {"type": "upsample", "size": [2, 2]},
                {"type": "conv", "filters": channels, "kernel": 3, "activation": "sigmoid"},
            ],
        }
    )


@pytest.fixture(scope="module")
def multichannel_runs(tmp_path_factory) -> tuple[Path, dict[int, str]]:
    """A run trained one epoch on an uploaded .npz of 40 16x16 images, for 2 and 5 channels."""
    root = tmp_path_factory.mktemp("channels")
    runs = {}
    for channels in (2, 5):
        path = root / f"stack{channels}.npz"
        np.savez(path, x=stack(channels), y=np.arange(40) % 2)
        request = TrainRequest(
            spec=tiny_spec(channels),
            data=DataRecipe.for_file(path, seed=0),
            config=TrainConfig(epochs=1, batch_size=16, preview_count=0, seed=0),
            name=f"{channels} channels",
        )
        dataset = load_recipe(request.data)
        result = train(request.spec, dataset, request.config)
        split = TestSplit.of(dataset, request.data)
        runs[channels] = save_trained(result, request, split, root=root / "models")
    return root / "models", runs


def open_page(page: str, root: Path, run_id: str, monkeypatch) -> AppTest:
    monkeypatch.setenv("CAE_MODELS_DIR", str(root))
    app = AppTest.from_file(APP, default_timeout=120)
    app.session_state["active_run"] = run_id
    app.run().switch_page(page).run()
    assert not app.exception, [item.value for item in app.exception]
    return app


def picker(app: AppTest, key: str, channels: int):
    """The page's channel picker, checked to offer each channel alone."""
    widget = app.selectbox(key=key)
    assert widget.options == [f"channel {k}" for k in range(channels)]
    assert widget.value == 0
    return widget


def charts(app: AppTest) -> dict[str, dict]:
    """The page's plotly figures by widget key."""
    return {
        chart.proto.id.rsplit("-", 1)[-1]: json.loads(chart.proto.spec)
        for chart in app.get("plotly_chart")
    }


def grid_bodies(app: AppTest) -> list[str]:
    """The HTML of every image grid on the page (``cae.plots.image_grid`` through ``st.html``)."""
    return [html.proto.body for html in app.get("html") if "cae-grid" in html.proto.body]


def image_urls(app: AppTest) -> list[str]:
    """The media URL of every st.image (named by the content's hash)."""
    return [image.proto.imgs[0].url for image in app.get("image")]


@pytest.mark.slow
@pytest.mark.parametrize("channels", [2, 5])
def test_results_page_shows_one_channel_at_a_time(multichannel_runs, monkeypatch, channels):
    root, runs = multichannel_runs
    app = open_page("pages/3_Results.py", root, runs[channels], monkeypatch)
    table = app.dataframe[0].value
    assert list(table["run id"]) == [runs[channels]]
    assert all(value != "–" for value in table["test PSNR (dB)"])
    before = json.dumps([chart["data"] for chart in charts(app).values()])
    grids = grid_bodies(app)
    assert len(grids) >= 4  # the grid, the corrupted one, best and worst (error maps: closed)
    picker(app, "results_channel", channels).set_value(channels - 1).run()
    assert not app.exception, [item.value for item in app.exception]
    after = json.dumps([chart["data"] for chart in charts(app).values()])
    assert before != after  # the mean error map: the channel shown
    shown = grid_bodies(app)
    assert len(shown) == len(grids) and all(a != b for a, b in zip(grids, shown, strict=True))
    titles = json.dumps([chart["layout"].get("title") for chart in charts(app).values()])
    assert f"squared error per pixel, channel {channels - 1}," in titles  # the channel shown
    assert app.get("download_button")


@pytest.mark.parametrize("channels", [2, 5])
def test_latent_editor_shows_one_channel_at_a_time(multichannel_runs, monkeypatch, channels):
    root, runs = multichannel_runs
    app = open_page("pages/4_Latent_Editor.py", root, runs[channels], monkeypatch)
    state = app.session_state["le_editor"]
    assert np.asarray(state["code"]).shape == (8, 8, 2)
    before, strip = image_urls(app), grid_bodies(app)
    assert len(strip) == 1  # the interpolation strip
    widget = picker(app, "le_view_channel", channels)
    assert any("**Source** · channel 0 of" in block.value for block in app.markdown)
    widget.set_value(channels - 1).run()
    assert not app.exception, [item.value for item in app.exception]
    after = image_urls(app)
    assert len(after) == len(before)
    changed = sum(a != b for a, b in zip(before, after, strict=True))
    assert changed >= 2  # source and decoded; not the colour bar
    assert grid_bodies(app) != strip  # the interpolation strip
    assert any(f"**Decoded** · channel {channels - 1} of" in m.value for m in app.markdown)
    assert app.session_state["le_editor"]["code"] == state["code"]  # the edit is kept

    app.radio(key="le_source").set_value("Draw a digit").run()
    assert not app.exception, [item.value for item in app.exception]
    assert any(f"Your drawing fills channel {channels - 1}" in c.value for c in app.caption)


@pytest.mark.parametrize("channels", [2, 5])
def test_inspect_shows_one_channel_at_a_time(multichannel_runs, monkeypatch, channels):
    root, runs = multichannel_runs
    app = open_page("pages/5_Inspect.py", root, runs[channels], monkeypatch)
    assert f"16x16x{channels}" in " ".join(m.value for m in app.markdown)
    head = app.get("image")[0]
    assert head.proto.imgs[0].caption.endswith(f"channel 0 of {channels}")
    before = head.proto.imgs[0].url
    picker(app, "inspect_channel", channels).set_value(channels - 1).run()
    assert not app.exception, [item.value for item in app.exception]
    head = app.get("image")[0]
    assert head.proto.imgs[0].caption.endswith(f"channel {channels - 1} of {channels}")
    assert head.proto.imgs[0].url != before
    worked = app.session_state["inspect_worked"]
    assert abs(worked["value"] - worked["keras_value"]) < 1e-5
