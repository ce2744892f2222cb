"""Pure-Python shape arithmetic: formulas, mismatch reports and the fixes they suggest."""

import subprocess
import sys
from dataclasses import replace

import pytest

from cae.shapes import ShapeError, compute_shapes, format_table, needs_onednn_off, repairs
from cae.spec import (
    PRESETS,
    ArchitectureSpec,
    Conv,
    Deconv,
    Pool,
    Upsample,
    preset,
    preset_classic,
)
from tests.runs import STRIDED_ONE_TAP_64


def test_importing_shapes_and_spec_does_not_import_tensorflow():
    code = (
        "import sys, cae.shapes, cae.spec; "
        "cae.shapes.compute_shapes(cae.spec.preset('classic')); "
        "bad = [m for m in ('tensorflow', 'keras', 'streamlit') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_classic_rows_with_formulas():
    report = compute_shapes(preset("classic"))
    assert [row.output_shape for row in report.rows] == [
        (28, 28, 16), (14, 14, 16), (14, 14, 8), (7, 7, 8), (7, 7, 1),
        (7, 7, 8), (14, 14, 8), (14, 14, 16), (28, 28, 16), (28, 28, 1),
    ]  # fmt: skip
    assert [row.params for row in report.rows] == [160, 0, 1160, 0, 73, 80, 0, 1168, 0, 49]
    assert report.rows[1].formula == "same: ceil(28 / 2) = 14"
    assert report.rows[0].params_formula == "3*3*1*16 + 16 = 160"
    assert report.rows[9].params_formula == "1*3*16*1 + 1 = 49"
    assert report.rows[1].location == "encoder[1]"
    assert report.latent_shape == (7, 7, 1)
    assert report.compression_ratio == 16
    assert (report.encoder_params, report.decoder_params, report.total_params) == (1393, 1297, 2690)
    assert report.matches and report.problem is None and report.fixes == ()


def test_non_square_valid_formula_names_each_axis():
    spec = ArchitectureSpec("x", (28, 28, 1), (Conv(4, (1, 3), padding="valid"),), ())
    row = compute_shapes(spec).rows[0]
    assert row.output_shape == (28, 26, 4)
    assert row.formula == "valid: H: floor((28 - 1) / 1) + 1 = 28; W: floor((28 - 3) / 1) + 1 = 26"


def test_transposed_formulas():
    spec = ArchitectureSpec(
        "x",
        (7, 7, 1),
        (Deconv(2, (3, 3), (2, 2), "valid"),),
        (Deconv(1, (4, 4), (3, 3), "same", output_padding=(1, 2)),),
    )
    rows = compute_shapes(spec).rows
    assert rows[0].output_shape == (15, 15, 2)
    assert rows[0].formula == "valid (transposed): 7 * 2 + max(3 - 2, 0) = 15"
    assert rows[1].output_shape == (15 * 3 - 3 + 4 - 4 + 1, 15 * 3 - 3 + 4 - 4 + 2, 1)


def test_mismatch_reports_shapes_and_every_fix_works():
    spec = preset_classic().with_layers(decoder=preset_classic().decoder + (Upsample((2, 2)),))
    report = compute_shapes(spec)
    assert not report.matches
    assert "56x56x1" in report.problem and "28x28x1" in report.problem
    assert report.fixes
    for fix in report.fixes:
        assert compute_shapes(fix.spec).matches, fix.description


@pytest.mark.parametrize(
    "spec",
    [
        # odd input: 'same' pooling rounds 15 -> 8 -> 4, decoder gives 16
        ArchitectureSpec("odd", (30, 30, 1), preset_classic().encoder, preset_classic().decoder),
        # one up-sampling too few
        preset_classic().with_layers(decoder=preset_classic().decoder[2:]),
        # wrong channel count and wrong size at once
        ArchitectureSpec(
            "rgb", (28, 28, 3), preset_classic().encoder, preset_classic().decoder[:-2]
        ),
        # non-square mismatch
        ArchitectureSpec("wide", (28, 30, 1), preset_classic().encoder, preset_classic().decoder),
        # decoder too small on one axis, too large on the other
        ArchitectureSpec(
            "mixed", (28, 29, 1), (Pool("max", (3, 1), padding="valid"),), (Upsample((3, 2)),)
        ),
    ],
    ids=["odd-input", "missing-upsample", "channels", "non-square", "mixed"],
)
def test_suggested_fixes_make_the_shapes_agree(spec):
    report = compute_shapes(spec)
    assert not report.matches
    assert report.fixes, report.problem
    for fix in report.fixes:
        fixed = compute_shapes(fix.spec)
        assert fixed.output_shape == spec.input_shape, fix.description


def test_impossible_layer_raises_with_a_working_fix():
    spec = preset_classic().with_layers(
        encoder=preset_classic().encoder[:4] + (Conv(1, (9, 9), padding="valid"),)
    )
    with pytest.raises(ShapeError) as info:
        compute_shapes(spec)
    error = info.value
    assert (error.part, error.index) == ("encoder", 4)
    assert "Received: kernel=(9, 9), input=(7, 7)" in str(error)
    assert error.fixes
    compute_shapes(error.fixes[0].spec)


def test_absurd_sizes_are_refused_before_anything_is_built():
    spec = ArchitectureSpec("big", (512, 512, 3), (Conv(1024, (3, 3)),), ())
    with pytest.raises(ShapeError, match="limit"):
        compute_shapes(spec)


def test_format_table_lists_every_layer_and_the_code():
    text = format_table(compute_shapes(preset("classic")))
    assert "code 7x7x1" in text and "2,690" in text and "ceil(28 / 2) = 14" in text
    assert (
        len([line for line in text.splitlines() if line.startswith(("encoder", "decoder"))]) == 10
    )


# ------------------------------------------------------------------ what TensorFlow runs, dilation


@pytest.mark.parametrize(
    ("kernel", "strides", "output_padding", "dilation", "refused"),
    [
        ((4, 4), (2, 2), (0, 0), (1, 1), True),  # the issue's case: Keras says (n-1)*s
        ((2, 2), (1, 1), (0, 0), (1, 1), True),
        ((4, 3), (2, 2), (0, 0), (1, 1), True),  # one even axis is enough
        ((2, 2), (1, 1), (0, 0), (3, 3), True),  # span 2 + 1*2 = 4, even
        ((2, 2), (1, 1), (0, 0), (2, 2), False),  # span 3, odd
        ((4, 4), (2, 2), (1, 1), (1, 1), False),
        ((4, 4), (2, 2), None, (1, 1), False),
        ((3, 3), (2, 2), (0, 0), (1, 1), False),
    ],
)
def test_transposed_convolutions_tensorflow_cannot_run_are_refused(
    kernel, strides, output_padding, dilation, refused
):
    layer = Deconv(1, kernel, strides, "same", "relu", output_padding, dilation)
    spec = ArchitectureSpec("x", (7, 7, 1), (layer,), ())
    if not refused:
        compute_shapes(spec)
        assert compute_shapes(spec.with_layers(encoder=(replace(layer, padding="valid"),)))
        return
    with pytest.raises(ShapeError) as info:
        compute_shapes(spec)
    message = str(info.value)
    assert message.startswith("encoder[0] deconv: padding 'same', an even kernel")
    assert "which TensorFlow cannot run on a real batch; fix: " in message
    assert "Received: kernel=" in message and len(message.splitlines()) == 1
    assert info.value.fixes
    for fix in info.value.fixes:
        compute_shapes(fix.spec)  # each fix passes the same check


def test_the_issues_layer_is_refused_with_output_padding_1_first():
    spec = ArchitectureSpec(
        "issue", (28, 28, 1), preset_classic().encoder[:4],
        (Deconv(8, (4, 4), (2, 2), output_padding=(0, 0)), Deconv(1, (4, 4), (2, 2), output_padding=(0, 0))),
    )  # fmt: skip
    with pytest.raises(ShapeError, match=r"\(7 - 1\) \* 2 = 12.*fix: set output_padding to 1x1"):
        compute_shapes(spec)


def test_transposed_formulas_with_output_padding_are_keras_own():
    spec = ArchitectureSpec(
        "x", (7, 7, 1), (Deconv(1, (4, 3), (2, 2), output_padding=(1, 0)),),
        (Deconv(1, (4, 4), (2, 2), "valid", output_padding=(1, 1)),),
    )  # fmt: skip
    rows = compute_shapes(spec).rows
    assert rows[0].formula == (
        "same (transposed): H: (7 - 1) * 2 + 4 % 2 + 1 = 13; W: (7 - 1) * 2 + 3 % 2 + 0 = 13"
    )
    assert rows[1].formula == "valid (transposed): (13 - 1) * 2 + 4 + 1 = 29"


@pytest.mark.parametrize(
    ("layer", "keras_shape"),
    [
        (Conv(2, (1, 1), (2, 2)), (6, 6, 2)),
        (Conv(2, (1, 1), (1, 2), "valid"), (11, 6, 2)),
        (Conv(2, (1, 5), (3, 1), "valid"), (4, 7, 2)),  # crashed training on a 40x279 input
        (Conv(2, (1, 3), (2, 2)), (6, 6, 2)),
        (Deconv(2, (1, 1), (3, 3)), (33, 33, 2)),
        (Deconv(2, (3, 1), (2, 2), "valid"), (23, 22, 2)),
    ],
)
def test_kernels_one_tap_wide_along_a_strided_axis_are_accepted_and_need_onednn_off(
    layer, keras_shape
):
    """They were refused (oneDNN's CPU kernels crash their training); now they get Keras's shape
    and train with oneDNN off (cae.onednn; trained in tests/test_jobs.py and test_cli_train.py)."""
    spec = ArchitectureSpec("x", (11, 11, 1), (layer,), ())
    assert compute_shapes(spec).output_shape == keras_shape
    assert needs_onednn_off(spec)
    assert needs_onednn_off(ArchitectureSpec("x", (11, 11, 1), (Conv(1, (3, 3)),), (layer,)))


def test_kernels_of_two_taps_along_strided_axes_need_no_change():
    for layer in (
        Conv(2, (2, 5), (3, 1)),
        Conv(2, (1, 3), (1, 2), "valid"),
        Deconv(2, (2, 1), (3, 1)),
        Conv(2, (1, 1)),
    ):
        spec = ArchitectureSpec("x", (11, 11, 1), (layer,), ())
        compute_shapes(spec)
        assert not needs_onednn_off(spec)
    assert not any(needs_onednn_off(preset(name)) for name in PRESETS)


def test_the_strided_one_tap_test_design_has_the_shapes_keras_gives():
    spec = ArchitectureSpec.from_dict(STRIDED_ONE_TAP_64)
    report = compute_shapes(spec)
    assert [row.output_shape for row in report.rows] == [
        (64, 64, 8), (32, 32, 4), (64, 64, 8), (64, 64, 1),
    ]  # fmt: skip
    assert report.matches and report.latent_shape == (32, 32, 4) and needs_onednn_off(spec)


def test_dilation_counts_the_kernel_span_in_every_formula():
    spec = ArchitectureSpec(
        "x", (28, 28, 1), (Conv(4, (3, 3), padding="valid", dilation=(2, 3)),),
        (Deconv(1, (2, 2), padding="valid", dilation=(2, 2)),),
    )  # fmt: skip
    rows = compute_shapes(spec).rows
    assert rows[0].output_shape == (28 - 5 + 1, 28 - 7 + 1, 4)
    assert rows[0].formula == (
        "kernel span H: 3 + (3 - 1)*(2 - 1) = 5; W: 3 + (3 - 1)*(3 - 1) = 7; "
        "valid: H: floor((28 - 5) / 1) + 1 = 24; W: floor((28 - 7) / 1) + 1 = 22"
    )
    assert rows[0].params == 3 * 3 * 1 * 4 + 4  # dilation adds no weights
    assert rows[0].label == "Conv 4 3x3 dilation 2x3 valid relu"
    assert rows[1].output_shape == (24 + 3 - 1, 22 + 3 - 1, 1)
    assert rows[1].formula.startswith("kernel span 2 + (2 - 1)*(2 - 1) = 3; valid (transposed)")
    assert "kernel span" in format_table(compute_shapes(spec))


def test_a_dilated_kernel_wider_than_a_valid_input_is_refused_with_fixes():
    spec = ArchitectureSpec(
        "x", (6, 6, 1), (Conv(1, (3, 3), padding="valid", dilation=(3, 1)),), ()
    )
    with pytest.raises(ShapeError) as info:
        compute_shapes(spec)
    assert "kernel 3x3 (spanning 7x3 with dilation 3x1) is larger than its input 6x6" in str(
        info.value
    )
    assert "Received: kernel=(3, 3), dilation=(3, 1), input=(6, 6)" in str(info.value)
    assert [fix.description for fix in info.value.fixes] == [
        "encoder[0]: use padding 'same'", "encoder[0]: use dilation 1",
    ]  # fmt: skip


def test_mismatch_fixes_never_offer_a_layer_tensorflow_cannot_run():
    # decoder too large by 2: the 'valid' deconv's fix to 'same' would be refused (kernel 4, op 0)
    spec = ArchitectureSpec(
        "x", (28, 28, 1), preset_classic().encoder[:4],
        (Deconv(8, (4, 4), (2, 2), "valid", output_padding=(0, 0)), Deconv(1, (3, 3), (2, 2))),
    )  # fmt: skip
    report = compute_shapes(spec)
    assert not report.matches and report.fixes
    assert not any("use padding 'same'" in fix.description for fix in report.fixes)
    for fix in report.fixes:
        assert compute_shapes(fix.spec).matches


def test_a_pool_of_20_with_strides_20_is_a_layer():
    spec = ArchitectureSpec(
        "x", (40, 40, 1), (Pool("max", (20, 20), (20, 20)),), (Upsample((16, 16)),)
    )
    assert compute_shapes(spec).latent_shape == (2, 2, 1)


def test_explanations_count_a_dilated_kernel_by_its_span():
    from cae.explain import explain_convolution, explain_padding

    spec = ArchitectureSpec(
        "x", (28, 28, 1), (Conv(4, (3, 3), padding="valid", dilation=(2, 2)),), ()
    )
    report = compute_shapes(spec)
    conv = explain_convolution(report)
    assert "dilation 2x2" in conv and "spans 5x5" in conv and "3 + (3 - 1)*(2 - 1) = 5" in conv
    assert "(28 - 5 + 1) x (28 - 5 + 1) = 24x24" in explain_padding(report)


@pytest.mark.parametrize(
    ("first", "pool", "added"),
    [
        # 'valid' windows shrink the code to 2x2: the decoder ends at 8x8, the mirror at 24x24
        (Conv(16, (5, 3), (2, 2), "valid"), Pool(size=(3, 3), padding="valid"), "pad"),
        # a 1x2 stride: the decoder ends 28x16, the mirror (a 1x2 transposed stride) 28x32
        (Conv(16, (1, 3), (1, 2)), None, "crop"),
    ],
)
def test_a_decoder_far_from_the_input_is_also_offered_the_encoders_mirror(first, pool, added):
    """Once padding or cropping the output was the only fix: an 8x8 patch framed by 10 rows of
    zeros each side. The mirror undoes the encoder and trims (or pads) only what rounding left."""
    encoder = (first, pool or preset_classic().encoder[1], *preset_classic().encoder[2:])
    spec = preset_classic().with_layers(encoder=encoder)
    report = compute_shapes(spec)
    assert not report.matches
    (fix,) = [f for f in report.fixes if "the encoder's mirror" in f.description]
    assert (
        fix.description
        == f"replace the decoder with the encoder's mirror ({len(fix.spec.decoder)} layers)"
    )
    assert fix.spec.encoder == spec.encoder and compute_shapes(fix.spec).matches
    assert [layer.type for layer in fix.spec.decoder][-2:] == [added, "conv"]
    assert "deconv" in [layer.type for layer in fix.spec.decoder]  # the strided first layer
    assert any(f.description.startswith("append zero padding") for f in report.fixes)


def test_a_refused_stride_and_dilation_gets_two_checked_repairs():
    data = preset_classic().to_dict()
    data["decoder"][0] = {**data["decoder"][0], "strides": 2, "dilation": [1, 2]}
    with pytest.raises(ValueError, match="Keras cannot combine strides above 1 with a dilation"):
        ArchitectureSpec.from_dict(data)
    fixes = repairs(data)
    assert [fix.description for fix in fixes] == [
        "decoder[0]: use strides 1",
        "decoder[0]: use dilation 1",
    ]
    assert fixes[0].spec.decoder[0].dilation == (1, 2) and fixes[0].spec.decoder[0].strides == (
        1,
        1,
    )
    assert compute_shapes(fixes[0].spec).matches  # strides 1: the classic decoder again
    assert not compute_shapes(fixes[1].spec).matches  # it builds; its mismatch has its own fixes
    # what it cannot read, it leaves to the error message
    assert repairs({"encoder": "conv", "decoder": [None, {"type": "conv", "strides": "2"}]}) == ()
