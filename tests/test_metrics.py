"""cae.metrics: exact values on known images, and SSIM agreement with tf.image.ssim."""

import math

import numpy as np
import pytest

from cae import metrics


def _random(shape, seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def _structured(n, h, w, c):
    """Smooth gradients, stripes and a square: images with real structure."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    images = []
    for i in range(n):
        base = 0.5 + 0.4 * np.sin(2 * np.pi * (xx * (i + 1) + yy * 0.5))
        base[h // 4 : h // 2, w // 4 : w // 2] = 0.1 * i
        images.append(np.stack([np.clip(base * (0.7 + 0.1 * k), 0, 1) for k in range(c)], -1))
    return np.array(images, dtype=np.float32)


def test_identical_images():
    a = _random((3, 28, 28, 1))
    assert np.array_equal(metrics.mse(a, a), np.zeros(3))
    assert np.array_equal(metrics.mae(a, a), np.zeros(3))
    assert np.all(np.isinf(metrics.psnr(a, a)))
    np.testing.assert_allclose(metrics.ssim(a, a), 1.0, atol=1e-12)
    summary = metrics.summarize(a, a)
    assert summary == {"mse": 0.0, "mae": 0.0, "psnr": math.inf, "ssim": pytest.approx(1.0)}


def test_constant_offset_gives_20_db():
    a = np.full((2, 16, 16, 3), 0.25)
    b = a + 0.1
    np.testing.assert_allclose(metrics.mse(a, b), 0.01, rtol=1e-12)
    np.testing.assert_allclose(metrics.mae(a, b), 0.1, rtol=1e-12)
    np.testing.assert_allclose(metrics.psnr(a, b), 20.0, atol=1e-9)
    assert metrics.summarize(a, b)["psnr"] == pytest.approx(20.0, abs=1e-9)


def test_known_mae_and_error_map():
    a = np.zeros((1, 2, 2, 2))
    b = np.zeros((1, 2, 2, 2))
    b[0, 0, 0] = [0.4, 0.2]  # one pixel differs
    b[0, 1, 1, 1] = 0.8
    assert metrics.mae(a, b)[0] == pytest.approx((0.4 + 0.2 + 0.8) / 8)
    assert metrics.mse(a, b)[0] == pytest.approx((0.16 + 0.04 + 0.64) / 8)
    maps = metrics.error_maps(a, b)
    assert maps.shape == (1, 2, 2) and maps.dtype == np.float32
    np.testing.assert_allclose(maps[0], [[0.1, 0.0], [0.0, 0.32]], rtol=1e-6)


def test_summarize_psnr_is_psnr_of_mean_mse():
    a = np.zeros((2, 12, 12, 1))
    b = a.copy()
    b[1] = 0.2  # image 0 perfect (PSNR inf), image 1 MSE 0.04
    per = metrics.per_image(a, b)
    assert set(per) == {"mse", "mae", "psnr", "ssim"}
    assert np.isinf(per["psnr"][0])
    summary = metrics.summarize(a, b)
    assert summary["mse"] == pytest.approx(0.02)
    assert summary["psnr"] == pytest.approx(10 * math.log10(1 / 0.02))
    assert all(isinstance(v, float) for v in summary.values())


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 28, 28, 1\).*\(2, 28, 28, 3\)"):
        metrics.mse(np.zeros((2, 28, 28, 1)), np.zeros((2, 28, 28, 3)))
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        metrics.ssim(np.zeros((28, 28)), np.zeros((28, 28)))
    with pytest.raises(ValueError, match="max_value"):
        metrics.psnr(np.zeros((1, 4, 4, 1)), np.zeros((1, 4, 4, 1)), max_value=0)


@pytest.mark.slow
@pytest.mark.parametrize(
    "images",
    [
        pytest.param(lambda: _random((4, 28, 28, 1)), id="random-1ch"),
        pytest.param(lambda: _random((3, 20, 24, 3), seed=1), id="random-3ch"),
        pytest.param(lambda: _structured(4, 28, 28, 1), id="structured-1ch"),
        pytest.param(lambda: _structured(3, 32, 32, 3), id="structured-3ch"),
    ],
)
def test_ssim_matches_tensorflow(images):
    tf = pytest.importorskip("tensorflow")
    a = images()
    rng = np.random.default_rng(7)
    noisy = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1).astype(np.float32)
    blurred = ((a + np.roll(a, 1, axis=1) + np.roll(a, 1, axis=2)) / 3).astype(np.float32)
    for b in (noisy, blurred, 1 - a):
        expected = tf.image.ssim(a, b, max_val=1.0).numpy()
        np.testing.assert_allclose(metrics.ssim(a, b), expected, atol=1e-4)


def test_small_images_shrink_the_window_like_tf_filter_size():
    tf = pytest.importorskip("tensorflow")
    a = _random((2, 8, 9, 1))
    b = np.clip(a * 0.8 + 0.05, 0, 1).astype(np.float32)
    assert metrics.ssim_window_size(8, 9) == 8
    expected = tf.image.ssim(a, b, max_val=1.0, filter_size=8).numpy()
    np.testing.assert_allclose(metrics.ssim(a, b), expected, atol=1e-4)


def test_ssim_max_value_scales():
    a = _random((2, 16, 16, 1))
    b = np.clip(a + 0.05, 0, 1)
    np.testing.assert_allclose(metrics.ssim(a * 255, b * 255, 255.0), metrics.ssim(a, b), atol=1e-9)


def test_a_new_metric_is_one_entry_in_the_table(monkeypatch, tmp_path, capsys):
    """Adding a metric touches metrics.py alone: the test-set summary, chunked evaluation's
    aggregate and the CLI's list read the table."""
    from cae.__main__ import main

    worst = metrics.Metric(
        "max_error", "Max error", "", 3, False,
        lambda a, b: np.max(np.abs(np.asarray(a) - np.asarray(b)), axis=(1, 2, 3)),
        lambda values: float(np.max(values["max_error"])),
    )  # fmt: skip
    monkeypatch.setattr(metrics, "METRICS", (*metrics.METRICS, worst))
    a = np.zeros((3, 8, 8, 1))
    b = np.full((3, 8, 8, 1), 0.25)
    summary = metrics.summarize(a, b)
    assert summary["max_error"] == pytest.approx(0.25)
    assert list(summary) == ["mse", "mae", "psnr", "ssim", "max_error"]
    chunks = [metrics.per_image(a[:1], b[:1]), metrics.per_image(a[1:], b[1:])]
    assert metrics.aggregate(metrics.concatenate(chunks)) == pytest.approx(summary)
    monkeypatch.setenv("CAE_MODELS_DIR", str(tmp_path))
    (tmp_path / "empty-run").mkdir()
    assert main(["list"]) == 0
    assert "test Max error" in capsys.readouterr().out.splitlines()[0]


def test_big_batches_are_scored_in_blocks_with_the_same_values(monkeypatch):
    """per_image (and so summarize, the Results table) works through big images a block at a
    time (BLOCK_BYTES as float64): the same values as all at once; uint8 counts as k/255."""
    import cae.metrics as metrics

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (7, 12, 12, 3), dtype=np.uint8)
    b = rng.random((7, 12, 12, 3)).astype(np.float32)
    whole = metrics.per_image(a, b)
    np.testing.assert_allclose(whole["mse"], metrics.mse(a / 255.0, b), rtol=1e-6)
    monkeypatch.setattr(metrics, "BLOCK_BYTES", 2 * 12 * 12 * 3 * 8)  # two images a block
    blocks = metrics.per_image(a, b)
    for key in whole:
        np.testing.assert_allclose(blocks[key], whole[key], rtol=1e-12)
    with pytest.raises(ValueError, match="same shape"):
        metrics.per_image(a, b[:6])
