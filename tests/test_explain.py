"""The explanations keep every character of their formulas once rendered as markdown.

Issue 13: "3*3*1*16 + 16 = 160" rendered as "331*16 + 16 = 160" (two ``*`` made italics). The
text is rendered here with markdown-it (CommonMark, as Streamlit's renderer) and read back as
plain text, for every preset and for designs with dilation, strides and transposed convolutions.
"""

from __future__ import annotations

import html
import re

import pytest

from cae import explain
from cae.shapes import compute_shapes, effective_kernel_text
from cae.spec import (
    PRESETS,
    ArchitectureSpec,
    BatchNorm,
    Conv,
    Crop,
    Deconv,
    Depthwise,
    Dropout,
    Pool,
    SepConv,
    Upsample,
    preset,
)

markdown_it = pytest.importorskip("markdown_it")

EXPLAINERS = [topic.explain for topic in explain.TOPICS]  # what the Architecture page shows


def rendered_text(markdown: str) -> str:
    """What a reader sees: the markdown rendered to HTML, tags dropped, entities decoded."""
    out = markdown_it.MarkdownIt("commonmark").render(markdown)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", out)).split())


def specs():
    yield from (preset(name) for name in PRESETS)
    yield ArchitectureSpec(
        "wide",
        (28, 28, 1),
        (Conv(32, (5, 5)), Pool("max", (2, 2)), Conv(8, (3, 3), dilation=(2, 3))),
        (Upsample((2, 2)), Deconv(1, (3, 3), strides=(1, 1)), Crop(((0, 0), (0, 0)))),
    )
    yield ArchitectureSpec(
        "separable",
        (28, 28, 3),
        (SepConv(16, (3, 3), (2, 2), depth_multiplier=2), BatchNorm(), Depthwise((3, 3))),
        (Dropout(0.2), Upsample((2, 2)), Conv(3, (3, 3), activation="sigmoid")),
    )


@pytest.mark.parametrize("spec", list(specs()), ids=lambda s: s.name)
def test_every_formula_survives_rendering(spec):
    report = compute_shapes(spec)
    shown = " ".join(rendered_text(f(report)) for f in EXPLAINERS)
    assert "*" in shown  # the products are there, signs included
    for row in report.rows:
        layer = getattr(report.spec, row.part)[row.index]
        for formula in (row.formula, row.params_formula):
            if (
                formula
                and row.location in shown
                and formula in " ".join(f(report) for f in EXPLAINERS)
            ):
                assert formula in shown, (row.location, formula, shown)
        span = effective_kernel_text(
            getattr(layer, "kernel", (1, 1)), getattr(layer, "dilation", (1, 1))
        )
        if span and span in " ".join(f(report) for f in EXPLAINERS):
            assert span in shown


def test_the_issue_13_example_reads_5x5x1x32():
    spec = ArchitectureSpec("x", (28, 28, 1), (Conv(32, (5, 5)),), (Conv(1, (3, 3)),))
    shown = rendered_text(explain.explain_convolution(compute_shapes(spec)))
    assert "5*5*1*32 + 32 = 832" in shown, shown


def test_pooling_names_the_layer_that_rounds_or_says_that_none_does():
    """The text said "an odd side is rounded up (7 -> 4), which the decoder must undo by cropping"
    for every network, also those whose pooling divides evenly (classic: 28 -> 14 -> 7)."""
    classic = rendered_text(explain.explain_pooling(compute_shapes(preset("classic"))))
    assert "Every pooling here divides its input evenly, so nothing is rounded" in classic
    deep = rendered_text(explain.explain_pooling(compute_shapes(preset("deep"))))
    assert "Here encoder[5] does not divide its input evenly" in deep
    assert "rounds up, 7x7 -> 4x4, and the decoder must undo that with a crop" in deep
    valid = preset("classic").with_layers(
        encoder=(preset("classic").encoder[0], Pool("max", (3, 3), padding="valid"))
        + preset("classic").encoder[2:]
    )
    text = rendered_text(explain.explain_pooling(compute_shapes(valid)))
    assert "rounds down, 28x28 -> 9x9, and the decoder must undo that with zero padding" in text
