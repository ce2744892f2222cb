"""Heavy steps out of the server: a baseline or the decoding of an upload runs in a worker process
of its own, under a memory cap, and only its small answer comes back.

Why: measured on this 24 GB machine (issue 26), opening Results on a run trained on a 520 KB
``.npz`` cost the server 7.8 GB for 51 s (the PCA baseline of its 535 MB of images), and four
~500 KB zip uploads decoded at once took the Streamlit process to 8.9 GB. A process per step gives
all of that memory back to the system when it ends, and its cap (``RLIMIT_AS``, set by the worker
on itself before it imports numpy) ends a step that runs past it with one clear message while the
server, which never held the images, goes on.

:func:`run_in_worker` is the one entry point: ``run_in_worker(kind, request, payload=...)`` starts
``python -m cae.offload``, writes one JSON line (``{"kind", "request", "payload_bytes"}``) and the
payload's raw bytes (an upload's file, never base64) to its standard input, and reads one JSON line
back: ``{"ok": result}`` or ``{"error": message}`` (numpy arrays as ``cae.protocol`` encodes them;
never pickle). :data:`STEPS` names the kinds; an admission controller can wrap the call (the
memory it asks for is :func:`step_memory_limit`). No TensorFlow and no streamlit here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

ENV_LIMIT = "CAE_STEP_MEMORY"  # bytes of address space a step's process may take
DEFAULT_LIMIT = 3 * 2**30
"""A step's address-space cap by default: the upload budget (2 GiB as held, ``cae.uploads``) plus
1 GiB for the work around it (the interpreter, numpy, decoding one image, PCA's blocks)."""
MIN_LIMIT = 256 * 2**20  # below this the interpreter and numpy cannot start
TIMEOUT_S = 900.0  # a step that has not answered by then is ended
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


class StepError(ValueError):
    """A step that could not be done in its worker; the message says why, in one line."""


def step_memory_limit() -> int:
    """The address space one step's process may take, in bytes: ``$CAE_STEP_MEMORY`` when set
    (at least 256 MiB), else :data:`DEFAULT_LIMIT` (3 GiB)."""
    raw = os.environ.get(ENV_LIMIT, "").strip()
    try:
        return max(MIN_LIMIT, int(float(raw))) if raw else DEFAULT_LIMIT
    except ValueError:
        return DEFAULT_LIMIT


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.2f} GiB"


# ------------------------------------------------------------------------------ the server's side


# The admission kind (cae.admission.KINDS) and the queue's words for each step.
ADMISSION_KINDS = {"baselines": "baseline", "upload_summary": "upload", "evaluation": "evaluate"}
STEP_TITLES = {
    "baselines": "the baselines (PCA and the mean image)",
    "upload_summary": "reading an upload",
    "evaluation": "scoring a run on its test images",
}
IN_SERVER_ENV = "CAE_EVAL_IN_SERVER"  # bytes of a test split (as float32) scored in the server
IN_SERVER_BYTES = 64 * 2**20
"""A run's test split up to this size as float32 is scored in the server itself (the bundled
sample's 500 test images: 1.5 MB; MNIST's 10,000: 31 MB): a worker would cost ~4 s of
TensorFlow's start-up for a few milliseconds of work. Bigger ones are scored in a worker, through
the queue."""


def in_server_limit() -> int:
    """Bytes of a test split (as float32) that the server scores itself: ``$CAE_EVAL_IN_SERVER``
    when set, else :data:`IN_SERVER_BYTES`."""
    raw = os.environ.get(IN_SERVER_ENV, "").strip()
    try:
        return max(0, int(float(raw))) if raw else IN_SERVER_BYTES
    except ValueError:
        return IN_SERVER_BYTES


def run_in_worker(
    kind: str,
    request: dict[str, Any],
    *,
    payload: bytes | None = None,
    memory_limit: int | None = None,
    timeout_s: float = TIMEOUT_S,
    owner: str | None = None,
) -> Any:
    """Run the step ``kind`` (a key of :data:`STEPS`) on ``request`` (plain JSON) and ``payload``
    (raw bytes, e.g. an upload's file) in a process of its own whose address space is capped at
    ``memory_limit`` bytes (default :func:`step_memory_limit`); its result, plain data. StepError
    with the step's own message when it refuses, and with the cap when it ran past it.

    With an ``owner`` (the server's callers: a student's workspace) the step first waits for the
    server's one queue to admit it (``cae.admission.admit``), reserving its cap from the memory
    budget while it runs; the CLI runs it at once."""
    if kind not in STEPS:
        raise StepError(f"unknown step; use one of {', '.join(STEPS)}. Received: kind={kind!r}")
    limit = step_memory_limit() if memory_limit is None else int(memory_limit)
    if owner is not None:
        from cae.admission import admit

        with admit(owner, ADMISSION_KINDS[kind], limit, STEP_TITLES[kind]):
            return run_in_worker(
                kind, request, payload=payload, memory_limit=limit, timeout_s=timeout_s
            )
    body = payload or b""
    header = {"kind": kind, "request": request, "payload_bytes": len(body)}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(_PROJECT_ROOT), env.get("PYTHONPATH", "")) if part
    )
    try:
        done = subprocess.run(
            [sys.executable, "-m", "cae.offload", str(limit)],
            input=json.dumps(header).encode("utf-8") + b"\n" + body,
            capture_output=True,
            timeout=timeout_s,
            env=env,
            cwd=os.getcwd(),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise StepError(
            f"the {kind} step took longer than {timeout_s:.0f} s and was ended. "
            f"Received: timeout_s={timeout_s}"
        ) from None
    except OSError as error:
        raise StepError(
            f"the {kind} step's process could not start. Received: error={error}"
        ) from None
    answer = _last_answer(done.stdout)
    if answer is None:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        raise StepError(
            f"the {kind} step ended without an answer; it may have run past its memory cap of "
            f"{_gib(limit)} ({ENV_LIMIT}). Received: exit code {done.returncode}, "
            f"last error line {tail[0][:200]!r}"
        )
    if "error" in answer:
        raise StepError(str(answer["error"]))
    from cae.protocol import decode_value

    return decode_value(answer.get("ok"))


def _last_answer(stdout: bytes) -> dict[str, Any] | None:
    """The worker's answer: its last line of standard output that is a JSON object."""
    for line in reversed(stdout.decode("utf-8", "replace").splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and ("ok" in value or "error" in value):
            return value
    return None


def baselines_in_worker(
    recipe: Any,
    components: int,
    root: str | os.PathLike[str] | None = None,
    *,
    memory_limit: int | None = None,
    owner: str | None = None,
) -> dict[str, dict[str, float]]:
    """``cae.baselines.recipe_baselines`` of ``recipe`` (a ``cae.recipe.DataRecipe``):
    ``{"pca": ..., "mean_image": ...}``, PCA with ``components`` components and the mean image,
    computed (or read from the cache in ``<root>/.baselines/``) in a worker process."""
    request = {
        "recipe": recipe.to_dict(),
        "components": components,
        "root": None if root is None else os.fspath(root),
    }
    return run_in_worker("baselines", request, memory_limit=memory_limit, owner=owner)


def upload_summary_in_worker(
    content: bytes,
    filename: str,
    *,
    samples: int = 4,
    array: str | None = None,
    memory_limit: int | None = None,
    owner: str | None = None,
) -> Any:
    """``cae.uploads.upload_summary`` of an upload's bytes, decoded in a worker process: the
    caller gets the summary (counts, shape, ``samples`` images) and never holds the images."""
    from cae.data import DatasetSummary

    request = {"filename": filename, "samples": samples, "array": array}
    values = run_in_worker(
        "upload_summary", request, payload=content, memory_limit=memory_limit, owner=owner
    )
    names = {item.name for item in fields(DatasetSummary)}
    values = {key: value for key, value in values.items() if key in names}
    values["image_shape"] = tuple(values["image_shape"])
    if values.get("class_names") is not None:
        values["class_names"] = tuple(values["class_names"])
    return DatasetSummary(**values)


def evaluation_request(
    run_path: str | os.PathLike[str],
    split_path: str | os.PathLike[str],
    corruption: Any = None,
) -> dict[str, Any]:
    """The request of the ``evaluation`` step: the run at ``run_path`` scored on the test split
    of the run at ``split_path`` (often the same folder); with a ``cae.corruption.Corruption``
    its ``evaluate_corrupted`` scores instead of a ``SplitReport``."""
    request: dict[str, Any] = {"run": os.fspath(run_path), "split": os.fspath(split_path)}
    if corruption is not None:
        request["corruption"] = {"kind": corruption.kind, "strength": corruption.strength}
    return request


class BackgroundStep:
    """A step of a person's page run in the background: queued (its place known at once), then
    run in a worker; the page polls :meth:`status` and takes :attr:`result` when done."""

    def __init__(self, kind: str, request: dict[str, Any], owner: str) -> None:
        """Queue ``kind`` on ``request`` for ``owner`` and start a thread that waits and runs it."""
        from cae.admission import SCHEDULER, PendingStep

        self.kind = kind
        self.state = "queued"
        self.result: Any = None
        self.error = ""
        self.started = 0.0
        self._limit = step_memory_limit()
        self._pending = PendingStep(
            SCHEDULER, owner, ADMISSION_KINDS[kind], self._limit, STEP_TITLES[kind]
        )
        self._thread = threading.Thread(
            target=self._run, args=(request,), name=f"cae-step-{kind}", daemon=True
        )
        self._thread.start()

    def _run(self, request: dict[str, Any]) -> None:
        try:
            with self._pending.wait():
                self.state, self.started = "running", time.monotonic()
                self.result = run_in_worker(self.kind, request, memory_limit=self._limit)
            self.state = "done"
        except Exception as error:  # noqa: BLE001 - the page shows it in one line
            self.error = str(error) or type(error).__name__
            self.state = "failed"

    def place(self) -> tuple[int, float] | None:
        """Its place in the server's queue (1: next) and estimated start in seconds; None once
        it runs."""
        return self._pending.place() if self.state == "queued" else None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for it to end; whether it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()


_BACKGROUND: dict[tuple[str, str, str], BackgroundStep] = {}
_BACKGROUND_LOCK = threading.Lock()
_BACKGROUND_KEEP = 64  # ended steps kept for their pages, the oldest forgotten first


def _step_key(kind: str, request: dict[str, Any], owner: str) -> tuple[str, str, str]:
    return kind, json.dumps(request, sort_keys=True, default=str), owner


def background_step(kind: str, request: dict[str, Any], owner: str) -> BackgroundStep:
    """The background step of ``kind`` on ``request`` for ``owner``: the one already queued,
    running or ended for the same three (a page's reruns and its tabs share it), else a new
    one. A failed step stays failed (its page shows why) until :func:`forget_step`."""
    key = _step_key(kind, request, owner)
    with _BACKGROUND_LOCK:
        step = _BACKGROUND.get(key)
        if step is None:
            step = _BACKGROUND[key] = BackgroundStep(kind, request, owner)
        ended = [k for k, v in _BACKGROUND.items() if v.state in ("done", "failed")]
        for old in ended[: max(0, len(ended) - _BACKGROUND_KEEP)]:
            _BACKGROUND.pop(old, None)
        return step


def forget_step(kind: str, request: dict[str, Any], owner: str) -> None:
    """Forget an ended step, so that asking again runs it again (a page's "Try again")."""
    key = _step_key(kind, request, owner)
    with _BACKGROUND_LOCK:
        step = _BACKGROUND.get(key)
        if step is not None and step.state in ("done", "failed"):
            _BACKGROUND.pop(key)


# ------------------------------------------------------------------------------ the worker's side


def _baselines(request: dict[str, Any], payload: bytes) -> dict[str, Any]:
    from cae.baselines import recipe_baselines
    from cae.recipe import DataRecipe

    recipe = DataRecipe.from_dict(request["recipe"])
    return recipe_baselines(recipe, request["components"], root=request.get("root"))


def _upload_summary(request: dict[str, Any], payload: bytes) -> dict[str, Any]:
    from cae.uploads import upload_summary

    summary = upload_summary(
        payload, request["filename"], samples=request["samples"], array=request.get("array")
    )
    return {item.name: getattr(summary, item.name) for item in fields(summary)}


def _evaluation(request: dict[str, Any], payload: bytes) -> dict[str, Any]:
    from cae.corruption import Corruption
    from cae.evaluation import evaluate_corrupted, split_report
    from cae.store import load_run, run_test_split

    run_path, split_path = Path(request["run"]), Path(request["split"])
    run = load_run(run_path.name, root=run_path.parent)
    images = run_test_split(
        split_path.name, root=split_path.parent
    ).pixels  # as stored: chunks are made float32
    corruption = request.get("corruption")
    if corruption is not None:
        return evaluate_corrupted(run.built, images, Corruption(**corruption))
    return split_report(run.built, images).to_dict()


STEPS = {"baselines": _baselines, "upload_summary": _upload_summary, "evaluation": _evaluation}
"""The steps a worker does, by kind: each takes (request, payload) and returns plain data."""


def _cap_address_space(limit: int) -> None:
    """Cap this process's address space at ``limit`` bytes (Linux ``RLIMIT_AS``; nothing where
    there is none): an allocation past it fails with MemoryError instead of taking the machine."""
    try:
        import resource

        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError):
        return


def _answer(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    """``python -m cae.offload LIMIT``: cap the address space, read one request (and its payload)
    from standard input, do the step, write one answer line."""
    args = sys.argv[1:] if argv is None else argv
    limit = int(args[0]) if args else step_memory_limit()
    _cap_address_space(limit)
    stdin = sys.stdin.buffer
    try:
        header = json.loads(stdin.readline())
        kind = header["kind"]
        payload = stdin.read(int(header.get("payload_bytes") or 0))
        step = STEPS[kind]
    except (ValueError, KeyError, TypeError) as error:
        _answer({"error": f"a step needs one JSON request line. Received: error={error}"})
        return 2
    try:
        result = step(header.get("request") or {}, payload)
    except MemoryError:
        _answer(
            {
                "error": f"the {kind} step needs more memory than its cap of {_gib(limit)} "
                f"({ENV_LIMIT}). Received: memory_limit={limit}"
            }
        )
        return 1
    except (ValueError, OSError) as error:  # refusals: BaselineError, RecipeError, RunError...
        message = str(error)
        if message.endswith("Received: MemoryError"):  # cae.data.out_of_memory: the cap's doing
            cap = f"this step's memory cap of {_gib(limit)} ({ENV_LIMIT})"
            if "this machine's memory" in message:
                message = message.replace("this machine's memory", cap)
            else:
                message = f"the {kind} step ran past {cap}: {message}"
        _answer({"error": message})
        return 1
    from cae.protocol import encode_value

    _answer({"ok": encode_value(result)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
