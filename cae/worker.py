"""One training job in its own process: ``python -m cae.worker``, driven by ``cae.jobs``.

Why a process: TensorFlow keeps what it traced for every model for the life of a process (about
12 MiB per short training here, measured with bench/soak_training.py), and
``keras.backend.clear_session()`` cannot be called while other sessions use Keras. A process per
job returns all of it to the system when the job ends. It also keeps a crash or an out-of-memory
kill to the job, and training no longer competes with the pages for the server's GIL.

The protocol is JSON lines (never pickle). The worker imports TensorFlow (a spare started with
``--warm-up`` also trains a tiny model once, so the job finds TensorFlow set up), then writes
``{"kind": "ready"}``; it reads one ``{"cmd": "train", "request": ...}`` line from its standard input
(a ``cae.request.TrainRequest``: the worker loads the images from its data recipe); it writes
``progress`` lines, then ``result``, then ``saved``, ``staged`` or ``save_error`` (when there is a
model), and last ``end``; then it exits. ``{"cmd": "stop"}`` asks training to stop after the
current batch. If its standard input closes (the server went away) it stops training and saves the
completed epochs as a run, so nothing trained is lost. Anything else the process prints goes to
standard error.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import Callable
from typing import IO, Any

import numpy as np

from cae.progress import Progress
from cae.protocol import PROTOCOL_VERSION, progress_to_message
from cae.quiet import exit_now, import_keras_without_pandas


class Channel:
    """Writes protocol messages, one JSON object per line, from any thread (the worker's, and
    the Ray dispatcher's, ``cae.ray_dispatch``, which passes the node's worker's lines on)."""

    def __init__(self, stream: IO[str]) -> None:
        """Write to ``stream`` (the process's original standard output)."""
        self._stream = stream
        self._lock = threading.Lock()
        self.broken = False

    def send(self, message: dict[str, Any]) -> None:
        """Write one message; once the reader has gone, messages are dropped silently."""
        self.write_line(json.dumps(message, separators=(",", ":")))

    def write_line(self, line: str) -> None:
        """Write one line as it is (a message already encoded); dropped once the reader has
        gone."""
        with self._lock:
            if self.broken:
                return
            try:
                self._stream.write(line if line.endswith("\n") else line + "\n")
                self._stream.flush()
            except (BrokenPipeError, OSError, ValueError):
                self.broken = True

    def fail(self, message: str, code: int = 1) -> int:
        """Send an ``error`` line with ``message``, then ``end``; returns ``code`` (the exit
        code to leave with)."""
        self.send({"kind": "error", "message": message})
        self.send({"kind": "end"})
        return code


def take_stdout() -> Channel:
    """The protocol's channel on this process's standard output; anything else the process (or
    a library) prints goes to standard error from now on, so it cannot corrupt the protocol."""
    channel = Channel(os.fdopen(os.dup(1), "w", encoding="utf-8"))
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return channel


def serve_one_job(channel: Channel, run: Callable[[dict[str, Any]], int]) -> int:
    """Say ``ready``, read one ``train`` command from standard input and return ``run(job)``:
    0 when the input closes first (a spare that was never used), 2 (after an error line) when
    the line is not a train command."""
    channel.send({"kind": "ready", "pid": os.getpid(), "protocol": PROTOCOL_VERSION})
    line = sys.stdin.readline()
    if not line.strip():
        return 0  # the server went away (or kept us as a spare and shut down) before a job came
    try:
        job = json.loads(line)
        if job.get("cmd") != "train":
            raise ValueError(f"expected a train command. Received: cmd={job.get('cmd')!r}")
    except (ValueError, AttributeError) as error:
        return channel.fail(f"bad job line: {error}", 2)
    return run(job)


class ProgressSender:
    """The progress sink ``train`` calls: sends each report, previews only when they change."""

    def __init__(self, channel: Channel) -> None:
        """Send over ``channel``."""
        self._channel = channel
        self._previous: Progress | None = None

    def __call__(self, progress: Progress) -> None:
        """Send one report."""
        self._channel.send(progress_to_message(progress, self._previous))
        self._previous = progress


# ------------------------------------------------------------------------- the job


def run_job(
    job: dict[str, Any],
    channel: Channel,
    should_stop: Callable[[], bool],
    parent_gone: Callable[[], bool],
) -> int:
    """Train the request of a ``train`` command, report over ``channel``, save; exit code."""
    from cae.errors import error_line
    from cae.onednn import turn_off_for
    from cae.recipe import TestSplit, load_recipe
    from cae.request import TrainRequest
    from cae.store import save_trained, staging_dir
    from cae.training import train

    try:
        request = TrainRequest.from_dict(job["request"])
        turn_off_for([request.spec])  # TensorFlow is imported: refused if oneDNN would crash
        dataset = load_recipe(request.data)
        result = train(
            request.spec,
            dataset,
            request.config,
            progress=ProgressSender(channel),
            should_stop=should_stop,
        )
    except Exception as error:  # noqa: BLE001 - reported to the server, which shows it
        return channel.fail(error_line(error, prefix=""))
    test_split = TestSplit.of(dataset, request.data)
    del dataset
    orphaned = parent_gone()
    channel.send(result.outcome().to_message())
    if not result.saveable:
        channel.send({"kind": "end"})
        return 0
    publish_now = orphaned or (job.get("auto_save", True) and result.state == "finished")
    context = {**backend_record(), **({"server_exited": True} if orphaned else {})}
    failure = None
    if publish_now:
        try:
            run_id = save_trained(result, request, test_split, root=job["root"], context=context)
        except Exception as error:  # noqa: BLE001 - the model is staged below; the page says why
            failure = error_line(error, prefix="")
        else:
            channel.send({"kind": "saved", "run_id": run_id})
            channel.send({"kind": "end"})
            return 0
    # Kept until the user saves it (cae.store.publish_run), in the runs folder or, when that
    # cannot be written to, in its fallback: a failed save never loses the trained model.
    for fallback in (False, True):
        staging = staging_dir(job["job_id"], job["root"], fallback=fallback)
        try:
            run_id = save_trained(result, request, test_split, root=staging, context=context)
        except Exception as error:  # noqa: BLE001 - reported; the server shows it
            failure = failure or error_line(error, prefix="")
            continue
        if failure:
            channel.send({"kind": "save_error", "message": failure})
        channel.send({"kind": "staged", "path": os.fspath(staging / run_id)})
        break
    else:
        channel.send({"kind": "save_error", "message": failure or "the model could not be kept"})
    channel.send({"kind": "end"})
    return 0


def backend_record() -> dict[str, Any]:
    """Where this worker trains, for train.json: ``{"backend": "local", "host": ...}``, or what the Ray
    dispatcher set in ``CAE_BACKEND`` (``"backend": "ray"`` with the node's id and address and
    when the node started the job)."""
    try:
        record = json.loads(os.environ.get("CAE_BACKEND") or "{}")
    except ValueError:
        record = {}
    if isinstance(record, dict) and record.get("backend"):
        return record
    from cae.store import local_backend

    return local_backend()


def share_gpus() -> None:
    """Let each GPU's memory grow as needed instead of being taken whole at the first op, so the
    worker processes of several trainings (and the server) can share one GPU."""
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        # RuntimeError: already initialised, nothing to change any more
        with contextlib.suppress(RuntimeError, ValueError):
            tf.config.experimental.set_memory_growth(gpu, True)


def warm_up() -> None:
    """Import Keras and train a tiny convolutional model for one step, so that TensorFlow's
    one-time set-up (thread pools, kernels, the first trace) is paid while the worker waits.

    The model is 8x8 pixels with one filter per layer but the classic network's kinds of layer,
    loss and optimizer: what the job then saves does not grow with the warm-up model's size.
    Measured with ``bench/worker_start.py --spare`` (forked workers): the spare's warm-up takes
    0.86 CPU-s (1.67 on the classic network itself), and its job reaches the saved run in 0.80
    of the time of a job without a spare, as it did after the classic warm-up (0.79)."""
    import keras

    from cae.builder import build
    from cae.spec import ArchitectureSpec, Conv, Pool, Upsample

    tiny = ArchitectureSpec(
        name="warm-up",
        input_shape=(8, 8, 1),
        encoder=(Conv(1, (3, 3)), Pool("max", (2, 2))),
        decoder=(Upsample((2, 2)), Conv(1, (3, 3), activation="sigmoid")),
    )
    built = build(tiny)
    built.autoencoder.compile(optimizer="adam", loss="binary_crossentropy")
    images = np.zeros((2, 8, 8, 1), np.float32)
    built.autoencoder.fit(images, images, batch_size=2, epochs=1, verbose=0)
    del built
    keras.backend.clear_session()  # this process is ours alone: start the job from a clean state


def main() -> int:
    """Serve one job: announce readiness, read the job, train it, report, exit."""
    channel = take_stdout()
    import_keras_without_pandas()  # a worker trains arrays, never DataFrames
    share_gpus()
    if "--warm-up" in sys.argv[1:]:  # a spare: set TensorFlow up while nobody waits
        warm_up()
    return serve_one_job(channel, lambda job: train_job(job, channel))


def train_job(job: dict[str, Any], channel: Channel) -> int:
    """Run the job of a ``train`` command, listening for ``stop`` (and the end of the input)
    meanwhile; the exit code."""
    stop = threading.Event()
    parent_gone = threading.Event()

    def listen() -> None:
        for command in sys.stdin:
            try:
                if json.loads(command).get("cmd") == "stop":
                    stop.set()
            except (ValueError, AttributeError):
                continue
        parent_gone.set()  # end of input: the server closed the pipe or died
        stop.set()

    threading.Thread(target=listen, name="cae-worker-commands", daemon=True).start()
    return run_job(job, channel, stop.is_set, parent_gone.is_set)


if __name__ == "__main__":
    exit_now(main())  # everything is saved: skip TensorFlow's slow interpreter teardown
