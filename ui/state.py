"""Session-state keys and the shared page frame (title, icon, sidebar with the active design)."""

from __future__ import annotations

import contextlib
import copy
import secrets
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from cae.recipe import DataRecipe
from cae.spec import ArchitectureSpec, preset
from cae.store import (
    DEFAULT_RUN_ID,
    RunInfo,
    gallery_root,
    is_owner,
    new_workspace_id,
    workspace_issued,
    workspace_root,
)
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

OWNER_KEY = "owner_id"  # str: this browser's workspace id, which its training job is keyed by
RESTORED_KEY = "workspace_restored"  # bool: this session got its workspace's remembered keys

DEFAULT_DATASET = "mnist-sample"

# The browser keeps its workspace id in this cookie, which the app writes itself (a script in an
# iframe, ``_write_cookie``); a new session reads it from ``st.context.cookies``. The cookie
# is read by the server only from the session's first request, so the session that wrote it
# keeps its id in st.session_state.
WORKSPACE_COOKIE = "cae_workspace"
WORKSPACE_COOKIE_DAYS = 180
LEGACY_OWNER_PARAM = "session"  # the id was in the URL once: a link that still has it loses it

# The workspace ids this server process issued whose folder may not exist yet (it is made on the
# first save): with the folders on disk, the ids a cookie may bring. After a restart an id whose
# workspace never saved anything is unknown, and the browser gets a fresh one (it lost nothing).
_ISSUED_LIMIT = 10_000  # ids kept, oldest dropped first
_issued: OrderedDict[str, None] = OrderedDict()
_issued_lock = threading.Lock()


SUGGESTED_KEY = "train_suggested"  # dict: settings the Train form starts from once (a search's)
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


def _restore_session(owner: str) -> None:
    with _memory_lock:
        values = _memory.get(owner) or {}
    for key, value in values.items():
        st.session_state.setdefault(key, copy.deepcopy(value))


def _issue_workspace() -> str:
    """A fresh workspace id, recorded as issued by this server."""
    owner = new_workspace_id()
    with _issued_lock:
        _issued[owner] = None
        while len(_issued) > _ISSUED_LIMIT:
            _issued.popitem(last=False)
    return owner


def known_workspace(owner: Any) -> bool:
    """True when ``owner`` is a workspace id this server issued: well formed, and its folder
    exists or this process issued it."""
    if not workspace_issued(owner):  # well formed with a folder; else it must be issued here
        with _issued_lock:
            return isinstance(owner, str) and owner in _issued
    return True


def workspace_from_cookies(cookies: Any) -> str | None:
    """The workspace id in the browser's cookies when this server issued it
    (``known_workspace``), else None: a cookie is the browser's input, never a path unchecked."""
    try:
        value = cookies.get(WORKSPACE_COOKIE)
    except AttributeError:
        return None
    return value if known_workspace(value) else None


def _browser_cookies() -> Any:
    """The cookies of this session's first request ({} where there are none, as in AppTest)."""
    try:
        return st.context.cookies
    except Exception:  # no client context (a bare script run)
        return {}


def owner_id() -> str:
    """This browser's workspace id, issued by this server: its training job, experiments, runs
    and uploads are keyed by it (``models/workspaces/<id>/``).

    A new session takes it from the browser's cookie (``WORKSPACE_COOKIE``) when this server
    issued it, else gets a fresh one; tabs of one browser share it, and a reload finds its job
    and gets back its ``REMEMBERED_KEYS``. Nothing of it is in the URL. Another tab with the
    same workspace sees its job read-only until it takes it over (``controls_job``).
    """
    owner = st.session_state.get(OWNER_KEY)
    if not known_workspace(owner):
        owner = workspace_from_cookies(_browser_cookies()) or _issue_workspace()
        st.session_state[OWNER_KEY] = owner
        st.session_state[RESTORED_KEY] = False
    if not st.session_state.get(RESTORED_KEY):
        st.session_state[RESTORED_KEY] = True
        _restore_session(owner)  # a reload: the design, dataset and run chosen before it
    if LEGACY_OWNER_PARAM in st.query_params:  # an old link: the id never comes from the URL
        del st.query_params[LEGACY_OWNER_PARAM]
    return owner


def owns(run: RunInfo) -> bool:
    """True when ``run`` is this browser's workspace's own: only then may it rename or delete it
    (``cae.store.is_owner``; the gallery's runs are the teacher's)."""
    return is_owner(run, owner_id())


def runs_root() -> str:
    """This session's runs folder, its workspace's: where its trainings, experiments and uploads
    are saved; the listing adds the gallery above it (``ui.run_index.all_runs``)."""
    return str(workspace_root(owner_id()))


def new_workspace_for_this_browser() -> str:
    """Give this browser a fresh, empty workspace (students sharing a computer): the session
    forgets the previous one's design, data and run, and the cookie is rewritten."""
    owner = _issue_workspace()
    for key in (*REMEMBERED_KEYS, UPLOAD_NAME_KEY):
        st.session_state.pop(key, None)
    st.session_state[OWNER_KEY] = owner
    st.session_state[RESTORED_KEY] = True
    return owner


def _write_cookie(owner: str) -> None:
    """Have the browser keep ``owner`` in its cookie for the next sessions (a reload, new tabs):
    a script in an empty iframe, drawn only while the browser's cookie differs."""
    if workspace_from_cookies(_browser_cookies()) == owner:
        return
    max_age = WORKSPACE_COOKIE_DAYS * 24 * 3600
    cookie = f"{WORKSPACE_COOKIE}={owner}; Path=/; Max-Age={max_age}; SameSite=Strict"
    # st.iframe runs an HTML string's script in a same-origin frame: the cookie is the app's
    # (in a body: Streamlit sizes the frame with a script that observes document.body, which a
    # lone script in the head left null: "Failed to execute 'observe'" on every page)
    st.sidebar.iframe(
        f"<body><script>document.cookie = {cookie!r};</script></body>", height="content"
    )


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


def default_run(runs: list[RunInfo]) -> RunInfo | None:
    """The run a session starts on among ``runs`` (its own and the gallery's, newest first): the
    shipped default run (``DEFAULT_RUN_ID``) while the gallery has it, else the workspace's newest,
    else the gallery's newest. Never another workspace's: those are not listed."""
    gallery = [run for run in runs if gallery_root(run.path.parent) is None]
    own = [run for run in runs if gallery_root(run.path.parent) is not None]
    shipped = [run for run in gallery if run.run_id == DEFAULT_RUN_ID]
    return next(iter(shipped + own + gallery), None)


def active_run() -> RunInfo | None:
    """The run the pages show: the one chosen this session, else the starting run
    (``default_run``). Reads JSON only, no TensorFlow."""
    runs = complete_runs(runs_root())
    chosen = st.session_state.get(RUN_KEY)
    for run in runs:
        if run.run_id == chosen:
            return run
    return default_run(runs)


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
    owner = owner_id()
    remember_session()
    sidebar()
    _write_cookie(owner)


# The sidebar's one slot in this script run: page_frame draws it first (every page has a sidebar
# at once), refresh_sidebar draws it again at the end of a page that changed the design in its
# body, so it never shows the design of one edit before (measured: 4,194 parameters in the sidebar
# while the Architecture page showed 4,514, issue 13). A script run happens in one thread.
_sidebar_slot = threading.local()


def sidebar() -> None:
    """The sidebar: the active design and dataset, at a glance on every page."""
    _sidebar_slot.slot = st.sidebar.empty()
    _draw_sidebar(_sidebar_slot.slot)
    st.sidebar.button(
        "New workspace",
        key="sidebar_new_workspace",
        on_click=new_workspace_for_this_browser,
        icon=":material/add_box:",
        help="Start again in an empty workspace (for the next student at this computer): your "
        "runs, experiments and uploads are kept in this browser's workspace and every tab of "
        "it shares them, beside the gallery everyone sees. The workspace left behind, and its "
        "training, cannot be reached from this browser again.",
    )


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
