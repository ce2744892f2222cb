"""One training job in its own process: ``python -m cae.worker``, driven by ``cae.jobs``.

Why a process: TensorFlow keeps what it traced for every model for the life of a process (about
12 MiB per short training here, measured with bench/soak_training.py), and
``keras.backend.clear_session()`` cannot be called while other sessions use Keras. A process per
job returns all of it to the system when the job ends. It also keeps a crash or an out-of-memory
kill to the job, and training no longer competes with the pages for the server's GIL.

The protocol is JSON lines (never pickle). The worker imports TensorFlow (a spare started with
``--warm-up`` also trains a tiny model once, so the job finds TensorFlow set up), then writes
``{"kind": "ready"}``; it reads one ``{"cmd": "train", ...}`` line from its standard input; it writes
``progress`` lines, then ``result``, then ``saved``, ``staged`` or ``save_error`` (when there is a
model), and last ``end``; then it exits. ``{"cmd": "stop"}`` asks training to stop after the
current batch. If its standard input closes (the server went away) it stops training and saves the
completed epochs as a run, so nothing trained is lost. Anything else the process prints goes to
standard error.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import fields
from typing import IO, Any

import numpy as np

from cae.training import Progress

PROTOCOL_VERSION = 1
_ARRAY_KEY = "__ndarray__"


# ------------------------------------------------------------------------- encoding


def encode_value(value: Any) -> Any:
    """A JSON-ready form of a value; numpy arrays become ``{"__ndarray__": base64, ...}``."""
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        return {
            _ARRAY_KEY: base64.b64encode(array.tobytes()).decode("ascii"),
            "dtype": array.dtype.str,
            "shape": list(array.shape),
        }
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(key): encode_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_value(item) for item in value]
    return value


def decode_value(value: Any) -> Any:
    """The inverse of ``encode_value``: arrays come back read-only; only numeric dtypes."""
    if isinstance(value, dict):
        if _ARRAY_KEY in value:
            dtype = np.dtype(str(value["dtype"]))
            if dtype.kind not in "biuf":
                raise ValueError(f"only numeric arrays cross the pipe. Received: dtype={dtype}")
            shape = tuple(int(n) for n in value["shape"])
            array = np.frombuffer(base64.b64decode(value[_ARRAY_KEY]), dtype=dtype).reshape(shape)
            return array
        return {key: decode_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [decode_value(item) for item in value]
    return value


PREVIEW_FIELDS = ("preview_originals", "preview_reconstructions", "preview_inputs")
_SAME = {"__same__": True}


def progress_to_message(progress: Progress, previous: Progress | None = None) -> dict[str, Any]:
    """A ``progress`` protocol message holding every field of ``progress``; a preview array that
    is the very object sent with ``previous`` goes as ``{"__same__": true}`` (the previews change
    once an epoch, the reports come every quarter second)."""
    message: dict[str, Any] = {"kind": "progress"}
    for item in fields(Progress):
        value = getattr(progress, item.name)
        if (
            item.name in PREVIEW_FIELDS
            and value is not None
            and previous is not None
            and value is getattr(previous, item.name)
        ):
            message[item.name] = _SAME
        else:
            message[item.name] = encode_value(value)
    return message


def progress_from_message(message: dict[str, Any], previous: Progress | None = None) -> Progress:
    """The Progress of a ``progress`` message (unknown keys are ignored); previews marked as
    unchanged are taken from ``previous``."""
    names = {item.name for item in fields(Progress)}
    values: dict[str, Any] = {}
    for key, value in message.items():
        if key not in names:
            continue
        if key in PREVIEW_FIELDS and value == _SAME:
            values[key] = getattr(previous, key) if previous is not None else None
        else:
            values[key] = decode_value(value)
    history = values.get("history") or {}
    values["history"] = {str(key): [float(v) for v in series] for key, series in history.items()}
    return Progress(**values)


class Channel:
    """Writes protocol messages, one JSON object per line, from any thread."""

    def __init__(self, stream: IO[str]) -> None:
        """Write to ``stream`` (the worker's original standard output)."""
        self._stream = stream
        self._lock = threading.Lock()
        self.broken = False

    def send(self, message: dict[str, Any]) -> None:
        """Write one message; once the reader has gone, messages are dropped silently."""
        line = json.dumps(message, separators=(",", ":"))
        with self._lock:
            if self.broken:
                return
            try:
                self._stream.write(line + "\n")
                self._stream.flush()
            except (BrokenPipeError, OSError, ValueError):
                self.broken = True


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
    """Train the job described by a ``train`` command, report over ``channel``, save; exit code."""
    from cae.builder import weights_digest
    from cae.data import Dataset
    from cae.jobs import result_train_config, save_result
    from cae.spec import ArchitectureSpec
    from cae.store import staging_dir
    from cae.training import TrainConfig, train

    try:
        spec = ArchitectureSpec.from_dict(job["spec"])
        config = TrainConfig.from_dict(job["config"])
        x_train = np.load(job["x_train"], allow_pickle=False)
        x_test = np.load(job["x_test"], allow_pickle=False)
        dataset = Dataset(job["dataset_name"], x_train, None, x_test, None)
        result = train(
            spec,
            dataset,
            config,
            progress=ProgressSender(channel),
            should_stop=should_stop,
        )
    except Exception as error:  # noqa: BLE001 - reported to the server, which shows it
        channel.send({"kind": "error", "message": f"{type(error).__name__}: {error}"})
        channel.send({"kind": "end"})
        return 1
    del dataset, x_train, x_test
    train_config = result_train_config(result, job["dataset_name"], job.get("extra") or {})
    orphaned = parent_gone()
    if orphaned:
        train_config["server_exited"] = True
    channel.send(
        {
            "kind": "result",
            "state": result.state,
            "message": result.message,
            "epochs_completed": result.epochs_completed,
            "stopped": result.stopped,
            "history": encode_value(result.history),
            "wall_seconds": result.wall_seconds,
            "test_metrics": encode_value(result.test_metrics),
            "best_epoch": result.best_epoch,
            "early_stopped": result.early_stopped,
            "num_train": result.num_train,
            "num_validation": result.num_validation,
            "train_config": encode_value(train_config),
            "weights_digest": weights_digest(result.built.autoencoder) if result.saveable else None,
        }
    )
    if not result.saveable:
        channel.send({"kind": "end"})
        return 0
    publish_now = orphaned or (job.get("auto_save", True) and result.state == "finished")
    try:
        if publish_now:
            run_id = save_result(
                result, spec, name=job["name"], train_config=train_config, root=job["root"]
            )
            channel.send({"kind": "saved", "run_id": run_id})
        else:  # kept until the user saves it (cae.store.publish_run) or starts another job
            staging = staging_dir(job["job_id"], job["root"])
            run_id = save_result(
                result, spec, name=job["name"], train_config=train_config, root=staging
            )
            channel.send({"kind": "staged", "path": os.fspath(staging / run_id)})
    except Exception as error:  # noqa: BLE001 - reported; the server shows it
        channel.send({"kind": "save_error", "message": f"{type(error).__name__}: {error}"})
    channel.send({"kind": "end"})
    return 0


def warm_up() -> None:
    """Import Keras and train a tiny convolutional model for one step, so that TensorFlow's
    one-time set-up (thread pools, kernels, the first trace) is paid while the worker waits."""
    import keras

    from cae.builder import build
    from cae.spec import preset

    built = build(preset("classic"))
    built.autoencoder.compile(optimizer="adam", loss="binary_crossentropy")
    images = np.zeros((8, 28, 28, 1), np.float32)
    built.autoencoder.fit(images, images, batch_size=8, epochs=1, verbose=0)
    del built
    keras.backend.clear_session()  # this process is ours alone: start the job from a clean state


def main() -> int:
    """Serve one job: announce readiness, read the job, train it, report, exit."""
    channel = Channel(os.fdopen(os.dup(1), "w", encoding="utf-8"))
    os.dup2(2, 1)  # whatever TensorFlow or a library prints must not corrupt the protocol
    sys.stdout = sys.stderr
    if "--warm-up" in sys.argv[1:]:  # a spare: set TensorFlow up while nobody waits
        warm_up()
    else:
        import keras  # noqa: F401
    channel.send({"kind": "ready", "pid": os.getpid(), "protocol": PROTOCOL_VERSION})
    line = sys.stdin.readline()
    if not line.strip():
        return 0  # the server went away (or kept us as a spare and shut down) before a job came
    try:
        job = json.loads(line)
        if job.get("cmd") != "train":
            raise ValueError(f"expected a train command. Received: cmd={job.get('cmd')!r}")
    except (ValueError, AttributeError) as error:
        channel.send({"kind": "error", "message": f"bad job line: {error}"})
        channel.send({"kind": "end"})
        return 2
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
    code = main()
    sys.stderr.flush()
    # Everything is saved and flushed: skip TensorFlow's slow interpreter teardown (~1 s here).
    os._exit(code)
