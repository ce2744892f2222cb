"""Session-state keys and the shared page frame (title, icon, sidebar with the active design)."""

from __future__ import annotations

import contextlib
import copy
import re
import secrets
import sys
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import streamlit as st

from cae.spec import ArchitectureSpec, preset
from cae.store import RunInfo
from ui.run_index import complete_runs


def _keep_keras_state_between_runs() -> None:
    """Stop Streamlit from calling ``keras.backend.clear_session()`` after every script run.

    Streamlit's script runner "cleans problem modules" at the end of each run (fragment runs
    included): with keras imported it calls ``clear_session()``, which resets Keras's global
    state and TensorFlow's default graph and runs a full ``gc.collect()``. With a progress
    fragment polling twice a second, that starved and hung the training thread mid-trace
    (measured: stuck at batch 0 for minutes; py-spy showed clear_session in the script thread).
    Background jobs need that state; matplotlib's clean-up is kept.
    """
    from streamlit.runtime.scriptrunner import script_runner

    def clean_problem_modules_but_keras() -> None:
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is not None:
            with contextlib.suppress(Exception):
                plt.close("all")

    if hasattr(script_runner, "_clean_problem_modules"):
        script_runner._clean_problem_modules = clean_problem_modules_but_keras


_keep_keras_state_between_runs()

SPEC_KEY = "active_spec"  # dict: the architecture being designed
DATASET_KEY = "active_dataset"  # str: dataset name for training
RUN_KEY = "active_run"  # str | None: run id shown on Results / Latent Editor

OWNER_KEY = "owner_id"  # str: this browser session's id for background training jobs

DEFAULT_DATASET = "mnist-sample"


OWNER_PARAM = "session"  # the URL query parameter that carries the owner id across reloads
_OWNER_RE = re.compile(r"[0-9a-f]{32}")


REMEMBERED_KEYS = (SPEC_KEY, DATASET_KEY, RUN_KEY)  # what a reload of the tab gets back
_MEMORY_LIMIT = 1_000  # owners remembered, least recently seen dropped first
_memory: OrderedDict[str, dict[str, Any]] = OrderedDict()
_memory_lock = threading.Lock()


def remember(key: str, value: Any) -> None:
    """Set a session value (plain data) that a reload of this tab must not lose."""
    st.session_state[key] = value
    remember_session()


def remember_session() -> None:
    """Keep a copy of this tab's ``REMEMBERED_KEYS`` in the server, under its owner id."""
    owner = st.session_state.get(OWNER_KEY)
    if not isinstance(owner, str):
        return
    values = {
        key: copy.deepcopy(st.session_state[key])
        for key in REMEMBERED_KEYS
        if key in st.session_state
    }
    with _memory_lock:
        _memory[owner] = values
        _memory.move_to_end(owner)
        while len(_memory) > _MEMORY_LIMIT:
            _memory.popitem(last=False)


def _restore_session(owner: str) -> None:
    with _memory_lock:
        values = _memory.get(owner) or {}
    for key, value in values.items():
        st.session_state.setdefault(key, copy.deepcopy(value))


def owner_id() -> str:
    """This browser tab's random id, which its background training job is keyed by.

    It is kept in the URL (``?session=...``), so a page reload (a new Streamlit session) finds its
    running or stopped job again and gets back its ``REMEMBERED_KEYS``; anything in the URL that
    is not 32 hex digits is ignored. The id is as secret as the URL: whoever has the link can watch
    and stop that tab's training.
    """
    owner = st.session_state.get(OWNER_KEY)
    if not isinstance(owner, str):
        from_url = st.query_params.get(OWNER_PARAM, "")
        owner = from_url if _OWNER_RE.fullmatch(from_url) else secrets.token_hex(16)
        st.session_state[OWNER_KEY] = owner
        _restore_session(owner)  # a reload: the design, dataset and run chosen before it
    if st.query_params.get(OWNER_PARAM) != owner:  # page switches clear the query parameters
        st.query_params[OWNER_PARAM] = owner
    return owner


def active_spec_dict() -> dict[str, Any]:
    """The spec the user is designing, as plain data (the classic preset until they change it)."""
    if SPEC_KEY not in st.session_state:
        st.session_state[SPEC_KEY] = preset("classic").to_dict()
    return st.session_state[SPEC_KEY]


def active_spec() -> ArchitectureSpec | None:
    """The active spec as an ArchitectureSpec, or None while it does not validate."""
    try:
        return ArchitectureSpec.from_dict(active_spec_dict())
    except ValueError:
        return None


def set_active_spec(spec: ArchitectureSpec) -> None:
    """Make a spec the active design (stored as a plain dict)."""
    remember(SPEC_KEY, spec.to_dict())


def active_dataset() -> str:
    """The dataset chosen for training."""
    return st.session_state.setdefault(DATASET_KEY, DEFAULT_DATASET)


ICON_PATH = Path(__file__).with_name("assets") / "icon.png"


def active_run() -> RunInfo | None:
    """The run the pages show: the one chosen this session, else the newest complete run
    (the shipped default run on a fresh machine). Reads JSON only, no TensorFlow."""
    runs = complete_runs()
    chosen = st.session_state.get(RUN_KEY)
    for run in runs:
        if run.run_id == chosen:
            return run
    return runs[0] if runs else None


def run_summary(run: RunInfo) -> str:
    """A one-line description of a run: name, data, epochs, test PSNR."""
    psnr = run.metrics.get("psnr")
    quality = f" · PSNR {psnr:.1f} dB" if isinstance(psnr, (int, float)) else ""
    return f"**{run.name}** · {run.dataset} · {run.epochs} epochs{quality}"


def page_frame(title: str) -> None:
    """Set the page config and draw the shared sidebar; call first on every page.

    The browser tab gets the bundled PNG icon, so no icon is fetched from the network. A page
    opened by its URL before any session ran app.py gets the app's navigation here (ui/nav.py).
    """
    from ui.nav import adopt_app_navigation

    adopt_app_navigation()
    st.set_page_config(page_title=f"{title} · CAE Studio", page_icon=str(ICON_PATH), layout="wide")
    owner_id()  # keeps ?session=... in the URL on every page, for reloads
    remember_session()
    sidebar()


def sidebar() -> None:
    """The sidebar: the active design and dataset, at a glance on every page."""
    from cae.shapes import compute_shapes

    with st.sidebar:
        st.markdown("### CAE Studio")
        spec = active_spec()
        if spec is None:
            st.caption("Design: not valid yet — see Architecture.")
            return
        try:
            report = compute_shapes(spec)
        except ValueError:
            st.caption(f"Design **{spec.name}**: a layer does not fit — see Architecture.")
            return
        code = "x".join(str(n) for n in report.latent_shape)
        status = "" if report.matches else " · :orange[output shape differs]"
        st.caption(
            f"Design **{spec.name}** · code {code} · {report.total_params:,} parameters{status}  \n"
            f"Dataset **{active_dataset()}**"
        )
        run = active_run()
        st.caption(f"Run {run_summary(run)}" if run else "Run: none yet — train one.")
