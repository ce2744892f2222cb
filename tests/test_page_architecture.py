"""AppTest of the Architecture page: edit layers, see shapes change, apply suggested fixes."""

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cae.spec import ArchitectureSpec, preset
from cae.text import WORD_JOINER
from ui.state import SPEC_KEY

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "1_Architecture.py")


def widget(collection, prefix):
    matches = [item for item in collection if item.key and item.key.startswith(prefix)]
    assert matches, f"no widget with a key starting {prefix!r}"
    return matches[0]


def edit(app, part, index):
    """Open one layer's settings: the list shows each layer on one line, one editor open."""
    widget(app.button, f"arch_{part}_{index}_edit").click().run()
    assert not app.exception


def table_rows(app):
    """The design table's rows as they read (its cells are escaped markdown)."""
    frame = app.table[0].value
    return [
        {
            key: re.sub(r"\\(.)", r"\1", value).replace(WORD_JOINER, "")
            if isinstance(value, str)
            else value
            for key, value in row.items()
        }
        for row in frame.to_dict("records")
    ]


@pytest.fixture
def app():
    page = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not page.exception
    return page


def test_classic_design_shows_shapes_formulas_totals_and_explanations(app):
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Latent code"] == "7x7x1"
    assert metrics["Parameters"] == "2,690"
    assert metrics["Compression"] == "16.0x"
    rows = table_rows(app)
    assert len(rows) == 10
    assert rows[1]["shape formula"] == "same: ceil(28 / 2) = 14"
    assert rows[0]["parameter formula"] == "3*3*1*16 + 16 = 160"
    assert any("can be trained" in item.value for item in app.success)
    # the explanations use the user's numbers
    texts = " ".join(block.value for block in app.markdown)
    assert "3x3x1 = 9" in texts
    assert "ceil(28 / 2) = 14" in texts


def test_editing_filters_and_kernel_updates_the_table(app):
    edit(app, "encoder", 0)
    widget(app.number_input, "arch_encoder_0_filters").set_value(32).run()
    assert not app.exception
    rows = table_rows(app)
    assert rows[0]["output"] == "28x28x32"
    assert rows[0]["params"] == 3 * 3 * 1 * 32 + 32
    widget(app.number_input, "arch_encoder_0_kernel").set_value(5).run()  # kernel height
    rows = table_rows(app)
    assert rows[0]["params"] == 5 * 3 * 1 * 32 + 32
    assert rows[0]["type"].startswith("Conv 32 5x3")
    assert ArchitectureSpec.from_dict(app.session_state[SPEC_KEY]).encoder[0].kernel == (5, 3)


def test_valid_padding_mismatch_offers_a_fix_that_works(app):
    edit(app, "encoder", 2)
    widget(app.selectbox, "arch_encoder_2_padding").set_value("valid").run()
    assert not app.exception
    assert app.warning, "a mismatch warning is expected"
    assert "Shape mismatch" in app.warning[0].value
    fixes = [button for button in app.button if button.key.startswith("arch_fix_")]
    assert fixes
    fixes[0].click().run()
    assert not app.exception
    assert not app.warning
    assert any("can be trained" in item.value for item in app.success)
    assert any("(28x28x1)" in item.value for item in app.success)


def test_impossible_layer_names_the_layer_and_offers_a_fix(app):
    edit(app, "encoder", 4)
    widget(app.selectbox, "arch_encoder_4_padding").set_value("valid").run()
    widget(app.number_input, "arch_encoder_4_kernel").set_value(9).run()
    assert not app.exception
    assert "encoder[4]" in app.error[0].value and "kernel 9x3" in app.error[0].value
    fix = [button for button in app.button if button.key.startswith("arch_fix_layer_")][0]
    fix.click().run()
    assert not app.error


def test_add_remove_move_and_mirror(app):
    app.selectbox(key="arch_add_type_decoder").set_value("upsample").run()
    app.button(key="arch_add_decoder").click().run()
    assert len(table_rows(app)) == 11
    assert table_rows(app)[-1]["output"] == "56x56x1"
    remove = widget(app.button, "arch_decoder_5_remove")
    remove.click().run()
    assert len(table_rows(app)) == 10
    widget(app.button, "arch_encoder_1_down").click().run()  # pool below the second conv
    spec = ArchitectureSpec.from_dict(app.session_state[SPEC_KEY])
    assert spec.encoder[1].type == "conv" and spec.encoder[2].type == "pool"
    app.button(key="arch_mirror").click().run()
    assert not app.exception
    spec = ArchitectureSpec.from_dict(app.session_state[SPEC_KEY])
    assert spec.decoder[-1].activation == "sigmoid"
    assert any("(28x28x1)" in item.value for item in app.success)


def test_preset_switch_to_transposed_convolutions(app):
    app.selectbox(key="arch_preset").set_value("keras-denoiser").run()
    app.button(key="arch_load_preset").click().run()
    assert {metric.label: metric.value for metric in app.metric}["Parameters"] == "28,353"
    assert ArchitectureSpec.from_dict(app.session_state[SPEC_KEY]) == preset("keras-denoiser")
    # change an up-sampling layer's type in the classic network to a transposed convolution
    app.selectbox(key="arch_preset").set_value("classic").run()
    app.button(key="arch_load_preset").click().run()
    edit(app, "decoder", 1)
    widget(app.selectbox, "arch_decoder_1_type").set_value("deconv").run()
    assert not app.exception
    assert table_rows(app)[6]["type"].startswith("Deconv 8 3x3 stride 2x2")


def load_preset(app, name, *, confirm=True):
    """Load a preset; over an edited design, say yes to the question (unless not ``confirm``)."""
    app.selectbox(key="arch_preset").set_value(name).run()
    app.button(key="arch_load_preset").click().run()
    assert not app.exception
    if confirm and any(button.key == "arch_preset_confirm" for button in app.button):
        app.button(key="arch_preset_confirm").click().run()
        assert not app.exception


def test_dilation_shows_the_kernel_span(app):
    edit(app, "encoder", 0)
    widget(app.number_input, "arch_encoder_0_dilation").set_value(2).run()  # dilation height
    assert not app.exception and not app.error
    row = table_rows(app)[0]
    assert row["output"] == "28x28x16" and row["type"] == "Conv 16 3x3 dilation 2x1 same relu"
    assert row["shape formula"].startswith("kernel span H: 3 + (3 - 1)*(2 - 1) = 5; W: ")
    # as markdown source: an unescaped "*" turned "(2 - 1) = 5; W: 3 + (3 - 1)" into italics
    span = [item.value for item in app.caption if "kernel span" in item.value]
    assert span == ["kernel span H: 3 + (3 - 1)\\*(2 - 1) = 5; W: 3 + (3 - 1)\\*(1 - 1) = 3"]
    assert ArchitectureSpec.from_dict(app.session_state[SPEC_KEY]).encoder[0].dilation == (2, 1)
    widget(app.number_input, "arch_encoder_0_strides").set_value(2).run()  # Keras refuses both
    assert "Keras cannot combine strides above 1 with a dilation above 1" in app.error[0].value
    # the refusal offers its two fixes, as a shape error does; one click applies one
    fixes = [item for item in app.button if item.key.startswith("arch_fix_value_")]
    assert [item.label for item in fixes] == [
        "Fix: encoder[0]: use strides 1",
        "Fix: encoder[0]: use dilation 1",
    ]
    fixes[1].click().run()
    assert not app.exception and not app.error
    fixed = ArchitectureSpec.from_dict(app.session_state[SPEC_KEY]).encoder[0]
    assert (fixed.strides, fixed.dilation) == ((2, 1), (1, 1))


def test_output_padding_starts_where_tensorflow_runs_and_its_refusal_offers_fixes(app):
    load_preset(app, "keras-denoiser")
    edit(app, "decoder", 0)
    widget(app.number_input, "arch_decoder_0_kernel").set_value(4).run()  # an even kernel height
    assert not app.error
    widget(app.toggle, "arch_decoder_0_has_op").set_value(True).run()
    assert not app.exception and not app.error, [item.value for item in app.error]
    assert widget(app.number_input, "arch_decoder_0_op").value == 1  # not 0: TensorFlow aborts
    assert ArchitectureSpec.from_dict(app.session_state[SPEC_KEY]).decoder[0].output_padding == (
        1,
        0,
    )
    widget(app.number_input, "arch_decoder_0_op").set_value(0).run()  # the layer
    assert "TensorFlow cannot run" in app.error[0].value and "fix: " in app.error[0].value
    fixes = [button for button in app.button if button.key.startswith("arch_fix_layer_")]
    assert "output_padding to 1x0" in fixes[0].label
    fixes[0].click().run()
    assert not app.exception and not app.error
    assert table_rows(app)[4]["output"] == "13x13x32"  # (7 - 1) * 2 + 4 % 2 + 1, as TensorFlow runs


def test_output_padding_cannot_be_switched_on_where_no_value_runs(app):
    load_preset(app, "keras-denoiser")
    edit(app, "decoder", 0)
    for tail in ("_h", "_w"):  # strides 1: output_padding must be 0, which TensorFlow cannot run
        [item for item in app.number_input if item.key.startswith("arch_decoder_0_strides")
         and item.key.endswith(tail)][0].set_value(1).run()  # fmt: skip
    widget(app.number_input, "arch_decoder_0_kernel").set_value(4).run()
    assert widget(app.toggle, "arch_decoder_0_has_op").disabled
    widget(app.number_input, "arch_decoder_0_kernel").set_value(3).run()
    assert not widget(app.toggle, "arch_decoder_0_has_op").disabled


def layer_line(app, location):
    """The one-line summary of a closed layer."""
    (line,) = [m.value for m in app.markdown if m.value.startswith(f"`{location}`")]
    return line


def test_one_layer_is_open_at_a_time_and_the_lines_follow_each_edit(app):
    """Issue 13 item 9: every layer's widgets made the page 3,700 px long (10,800 px at 400 px);
    the list now shows a line per layer and one layer's settings."""
    assert not [w for w in app.number_input if w.key.startswith(("arch_encoder_", "arch_decoder_"))]
    assert layer_line(app, "encoder[1]") == "`encoder[1]` MaxPool 2x2 same → **14x14x16**"
    edit(app, "encoder", 0)
    widget(app.number_input, "arch_encoder_0_filters").set_value(32).run()
    assert layer_line(app, "encoder[1]").endswith("**14x14x32**")  # this edit, not the last one
    edit(app, "encoder", 2)
    assert not [w for w in app.number_input if w.key.startswith("arch_encoder_0_")]
    assert widget(app.number_input, "arch_encoder_2_filters").value == 8
    widget(app.button, "arch_encoder_2_up").click().run()  # the open editor follows its layer
    assert widget(app.number_input, "arch_encoder_1_filters").value == 8
    widget(app.button, "arch_encoder_1_edit").click().run()  # closes it
    assert not [w for w in app.number_input if w.key.startswith("arch_encoder_")]
    app.selectbox(key="arch_add_type_decoder").set_value("dropout").run()
    app.button(key="arch_add_decoder").click().run()  # a new layer opens, ready to set
    assert widget(app.number_input, "arch_decoder_5_rate")
    assert ArchitectureSpec.from_dict(app.session_state[SPEC_KEY]).encoder[0].filters == 32


def test_separable_and_depthwise_kinds_are_edited_counted_and_explained(app):
    """Switch the classic encoder's second convolution to a separable one and its code layer to a
    depthwise one, in the editor as a user does: shapes, parameter formulas and the explanations
    follow, and the design still trains (the decoder's first convolution takes any channels)."""
    edit(app, "encoder", 2)
    widget(app.selectbox, "arch_encoder_2_type").set_value("sepconv").run()
    widget(app.number_input, "arch_encoder_2_filters").set_value(8).run()
    widget(app.number_input, "arch_encoder_2_depth").set_value(2).run()
    assert not app.exception
    row = table_rows(app)[2]
    assert row["type"] == "SepConv 8 3x3 same relu x2 depth"
    assert row["parameter formula"] == "3*3*16*2 + 16*2*8 + 8 = 552"
    edit(app, "encoder", 4)
    widget(app.selectbox, "arch_encoder_4_type").set_value("depthwise").run()
    assert not app.exception
    assert not [w for w in app.number_input if w.key.startswith("arch_encoder_4_filters")]
    row = table_rows(app)[4]
    assert row["output"] == "7x7x8" and row["parameter formula"] == "3*3*8*1 + 8*1 = 80"
    spec = ArchitectureSpec.from_dict(app.session_state[SPEC_KEY])
    assert spec.encoder[2].depth_multiplier == 2 and spec.encoder[4].type == "depthwise"
    assert any("can be trained" in item.value for item in app.success)
    texts = " ".join(block.value for block in app.markdown)
    assert "separable convolution" in texts and "depthwise convolution" in texts
    assert "3*3*16*2 + 16*2*8 + 8 = 552" in texts


def test_a_strided_one_tap_kernel_is_accepted_and_said_to_train_slower(app):
    edit(app, "encoder", 0)
    widget(app.number_input, "arch_encoder_0_kernel").set_value(1).run()  # kernel 1x3
    widget(app.number_input, "arch_encoder_0_strides").set_value(2).run()  # strides 2x1
    assert not app.exception and not app.error
    captions = " ".join(item.value for item in app.caption)
    assert "oneDNN operations off" in captions
    load_preset(app, "classic")
    assert "oneDNN" not in " ".join(item.value for item in app.caption)


def test_load_preset_asks_before_it_throws_edits_away(app):
    """Issue 28: Load preset replaced an edited design at once. A preset as shipped is replaced
    without a question; an edited one only after "Replace it", and "Keep editing" keeps it."""
    edit(app, "encoder", 0)
    widget(app.number_input, "arch_encoder_0_filters").set_value(24).run()
    assert ArchitectureSpec.from_dict(app.session_state[SPEC_KEY]).encoder[0].filters == 24
    load_preset(app, "deep", confirm=False)
    assert any("replaces your design" in item.value for item in app.warning)
    assert ArchitectureSpec.from_dict(app.session_state[SPEC_KEY]).encoder[0].filters == 24
    app.button(key="arch_preset_cancel").click().run()
    assert not app.warning and not app.exception
    assert ArchitectureSpec.from_dict(app.session_state[SPEC_KEY]).encoder[0].filters == 24
    load_preset(app, "deep", confirm=False)
    app.button(key="arch_preset_confirm").click().run()
    assert not app.exception and not app.warning
    assert ArchitectureSpec.from_dict(app.session_state[SPEC_KEY]) == preset("deep")
    assert any("Loaded the deep preset." in item.value for item in app.success)
    load_preset(app, "classic")  # deep as shipped: nothing to lose, no question
    assert not app.warning
    assert ArchitectureSpec.from_dict(app.session_state[SPEC_KEY]) == preset("classic")


def test_the_design_table_shows_whole_rows(app):
    """The table's cells were cut ("...same relu") at the page's width: a static table now."""
    rows = table_rows(app)
    assert rows[0]["type"] == "Conv 16 3x3 same relu"
    assert rows[0]["parameter formula"] == "3*3*1*16 + 16 = 160"  # every sign, once rendered
    assert "3\\*3\\*1\\*16" in app.table[0].value.to_dict("records")[0]["parameter formula"]
    assert not app.dataframe


def test_the_classic_presets_one_by_three_kernel_is_explained_where_it_is_shown(app):
    captions = " ".join(item.value for item in app.caption)
    assert "decoder[4]'s 1x3 kernel" in captions and "article" in captions
    load_preset(app, "keras-denoiser")
    assert "1x3 kernel" not in " ".join(item.value for item in app.caption)
