"""ArchitectureSpec: JSON round trip, presets, validation messages."""

import json
import re

import pytest

from cae.shapes import compute_shapes, load_spec, mirror
from cae.spec import (
    ArchitectureSpec,
    Conv,
    Crop,
    Deconv,
    Pool,
    SpecError,
    Upsample,
    preset,
    preset_classic,
)

DESIGN_JSON = """
{
  "name": "classic",
  "input_shape": [28, 28, 1],
  "encoder": [
    {"type": "conv", "filters": 16, "kernel": [3, 3], "padding": "same", "activation": "relu"},
    {"type": "pool", "mode": "max", "size": [2, 2], "padding": "same"},
    {"type": "conv", "filters": 8, "kernel": [3, 3], "padding": "same", "activation": "relu"},
    {"type": "pool", "mode": "max", "size": [2, 2], "padding": "same"},
    {"type": "conv", "filters": 1, "kernel": [3, 3], "padding": "same", "activation": "relu"}
  ],
  "decoder": [
    {"type": "conv", "filters": 8, "kernel": [3, 3], "padding": "same", "activation": "relu"},
    {"type": "upsample", "size": [2, 2]},
    {"type": "conv", "filters": 16, "kernel": [3, 3], "padding": "same", "activation": "relu"},
    {"type": "upsample", "size": [2, 2]},
    {"type": "conv", "filters": 1, "kernel": [1, 3], "padding": "same", "activation": "sigmoid"}
  ]
}
"""


def test_design_json_loads_as_the_classic_preset():
    assert ArchitectureSpec.from_json(DESIGN_JSON) == preset_classic()


@pytest.mark.parametrize("name", ["classic", "keras-denoiser", "deep", "wide"])
def test_round_trip(name):
    spec = preset(name)
    assert ArchitectureSpec.from_dict(spec.to_dict()) == spec
    assert ArchitectureSpec.from_json(spec.to_json()) == spec
    assert json.loads(spec.to_json())["name"] == name


def test_round_trip_of_every_layer_type():
    data = {
        "name": "all",
        "input_shape": [32, 32, 3],
        "encoder": [
            {"type": "conv", "filters": 4, "kernel": 5, "strides": 2, "padding": "valid"},
            {"type": "batchnorm"},
            {"type": "dropout", "rate": 0.25},
            {"type": "pool", "mode": "avg", "size": [2, 1], "strides": [1, 1], "padding": "valid"},
            {"type": "pad", "amount": 1},
            {"type": "crop", "amount": [[0, 1], [2, 0]]},
        ],
        "decoder": [
            {"type": "deconv", "filters": 3, "kernel": [3, 2], "strides": 2, "output_padding": 1},
            {"type": "upsample", "size": 2, "interpolation": "bilinear"},
        ],
    }
    spec = ArchitectureSpec.from_dict(data)
    assert ArchitectureSpec.from_dict(spec.to_dict()) == spec
    assert spec.encoder[0] == Conv(4, (5, 5), (2, 2), "valid", "relu")
    assert spec.encoder[4].amount == ((1, 1), (1, 1))
    assert spec.encoder[5].amount == ((0, 1), (2, 0))
    assert spec.decoder[0] == Deconv(3, (3, 2), (2, 2), "same", "relu", (1, 1))


def test_defaults_follow_design():
    spec = ArchitectureSpec.from_dict(
        {
            "input_shape": [28, 28],
            "encoder": [{"type": "conv", "filters": 2}, {"type": "pool"}],
            "decoder": [],
        }
    )
    assert spec.input_shape == (28, 28, 1)
    assert spec.encoder[0] == Conv(2, (3, 3), (1, 1), "same", "relu")
    assert spec.encoder[1] == Pool("max", (2, 2), None, "same")
    assert spec.encoder[1].effective_strides == (2, 2)


@pytest.mark.parametrize(
    ("layer", "where", "fragment"),
    [
        ({"type": "conv", "filters": 0}, "encoder[1]", "Received: filters=0"),
        ({"type": "conv", "filters": 8, "kernel": [0, 3]}, "encoder[1]", "Received: kernel=[0, 3]"),
        ({"type": "conv", "filters": "8"}, "encoder[1]", "Received: filters='8'"),
        ({"type": "conv", "filters": 8, "bogus": 1}, "encoder[1]", "unknown key 'bogus'"),
        (
            {"type": "conv", "filters": 8, "activation": "magic"},
            "encoder[1]",
            "Received: activation='magic'",
        ),
        (
            {"type": "conv", "filters": 8, "padding": "full"},
            "encoder[1]",
            "Received: padding='full'",
        ),
        ({"type": "conv", "filters": True}, "encoder[1]", "Received: filters=True"),
        ({"type": "pool", "size": -2}, "encoder[1]", "Received: size=-2"),
        ({"type": "dropout", "rate": 1.5}, "encoder[1]", "Received: rate=1.5"),
        ({"type": "crop", "amount": [1, 2, 3]}, "encoder[1]", "Received: amount=[1, 2, 3]"),
        ({"type": "dense", "units": 3}, "encoder[1]", "Received: type='dense'"),
        ({"type": "conv", "filters": 100000}, "encoder[1]", "at most 1024 (limit)"),
        ("conv", "encoder[1]", "a layer must be a JSON object"),
    ],
)
def test_bad_layers_name_the_layer_and_the_value(layer, where, fragment):
    data = preset_classic().to_dict()
    data["encoder"][1] = layer
    with pytest.raises(SpecError) as info:
        ArchitectureSpec.from_dict(data)
    message = str(info.value)
    assert message.startswith(where), message
    assert fragment in message
    assert "Received:" in message


def test_deconv_output_padding_must_be_below_strides():
    data = preset_classic().to_dict()
    data["decoder"][0] = {"type": "deconv", "filters": 8, "strides": 2, "output_padding": 2}
    with pytest.raises(SpecError, match=r"decoder\[0\].*output_padding=2"):
        ArchitectureSpec.from_dict(data)


@pytest.mark.parametrize(
    ("patch", "fragment"),
    [
        ({"input_shape": [28, -1, 1]}, "input_shape=[28, -1, 1]"),
        ({"input_shape": "28x28"}, "input_shape='28x28'"),
        ({"extra": 1}, "unknown key 'extra'"),
        ({"encoder": []}, "'encoder' needs at least one layer"),
        ({"decoder": {"type": "conv"}}, "'decoder' must be a list"),
        ({"name": ""}, "'name' must be a non-empty string"),
        ({"encoder": [{"type": "dropout"}] * 65}, "at most 64 layers (limit)"),
    ],
)
def test_bad_top_level(patch, fragment):
    data = preset_classic().to_dict() | patch
    with pytest.raises(SpecError, match="Received") as info:
        ArchitectureSpec.from_dict(data)
    assert fragment in str(info.value)


def test_malformed_json_is_a_value_error():
    with pytest.raises(ValueError, match="not valid JSON"):
        ArchitectureSpec.from_json("{not json")


def test_kernel_larger_than_valid_input_is_rejected_naming_the_layer():
    data = preset_classic().to_dict()
    data["encoder"][4] = {"type": "conv", "filters": 1, "kernel": [9, 3], "padding": "valid"}
    with pytest.raises(ValueError) as info:
        load_spec(data)
    assert str(info.value).startswith("encoder[4]")
    assert "kernel=(9, 3)" in str(info.value)
    assert "input=(7, 7)" in str(info.value)


def test_presets_have_the_documented_sizes():
    classic = compute_shapes(preset("classic"))
    assert (classic.latent_shape, classic.total_params, classic.output_shape) == (
        (7, 7, 1),
        2690,
        (28, 28, 1),
    )
    assert preset("classic").decoder[-1].kernel == (1, 3)
    denoiser = compute_shapes(preset("keras-denoiser"))
    assert (denoiser.latent_shape, denoiser.total_params) == ((7, 7, 32), 28353)
    deep = compute_shapes(preset("deep"))
    assert deep.matches
    assert sum(isinstance(layer, Pool) for layer in preset("deep").encoder) == 3
    assert any(isinstance(layer, Crop) for layer in preset("deep").decoder)


def test_the_wide_preset_keeps_the_classic_code_of_49_values_and_comes_back_to_28x28x1():
    """Issue 27: the preset that beats PCA-49 has the classic network's code, not a bigger one."""
    wide, classic = compute_shapes(preset("wide")), compute_shapes(preset("classic"))
    assert wide.matches, wide.problem
    assert wide.output_shape == (28, 28, 1) == wide.input_shape
    assert wide.latent_shape == classic.latent_shape == (7, 7, 1)
    assert wide.latent_size == 49
    assert wide.total_params == 131138
    code = preset("wide").encoder[-1]
    assert isinstance(code, Conv) and code.filters == 1 and code.activation == "linear"
    assert preset("wide").decoder[-1].activation == "sigmoid"


def test_unknown_preset():
    with pytest.raises(ValueError, match="Received: preset='nope'"):
        preset("nope")


@pytest.mark.parametrize("name", ["classic", "keras-denoiser", "deep", "wide"])
def test_mirror_returns_to_the_input_shape(name):
    spec = preset(name)
    mirrored = spec.with_layers(decoder=mirror(spec.encoder))
    report = compute_shapes(mirrored)
    assert report.matches, report.problem
    assert isinstance(mirrored.decoder[-1], Conv) and mirrored.decoder[-1].activation == "sigmoid"


def test_mirror_turns_strided_convs_into_transposed_ones():
    encoder = (Conv(8, (3, 3), (2, 2)), Conv(4, (3, 3), (2, 2)))
    decoder = mirror(encoder)
    assert [type(layer) for layer in decoder] == [Deconv, Deconv, Conv]
    assert decoder[0].filters == 8
    spec = ArchitectureSpec("strided", (28, 28, 1), encoder, decoder)
    assert compute_shapes(spec).matches
    assert compute_shapes(spec.with_layers(decoder=(Upsample((4, 4)), Conv(1)))).matches


def test_dilation_is_an_int_or_a_pair_and_round_trips():
    data = preset_classic().to_dict()
    data["encoder"][0] = {"type": "conv", "filters": 4, "dilation": 2}
    data["decoder"][0] = {"type": "deconv", "filters": 8, "kernel": 2, "dilation": [1, 3]}
    spec = ArchitectureSpec.from_dict(data)
    assert spec.encoder[0].dilation == (2, 2) and spec.encoder[0].effective_kernel == (5, 5)
    assert spec.decoder[0].dilation == (1, 3) and spec.decoder[0].effective_kernel == (2, 4)
    assert ArchitectureSpec.from_dict(spec.to_dict()) == spec
    assert spec.to_dict()["encoder"][0]["dilation"] == [2, 2]
    assert preset_classic().encoder[0].dilation == (1, 1)  # absent means 1


@pytest.mark.parametrize(
    ("layer", "fragment"),
    [
        (
            {"type": "conv", "filters": 1, "strides": 2, "dilation": 2},
            "Keras cannot combine strides above 1 with a dilation above 1: set strides to 1 or "
            "dilation to 1. Received: strides=2, dilation=2",
        ),
        (  # Keras refuses it across axes too
            {"type": "deconv", "filters": 1, "strides": [2, 1], "dilation": [1, 2]},
            "Received: strides=[2, 1], dilation=[1, 2]",
        ),
        ({"type": "conv", "filters": 1, "dilation": 0}, "Received: dilation=0"),
        ({"type": "conv", "filters": 1, "dilation": 1025}, "at most 1024 (limit)"),
        ({"type": "pool", "size": 2, "strides": 1025}, "'strides' must be at most 1024 (limit)"),
    ],
)
def test_dilation_and_stride_limits_name_the_layer(layer, fragment):
    data = preset_classic().to_dict()
    data["encoder"][1] = layer
    with pytest.raises(SpecError) as info:
        ArchitectureSpec.from_dict(data)
    assert str(info.value).startswith("encoder[1]: ")
    assert fragment in str(info.value)
    assert len(str(info.value).splitlines()) == 1


def test_strides_go_past_16_as_in_keras():
    layer = {"type": "pool", "mode": "max", "size": 20, "strides": 20}
    spec = ArchitectureSpec.from_dict(
        {
            "input_shape": [40, 40, 1],
            "encoder": [layer],
            "decoder": [{"type": "upsample", "size": 16}],
        }
    )
    assert spec.encoder[0] == Pool("max", (20, 20), (20, 20), "same")
    assert compute_shapes(spec).latent_shape == (2, 2, 1)


def test_the_classic_preset_says_what_it_is():
    text = preset_classic.__doc__ or ""
    assert "7x7x1" in text and "2,690" in text
    assert "Keras-blog network" not in text and "4x4x8" in text  # the blog's code; not this one


def test_an_architecture_file_over_the_size_cap_is_refused_before_parsing():
    from cae.spec import MAX_SPEC_BYTES

    huge = "[" + "{}," * (MAX_SPEC_BYTES // 3) + "{}]"
    with pytest.raises(SpecError, match=f"at most {MAX_SPEC_BYTES:,} bytes. Received: "):
        ArchitectureSpec.from_json(huge)
    with pytest.raises(SpecError, match="at most"):
        ArchitectureSpec.from_json(huge.encode())


def test_separable_and_depthwise_layers_parse_with_their_keys_and_defaults():
    from cae.spec import Depthwise, SepConv, layer_from_dict, layer_to_dict

    sep = layer_from_dict({"type": "sepconv", "filters": 8})
    assert sep == SepConv(8, (3, 3), (1, 1), "same", "relu", (1, 1), 1)
    deep = layer_from_dict(
        {"type": "depthwise", "kernel": [1, 3], "depth_multiplier": 2, "strides": 2, "dilation": 2}
    )
    assert deep == Depthwise((1, 3), (2, 2), "same", "relu", (2, 2), 2)  # Keras runs both > 1
    assert layer_from_dict(layer_to_dict(deep)) == deep
    refusals = [
        ({"type": "sepconv"}, "needs 'filters'. Received: filters=None"),
        ({"type": "depthwise", "filters": 4}, "unknown key 'filters'"),
        ({"type": "depthwise", "depth_multiplier": 0}, "at least 1. Received: depth_multiplier=0"),
        ({"type": "sepconv", "filters": 2, "depth_multiplier": 65}, "at most 64 (limit)"),
    ]
    for data, message in refusals:
        with pytest.raises(SpecError, match=re.escape(message)):
            layer_from_dict(data, "encoder[0]")
