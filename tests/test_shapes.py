"""Pure-Python shape arithmetic: formulas, mismatch reports and the fixes they suggest."""

import subprocess
import sys

import pytest

from cae.shapes import ShapeError, compute_shapes, format_table
from cae.spec import ArchitectureSpec, Conv, Deconv, Pool, Upsample, preset, preset_classic


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
