"""The Architecture page's design editor: the spec being edited in st.session_state, the layer
list (one line per layer, one layer's editor open at a time, move and remove buttons), the
variational settings, and the callbacks that change the design (add, remove, move, change a kind,
presets, uploads, the mirror, a suggested fix).

Widget keys keep the ``_v<n>`` generation (``arch_encoder_2_filters_v3``): it bumps on every
structural change so every widget restarts from the spec.
"""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

from cae.shapes import mirror
from cae.spec import (
    MAX_BETA,
    MAX_SPEC_BYTES,
    MAX_WARMUP_EPOCHS,
    PRESETS,
    ArchitectureSpec,
    layer_to_dict,
    preset,
)
from cae.text import plain_code, plain_markdown
from ui.layer_editor import Slot, kind_select, kind_title, layer_widgets, new_layer
from ui.state import SPEC_KEY, active_spec_dict, remember

VERSION_KEY = "arch_version"  # bumps on every structural change so widgets restart from the spec
UPLOAD_SEEN_KEY = "arch_upload_seen"
MESSAGE_KEY = "arch_message"
OPEN_KEY = "arch_open"  # [part, index] of the one layer whose editor is open; None: all closed
PRESET_ASK = "arch_preset_ask"  # the preset whose loading waits for a yes: it replaces edits


def version() -> int:
    """The current widget generation."""
    return st.session_state.setdefault(VERSION_KEY, 0)


def replace_spec(data: dict[str, Any], message: str | None = None) -> None:
    """Swap in a new spec dict and restart every layer widget from it."""
    remember(SPEC_KEY, data)
    st.session_state[VERSION_KEY] = version() + 1
    if message:
        st.session_state[MESSAGE_KEY] = ("ok", message)


def spec_dict() -> dict[str, Any]:
    """A deep copy of the spec being edited."""
    return json.loads(json.dumps(active_spec_dict()))


def open_layer() -> list[Any] | None:
    """[part, index] of the layer whose editor is open, or None."""
    return st.session_state.get(OPEN_KEY)


def on_open(part: str, index: int) -> None:
    """The edit button: open this layer's editor (closing the other), or close it."""
    st.session_state[OPEN_KEY] = None if open_layer() == [part, index] else [part, index]


def on_add(part: str) -> None:
    data = spec_dict()
    kind = st.session_state[f"arch_add_type_{part}"]
    data[part].append(new_layer(kind))
    st.session_state[OPEN_KEY] = [part, len(data[part]) - 1]  # the new layer, ready to set
    replace_spec(data)


def on_remove(part: str, index: int) -> None:
    data = spec_dict()
    del data[part][index]
    opened = open_layer()
    if opened is not None and opened[0] == part and opened[1] >= index:
        st.session_state[OPEN_KEY] = None if opened[1] == index else [part, opened[1] - 1]
    replace_spec(data)


def on_move(part: str, index: int, step: int) -> None:
    data = spec_dict()
    layers = data[part]
    target = index + step
    if 0 <= target < len(layers):
        layers[index], layers[target] = layers[target], layers[index]
        opened = open_layer()
        if opened == [part, index]:  # the open editor follows its layer
            st.session_state[OPEN_KEY] = [part, target]
        elif opened == [part, target]:
            st.session_state[OPEN_KEY] = [part, index]
        replace_spec(data)


def on_change_type(part: str, index: int, key: str) -> None:
    data = spec_dict()
    data[part][index] = new_layer(st.session_state[key])
    replace_spec(data)


def edited() -> bool:
    """True when the design being edited is none of the presets as shipped: loading one would
    throw its changes away."""
    try:
        current = ArchitectureSpec.from_dict(spec_dict())
    except (ValueError, TypeError, KeyError):
        return True  # a design being fixed is work too
    return all(current != preset(name) for name in PRESETS)


def on_preset() -> None:
    """Load Preset: at once when the design is a preset as shipped, else ask first (below)."""
    name = st.session_state["arch_preset"]
    if edited():
        st.session_state[PRESET_ASK] = name
        return
    load_preset(name)


def load_preset(name: str) -> None:
    """Replace the design with the preset ``name``."""
    st.session_state.pop(PRESET_ASK, None)
    replace_spec(preset(name).to_dict(), f"Loaded the {name} preset.")


def ask_before_preset() -> None:
    """After Load preset over an edited design: say what it replaces, with a download of the
    design first, then replace it or keep editing."""
    name = st.session_state.get(PRESET_ASK)
    if name not in PRESETS:
        return
    data = spec_dict()
    st.warning(
        f"Loading the **{name}** preset replaces your design "
        f"**{plain_markdown(str(data.get('name', 'custom')))}** and its edits. Download it "
        "first to keep it.",
        icon=":material/warning:",
    )
    columns = st.columns(3)
    columns[0].button(
        f"Replace it with {name}",
        key="arch_preset_confirm",
        type="primary",
        on_click=load_preset,
        args=(name,),
        width="stretch",
    )
    columns[1].button(
        "Keep editing",
        key="arch_preset_cancel",
        on_click=lambda: st.session_state.pop(PRESET_ASK, None),
        width="stretch",
    )
    columns[2].download_button(
        "Download my design (JSON)",
        json.dumps(data, indent=2),
        file_name=f"{data.get('name', 'design')}.json",
        mime="application/json",
        key="arch_preset_download",
        width="stretch",
    )


def on_mirror() -> None:
    data = spec_dict()
    try:
        spec = ArchitectureSpec.from_dict(data)
        decoder = mirror(spec.encoder, spec.input_shape)
    except ValueError as error:
        st.session_state[MESSAGE_KEY] = (
            "error",
            f"Cannot mirror this encoder: {plain_markdown(str(error))}",
        )
        return
    data["decoder"] = [layer_to_dict(layer) for layer in decoder]
    replace_spec(data, "The decoder now mirrors the encoder.")


def on_fix(fixed: dict[str, Any], description: str) -> None:
    replace_spec(fixed, f"Applied: {description}")


def move_buttons(columns: list[Any], part: str, index: int, count: int, key: str) -> None:
    """Open/close, move up, move down and remove: one icon button in each of four columns."""
    opened = open_layer() == [part, index]
    buttons = (  # (icon, key, callback, its arguments, disabled, help)
        (
            ":material/expand_less:" if opened else ":material/edit:",
            "edit",
            on_open,
            (part, index),
            False,
            "Close this layer's settings" if opened else "Edit this layer",
        ),
        (":material/arrow_upward:", "up", on_move, (part, index, -1), index == 0, "Move up"),
        (
            ":material/arrow_downward:",
            "down",
            on_move,
            (part, index, 1),
            index == count - 1,
            "Move down",
        ),
        (":material/delete:", "remove", on_remove, (part, index), False, "Remove this layer"),
    )
    for column, (icon, name, callback, args, disabled, help_text) in zip(
        columns, buttons, strict=True
    ):
        column.button(
            icon,
            key=f"{key}_{name}_v{version()}",
            on_click=callback,
            args=args,
            disabled=disabled,
            help=help_text,
            type="tertiary",
        )


def layer_editor(
    part: str, index: int, layer: dict[str, Any], count: int, lines: dict[tuple[str, int], Any]
) -> dict[str, Any]:
    """One layer: a one-line summary with its buttons, or, for the one open layer, its type and
    its kind's widgets (two compact rows); returns the layer dict as edited. A summary's line is
    an empty slot put in ``lines``, filled once the shapes of this run's design are known."""
    key = f"arch_{part}_{index}"
    suffix = f"_v{version()}"
    if open_layer() != [part, index]:
        with st.container(border=True, key=f"{key}_line{suffix}"):
            with st.container(key=f"{key}_row{suffix}"):
                top = st.columns([8, 1, 1, 1, 1], vertical_alignment="center", gap="small")
            lines[part, index] = top[0].empty()
            move_buttons(top[1:], part, index, count, key)
        return layer
    with st.container(border=True, key=f"{key}_open{suffix}"):
        with st.container(key=f"{key}_row{suffix}"):
            top = st.columns([5, 1, 1, 1, 1], vertical_alignment="bottom", gap="small")
        head = [top[0], *st.columns(3)]
        type_key = f"{key}_type{suffix}"
        kind_select(
            head[0],
            f"{part}[{index}]",
            type_key,
            layer.get("type", "conv"),
            on_change=on_change_type,
            args=(part, index, type_key),
        )
        move_buttons(top[1:], part, index, count, key)
        return layer_widgets(layer, Slot(head[1:4], key, suffix))


def part_editor(
    part: str, data: dict[str, Any], lines: dict[tuple[str, int], Any]
) -> list[dict[str, Any]]:
    """All layers of the encoder or decoder (one open at a time), plus the add-a-layer row."""
    layers = data[part]
    edited = [
        layer_editor(part, index, layer, len(layers), lines) for index, layer in enumerate(layers)
    ]
    columns = st.columns([3, 1], vertical_alignment="bottom")  # the button level with the select
    kind_select(columns[0], f"Add a layer to the {part}", f"arch_add_type_{part}")
    columns[1].button("Add", key=f"arch_add_{part}", on_click=on_add, args=(part,), width="stretch")
    return edited


def fill_lines(
    lines: dict[tuple[str, int], Any], edited: dict[str, Any], report: Any | None
) -> None:
    """Each closed layer's line: its place, its label and output shape from this run's report
    (the layer's kind alone when the design cannot be computed)."""
    rows: dict[tuple[str, int], list[Any]] = {}
    for row in report.rows if report is not None else ():
        rows.setdefault((row.part, row.index), []).append(row)
    for (part, index), slot in lines.items():
        found = rows.get((part, index))
        if found:
            row = found[0]
            shape = "x".join(str(n) for n in row.output_shape)
            label = row.label.removesuffix(f" ({row.head})") if row.head else row.label
            heads = " and ".join(each.head for each in found if each.head)
            # a variational code: one layer, two maps (the table has a row for each)
            maps = " " + plain_markdown(f"each, {heads} maps") if heads else ""
            text = f"{plain_markdown(label)} → **{shape}**{maps}"
        else:
            text = plain_markdown(kind_title(edited[part][index].get("type", "conv")))
        slot.markdown(f"{plain_code(f'{part}[{index}]')} {text}")


def load_upload() -> None:
    """Apply an uploaded architecture JSON once per file."""
    upload = st.session_state.get("arch_upload")
    if upload is None or st.session_state.get(UPLOAD_SEEN_KEY) == upload.file_id:
        return
    st.session_state[UPLOAD_SEEN_KEY] = upload.file_id
    try:
        if upload.size > MAX_SPEC_BYTES:  # refused before it is read into a string and parsed
            raise ValueError(
                f"an architecture file may hold at most {MAX_SPEC_BYTES:,} bytes. "
                f"Received: {upload.size:,} bytes"
            )
        spec = ArchitectureSpec.from_json(upload.getvalue())
    except ValueError as error:
        name, reason = plain_markdown(upload.name), plain_markdown(str(error))
        st.session_state[MESSAGE_KEY] = ("error", f"{name} was not loaded: {reason}")
        return
    replace_spec(spec.to_dict(), f"Loaded {plain_markdown(upload.name)}.")


def variational_editor(current: Any) -> dict[str, Any] | None:
    """The variational toggle with its beta and KL warm-up; the spec's ``variational`` object, or
    None for a plain autoencoder."""
    current = current if isinstance(current, dict) else None
    on = st.toggle(
        "Variational autoencoder",
        value=current is not None,
        key=f"arch_variational_v{version()}",
        help="The code becomes two maps of its shape, a mean and a log-variance; training decodes "
        "a sample from them and adds beta x the KL divergence from N(0, 1) to the loss, so "
        "random codes from N(0, 1) decode to plausible images.",
    )
    if not on:
        return None
    current = current or {}
    columns = st.columns(2)
    beta = columns[0].number_input(
        "beta (KL weight)",
        min_value=0.001,
        max_value=MAX_BETA,
        value=float(current.get("beta", 1.0)),
        step=0.1,
        format="%.3f",
        key=f"arch_beta_v{version()}",
        help="1 is the evidence lower bound with the bce loss; higher pulls the codes harder "
        "toward N(0, 1) (smoother samples, blurrier reconstructions).",
    )
    warmup = columns[1].number_input(
        "KL warm-up (epochs)",
        min_value=0,
        max_value=MAX_WARMUP_EPOCHS,
        value=int(current.get("warmup_epochs", 0)),
        key=f"arch_warmup_v{version()}",
        help="The KL weight rises linearly from 0 to beta over these first epochs (0: none).",
    )
    return {"beta": float(beta), "warmup_epochs": int(warmup)}
