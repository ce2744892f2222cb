"""The Keras builder, and agreement of cae.shapes with the models Keras builds."""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cae.builder import build, keras_rows, load_model, save_model
from cae.shapes import ShapeError, compute_shapes
from cae.spec import (
    ACTIVATIONS,
    ArchitectureSpec,
    BatchNorm,
    Conv,
    Crop,
    Deconv,
    Dropout,
    Pad,
    Pool,
    Upsample,
    preset,
)

pairs = st.tuples(st.integers(1, 5), st.integers(1, 5))
strides = st.tuples(st.integers(1, 3), st.integers(1, 3))
paddings = st.sampled_from(["same", "valid"])
amounts = st.tuples(
    st.tuples(st.integers(0, 2), st.integers(0, 2)), st.tuples(st.integers(0, 2), st.integers(0, 2))
)


@st.composite
def deconvs(draw):
    stride = draw(strides)
    output_padding = draw(
        st.none() | st.tuples(st.integers(0, stride[0] - 1), st.integers(0, stride[1] - 1))
    )
    return Deconv(
        draw(st.integers(1, 6)), draw(pairs), stride, draw(paddings), draw(st.sampled_from(ACTIVATIONS)),
        output_padding,
    )  # fmt: skip


layers = st.one_of(
    st.builds(Conv, st.integers(1, 6), pairs, strides, paddings, st.sampled_from(ACTIVATIONS)),
    deconvs(),
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
    shape = (draw(st.integers(8, 64)), draw(st.integers(8, 64)), draw(st.sampled_from([1, 3])))
    encoder = tuple(draw(st.lists(layers, min_size=1, max_size=4)))
    decoder = tuple(draw(st.lists(layers, min_size=0, max_size=4)))
    spec = ArchitectureSpec("generated", shape, encoder, decoder)
    # Through the JSON form too, so the generated specs are ones a user could write.
    return ArchitectureSpec.from_dict(spec.to_dict())


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(specs())
def test_shapes_agree_with_keras(spec):
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


@pytest.mark.parametrize("name", ["classic", "keras-denoiser", "deep"])
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
