"""Run one training job on a Ray cluster: ``python -m cae.ray_dispatch``, started by ``cae.jobs``
in place of a worker when ``CAE_CLUSTER`` is set (issue 29).

The server never imports Ray. This process speaks the worker's JSON-lines protocol
(``cae.worker``, ``cae.protocol``) on its standard input and output, exactly as a worker does: it
connects to the cluster (``ray.init(address=CAE_CLUSTER)``), says ``ready``, reads one ``train``
command, and runs the job as a Ray actor (:class:`JobRunner`) placed by Ray from declared
resources: ``num_cpus`` (the command's ``resources`` or ``CAE_CLUSTER_CPUS``, default 1),
``num_gpus`` (likewise, ``CAE_CLUSTER_GPUS``, default 0) and ``memory`` (the preflight estimate).
The actor starts ``python -m cae.worker`` on its node and relays its lines; this process relays
them to the server, and the server's ``stop`` to the worker, so progress, stop and save behave as
with the local backend. Retries are off (``max_restarts=0``, ``max_task_retries=0``): when the
actor's node or process is lost, the job ends with one line naming the epoch it had reached,
and is never trained again silently.

The run folder is the server's runs folder, reached at the same path on every node (shared
storage; on one machine it is the same folder): the worker saves there as it does locally. An
upload a node cannot see at its path is shipped once per node by its content hash through Ray's
object store and cached in ``<tmp>/cae-cluster-uploads/``. ``train.json`` records
``"backend": "ray"`` with the node's id and address and when the node started the job
(``started``; the run's ``created`` is when it was saved). Only this module imports Ray.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

CLUSTER_VARIABLE = "CAE_CLUSTER"
CPUS_VARIABLE = "CAE_CLUSTER_CPUS"
GPUS_VARIABLE = "CAE_CLUSTER_GPUS"
CONNECT_TIMEOUT = 120.0  # seconds ray.init may take (a loaded machine connects slowly)
POLL_SECONDS = 0.5  # how long one read of the actor's lines waits
CODE_ROOT = Path(__file__).resolve().parent.parent  # the checkout every node runs (same path)
UPLOAD_CACHE = "cae-cluster-uploads"
# passed from the server's environment to the worker on the node (oneDNN, threads, test hooks)
FORWARDED_PREFIXES = ("CAE_", "TF_", "OMP_", "KERAS_")
NOT_FORWARDED = (CLUSTER_VARIABLE, "CAE_BACKEND")


def cluster_address(environ: Any = None) -> str | None:
    """The cluster address in ``CAE_CLUSTER`` (what ``ray.init(address=...)`` takes), or None
    when unset or blank: then jobs run on this machine."""
    value = (os.environ if environ is None else environ).get(CLUSTER_VARIABLE, "")
    return value.strip() or None


def dispatcher_command() -> list[str]:
    """The command line that starts a dispatcher (what ``cae.jobs`` runs instead of a worker)."""
    return [sys.executable, "-m", "cae.ray_dispatch"]


def resources_for(job: dict[str, Any], memory_bytes: int | None) -> dict[str, Any]:
    """The Ray resources a job declares: ``num_cpus`` and ``num_gpus`` from the command's
    ``resources`` (else ``CAE_CLUSTER_CPUS``, default 1, and ``CAE_CLUSTER_GPUS``, default 0)
    and ``memory`` from the estimate; ValueError naming a bad value."""
    asked = job.get("resources") or {}
    values: dict[str, Any] = {}
    for key, variable, default in (
        ("num_cpus", CPUS_VARIABLE, 1.0),
        ("num_gpus", GPUS_VARIABLE, 0.0),
    ):
        raw = asked.get(key, os.environ.get(variable, default))
        try:
            number = float(raw)
        except (TypeError, ValueError):
            number = -1.0
        if not number >= 0:
            raise ValueError(
                f"{key} must be a number >= 0 ({variable} or the job's resources). "
                f"Received: {key}={raw!r}"
            )
        values[key] = number
    if memory_bytes:
        values["memory"] = int(memory_bytes)
    return values


# ------------------------------------------------------------------------- on the node


class JobRunner:
    """The Ray actor of one job: a ``python -m cae.worker`` child on its node, whose lines it
    buffers for the dispatcher. Standard library only, so a node needs no more than the
    checkout and Ray; its methods may run at once (a threaded actor)."""

    def __init__(self, code_root: str, env: dict[str, str]) -> None:
        """Start the worker (it dies with this actor: a lost node ends the job, never orphans)."""
        import queue
        import subprocess
        import tempfile

        import ray

        context = ray.get_runtime_context()
        self.node_id = context.get_node_id()
        self.address = ray.util.get_node_ip_address()
        self._lines: Any = queue.Queue()
        self._log = tempfile.TemporaryFile(prefix="cae-ray-worker-", suffix=".log")  # noqa: SIM115
        started = datetime.now().astimezone().isoformat()  # with created: the run's interval
        where = json.dumps(
            {"backend": "ray", "node_id": self.node_id, "node": self.address, "started": started}
        )
        python_path = os.pathsep.join(
            part for part in (code_root, os.environ.get("PYTHONPATH", "")) if part
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cae.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env={**os.environ, **env, "PYTHONPATH": python_path, "CAE_BACKEND": where},
            cwd=code_root,
            text=True,
            encoding="utf-8",
            bufsize=1,
            preexec_fn=_die_with_parent,
        )
        self._write_lock = threading.Lock()
        threading.Thread(target=self._pump, name="cae-ray-lines", daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def where(self) -> dict[str, Any]:
        """The node this job runs on: id, address, and the pids of this actor and its worker."""
        return {
            "node_id": self.node_id,
            "node": self.address,
            "actor_pid": os.getpid(),
            "worker_pid": self.process.pid,
        }

    def local_upload(self, path: str | None, sha256: str | None, suffix: str) -> str | None:
        """The path this node reads the job's upload from: ``path`` when it is here, else the
        node's cached copy for ``sha256`` (None when there is none yet: ship it)."""
        import tempfile

        if path and os.path.isfile(path):
            return path
        if not sha256:
            return None
        cached = Path(tempfile.gettempdir()) / UPLOAD_CACHE / f"{sha256}{suffix}"
        return os.fspath(cached) if cached.is_file() else None

    def store_upload(self, data: bytes, sha256: str, suffix: str) -> str:
        """Keep a shipped upload in the node's cache under its content hash; its path."""
        import hashlib
        import tempfile

        digest = hashlib.sha256(data).hexdigest()
        if digest != sha256:
            raise ValueError(
                f"the shipped upload does not match its hash. Received: sha256={digest!r}, "
                f"expected={sha256!r}"
            )
        folder = Path(tempfile.gettempdir()) / UPLOAD_CACHE
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{sha256}{suffix}"
        partial = target.with_name(f".{target.name}.{os.getpid()}.part")
        partial.write_bytes(data)
        os.replace(partial, target)
        return os.fspath(target)

    def send(self, line: str) -> bool:
        """Write one command line to the worker; False once it no longer reads."""
        with self._write_lock:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write(line)
                self.process.stdin.flush()
                return True
            except (BrokenPipeError, OSError, ValueError):
                return False

    def close_input(self) -> None:
        """Close the worker's input: it stops and saves its completed epochs (the server left)."""
        with self._write_lock, contextlib.suppress(OSError, ValueError):
            if self.process.stdin is not None:
                self.process.stdin.close()

    def read(self, timeout: float) -> tuple[list[str], bool]:
        """The worker's lines since the last read (waiting up to ``timeout`` s for the first),
        and True once its output has closed."""
        import queue

        lines: list[str] = []
        try:
            item = self._lines.get(timeout=timeout)
            while True:
                if item is None:
                    return lines, True
                lines.append(item)
                item = self._lines.get_nowait()
        except queue.Empty:
            return lines, False

    def finish(self, timeout: float) -> tuple[int, str]:
        """Wait for the worker to exit (killing it after ``timeout`` s): its exit code and the
        last lines of its standard error."""
        import subprocess

        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        try:
            self._log.seek(0)
            text = self._log.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            text = ""
        kept = [line.strip() for line in text.splitlines() if line.strip()]
        return code, " | ".join(kept[-4:])


def _die_with_parent() -> None:
    """In the worker child, before it runs: be killed when the actor that started it dies."""
    with contextlib.suppress(Exception):
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG


# ------------------------------------------------------------------------- the dispatcher


def _forwarded_environment() -> dict[str, str]:
    return {
        key: value
        for key, value in os.environ.items()
        if key.startswith(FORWARDED_PREFIXES) and key not in NOT_FORWARDED
    }


def _memory_estimate(request: Any) -> int | None:
    """The job's estimated memory in bytes (cae.preflight), or None when it cannot be told."""
    from cae.preflight import preflight

    try:
        check = preflight(
            request.spec, request.config, num_train=request.data.limit, with_fixes=False
        )
    except Exception:  # noqa: BLE001 - no estimate: Ray places it by CPUs alone
        return None
    return int(check.memory_bytes or 0) or None


def connect(address: str) -> Any:
    """Connect this process to the cluster at ``address``; ``ray`` (RuntimeError with one line
    when it cannot be reached)."""
    try:
        import ray
    except ImportError as error:
        raise RuntimeError(
            "CAE_CLUSTER is set but Ray is not installed here: pip install -r "
            f"requirements-cluster.txt, or unset CAE_CLUSTER. Received: CAE_CLUSTER={address!r}"
        ) from error
    import logging

    check_address(address)
    failure: list[BaseException] = []

    def init() -> None:
        try:
            ray.init(
                address=address,
                logging_level=logging.ERROR,
                log_to_driver=False,
                include_dashboard=False,
            )
        except BaseException as error:  # noqa: BLE001 - reported below, in one line
            failure.append(error)

    thread = threading.Thread(target=init, name="cae-ray-init", daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT)
    if thread.is_alive():  # Ray retries an address that does not answer for minutes
        raise RuntimeError(
            f"the Ray cluster did not answer within {CONNECT_TIMEOUT:.0f} s. "
            f"Received: CAE_CLUSTER={address!r}"
        )
    if failure:
        raise RuntimeError(
            f"cannot reach the Ray cluster ({_first_line(failure[0])}). "
            f"Received: CAE_CLUSTER={address!r}"
        ) from failure[0]
    return ray


def check_address(address: str, timeout: float = 10.0) -> None:
    """Raise RuntimeError (one line) when ``address`` is not ``auto``, ``HOST:PORT`` or
    ``ray://HOST:PORT``, or when nothing listens at its host and port."""
    if address == "auto":
        return
    rest = address.split("://", 1)[1] if "://" in address else address
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RuntimeError(
            "CAE_CLUSTER must be auto, HOST:PORT or ray://HOST:PORT (what ray.init takes). "
            f"Received: CAE_CLUSTER={address!r}"
        )
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise RuntimeError(
            f"no Ray cluster answers at {host}:{port} ({reason}): start one (docs/cluster.md) "
            f"or unset CAE_CLUSTER. Received: CAE_CLUSTER={address!r}"
        ) from error


class Dispatch:
    """One job on the cluster, from the ``train`` command to ``end``."""

    def __init__(self, ray: Any, channel: Any) -> None:
        """Run with the connected ``ray`` module, writing protocol lines to ``channel``."""
        self.ray = ray
        self.channel = channel
        self.actor: Any = None
        self.where: dict[str, Any] = {}
        self.epoch = 0
        self.epochs = 0
        self.stopped = threading.Event()
        self.input_closed = threading.Event()
        self._pending: list[str] = []  # commands that came before the actor was up
        self._lock = threading.Lock()

    def _status(self, message: str, epochs: int) -> None:
        """A ``starting`` progress line with ``message`` (what the page shows meanwhile)."""
        from cae.progress import Progress
        from cae.protocol import progress_to_message

        self.channel.send(
            progress_to_message(Progress(state="starting", epochs=epochs, message=message))
        )

    def forward(self, line: str) -> None:
        """Pass a server command (``stop``) to the worker, or keep it until the actor is up."""
        with contextlib.suppress(ValueError, AttributeError):
            if json.loads(line).get("cmd") == "stop":
                self.stopped.set()
        with self._lock:
            actor = self.actor
            if actor is None:
                self._pending.append(line)
                return
        actor.send.remote(line)

    def close_input(self) -> None:
        """The server closed our input: close the worker's (it stops and saves)."""
        self.input_closed.set()
        with self._lock:
            actor = self.actor
        if actor is not None:
            actor.close_input.remote()

    def run(self, job: dict[str, Any]) -> int:
        """Place the job, relay its lines until ``end``; the exit code."""
        from cae.request import TrainRequest

        request = TrainRequest.from_dict(job["request"])
        resources = resources_for(job, _memory_estimate(request))
        self.epochs = request.config.epochs
        text = f"{resources['num_cpus']:g} CPU"
        if resources.get("num_gpus"):
            text += f", {resources['num_gpus']:g} GPU"
        if resources.get("memory"):
            text += f", {resources['memory'] / 2**20:.0f} MiB"
        self._status(f"Waiting for the Ray cluster to place the job ({text}).", self.epochs)
        ray = self.ray
        runner = ray.remote(max_restarts=0, max_task_retries=0, max_concurrency=4)(JobRunner)
        actor = runner.options(**resources).remote(os.fspath(CODE_ROOT), _forwarded_environment())
        placed = actor.where.remote()
        while not ray.wait([placed], timeout=POLL_SECONDS)[0]:
            if self.stopped.is_set() or self.input_closed.is_set():  # no node has room yet
                with contextlib.suppress(Exception):
                    ray.kill(actor)
                return self._stopped_unplaced(text)
        try:
            self.where = ray.get(placed)
        except Exception as error:  # noqa: BLE001 - reported as one line
            return self._lost(error, started=False)
        job = self._ship_upload(actor, job, request)
        with self._lock:
            self.actor = actor
            pending, self._pending = self._pending, []
        actor.send.remote(json.dumps(job, separators=(",", ":")) + "\n")
        for line in pending:
            actor.send.remote(line)
        if self.input_closed.is_set():
            actor.close_input.remote()
        return self._relay(actor)

    def _stopped_unplaced(self, resources: str) -> int:
        """End a job stopped while it waited for a node with room: nothing was trained."""
        from cae.progress import Progress
        from cae.protocol import progress_to_message

        message = f"Stopped before the Ray cluster had a node with room for it ({resources})."
        final = Progress(state="stopped", epochs=self.epochs, message=message)
        self.channel.send(progress_to_message(final))
        self.channel.send({"kind": "end"})
        return 0

    def _ship_upload(self, actor: Any, job: dict[str, Any], request: Any) -> dict[str, Any]:
        """The job with its upload path as the node reads it: shipped by content hash when the
        node cannot see the server's file."""
        data = request.data
        if not data.upload_path:
            return job
        suffix = Path(data.upload_path).suffix
        ray = self.ray
        local = ray.get(actor.local_upload.remote(data.upload_path, data.upload_sha256, suffix))
        if local is None:
            payload = Path(data.upload_path).read_bytes()
            local = ray.get(actor.store_upload.remote(payload, data.upload_sha256, suffix))
        if local == data.upload_path:
            return job
        recipe = {**job["request"]["data"], "upload_path": local}
        return {**job, "request": {**job["request"], "data": recipe}}

    def _relay(self, actor: Any) -> int:
        ray = self.ray
        while True:
            try:
                lines, ended = ray.get(actor.read.remote(POLL_SECONDS))
            except Exception as error:  # noqa: BLE001 - the actor, its process or node is gone
                return self._lost(error, started=True)
            for line in lines:
                self._note(line)
                self.channel.write_line(line)
            if ended:
                break
        with contextlib.suppress(Exception):
            code, tail = ray.get(actor.finish.remote(30.0))
            if code != 0 and tail:
                print(f"worker on {self.where.get('node')}: {tail}", file=sys.stderr)
        with contextlib.suppress(Exception):
            ray.kill(actor)
        return 0

    def _note(self, line: str) -> None:
        """Follow the epoch the job has reached (for the line that reports a lost node)."""
        if '"progress"' not in line[:40]:
            return
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            message = json.loads(line)
            self.epoch = int(message.get("epoch") or 0)
            self.epochs = int(message.get("epochs") or self.epochs)

    def _lost(self, error: Exception, *, started: bool) -> int:
        """End the job in one line: where it was lost and that it is not retried."""
        node = self.where.get("node") or "?"
        alive = self._node_alive(self.where.get("node_id"))
        what = f"its Ray worker on node {node} was lost" if alive else f"node {node} lost"
        if not started:
            what = f"the Ray cluster could not start the job ({_first_line(error)})"
            message = f"{what}; nothing was trained. Received: {type(error).__name__}"
        else:
            message = (
                f"{what} at epoch {self.epoch} of {self.epochs}; not retried (retries are off), "
                "runs saved before are kept. "
                f"Received: {type(error).__name__}"
            )
        return self.channel.fail(message)

    def _node_alive(self, node_id: str | None) -> bool:
        if not node_id:
            return False
        try:
            for node in self.ray.nodes():
                if node.get("NodeID") == node_id:
                    return bool(node.get("Alive"))
        except Exception:  # noqa: BLE001 - cannot tell: say the node is lost
            return False
        return False


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:200]


def main() -> int:
    """Connect, say ready, run one job on the cluster, relay it, exit."""
    from cae.worker import serve_one_job, take_stdout

    channel = take_stdout()  # whatever Ray prints goes to stderr
    address = cluster_address()
    if address is None:
        return channel.fail("CAE_CLUSTER is not set. Received: ''", 2)
    try:
        ray = connect(address)
    except RuntimeError as error:
        problem = str(error)
        return serve_one_job(channel, lambda job: channel.fail(problem))
    return serve_one_job(channel, lambda job: dispatch_job(ray, channel, job))


def dispatch_job(ray: Any, channel: Any, job: dict[str, Any]) -> int:
    """Run the job of a ``train`` command on the cluster, passing the server's commands on to
    it meanwhile, then leave the cluster; the exit code."""
    dispatch = Dispatch(ray, channel)

    def listen() -> None:
        for command in sys.stdin:
            dispatch.forward(command if command.endswith("\n") else command + "\n")
        dispatch.close_input()

    threading.Thread(target=listen, name="cae-dispatch-commands", daemon=True).start()
    try:
        return dispatch.run(job)
    except Exception as error:  # noqa: BLE001 - one line for the page
        return channel.fail(f"{type(error).__name__}: {_first_line(error)}")
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()


if __name__ == "__main__":
    code = main()
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    os._exit(code)  # every line is written; a Ray thread still connecting must not hold us
