"""Saved runs in ``models/<run-id>/``: save atomically, list from JSON alone, load, delete.

A run folder holds ``spec.json``, ``train.json`` (``name``, ``created``, the data recipe ``data``,
the training ``config``, the ``strategy`` and the ``outcome``), ``history.json`` (per-epoch
metrics), ``metrics.json`` (test-set metrics, keys from ``cae.metrics.METRICS``), ``latent.json``
(optional, ``cae.latent.latent_statistics``), ``test_images.npz`` (the run's test split, compressed:
the images every page and ``cae evaluate`` score it on), ``model.keras``, the TensorBoard event
file (``cae.events.EVENTS_FILE``: per-epoch scalars and reconstruction strips, never read by the app)
and, written last, ``run.json`` (the format marker). :func:`save_trained` is the one writer of train.json and
metrics.json (the worker and the CLI call it); :func:`run_test_split` is the one way from a run to
its test images. ``save_run`` writes everything into ``root/.tmp-<random>`` and renames that folder
into place in one step, so a crash leaves at most a hidden ``.tmp-*`` folder, never half a run; a
folder without ``run.json`` is an incomplete run and lists as broken.

Listing reads JSON only (importing this module and calling ``list_runs`` never imports TensorFlow);
loading uses Keras ``safe_mode``. Run ids given as strings must be plain folder names inside the
root: anything like ``../x`` is refused. The root is ``$CAE_MODELS_DIR`` or ``<repo>/models``.

Workspaces: the runs at the top of the root (the shipped ones and those published there) are the
gallery everyone sees; a workspace's own runs, staged runs, experiments and uploads live in
``<root>/workspaces/<workspace-id>/``, a runs folder of its own, made when it first saves. A
workspace id is 32 hex digits (:func:`new_workspace_id`); :func:`workspace_root` takes only a well
formed one, and an id from a cookie is adopted only once its folder exists
(:func:`workspace_issued`) or the server has just issued it, so it never names another path.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
import threading
import time
import unicodedata
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cae.errors import short_message
from cae.events import EVENTS_FILE
from cae.recipe import (
    DataRecipe,
    RecipeError,
    TestSplit,
    load_recipe,
    read_test_split,
    recipe_from_record,
    test_split_bytes,
)
from cae.spec import ArchitectureSpec
from cae.text import clean_name
from cae.upload_files import (  # uploads: by content, kept for a time, within a quota
    UPLOADS_DIR,
    UPLOADS_LOCK,
    check_quota,
    claim_upload,
    clean_uploads,
)

if TYPE_CHECKING:  # pragma: no cover
    import keras

    from cae.builder import BuiltModel
    from cae.request import TrainRequest
    from cae.training import TrainResult

FORMAT_VERSION = 1
SPEC_FILE = "spec.json"
TRAIN_FILE = "train.json"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
LATENT_FILE = "latent.json"
MODEL_FILE = "model.keras"
TEST_FILE = "test_images.npz"
MARKER_FILE = "run.json"
JSON_FILES = (MARKER_FILE, SPEC_FILE, TRAIN_FILE, HISTORY_FILE, METRICS_FILE, LATENT_FILE)
TMP_PREFIX = ".tmp-"
WORKSPACES_DIR = "workspaces"  # <root>/workspaces/<workspace-id>/: each workspace's own runs folder
DEFAULT_RUN_ID = "classic-mnist-sample-default"  # the shipped run a new session starts on
MAX_SLUG_LENGTH = 48
MAX_RUN_ID_LENGTH = 128
STALE_TMP_SECONDS = 24 * 3600

_RUN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_WINDOWS_RESERVED = frozenset(
    ["con", "prn", "aux", "nul"] + [f"com{i}" for i in range(10)] + [f"lpt{i}" for i in range(10)]
)
# Keras saving and loading touch process-wide state; one at a time from this module.
_KERAS_LOCK = threading.RLock()


class RunError(ValueError):
    """A run that does not exist, is broken, or cannot be loaded."""

    def __init__(self, message: str, run_id: str | None = None, reason: str | None = None):
        super().__init__(message)
        self.run_id = run_id
        self.reason = reason


@dataclass(frozen=True)
class RunInfo:
    """What the run list shows, read from a run folder's JSON files only."""

    run_id: str
    path: Path
    name: str
    created: str | None
    dataset: str | None
    epochs: int
    spec_name: str | None
    params: int | None
    latent_shape: tuple[int, ...] | None
    metrics: dict[str, Any] = field(default_factory=dict)
    broken: str | None = None
    input_shape: tuple[int, ...] | None = None
    recipe: DataRecipe | None = None  # None: a run older than recipes whose record is incomplete
    recipe_problem: str | None = None  # why ``recipe`` is None (one line for the pages)

    @property
    def ok(self) -> bool:
        """True when the folder is a complete, loadable-looking run."""
        return self.broken is None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (for session state, the CLI and tables)."""
        return {
            "run_id": self.run_id,
            "path": str(self.path),
            "name": self.name,
            "created": self.created,
            "dataset": self.dataset,
            "epochs": self.epochs,
            "spec_name": self.spec_name,
            "params": self.params,
            "latent_shape": None if self.latent_shape is None else list(self.latent_shape),
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "metrics": dict(self.metrics),
            "recipe": None if self.recipe is None else self.recipe.to_dict(),
            "recipe_problem": self.recipe_problem,
            "broken": self.broken,
            "ok": self.ok,
        }


@dataclass
class LoadedRun:
    """A loaded run: its info, spec, Keras models (``built.encoder`` / ``decoder`` /
    ``autoencoder``) and JSON records."""

    info: RunInfo
    spec: ArchitectureSpec
    built: BuiltModel
    history: dict[str, list[float]]
    metrics: dict[str, Any]
    train_config: dict[str, Any]
    latent_stats: dict[str, Any] | None

    @property
    def run_id(self) -> str:
        """The run's id (its folder name)."""
        return self.info.run_id


# --------------------------------------------------------------------------------------------
# Paths and ids


def models_dir() -> Path:
    """The runs root: ``$CAE_MODELS_DIR`` when set, else ``models/`` beside the ``cae`` package."""
    env = os.environ.get("CAE_MODELS_DIR", "").strip()
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parent.parent / "models"


def _root(root: str | os.PathLike[str] | None) -> Path:
    return models_dir() if root is None else Path(root)


_WORKSPACE_ID_RE = re.compile(r"[0-9a-f]{32}")


def check_workspace_id(workspace_id: Any) -> str:
    """Return ``workspace_id`` if it is well formed (32 lowercase hex digits, as
    :func:`new_workspace_id` makes them), else raise ValueError."""
    if not isinstance(workspace_id, str) or not _WORKSPACE_ID_RE.fullmatch(workspace_id):
        shown = workspace_id[:80] if isinstance(workspace_id, str) else workspace_id
        raise ValueError(
            "A workspace id is 32 lowercase hex digits issued by this server. "
            f"Received: workspace_id={shown!r}"
        )
    return workspace_id


def workspaces_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """The folder that holds every workspace of the runs root ``root``."""
    return _root(root) / WORKSPACES_DIR


def new_workspace_id() -> str:
    """A fresh random workspace id (32 hex digits); its folder is made when it first saves."""
    return secrets.token_hex(16)


def workspace_issued(workspace_id: Any, root: str | os.PathLike[str] | None = None) -> bool:
    """True when ``workspace_id`` is well formed and its folder exists (it saved something here)."""
    try:
        check_workspace_id(workspace_id)
    except ValueError:
        return False
    return (workspaces_dir(root) / workspace_id).is_dir()


def workspace_root(workspace_id: str, root: str | os.PathLike[str] | None = None) -> Path:
    """The runs folder of a workspace (made when it first saves); ValueError for a malformed id.
    Whether the id was issued is the caller's to check (``workspace_issued``, or the session's
    own record): this only guarantees a folder directly inside ``<root>/workspaces``."""
    return workspaces_dir(root) / check_workspace_id(workspace_id)


def gallery_root(root: str | os.PathLike[str]) -> Path | None:
    """The gallery (the runs root) above a workspace's runs folder, or None when ``root`` is not
    one (``<gallery>/workspaces/<id>``)."""
    path = Path(root)
    if path.parent.name == WORKSPACES_DIR and _WORKSPACE_ID_RE.fullmatch(path.name):
        return path.parent.parent
    return None


def listing_roots(root: str | os.PathLike[str]) -> list[Path]:
    """The runs folders a session in ``root`` sees, its own first: a workspace's folder and the
    gallery above it; any other folder alone."""
    gallery = gallery_root(root)
    return [Path(root)] if gallery is None else [Path(root), gallery]


def find_run_folder(run_id: str, root: str | os.PathLike[str]) -> Path:
    """The folder of run ``run_id`` among :func:`listing_roots` of ``root`` (the workspace's own
    first); the path in ``root`` when none holds it (loading then says it is missing)."""
    check_run_id(run_id)
    for folder in listing_roots(root):
        if (folder / run_id).is_dir():
            return folder / run_id
    return Path(root) / run_id


def is_owner(run: RunInfo | str | os.PathLike[str], workspace_id: str | None) -> bool:
    """True when ``run`` (its RunInfo or folder) lives in the workspace ``workspace_id``'s own
    folder: only then may that workspace rename or delete it. Gallery runs have no owner here
    (the teacher manages them); a malformed id owns nothing."""
    path = run.path if isinstance(run, RunInfo) else Path(run)
    try:
        check_workspace_id(workspace_id)
    except ValueError:
        return False
    parent = path.parent
    return parent.name == workspace_id and parent.parent.name == WORKSPACES_DIR


def safe_run_id(name: str) -> str:
    """The file-name-safe slug of a run name: lowercase ASCII letters, digits and ``-``, at most
    48 characters, never empty (``run``) and never a Windows device name (``con`` -> ``con-run``)."""
    if not isinstance(name, str):
        raise TypeError(f"A run name must be a string. Received: name={name!r}")
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "-", text).strip("-")
    slug = slug[:MAX_SLUG_LENGTH].rstrip("-") or "run"
    if slug in _WINDOWS_RESERVED:
        slug = f"{slug}-run"
    return slug


def new_run_id(name: str, now: datetime | None = None) -> str:
    """A fresh id: ``<slug>-YYYYmmdd-HHMMSS-<6 random hex>``."""
    now = datetime.now() if now is None else now
    return f"{safe_run_id(name)}-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def check_run_id(run_id: str) -> str:
    """Return ``run_id`` if it is a plain folder name (letters, digits, ``-``, ``_``, ``.``; no
    ``..``, no separators, not hidden, not a Windows device name), else raise ValueError."""
    if not isinstance(run_id, str):
        raise TypeError(f"A run id must be a string. Received: run_id={run_id!r}")
    stem = run_id.split(".", 1)[0].lower()
    if (
        not _RUN_ID_RE.fullmatch(run_id)
        or ".." in run_id
        or len(run_id) > MAX_RUN_ID_LENGTH
        or stem in _WINDOWS_RESERVED
    ):
        raise ValueError(
            "A run id must be a plain folder name: letters, digits, '-', '_' and '.', starting "
            f"with a letter or digit, no '..', at most {MAX_RUN_ID_LENGTH} characters. "
            f"Received: run_id={run_id!r}"
        )
    return run_id


def resolve_run_path(
    run: str | os.PathLike[str], root: str | os.PathLike[str] | None = None
) -> Path:
    """The folder of a run: a string is a run id inside ``root`` (path traversal is refused);
    a ``pathlib.Path`` (any ``os.PathLike``) is taken as the run folder itself."""
    if isinstance(run, os.PathLike):
        return Path(run)
    return _root(root) / check_run_id(run)


# --------------------------------------------------------------------------------------------
# Reading


MAX_JSON_BYTES = 32 * 2**20  # a run's JSON file: 10,000 epochs of history is ~0.5 MB
MAX_TEST_BYTES = 2 * 2**30  # test_images.npz
WEIGHTS_MEMBER = "model.weights.h5"
_ARCHIVE_MEMBERS = ("config.json", "metadata.json", WEIGHTS_MEMBER)
_VERIFIED: dict[tuple[str, int, int], str | None] = {}  # archive checks, by (path, mtime, size)
_FAILED_LOADS: dict[tuple[str, int, int], str] = {}  # what loading found wrong, by the same key
_CHECK_LOCK = threading.Lock()


def regular_file_problem(path: Path, limit: int) -> str | None:
    """Why ``path`` must not be read (missing, not a regular file, over ``limit`` bytes), or None.
    A FIFO would hang a read and /dev/zero would fill memory: only regular files are read."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return f"{path.name} is missing"
    except OSError as error:
        return f"{path.name} cannot be read ({error})"
    if not stat.S_ISREG(status.st_mode):
        return f"{path.name} is not a regular file"
    if status.st_size > limit:
        return f"{path.name} is larger than {limit:,} bytes ({status.st_size:,})"
    return None


def _load_json(path: Path) -> tuple[Any, str | None]:
    """(data, None) or (None, reason) for one JSON file of a run."""
    problem = regular_file_problem(path, MAX_JSON_BYTES)
    if problem:
        return None, problem
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, f"{path.name} is missing"
    except (OSError, UnicodeDecodeError) as error:
        return None, f"{path.name} cannot be read ({error})"
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as error:
        return None, f"{path.name} is not valid JSON ({error})"
    if not isinstance(data, dict):
        return None, f"{path.name} must hold a JSON object, not {type(data).__name__}"
    return data, None


def _file_key(path: Path) -> tuple[str, int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (os.fspath(path), status.st_mtime_ns, status.st_size)


def weights_limit(params: int | None) -> int:
    """The most bytes a run's weights may take once unpacked: float32 weights, optimizer-free,
    with generous room for the HDF5 layout (a crafted archive cannot make loading allocate more)."""
    return 4 * 4 * (params or 0) + 16 * 2**20


def _check_model_archive(path: Path, params: int | None = None) -> str | None:
    """Check, without TensorFlow, what loading needs of model.keras: a regular file, a zip with
    Keras's members, every member's CRC good and sizes within what the spec's parameters need.
    Checked once per version of the file; a load that failed on it is remembered here too."""
    problem = regular_file_problem(path, weights_limit(params) + 32 * 2**20)
    if problem:
        return problem
    key = _file_key(path)
    with _CHECK_LOCK:
        if key in _FAILED_LOADS:
            return _FAILED_LOADS[key]
        if key in _VERIFIED:
            return _VERIFIED[key]
    problem = _verify_archive(path, params)
    if key is not None:
        with _CHECK_LOCK:
            _VERIFIED[key] = problem
    return problem


def _verify_archive(path: Path, params: int | None) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info for info in archive.infolist()}
            missing = [name for name in _ARCHIVE_MEMBERS if name not in members]
            if missing:
                return f"{MODEL_FILE} is not a valid Keras archive (no {missing[0]} inside)"
            weights = members[WEIGHTS_MEMBER].file_size
            if weights > weights_limit(params):
                return (
                    f"{MODEL_FILE} holds {weights:,} bytes of weights, more than its "
                    f"{params or 0:,} parameters need"
                )
            if (
                sum(info.file_size for info in members.values())
                > weights_limit(params) + 32 * 2**20
            ):
                return f"{MODEL_FILE} unpacks to more than its parameters need"
            corrupt = archive.testzip()
            if corrupt is not None:
                return f"{MODEL_FILE} is corrupt ({corrupt} fails its checksum)"
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error) as error:
        return f"{MODEL_FILE} is not a valid Keras archive ({error})"
    return None


def _remember_failed_load(path: Path, reason: str) -> None:
    key = _file_key(path)
    if key is not None:
        with _CHECK_LOCK:
            _FAILED_LOADS[key] = reason


def failed_loads() -> int:
    """How many run archives failed to load in this process (part of ``runs_state``, so a cached
    listing shows such a run as broken at once)."""
    with _CHECK_LOCK:
        return len(_FAILED_LOADS)


def _history_epochs(history: dict[str, Any]) -> int:
    lengths = [len(values) for values in history.values() if isinstance(values, list)]
    return max(lengths, default=0)


def _check_history(history: dict[str, Any]) -> str | None:
    for key, values in history.items():
        if not isinstance(values, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
        ):
            return f"{HISTORY_FILE}: {key!r} must be a list of numbers"
    return None


def _scan(path: Path) -> tuple[RunInfo, dict[str, Any]]:
    """The RunInfo of one folder and its parsed JSON documents; never raises."""
    docs: dict[str, Any] = {}
    problems: list[str] = []
    if not _RUN_ID_RE.fullmatch(path.name) or ".." in path.name:
        problems.append("the folder name is not a valid run id (rename the folder)")
    for filename in JSON_FILES:
        if filename == LATENT_FILE and not (path / LATENT_FILE).exists():
            docs[filename] = None
            continue
        data, problem = _load_json(path / filename)
        docs[filename] = data
        if problem:
            if filename == MARKER_FILE and problem.endswith("is missing"):
                problem = f"incomplete write: the {MARKER_FILE} marker is missing"
            problems.append(problem)
    marker = docs[MARKER_FILE] or {}
    version = marker.get("format")
    if docs[MARKER_FILE] is not None and (
        not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION
    ):
        problems.append(
            f"{MARKER_FILE}: unsupported format {version!r} (this version reads up to "
            f"{FORMAT_VERSION})"
        )
    train = docs[TRAIN_FILE] or {}
    history = docs[HISTORY_FILE] or {}
    metrics = docs[METRICS_FILE] or {}
    if docs[HISTORY_FILE] is not None:
        problem = _check_history(history)
        if problem:
            problems.append(problem)
    spec_name = latent_shape = input_shape = params = None
    if docs[SPEC_FILE] is not None:
        spec_name = docs[SPEC_FILE].get("name")
        spec_name = spec_name if isinstance(spec_name, str) else None
        try:
            from cae.shapes import compute_shapes

            spec = ArchitectureSpec.from_dict(docs[SPEC_FILE])
            report = compute_shapes(spec, with_fixes=False)
            if not report.matches:
                raise ValueError(report.problem or "the decoder output differs from the input")
        except (ValueError, TypeError, RecursionError) as error:
            problems.append(f"{SPEC_FILE} no longer validates: {error}")
        else:
            docs["_spec"] = spec
            spec_name = spec.name
            latent_shape = tuple(report.latent_shape)
            input_shape = tuple(spec.input_shape)
            params = report.total_params
    if params is None and isinstance(metrics.get("params"), int):
        params = metrics["params"]
    model_problem = _check_model_archive(path / MODEL_FILE, params)
    if model_problem:
        problems.append(model_problem)
    name = train.get("name")
    if isinstance(name, str):  # written by hand, or before names were cleaned at input
        name = clean_name(name)
    created = train.get("created")
    recipe, recipe_problem = None, None
    if docs[TRAIN_FILE] is not None:
        try:
            recipe = recipe_from_record(train)
        except (RecipeError, TypeError) as error:
            recipe_problem = str(error)
    dataset = recipe.label if recipe is not None else train.get("dataset")
    dataset = clean_name(dataset) if isinstance(dataset, str) else None  # an upload's file name
    info = RunInfo(
        run_id=path.name,
        path=path,
        name=name if isinstance(name, str) and name else path.name,
        created=created if isinstance(created, str) else None,
        dataset=dataset if isinstance(dataset, str) else None,
        epochs=_history_epochs(history),
        spec_name=spec_name,
        params=params,
        latent_shape=latent_shape,
        metrics=dict(metrics),
        broken="; ".join(problems) if problems else None,
        input_shape=input_shape,
        recipe=recipe,
        recipe_problem=recipe_problem,
    )
    return info, docs


def _read_info(path: Path) -> tuple[RunInfo, dict[str, Any]]:
    try:
        return _scan(path)
    except Exception as error:  # a listing must never fail because of one folder
        info = RunInfo(
            run_id=path.name,
            path=path,
            name=path.name,
            created=None,
            dataset=None,
            epochs=0,
            spec_name=None,
            params=None,
            latent_shape=None,
            broken=f"unreadable run folder ({type(error).__name__}: {error})",
        )
        return info, {}


def _sort_key(info: RunInfo) -> tuple[float, str]:
    stamp: float | None = None
    if info.created:
        try:
            moment = datetime.fromisoformat(info.created)
            stamp = (moment if moment.tzinfo else moment.astimezone()).timestamp()
        except (ValueError, OverflowError, OSError):
            stamp = None
    if stamp is None:
        try:
            stamp = info.path.stat().st_mtime
        except OSError:
            stamp = 0.0
    return (stamp, info.run_id)


def newest_first(runs: list[RunInfo]) -> list[RunInfo]:
    """``runs`` in the listing's order: newest first (by ``created``, then id)."""
    return sorted(runs, key=_sort_key, reverse=True)


def list_runs(root: str | os.PathLike[str] | None = None) -> list[RunInfo]:
    """Every run folder under ``root``, newest first, from JSON alone (no TensorFlow). Broken
    folders are listed with ``broken`` set to the reason; hidden (``.tmp-*``) folders, plain
    files and the ``workspaces`` folder are skipped; a missing root gives an empty list."""
    root_path = _root(root)
    try:
        entries = list(os.scandir(root_path))
    except (FileNotFoundError, NotADirectoryError):
        return []
    runs = []
    for entry in entries:
        if entry.name.startswith(".") or entry.name == WORKSPACES_DIR:
            continue
        try:
            if not entry.is_dir():
                continue
        except OSError:
            continue
        runs.append(_read_info(Path(entry.path))[0])
    runs.sort(key=_sort_key, reverse=True)
    return runs


def runs_state(root: str | os.PathLike[str] | None = None) -> tuple[Any, ...]:
    """A cheap fingerprint of the runs folder (one ``stat`` per entry, no file read): it changes
    whenever a run is saved, published, renamed, deleted or has a file added, removed or
    replaced, so a listing can be cached until it does."""
    root_path = _root(root)
    try:
        entries = sorted(os.scandir(root_path), key=lambda entry: entry.name)
    except (FileNotFoundError, NotADirectoryError):
        return ()
    except OSError as error:
        return (f"unreadable: {error}",)
    state: list[Any] = [root_path.stat().st_mtime_ns, failed_loads()]
    for entry in entries:
        if entry.name.startswith(".") or entry.name == WORKSPACES_DIR:
            continue
        try:
            stat = entry.stat()
        except OSError:
            stat = None
        state.append((entry.name, None if stat is None else (stat.st_mtime_ns, stat.st_ino)))
    return tuple(state)


def _existing_run_path(run: str | os.PathLike[str], root: str | os.PathLike[str] | None) -> Path:
    path = resolve_run_path(run, root)
    if not path.is_dir():
        raise RunError(
            f"No run folder {path.name!r} in {path.parent}. Received: run={str(run)!r}",
            run_id=path.name,
            reason="missing",
        )
    return path


def get_run_info(
    run: str | os.PathLike[str], root: str | os.PathLike[str] | None = None
) -> RunInfo:
    """The RunInfo of one run (id in ``root`` or folder path); RunError if there is no such folder."""
    return _read_info(_existing_run_path(run, root))[0]


def read_run_json(
    run: str | os.PathLike[str], filename: str, root: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """One JSON file of a run (``spec``, ``train``, ``history``, ``metrics``, ``latent`` or
    ``run``, with or without ``.json``) as a dict; RunError when missing or invalid."""
    key = filename if filename.endswith(".json") else f"{filename}.json"
    if key not in JSON_FILES:
        raise ValueError(
            f"Not a run JSON file; choose one of {', '.join(JSON_FILES)}. "
            f"Received: filename={filename!r}"
        )
    path = _existing_run_path(run, root)
    data, problem = _load_json(path / key)
    if problem:
        raise RunError(
            f"Run {path.name!r}: {problem}. Received: run={str(run)!r}, filename={filename!r}",
            run_id=path.name,
            reason=problem,
        )
    return data


def load_history(
    run: str | os.PathLike[str], root: str | os.PathLike[str] | None = None
) -> dict[str, list[float]]:
    """The per-epoch history of a run (``{"loss": [...], "val_loss": [...], ...}``)."""
    return read_run_json(run, HISTORY_FILE, root)


def load_run(run: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> LoadedRun:
    """Load a run (id in ``root`` or folder path) with its Keras models (``safe_mode``); a broken
    or mismatched run raises RunError with the reason and the run id."""
    path = _existing_run_path(run, root)
    info, docs = _read_info(path)
    if info.broken:
        raise RunError(
            f"Run {info.run_id!r} cannot be loaded: {info.broken}. Received: run={str(run)!r}",
            run_id=info.run_id,
            reason=info.broken,
        )
    spec: ArchitectureSpec = docs["_spec"]
    from cae.builder import build

    try:
        # The model comes from the validated spec (its limits applied); model.keras gives only
        # the weights, so a crafted config in it cannot choose what is built or allocated.
        with _KERAS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras's notes on containers it skips
            built = build(spec)
            built.autoencoder.load_weights(path / MODEL_FILE)
    except Exception as error:
        reason = (
            f"{MODEL_FILE} cannot be loaded ({type(error).__name__}: {short_message(error, 200)})"
        )
        _remember_failed_load(path / MODEL_FILE, reason)
        raise RunError(
            f"Run {info.run_id!r} cannot be loaded: {reason}. Received: run={str(run)!r}",
            run_id=info.run_id,
            reason=reason,
        ) from error
    found = (
        tuple(int(n) for n in built.autoencoder.input_shape[1:]),
        tuple(int(n) for n in built.encoder.output_shape[1:]),
        tuple(int(n) for n in built.autoencoder.output_shape[1:]),
    )
    expected = (tuple(spec.input_shape), info.latent_shape, tuple(spec.input_shape))
    if found != expected:
        reason = f"{MODEL_FILE} does not match {SPEC_FILE}"
        raise RunError(
            f"Run {info.run_id!r} cannot be loaded: {reason} (input, code, output shapes "
            f"expected {expected}). Received: shapes={found}",
            run_id=info.run_id,
            reason=reason,
        )
    return LoadedRun(
        info=info,
        spec=spec,
        built=built,
        history=docs[HISTORY_FILE],
        metrics=docs[METRICS_FILE],
        train_config=docs[TRAIN_FILE],
        latent_stats=docs[LATENT_FILE],
    )


# --------------------------------------------------------------------------------------------
# Writing


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays and scalars
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def _dumps(data: Any, what: str) -> str:
    try:
        return json.dumps(data, indent=2, default=_json_default)
    except (TypeError, ValueError, RecursionError) as error:
        raise ValueError(
            f"{what} cannot be written as JSON ({error}). Received: {what}={_short(data)}"
        ) from None


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _fsync_path(path: Path) -> None:
    """Flush a file or folder to disk (best effort: folders cannot be opened on Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _write_bytes(path: Path, content: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())


def _clean_history(history: Any) -> dict[str, list[float]]:
    if not isinstance(history, dict):
        raise ValueError(
            f"history must be a dict of metric name -> list of numbers. Received: "
            f"history={_short(history)}"
        )
    clean: dict[str, list[float]] = {}
    for key, values in history.items():
        try:
            clean[str(key)] = [float(v) for v in values]
        except (TypeError, ValueError):
            raise ValueError(
                f"history[{key!r}] must be a list of numbers. Received: {_short(values)}"
            ) from None
    return clean


def clean_stale_tmp(
    root: str | os.PathLike[str] | None = None, max_age_s: float = STALE_TMP_SECONDS
) -> list[str]:
    """Remove ``.tmp-*`` folders older than ``max_age_s`` (left by crashed saves, or staged runs
    nobody saved) from the runs folder and its fallback staging folder; their names."""
    root_path = _root(root)
    removed = []
    entries = []
    for base in (root_path, fallback_staging_root(root_path)):
        with contextlib.suppress(OSError):
            entries.extend(os.scandir(base))
    now = time.time()
    for entry in entries:
        try:
            if (
                entry.name.startswith(TMP_PREFIX)
                and entry.is_dir(follow_symlinks=False)
                and now - entry.stat(follow_symlinks=False).st_mtime > max_age_s
            ):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(entry.name)
        except OSError:
            continue
    return removed


SWEEP_INTERVAL_S = 600.0  # the whole server's expired uploads and stale folders, at most this often
_LAST_SWEEP: dict[str, float] = {}
_SWEEP_LOCK = threading.Lock()


def sweep_expired(root: str | os.PathLike[str] | None = None, *, force: bool = False) -> list[str]:
    """Remove what has outlived its keep time in the whole runs root of ``root`` (given a
    workspace's folder, its server's): in the gallery and every workspace, expired uploads
    (``cae.upload_files.clean_uploads``) and stale ``.tmp-`` folders (:func:`clean_stale_tmp`), so
    a workspace nobody uses again does not keep its uploads forever. Done at most once per
    :data:`SWEEP_INTERVAL_S` per root unless ``force``; the names removed."""
    base = _root(root)
    if base.parent.name == WORKSPACES_DIR:
        base = base.parent.parent
    key = os.fspath(base.resolve())
    with _SWEEP_LOCK:
        now = time.monotonic()
        if not force and now - _LAST_SWEEP.get(key, -SWEEP_INTERVAL_S) < SWEEP_INTERVAL_S:
            return []
        _LAST_SWEEP[key] = now
    folders = [base]
    with contextlib.suppress(OSError):
        folders += [
            Path(entry.path)
            for entry in os.scandir(workspaces_dir(base))
            if _WORKSPACE_ID_RE.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False)
        ]
    removed: list[str] = []
    for folder in folders:
        with contextlib.suppress(OSError):
            if uploads_dir(folder).is_dir():
                removed += clean_uploads(uploads_dir(folder))
            removed += clean_stale_tmp(folder)
    return removed


def save_run(
    autoencoder: keras.Model,
    spec: ArchitectureSpec,
    *,
    name: str,
    train_config: dict[str, Any],
    history: dict[str, list[float]],
    metrics: dict[str, Any],
    latent_stats: dict[str, Any] | None = None,
    test_split: TestSplit | None = None,
    root: str | os.PathLike[str] | None = None,
    events: bytes | None = None,
) -> str:
    """Write a run atomically (temporary folder, then one rename) and return its new id;
    ``test_split`` (the images it is scored on) is kept in the folder when given, and ``events``
    (its TensorBoard event file, ``cae.events``) as :data:`EVENTS_FILE`."""
    if not isinstance(spec, ArchitectureSpec):
        raise TypeError(f"spec must be an ArchitectureSpec. Received: spec={_short(spec)}")
    for what, value in (("train_config", train_config), ("metrics", metrics)):
        if not isinstance(value, dict):
            raise ValueError(f"{what} must be a dict. Received: {what}={_short(value)}")
    if latent_stats is not None and not isinstance(latent_stats, dict):
        raise ValueError(
            f"latent_stats must be a dict or None. Received: latent_stats={_short(latent_stats)}"
        )
    safe_run_id(name)  # type check of the name before anything is written
    name = clean_name(name)  # no control or bidi characters, one line (cae.text)
    now = datetime.now().astimezone()
    files = {
        SPEC_FILE: spec.to_json(),
        TRAIN_FILE: _dumps(
            {**train_config, "name": name, "created": now.isoformat()}, "train_config"
        ),
        HISTORY_FILE: _dumps(_clean_history(history), "history"),
        METRICS_FILE: _dumps(metrics, "metrics"),
    }
    if latent_stats is not None:
        files[LATENT_FILE] = _dumps(latent_stats, "latent_stats")
    binary = {TEST_FILE: test_split_bytes(test_split)} if test_split is not None else {}
    if events is not None:
        if not isinstance(events, bytes):
            raise ValueError(f"events must be bytes or None. Received: events={_short(events)}")
        binary[EVENTS_FILE] = events
    marker = _dumps(
        {
            "format": FORMAT_VERSION,
            "created": now.isoformat(),
            "files": [*files, *binary, MODEL_FILE],
        },
        "marker",
    )
    root_path = _root(root)
    made_root = not root_path.exists()
    root_path.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        clean_stale_tmp(root_path)
        sweep_expired(root_path)  # every workspace's, at most once per SWEEP_INTERVAL_S
    tmp = root_path / f"{TMP_PREFIX}{secrets.token_hex(8)}"
    try:
        tmp.mkdir()
        for filename, text in files.items():
            _write_text(tmp / filename, text)
        for filename, content in binary.items():
            _write_bytes(tmp / filename, content)
        from cae.builder import save_model

        with _KERAS_LOCK:
            save_model(autoencoder, tmp / MODEL_FILE)
        _fsync_path(tmp / MODEL_FILE)
        _write_text(tmp / MARKER_FILE, marker)  # last: a folder without it is incomplete
        _fsync_path(tmp)
        return _rename_into(tmp, root_path, name, now)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if made_root and root_path.name.startswith(f"{TMP_PREFIX}staged-"):
            with contextlib.suppress(OSError):  # a staging folder this failed save made (a
                root_path.rmdir()  # full disk): the model is staged elsewhere, or not at all
        raise


def metrics_record(result: TrainResult) -> dict[str, Any]:
    """The metrics.json of a run: its test metrics plus parameters, code shape, wall time and
    epochs."""
    model = result.built
    return {
        **result.test_metrics,
        "params": int(model.autoencoder.count_params()),
        "latent_shape": [int(n) for n in model.encoder.output_shape[1:]],
        "wall_seconds": round(result.wall_seconds, 3),
        "epochs": result.epochs_completed,
    }


def local_backend() -> dict[str, Any]:
    """Where a run trained when it trained on this machine's own workers, for train.json:
    ``{"backend": "local", "host": <this machine's name>}``."""
    import socket

    return {"backend": "local", "host": socket.gethostname()}


def timed_here(train: dict[str, Any]) -> bool:
    """True when a run's train.json says it trained where this server's trainings run now: on
    this machine (its recorded host is this one's) or on the Ray cluster. A run with no record
    of where (older runs, the shipped ones) is not: its speed says nothing about this machine."""
    import socket

    if train.get("backend") == "ray":
        return True
    return train.get("backend") == "local" and train.get("host") == socket.gethostname()


def train_record(
    request: TrainRequest, result: TrainResult, context: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The train.json of a run (without ``name`` and ``created``, which ``save_run`` adds): the
    request's recipe, config and strategy, what happened (the outcome without the history and
    test metrics, which have files of their own), the ``experiment`` a sweep's run belongs to, and
    ``context`` (e.g. ``server_exited``)."""
    outcome = result.outcome().to_dict()
    for key in ("history", "test_metrics"):
        outcome.pop(key)
    outcome["wall_seconds"] = round(result.wall_seconds, 3)
    return {
        "data": request.data.to_dict(),
        "config": request.config.to_dict(),
        "strategy": request.strategy,
        "outcome": outcome,
        **({"experiment": request.experiment} if request.experiment is not None else {}),
        **(context or {}),
    }


def save_trained(
    result: TrainResult,
    request: TrainRequest,
    test_split: TestSplit,
    *,
    root: str | os.PathLike[str] | None = None,
    name: str | None = None,
    context: dict[str, Any] | None = None,
) -> str:
    """Save a training's model (its kept epoch) as a run with its one train.json and metrics.json
    record and its test images; returns the new run id. The worker and the CLI both save here."""
    if result.epochs_completed == 0:
        raise ValueError(
            "training stopped before the first epoch completed: there is nothing to save. "
            "Received: epochs_completed=0"
        )
    return save_run(
        result.built.autoencoder,
        request.spec,
        name=name or request.name,
        train_config=train_record(request, result, context),
        history=result.history,
        metrics=metrics_record(result),
        latent_stats=result.latent_stats,
        test_split=test_split,
        root=root,
        events=result.tensorboard,
    )


def run_test_split(
    run: str | os.PathLike[str], root: str | os.PathLike[str] | None = None
) -> TestSplit:
    """The images a run is scored on, and only those: its stored ``test_images.npz``, or for a run
    saved before test images were kept, the test split rebuilt from its recorded recipe. Every
    page, ``cae evaluate``, the benches and the tests get a run's test images here. RunError (one
    line, the reason in ``reason``) when the record does not say or the images cannot be had."""
    path = _existing_run_path(run, root)
    info = _read_info(path)[0]
    if info.recipe is None:
        raise RunError(
            f"Run {info.run_id!r} has no test images: {info.recipe_problem}",
            run_id=info.run_id,
            reason=info.recipe_problem,
        )
    try:
        if (path / TEST_FILE).exists() or (path / TEST_FILE).is_symlink():
            problem = regular_file_problem(path / TEST_FILE, MAX_TEST_BYTES)
            if problem:
                raise ValueError(problem)
            split = read_test_split(path / TEST_FILE, info.recipe)
        else:
            split = TestSplit.of(load_recipe(info.recipe), info.recipe, stored=False)
    except (ValueError, OSError, KeyError, zipfile.BadZipFile) as error:
        reason = f"its test images cannot be read ({type(error).__name__}: {error})"
        raise RunError(
            f"Run {info.run_id!r}: {reason}", run_id=info.run_id, reason=reason
        ) from error
    if info.input_shape is not None and split.image_shape != tuple(info.input_shape):
        reason = (
            f"its test images are {list(split.image_shape)}, not the design's "
            f"{list(info.input_shape)}"
        )
        raise RunError(f"Run {info.run_id!r}: {reason}", run_id=info.run_id, reason=reason)
    return split


def uploads_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """Where uploaded data files are kept (hidden inside the runs folder, so not listed as runs)."""
    return _root(root) / UPLOADS_DIR


def save_upload(
    content: bytes, filename: str, root: str | os.PathLike[str] | None = None, *, owner: str
) -> Path:
    """Write an uploaded file once, named by its SHA-256 (the same content is written only once),
    record ``owner`` (the workspace that chose it) beside it and return its path for a data
    recipe. Expired uploads are removed first, and a file over the workspace's upload quota is
    refused (``cae.upload_files``: how long uploads are kept, what each workspace may keep)."""
    import hashlib

    suffix = Path(str(filename).replace("\\", "/")).suffix.lower()
    if not re.fullmatch(r"\.[a-z0-9]{1,8}", suffix):
        raise ValueError(
            f"an upload needs a file extension such as .npz. Received: filename={filename!r}"
        )
    folder = uploads_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{hashlib.sha256(content).hexdigest()}{suffix}"
    sweep_expired(root)  # every workspace's expired uploads, at most once per SWEEP_INTERVAL_S
    with UPLOADS_LOCK:
        clean_uploads(folder)
        check_quota(folder, owner, target, len(content))
        if not target.is_file():
            partial = folder / f"{TMP_PREFIX}{secrets.token_hex(8)}{suffix}"
            try:
                _write_bytes(partial, content)
                os.replace(partial, target)
            except BaseException:  # a full disk: no partial file is left behind
                with contextlib.suppress(OSError):
                    partial.unlink()
                raise
        claim_upload(target, owner)
    return target


def _rename_into(folder: Path, root_path: Path, name: str, now: datetime) -> str:
    """Rename a complete run folder into ``root_path`` under a new id for ``name`` (one step)."""
    for _ in range(16):
        run_id = new_run_id(name, now)
        target = root_path / run_id
        if target.exists() or target.is_symlink():
            continue
        try:
            os.rename(folder, target)
        except OSError:
            if target.exists():  # somebody took the id between the check and the rename
                continue
            raise
        _fsync_path(root_path)
        return run_id
    raise RuntimeError(f"No free run id after 16 tries. Received: name={name!r}")


def fallback_staging_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Where a training process keeps its model when the runs folder cannot be written to
    (permissions, a full disk): ``$CAE_STAGING_DIR`` or the system's temporary folder, one
    sub-folder per runs folder, so that a failed save never loses the trained model."""
    base = Path(os.environ.get("CAE_STAGING_DIR", "").strip() or tempfile.gettempdir())
    import hashlib

    digest = hashlib.sha256(os.fspath(_root(root).resolve()).encode()).hexdigest()[:12]
    return base / f"cae-staged-{digest}"


def staging_dir(
    token: str, root: str | os.PathLike[str] | None = None, *, fallback: bool = False
) -> Path:
    """A hidden folder where a training process saves a run that is not published yet (a stopped
    job waiting for the user's Save, or a save that failed): inside ``root``, or with
    ``fallback`` in :func:`fallback_staging_root`. ``publish_run`` moves it out; forgotten ones
    are removed after a day (:data:`STALE_TMP_SECONDS`)."""
    if not isinstance(token, str) or not re.fullmatch(r"[A-Za-z0-9]{1,64}", token):
        raise ValueError(
            f"a staging token must be 1-64 letters or digits. Received: token={token!r}"
        )
    base = fallback_staging_root(root) if fallback else _root(root)
    return base / f"{TMP_PREFIX}staged-{token}"


def _staging_parent_ok(staged_path: Path, root_path: Path) -> bool:
    parent = staged_path.resolve().parent
    return parent.name.startswith(f"{TMP_PREFIX}staged-") and parent.parent in (
        root_path.resolve(),
        fallback_staging_root(root_path).resolve(),
    )


@dataclass(frozen=True)
class StagedRun:
    """A trained model kept but not saved as a run (a stopped job, or a save that failed)."""

    path: Path
    name: str
    epochs: int
    created: str | None
    expires: float  # when clean_stale_tmp removes it (a Unix time)
    info: RunInfo


def list_staged(root: str | os.PathLike[str] | None = None) -> list[StagedRun]:
    """Every complete staged run of ``root`` (inside it and in its fallback), newest first: they
    survive a server restart and any owner can save or discard them."""
    root_path = _root(root)
    found: list[StagedRun] = []
    for base in (root_path, fallback_staging_root(root_path)):
        try:
            parents = [e for e in os.scandir(base) if e.name.startswith(f"{TMP_PREFIX}staged-")]
        except OSError:
            continue
        for parent in parents:
            try:
                if not parent.is_dir(follow_symlinks=False):
                    continue
                expires = parent.stat(follow_symlinks=False).st_mtime + STALE_TMP_SECONDS
                runs = [e for e in os.scandir(parent.path) if e.is_dir(follow_symlinks=False)]
            except OSError:
                continue
            for entry in runs:
                info = _read_info(Path(entry.path))[0]
                if info.ok:
                    found.append(
                        StagedRun(
                            Path(entry.path), info.name, info.epochs, info.created, expires, info
                        )
                    )
    found.sort(key=lambda staged: _sort_key(staged.info), reverse=True)
    return found


def _remove_staging_leftovers(staged_path: Path, root_path: Path) -> None:
    """Once a staged run is saved or discarded, remove what its job left in the other staging
    place (the runs folder or its fallback): an empty ``.tmp-staged-<job>`` folder or a partial
    save from an attempt that failed (a full disk). A complete run there is left alone."""
    token = staged_path.resolve().parent.name.removeprefix(f"{TMP_PREFIX}staged-")
    for fallback in (False, True):
        try:
            folder = staging_dir(token, root_path, fallback=fallback)
            entries = list(os.scandir(folder))
        except (ValueError, OSError):
            continue
        if all(entry.name.startswith(TMP_PREFIX) for entry in entries):
            shutil.rmtree(folder, ignore_errors=True)


def discard_staged(
    staged: str | os.PathLike[str], root: str | os.PathLike[str] | None = None
) -> None:
    """Delete a staged run and its staging folder (in the runs folder and in its fallback),
    never anything else."""
    staged_path = Path(staged)
    if not _staging_parent_ok(staged_path, _root(root)):
        raise ValueError(
            f"only a staged run of this runs folder can be discarded. Received: staged={os.fspath(staged_path)!r}"
        )
    shutil.rmtree(staged_path.parent, ignore_errors=True)
    _remove_staging_leftovers(staged_path, _root(root))


def publish_run(
    staged: str | os.PathLike[str], *, name: str, root: str | os.PathLike[str] | None = None
) -> str:
    """Move a complete run folder saved under ``staging_dir(...)`` (in the runs folder or its
    fallback) into ``root`` as a run called ``name`` (its train.json is rewritten with the name)
    and return the new run id; from another file system it is copied first, then renamed."""
    staged_path = Path(staged)
    root_path = _root(root)
    if not _staging_parent_ok(staged_path, root_path):
        raise ValueError(
            f"only a run saved in a staging folder of the runs folder can be published. "
            f"Received: staged={os.fspath(staged_path)!r}, root={os.fspath(root_path)!r}"
        )
    info, docs = _read_info(staged_path)
    if not info.ok:
        raise RunError(
            f"the staged run cannot be published: {info.broken}. Received: staged={staged_path.name!r}",
            run_id=staged_path.name,
            reason=info.broken,
        )
    safe_run_id(name)
    name = clean_name(name)  # no control or bidi characters, one line (cae.text)
    now = datetime.now().astimezone()
    train = {**docs[TRAIN_FILE], "name": name}
    renamed = staged_path / f"{TRAIN_FILE}.new"
    _write_text(renamed, _dumps(train, "train_config"))
    os.replace(renamed, staged_path / TRAIN_FILE)
    root_path.mkdir(parents=True, exist_ok=True)
    if staged_path.resolve().parent.parent == root_path.resolve():
        run_id = _rename_into(staged_path, root_path, name, now)
    else:  # the fallback: maybe another file system, so copy into the root, then one rename
        copy = root_path / f"{TMP_PREFIX}{secrets.token_hex(8)}"
        try:
            shutil.copytree(staged_path, copy)
            _fsync_path(copy)
            run_id = _rename_into(copy, root_path, name, now)
        except BaseException:
            shutil.rmtree(copy, ignore_errors=True)
            raise
        shutil.rmtree(staged_path, ignore_errors=True)
    with contextlib.suppress(OSError):
        staged_path.parent.rmdir()
    _remove_staging_leftovers(staged_path, root_path)
    return run_id


def delete_run(run_id: str, root: str | os.PathLike[str] | None = None) -> None:
    """Delete the run folder ``root/<run_id>``, broken ones too, whatever their name (``classic
    run (copy)`` included): any direct entry of ``root``, never anything outside it; a symlink is
    removed, never what it points to."""
    if not isinstance(run_id, str):
        raise TypeError(f"delete_run takes a run id string. Received: run_id={run_id!r}")
    if (
        not run_id
        or run_id in (".", "..")
        or "/" in run_id
        or "\\" in run_id
        or "\x00" in run_id
        or run_id.startswith(".")
    ):
        raise ValueError(
            f"only a folder directly inside the runs folder can be deleted. Received: run_id={run_id!r}"
        )
    root_path = _root(root)
    path = root_path / run_id
    if path.is_symlink():  # remove the link, never what it points to
        path.unlink()
        return
    if not path.is_dir() or path.parent != root_path:
        raise RunError(
            f"No run folder {run_id!r} in {root_path}. Received: run_id={run_id!r}",
            run_id=run_id,
            reason="missing",
        )
    trash = root_path / f"{TMP_PREFIX}delete-{secrets.token_hex(8)}"
    os.rename(path, trash)  # disappears from the list at once, even if removal fails midway
    shutil.rmtree(trash, ignore_errors=True)
