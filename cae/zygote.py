"""Worker processes forked from a template process that has TensorFlow imported (a "zygote").

A new ``python -m cae.worker`` spends ~3.5 CPU-seconds importing TensorFlow and Keras before it
can train (measured on this 2-core machine; more under load), and a sweep starts one per run. The
template, ``python -m cae.zygote``, imports them and the training code once and then forks one
child per worker asked for: the child wires the pipes it was handed to its standard input, output
and error, takes the caller's environment, working directory and arguments, and runs
``cae.worker.main`` as a fresh process would. The template runs no TensorFlow operation, so no
runtime thread or device is set up before a fork; each child sets up its own.

One template serves a whole process (every :class:`cae.jobs.JobManager` in it): :func:`spawn`
starts it on first use and again if it died. The caller talks to it over a Unix socket pair
(``SOCK_SEQPACKET``, one JSON message each, never pickle): a request carries the child's three
file descriptors (``SCM_RIGHTS``) and ``{"id", "argv", "env", "cwd"}``; the template answers
``{"spawned": id, "pid": p}``, later ``{"exited": p, "code": c}`` (``Popen.returncode``'s
convention: ``-N`` for signal N), and ``{"ready": pid}`` or ``{"broken": reason}`` once after its
imports. A request sent while the template is still importing waits in the socket, so asking for a
worker never blocks the caller.

:func:`spawn` returns ``None`` (the caller starts a plain process instead) where forking is not
safe or not wanted: off Linux, with ``CAE_WORKER_FORK=0``, when the template could not import
TensorFlow, or when an environment variable read at TensorFlow's import (``TF_*``, ``CUDA_*``, ...)
differs from the template's.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

ENV_SWITCH = "CAE_WORKER_FORK"  # "0": start every worker as a plain process
IMPORT_TIME_PREFIXES = ("TF_", "CUDA_", "XLA_", "KERAS_", "OMP_", "MKL_", "LD_", "PYTHON")
"""Environment variables a library reads when it is imported: a child forked from the template
lives with the template's values of these, so a caller whose values differ gets a plain process."""
PRELOADED = ("tensorflow", "keras", "cae.worker", "cae.training", "cae.builder", "cae.store")
"""What the template imports before it forks (the worker's imports, and what a job uses)."""
SPAWN_TIMEOUT_S = 300.0  # how long a caller waits for the pid (the template may still import)
UNKNOWN_EXIT = 255  # the exit code given when the template died before it could report one
_MESSAGE_BYTES = 1 << 20  # one message at most (an environment of a few KiB, in practice)
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------ the caller's side


class ForkedChild:
    """A worker forked by the template: the subset of ``subprocess.Popen`` that ``cae.jobs``
    uses (``pid``, ``poll``, ``wait``, ``kill``, ``stdin``, ``stdout``, ``returncode``)."""

    def __init__(self, template: Template, stdin: IO[str], stdout: IO[str]) -> None:
        """A child not forked yet: its pid comes when the template answers."""
        self._template = template
        self.stdin = stdin
        self.stdout = stdout
        self.returncode: int | None = None
        self.error = ""  # why it was never forked, if so
        self._pid: int | None = None
        self._spawned = threading.Event()
        self._exited = threading.Event()

    # called by the template's reader thread
    def _set_pid(self, pid: int | None) -> None:
        self._pid = pid
        self._spawned.set()
        if pid is None:  # never forked
            self._set_exit(UNKNOWN_EXIT)

    def _set_exit(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
        self._exited.set()

    @property
    def pid(self) -> int | None:
        """The child's process id once the template has forked it (None before, and if never)."""
        return self._pid

    def poll(self) -> int | None:
        """The exit code once the child has ended, else None."""
        if self.returncode is None and self._template.dead and self._spawned.is_set():
            self._probe()
        return self.returncode

    def _probe(self) -> None:
        """The template is gone, and with it the exit codes: is the process still there? An
        orphan goes to the nearest subreaper or to PID 1, which may be this very process (a
        server run as a container's first process): then it is reaped here, with its code;
        a zombie nobody reaps has ended too."""
        if self._pid is None:  # never forked: _set_pid gave it its exit code already
            return
        try:
            done, status = os.waitpid(self._pid, os.WNOHANG)
        except ChildProcessError:  # not ours: its new parent reaps it
            done, status = 0, 0
        if done:
            self._set_exit(os.waitstatus_to_exitcode(status))
            return
        try:
            with open(f"/proc/{self._pid}/stat", encoding="ascii", errors="replace") as stat:
                state = stat.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            state = "gone"
        if state in ("gone", "Z", "X"):
            self._set_exit(UNKNOWN_EXIT)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the child to end; its exit code (``subprocess.TimeoutExpired`` after
        ``timeout`` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(f"forked worker {self._pid}", timeout or 0.0)
            self._exited.wait(0.2 if left is None else min(0.2, left))
        return self.returncode  # type: ignore[return-value]

    def kill(self) -> None:
        """SIGKILL the child (nothing once it has ended)."""
        self._signal(signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM the child (nothing once it has ended)."""
        self._signal(signal.SIGTERM)

    def _signal(self, number: int) -> None:
        self._spawned.wait(SPAWN_TIMEOUT_S)  # a child still to be forked is signalled once it is
        pid = self._pid
        if pid is not None and pid > 0 and self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, number)


class Template:
    """The running template process and the reader thread that follows its answers."""

    def __init__(self) -> None:
        """Start ``python -m cae.zygote``; it imports in the background."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._socket = ours
        env = worker_environment()
        self.environment = import_time_variables(env)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cae.zygote", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # TensorFlow's start-up lines; a failed import says "broken"
            env=env,
            cwd=os.fspath(_PROJECT_ROOT),
        )
        theirs.close()
        self.dead = False
        self.broken: str | None = None  # why it could not import (then it is dead too)
        self._lock = threading.Lock()  # the children's tables
        self._send_lock = threading.Lock()  # one request on the socket at a time
        self._children: dict[int, ForkedChild] = {}  # asked for, not forked yet: by request id
        self._by_pid: dict[int, ForkedChild] = {}  # forked, not ended yet: by pid
        self._next_id = 0
        threading.Thread(target=self._read, name="cae-zygote-reader", daemon=True).start()

    def spawn(
        self, argv: list[str], env: dict[str, str], cwd: str, stderr_fd: int
    ) -> ForkedChild | None:
        """Ask for a child running ``python -m cae.worker *argv`` with its standard error on
        ``stderr_fd``; None when the request could not be sent (the template is gone)."""
        in_read, in_write = os.pipe()
        out_read, out_write = os.pipe()
        stdin = os.fdopen(in_write, "w", encoding="utf-8", buffering=1)
        stdout = os.fdopen(out_read, "r", encoding="utf-8")
        child = ForkedChild(self, stdin, stdout)
        request_id = None
        try:
            with self._lock:
                if self.dead:
                    raise OSError("the template has ended")
                self._next_id += 1
                request_id = self._next_id
                self._children[request_id] = child
            payload = {"id": request_id, "argv": argv, "env": env, "cwd": cwd}
            fds = [in_read, out_write, stderr_fd]
            # its own lock: a send that waits for room must not stop the reader taking answers
            with self._send_lock:
                socket.send_fds(self._socket, [json.dumps(payload).encode("utf-8")], fds)
        except OSError:
            with self._lock:
                self._children.pop(request_id, None)
            for stream in (stdin, stdout):
                stream.close()
            return None
        finally:
            os.close(in_read)  # the child's ends travel in the message (or are not needed)
            os.close(out_write)
        return child

    def _read(self) -> None:
        """Follow the template's answers until its socket closes."""
        while True:
            try:
                data = self._socket.recv(_MESSAGE_BYTES)
            except OSError:
                data = b""
            if not data:
                break
            try:
                message = json.loads(data)
            except ValueError:
                continue
            with self._lock:
                if "spawned" in message:
                    child = self._children.pop(message["spawned"], None)
                    if child is not None:
                        child.error = str(message.get("error", ""))
                        pid = message.get("pid")
                        if isinstance(pid, int):
                            self._by_pid[pid] = child
                        child._set_pid(pid if isinstance(pid, int) else None)
                elif "exited" in message:
                    child = self._by_pid.pop(int(message["exited"]), None)
                    if child is not None:
                        child._set_exit(int(message.get("code", UNKNOWN_EXIT)))
                elif "broken" in message:
                    self.broken = str(message["broken"])
        with self._lock:
            self.dead = True
            pending = list(self._children.values())
            self._children.clear()
        for child in pending:  # asked for, never forked: their pipes close with the template
            child.error = f"the worker template ended before forking it ({self.broken or 'exited'})"
            child._set_pid(None)
        with contextlib.suppress(OSError):
            self._socket.close()
        with contextlib.suppress(Exception):
            self.process.wait(5)

    def close(self, wait_s: float = 0.0) -> None:
        """Let the template exit (its children live on: each ends with its job), waiting up to
        ``wait_s`` seconds for it."""
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        if wait_s > 0:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(wait_s)


_shared: Template | None = None
_shared_lock = threading.Lock()
_broken: str | None = None


def worker_environment() -> dict[str, str]:
    """The environment a worker gets: the caller's, with the project on ``PYTHONPATH``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(_PROJECT_ROOT), env.get("PYTHONPATH", "")) if part
    )
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def import_time_variables(env: dict[str, str]) -> dict[str, str]:
    """The variables of ``env`` that a library reads when it is imported (a forked child keeps
    the template's values of these)."""
    return {key: value for key, value in env.items() if key.startswith(IMPORT_TIME_PREFIXES)}


def enabled() -> bool:
    """True where workers may be forked from the template (Linux, not switched off)."""
    return (
        sys.platform.startswith("linux")
        and hasattr(os, "fork")
        and hasattr(socket, "send_fds")
        and os.environ.get(ENV_SWITCH, "1") != "0"
    )


def spawn_worker(
    argv: list[str], stderr: IO[bytes], env: dict[str, str] | None = None
) -> ForkedChild | None:
    """A worker (``python -m cae.worker *argv``) forked from this process's template, its
    standard error written to ``stderr``, with ``env`` (default: :func:`worker_environment`);
    None when a plain process must be started instead (see the module's docstring)."""
    global _shared, _broken
    if not enabled() or _broken is not None:
        return None
    env = worker_environment() if env is None else env
    with _shared_lock:
        template = _shared
        if template is not None and template.dead:
            if template.broken is not None:
                _broken = template.broken
                return None
            template = None
        if template is None:
            template = _shared = Template()
            atexit.register(template.close, 5.0)
    if import_time_variables(env) != template.environment:
        return None
    return template.spawn(argv, env, os.getcwd(), stderr.fileno())


def close_shared() -> None:
    """End this process's template, if one runs (a new one starts on the next spawn)."""
    global _shared
    with _shared_lock:
        template, _shared = _shared, None
    if template is not None:
        template.close()


# ---------------------------------------------------------------------- the template's side


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        sock.send(json.dumps(message).encode("utf-8"))


def _reap(sock: socket.socket) -> None:
    """Report every child that has ended."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(sock, {"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def _name_process(name: bytes) -> None:
    """Set this process's short name (Linux ``prctl(PR_SET_NAME)``; nothing elsewhere)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(15, ctypes.c_char_p(name[:15]), 0, 0, 0)


def _become_worker(request: dict[str, Any], fds: list[int], closing: list[int]) -> None:
    """In the forked child: take the request's pipes, environment and arguments, run the worker,
    exit (never returns)."""
    code = 1
    try:
        for fd in closing:
            with contextlib.suppress(OSError):
                os.close(fd)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for target, fd in zip((0, 1, 2), fds, strict=True):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115 - for the process's life
        os.environ.clear()
        os.environ.update(request["env"])
        tempfile.tempdir = None  # the template's, cached: this worker's environment says where
        os.chdir(request["cwd"])
        sys.argv = ["cae.worker", *request["argv"]]
        _name_process(b"cae-worker")  # top and ps -o comm tell it from its template
        import numpy as np

        np.random.seed()  # the template's state would be every child's otherwise
        from cae import worker

        code = worker.main()
    except BaseException:  # noqa: BLE001 - the child must never return into the template's loop
        import traceback

        traceback.print_exc()
    finally:
        try:
            from cae.quiet import exit_now  # imported by the template already

            exit_now(code)  # AutoGraph's files go with the atexit handlers; no teardown
        finally:
            os._exit(code)


def serve(sock: socket.socket) -> int:
    """The template's loop: fork a worker per request, report ends, until the socket closes."""
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    while True:
        _reap(sock)
        try:
            readable, _, _ = select.select([sock, wake_read], [], [])
        except InterruptedError:
            continue
        if wake_read in readable:
            with contextlib.suppress(BlockingIOError, OSError):
                os.read(wake_read, 4096)
        if sock not in readable:
            continue
        try:
            data, fds, _, _ = socket.recv_fds(sock, _MESSAGE_BYTES, 3)
        except OSError:
            data, fds = b"", []
        if not data:
            break  # the caller has gone: children live on, each until its job ends
        request: Any = None
        try:
            request = json.loads(data)
            if len(fds) != 3:
                raise ValueError(f"expected 3 file descriptors. Received: {len(fds)}")
        except ValueError as error:
            request_id = request.get("id") if isinstance(request, dict) else None
            _send(sock, {"spawned": request_id, "pid": None, "error": str(error)})
            for fd in fds:
                os.close(fd)
            continue
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _become_worker(request, fds, [sock.fileno(), wake_read, wake_write])
        for fd in fds:
            os.close(fd)
        _send(sock, {"spawned": request.get("id"), "pid": pid})
    return 0


def main() -> int:
    """``python -m cae.zygote FD``: import, say ready (or broken), serve until FD closes."""
    sock = socket.socket(fileno=int(sys.argv[1]))
    try:
        import importlib

        from cae.quiet import import_keras_without_pandas

        import_keras_without_pandas()  # workers train arrays, never DataFrames
        for name in PRELOADED:
            importlib.import_module(name)
    except BaseException as error:  # noqa: BLE001 - told to the caller, who starts plain workers
        _send(sock, {"broken": f"{type(error).__name__}: {error}"})
        return 1
    _name_process(b"cae-zygote")
    _send(sock, {"ready": os.getpid()})
    return serve(sock)


if __name__ == "__main__":
    os._exit(main())  # skip TensorFlow's slow interpreter teardown
