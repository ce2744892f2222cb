"""Figures (no streamlit): the shape diagram, loss curves, heatmaps, sweeps (plotly), and image
grids (HTML, and PNG for downloads).

plotly is imported inside each function so importing this module stays cheap. Plotly renders a
subset of HTML (``<a href>`` included) in trace names, hovers and titles: every name or title
passed in (run names, class names from an upload) goes through ``cae.text.plain_html``; an image
grid's titles are escaped as HTML (``html.escape`` of ``cae.text.clean_name``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from cae.colours import class_style, plotly_scale
from cae.latent_edit import image_view
from cae.text import clean_name, plain_html

if TYPE_CHECKING:  # pragma: no cover
    import plotly.graph_objects as go

    from cae.shapes import ShapeReport

ENCODER_COLOUR = "#4F46E5"
LATENT_COLOUR = "#DB2777"
DECODER_COLOUR = "#0D9488"
INPUT_COLOUR = "#6B7280"
MODEBAR_PX = 32  # the chart toolbar's strip at the top right; a title sits below it
# Every button of plotly's toolbar (its modebar, shown on hover at the top right): image figures
# drop them all (issue 28: it covered the top right image); zooming a picture is the chart's
# full-screen button (Streamlit's, the one left in the toolbar) and the grids have PNG downloads
# of their own.
TOOLBAR_BUTTONS = (
    "zoom", "pan", "select", "lasso", "zoomin", "zoomout", "autoscale", "resetscale", "toimage",
    "zoom2d", "pan2d", "select2d", "lasso2d", "zoomIn2d", "zoomOut2d", "autoScale2d",
    "resetScale2d", "toImage", "hoverclosest", "hovercompare", "togglehover", "togglespikelines",
)  # fmt: skip


def picture_figure(fig: go.Figure) -> go.Figure:
    """``fig`` set as a picture: no grid or zero lines behind its cells, and plotly's toolbar
    without its buttons, above the picture: what is left of it (Streamlit's full-screen button)
    sits in a top margin of ``MODEBAR_PX``, not over the top right image."""
    top = fig.layout.margin.t
    fig.update_layout(
        modebar={"remove": list(TOOLBAR_BUTTONS)},
        plot_bgcolor="white",
        margin={"t": max(MODEBAR_PX, top if top is not None else 0)},
    )
    fig.update_xaxes(showgrid=False, zeroline=False)
    fig.update_yaxes(showgrid=False, zeroline=False)
    return fig


# The smallest and largest width of an image grid's tile on screen, in CSS pixels.
TILE_PX = (64, 160)


def _title(fig: go.Figure, text: str, top: int = 10) -> None:
    """``text`` as the figure's title, in a strip below the toolbar's (which appears on hover at
    the top right and covered a long title); ``top`` is the margin the figure has without one."""
    fig.update_layout(
        title={
            "text": plain_html(text),
            "font": {"size": 13},
            "x": 0,
            "xref": "paper",
            "y": 1,
            "yref": "paper",
            "yanchor": "bottom",
            "pad": {"b": 8},
        },
        margin={"t": max(top, MODEBAR_PX + 26)},
    )


def integer_ticks(count: int) -> dict[str, int | str]:
    """Axis settings for 1..``count`` (epochs): whole numbers only, about ten ticks at most."""
    step = next(n for n in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10**9)
                if count / n <= 10)  # fmt: skip
    return {"tickmode": "linear", "tick0": 1 if step == 1 else 0, "dtick": step, "tickformat": "d"}


def shape_diagram(report: ShapeReport) -> go.Figure:
    """Each tensor as a block: height by spatial size, width by channel count; the code highlighted."""
    import plotly.graph_objects as go

    tensors = [("input", "Input", report.input_shape, 0, INPUT_COLOUR)]
    encoder_rows = [row for row in report.rows if row.part == "encoder"]
    for row in report.rows:
        colour = ENCODER_COLOUR if row.part == "encoder" else DECODER_COLOUR
        if row.head or (row.part == "encoder" and row is encoder_rows[-1]):
            colour = LATENT_COLOUR  # the code (a variational design's mean and log-variance)
        tensors.append((row.location, row.label, row.output_shape, row.params, colour))

    max_side = max(max(shape[0], shape[1]) for _, _, shape, _, _ in tensors)
    max_channels = max(shape[2] for _, _, shape, _, _ in tensors)
    fig = go.Figure()
    x = 0.0
    for location, label, shape, params, colour in tensors:
        height = shape[0] / max_side
        width = 0.25 + 0.75 * math.log2(1 + shape[2]) / math.log2(1 + max_channels)
        fig.add_shape(
            type="rect",
            x0=x,
            x1=x + width,
            y0=-height / 2,
            y1=height / 2,
            fillcolor=colour,
            opacity=0.85,
            line={"color": "white", "width": 1},
        )
        dims = "x".join(str(n) for n in shape)
        # Neighbouring labels alternate between two heights so they never overlap.
        label_y = height / 2 + (0.08 if len(fig.layout.shapes) % 2 else 0.2)
        fig.add_trace(
            go.Scatter(
                x=[x + width / 2],
                y=[label_y],
                mode="text",
                text=[dims],
                textfont={"size": 11},
                hovertext=[f"{location}: {label}<br>output {dims}<br>{params:,} parameters"],
                hoverinfo="text",
                showlegend=False,
            )
        )
        # a variational code's two maps are named by their role alone ("mean", "log-var"), and
        # the names below alternate heights too: "enc[4] mean" ran into its neighbours
        short = location.replace("encoder", "enc").replace("decoder", "dec")
        fig.add_trace(
            go.Scatter(
                x=[x + width / 2],
                y=[-height / 2 - (0.1 if len(fig.layout.shapes) % 2 else 0.2)],
                mode="text",
                text=[short.split(" ", 1)[1] if " " in short else short],
                textfont={"size": 9, "color": "#6B7280"},
                hoverinfo="skip",
                showlegend=False,
            )
        )
        x += width + 0.35
    for name, colour in (
        ("encoder", ENCODER_COLOUR),
        ("code", LATENT_COLOUR),
        ("decoder", DECODER_COLOUR),
    ):
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="markers",
                marker={"size": 12, "color": colour, "symbol": "square"},
                name=name,
            )
        )
    fig.update_layout(
        height=300,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis={"visible": False, "range": [-0.6, x + 0.2]},
        yaxis={"visible": False, "range": [-0.8, 0.85]},
        plot_bgcolor="white",
        legend={"orientation": "h", "y": -0.02, "x": 0, "yanchor": "top"},
    )
    _title(fig, "Tensor shapes (block height: spatial size; width: channels)")
    return fig


def image_grid(rows: list[np.ndarray], row_titles: list[str], *, channel: int | None = None) -> str:
    """Rows of images (each (N,H,W) or (N,H,W,C) in [0,1]) as one block of HTML (for
    ``st.html``), pixels kept sharp, shown as ``cae.latent_edit.image_view`` shows them
    (``channel``: that channel alone).

    Each test image is a column of tiles (its original over each row's version of it) and the
    row titles a column of their own on the left, written across (never turned on their side):
    the columns wrap onto more lines on a narrow screen, each at least :data:`TILE_PX` [0] pixels
    wide and at most [1], so a title never prints over another (each has its row's height, and
    a long one makes its row taller) and a tile stays readable at 400 px. On a 28x28 grid a
    plotly figure had printed "outputcorrupted inpuoriginal" and shrunk its tiles to 35 px on a
    phone (issue 28). Titles are escaped: no text of the page is markup."""
    import base64
    import html
    import io

    from PIL import Image

    height, width, count = _cell_size(rows)
    span = len(rows) + 1  # a column's rows and the spacer under them (the gap between lines)
    shape = f"aspect-ratio:{width}/{height}"

    def tile(image: np.ndarray) -> str:
        pixels = np.full((height, width, 3), 255, np.uint8)  # a smaller image sits top left
        shown = (np.clip(_as_rgb(image, channel), 0, 1) * 255).round().astype(np.uint8)
        pixels[: shown.shape[0], : shown.shape[1]] = shown
        buffer = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(buffer, format="PNG", compress_level=1)
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")

    titles = [html.escape(clean_name(str(title))) for title in row_titles[: len(rows)]]
    titles += [""] * (len(rows) - len(titles))
    columns = [
        "<div class='cae-grid-col'>"
        + "".join(
            f"<div class='cae-grid-label' style='{shape}'><span>{title}</span></div>"
            for title in titles
        )
        + "<div></div></div>"
    ]
    for c in range(count):
        cells = []
        for r, images in enumerate(rows):
            if c < len(images):
                cells.append(
                    f"<img class='cae-grid-tile' style='{shape}' src='{tile(images[c])}' "
                    f"alt='{titles[r]}, image {c + 1}'>"
                )
            else:
                cells.append(f"<div style='{shape}'></div>")
        columns.append("<div class='cae-grid-col'>" + "".join(cells) + "<div></div></div>")
    low, high = TILE_PX
    return (
        f"<div class='cae-grid' style='max-width:{(count + 1) * (high + 6)}px'>"
        + "".join(columns)
        + "<style>"
        f".cae-grid{{display:grid;grid-template-columns:repeat(auto-fit,minmax({low}px,1fr));"
        "column-gap:6px;row-gap:3px}"
        f".cae-grid-col{{display:grid;grid-row:span {span};grid-template-rows:subgrid;min-width:0}}"
        ".cae-grid-col>:last-child{height:0.5rem}"
        ".cae-grid-tile{display:block;width:100%;height:auto;image-rendering:pixelated}"
        ".cae-grid-label{display:flex;align-items:center;justify-content:flex-end;"
        "text-align:right;font-size:0.75rem;line-height:1.2;overflow-wrap:anywhere;"
        "hyphens:auto;opacity:0.8}"
        "</style></div>"
    )


def _cell_size(rows: list[np.ndarray]) -> tuple[int, int, int]:
    """(height, width) of a grid's cells (its largest image's) and its number of columns."""
    height = max(int(np.shape(image)[0]) for images in rows for image in images)
    width = max(int(np.shape(image)[1]) for images in rows for image in images)
    return height, width, max(len(images) for images in rows)


def mosaic(
    rows: list[np.ndarray], *, gap: int, row_gap: int | None = None, channel: int | None = None
) -> np.ndarray:
    """Rows of images (N,H,W[,C]) in [0,1] as one uint8 RGB picture on white, shown as
    ``cae.latent_edit.image_view`` shows them: ``gap`` pixels between columns, ``row_gap``
    (default ``gap``) between rows; a smaller image sits at the top left of its cell."""
    if gap < 0 or (row_gap is not None and row_gap < 0):
        raise ValueError(f"gaps must be >= 0. Received: gap={gap}, row_gap={row_gap}")
    row_gap = gap if row_gap is None else row_gap
    height, width, count = _cell_size(rows)
    canvas = np.full(
        (len(rows) * (height + row_gap) - row_gap, count * (width + gap) - gap, 3),
        255,
        dtype=np.uint8,
    )
    for r, images in enumerate(rows):
        for c, image in enumerate(images):
            pixels = (np.clip(_as_rgb(image, channel), 0, 1) * 255).round().astype(np.uint8)
            top, left = r * (height + row_gap), c * (width + gap)
            canvas[top : top + pixels.shape[0], left : left + pixels.shape[1]] = pixels
    return canvas


# The history keys drawn as curves, their line style and legend words: a variational run's two
# loss terms (cae.training.VARIATIONAL_TERMS) beside its total.
CURVES = (
    ("loss", "solid", "train"),
    ("val_loss", "dash", "validation"),
    ("recon_loss", "dot", "reconstruction (train)"),
    ("kl_loss", "dashdot", "KL (train)"),
)


def loss_curves(
    histories: dict[str, dict[str, list[float]]], *, kept: int | None = None
) -> go.Figure:
    """Training and validation loss per epoch, one colour per run, validation dashed; a
    variational run's reconstruction and KL terms dotted and dash-dotted; ``kept``: the epoch
    whose weights were kept, marked by a dotted line."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    fig = go.Figure()
    epochs = 1
    for index, (name, history) in enumerate(histories.items()):
        colour = qualitative.Plotly[index % len(qualitative.Plotly)]
        for key, dash, what in CURVES:
            values = history.get(key) or []
            epochs = max(epochs, len(values))
            if values:
                fig.add_trace(
                    go.Scatter(
                        x=list(range(1, len(values) + 1)),
                        y=values,
                        mode="lines+markers",
                        name=f"{plain_html(name)} {what}",
                        line={"color": colour, "dash": dash},
                    )
                )
    fig.update_layout(
        height=320,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis_title="epoch",
        xaxis=integer_ticks(epochs),  # whole epochs: no 1.5 between 1 and 2
        yaxis_title="loss",
        legend={"orientation": "h", "y": -0.25},
    )
    if kept is not None:
        fig.add_vline(
            x=kept, line_dash="dot", line_color="grey", annotation_text=f"kept: epoch {kept}"
        )
    return fig


def heatmap(
    values: np.ndarray,
    *,
    title: str = "",
    colorscale: str | list | None = None,
    zmin: float | None = None,
    zmax: float | None = None,
    zmid: float | None = None,
) -> go.Figure:
    """One 2-D array (or (H, W, 1)) as a heatmap with the first row on top and square cells, on
    the app's sequential scale (``cae.colours``) unless ``colorscale`` says otherwise; a picture
    (:func:`picture_figure`: no grid lines behind the cells, no toolbar over them)."""
    import plotly.graph_objects as go

    z = np.asarray(values)
    if z.ndim == 3 and z.shape[-1] == 1:
        z = z[..., 0]
    if z.ndim != 2:
        raise ValueError(
            f"A heatmap shows one 2-D array (pick a channel first). Received: shape={z.shape}"
        )
    scale = plotly_scale() if colorscale is None else colorscale
    fig = go.Figure(go.Heatmap(z=z, colorscale=scale, zmin=zmin, zmax=zmax, zmid=zmid))
    fig.update_yaxes(autorange="reversed", scaleanchor="x", showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    fig.update_layout(height=300, margin={"l": 5, "r": 5, "t": 5, "b": 5})
    if title:
        _title(fig, title)
    return picture_figure(fig)


def error_heatmap(errors: np.ndarray, title: str) -> go.Figure:
    """A map of errors (>= 0) on the sequential scale from 0: zero error is the scale's low end
    whatever the smallest error is, and the colour bar starts at 0."""
    top = float(np.nanmax(errors)) if np.size(errors) else 0.0
    fig = heatmap(errors, title=title, zmin=0.0, zmax=top if top > 0 else 1.0)
    fig.update_traces(colorbar={"title": {"text": "error", "side": "right"}})
    return fig


def kernel_map(mosaic: np.ndarray) -> go.Figure:
    """Learned kernels laid out by ``cae.inspection.kernel_mosaic``: red negative, blue positive,
    white zero, one colour range symmetric about zero."""
    bound = float(np.nanmax(np.abs(mosaic))) or 1.0
    fig = heatmap(mosaic, colorscale="RdBu", zmin=-bound, zmax=bound, zmid=0)
    fig.update_layout(height=min(520, 60 + 22 * mosaic.shape[0]))
    return fig


def latent_map(
    points: np.ndarray,
    ratios: np.ndarray,
    labels: np.ndarray | None,
    class_names: list[str],
) -> go.Figure:
    """Codes projected on two principal directions, one trace per class (or one for unlabelled
    codes); each point carries its test-image index as ``customdata`` for selections."""
    import plotly.graph_objects as go

    fig = go.Figure()
    values = np.zeros(len(points), int) if labels is None else np.asarray(labels)
    for value in np.unique(values):
        members = np.flatnonzero(values == value)
        named = labels is not None and 0 <= value < len(class_names)
        name = plain_html(class_names[int(value)]) if named else "all"  # a user's label
        colour, symbol = class_style(int(value))  # class 0 and 1: other hue, other shape
        fig.add_trace(
            go.Scattergl(
                x=points[members, 0],
                y=points[members, 1],
                mode="markers",
                name=name,
                customdata=members,
                marker={"size": 7, "opacity": 0.8, "color": colour, "symbol": symbol},
                hovertemplate=f"{name} · test image #%{{customdata}}<extra></extra>",
            )
        )
    fig.update_layout(
        height=520,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        dragmode="lasso",
        xaxis_title=f"PC 1 ({100 * ratios[0]:.1f}% of the variance)",
        yaxis_title=f"PC 2 ({100 * ratios[1]:.1f}%)",
    )
    return fig


def grid_png(
    rows: list[np.ndarray], *, scale: int = 4, gap: int = 2, channel: int | None = None
) -> bytes:
    """Rows of images (N,H,W[,C]) in [0,1] as one PNG, upscaled with nearest-neighbour pixels,
    shown as :func:`image_grid` shows them."""
    import io

    from PIL import Image

    if scale < 1 or gap < 0:
        raise ValueError(f"scale must be >= 1 and gap >= 0. Received: scale={scale}, gap={gap}")
    picture = Image.fromarray(mosaic(rows, gap=gap, channel=channel), "RGB")
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _as_rgb(image: np.ndarray, channel: int | None = None) -> np.ndarray:
    """One image as shown (grayscale, RGB or one channel alone), float32 (H, W, 3) in [0, 1]."""
    view = image_view(image, channel)
    return np.repeat(view[..., None], 3, axis=-1) if view.ndim == 2 else view


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats (a smaller or equal x and a higher y), ordered
    by x: lower x (parameters, code size) and higher y (PSNR) are better."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


SWEEP_AXES = {"params": "parameters", "code_size": "code size (values per image)"}


UNLEARNED_COLOUR = "#9CA3AF"  # a run that did not beat the mean image: greyed, an x


def sweep_scatter(
    rows: list[dict], x_key: str = "params", baselines: list[dict] | tuple = ()
) -> go.Figure:
    """Each run of an experiment as a point, ``x_key`` (``params`` or ``code_size``) against test
    PSNR, the Pareto front as a line, the design and run on hover (``customdata``: the run id, for
    selections); a row with ``did_not_learn`` is a grey x, labelled so, and off the front when
    another run learned. The axes zoom to the runs.
    ``baselines`` (``cae.sweep.chart_baselines``): dicts with a ``label`` and either one ``psnr``
    (a line across the chart), a ``band`` (low, high: a shaded band) or ``points`` ((x, PSNR)
    pairs inside the runs' range, diamonds joined by a dotted line); ``kind`` ``pca`` or
    ``mean`` picks the colour."""
    import plotly.graph_objects as go

    if x_key not in SWEEP_AXES:
        raise ValueError(f"x_key must be one of {', '.join(SWEEP_AXES)}. Received: x_key={x_key!r}")
    usable = [
        row
        for row in rows
        if isinstance(row.get(x_key), (int, float))
        and isinstance(row.get("psnr"), (int, float))
        and math.isfinite(row["psnr"])
    ]
    fig = go.Figure()
    points = [(float(row[x_key]), float(row["psnr"])) for row in usable]
    unlearned = [bool(row.get("did_not_learn")) for row in usable]
    hover = [
        f"{plain_html(row.get('design') or '')}<br>{plain_html(row.get('name') or '')}"
        f"<br>{SWEEP_AXES[x_key]} {row[x_key]:,}<br>PSNR {row['psnr']:.2f} dB"
        + ("<br>did not learn: not above the mean image" if unlearned[i] else "")
        for i, row in enumerate(usable)
    ]
    # the front of the runs that learned (a tiny run below the mean image is no trade-off)
    learned = [i for i, flag in enumerate(unlearned) if not flag] or list(range(len(points)))
    front = [learned[j] for j in pareto_front([points[i] for i in learned])]
    if front:  # always the first trace, so the runs are always the second
        fig.add_trace(
            go.Scatter(
                x=[points[i][0] for i in front],
                y=[points[i][1] for i in front],
                mode="lines",
                name="Pareto front",
                line={"color": LATENT_COLOUR, "shape": "hv", "width": 2},
                hoverinfo="skip",
            )
        )
    on_front = set(front)

    def colour(i: int) -> str:
        if unlearned[i]:
            return UNLEARNED_COLOUR
        return LATENT_COLOUR if i in on_front else ENCODER_COLOUR

    fig.add_trace(
        go.Scatter(
            x=[p[0] for p in points],
            y=[p[1] for p in points],
            mode="markers",
            name="runs",
            customdata=[row.get("run_id") for row in usable],
            text=hover,
            hovertemplate="%{text}<extra></extra>",
            marker={
                "size": [13 if i in on_front else 9 for i in range(len(points))],
                "color": [colour(i) for i in range(len(points))],
                "symbol": ["x" if flag else "circle" for flag in unlearned],
                "line": {"width": 1, "color": "white"},
            },
        )
    )
    if any(unlearned):  # the words beside the points, in the legend too (no hover: clicks pass)
        fig.add_trace(
            go.Scatter(
                x=[p[0] for p, flag in zip(points, unlearned, strict=True) if flag],
                y=[p[1] for p, flag in zip(points, unlearned, strict=True) if flag],
                mode="text",
                text=["did not learn"] * sum(unlearned),
                textposition="top center",
                textfont={"color": UNLEARNED_COLOUR, "size": 11},
                name="did not learn (not above the mean image)",
                hoverinfo="skip",
            )
        )
    ys = [p[1] for p in points]
    for baseline in baselines:
        label = plain_html(baseline.get("label", "baseline"))
        tone = INPUT_COLOUR if baseline.get("kind") == "mean" else DECODER_COLOUR
        pairs = [
            (float(x), float(y))
            for x, y in baseline.get("points") or ()
            if isinstance(y, (int, float)) and math.isfinite(y)
        ]
        psnr, band = baseline.get("psnr"), baseline.get("band")
        if pairs:
            pairs.sort()
            ys += [y for _, y in pairs]
            fig.add_trace(
                go.Scatter(
                    x=[x for x, _ in pairs], y=[y for _, y in pairs], mode="lines+markers",
                    name=label, line={"dash": "dot", "color": tone},
                    marker={"symbol": "diamond", "size": 9},
                    hovertemplate=f"{label}<br>%{{x:,}}: PSNR %{{y:.2f}} dB<extra></extra>",
                )
            )  # fmt: skip
        elif band is not None and all(isinstance(v, (int, float)) for v in band):
            low, high = sorted(float(v) for v in band)
            ys += [low, high]
            fig.add_hrect(
                y0=low, y1=high, fillcolor=tone, opacity=0.15, line_width=0,
                annotation_text=f"{label}: {low:.2f} to {high:.2f} dB",
                annotation_position="top left",
            )  # fmt: skip
        elif isinstance(psnr, (int, float)) and math.isfinite(psnr):
            ys.append(float(psnr))
            fig.add_hline(
                y=float(psnr),
                line={"dash": "dash" if baseline.get("kind") == "mean" else "dot", "color": tone},
                annotation_text=f"{label}: {psnr:.2f} dB",
                annotation_position="bottom right"
                if baseline.get("kind") == "mean"
                else "top left",
            )
    xs = [p[0] for p in points]
    log = bool(xs) and min(xs) > 0 and max(xs) / min(xs) >= 10
    fig.update_layout(
        height=420,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis_title=SWEEP_AXES[x_key],
        yaxis_title="test PSNR (dB)",
        xaxis_type="log" if log else "linear",
        legend={"orientation": "h", "y": -0.2},
        clickmode="event+select",
    )
    if xs:  # zoomed to the runs (a baseline's points lie among them); the lines span it all
        fig.update_xaxes(range=_padded(xs, log))
        fig.update_yaxes(range=_padded(ys, False, least=1.0))
    return fig


def _padded(values: list[float], log: bool, least: float = 0.0) -> list[float]:
    """An axis range around ``values`` with a margin (in log10 units on a log axis)."""
    if log:
        values = [math.log10(v) for v in values]
    low, high = min(values), max(values)
    alone = 0.1 if log else abs(high) * 0.1 or 1.0  # one value: a margin of its own size
    margin = max((high - low) * 0.1 if high > low else alone, least)
    return [low - margin, high + margin]
