"""Unit tests of cae.inspection: PCA, activations, worked convolution/pooling, up-sampling helpers."""

from __future__ import annotations

import numpy as np
import pytest

from cae import inspection as ci
from cae.shapes import compute_shapes
from cae.spec import preset


@pytest.fixture(scope="module")
def classic():
    """The classic network, untrained (random weights, biases set non-zero), and an image."""
    from cae.builder import build

    spec = preset("classic")
    built = build(spec)
    rng = np.random.default_rng(0)
    for model in (built.encoder, built.decoder):
        for layer in model.layers:
            weights = layer.get_weights()
            if len(weights) == 2:  # a non-zero bias so that it is really added
                layer.set_weights([weights[0], rng.normal(0, 0.1, weights[1].shape)])
    image = rng.random(spec.input_shape).astype(np.float32)
    return spec, built, image, ci.activations(built, image)


def test_pca_points_on_a_line_in_3d():
    direction = np.array([1.0, 2.0, 2.0]) / 3.0
    t = np.linspace(-2, 3, 11)
    codes = np.array([1.0, -1.0, 0.5]) + t[:, None] * direction
    points, ratios, components = ci.pca_2d(codes)
    assert points.shape == (11, 2) and ratios.shape == (2,) and components.shape == (2, 3)
    np.testing.assert_allclose(components[0], direction, atol=1e-9)  # signed: largest loading > 0
    np.testing.assert_allclose(ratios, [1.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(points[:, 0], t - t.mean(), atol=1e-9)
    np.testing.assert_allclose(points[:, 1], 0.0, atol=1e-9)


def test_pca_matches_the_covariance_eigenvectors():
    rng = np.random.default_rng(1)
    codes = rng.normal(size=(200, 2, 2, 1)) * np.array([3.0, 1.0, 0.5, 0.1]).reshape(1, 2, 2, 1)
    points, ratios, components = ci.pca_2d(codes)
    x = codes.reshape(200, -1)
    values, vectors = np.linalg.eigh(np.cov(x, rowvar=False))
    order = np.argsort(values)[::-1]
    np.testing.assert_allclose(ratios, values[order][:2] / values.sum(), rtol=1e-9)
    for axis in range(2):
        assert abs(abs(components[axis] @ vectors[:, order[axis]]) - 1) < 1e-9
    with pytest.raises(ValueError, match="Received"):
        ci.pca_2d(np.zeros((1, 4)))


def test_activation_shapes_match_the_shape_table(classic):
    spec, built, _, acts = classic
    rows = compute_shapes(spec).rows
    assert [loc for _, loc, _ in acts] == [row.location for row in rows]
    assert [a.shape for _, _, a in acts] == [row.output_shape for row in rows]
    kernels = ci.conv_kernels(built)
    assert [loc for loc, _, _ in kernels] == [
        "encoder[0]", "encoder[2]", "encoder[4]", "decoder[0]", "decoder[2]", "decoder[4]"
    ]  # fmt: skip
    assert kernels[1][1].shape == (3, 3, 16, 8) and kernels[1][2].shape == (8,)


@pytest.mark.parametrize(
    ("location", "row", "col", "channel", "padded"),
    [
        ("encoder[0]", 14, 14, 3, 0),  # interior
        ("encoder[0]", 0, 0, 5, 5),  # corner: 5 of 9 cells are 'same' zero padding
        ("encoder[2]", 13, 6, 2, 3),  # bottom border, 16 input channels
        ("decoder[4]", 27, 0, 0, 1),  # the 1x3 kernel at the left border
    ],
)
def test_worked_convolution_equals_keras(classic, location, row, col, channel, padded):
    spec, built, image, acts = classic
    work = ci.worked_convolution(built, spec, image, location, row, col, channel, acts=acts)
    assert int(work["padded"].sum()) == padded
    assert abs(work["value"] - work["keras_value"]) < 1e-5
    assert work["products_sum"] == pytest.approx(float(work["products"].sum()))
    assert work["pre_activation"] == pytest.approx(work["products_sum"] + work["bias"])
    assert np.all(work["patch"][work["padded"]] == 0)


def test_worked_convolution_rejects_other_layers(classic):
    spec, built, image, acts = classic
    with pytest.raises(ValueError, match="Received"):
        ci.worked_convolution(built, spec, image, "encoder[1]", 0, 0, 0, acts=acts)
    with pytest.raises(ValueError, match="Received"):
        ci.worked_convolution(built, spec, image, "encoder[0]", 28, 0, 0, acts=acts)


def test_pooling_window_and_keras(classic):
    spec, _, image, acts = classic
    result = ci.worked_pooling(np.array([[1.0, 4.0], [2.0, 3.0]]))
    assert (result["max"], result["avg"], result["argmax"]) == (4.0, 2.5, (0, 1))
    pool = ci.pooling_example(spec, image, acts, "encoder[1]", 3, 4, 7)
    assert pool["input_origin"] == (6, 8)
    assert pool["value"] == pytest.approx(pool["keras_value"], abs=1e-6)


def test_upsample_and_transposed_convolution_on_known_grids():
    grid = np.array([[1.0, 2.0], [3.0, 4.0]])
    demo = ci.upsample_vs_transpose(grid, kernel=np.ones((2, 2)), strides=(2, 2))
    np.testing.assert_array_equal(
        demo["upsampled"], [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    )
    np.testing.assert_array_equal(demo["transposed"], demo["upsampled"])  # 2x2 ones, stride 2
    tent = ci.upsample_vs_transpose(np.ones((3, 3)))
    assert tent["transposed"].shape == (7, 7)
    assert "(3 - 1) x 2 + 3 = 7" in tent["transpose_formula"]
    assert tent["transposed"][2, 2] == pytest.approx(1.0)  # four corners of 0.25 overlap


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_transposed_convolution_matches_keras(padding):
    import keras

    rng = np.random.default_rng(2)
    grid = rng.normal(size=(3, 3))
    kernel = rng.normal(size=(3, 3))
    layer = keras.layers.Conv2DTranspose(1, 3, strides=2, padding=padding, use_bias=False)
    layer.build((1, 3, 3, 1))
    layer.set_weights([kernel.reshape(3, 3, 1, 1)])
    expected = np.asarray(layer(grid.reshape(1, 3, 3, 1).astype(np.float32)))[0, :, :, 0]
    got = ci.transposed_conv_2d(grid, kernel, (2, 2), padding)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_mosaics():
    maps = np.arange(2 * 3 * 20, dtype=float).reshape(2, 3, 20)
    image = ci.feature_mosaic(maps, max_tiles=16, columns=8, scale=2, gap=1)
    assert image.shape == (2 * (4 + 1) - 1, 8 * (6 + 1) - 1, 3) and image.dtype == np.uint8
    mosaic = ci.kernel_mosaic(np.ones((3, 3, 2, 4)))
    assert mosaic.shape == (2 * 4 - 1, 4 * 4 - 1)
    assert np.isnan(mosaic[3, 0]) and mosaic[0, 0] == 1


def test_worked_convolution_of_a_dilated_kernel_equals_keras():
    """A 3x3 kernel with dilation 2 reads every other pixel; the hand calculation must too."""
    import keras

    from cae.builder import build
    from cae.spec import ArchitectureSpec

    data = preset("classic").to_dict()
    data["encoder"][0]["dilation"] = 2
    spec = ArchitectureSpec.from_dict(data)
    keras.utils.set_random_seed(3)
    built = build(spec)
    image = np.random.default_rng(3).random((28, 28, 1)).astype(np.float32)
    for row, col in ((14, 14), (0, 1), (27, 27)):
        work = ci.worked_convolution(built, spec, image, "encoder[0]", row, col, 2)
        assert work["dilation"] == (2, 2)
        assert abs(work["value"] - work["keras_value"]) < 1e-5
        assert work["pre_activation"] == pytest.approx(work["products_sum"] + work["bias"])


def test_separable_and_depthwise_convolutions_are_worked_out_and_shown_as_keras_computes():
    """A separable and a depthwise convolution (strided and dilated, depth multiplier 2, biases
    set) folded into one dense kernel: the hand calculation equals Keras's value at interior and
    border positions, and the kernel view has the dense kernel's shape."""
    import keras

    from cae.builder import build
    from cae.spec import ArchitectureSpec, Depthwise, SepConv, Upsample

    spec = ArchitectureSpec(
        "separable",
        (16, 16, 3),
        (
            SepConv(5, (3, 3), (2, 2), "same", "tanh", (2, 1), 2),
            Depthwise((3, 2), (1, 1), "valid", "linear", (1, 2), 2),
        ),
        (Upsample((2, 2)), SepConv(3, (3, 3), activation="sigmoid")),
    )
    keras.utils.set_random_seed(5)
    built = build(spec, require_match=False)
    rng = np.random.default_rng(5)
    for model in (built.encoder, built.decoder):
        for layer in model.layers:
            weights = layer.get_weights()
            if weights:  # a non-zero bias so that it is really added
                layer.set_weights([*weights[:-1], rng.normal(0, 0.1, weights[-1].shape)])
    image = rng.random(spec.input_shape).astype(np.float32)
    acts = ci.activations(built, image)
    assert ci.sliding_convolutions(spec) == ["encoder[0]", "encoder[1]", "decoder[1]"]
    for location, row, col, channel in (
        ("encoder[0]", 0, 0, 4),
        ("encoder[0]", 4, 3, 1),
        ("encoder[1]", 1, 2, 7),  # output 7 reads input channel 3 alone
        ("encoder[1]", 5, 0, 0),
        ("decoder[1]", 11, 11, 2),
    ):
        work = ci.worked_convolution(built, spec, image, location, row, col, channel, acts=acts)
        assert abs(work["value"] - work["keras_value"]) < 1e-5, (location, row, col)
    kernels = dict((loc, (kernel, bias)) for loc, kernel, bias in ci.conv_kernels(built))
    assert kernels["encoder[0]"][0].shape == (3, 3, 3, 5)
    depthwise = kernels["encoder[1]"][0]
    assert depthwise.shape == (3, 2, 5, 10) and kernels["encoder[1]"][1].shape == (10,)
    assert np.all(depthwise[:, :, 0, 2:] == 0)  # input channel 0 feeds outputs 0 and 1 only
