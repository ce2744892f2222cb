"""The Keras builder, and agreement of cae.shapes with the models Keras builds and with what
TensorFlow runs on real batches (one forward and backward step each)."""

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cae.builder import build, keras_rows, load_model, make_keras_layer, save_model
from cae.shapes import ShapeError, compute_shapes, needs_onednn_off
from cae.spec import (
    ACTIVATIONS,
    PADDINGS,
    ArchitectureSpec,
    BatchNorm,
    Conv,
    Crop,
    Deconv,
    Depthwise,
    Dropout,
    Pad,
    Pool,
    SepConv,
    Upsample,
    Variational,
    preset,
)

pairs = st.tuples(st.integers(1, 5), st.integers(1, 5))  # even kernels (2, 4) too
strides = st.tuples(st.integers(1, 3), st.integers(1, 3))
paddings = st.sampled_from(["same", "valid"])
amounts = st.tuples(
    st.tuples(st.integers(0, 2), st.integers(0, 2)), st.tuples(st.integers(0, 2), st.integers(0, 2))
)


def dilations(draw, stride):
    """A dilation of 1-3 per axis with strides 1; 1 otherwise (Keras refuses both above 1)."""
    if max(stride) > 1:
        return (1, 1)
    return draw(st.tuples(st.integers(1, 3), st.integers(1, 3)))


@st.composite
def convs(draw):
    stride = draw(strides)
    return Conv(
        draw(st.integers(1, 6)), draw(pairs), stride, draw(paddings), draw(st.sampled_from(ACTIVATIONS)),
        dilations(draw, stride),
    )  # fmt: skip


@st.composite
def deconvs(draw):
    """Every output_padding below the strides (0 included, with odd and even kernels) or none."""
    stride = draw(strides)
    output_padding = draw(
        st.none() | st.tuples(st.integers(0, stride[0] - 1), st.integers(0, stride[1] - 1))
    )
    return Deconv(
        draw(st.integers(1, 6)), draw(pairs), stride, draw(paddings), draw(st.sampled_from(ACTIVATIONS)),
        output_padding, dilations(draw, stride),
    )  # fmt: skip


@st.composite
def separables(draw):
    """Separable and depthwise convolutions: strides and a dilation above 1 together too (Keras
    runs both there), depth multipliers 1-3."""
    stride = draw(strides)
    dilation = draw(st.tuples(st.integers(1, 3), st.integers(1, 3)))
    fields = dict(
        kernel=draw(pairs), strides=stride, padding=draw(paddings),
        activation=draw(st.sampled_from(ACTIVATIONS)), dilation=dilation,
        depth_multiplier=draw(st.integers(1, 3)),
    )  # fmt: skip
    if draw(st.booleans()):
        return SepConv(draw(st.integers(1, 6)), **fields)
    return Depthwise(**fields)


layers = st.one_of(
    convs(),
    deconvs(),
    separables(),
    st.builds(Pool, st.sampled_from(["max", "avg"]), pairs, st.none() | strides, paddings),
    st.builds(
        Upsample,
        st.tuples(st.integers(1, 3), st.integers(1, 3)),
        st.sampled_from(["nearest", "bilinear"]),
    ),
    st.builds(Crop, amounts),
    st.builds(Pad, amounts),
    st.just(BatchNorm()),
    st.builds(Dropout, st.floats(0, 0.5)),
)


@st.composite
def specs(draw):
    shape = (draw(st.integers(4, 32)), draw(st.integers(4, 32)), draw(st.sampled_from([1, 3])))
    encoder = tuple(draw(st.lists(layers, min_size=1, max_size=4)))
    decoder = tuple(draw(st.lists(layers, min_size=0, max_size=4)))
    variational = draw(st.none() | st.builds(Variational, st.floats(0.1, 4.0), st.integers(0, 3)))
    spec = ArchitectureSpec("generated", shape, encoder, decoder, variational)
    # Through the JSON form too, so the generated specs are ones a user could write.
    return ArchitectureSpec.from_dict(spec.to_dict())


def train_step(model, images: np.ndarray, target: np.ndarray) -> tuple[int, ...]:
    """One real training step's TensorFlow work, eagerly: forward on the batch in training mode,
    mean squared error, and the gradient of every trainable weight (backward). A compiled
    train_on_batch traces a graph per model, about ten times slower here, and the optimizer's
    update adds a fifth to this test's time without running any layer again. Returns the shape
    TensorFlow computed."""
    import keras
    import tensorflow as tf

    with tf.GradientTape() as tape:
        output = model(images, training=True)
        loss = keras.ops.mean(keras.ops.square(output - target))
    gradients = tape.gradient(loss, model.trainable_variables)
    assert all(gradient is not None for gradient in gradients)
    assert np.isfinite(float(loss))
    return tuple(output.shape)


def runs_as_computed(spec, built=None) -> None:
    """Train one step of the spec's autoencoder (built here unless given) on a real batch of two
    images: TensorFlow's output must be the shape cae.shapes gives (the input when they match).
    A design that trains with oneDNN off (cae.shapes.needs_onednn_off) runs forward only in this
    process, which has oneDNN on: its backward pass can crash the process (forward passes never
    did); tests/test_jobs.py and test_cli_train.py train such designs with oneDNN off."""
    report = compute_shapes(spec, with_fixes=False)
    built = built or build(spec, require_match=False)
    images = np.random.default_rng(0).random((2, *spec.input_shape), dtype=np.float32)
    if needs_onednn_off(spec):
        assert tuple(built.autoencoder(images, training=True).shape) == (2, *report.output_shape)
        return
    target = images if report.matches else np.zeros((2, *report.output_shape), np.float32)
    assert train_step(built.autoencoder, images, target) == (2, *report.output_shape)


@pytest.mark.slow
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(specs(), st.integers(0, 10))
def test_shapes_agree_with_keras_and_with_a_real_training_step(spec, pick):
    """Keras's symbolic shapes agree with ours, and so does TensorFlow on a real batch: every spec
    the shape check accepts trains one step (those that match, and those that do not), and a
    suggested fix must come back to the input shape and, for about a fifth, train one step."""
    try:
        report = compute_shapes(spec)
    except ShapeError:
        assume(False)
        return
    built = build(spec, require_match=False)
    assert keras_rows(built) == [row.as_dict() for row in report.rows]
    assert tuple(built.encoder.output.shape[1:]) == report.latent_shape
    assert tuple(built.autoencoder.output.shape[1:]) == report.output_shape
    assert built.autoencoder.count_params() == report.total_params
    runs_as_computed(spec, built)
    if report.fixes:
        fixed = report.fixes[pick % len(report.fixes)].spec
        assert compute_shapes(fixed).matches
        if pick < 2:  # about a fifth of them: this test stays near ten seconds on two cores
            runs_as_computed(fixed)


def deconv_cases():
    """Transposed convolutions over even and odd kernels, each padding, every output_padding
    (none, 0 up to below the strides), strides 1-3 and dilations 1-3 (with strides 1)."""
    for k, s, d, padding in itertools.product((1, 2, 3, 4), (1, 2, 3), (1, 2, 3), PADDINGS):
        if s > 1 and d > 1:
            continue
        for output_padding in (None, *range(s)):
            extra = None if output_padding is None else (output_padding, output_padding)
            yield Deconv(2, (k, k), (s, s), padding, "linear", extra, (d, d))
    yield Deconv(2, (4, 3), (2, 2), "same", "linear", (0, 0))  # one axis only
    yield Deconv(2, (2, 2), (1, 1), "same", "linear", (0, 0), (2, 1))  # span 3x2


@pytest.mark.slow
def test_transposed_convolutions_run_as_computed_or_are_refused_as_tensorflow_refuses():
    """Each case: the shape check accepts it and TensorFlow computes our shape on a real batch, or
    the check refuses it in one line, TensorFlow aborts on it, and every fix offered runs as
    computed. (A 1x1 kernel with strides runs forward only: see runs_as_computed.)"""
    import keras

    refused = 0
    for layer in deconv_cases():
        spec = ArchitectureSpec("deconv", (5, 6, 1), (layer,), ())
        try:
            report = compute_shapes(spec)
        except ShapeError as error:
            refused += 1
            x = keras.Input((5, 6, 1))
            make_keras_layer(layer, "refused")(x)  # Keras gives it a shape ...
            images = np.ones((2, 5, 6, 1), np.float32)
            # ... which TensorFlow cannot run: "Dimension 1 in both shapes must be equal", or
            # oneDNN's "could not create a primitive descriptor", depending on the kernel.
            with pytest.raises(Exception):  # noqa: B017
                make_keras_layer(layer, "refused")(images)
            assert "TensorFlow cannot run" in str(error) and "Received: " in str(error)
            assert len(str(error).splitlines()) == 1
            assert error.fixes, str(error)
            for fix in error.fixes:
                runs_as_computed(fix.spec)
            continue
        assert report.rows[0].output_shape[2] == 2
        runs_as_computed(spec)
    assert (
        refused == 10
    )  # every even span (k = 2, 4 with d = 1, 3) with "same" and output_padding 0


@pytest.mark.parametrize(
    "layer",
    [
        Conv(3, (1, 1), (2, 2)),
        Conv(3, (1, 1), (1, 3), "valid"),
        Conv(3, (1, 5), (3, 1), "valid"),
        Conv(3, (3, 1), (2, 2)),
        Deconv(3, (1, 1), (2, 1)),
        Deconv(3, (1, 3), (2, 2)),
    ],
    ids=["conv-1x1", "conv-1x1-valid", "conv-1x5", "conv-3x1", "deconv-1x1", "deconv-1x3"],
)
def test_kernels_one_tap_wide_along_a_strided_axis_run_forward_as_computed(layer):
    """A kernel 1 tap wide along an axis strided by 2 or more: Keras builds it with our shape and
    TensorFlow computes it on a real batch with oneDNN on (forward: what the server runs on saved
    models). Its training needs oneDNN off, so it is trained in tests/test_jobs.py."""
    spec = ArchitectureSpec("strided", (9, 10, 2), (layer,), ())
    built = build(spec, require_match=False)
    report = compute_shapes(spec)
    assert tuple(built.autoencoder.output.shape[1:]) == report.output_shape
    assert built.autoencoder.count_params() == report.total_params
    runs_as_computed(spec, built)


def test_strides_with_dilation_are_refused_as_keras_refuses():
    import keras

    from cae.spec import SpecError, layer_from_dict

    for kind, strides, dilation in itertools.product(
        ("conv", "deconv"), ((1, 1), (2, 1), (1, 3)), ((1, 1), (1, 2), (2, 2))
    ):
        data = {"type": kind, "filters": 1, "strides": list(strides), "dilation": list(dilation)}
        cls = keras.layers.Conv2D if kind == "conv" else keras.layers.Conv2DTranspose
        try:
            cls(1, 3, strides=strides, dilation_rate=dilation)
            keras_refuses = False
        except ValueError:
            keras_refuses = True
        try:
            layer_from_dict(data, "encoder[0]")
            we_refuse = False
        except SpecError as error:
            we_refuse = True
            assert str(error).startswith("encoder[0]: Keras cannot combine strides")
            assert "Received: strides=" in str(error)
        assert we_refuse == keras_refuses, data


def test_classic_model():
    built = build(preset("classic"))
    assert built.autoencoder.count_params() == 2690
    assert tuple(built.encoder.output.shape[1:]) == (7, 7, 1)
    assert tuple(built.autoencoder.output.shape[1:]) == (28, 28, 1)
    assert built.autoencoder.get_layer("encoder") is built.encoder
    assert built.autoencoder.get_layer("decoder") is built.decoder
    assert tuple(built.decoder.input.shape[1:]) == (7, 7, 1)
    names = [layer.name for model in (built.encoder, built.decoder) for layer in model.layers]
    assert len(names) == len(set(names))
    assert "encoder_0_conv16_3x3" in names and "decoder_4_conv1_1x3" in names


def test_weights_are_shared_between_autoencoder_and_parts():
    built = build(preset("classic"))
    images = np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)
    whole = built.autoencoder(images).numpy()
    parts = built.decoder(built.encoder(images)).numpy()
    np.testing.assert_array_equal(whole, parts)


@pytest.mark.parametrize("name", ["classic", "keras-denoiser", "deep", "wide"])
def test_keras_save_and_load_round_trip(tmp_path, name):
    built = build(preset(name))
    path = tmp_path / "model.keras"
    save_model(built.autoencoder, path)
    loaded = load_model(path, preset(name))
    images = np.random.default_rng(1).random((2, 28, 28, 1), dtype=np.float32)
    np.testing.assert_array_equal(
        built.autoencoder(images).numpy(), loaded.autoencoder(images).numpy()
    )
    np.testing.assert_array_equal(built.encoder(images).numpy(), loaded.encoder(images).numpy())
    code = built.encoder(images)
    np.testing.assert_array_equal(built.decoder(code).numpy(), loaded.decoder(code).numpy())
    assert loaded.spec == preset(name)


def test_mismatched_spec_is_refused_with_the_suggested_fix():
    spec = preset("classic").with_layers(decoder=preset("classic").decoder[2:])
    with pytest.raises(ValueError, match="Suggested: .*Received: output_shape=\\(14, 14, 1\\)"):
        build(spec)
