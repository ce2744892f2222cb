"""Session-state keys and the shared page frame (title, icon, sidebar with the active design)."""

from __future__ import annotations

import contextlib
import copy
import re
import secrets
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from cae.recipe import DataRecipe
from cae.spec import ArchitectureSpec, preset
from cae.store import RunInfo
from cae.text import plain_markdown, short_text
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

# The owner ids this server issued, each with when it was last used. An id in a URL is adopted
# only if it is here and not expired: a link with an id chosen by someone else (session fixation)
# gets a fresh id instead. After a server restart no id is known, so reloads get new ids.
OWNER_TTL_S = 12 * 3600  # an id unused for this long is forgotten (its remembered state too)
_ISSUED_LIMIT = 10_000  # ids kept, least recently used dropped first
_issued: OrderedDict[str, float] = OrderedDict()
_issued_lock = threading.Lock()


COMPARE_KEY = "results_compare"  # list[str]: the runs chosen on Results, kept across pages
ACTIVATED_KEY = "train_activated_run"  # str: the finished job's run the Train page made active
DATA_KEY = "active_data"  # dict: the Train page's data (recipe, training images, image shape)
# what a reload of the tab gets back (ACTIVATED_KEY: a reload must not make that run active again)
REMEMBERED_KEYS = (SPEC_KEY, DATASET_KEY, RUN_KEY, COMPARE_KEY, ACTIVATED_KEY, DATA_KEY)
_MEMORY_LIMIT = 1_000  # owners remembered, least recently seen dropped first
_memory: OrderedDict[str, dict[str, Any]] = OrderedDict()
_memory_lock = threading.Lock()


RUN_PARAM = "run"  # the URL query parameter naming the run(s) to show on Results (repeatable)
MAX_LINKED_RUNS = 12  # a link shows at most this many runs side by side


def run_link(run_ids: list[str]) -> dict[str, list[str]]:
    """The query parameters of a link that opens these runs on Results, side by side."""
    return {RUN_PARAM: list(run_ids)}


def follow_run_link(runs: list[RunInfo]) -> list[str]:
    """Follow a ``?run=ID`` link once: the ids that name one of ``runs`` become the active run and
    Results' compare selection (first one active), and the parameter leaves the URL, so a later
    choice on the page (or a reload) is not overridden. An id from a URL is untrusted: it is only
    compared with the listed run ids, never made into a path; any other value is ignored with a
    one-line notice. Returns the ids taken, none when there was no link."""
    if RUN_PARAM not in st.query_params:
        return []
    linked = st.query_params.get_all(RUN_PARAM)
    del st.query_params[RUN_PARAM]
    known = {run.run_id for run in runs}
    taken = list(dict.fromkeys(value for value in linked if value in known))[:MAX_LINKED_RUNS]
    ignored = [value for value in linked if value not in known]
    if ignored:
        more = f" (and {len(ignored) - 1} more)" if len(ignored) > 1 else ""
        shown = plain_markdown(short_text(repr(ignored[0]), 60))
        st.warning(
            f"The link names no saved run, so it was ignored. Received: run={shown}{more}",
            icon=":material/link_off:",
        )
    if taken:
        remember(COMPARE_KEY, taken)
        remember(RUN_KEY, taken[0])
    return taken


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


def _issue_owner_id() -> str:
    """A new random owner id, recorded as issued by this server."""
    owner = secrets.token_hex(16)
    _touch_owner_id(owner)
    return owner


def _touch_owner_id(owner: str) -> None:
    """Record ``owner`` as used now (an open tab keeps its id alive)."""
    with _issued_lock:
        _issued[owner] = time.monotonic()
        _issued.move_to_end(owner)
        dropped = [_issued.popitem(last=False)[0] for _ in range(len(_issued) - _ISSUED_LIMIT)]
    for old in dropped:
        _forget_owner(old)


def _adoptable(owner: str) -> bool:
    """True when ``owner`` (from a URL) was issued here and has not expired; an expired id is
    forgotten, with the state remembered under it."""
    if not _OWNER_RE.fullmatch(owner):
        return False
    with _issued_lock:
        used = _issued.get(owner)
        if used is None:
            return False
        if time.monotonic() - used <= OWNER_TTL_S:
            return True
        del _issued[owner]
    _forget_owner(owner)
    return False


def _forget_owner(owner: str) -> None:
    """Drop what the server remembers under an expired or evicted owner id."""
    with _memory_lock:
        _memory.pop(owner, None)
    with _controllers_lock:
        _controllers.pop(owner, None)


def _restore_session(owner: str) -> None:
    with _memory_lock:
        values = _memory.get(owner) or {}
    for key, value in values.items():
        st.session_state.setdefault(key, copy.deepcopy(value))


def owner_id() -> str:
    """This browser tab's random id, issued by this server, which its training job is keyed by.

    It is kept in the URL (``?session=...``), so a page reload (a new Streamlit session) finds its
    running or stopped job again and gets back its ``REMEMBERED_KEYS``. An id from the URL is
    adopted only if this server issued it and it was used within ``OWNER_TTL_S``; any other
    value gets a fresh id. Another tab with the same id sees its job read-only until it takes it
    over (``controls_job``).
    """
    owner = st.session_state.get(OWNER_KEY)
    if not isinstance(owner, str):
        from_url = st.query_params.get(OWNER_PARAM, "")
        owner = from_url if _adoptable(from_url) else _issue_owner_id()
        st.session_state[OWNER_KEY] = owner
        _restore_session(owner)  # a reload: the design, dataset and run chosen before it
    _touch_owner_id(owner)
    if st.query_params.get(OWNER_PARAM) != owner:  # page switches clear the query parameters
        st.query_params[OWNER_PARAM] = owner
    return owner


TAB_KEY = "tab_token"  # this tab's own random token: tabs that share an owner id differ by it

# Which tab controls each owner's latest job: owner -> (job id, tab token, Streamlit session id).
# A second tab or browser with the same link sees that job read-only until it takes it over.
_controllers: dict[str, tuple[str, str, str | None]] = {}
_controllers_lock = threading.Lock()


def _this_tab() -> tuple[str, str | None]:
    """This tab's token and its Streamlit session id (None outside a script run)."""
    token = st.session_state.get(TAB_KEY)
    if not isinstance(token, str):
        token = secrets.token_hex(8)
        st.session_state[TAB_KEY] = token
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    ctx = get_script_run_ctx()
    return token, (ctx.session_id if ctx is not None else None)


def _tab_open(session_id: str | None) -> bool:
    """True while the Streamlit session ``session_id`` is connected (a closed or reloaded tab's
    session is not); True when it cannot be told (no server runtime, as in AppTest)."""
    from streamlit import runtime

    if session_id is None or not runtime.exists():
        return True
    return runtime.get_instance().is_active_session(session_id)


def take_control(owner: str, job_id: str) -> None:
    """Make this tab the one that may stop, save or discard ``owner``'s job ``job_id`` (the tab
    that starts a job, or one whose user confirmed taking it over)."""
    token, session_id = _this_tab()
    with _controllers_lock:
        _controllers[owner] = (job_id, token, session_id)


def controls_job(owner: str, job_id: str) -> bool:
    """True when this tab may stop, save or discard ``owner``'s job ``job_id``: it started the job
    or took it over, or no open tab holds it (the one that did was closed or reloaded, and this
    tab succeeds it). False while another open tab holds it: this tab only watches."""
    token, session_id = _this_tab()
    with _controllers_lock:
        holder = _controllers.get(owner)
        elsewhere = holder is not None and holder[0] == job_id and holder[1] != token
        if elsewhere and _tab_open(holder[2]):
            return False
        _controllers[owner] = (job_id, token, session_id)
        return True


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


@dataclass(frozen=True)
class ActiveData:
    """The data the Train page uses now: its recipe (an upload by its file saved in
    models/.uploads), how many training images it gives and their (H, W, C)."""

    recipe: DataRecipe
    num_train: int
    image_shape: tuple[int, int, int]


def set_active_data(recipe: DataRecipe, num_train: int, image_shape: tuple[int, ...]) -> None:
    """Keep the Train page's data for the other pages (plain data; a reload keeps it)."""
    value = {
        "recipe": recipe.to_dict(),
        "num_train": int(num_train),
        "image_shape": [int(n) for n in image_shape],
    }
    if st.session_state.get(DATA_KEY) != value:
        remember(DATA_KEY, value)


def active_data() -> ActiveData | None:
    """The data last chosen on the Train page, or None: none chosen yet, or its uploaded file is
    no longer in models/.uploads (deleted, or the folder changed)."""
    value = st.session_state.get(DATA_KEY)
    try:
        recipe = DataRecipe.from_dict(value["recipe"])
        data = ActiveData(recipe, int(value["num_train"]), tuple(map(int, value["image_shape"])))
    except (TypeError, KeyError, ValueError):
        return None
    if recipe.upload_path is not None and not Path(recipe.upload_path).is_file():
        return None
    return data


@dataclass(frozen=True)
class EarlierUpload:
    """The file last chosen on the Train page, read back from models/.uploads: Streamlit's file
    picker empties on a page switch, and the user should not have to upload it again. Offers the
    picker's ``name`` and ``getvalue()``."""

    name: str
    path: str
    digest: str
    array: str | None

    def getvalue(self) -> bytes:
        """The file's bytes."""
        return Path(self.path).read_bytes()


def earlier_upload() -> EarlierUpload | None:
    """The upload the Train page used last, while its saved file is still there; else None."""
    data = active_data()
    if data is None or data.recipe.upload_path is None:
        return None
    recipe = data.recipe
    return EarlierUpload(
        name=recipe.upload_name or Path(recipe.upload_path).name,
        path=recipe.upload_path,
        digest=str(recipe.upload_sha256),
        array=recipe.upload_array,
    )


UPLOAD_NAME_KEY = "active_upload_name"  # str: the file name of the upload chosen on Train


def dataset_description(name: str | None = None) -> str:
    """The active (or named) dataset in one line of markdown, from its own entry in
    ``cae.datasets.DATASETS``; an upload by its file name. Names are escaped."""
    from cae.datasets import DATASETS

    name = active_dataset() if name is None else name
    info = DATASETS.get(name)
    if info is not None:
        return f"**{plain_markdown(info.title)}** ({plain_markdown(info.description)})"
    if name == "upload":
        file = st.session_state.get(UPLOAD_NAME_KEY)
        where = f"file {plain_markdown(file)}" if file else "choose a file on the Train page"
        return f"**your own images** ({where})"
    return f"**{plain_markdown(name)}**"


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
    """A one-line description of a run, as markdown with the names escaped: name, data, epochs,
    test PSNR."""
    psnr = run.metrics.get("psnr")
    quality = f" · PSNR {psnr:.1f} dB" if isinstance(psnr, (int, float)) else ""
    name, dataset = plain_markdown(run.name), plain_markdown(run.dataset or "–")
    return f"**{name}** · {dataset} · {run.epochs} epochs{quality}"


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


# The sidebar's one slot in this script run: page_frame draws it first (every page has a sidebar
# at once), refresh_sidebar draws it again at the end of a page that changed the design in its
# body, so it never shows the design of one edit before (measured: 4,194 parameters in the sidebar
# while the Architecture page showed 4,514, issue 13). A script run happens in one thread.
_sidebar_slot = threading.local()


def sidebar() -> None:
    """The sidebar: the active design and dataset, at a glance on every page."""
    _sidebar_slot.slot = st.sidebar.empty()
    _draw_sidebar(_sidebar_slot.slot)


def refresh_sidebar() -> None:
    """Draw the sidebar again with the current design: call at the end of a page whose body
    changes the active design or dataset."""
    slot = getattr(_sidebar_slot, "slot", None)
    if slot is None:
        sidebar()
    else:
        _draw_sidebar(slot)


def _draw_sidebar(slot: Any) -> None:
    from cae.shapes import compute_shapes

    with slot.container():
        st.markdown("### CAE Studio")
        spec = active_spec()
        if spec is None:
            st.caption("Design: not valid yet — see Architecture.")
            return
        try:
            report = compute_shapes(spec)
        except ValueError:
            name = plain_markdown(spec.name)
            st.caption(f"Design **{name}**: a layer does not fit — see Architecture.")
            return
        code = "x".join(str(n) for n in report.latent_shape)
        status = "" if report.matches else " · :orange[output shape differs]"
        st.caption(
            f"Design **{plain_markdown(spec.name)}** · code {code} · {report.total_params:,} "
            f"parameters{status}  \nDataset **{plain_markdown(active_dataset())}**"
        )
        run = active_run()
        st.caption(f"Run {run_summary(run)}" if run else "Run: none yet — train one.")
