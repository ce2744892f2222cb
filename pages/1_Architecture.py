"""Architecture: edit the layers, see every shape and parameter count at once, fix mismatches."""

from __future__ import annotations

from typing import Any

import streamlit as st

from cae import explain
from cae.plots import shape_diagram
from cae.preflight import ONEDNN_OFF_SLOWDOWN, estimate_memory
from cae.shapes import ShapeError, ShapeReport, compute_shapes, needs_onednn_off, repairs
from cae.spec import MAX_CHANNELS, MAX_IMAGE_SIDE, MAX_NAME_LENGTH, PRESETS, ArchitectureSpec
from cae.text import plain_markdown
from ui.design_editor import (
    MESSAGE_KEY,
    ask_before_preset,
    fill_lines,
    load_upload,
    on_fix,
    on_mirror,
    on_preset,
    part_editor,
    spec_dict,
    variational_editor,
    version,
)
from ui.layer_editor import fix_buttons
from ui.state import SPEC_KEY, page_frame, refresh_sidebar, remember

page_frame("Architecture")
DEFAULT_BATCH = 64  # the Train page's default batch size, for the memory estimate here

# The shape summary (metrics, verdict, diagram) stays in view beside a long layer list on a wide
# screen; narrow screens stack the columns, and the list is compact there (one editor open).
# A layer's line (and an open layer's top row) stays one row on a narrow screen too, where
# Streamlit would stack each of its buttons on a row of its own.
LAYOUT_CSS = """<style>
@media (min-width: 640px) {
  [data-testid="stColumn"]:has(.st-key-arch_summary) {
    position: sticky; top: 3.75rem; align-self: flex-start; z-index: 1;
  }
}
[class*="st-key-arch_"][class*="_line_v"] { padding: 0.3rem 0.6rem !important; }
[class*="st-key-arch_"][class*="_line_v"] [data-testid="stMarkdownContainer"] { margin: 0 !important; }
[class*="st-key-arch_"][class*="_line_v"] p { margin: 0 !important; line-height: 1.45; }
@media (max-width: 640px) {
  [class*="st-key-arch_"][class*="_row_v"] [data-testid="stHorizontalBlock"] {
    flex-wrap: nowrap;
  }
  [class*="st-key-arch_"][class*="_row_v"] [data-testid="stColumn"] {
    min-width: 0 !important; width: auto !important; flex: 0 0 auto !important;
  }
  [class*="st-key-arch_"][class*="_row_v"] [data-testid="stColumn"]:first-child {
    flex: 1 1 0 !important;
  }
}
</style>"""


def starting_points() -> None:
    """The title, then the ways to start over: a preset, an uploaded file, the encoder's mirror."""
    st.title("Architecture")
    st.html(LAYOUT_CSS)
    st.caption(
        "Edit the network; every shape, parameter count and formula below follows at once. "
        "The design carries over to the Train page."
    )
    top = st.columns([2, 1, 2, 2])
    top[0].selectbox("Start from a preset", list(PRESETS), key="arch_preset")
    top[1].button("Load preset", key="arch_load_preset", on_click=on_preset, width="stretch")
    top[2].file_uploader(
        "…or upload an architecture JSON", type=["json"], key="arch_upload", on_change=load_upload
    )
    top[3].button(
        "Mirror the encoder",
        key="arch_mirror",
        on_click=on_mirror,
        width="stretch",
        help="Derive the decoder from the encoder: pooling becomes up-sampling, strided "
        "convolutions become transposed ones, and a sigmoid convolution gives the channels.",
    )
    ask_before_preset()


def last_change() -> None:
    """What the last change did (a preset loaded, a fix applied) or why it was refused."""
    message = st.session_state.pop(MESSAGE_KEY, None)
    if message:  # (kind, markdown); material icons render without an emoji font (a ❌ did not)
        kind, text = message
        if kind == "error":
            st.error(text, icon=":material/error:")
        else:
            st.success(text, icon=":material/check_circle:")


def design(data: dict[str, Any], lines: dict[tuple[str, int], Any]) -> dict[str, Any]:
    """The name, input shape, variational settings and both layer lists; returns the design as
    edited (the spec's dict, checked by the next section). Closed layers' lines go in ``lines``."""
    name = st.text_input(
        "Name", data.get("name", "custom"), max_chars=MAX_NAME_LENGTH, key=f"arch_name_v{version()}"
    )
    shape = data.get("input_shape", [28, 28, 1])
    columns = st.columns(3)
    height = columns[0].number_input(
        "input height", 1, MAX_IMAGE_SIDE, int(shape[0]), key=f"arch_in_h_v{version()}"
    )
    width = columns[1].number_input(
        "input width", 1, MAX_IMAGE_SIDE, int(shape[1]), key=f"arch_in_w_v{version()}"
    )
    channels = columns[2].number_input(
        "channels",
        1,
        MAX_CHANNELS,
        int(shape[2]) if len(shape) > 2 else 1,
        key=f"arch_in_c_v{version()}",
    )
    variational = variational_editor(data.get("variational"))
    st.subheader("Encoder")
    encoder = part_editor("encoder", data, lines)
    st.subheader("Decoder")
    decoder = part_editor("decoder", data, lines)
    last = decoder[-1] if decoder else {}
    if last.get("type") == "conv" and last.get("kernel") in ([1, 3], (1, 3)):
        st.caption(
            f"decoder[{len(decoder) - 1}]'s 1x3 kernel (one row, three columns) is the classic "
            "preset's as the article it comes from chose it: with 'same' padding it keeps the "
            "image's size as a 3x3 would, mixing each row's neighbours only, with 3 weights per "
            "channel instead of 9. Try 3x3 and compare the runs."
        )
    edited = {
        "name": name.strip() or "custom",
        "input_shape": [int(height), int(width), int(channels)],
        "encoder": encoder,
        "decoder": decoder,
    }
    if variational is not None:
        edited["variational"] = variational
    return edited


def verdict(edited: dict[str, Any]) -> tuple[ArchitectureSpec | None, ShapeReport | None]:
    """Whether the design can be built and trained here: the code, compression and parameters,
    the shape check with its checked fixes, the memory estimate and the tensor diagram."""
    try:
        spec = ArchitectureSpec.from_dict(edited)
        report = compute_shapes(spec)
    except ShapeError as error:
        st.error(f"**This design cannot be built.** {error}", icon=":material/block:")
        fix_buttons(error.fixes, "arch_fix_layer_", on_fix)
        return None, None
    except ValueError as error:
        st.error(f"**This design is not valid.** {error}", icon=":material/block:")
        fix_buttons(repairs(edited), "arch_fix_value_", on_fix)
        return None, None
    metrics = st.columns(3)
    metrics[0].metric("Latent code", "x".join(str(n) for n in report.latent_shape))
    metrics[1].metric(
        "Compression", f"{report.compression_ratio:.1f}x", help="input values / code values"
    )
    metrics[2].metric("Parameters", f"{report.total_params:,}")
    output = "x".join(str(n) for n in report.output_shape)
    memory = estimate_memory(report, DEFAULT_BATCH)
    if report.matches and not memory.fits:
        st.error(
            f"**Too big to train here.** The decoder comes back to the input shape ({output}), "
            f"but the {memory.describe()}; the largest tensor is {memory.largest}. At most "
            f"batch {memory.batch_that_fits} fits.",
            icon=":material/memory:",
        )
    elif report.matches:
        st.success(
            f"The decoder comes back to the input shape ({output}): this design can be trained.",
            icon=":material/check_circle:",
        )
        st.caption(f"Estimated {memory.describe()}.")
    else:
        st.warning(f"**Shape mismatch.** {report.problem}", icon=":material/warning:")
        if report.fixes:
            st.markdown("Suggested fixes (each one checked):")
        fix_buttons(report.fixes, "arch_fix_", on_fix)
    if needs_onednn_off(spec):
        st.caption(
            "A kernel 1 tap wide along a strided axis: this design trains with TensorFlow's "
            f"oneDNN operations off (they crash on it), about {ONEDNN_OFF_SLOWDOWN:g}x as long."
        )
    st.plotly_chart(shape_diagram(report), width="stretch", key="arch_diagram")
    return spec, report


def shape_table(spec: ArchitectureSpec, report: ShapeReport) -> None:
    """Every layer's output shape and parameters with their formulas, and the download."""
    table = [  # a table's cells are markdown: escaped, or "3*3*1*16" shows as "331*16"
        {
            "layer": plain_markdown(row.location),
            "type": plain_markdown(row.label),
            "output": "x".join(str(n) for n in row.output_shape),
            "params": row.params,
            "shape formula": plain_markdown(row.formula),
            "parameter formula": plain_markdown(row.params_formula),
        }
        for row in report.rows
    ]
    # a table, not a dataframe: every row whole ("Conv 16 3x3 same relu", its formulas), where
    # the dataframe's cells cut them ("...same relu") at this width
    st.table(table, border="horizontal", hide_index=True)
    inputs = report.input_shape[0] * report.input_shape[1] * report.input_shape[2]
    st.caption(
        f"Encoder {report.encoder_params:,} parameters · decoder {report.decoder_params:,} · "
        f"code {report.latent_size} values from {inputs} inputs"
    )
    st.download_button(
        "Download the architecture (JSON)",
        spec.to_json(),
        file_name=f"{spec.name}.json",
        mime="application/json",
        key="arch_download",
    )


def ideas(report: ShapeReport) -> None:
    """The explanations, each with this network's own layers and numbers."""
    st.subheader("The ideas, with your numbers")
    for topic in explain.TOPICS:
        text = topic.explain(report)
        if text:  # a topic this network has nothing for (no crop, say) is left out
            with st.expander(topic.title):
                st.markdown(text)


def main() -> None:
    """Start from somewhere, edit the design beside its verdict, then read the details."""
    starting_points()
    last_change()
    lines: dict[tuple[str, int], Any] = {}  # closed layers' summary lines, filled below
    editor, results = st.columns([1, 1], gap="large")
    with editor:
        edited = design(spec_dict(), lines)
    remember(SPEC_KEY, edited)
    with results, st.container(key="arch_summary"):
        spec, report = verdict(edited)
    fill_lines(lines, edited, report)
    if spec is not None and report is not None:  # the details, full width below the editor
        shape_table(spec, report)
        ideas(report)
    refresh_sidebar()  # the sidebar was drawn before this page changed the design


main()
