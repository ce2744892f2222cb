"""cae.corruption: each kind's statistics in numpy and in TensorFlow, seeding, range, validation."""

from __future__ import annotations

import numpy as np
import pytest

from cae.corruption import (
    CORRUPTION_NAMES,
    CORRUPTIONS,
    ERASE_FILL,
    Corruption,
    corruption_of,
    erase_box,
)
from cae.metrics import METRIC_KEYS

GREY = 0.3  # a flat image: salt, pepper and the erase fill (0.5) are all told apart from it


def flat(n: int = 200, side: int = 28, channels: int = 1) -> np.ndarray:
    return np.full((n, side, side, channels), GREY, np.float32)


def tf_apply(corruption: Corruption, images: np.ndarray, seed: tuple[int, int] = (7, 1)):
    import tensorflow as tf

    batch = tf.constant(images)
    return corruption.apply_tf(batch, tf.constant(seed, tf.int64)).numpy()


def both(corruption: Corruption, images: np.ndarray) -> list[np.ndarray]:
    return [corruption.apply(images, seed=3), tf_apply(corruption, images)]


@pytest.mark.parametrize("std", [0.05, 0.2])
def test_gaussian_noise_has_the_std_asked(std):
    images = np.full((100, 28, 28, 1), 0.5, np.float32)  # far from the clip at these stds
    for noisy in both(Corruption("gaussian", std), images):
        jitter = noisy - images
        assert abs(jitter.std() - std) < 0.05 * std
        assert abs(jitter.mean()) < 0.01
        assert noisy.dtype == np.float32


@pytest.mark.parametrize("fraction", [0.05, 0.3])
def test_salt_and_pepper_flips_the_fraction_asked_half_each(fraction):
    images = flat(channels=3)
    for noisy in both(Corruption("salt-pepper", fraction), images):
        changed = np.any(noisy != GREY, axis=-1)
        assert abs(changed.mean() - fraction) < 0.1 * fraction + 0.005
        salt = np.all(noisy == 1.0, axis=-1)
        pepper = np.all(noisy == 0.0, axis=-1)
        assert np.array_equal(changed, salt | pepper)  # all channels of a pixel, to 0 or 1
        assert abs(salt.sum() / changed.sum() - 0.5) < 0.05


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.6, 0.9])
def test_erase_covers_the_fraction_of_area_asked_in_one_rectangle(fraction):
    images = flat(n=100, side=32, channels=2)
    for noisy in both(Corruption("erase", fraction), images):
        erased = np.all(noisy == ERASE_FILL, axis=-1)
        assert np.all((noisy == GREY) | (noisy == ERASE_FILL))
        areas = erased.mean(axis=(1, 2))
        # whole pixels: each rectangle is within one row or column of the area asked
        assert np.all(np.abs(areas - fraction) <= 1.5 * 32 / 32**2 + 0.01), areas
        assert abs(areas.mean() - fraction) < 0.02
        for mask in erased[:20]:  # one rectangle: its rows and columns span exactly the mask
            rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            assert mask.sum() == len(rows) * len(cols)
            assert np.ptp(rows) + 1 == len(rows) and np.ptp(cols) + 1 == len(cols)
        places = {
            (np.flatnonzero(m.any(axis=1))[0], np.flatnonzero(m.any(axis=0))[0]) for m in erased
        }
        if fraction < 0.9:
            assert len(places) > 10  # placed at random


def test_erase_box_fits_any_image_and_strength():
    for height, width in ((28, 28), (5, 40), (1, 1), (64, 3)):
        for strength in (0.01, 0.5, 0.9):
            for aspect in (0.5, 1.0, 2.0):
                for place in (0.0, 0.999):
                    top, left, rows, cols = erase_box(height, width, strength, aspect, place, place)
                    assert 1 <= rows <= height and 1 <= cols <= width
                    assert 0 <= top <= height - rows and 0 <= left <= width - cols


@pytest.mark.parametrize("kind", CORRUPTION_NAMES)
def test_every_kind_stays_in_range_and_is_seeded(kind):
    rng = np.random.default_rng(0)
    images = rng.random((16, 12, 12, 3), dtype=np.float32)
    corruption = Corruption(kind, 0.8)
    first = corruption.apply(images, seed=5)
    assert first.shape == images.shape and first.dtype == np.float32
    assert first.min() >= 0.0 and first.max() <= 1.0
    assert not np.array_equal(first, images)
    assert np.array_equal(first, corruption.apply(images, seed=5))
    assert not np.array_equal(first, corruption.apply(images, seed=6))
    # image i's corruption depends on (seed, i) only: a chunk or a few picked images match
    assert np.array_equal(first[8:], corruption.apply(images[8:], seed=5, indices=range(8, 16)))
    picked = [3, 11]
    assert np.array_equal(first[picked], corruption.apply(images[picked], seed=5, indices=picked))
    # uint8 pixels are read as k/255
    pixels = (images * 255).round().astype(np.uint8)
    assert np.array_equal(corruption.apply(pixels, seed=5), corruption.apply(pixels / 255, seed=5))
    # TensorFlow: in range, the same for the same seed, different for another
    batch = tf_apply(corruption, images, (1, 2))
    assert batch.min() >= 0.0 and batch.max() <= 1.0
    assert np.array_equal(batch, tf_apply(corruption, images, (1, 2)))
    assert not np.array_equal(batch, tf_apply(corruption, images, (1, 3)))


def test_table_and_validation_messages_end_with_the_values():
    assert CORRUPTION_NAMES == ("gaussian", "salt-pepper", "erase")
    for kind in CORRUPTIONS:
        assert 0 < kind.low <= kind.default <= kind.high <= 1
        assert Corruption(kind.name, kind.default).describe().startswith(kind.title)
    with pytest.raises(ValueError, match=r"Received: corruption='blur'$"):
        Corruption("blur", 0.1)
    with pytest.raises(
        ValueError, match=r"from 0.01 to 0.9\. Received: corruption='erase', strength=0.95$"
    ):
        Corruption("erase", 0.95)
    with pytest.raises(ValueError, match=r"Received: corruption='gaussian', strength=nan$"):
        Corruption("gaussian", float("nan"))
    with pytest.raises(ValueError, match=r"Received: corruption='gaussian', strength=True$"):
        Corruption("gaussian", True)
    assert corruption_of(None) is None and corruption_of("none", 0.3) is None
    assert corruption_of("salt-pepper") == Corruption("salt-pepper", 0.2)
    assert corruption_of("erase", 0.5).to_dict() == {"corruption": "erase", "strength": 0.5}


def test_scores_on_corrupted_inputs_do_not_depend_on_the_chunk():
    from cae.builder import build
    from cae.datasets import load_dataset
    from cae.evaluation import evaluate_corrupted, evaluate_run
    from cae.spec import preset

    built = build(preset("classic"))
    images = load_dataset("mnist-sample", limit=40).x_test[:40]
    erase = Corruption("erase", 0.3)
    whole = evaluate_corrupted(built, images, erase)
    assert set(whole) == {f"{p}{k}" for p in ("denoise_", "corrupted_") for k in METRIC_KEYS}
    assert evaluate_corrupted(built, images, erase, chunk=7) == pytest.approx(whole, rel=1e-6)
    both = evaluate_run(built, images, corruption=erase, chunk=7)
    assert {key: both[key] for key in whole} == pytest.approx(whole, rel=1e-6)
    assert evaluate_corrupted(built, images, erase, seed=1) != pytest.approx(whole)
