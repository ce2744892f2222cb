"""Variational designs: the spec field, the two code maps' shapes, KL and sampling against closed
forms, training with both loss terms, and a run saved and loaded under safe_mode."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from cae.shapes import compute_shapes, format_table
from cae.spec import ArchitectureSpec, SpecError, Variational, preset


def variational(name: str = "classic", beta: float = 1.0, warmup: int = 0) -> ArchitectureSpec:
    return dataclasses.replace(preset(name), variational=Variational(beta, warmup))


# ------------------------------------------------------------------------------------ spec


def test_spec_field_round_trips_and_absent_means_plain():
    spec = variational(beta=2.5, warmup=3)
    data = spec.to_dict()
    assert data["variational"] == {"beta": 2.5, "warmup_epochs": 3}
    assert ArchitectureSpec.from_json(spec.to_json()) == spec
    plain = preset("classic")
    assert "variational" not in plain.to_dict()
    assert ArchitectureSpec.from_dict(plain.to_dict()).variational is None
    short = {**plain.to_dict(), "variational": {}}  # defaults: beta 1, no warm-up
    assert ArchitectureSpec.from_dict(short).variational == Variational(1.0, 0)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({"beta": 0}, "'beta' must be a number above 0"),
        ({"beta": -1.0}, "'beta' must be a number above 0"),
        ({"beta": "1"}, "Received: beta='1'"),
        ({"beta": math.inf}, "'beta'"),
        ({"beta": True}, "'beta'"),
        ({"beta": 1e9}, "at most 1000"),
        ({"warmup_epochs": -1}, "'warmup_epochs' must be at least 0"),
        ({"warmup_epochs": 2.5}, "'warmup_epochs' must be an integer"),
        ({"gamma": 1}, "unknown key 'gamma'"),
        (True, "'variational' must be a JSON object"),
    ],
)
def test_spec_field_is_validated(value, words):
    data = {**preset("classic").to_dict(), "variational": value}
    with pytest.raises(SpecError, match="spec.variational") as error:
        ArchitectureSpec.from_dict(data)
    assert words in str(error.value)


def test_kl_weight_warms_up_linearly():
    schedule = Variational(beta=2.0, warmup_epochs=4)
    assert [schedule.weight(epoch) for epoch in range(6)] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]
    assert Variational(beta=0.5).weight(0) == 0.5


# ------------------------------------------------------------------------------------ shapes


def test_shapes_show_the_two_maps_and_count_them():
    plain = compute_shapes(preset("classic"))
    report = compute_shapes(variational())
    heads = [row for row in report.rows if row.head]
    assert [(row.location, row.output_shape, row.params) for row in heads] == [
        ("encoder[4] mean", (7, 7, 1), 73),
        ("encoder[4] log-var", (7, 7, 1), 73),
    ]
    assert all(row.label.startswith("Conv 1 3x3 same linear") for row in heads)
    assert report.latent_shape == (7, 7, 1) and report.matches
    assert report.total_params == plain.total_params + 73 == 2763
    assert report.encoder_params == plain.encoder_params + 73
    assert "variational (beta 1)" in format_table(report)
    assert [row.as_dict().get("head") for row in report.rows if row.part == "encoder"] == [
        None,
        None,
        None,
        None,
        "mean",
        "log-var",
    ]


def test_a_code_not_made_by_a_convolution_gets_two_1x1_maps():
    report = compute_shapes(variational("keras-denoiser"))
    heads = [row for row in report.rows if row.head]
    # the encoder ends with a pooling (4 layers): two 1x1 convolutions to its 32 channels follow
    assert [(row.index, row.output_shape, row.params) for row in heads] == [
        (4, (7, 7, 32), 32 * 32 + 32),
        (4, (7, 7, 32), 32 * 32 + 32),
    ]
    assert report.total_params == compute_shapes(preset("keras-denoiser")).total_params + 2 * 1056


@pytest.mark.parametrize("name", ["classic", "keras-denoiser", "deep"])
def test_keras_builds_what_the_shape_table_says(name):
    from cae.builder import build, keras_rows

    spec = variational(name)
    built = build(spec)
    report = compute_shapes(spec)
    assert keras_rows(built) == [row.as_dict() for row in report.rows]
    assert built.autoencoder.count_params() == report.total_params
    assert tuple(built.encoder.output_shape[1:]) == report.latent_shape
    assert built.variational and not build(preset(name)).variational


# ------------------------------------------------------------------------------------ KL, sampling


def test_kl_divergence_matches_the_closed_form():
    from cae.variational import kl_divergence

    # KL(N(mu, s^2) || N(0, 1)) = log(1 / s) + (s^2 + mu^2) / 2 - 1 / 2, summed over values
    mean = np.array([[1.0, 0.0, -0.5]], np.float32)
    sigma = np.array([[2.0, 1.0, 0.5]], np.float32)
    by_hand = sum(
        math.log(1 / s) + (s * s + m * m) / 2 - 0.5 for m, s in zip(mean[0], sigma[0], strict=True)
    )
    kl = np.asarray(kl_divergence(mean, np.log(sigma**2)))
    assert kl.shape == (1,)
    assert kl[0] == pytest.approx(by_hand, rel=1e-5)
    assert kl[0] == pytest.approx((2 - math.log(2)) + 0 + (math.log(2) + 0.25 - 0.5), rel=1e-5)
    zero = np.asarray(kl_divergence(np.zeros((4, 7, 7, 1)), np.zeros((4, 7, 7, 1))))
    assert np.allclose(zero, 0.0)


def test_sampling_layer_samples_by_the_reparameterisation_trick():
    import keras

    from cae.variational import sampling_layer_class

    layer_class = sampling_layer_class()
    mean = np.full((4000, 2, 2, 1), 1.5, np.float32)
    mean[:, 1] = -2.0
    log_var = np.zeros_like(mean)
    log_var[:, 0, 0] = math.log(4.0)  # sigma 2 in one cell, 1 elsewhere

    layer = layer_class(beta=1.0, values=784, seed=7)
    assert np.array_equal(np.asarray(layer([mean, log_var], training=False)), mean)
    z = np.asarray(layer([mean, log_var], training=True))
    assert z.shape == mean.shape and not np.array_equal(z, mean)
    assert np.allclose(z.mean(axis=0), mean[0], atol=0.1)
    assert np.allclose(z.var(axis=0), np.exp(log_var[0]), rtol=0.1)

    # zero log-variance: sample - mean is the seeded standard normal itself, the same per seed
    zeros = np.zeros((8, 2, 2, 1), np.float32)
    first = np.asarray(layer_class(seed=3)([mean[:8], zeros], training=True)) - mean[:8]
    again = np.asarray(layer_class(seed=3)([mean[:8], zeros], training=True)) - mean[:8]
    expected = np.asarray(keras.random.normal((8, 2, 2, 1), seed=keras.random.SeedGenerator(3)))
    assert np.allclose(first, again) and np.allclose(first, expected, atol=1e-6)


def test_sampling_layer_adds_weight_times_kl_per_input_value():
    from cae.variational import kl_divergence, sampling_layer_class

    layer = sampling_layer_class()(beta=3.0, values=784)
    mean = np.random.default_rng(0).normal(size=(5, 7, 7, 1)).astype(np.float32)
    log_var = np.full_like(mean, -0.5)
    layer([mean, log_var])
    kl = float(np.mean(np.asarray(kl_divergence(mean, log_var)))) / 784
    assert float(layer.losses[0]) == pytest.approx(3.0 * kl, rel=1e-5)
    layer.kl_weight.assign(0.0)  # the warm-up's first epoch
    layer([mean, log_var])
    assert float(layer.losses[0]) == 0.0
    assert float(layer.kl_tracker.result()) == pytest.approx(kl, rel=1e-5)


# ------------------------------------------------------------------------------------ training


@pytest.fixture(scope="module")
def digits():
    from cae.datasets import load_dataset

    return load_dataset("mnist-sample", limit=400, seed=0)


@pytest.mark.slow
def test_training_logs_both_terms_and_warms_up(digits):
    from cae.training import TrainConfig, train

    config = TrainConfig(epochs=3, batch_size=64, learning_rate=3e-3, preview_count=2)
    seen = []
    result = train(variational(beta=1.0, warmup=2), digits, config, progress=seen.append)
    history = result.history
    assert set(history) == {
        "loss",
        "val_loss",
        "recon_loss",
        "kl_loss",
        "val_recon_loss",
        "val_kl_loss",
    }
    assert all(len(values) == 3 for values in history.values())
    assert all(value > 0 for values in history.values() for value in values)
    # loss = recon + weight * kl, the weight 0, 0.5, then 1 (beta 1 over 2 warm-up epochs), to
    # float precision: the last batch is short (360 images, 5 x 64 + 40), and kl_loss once averaged batches
    # equally while Keras's loss weighs each by its images (val: 4% off over 7 + 1 batches)
    for epoch, weight in enumerate([0.0, 0.5, 1.0]):
        expected = history["recon_loss"][epoch] + weight * history["kl_loss"][epoch]
        assert history["loss"][epoch] == pytest.approx(expected, rel=1e-5)
        val = history["val_recon_loss"][epoch] + weight * history["val_kl_loss"][epoch]
        assert history["val_loss"][epoch] == pytest.approx(val, rel=1e-5)
    assert seen[-1].history["kl_loss"] == history["kl_loss"]  # the live curves have them too
    assert seen[-1].preview_reconstructions.shape == (2, 28, 28, 1)
    assert result.test_metrics["psnr"] > 0
    assert result.latent_stats["shape"] == [7, 7, 1]


@pytest.mark.slow
def test_a_variational_run_saves_and_loads_under_safe_mode(tmp_path, monkeypatch):
    import keras

    from cae import store
    from cae.builder import load_model
    from cae.latent import encode
    from tests.runs import make_trained_run

    run_id = make_trained_run(tmp_path, epochs=1, limit=300, spec=variational(beta=0.5))
    folder = tmp_path / run_id
    assert json.loads((folder / "spec.json").read_text())["variational"] == {
        "beta": 0.5,
        "warmup_epochs": 0,
    }
    history = json.loads((folder / "history.json").read_text())
    assert {"recon_loss", "kl_loss"} <= set(history)
    loaded = store.load_run(run_id, root=tmp_path)  # as the pages load it
    assert loaded.built.variational and loaded.spec.variational.beta == 0.5
    images = store.run_test_split(run_id, root=tmp_path).images[:8]
    # the .keras file itself, with the registered sampling layer, under safe_mode
    from cae.variational import REGISTERED_NAME, sampling_layer_class

    sampling_layer_class()
    monkeypatch.delitem(keras.saving.get_custom_objects(), REGISTERED_NAME)  # load_model names it
    direct = load_model(folder / "model.keras")
    assert direct.variational
    assert np.allclose(direct.autoencoder(images), loaded.built.autoencoder(images), atol=1e-6)
    codes = encode(loaded.built.encoder, images)
    mean, _ = loaded.built.posterior(images)
    assert np.allclose(codes, np.asarray(mean), atol=1e-6)  # the encoder gives the mean
    assert np.allclose(encode(direct.encoder, images), codes, atol=1e-6)
    info = store.get_run_info(run_id, root=tmp_path)
    assert info.params == 2763 and not info.broken


# ------------------------------------------------------------------------------------ sampling codes


@pytest.mark.slow
def test_random_codes_come_from_the_prior_or_the_fitted_gaussian():
    from cae.latent import brush_ranges, latent_statistics, sample_codes

    prior = sample_codes(5000, (7, 7, 1), variational=True, rng=np.random.default_rng(0))
    assert prior.shape == (5000, 7, 7, 1) and prior.dtype == np.float32
    assert abs(prior.mean()) < 0.01 and abs(prior.std() - 1) < 0.01
    rng = np.random.default_rng(1)
    # codes whose values go together: (a, b) strongly correlated, c independent, d = -a
    a, c = rng.normal(0.0, 1.0, (2, 4000))
    b = 0.9 * a + np.sqrt(1 - 0.9**2) * rng.normal(0.0, 1.0, 4000)
    codes = (3.0 + 0.5 * np.stack([a, b, c, -a], axis=1)).reshape(4000, 1, 2, 2).astype(np.float32)
    stats = latent_statistics(codes)
    fitted = sample_codes(20000, (1, 2, 2), variational=False, codes=codes, rng=rng)
    assert fitted.shape == (20000, 1, 2, 2) and fitted.dtype == np.float32
    flat = fitted.reshape(-1, 4).astype(np.float64)
    assert np.allclose(flat.mean(axis=0), 3.0, atol=0.03)
    # the covariance of the codes, correlations included (clipping to the range trims a little)
    expected = np.cov(codes.reshape(-1, 4), rowvar=False)
    assert np.allclose(np.cov(flat, rowvar=False), expected, atol=0.03)
    assert np.corrcoef(flat[:, 0], flat[:, 3])[0, 1] < -0.99  # d = -a is kept, not drawn alone
    channels = codes.reshape(-1, 2)
    assert np.all(fitted.reshape(-1, 2) >= channels.min(axis=0))
    assert np.all(fitted.reshape(-1, 2) <= channels.max(axis=0))
    one = sample_codes(1, (1, 2, 2), variational=False, codes=codes[:1], rng=rng)
    assert np.array_equal(one, codes[:1])  # one code: nothing varies
    with pytest.raises(ValueError, match="Received: codes=None"):
        sample_codes(1, (2, 2, 2), variational=False)
    with pytest.raises(
        ValueError, match=r"Received: codes shape=\[4000, 1, 2, 2\], latent_shape=\[2, 2, 2\]"
    ):
        sample_codes(1, (2, 2, 2), variational=False, codes=codes)
    assert brush_ranges(None, 2, variational=True) == ([-3.0, -3.0], [3.0, 3.0])
    lows, highs = brush_ranges(stats, 2, variational=False)
    assert lows == stats["channel_min"] and highs == stats["channel_max"]


@pytest.mark.slow
def test_cli_trains_a_variational_run_and_samples_it(tmp_path, capsys):
    from cae.__main__ import main

    models = tmp_path / "models"
    models.mkdir()
    base = ["--preset", "classic", "--dataset", "mnist-sample", "--limit", "200", "--epochs", "1"]
    status = main(["train", *base, "--variational", "--beta", "0.5", "--out", str(models / "v")])
    assert status == 0, capsys.readouterr().err
    spec = json.loads((models / "v" / "spec.json").read_text())
    assert spec["variational"] == {"beta": 0.5, "warmup_epochs": 0}
    history = json.loads((models / "v" / "history.json").read_text())
    assert {"recon_loss", "kl_loss", "val_recon_loss", "val_kl_loss"} <= set(history)
    assert main(["train", *base, "--out", str(models / "p")]) == 0
    capsys.readouterr()

    # 200 training codes of 49 values: too few for a 10-component mixture (500), one Gaussian
    for run, sampler, words in (
        ("v", "prior", "the prior N(0, 1)"),
        ("v", "gmm", "fitted to 200 training codes"),
        ("p", "gmm", "too few for 10 components of 49 values (at least 500): one Gaussian"),
        ("p", "gaussian", "a Gaussian (the codes' mean and covariance) fitted to 200 training"),
    ):
        out = tmp_path / f"{run}.npy"
        command = ["sample", run, "--root", str(models), "--n", "7", "--sampler", sampler]
        status = main([*command, "--out", str(out)])
        printed = capsys.readouterr()
        assert status == 0, printed.err
        assert words in printed.out
        samples = np.load(out, allow_pickle=False)
        assert samples.shape == (7, 28, 28, 1) and samples.dtype == np.float32
        assert samples.min() >= 0.0 and samples.max() <= 1.0
        again = tmp_path / f"{run}-again.npy"
        main([*command, "--out", str(again)])
        assert np.array_equal(np.load(again), samples)  # seed 0 by default
    refused = main(
        ["sample", "p", "--root", str(models), "--n", "7", "--sampler", "prior"]
        + ["--out", str(tmp_path / "p-prior.npy")]
    )
    assert refused == 2 and "has no prior to sample" in capsys.readouterr().err

    assert main(["train", *base, "--beta", "2", "--out", str(models / "x")]) == 2
    assert "add --variational" in capsys.readouterr().err
    bad = main(["sample", "v", "--root", str(models), "--n", "0", "--out", str(tmp_path / "z.npy")])
    assert bad == 2 and "--n must be from 1" in capsys.readouterr().err
    assert not (models / "x").exists() and not (tmp_path / "z.npy").exists()


def test_cli_shapes_show_the_two_code_maps(tmp_path, capsys):
    from cae.__main__ import main

    path = tmp_path / "vae.json"
    path.write_text(variational("keras-denoiser", beta=2.0).to_json())
    assert main(["shapes", "--spec", str(path)]) == 0
    table = capsys.readouterr().out
    assert "Conv 32 1x1 same linear (mean)" in table and "(log-var)" in table
    assert "parameters 30,465" in table and "variational (beta 2)" in table
    assert main(["shapes", "--spec", str(path), "--keras", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row.get("head") for row in rows if row["index"] == 4 and row["part"] == "encoder"] == [
        "mean",
        "log-var",
    ]
    assert main(["shapes", "--spec", str(path), "--keras"]) == 0
    assert capsys.readouterr().out.count("1,056  ") == 2
