"""Layer kinds are one registry record each (cae.spec.KINDS: parse, title, label, traits), and every
concern that needs code of its own keeps one table keyed by the kind: each kind is in each table.

A new layer kind is its record plus one entry per table below; forgetting one fails here, naming
the table, before a page or a model meets the kind.
"""

import doctest
import typing

import pytest
from streamlit.testing.v1 import AppTest

import cae.shapes
from cae.builder import KERAS_CLASS_NAMES, KERAS_LAYERS, make_keras_layer, spec_type
from cae.explain import KIND_EXPLANATIONS, TOPICS
from cae.inspection import KERNEL_VIEWS
from cae.shapes import MIRROR_RULES, SHAPE_RULES, layer_output
from cae.spec import (
    KINDS,
    LAYER_BY_NAME,
    LAYER_TYPES,
    BatchNorm,
    Conv,
    Convolution,
    Crop,
    Deconv,
    Depthwise,
    Dropout,
    Layer,
    Pad,
    Pool,
    SepConv,
    Upsample,
    describe_layer,
    layer_from_dict,
    layer_to_dict,
)
from ui.layer_editor import LAYER_WIDGETS, NEW_LAYERS

# One layer of each kind with every field away from its default, so a field that a table entry
# drops or mistypes shows.
# Keras takes strides or a dilation above 1, not both, for Conv2D and Conv2DTranspose: the
# convolution carries the dilation and the transposed convolution the strides (the two share their
# editor widgets); the separable and depthwise kinds take both.
SAMPLES: dict[type, Layer] = {
    Conv: Conv(5, (3, 2), (1, 1), "valid", "tanh", (2, 1)),
    Deconv: Deconv(3, (3, 2), (2, 2), "valid", "sigmoid", (1, 0)),
    SepConv: SepConv(4, (2, 3), (2, 1), "valid", "elu", (1, 2), 3),
    Depthwise: Depthwise((3, 2), (1, 2), "valid", "tanh", (2, 1), 2),
    Pool: Pool("avg", (3, 2), (1, 2), "valid"),
    Upsample: Upsample((2, 3), "bilinear"),
    Crop: Crop(((0, 1), (2, 3))),
    Pad: Pad(((1, 0), (0, 2))),
    BatchNorm: BatchNorm(),
    Dropout: Dropout(0.25),
}

# Every table keyed by kind, named by where it lives: (table, the kinds it must hold).
CONVOLUTIONS = tuple(cls for cls, kind in KINDS.items() if kind.convolution)
TABLES = {
    "registry record (cae.spec.KINDS)": (KINDS, LAYER_TYPES),
    "shape rule (cae.shapes.SHAPE_RULES)": (SHAPE_RULES, LAYER_TYPES),
    "mirror (cae.shapes.MIRROR_RULES)": (MIRROR_RULES, LAYER_TYPES),
    "Keras layer (cae.builder.KERAS_LAYERS)": (KERAS_LAYERS, LAYER_TYPES),
    "Keras classes (cae.builder.KERAS_CLASS_NAMES)": (KERAS_CLASS_NAMES, LAYER_TYPES),
    "editor widgets (ui.layer_editor.LAYER_WIDGETS)": (LAYER_WIDGETS, LAYER_TYPES),
    "new layer (ui.layer_editor.NEW_LAYERS)": (NEW_LAYERS, LAYER_TYPES),
    "explanation (cae.explain.KIND_EXPLANATIONS)": (KIND_EXPLANATIONS, LAYER_TYPES),
    "kernel view (cae.inspection.KERNEL_VIEWS)": (KERNEL_VIEWS, CONVOLUTIONS),
    "samples (this test)": (SAMPLES, LAYER_TYPES),
}


def test_layer_types_are_the_layer_union_with_unique_names():
    assert typing.get_args(Layer) == LAYER_TYPES
    assert list(LAYER_BY_NAME.values()) == list(LAYER_TYPES)


@pytest.mark.parametrize("name", TABLES)
def test_every_layer_type_is_in_every_table(name):
    table, kinds = TABLES[name]
    missing = [cls.__name__ for cls in kinds if cls not in table]
    extra = [getattr(key, "__name__", key) for key in table if key not in LAYER_TYPES]
    assert not missing, f"{name} lacks {missing}"
    assert not extra, f"{name} has entries for non-layer types {extra}"


def test_each_record_is_its_kinds_and_convolutions_are_the_convolution_union():
    for cls, kind in KINDS.items():
        assert kind.cls is cls and kind.name == cls.type
        assert kind.title and kind.short and kind.summary.endswith(".")
        assert kind.filters <= kind.convolution and kind.transposed <= kind.convolution
    assert typing.get_args(Convolution) == CONVOLUTIONS


def test_every_kind_is_explained_by_a_topic_of_the_architecture_page():
    explained = {cls for topic in TOPICS for cls in topic.kinds}
    assert not [cls.__name__ for cls in LAYER_TYPES if cls not in explained]


def test_new_layers_are_of_their_kind():
    for cls, layer in NEW_LAYERS.items():
        assert type(layer) is cls


@pytest.mark.parametrize("cls", LAYER_TYPES, ids=lambda cls: cls.type)
def test_each_kind_parses_describes_and_has_a_shape(cls):
    for layer in (SAMPLES[cls], NEW_LAYERS[cls]):
        assert layer_from_dict(layer_to_dict(layer)) == layer
        assert describe_layer(layer)
        out, params, formula, params_formula = layer_output(layer, (12, 12, 2))
        assert min(out) >= 1 and params >= 0 and formula and params_formula


def test_shape_rules_worked_examples_hold():
    """The docstring examples of the shape rules are doctests: they must stay true."""
    result = doctest.testmod(cae.shapes)
    assert result.failed == 0
    examples = [rule.__doc__ or "" for rule in SHAPE_RULES.values()]
    assert all(">>> " in text for text in examples), "every shape rule shows a worked example"


def test_each_kind_builds_the_keras_layer_it_reads_back_as():
    for cls in LAYER_TYPES:
        for layer in (SAMPLES[cls], NEW_LAYERS[cls], *([Pool("max")] if cls is Pool else [])):
            built = make_keras_layer(layer, f"probe_{cls.type}")
            assert type(built).__name__ in KERAS_CLASS_NAMES[cls]
            assert spec_type(built) == cls.type


def _draw_every_kind():
    """Draw each sample's editor widgets (as the Architecture page does) and keep the results."""
    import streamlit as st

    from cae.spec import layer_to_dict
    from tests.test_layer_tables import SAMPLES
    from ui.layer_editor import Slot, layer_widgets

    edited = {}
    for index, (cls, layer) in enumerate(SAMPLES.items()):
        slot = Slot(st.columns(3), f"arch_encoder_{index}", "_v0")
        edited[cls.type] = layer_widgets(layer_to_dict(layer), slot)
    st.session_state["edited"] = edited


def test_each_kinds_editor_gives_back_the_layer_it_was_given():
    app = AppTest.from_function(_draw_every_kind, default_timeout=60).run()
    assert not app.exception
    edited = app.session_state["edited"]
    for cls, layer in SAMPLES.items():
        assert layer_from_dict(edited[cls.type]) == layer, cls.type
    keys = {item.key for item in app.number_input}
    assert "arch_encoder_0_filters_v0" in keys and "arch_encoder_1_op_v0_h" in keys
    assert "arch_encoder_0_dilation_v0_h" in keys
    assert "arch_encoder_2_depth_v0" in keys and "arch_encoder_3_depth_v0" in keys
    assert "arch_encoder_3_filters_v0" not in keys  # a depthwise convolution has none
