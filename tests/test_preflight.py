"""The one preflight: each check fires with its message and the values received, a clean design
passes with its estimates, and the channel fix adapts a grey design to RGB images. No TensorFlow."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cae.data import Dataset
from cae.preflight import (
    DEFAULT_RATE,
    START_SECONDS,
    Preflight,
    check_input_shape,
    estimate_memory,
    fit_speed,
    preflight,
    validation_count,
)
from cae.shapes import compute_shapes, work_per_image
from cae.spec import ArchitectureSpec, preset
from cae.training import TrainConfig

CLASSIC = preset("classic")
BUDGET = 12 * 10**9  # bytes: the machine the memory estimate was measured on
# 62 convolutions of 19 filters on 448x448: every limit of the spec met, 182 GB at batch 64
BOMB = ArchitectureSpec.from_dict(
    {
        "name": "bomb",
        "input_shape": [28, 28, 1],
        "encoder": [{"type": "upsample", "size": 16}]
        + [{"type": "conv", "filters": 19, "kernel": 3}] * 62
        + [{"type": "pool", "size": 16}],
        "decoder": [{"type": "conv", "filters": 1, "kernel": 3, "activation": "sigmoid"}],
    }
)


def test_a_clean_design_passes_with_its_estimates():
    check = preflight(
        CLASSIC, TrainConfig(epochs=3, batch_size=64), image_shape=(28, 28, 1), num_train=1000
    )
    assert isinstance(check, Preflight)
    assert check.ok and check.problems == () and check.problem() is None
    check.raise_first()  # nothing to raise
    expected = estimate_memory(compute_shapes(CLASSIC), 64)
    assert check.memory_bytes == expected.total and 690e6 < check.memory_bytes < 710e6
    assert "x batch 64" in check.memory.counts and "Adam" in check.memory.counts
    # no earlier runs: the default speed over the 900 images left after validation, 3 epochs
    work = work_per_image(compute_shapes(CLASSIC))
    trained = 1000 - validation_count(1000, 0.1)
    assert trained == 900
    assert check.seconds == pytest.approx(
        START_SECONDS + fit_speed([]).overhead + work * trained * 3 / DEFAULT_RATE
    )
    assert check.time.basis.startswith("no run timed on this machine yet")


def test_the_time_estimate_follows_the_measured_speed():
    samples = [(w, 3.0 + w / 1e9) for w in (1e9, 4e9, 9e9, 2e10)]  # 3 s plus 1 s per G
    check = preflight(CLASSIC, TrainConfig(epochs=2), num_train=500, speed_samples=samples)
    speed = check.time.speed
    assert (speed.overhead, speed.rate, speed.runs) == pytest.approx((3.0, 1e9, 4))
    work = work_per_image(compute_shapes(CLASSIC))
    assert check.seconds == pytest.approx(START_SECONDS + 3.0 + work * 450 * 2 / 1e9)
    assert "4 earlier run(s) on this machine" in check.time.basis
    # nothing known of the images: no time, and no image checks
    unknown = preflight(CLASSIC, TrainConfig())
    assert unknown.ok and unknown.time is None and unknown.seconds is None


def test_images_of_another_shape_fire_with_the_shapes_received():
    check = preflight(CLASSIC, TrainConfig(), image_shape=(32, 32, 1))
    (problem,) = check.problems
    assert problem.kind == "shape" and not check.ok
    assert problem.message.startswith("The images are 32x32x1 but the design expects 28x28x1")
    assert problem.message.endswith("Received: images=[32, 32, 1], input_shape=[28, 28, 1]")
    with pytest.raises(ValueError, match="input_shape=\\[28, 28, 1\\]"):
        check.raise_first("shape")


def test_the_channel_fix_adapts_a_grey_design_to_rgb_images():
    check = preflight(CLASSIC, TrainConfig(), image_shape=(28, 28, 3), num_train=100)
    problem = check.problem("shape")
    assert "the channels differ" in problem.message
    fix = problem.fix
    assert fix.description == (
        "Use the images' shape as the design's input and decoder[4]: set filters to 3 to give "
        "3 channel(s)"
    )
    assert fix.spec.input_shape == (28, 28, 3) and fix.spec.decoder[-1].filters == 3
    assert compute_shapes(fix.spec).matches
    assert preflight(fix.spec, TrainConfig(), image_shape=(28, 28, 3), num_train=100).ok
    # a sweep's variants skip the search for fixes
    fast = preflight(CLASSIC, TrainConfig(), image_shape=(28, 28, 3), with_fixes=False)
    assert fast.problem("shape").fix is None


def test_a_design_over_the_memory_budget_fires_with_the_batch_that_fits():
    check = preflight(BOMB, TrainConfig(batch_size=64), budget=BUDGET)
    problem = check.problem("memory")
    assert problem is not None and check.memory.batch_that_fits == 7
    assert "would need about 91.5 GB to train at batch 64" in problem.message
    assert "largest tensor is encoder[1]" in problem.message
    assert "use a batch size of at most 7" in problem.message
    assert problem.message.endswith("Received: batch_size=64")
    assert preflight(BOMB, TrainConfig(batch_size=7), budget=BUDGET).problem("memory") is None


def test_too_few_images_fire_with_the_counts_received():
    check = preflight(CLASSIC, TrainConfig(validation_split=0.5), num_train=1)
    (problem,) = check.problems
    assert problem.kind == "images" and problem.fix is None
    assert "use at least 2 training images" in problem.message
    assert problem.message.endswith("Received: num_train=1, validation_split=0.5")
    none = preflight(CLASSIC, TrainConfig(validation_split=0.0), num_train=0)
    assert none.problem("images").message.endswith("Received: num_train=0")
    assert preflight(CLASSIC, TrainConfig(validation_split=0.0), num_train=1).ok


def test_a_decoder_that_misses_the_input_shape_fires_with_its_fix():
    mismatched = CLASSIC.with_layers(decoder=CLASSIC.decoder[2:])
    check = preflight(mismatched, TrainConfig())
    problem = check.problem("mismatch")
    assert "14x14x1" in problem.message
    assert problem.fix is not None and compute_shapes(problem.fix.spec).matches
    assert check.memory is not None  # the shapes are known: the memory is still estimated


def test_a_layer_that_cannot_be_applied_fires_without_estimates():
    tiny = ArchitectureSpec.from_dict(
        {
            "name": "tiny",
            "input_shape": [3, 3, 1],
            "encoder": [{"type": "conv", "filters": 1, "kernel": 5, "padding": "valid"}],
            "decoder": [{"type": "conv", "filters": 1, "kernel": 3}],
        }
    )
    check = preflight(tiny, TrainConfig(), image_shape=(3, 3, 1), num_train=100)
    problem = check.problem("design")
    assert problem.message.startswith("encoder[0] conv: kernel 5x5 is larger than its input 3x3")
    assert problem.message.endswith("Received: kernel=(5, 5), input=(3, 3)")
    assert problem.fix is not None and compute_shapes(problem.fix.spec).matches
    assert check.memory is None and check.time is None
    with pytest.raises(ValueError, match="Received"):
        check.raise_first()


def test_check_input_shape_names_both_shapes():
    x = np.zeros((4, 28, 28, 3), np.float32)
    check_input_shape(replace(CLASSIC, input_shape=(28, 28, 3)), Dataset("rgb", x, None, x, None))
    with pytest.raises(ValueError, match="Received: images=\\[28, 28, 3\\], input_shape="):
        check_input_shape(CLASSIC, Dataset("rgb", x, None, x, None))


def test_a_design_that_trains_with_onednn_off_is_estimated_slower_and_says_why():
    """A kernel 1 tap wide along a strided axis trains with oneDNN off (cae.onednn): measured
    1.4-1.9x per epoch, so the time estimate grows by ONEDNN_OFF_SLOWDOWN and its basis says so."""
    from cae.preflight import ONEDNN_OFF_SLOWDOWN, training_work
    from cae.spec import Conv, Upsample

    strided = ArchitectureSpec(
        "strided",
        (28, 28, 1),
        (Conv(8, (1, 1), (2, 2)),),
        (Upsample((2, 2)), Conv(1, (3, 3), activation="sigmoid")),
    )
    plain = strided.with_layers(encoder=(Conv(8, (3, 3), (2, 2)),))
    report = compute_shapes(strided)
    assert training_work(report) == pytest.approx(ONEDNN_OFF_SLOWDOWN * work_per_image(report))
    assert training_work(compute_shapes(plain)) == work_per_image(compute_shapes(plain))
    check = preflight(strided, TrainConfig(epochs=2), image_shape=(28, 28, 1), num_train=1000)
    assert check.ok and "oneDNN off" in check.time.basis
    assert "oneDNN" not in preflight(plain, TrainConfig(), num_train=1000).time.basis
