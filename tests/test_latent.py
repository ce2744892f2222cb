"""cae.latent with the real classic Keras model: encode, compiled decode, interpolation, statistics."""

import json

import numpy as np
import pytest

from cae.latent import Decoder, encode, interpolate, latent_statistics, make_decoder


@pytest.fixture(scope="module")
def built():
    from cae.builder import build
    from cae.spec import preset

    return build(preset("classic"))


@pytest.fixture(scope="module")
def decoder(built):
    return make_decoder(built.decoder)


def test_encode_shapes(built):
    images = np.random.default_rng(0).random((5, 28, 28, 1)).astype(np.float32)
    codes = encode(built.encoder, images, batch_size=2)
    assert codes.shape == (5, 7, 7, 1) and codes.dtype == np.float32
    np.testing.assert_allclose(codes, built.encoder(images).numpy(), atol=1e-6)
    assert encode(built.encoder, images[0]).shape == (7, 7, 1)
    with pytest.raises(ValueError, match=r"images.shape=\(5, 28, 28\)"):
        encode(built.encoder, images[..., 0])


def test_encode_bulk_uses_predict_path(built):
    images = np.random.default_rng(1).random((70, 28, 28, 1)).astype(np.float32)
    codes = encode(built.encoder, images, batch_size=8)  # 70 > 8 batches of 8: predict
    np.testing.assert_allclose(codes, built.encoder(images).numpy(), atol=1e-5)


def test_decoder_matches_the_keras_call(built, decoder):
    assert isinstance(decoder, Decoder)
    assert decoder.latent_shape == (7, 7, 1) and decoder.output_shape == (28, 28, 1)
    z = np.random.default_rng(2).random((7, 7, 1)).astype(np.float32) * 3
    image = decoder(z)
    assert image.shape == (28, 28, 1)
    np.testing.assert_allclose(image, built.decoder(z[None]).numpy()[0], atol=1e-6)
    batch = np.random.default_rng(3).random((4, 7, 7, 1)).astype(np.float32)
    np.testing.assert_allclose(decoder(batch), built.decoder(batch).numpy(), atol=1e-6)


def test_decoder_never_retraces(decoder):
    assert decoder.tracing_count == 1
    rng = np.random.default_rng(4)
    for i in range(20):
        shape = (7, 7, 1) if i % 2 else (1 + i % 5, 7, 7, 1)
        decoder(rng.normal(size=shape) * i)
    decoder(np.zeros((7, 7, 1), dtype=np.float64))  # other dtypes are cast, not retraced
    decoder([[[0.5]] * 7] * 7)
    assert decoder.tracing_count == 1


def test_decoder_rejects_bad_codes(decoder):
    with pytest.raises(ValueError, match=r"codes.shape=\(7, 7, 2\)"):
        decoder(np.zeros((7, 7, 2)))
    with pytest.raises(ValueError, match="NaN"):
        decoder(np.full((7, 7, 1), np.nan))
    assert decoder(np.zeros((0, 7, 7, 1))).shape == (0, 28, 28, 1)


def test_interpolate():
    a = np.zeros((7, 7, 1))
    b = np.full((7, 7, 1), 2.0)
    path = interpolate(a, b, 5)
    assert path.shape == (5, 7, 7, 1) and path.dtype == np.float32
    assert np.array_equal(path[0], a) and np.array_equal(path[-1], b)
    np.testing.assert_allclose(path[:, 0, 0, 0], [0, 0.5, 1, 1.5, 2])
    assert interpolate(a, b, 2).shape == (2, 7, 7, 1)
    for steps in (1, 0, 2.5, True):
        with pytest.raises(ValueError, match="steps"):
            interpolate(a, b, steps)
    with pytest.raises(ValueError, match="z_b.shape"):
        interpolate(a, np.zeros((7, 7, 2)), 3)


def test_latent_statistics_of_known_codes():
    codes = np.zeros((2, 2, 1, 2))
    codes[0, :, 0, 0] = [1, 2]
    codes[1, :, 0, 0] = [3, 6]
    codes[:, :, 0, 1] = -1
    stats = latent_statistics(codes)
    assert json.loads(json.dumps(stats)) == stats  # plain JSON data
    assert stats["shape"] == [2, 1, 2] and stats["count"] == 2
    assert stats["channel_min"] == [1.0, -1.0] and stats["channel_max"] == [6.0, -1.0]
    assert stats["channel_mean"] == [3.0, -1.0] and stats["channel_std"][1] == 0.0
    assert stats["channel_std"][0] == pytest.approx(np.std([1, 2, 3, 6]))
    assert stats["cell_mean"] == [[[2.0, -1.0]], [[4.0, -1.0]]]
    assert stats["cell_std"] == [[[1.0, 0.0]], [[2.0, 0.0]]]
    assert stats["min"] == -1.0 and stats["max"] == 6.0
    with pytest.raises(ValueError, match=r"shape=\(0, 2\)"):
        latent_statistics(np.zeros((0, 2)))
