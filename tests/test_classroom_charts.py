"""Issue 13 item 10: one sequential palette from 0 (error maps, feature maps, the latent editor),
classes told apart on the latent map, whole-epoch ticks on loss charts."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from cae import colours, inspection, latent_edit, plots

REPO = Path(__file__).resolve().parents[1]


def _hex(rgb) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(round(c)) for c in rgb))


def test_one_palette_table_in_the_code():
    """Two Viridis tables with different stops drew the latent code (editor) and Inspect's
    feature maps; the table now lives in cae/colours.py alone."""
    first_stop = re.compile(r"\[\s*68,\s*1,\s*84\s*\]")  # Viridis' low end
    homes = [
        path.relative_to(REPO).as_posix()
        for path in [*REPO.glob("cae/*.py"), *REPO.glob("ui/*.py"), *REPO.glob("pages/*.py")]
        if first_stop.search(path.read_text(encoding="utf-8"))
    ]
    assert homes == ["cae/colours.py"]


def test_editor_feature_maps_and_heatmaps_draw_the_same_colours():
    ramp = np.linspace(0.0, 1.0, 9)
    expected = colours.colormap(ramp, 0.0, 1.0)
    editor = latent_edit.render_grid_image(ramp[None, :], 0.0, 1.0, 1, lines=False)[0]
    mosaic = inspection.feature_mosaic(ramp[None, :, None], scale=1)[0]
    assert np.array_equal(editor, expected) and np.array_equal(mosaic, expected)
    scale = plots.heatmap(np.zeros((2, 2))).data[0].colorscale
    assert [(round(float(at), 6), colour) for at, colour in scale] == [
        (round(float(at), 6), colour) for at, colour in colours.plotly_scale()
    ]
    assert [colour for _, colour in colours.plotly_scale()] == [
        _hex(rgb) for rgb in colours.SEQUENTIAL
    ]


def test_the_average_error_map_starts_at_zero():
    """It used Magma from the smallest error: zero error showed as black, the rest pink."""
    errors = np.array([[0.02, 0.03], [0.05, 0.08]])
    trace = plots.error_heatmap(errors, "where the error is").data[0]
    assert trace.zmin == 0.0 and trace.zmax == 0.08
    assert trace.colorscale[0][1] == _hex(colours.SEQUENTIAL[0])
    flat = plots.error_heatmap(np.zeros((2, 2)), "perfect").data[0]
    assert (flat.zmin, flat.zmax) == (0.0, 1.0)  # a perfect run: all the low end, not mid-scale


def test_classes_zero_and_one_differ_in_colour_and_shape():
    points = np.arange(20, dtype=float).reshape(10, 2)
    labels = np.repeat(np.arange(5), 2)
    fig = plots.latent_map(points, np.array([0.5, 0.2]), labels, [str(i) for i in range(10)])
    styles = [(trace.marker.color, trace.marker.symbol) for trace in fig.data]
    assert len(set(c for c, _ in styles)) == 5 and len(set(s for _, s in styles)) == 5
    assert styles[0][0] != styles[1][0] and styles[0][1] != styles[1][1]
    assert colours.class_style(10) != colours.class_style(0)  # past ten: another shape


def test_loss_charts_tick_whole_epochs():
    for epochs, step in ((2, 1), (3, 1), (10, 1), (11, 2), (30, 5), (100, 10), (10_000, 1000)):
        history = {"loss": [1.0 / (i + 1) for i in range(epochs)]}
        axis = plots.loss_curves({"run": history}).layout.xaxis
        assert axis.dtick == step and axis.tickformat == "d", (epochs, axis)
        ticks = np.arange(axis.tick0, epochs + 1, axis.dtick)
        assert np.all(ticks == np.round(ticks)) and len(ticks) <= 11


def test_titles_sit_below_the_toolbar_strip():
    """The toolbar (modebar, ~30 px at the top right on hover) covered the diagram's title."""
    from cae.shapes import compute_shapes
    from cae.spec import preset

    for fig in (
        plots.shape_diagram(compute_shapes(preset("classic"))),
        plots.heatmap(np.zeros((3, 3)), title="a title"),
    ):
        title = fig.layout.title
        assert title.yref == "paper" and title.y == 1 and title.yanchor == "bottom"
        assert fig.layout.margin.t >= plots.MODEBAR_PX + 20


def test_pictures_have_no_grid_lines_and_no_toolbar_over_them():
    """Issue 28: grid lines ran behind heatmaps and kernel strips, and plotly's toolbar covered
    the top right image on hover. Pictures now drop both; a chart (loss curves) keeps its tools."""
    pictures = {
        "heatmap": plots.heatmap(np.zeros((3, 3))),
        "kernels": plots.kernel_map(np.ones((4, 9))),
        "errors": plots.error_heatmap(np.ones((2, 2)), "error"),
    }  # image grids are HTML since issue 28's labels (no plotly, no toolbar): test_channels
    for name, figure in pictures.items():
        layout = figure.layout
        assert layout.xaxis.showgrid is False and layout.yaxis.showgrid is False, name
        assert layout.xaxis.zeroline is False and layout.yaxis.zeroline is False, name
        assert {"zoom", "pan", "toImage", "autoScale2d"} <= set(layout.modebar.remove), name
        assert layout.margin.t >= plots.MODEBAR_PX, name  # what is left sits above the picture
    curves = plots.loss_curves({"run": {"loss": [0.3, 0.2]}})
    assert not curves.layout.modebar.remove
