"""TensorBoard event files: every run folder has one with per-epoch scalars and reconstruction
strips, readable with TensorFlow alone; staged and published runs carry it."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from cae import events
from cae.metrics import METRIC_KEYS

EPOCHS = 2


def read_events(path: Path) -> tuple[dict[str, list[tuple[int, float]]], dict[str, list]]:
    """(scalars by tag: [(step, value)], images by tag: [(step, png bytes, width, height)]),
    read back with tf.data.TFRecordDataset, as TensorBoard would."""
    import tensorflow as tf

    scalars: dict[str, list[tuple[int, float]]] = defaultdict(list)
    images: dict[str, list] = defaultdict(list)
    for record in tf.data.TFRecordDataset(str(path)):
        event = tf.compat.v1.Event.FromString(record.numpy())
        for value in event.summary.value:
            plugin = value.metadata.plugin_data.plugin_name
            tensor = tf.make_ndarray(value.tensor)
            if plugin == "scalars":
                scalars[value.tag].append((event.step, float(tensor)))
            elif plugin == "images":
                width, height, png = (bytes(item) for item in tensor)
                images[value.tag].append((event.step, png, int(width), int(height)))
    return dict(scalars), dict(images)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """A 2-epoch run trained by ``python -m cae train`` (in this process)."""
    from cae.__main__ import main

    root = tmp_path_factory.mktemp("models")
    status = main(
        [
            "train",
            "--preset",
            "classic",
            "--dataset",
            "mnist-sample",
            "--limit",
            "300",
            "--test-fraction",
            "0.2",
            "--epochs",
            str(EPOCHS),
            "--batch-size",
            "32",
            "--validation-split",
            "0.1",
            "--out",
            str(root / "run"),
        ]
    )
    assert status == 0
    return root, root / "run"


@pytest.mark.slow
def test_a_trained_run_has_tensorboard_scalars_and_strips(cli_run):
    _, folder = cli_run
    path = folder / events.EVENTS_FILE
    assert path.is_file()
    scalars, images = read_events(path)
    history = json.loads((folder / "history.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    steps = list(range(1, EPOCHS + 1))
    for key in ("loss", "val_loss"):
        assert [step for step, _ in scalars[key]] == steps
        np.testing.assert_allclose([v for _, v in scalars[key]], history[key], rtol=1e-6)
    for key in METRIC_KEYS:
        assert [step for step, _ in scalars[f"sample/{key}"]] == steps
        ((step, value),) = scalars[f"test/{key}"]  # the whole test split, at the kept epoch
        assert step == EPOCHS and value == pytest.approx(metrics[key], rel=1e-5)
    strips = images[events.STRIP_TAG]
    assert [step for step, *_ in strips] == steps
    import tensorflow as tf

    _, png, width, height = strips[-1]
    decoded = tf.io.decode_png(png).numpy()
    assert decoded.shape == (height, width, 1) == (2 * 28, events.STRIP_IMAGES * 28, 1)
    # the top row is the first test images, as stored with the run
    with np.load(folder / "test_images.npz") as npz:
        first = npz["x"][: events.STRIP_IMAGES, :, :, 0]
    np.testing.assert_array_equal(decoded[:28, :, 0], np.concatenate(list(first), axis=1))
    train = json.loads((folder / "train.json").read_text())
    assert train["data"]["test_fraction"] == 0.2  # the shared recipe arguments reach the record


def test_runs_with_event_files_list_load_and_delete(cli_run):
    from cae.store import delete_run, list_runs, load_run

    root, folder = cli_run
    (info,) = list_runs(root)
    assert info.ok, info.broken
    assert load_run(info.run_id, root).info.run_id == "run"
    assert events.EVENTS_FILE in json.loads((folder / "run.json").read_text())["files"]
    copy = root / "copy"
    shutil.copytree(folder, copy)
    delete_run("copy", root)
    assert not copy.exists() and [run.run_id for run in list_runs(root)] == ["run"]


@pytest.mark.slow
def test_staged_and_published_runs_carry_their_events(tmp_path, monkeypatch):
    from cae.recipe import DataRecipe, TestSplit, load_recipe
    from cae.request import TrainRequest
    from cae.spec import preset
    from cae.store import list_staged, publish_run, save_trained, staging_dir
    from cae.training import TrainConfig, train

    monkeypatch.setenv("CAE_STAGING_DIR", str(tmp_path / "fallback"))
    root = tmp_path / "models"
    request = TrainRequest(
        spec=preset("classic"),
        data=DataRecipe("mnist-sample", limit=128),
        config=TrainConfig(epochs=1, batch_size=32, preview_count=0),
        name="staged",
    )
    dataset = load_recipe(request.data)
    result = train(request.spec, dataset, request.config)
    assert result.tensorboard is not None
    split = TestSplit.of(dataset, request.data)
    for token, fallback in (("inside", False), ("fallback", True)):
        staging = staging_dir(token, root, fallback=fallback)
        staged_id = save_trained(result, request, split, root=staging)
        assert (staging / staged_id / events.EVENTS_FILE).read_bytes() == result.tensorboard
    assert len(list_staged(root)) == 2
    for staged in list_staged(root):
        run_id = publish_run(staged.path, name="published", root=root)
        assert (root / run_id / events.EVENTS_FILE).read_bytes() == result.tensorboard
    # without events (e.g. a worker that is not the chief): no file, the run is whole
    quiet = train(request.spec, dataset, request.config, tensorboard=False)
    assert quiet.tensorboard is None
    run_id = save_trained(quiet, request, split, root=root)
    assert not (root / run_id / events.EVENTS_FILE).exists()
    from cae.store import get_run_info

    assert get_run_info(run_id, root).ok


def test_event_log_is_best_effort_and_cleans_up():
    images = np.random.default_rng(0).random((10, 8, 8, 5)).astype(np.float32)

    def fail(batch):
        raise RuntimeError("no model")

    log = events.EventLog(images, fail, epochs=3)
    folder = log.folder
    log.epoch(1, {"loss": [0.5]})  # the model call fails: no exception, the log stops writing
    assert log.broken and log.finish() is None and not folder.exists()

    log = events.EventLog(images, lambda batch: batch * 0.5, epochs=3)
    log.epoch(1, {"loss": [0.5], "val_loss": []})
    log.kept(1, {"mse": 0.1, "denoise_mse": 0.2, "psnr": float("inf")})
    data, folder = log.finish(), log.folder
    assert data and not folder.exists()
    path = Path(folder.parent / f"{folder.name}-read.tfevents")
    path.write_bytes(data)
    try:
        scalars, strips = read_events(path)
    finally:
        path.unlink()
    assert set(scalars) == {"loss", "test/mse", *(f"sample/{key}" for key in METRIC_KEYS)}
    assert [step for step, *_ in strips[events.STRIP_TAG]] == [1]  # once per step
    assert strips[events.STRIP_TAG][0][2:] == (events.STRIP_IMAGES * 8, 16)


def test_strips_are_thinned_on_long_runs():
    assert events.strip_epochs(100) == 1 and events.strip_epochs(101) == 2
    assert events.strip_epochs(10_000) == 100
    five = np.zeros((3, 4, 4, 5), np.float32)
    assert events.strip_image(five, five).shape == (8, 12, 1)  # first channel of 5
    rgb = np.ones((2, 4, 4, 3), np.float32)
    assert events.strip_image(rgb, rgb * 2).max() == 1.0  # clipped
