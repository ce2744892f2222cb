"""cae.training: config validation, progress, stop, NaN, corruption, strategies (tiny data, few epochs)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import cae.evaluation as evaluation
import cae.training as training
from cae.corruption import Corruption
from cae.data import Dataset
from cae.datasets import load_dataset
from cae.evaluation import evaluate_run, reconstruct
from cae.metrics import METRIC_KEYS, summarize
from cae.pipeline import make_pipeline
from cae.pixels import as_float
from cae.progress import REPORT_INTERVAL, Progress
from cae.spec import preset
from cae.strategies import is_chief, make_strategy
from cae.training import LIMITS, TrainConfig, train


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("mnist-sample", limit=512, seed=0)


def small(dataset: Dataset, n: int, n_test: int = 64) -> Dataset:
    return Dataset(
        name=dataset.name,
        x_train=dataset.x_train[:n],
        y_train=None,
        x_test=dataset.x_test[:n_test],
        y_test=None,
    )


def capture_build(monkeypatch) -> list:
    """Record the BuiltModel that train() builds (to read its weights from a progress hook)."""
    built = []
    original = training.build

    def recording(spec, **options):
        model = original(spec, **options)
        built.append(model)
        return model

    monkeypatch.setattr(training, "build", recording)
    return built


# ------------------------------------------------------------------------------------ config


def test_config_round_trip_and_validation():
    config = TrainConfig(
        epochs=3,
        batch_size=16,
        optimizer="sgd",
        loss="mse",
        patience=2,
        corruption="salt-pepper",
        strength=0.2,
    )
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig.from_dict({**config.to_dict(), "dataset": "mnist", "name": "x"}) == config
    assert json.loads(json.dumps(config.to_dict())) == config.to_dict()
    cases = [
        ({"epochs": 0}, "Received: epochs=0"),
        ({"epochs": True}, "Received: epochs=True"),
        ({"batch_size": 0}, "Received: batch_size=0"),
        ({"optimizer": "adamw"}, "Received: optimizer='adamw'"),
        ({"learning_rate": -1.0}, "Received: learning_rate=-1.0"),
        ({"learning_rate": math.nan}, "Received: learning_rate=nan"),
        ({"loss": "huber"}, "Received: loss='huber'"),
        ({"validation_split": 0.6}, "Received: validation_split=0.6"),
        ({"epochs": 10_001}, "Received: epochs=10001"),
        ({"patience": -1}, "Received: patience=-1"),
        ({"patience": 2, "validation_split": 0.0}, "patience=2, validation_split=0.0"),
        ({"seed": -3}, "Received: seed=-3"),
        ({"strength": 1.5}, "Received: strength=1.5"),
        ({"strength": 0.3}, "Received: corruption=None, strength=0.3"),
        ({"corruption": "blur", "strength": 0.3}, "Received: corruption='blur'"),
        ({"corruption": "gaussian"}, "Received: corruption='gaussian', strength=0.0"),
        (
            {"corruption": "erase", "strength": 0.95},
            "from 0.01 to 0.9. Received: corruption='erase', strength=0.95",
        ),
        ({"preview_count": 1000}, "Received: preview_count=1000"),
    ]
    for values, expected in cases:
        with pytest.raises(ValueError) as info:
            TrainConfig(**values).validate()
        assert str(info.value).endswith(expected), (values, str(info.value))
    assert TrainConfig(validation_split=0.0).validate().validation_split == 0.0
    # Every limit comes from the one table, and a config is validated when it is made.
    assert TrainConfig(epochs=LIMITS["epochs"][1]).epochs == LIMITS["epochs"][1]
    with pytest.raises(ValueError, match="Received: strength=2"):
        TrainConfig(corruption="gaussian", strength=2)
    assert config.input_corruption == Corruption("salt-pepper", 0.2)
    assert TrainConfig().input_corruption is None


def test_an_old_record_with_noise_reads_as_gaussian_noise():
    old = {"epochs": 3, "noise": 0.25, "seed": 1}
    assert TrainConfig.from_dict(old).input_corruption == Corruption("gaussian", 0.25)
    assert TrainConfig.from_dict({"epochs": 3, "noise": 0.0}).input_corruption is None
    with pytest.raises(ValueError, match="Received: strength=1.5"):
        TrainConfig.from_dict({"noise": 1.5})


def test_progress_copy_and_fraction():
    p = Progress(
        state="running", epoch=1, epochs=4, batch=5, batches_per_epoch=10, history={"loss": [1.0]}
    )
    assert p.fraction == pytest.approx(1.5 / 4)
    q = p.copy()
    q.history["loss"].append(2.0)
    assert p.history == {"loss": [1.0]}
    assert Progress(state="finished", epoch=2, epochs=4).fraction == 1.0


# ------------------------------------------------------------------------------------ training


@pytest.mark.slow
def test_loss_decreases_and_progress_reports(digits):
    calls: list[Progress] = []
    result = train(
        preset("classic"),
        digits,
        TrainConfig(epochs=3, batch_size=32, validation_split=0.1),
        progress=calls.append,
        report_interval=0.0,  # every batch: to see the order of reports
    )
    loss = result.history["loss"]
    assert len(loss) == 3 and loss[0] > loss[1] > loss[2], loss
    assert len(result.history["val_loss"]) == 3
    assert result.state == "finished" and result.epochs_completed == 3 and not result.stopped
    assert (result.num_train, result.num_validation) == (461, 51)
    assert set(result.test_metrics) == {"mse", "mae", "psnr", "ssim"}
    assert result.latent_stats["shape"] == [7, 7, 1]
    assert calls[0].state == "starting" and calls[-1].state == "finished"
    running = [p for p in calls if p.state == "running"]
    # (completed epochs, batches into the next one) only goes forward; so does the fraction.
    steps = [(p.epoch, p.batch) for p in running]
    assert steps == sorted(steps)
    assert len(set(steps)) >= 3 * 15
    assert [p.fraction for p in running] == sorted(p.fraction for p in running)
    assert max(p.batch for p in running) == calls[-1].batches_per_epoch == 15
    assert [p.epoch for p in running if p.message.startswith("Epoch ")] == [1, 2, 3]
    assert all(p.batch == 0 for p in running if p.message.startswith("Epoch "))
    assert any(p.images_per_second and p.eta_seconds is not None for p in running)
    # the first batch of an epoch (input pipeline start-up) never sets the rate: the previous
    # report's rate stands, so the ETA does not jump at every epoch start
    for before, after in zip(running, running[1:]):
        if after.batch == 1 and after.epoch >= 1:
            assert after.images_per_second == before.images_per_second
    last = calls[-1]
    assert last.epoch == 3 and last.history["loss"] == loss
    assert last.preview_originals.shape == last.preview_reconstructions.shape == (6, 28, 28, 1)
    assert not last.preview_reconstructions.flags.writeable
    # the preview goes through a traced function: what the model itself gives
    eager = reconstruct(result.built.autoencoder, last.preview_originals)
    np.testing.assert_allclose(last.preview_reconstructions, eager, atol=1e-6)
    assert last.fraction == 1.0


@pytest.mark.slow
def test_progress_is_throttled(digits):
    calls: list[Progress] = []
    result = train(
        preset("classic"),
        small(digits, 384),
        TrainConfig(epochs=1, batch_size=4, validation_split=0.0, preview_count=0),
        progress=calls.append,
    )
    batches = 96
    budget = 3 + 2 * result.epochs_completed + result.wall_seconds / REPORT_INTERVAL + 2
    assert len(calls) <= budget, (len(calls), result.wall_seconds)
    assert len(calls) < batches / 4
    assert calls[-1].state == "finished"


@pytest.mark.slow
def test_stop_in_second_epoch_keeps_the_first_epochs_weights(digits, monkeypatch):
    built = capture_build(monkeypatch)
    after_epoch_1: list[list[np.ndarray]] = []
    seen: list[Progress] = []

    def sink(p: Progress) -> None:
        seen.append(p)
        if p.message == "Epoch 1/5 done.":
            after_epoch_1.append([w.copy() for w in built[0].autoencoder.get_weights()])

    checks = {"n": 0}
    batches_per_epoch = 8  # 256 images / 32

    def should_stop() -> bool:
        checks["n"] += 1
        return checks["n"] >= batches_per_epoch + 3  # the third batch of epoch 2

    result = train(
        preset("classic"),
        small(digits, 256),
        TrainConfig(epochs=5, batch_size=32, validation_split=0.0, preview_count=2),
        progress=sink,
        should_stop=should_stop,
        report_interval=0.0,
    )
    assert result.stopped and result.state == "stopped"
    assert result.epochs_completed == 1 and len(result.history["loss"]) == 1
    assert checks["n"] == batches_per_epoch + 3  # no batch ran after the stop request
    epoch_2 = [p.batch for p in seen if p.epoch == 1 and p.state in ("running", "stopping")]
    assert max(epoch_2) == 3
    final = result.built.autoencoder.get_weights()
    assert len(after_epoch_1) == 1
    assert all(np.array_equal(a, b) for a, b in zip(final, after_epoch_1[0]))
    assert "kept the weights of epoch 1" in result.message
    assert seen[-1].state == "stopped" and result.test_metrics


@pytest.mark.slow
def test_stop_before_the_first_epoch_completes(digits):
    calls: list[Progress] = []
    result = train(
        preset("classic"),
        small(digits, 128),
        TrainConfig(epochs=2, batch_size=32, validation_split=0.0),
        progress=calls.append,
        should_stop=lambda: True,
    )
    assert result.stopped and result.epochs_completed == 0 and not result.saveable
    assert result.history == {"loss": []} and result.test_metrics == {}
    assert "nothing to save" in result.message
    assert calls[-1].state == "stopped" and calls[-1].message == result.message


def test_noise_pipeline_is_seeded_clipped_and_fresh_each_epoch(digits):
    x = digits.x_train[:64]
    noise = Corruption("gaussian", 0.3)
    ds = make_pipeline(x, 16, seed=3, corruption=noise)
    first = [(a.numpy(), b.numpy()) for a, b in ds]
    second = [(a.numpy(), b.numpy()) for a, b in ds]
    again = [(a.numpy(), b.numpy()) for a, b in make_pipeline(x, 16, seed=3, corruption=noise)]
    inputs, targets = first[0]
    assert inputs.shape == targets.shape == (16, 28, 28, 1)
    assert inputs.min() >= 0.0 and inputs.max() <= 1.0
    assert not np.allclose(inputs, targets)
    assert np.abs(inputs - targets).std() > 0.1
    # Targets are clean training images; every image comes once per epoch.
    clean = np.concatenate([t for _, t in first])
    floats = as_float(x)  # the images are held as uint8; batches are float32 in [0, 1]
    assert sorted(map(bytes, clean.reshape(64, -1))) == sorted(map(bytes, floats.reshape(64, -1)))
    assert not np.array_equal(first[0][0], second[0][0])  # new noise (and order) each epoch
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(first, again))  # seeded
    # No noise: inputs are the targets; a tensor copy (multi-worker) gives the same batches.
    a, b = next(iter(make_pipeline(x, 16, seed=0)))
    assert np.array_equal(a.numpy(), b.numpy())
    c, _ = next(iter(make_pipeline(x, 16, seed=0, copy_to_tensor=True)))
    assert np.array_equal(a.numpy(), c.numpy())
    # Two replicas: 63 images in batches of 16 leave a last batch of 15, cut to 14.
    sizes = [len(a) for a, _ in make_pipeline(x[:63], 16, seed=0, replicas=2)]
    assert sizes == [16, 16, 16, 14]


@pytest.mark.parametrize(("kind", "strength"), [("salt-pepper", 0.3), ("erase", 0.4)])
def test_pipeline_corrupts_inputs_of_every_kind(digits, kind, strength):
    x = digits.x_train[:32]
    corruption = Corruption(kind, strength)
    epoch = [(a.numpy(), b.numpy()) for a, b in make_pipeline(x, 16, seed=1, corruption=corruption)]
    inputs = np.concatenate([a for a, _ in epoch])
    targets = np.concatenate([b for _, b in epoch])
    changed = np.any(inputs != targets, axis=-1)
    assert inputs.min() >= 0.0 and inputs.max() <= 1.0
    if kind == "salt-pepper":  # flipped pixels are 0 or 1 (a 0 flipped to 0 does not show)
        assert np.all(np.isin(inputs[changed], (0.0, 1.0)))
        assert 0.1 < changed.mean() < strength
    else:  # one mid-grey rectangle of about 40% of each image
        assert np.all(inputs[changed] == 0.5)
        erased = np.all(inputs == 0.5, axis=-1).mean(axis=(1, 2))
        assert np.all(np.abs(erased - strength) < 0.05), erased
    # validation: the same corruption every pass
    fixed = make_pipeline(x, 16, seed=1, corruption=corruption, shuffle=False, fixed_noise=True)
    first, second = ([a.numpy() for a, _ in fixed] for _ in range(2))
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


@pytest.mark.slow
def test_denoising_training_reports_denoise_metrics(digits):
    calls: list[Progress] = []
    data = small(digits, 128)
    config = TrainConfig(
        epochs=1,
        batch_size=32,
        corruption="erase",
        strength=0.3,
        validation_split=0.0,
        preview_count=3,
    )
    result = train(preset("classic"), data, config, progress=calls.append)
    metrics = result.test_metrics
    assert {
        f"{prefix}{key}" for prefix in ("", "denoise_", "corrupted_") for key in METRIC_KEYS
    } == set(metrics)
    # the corrupted inputs' own scores are those of the numpy corruption with the fixed seed
    corrupted = Corruption("erase", 0.3).apply(data.x_test)
    assert metrics["corrupted_mse"] == pytest.approx(summarize(data.x_test, corrupted)["mse"])
    outputs = reconstruct(result.built.autoencoder, corrupted)
    assert metrics["denoise_psnr"] == pytest.approx(
        summarize(data.x_test, outputs)["psnr"], rel=1e-5
    )
    last = calls[-1]
    assert last.preview_inputs.shape == (3, 28, 28, 1)
    assert np.array_equal(last.preview_inputs, corrupted[:3])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("optimizer", "loss", "optimizer_class", "loss_class"),
    [
        ("adam", "bce", "Adam", "BinaryCrossentropy"),
        ("sgd", "mse", "SGD", "MeanSquaredError"),
        ("rmsprop", "mae", "RMSprop", "MeanAbsoluteError"),
    ],
)
def test_each_optimizer_and_loss(digits, optimizer, loss, optimizer_class, loss_class):
    result = train(
        preset("classic"),
        small(digits, 64),
        TrainConfig(
            epochs=1,
            batch_size=32,
            optimizer=optimizer,
            loss=loss,
            learning_rate=0.01,
            validation_split=0.0,
            preview_count=0,
        ),
    )
    model = result.built.autoencoder
    assert type(model.optimizer).__name__ == optimizer_class
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.01)
    assert type(model.loss).__name__ == loss_class
    assert result.epochs_completed == 1 and math.isfinite(result.history["loss"][0])


def test_wrong_input_shape_names_both_shapes():
    x = np.zeros((8, 32, 32, 1), np.float32)
    dataset = Dataset(name="big", x_train=x, y_train=None, x_test=x[:2], y_test=None)
    with pytest.raises(ValueError) as info:
        train(preset("classic"), dataset, TrainConfig(epochs=1))
    message = str(info.value)
    assert "input_shape" in message and "[32, 32, 1]" in message and "[28, 28, 1]" in message
    assert message.endswith("Received: images=[32, 32, 1], input_shape=[28, 28, 1]")
    rgb = np.zeros((8, 28, 28, 3), np.float32)
    with pytest.raises(ValueError, match="channels differ"):
        train(preset("classic"), Dataset("rgb", rgb, None, rgb[:2], None), TrainConfig(epochs=1))


def test_too_few_images_for_a_validation_split():
    x = np.zeros((1, 28, 28, 1), np.float32)
    with pytest.raises(ValueError, match="num_train=1, validation_split=0.5"):
        train(
            preset("classic"),
            Dataset("one", x, None, x, None),
            TrainConfig(epochs=1, validation_split=0.5),
        )


@pytest.mark.slow
def test_nan_loss_fails_with_a_message():
    huge = np.full((64, 28, 28, 1), 1e30, np.float32)
    dataset = Dataset(name="huge", x_train=huge, y_train=None, x_test=huge[:8], y_test=None)
    calls: list[Progress] = []
    result = train(
        preset("classic"),
        dataset,
        TrainConfig(epochs=2, batch_size=16, loss="mse", validation_split=0.0),
        progress=calls.append,
    )
    assert result.failed and result.state == "failed" and not result.stopped
    assert result.epochs_completed == 0
    assert "diverged" in result.message and "inf" in result.message
    assert "lower learning rate" in result.message
    assert calls[-1].state == "failed" and calls[-1].message == result.message


@pytest.mark.slow
def test_a_loss_that_turns_nan_keeps_the_last_good_epoch(digits, monkeypatch):
    built = capture_build(monkeypatch)
    good: list[list[np.ndarray]] = []

    def poison(p: Progress) -> None:
        if p.message == "Epoch 1/3 done.":
            model = built[0].autoencoder
            weights = model.get_weights()
            good.append([w.copy() for w in weights])
            weights[-1] = np.full_like(weights[-1], np.nan)  # the output bias: NaN images
            model.set_weights(weights)

    result = train(
        preset("classic"),
        small(digits, 128),
        TrainConfig(epochs=3, batch_size=32, validation_split=0.0, preview_count=0),
        progress=poison,
        report_interval=0.0,
    )
    assert result.state == "failed" and result.epochs_completed == 1
    assert "kept the weights of epoch 1" in result.message
    final = result.built.autoencoder.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(final, good[0]))
    assert result.test_metrics and math.isfinite(result.test_metrics["mse"])


def test_early_stopping_keeps_the_best_epoch(digits):
    # A learning rate far below float32 resolution: the weights never change, so val_loss never
    # improves after epoch 1 and patience 1 stops training after epoch 2.
    result = train(
        preset("classic"),
        small(digits, 64),
        TrainConfig(
            epochs=6,
            batch_size=32,
            optimizer="sgd",
            learning_rate=1e-12,
            patience=1,
            validation_split=0.25,
            preview_count=0,
        ),
    )
    assert result.early_stopped and result.state == "finished" and not result.stopped
    assert result.epochs_completed == 2 and result.best_epoch == 1
    assert "Early stopping" in result.message


@pytest.mark.slow
def test_evaluate_run_matches_the_training_metrics(digits):
    data = small(digits, 64, n_test=32)
    result = train(
        preset("classic"),
        data,
        TrainConfig(epochs=1, batch_size=32, validation_split=0.0, preview_count=0),
    )
    assert evaluate_run(result.built, data.x_test) == pytest.approx(result.test_metrics)
    assert set(result.test_metrics) == set(METRIC_KEYS)
    # Chunked evaluation gives what summarize() gives on the whole test set.
    whole = summarize(data.x_test, reconstruct(result.built.autoencoder, data.x_test))
    assert evaluate_run(result.built, data.x_test, chunk=7) == pytest.approx(whole, rel=1e-6)
    with pytest.raises(ValueError, match="Received: chunk=0"):
        evaluate_run(result.built, data.x_test, chunk=0)


# ------------------------------------------------------------------------------------ strategies


def test_make_strategy_names_and_tf_config(monkeypatch):
    with pytest.raises(ValueError, match="Received: strategy='tpu'"):
        make_strategy("tpu")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(
        ValueError, match="TF_CONFIG environment variable.*Received: TF_CONFIG=None"
    ):
        make_strategy("multiworker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="Received: TF_CONFIG='{not json'"):
        make_strategy("multiworker")
    assert type(make_strategy("default")).__name__ == "_DefaultDistributionStrategy"
    assert is_chief(None)


# MirroredStrategy over two logical CPUs: tests/test_distributed.py (one TensorFlow process for
# train() and the command line's --strategy mirrored).


@pytest.mark.slow
def test_a_stop_during_validation_discards_that_epoch(digits):
    checks = {"n": 0}
    batches_per_epoch = 4  # 115 training images / 32; then 13 validation images in 1 batch

    def should_stop() -> bool:
        checks["n"] += 1
        return checks["n"] > batches_per_epoch  # the first check during validation

    result = train(
        preset("classic"),
        small(digits, 128),
        TrainConfig(epochs=3, batch_size=32, validation_split=0.1, preview_count=0),
        should_stop=should_stop,
    )
    assert checks["n"] == batches_per_epoch + 1
    assert result.stopped and result.epochs_completed == 0
    assert result.history == {"loss": [], "val_loss": []}


@pytest.mark.slow
def test_mixed_precision_keeps_the_last_layer_float32_and_saves_like_any_run(digits, tmp_path):
    from cae.recipe import DataRecipe, TestSplit
    from cae.request import TrainRequest
    from cae.store import load_run, save_trained

    data = small(digits, 64, n_test=16)
    config = TrainConfig(
        epochs=1, batch_size=32, validation_split=0.0, preview_count=0, precision="mixed_float16"
    )
    result = train(preset("classic"), data, config)
    assert result.state == "finished" and np.isfinite(result.history["loss"][0])
    layers = [layer for layer in result.built.decoder.layers if layer.weights]
    assert layers[0].dtype_policy.name == "mixed_float16"
    assert layers[-1].dtype_policy.name == "float32"
    assert type(result.built.autoencoder.optimizer).__name__ == "LossScaleOptimizer"
    assert result.built.autoencoder.output.dtype == "float32"
    import keras

    assert keras.config.dtype_policy().name == "float32"  # the process-wide policy is restored
    recipe = DataRecipe("mnist-sample", limit=64)
    request = TrainRequest(preset("classic"), recipe, config, "mixed")
    run_id = save_trained(result, request, TestSplit.of(data, recipe), root=tmp_path)
    assert load_run(run_id, tmp_path).built.autoencoder.count_params() == 2690
    with pytest.raises(ValueError, match="Received: precision='float8'"):
        TrainConfig(precision="float8")


def test_too_few_images_are_said_before_training_with_the_minimum():
    training.check_enough_images(2, 0.1)  # one to validate, one to train on
    with pytest.raises(ValueError, match="use at least 2 training images.*Received: num_train=1"):
        training.check_enough_images(1, 0.1)
    training.check_enough_images(1, 0.0)
    with pytest.raises(ValueError, match="there are no training images"):
        training.check_enough_images(0, 0.0)


@pytest.mark.slow
def test_uint8_images_give_the_float32_batches_and_the_same_training(digits):
    """Images held as uint8 are made float32 in the pipeline, per batch: the same values as
    ``as_float`` (every byte value, both gather paths), and so the same training, metrics and
    weights as the float32 copy of the same images."""
    every = np.arange(256 * 4, dtype=np.int64).reshape(4, 16, 16, 1) % 256
    every = every.astype(np.uint8)
    for copy in (True, False):
        batches = [
            a.numpy()
            for a, _ in make_pipeline(every, 4, seed=0, shuffle=False, copy_to_tensor=copy)
        ]
        assert batches[0].dtype == np.float32
        assert np.array_equal(np.concatenate(batches), as_float(every))
    held = small(digits, 96, n_test=40)
    assert held.x_train.dtype == np.uint8
    floats = Dataset("f", as_float(held.x_train), None, as_float(held.x_test), None)
    config = TrainConfig(
        epochs=1,
        batch_size=32,
        validation_split=0.25,
        corruption="salt-pepper",
        strength=0.1,
        preview_count=3,
    )
    a, b = (train(preset("classic"), data, config) for data in (held, floats))
    assert a.history == b.history and a.test_metrics == b.test_metrics
    assert a.weights_digest == b.weights_digest
    assert evaluate_run(a.built, held.x_test, chunk=7) == pytest.approx(
        evaluate_run(a.built, floats.x_test), rel=1e-6
    )
    recon = reconstruct(a.built.autoencoder, held.x_test, batch_size=16)
    assert np.array_equal(recon, reconstruct(a.built.autoencoder, floats.x_test, batch_size=16))


@pytest.mark.slow
def test_evaluation_chunks_are_bounded_in_bytes(digits, monkeypatch):
    """Big images are evaluated a few at a time (EVAL_CHUNK_BYTES as float32), with the same
    result as one chunk."""
    data = small(digits, 32, n_test=20)
    result = train(
        preset("classic"), data, TrainConfig(epochs=1, batch_size=16, validation_split=0.0)
    )
    whole = evaluate_run(result.built, data.x_test)
    seen = []
    original = evaluation.as_float

    def recording(images):
        seen.append(len(images))
        return original(images)

    monkeypatch.setattr(evaluation, "as_float", recording)
    monkeypatch.setattr(evaluation, "EVAL_CHUNK_BYTES", 3 * 28 * 28 * 4)
    assert evaluate_run(result.built, data.x_test) == pytest.approx(whole, rel=1e-6)
    assert max(seen) == 3
