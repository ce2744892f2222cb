"""Import TensorFlow without its start-up lines on stderr, for the command line.

TensorFlow 2.21 writes these to file descriptor 2 from C++ whatever ``TF_CPP_MIN_LOG_LEVEL`` says
(measured on this CPU-only machine with the level at 2, which ``cae`` sets by default)::

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 ... port.cc:153] oneDNN custom operations are on. ...          (twice, with the two lines
    I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
    E0000 ... cuda_platform.cc:52] failed call to cuInit: ... (303)       (at the first device query)
    E0000 ... util.cc:131] oneDNN supports DT_INT32 only on platforms with AVX-512. ...  (first int32
                                                                          transpose, in training)

So fd 2 goes to a temporary file while TensorFlow and Keras are imported and its runtime starts
(a device query and one tiny int32 op, which print the last two lines once per process), and comes
back before any command runs: warnings and errors from the command itself are never hidden. If the
import fails, what was captured is written back before the exception propagates. ``CAE_DEBUG=1``
hides nothing.

:func:`exit_now` ends a process that has TensorFlow loaded as a normal exit would, less the
interpreter's slow teardown.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import NoReturn

DEBUG_ENV = "CAE_DEBUG"  # set (to anything non-empty) to see everything TensorFlow prints


def import_keras_without_pandas() -> None:
    """Import Keras (and with it TensorFlow) as if pandas were not installed, for the processes
    that train and score arrays only: the command line, the job workers and their template.

    Keras imports pandas for one reason, to accept DataFrames (in a try/except, in
    ``keras.src.trainers.data_adapters.array_slicing``: without pandas it takes arrays as
    before), and that import was 0.4 of Keras's 2.8 CPU-s here (``import keras`` medians of 3:
    2.81 vs 2.40 user-s). pandas stays importable afterwards; a process that has imported it
    already (a Streamlit server) or Keras already changes nothing."""
    if "keras" in sys.modules or "pandas" in sys.modules:
        import keras  # noqa: F401

        return
    sys.modules["pandas"] = None  # type: ignore[assignment] - "import pandas" raises ImportError
    try:
        import keras  # noqa: F401
    finally:
        if "pandas" in sys.modules and sys.modules["pandas"] is None:
            del sys.modules["pandas"]


def _start_tensorflow() -> None:
    import_keras_without_pandas()  # its import logs too
    import tensorflow as tf

    tf.config.list_physical_devices()  # probes CUDA: cuInit's error line
    if "TF_CONFIG" not in os.environ:
        # Starts the eager runtime. Not under TF_CONFIG: multi-worker collective ops must be
        # configured before it starts ("Collective ops must be configured at program startup").
        tf.transpose(tf.zeros((1, 1), tf.int32))  # oneDNN's once-per-process DT_INT32 note


def import_tensorflow_quietly() -> None:
    """Import tensorflow and keras and start TensorFlow with its stderr start-up lines captured."""
    if "tensorflow" in sys.modules:
        return  # too late to hide anything
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no C++ info or warning lines later
    if os.environ.get(DEBUG_ENV):
        _start_tensorflow()  # the same start, with every line shown
        return
    _captured(_start_tensorflow)


def first_op_quietly() -> None:
    """Run one tiny int32 op with fd 2 captured, after a multi-worker strategy has configured
    TensorFlow's runtime (before that, running an op breaks the strategy's collectives): the
    oneDNN note it prints once per process is not ours to print."""
    if os.environ.get(DEBUG_ENV):
        return

    def first_op() -> None:
        import tensorflow as tf

        tf.transpose(tf.zeros((1, 1), tf.int32))

    _captured(first_op)


_quiet_until_exit = False  # set once quiet_until_exit() has diverted file descriptor 2


def quiet_until_exit() -> None:
    """From now until the process ends, TensorFlow's C++ log lines (file descriptor 2) go to
    ``os.devnull`` while Python's ``sys.stderr`` still reaches the terminal, through a copy of the
    descriptor. For the last moments of a multi-worker training: the threads of TensorFlow's
    coordination service log at any time, down to the interpreter's exit (a peer that left, the
    leader gone: "Failed to send RPC to coordination service ..."), after the command's last
    line otherwise. Call it once nothing of TensorFlow's is left to say. ``CAE_DEBUG=1`` hides
    nothing."""
    global _quiet_until_exit
    if os.environ.get(DEBUG_ENV) or _quiet_until_exit:
        return
    _quiet_until_exit = True
    sys.stderr.flush()
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    errors = getattr(sys.stderr, "errors", None) or "backslashreplace"
    # the process's stderr from now on: open until the process ends
    sys.stderr = open(os.dup(2), "w", encoding=encoding, errors=errors, buffering=1)  # noqa: SIM115
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
    finally:
        os.close(null)


def exit_now(code: int) -> NoReturn:
    """End this process with ``code``: the ``atexit`` handlers run, as at a normal exit
    (TensorFlow's AutoGraph deletes there the source files it wrote to the temporary folder, 4 a
    training job), but not the interpreter's teardown (~1 s with TensorFlow loaded)."""
    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


_PYTHON_WARNING = re.compile(r"^\S.*:\d+: \w*Warning: ")


@contextlib.contextmanager
def tensorflow_logs_captured() -> Iterator[None]:
    """While the block runs, TensorFlow's own C++ log lines (``E0000 ... ring_alg.cc:291]
    Aborting RingReduce ...`` and their multi-line gRPC details) do not reach the terminal: the
    error that ends the block says it in one line. Python warnings written meanwhile (``file:line:
    SomeWarning: ...`` and their source line) are written out after the block. ``CAE_DEBUG=1``
    hides nothing."""
    if os.environ.get(DEBUG_ENV):
        yield
        return
    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept, keeping = [], False
            for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True):
                if _PYTHON_WARNING.match(line):
                    keeping = True
                elif not line.startswith("  "):
                    keeping = False
                if keeping:
                    kept.append(line)
            if kept:
                _write_stderr("".join(kept).encode("utf-8"))


def _captured(work: Callable[[], None]) -> None:
    """Run ``work`` with file descriptor 2 going to a temporary file; what it wrote is shown only
    if it fails."""
    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(captured.fileno(), 2)
            try:
                work()
            finally:
                sys.stderr.flush()  # Python-level writes made meanwhile go to the file too
                os.dup2(saved, 2)
        except KeyboardInterrupt:
            raise
        except BaseException:
            captured.seek(0)
            _write_stderr(captured.read())  # what TensorFlow said before failing is the error
            raise
        finally:
            os.close(saved)


def _write_stderr(data: bytes) -> None:
    sys.stderr.flush()
    view = memoryview(data)
    while view:
        view = view[os.write(2, view) :]
