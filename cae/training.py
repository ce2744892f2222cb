"""Train an autoencoder with a progress sink and a stop flag; ``tf.distribute`` strategy aware.

``train(spec, dataset, config, progress=..., should_stop=...)`` runs ``model.fit`` over a ``tf.data``
pipeline (seeded index shuffle, batched gather, optional input corruption, prefetch). A Keras
callback hands the caller plain :class:`Progress` snapshots (no TensorFlow objects), throttled to
one every ``report_interval`` seconds plus one at each epoch end, so a display costs nothing
measurable. ``should_stop()`` is checked after every batch: a stop ends training within one batch
and the model returned holds the weights of the last completed epoch. A NaN/inf loss ends training
as "failed", keeping the last good epoch's weights. TensorFlow and Keras are imported inside the
functions that need them; ``keras.backend.clear_session()`` is never called (other threads may be
training).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np

from cae.builder import PRECISIONS, BuiltModel, build, weights_digest
from cae.corruption import EVAL_SEED, STRENGTH_RANGE, Corruption, corruption_of
from cae.data import Dataset
from cae.pixels import HELD_DTYPES, as_float, batch_for, float_bytes
from cae.preflight import check_enough_images, check_input_shape, validation_count
from cae.spec import ArchitectureSpec

if TYPE_CHECKING:  # pragma: no cover
    import keras
    import tensorflow as tf

OPTIMIZERS = ("adam", "sgd", "rmsprop")
LOSSES = ("bce", "mse", "mae")
STRATEGIES = ("default", "mirrored", "multiworker")
STATES = ("starting", "running", "stopping", "stopped", "finished", "failed")

MAX_PREVIEW = 64
REPORT_INTERVAL = 0.25  # seconds between two progress reports (plus one at each epoch end)
LATENT_STATS_LIMIT = 2048  # training images encoded for the latent statistics (direct calls)
PREDICT_BATCH = 256
EVAL_CHUNK = 1024  # test images per step of evaluate_run
EVAL_CHUNK_BYTES = 16 * 2**20  # ... and at most this many bytes of them as float32 at once (SSIM
# works in float64 on ~8 arrays of a chunk: 16 MiB keeps a chunk of 512x512 RGB images near 300 MB)
TENSOR_GATHER_BYTES = 64 * 2**20  # training images gathered in-graph up to this size (as held)
COLLECTIVE_TIMEOUT = 60.0  # seconds a multi-worker collective may wait for a peer before failing
FINISH_TIMEOUT = 600.0  # seconds multi-worker tasks wait at the end for one another

LIMITS: dict[str, tuple[float, float]] = {
    "epochs": (1, 10_000),  # 10,000 epochs of the 4,500-digit sample: about 3 hours here
    "batch_size": (1, 65_536),
    "learning_rate": (1e-12, 10.0),  # 1e-12 leaves float32 weights unchanged: a frozen model
    "validation_split": (0.0, 0.5),  # more than half held out leaves too little to learn from
    "patience": (0, 1_000),
    "seed": (0, 2**31 - 1),
    "strength": STRENGTH_RANGE,  # of the input corruption; each kind narrows it (cae.corruption)
    "preview_count": (0, MAX_PREVIEW),
}
"""Each training setting's (lowest, highest) value: the one place the Train page's widgets, the
CLI and :meth:`TrainConfig.validate` take them from."""
MAX_EPOCHS = int(LIMITS["epochs"][1])
MAX_BATCH_SIZE = int(LIMITS["batch_size"][1])
_INTEGER_SETTINGS = ("epochs", "batch_size", "patience", "seed", "preview_count")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def check_setting(key: str, value: Any) -> None:
    """Raise ValueError unless ``value`` is within ``LIMITS[key]`` (an integer where it must be)."""
    low, high = LIMITS[key]
    if key in _INTEGER_SETTINGS:
        if not _is_int(value) or not low <= value <= high:
            raise ValueError(
                f"{key} must be an integer from {int(low):,} to {int(high):,}. "
                f"Received: {key}={value!r}"
            )
    elif not _is_number(value) or not math.isfinite(value) or not low <= value <= high:
        raise ValueError(
            f"{key} must be a number from {low:g} to {high:g}. Received: {key}={value!r}"
        )


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (plain data, JSON round trip); validated when made,
    against :data:`LIMITS`."""

    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    loss: str = "bce"
    validation_split: float = 0.1  # the last part of the training images, as Keras does
    patience: int | None = None  # early stopping on val_loss, keeping the best epoch
    seed: int = 0  # weights, shuffling and noise (the data split has its own, in the recipe)
    corruption: str | None = None  # denoising: a kind of cae.corruption.CORRUPTIONS, or None
    strength: float = 0.0  # of the corruption (0 without one)
    preview_count: int = 6  # test images reconstructed at each epoch end for the live preview
    precision: str = "float32"  # or "mixed_float16": float16 maths, float32 weights and last layer

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> TrainConfig:
        """Raise ValueError naming the first bad value; return self when all are good."""
        for key in ("epochs", "batch_size"):
            check_setting(key, getattr(self, key))
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer must be one of {', '.join(OPTIMIZERS)}. Received: optimizer={self.optimizer!r}"
            )
        check_setting("learning_rate", self.learning_rate)
        if self.loss not in LOSSES:
            raise ValueError(
                f"loss must be one of {', '.join(LOSSES)}. Received: loss={self.loss!r}"
            )
        check_setting("validation_split", self.validation_split)
        if self.patience is not None:
            check_setting("patience", self.patience)
            if self.validation_split == 0:
                raise ValueError(
                    "early stopping watches val_loss, so patience needs validation_split > 0. "
                    f"Received: patience={self.patience!r}, validation_split={self.validation_split!r}"
                )
        for key in ("seed", "strength", "preview_count"):
            check_setting(key, getattr(self, key))
        if self.corruption is None and self.strength != 0:
            raise ValueError(
                "a corruption strength needs a corruption kind (gaussian, salt-pepper, erase). "
                f"Received: corruption=None, strength={self.strength!r}"
            )
        corruption_of(self.corruption, self.strength)  # the kind's own strength range
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {', '.join(PRECISIONS)}. Received: precision={self.precision!r}"
            )
        return self

    @property
    def input_corruption(self) -> Corruption | None:
        """What a denoising run does to its inputs (validated), or None."""
        return corruption_of(self.corruption, self.strength)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """A validated config from a dict; keys that are not fields (e.g. the other entries of a
        run's train.json) are ignored, missing ones take their defaults. A record from before
        the corruption kinds (``"noise": std``) reads as Gaussian noise of that std."""
        if not isinstance(data, dict):
            raise ValueError(
                f"a training config must be a dict. Received: type={type(data).__name__}"
            )
        names = {item.name for item in fields(cls)}
        values = {key: value for key, value in data.items() if key in names}
        noise = data.get("noise")
        if "corruption" not in data and noise not in (None, 0, 0.0):
            values.update(corruption="gaussian", strength=noise)
        return cls(**values).validate()


def recorded_config(record: dict[str, Any]) -> TrainConfig | None:
    """The training config a run's train.json records (``{"config": ...}``; older runs: flat
    keys), or None when the record is past today's limits."""
    try:
        return TrainConfig.from_dict(record.get("config", record))
    except (ValueError, TypeError, AttributeError):
        return None


@dataclass
class Progress:
    """A plain snapshot of a training run for a display to draw (no TensorFlow objects)."""

    state: str = "starting"
    epoch: int = 0  # completed epochs
    epochs: int = 0
    batch: int = 0  # batches done in the epoch after ``epoch`` (0 at an epoch's end)
    batches_per_epoch: int = 0
    loss: float | None = None  # running mean of the current epoch
    val_loss: float | None = None  # of the last completed epoch
    images_per_second: float | None = None
    eta_seconds: float | None = None
    elapsed_seconds: float = 0.0
    history: dict[str, list[float]] = field(default_factory=dict)
    preview_originals: np.ndarray | None = None
    preview_reconstructions: np.ndarray | None = None
    preview_inputs: np.ndarray | None = None  # the noisy inputs when training a denoiser
    message: str = ""

    @property
    def fraction(self) -> float:
        """How much of the run is done, from 0 to 1 (for a progress bar)."""
        if self.state == "finished":
            return 1.0
        if self.epochs <= 0:
            return 0.0
        within = self.batch / self.batches_per_epoch if self.batches_per_epoch else 0.0
        done = self.epoch + min(within, 1.0)
        return max(0.0, min(1.0, done / self.epochs))

    @property
    def active(self) -> bool:
        """True while training has not ended."""
        return self.state in ("starting", "running", "stopping")

    def copy(self) -> Progress:
        """A copy whose history lists can be changed freely (preview arrays are read-only)."""
        return Progress(
            **{
                item.name: getattr(self, item.name)
                for item in fields(self)
                if item.name != "history"
            },
            history={key: list(values) for key, values in self.history.items()},
        )


@dataclass
class TrainOutcome:
    """What happened in one training, as plain data: the one list of these fields, which travels
    from the worker process as a ``result`` message and is recorded in the run's files."""

    state: str  # finished | stopped | failed
    message: str
    epochs_completed: int
    stopped: bool  # ended by a stop request
    history: dict[str, list[float]] = field(default_factory=dict)
    wall_seconds: float = 0.0
    test_metrics: dict[str, float] = field(default_factory=dict)  # keys: cae.metrics.METRICS
    best_epoch: int | None = None  # with early stopping: the epoch whose weights were kept
    early_stopped: bool = False
    num_train: int = 0
    num_validation: int = 0
    weights_digest: str | None = None  # cae.builder.weights_digest of the model that was kept

    @property
    def failed(self) -> bool:
        """True when the loss became NaN/inf."""
        return self.state == "failed"

    @property
    def saveable(self) -> bool:
        """True when there is at least one completed epoch to save."""
        return self.epochs_completed > 0

    def to_message(self) -> dict[str, Any]:
        """The worker's ``result`` message: every field, JSON-ready."""
        return {"kind": "result", **self.to_dict()}

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON-able data."""
        return {item.name: _plain(getattr(self, item.name)) for item in fields(TrainOutcome)}

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> TrainOutcome:
        """The outcome of a ``result`` message (or ``to_dict`` output); unknown keys are ignored."""
        values = {item.name: message[item.name] for item in fields(cls) if item.name in message}
        history = values.get("history") or {}
        values["history"] = {
            str(key): [float(v) for v in series] for key, series in history.items()
        }
        values["test_metrics"] = {
            str(key): float(value) for key, value in (values.get("test_metrics") or {}).items()
        }
        return cls(**values)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass(kw_only=True)
class TrainResult(TrainOutcome):
    """What ``train`` returns: the outcome plus the trained model, its config and latent stats."""

    built: BuiltModel
    config: TrainConfig
    latent_stats: dict[str, Any] | None = None
    tensorboard: bytes | None = None  # the TensorBoard event file of the run (cae.events)

    def outcome(self) -> TrainOutcome:
        """The plain outcome, without the model."""
        return TrainOutcome(
            **{item.name: getattr(self, item.name) for item in fields(TrainOutcome)}
        )


# ------------------------------------------------------------------------------------ strategies


def make_strategy(name: str) -> tf.distribute.Strategy:
    """A ``tf.distribute`` strategy: "default" (this device), "mirrored" (every local GPU, else
    every logical CPU device) or "multiworker" (several machines described by the TF_CONFIG
    environment variable; each collective gives up after ``CAE_COLLECTIVE_TIMEOUT`` seconds)."""
    if name not in STRATEGIES:
        raise ValueError(
            f"strategy must be one of {', '.join(STRATEGIES)}. Received: strategy={name!r}"
        )
    if name == "multiworker":
        from cae.cluster import Cluster

        Cluster.from_env()  # one line naming what is wrong, before TensorFlow waits for peers
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        # every GPU; without one, every logical CPU device (one unless the process made more)
        gpus = tf.config.list_logical_devices("GPU")
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    timeout = float(os.environ.get("CAE_COLLECTIVE_TIMEOUT", COLLECTIVE_TIMEOUT))
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def is_chief(strategy: Any = None) -> bool:
    """True on the worker that should write results (always, outside multi-worker training)."""
    import tensorflow as tf

    if strategy is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    from cae.cluster import Cluster

    return Cluster.from_env().is_chief


def leave_together(strategy: Any = None, timeout: float = FINISH_TIMEOUT) -> None:
    """Under a multi-worker strategy, wait until every task of the cluster has called this too
    (the chief once it has saved the run), at most ``timeout`` seconds; nothing otherwise.

    Why: TensorFlow's coordination service runs inside the chief and expects a heartbeat from
    every task. A worker that exits while the chief still evaluates or saves stops sending them,
    and some 10 s later the service declares it crashed: a C++ log line on the chief, "The tasks
    have crashed ... CoordinationServiceError", after the chief's summary. At this barrier of the
    service all tasks leave together. It raises a ``tf.errors.OpError``: UnavailableError within
    seconds when the chief (the service) is gone, InternalError naming the task once a task that
    died has missed its heartbeats (10 to 20 s), DeadlineExceededError after ``timeout``."""
    import tensorflow as tf

    if strategy is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    from tensorflow.python.eager import context  # the service's barrier has no public alias

    context.context().wait_at_barrier("cae-train-end", int(timeout * 1000))


# ------------------------------------------------------------------------------------ data


def _split(x: np.ndarray, validation_split: float) -> tuple[np.ndarray, np.ndarray | None]:
    """The last ``validation_split`` of the training images is held out, as Keras does."""
    n = len(x)
    check_enough_images(n, validation_split)
    n_val = validation_count(n, validation_split)
    if n_val == 0:
        return x, None
    return x[: n - n_val], x[n - n_val :]


def make_pipeline(
    x: np.ndarray,
    batch_size: int,
    *,
    seed: int,
    corruption: Corruption | None = None,
    shuffle: bool = True,
    fixed_noise: bool = False,
    replicas: int = 1,
    copy_to_tensor: bool | None = None,
) -> tf.data.Dataset:
    """A ``tf.data`` pipeline of (input, target) batches: a seeded shuffle of indices (reshuffled
    each epoch), a gather per batch, uint8 images made float32 in [0, 1] (``cae.pixels``; in the
    graph, a batch at a time), the input ``corruption`` of ``cae.corruption`` (targets stay
    clean; new random corruption every batch and epoch unless ``fixed_noise``), prefetch.

    Where the batches are gathered from (``copy_to_tensor``; None chooses by size): a tensor copy
    of the images as held, gathered inside the graph, for arrays up to ``TENSOR_GATHER_BYTES`` (and always
    under multi-worker training, whose auto-sharding must serialise the pipeline); the numpy array
    itself for bigger ones, through one Python call per batch, since TensorFlow 2.21 holds two
    copies of an array it converts to a tensor (+376 MB for 60,000 MNIST images). With ``replicas`` > 1 the last batch is cut to a multiple of ``replicas`` (Keras 3
    under MirroredStrategy fails on a batch that does not split evenly): each epoch leaves out at
    most ``replicas - 1`` images, different ones each epoch when shuffling."""
    import tensorflow as tf

    x = np.asarray(x)
    if x.dtype not in HELD_DTYPES:
        x = as_float(x)
    held = tf.uint8 if x.dtype == np.uint8 else tf.float32
    n = int(x.shape[0])
    image_shape = tuple(int(d) for d in x.shape[1:])
    if copy_to_tensor is None:
        copy_to_tensor = x.nbytes <= TENSOR_GATHER_BYTES

    def to_float(batch: Any) -> Any:
        """uint8 k -> k / 255 as float32, the same values as ``cae.pixels.as_float``."""
        if held == tf.float32:
            return batch
        return tf.math.divide(tf.cast(batch, tf.float32), tf.constant(255.0, tf.float32))

    if copy_to_tensor:
        images = tf.convert_to_tensor(x, dtype=held)

        def gather(index: Any) -> Any:
            return to_float(tf.gather(images, index))

    else:
        source = np.ascontiguousarray(x)

        def take_rows(index: np.ndarray) -> np.ndarray:
            return source[index]

        def gather(index: Any) -> Any:
            batch = tf.numpy_function(take_rows, [index], held, stateful=False)
            return to_float(tf.ensure_shape(batch, (None, *image_shape)))

    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    used = images_per_epoch(n, batch_size, replicas)
    if used < n:
        ds = ds.take(used)
    ds = ds.batch(batch_size)
    if corruption is not None:
        # One random seed per batch from a seeded stream: new noise every epoch unless fixed.
        seeds = tf.data.Dataset.random(seed=seed + 1, rerandomize_each_iteration=not fixed_noise)
        ds = tf.data.Dataset.zip((ds, seeds))

        def noisy(index: Any, batch_seed: Any) -> Any:
            clean = gather(index)
            pair = tf.stack([batch_seed, tf.constant(seed, tf.int64)])
            return corruption.apply_tf(clean, pair), clean

        ds = ds.map(noisy, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:

        def same(index: Any) -> Any:
            clean = gather(index)
            return clean, clean

        ds = ds.map(same, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def _fix_keras_for_multi_worker(model: keras.Model, strategy: tf.distribute.Strategy) -> None:
    """Two fixes that let Keras 3's own ``fit``/``evaluate`` run under
    MultiWorkerMirroredStrategy (measured with Keras 3.15.1 and TensorFlow 2.21, two local
    workers; upstream: tensorflow/tensorflow#72388). The steps, the gradient all-reduce and the
    data sharding stay TensorFlow's and Keras's own.

    1. Before its first step Keras reduces the first batch with ``strategy.reduce("MEAN", (x,
       y))``, which this strategy cannot do for a tuple ("Attempt to convert a value
       (PerReplica:{...})" and a dump of the batch). Only the batch's shapes matter to that
       build, so this model builds from its local values instead.
    2. After each step Keras reduces the scalar logs with ``strategy.reduce("MEAN", v, axis=0)``,
       which fails on a scalar ("Invalid reduction dimension 0 for input with 0 dimensions").
       The logs are reduced with ``axis=None`` instead: the mean over the workers' replicas."""
    import keras
    from keras.src.backend.tensorflow import trainer as tf_trainer

    def maybe_symbolic_build(iterator: Any = None, data_batch: Any = None) -> None:
        if iterator is not None:
            for _, _, batches in iterator:
                first = next(batches)
                data_batch = keras.tree.map_structure(
                    lambda value: strategy.experimental_local_results(value)[0], first
                )
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = maybe_symbolic_build
    original = tf_trainer.reduce_per_replica
    if getattr(original, "_cae_multi_worker_fix", False):
        return

    def reduce_per_replica(values: Any, strategy: Any, reduction: str = "auto") -> Any:
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(
            strategy
        ):
            return keras.tree.map_structure(
                lambda value: strategy.reduce("MEAN", value, axis=None), values
            )
        return original(values, strategy, reduction)

    reduce_per_replica._cae_multi_worker_fix = True  # type: ignore[attr-defined]
    tf_trainer.reduce_per_replica = reduce_per_replica


def images_per_epoch(n: int, batch_size: int, replicas: int = 1) -> int:
    """How many of ``n`` images one epoch uses: all, less the last batch's remainder that does not
    split evenly over ``replicas``."""
    return n - (n % batch_size) % max(1, replicas)


def reconstruct(
    model: keras.Model,
    images: np.ndarray,
    batch_size: int = PREDICT_BATCH,
    *,
    infer: Callable[[Any], Any] | None = None,
) -> np.ndarray:
    """The autoencoder's outputs for ``images`` (float32 numpy; uint8 ones are made float32 a
    batch at a time), ``batch_size`` at a time: direct calls, or ``infer`` (from
    :func:`inference_function`) when given. Never ``model.predict``, whose per-model retracing
    makes TensorFlow warn after a few trainings in one process."""
    x = np.asarray(images)
    call = infer if infer is not None else (lambda batch: model(batch, training=False))
    if len(x) == 0:
        return np.zeros((0, *(int(n) for n in model.output_shape[1:])), np.float32)
    batch_size = batch_for(x, batch_size)
    parts = [
        np.asarray(call(as_float(x[start : start + batch_size])), dtype=np.float32)
        for start in range(0, len(x), batch_size)
    ]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def inference_function(model: keras.Model) -> Callable[[Any], Any]:
    """``model(x, training=False)`` as a ``tf.function`` traced once for any batch size."""
    import tensorflow as tf

    shape = tuple(int(n) for n in model.input_shape[1:])
    signature = [tf.TensorSpec((None, *shape), tf.float32)]
    return tf.function(lambda batch: model(batch, training=False), input_signature=signature)


def _make_optimizer(name: str, learning_rate: float) -> Any:
    import keras

    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate)
    return keras.optimizers.RMSprop(learning_rate=learning_rate)


VARIATIONAL_TERMS = ("recon_loss", "kl_loss")
"""The two terms of a variational run's loss, logged by Keras each epoch and kept in history.json
beside ``loss`` (with ``val_`` versions): ``loss = recon_loss + weight * kl_loss``."""


def _loss_terms(built: BuiltModel, loss: str) -> list[Any]:
    """Compiled metrics: for a variational model the reconstruction term alone, as
    ``recon_loss`` (its sampling layer tracks ``kl_loss``); none for a plain one."""
    if not built.variational:
        return []
    import keras

    metric = {
        "bce": keras.metrics.BinaryCrossentropy,
        "mse": keras.metrics.MeanSquaredError,
        "mae": keras.metrics.MeanAbsoluteError,
    }[loss]
    return [metric(name="recon_loss")]


def _kl_warmup_callback(built: BuiltModel) -> Any:
    """A callback setting the sampling layer's KL weight at each epoch's start to
    ``spec.variational.weight(epoch)`` (0 rising to beta over the warm-up, then beta)."""
    import keras

    from cae.variational import SAMPLING_LAYER

    assert built.spec is not None and built.spec.variational is not None
    schedule = built.spec.variational
    weight = built.autoencoder.get_layer(SAMPLING_LAYER).kl_weight
    return keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs=None: weight.assign(schedule.weight(epoch))
    )


def _make_loss(name: str) -> Any:
    import keras

    if name == "bce":
        return keras.losses.BinaryCrossentropy()
    if name == "mse":
        return keras.losses.MeanSquaredError()
    return keras.losses.MeanAbsoluteError()


# ------------------------------------------------------------------------------------ callback


@cache
def _monitor_class() -> type:
    """The Keras callback class (defined on first use, so importing this module stays light)."""
    import keras

    class Monitor(keras.callbacks.Callback):
        """Reports throttled progress, checks the stop flag every batch, snapshots weights at each
        epoch end, watches for NaN/inf losses and does early stopping with the best weights."""

        def __init__(
            self,
            *,
            config: TrainConfig,
            num_train: int,
            has_validation: bool,
            sink: Callable[[Progress], None] | None,
            should_stop: Callable[[], bool] | None,
            report_interval: float,
            started: float,
            preview: np.ndarray | None,
            preview_inputs: np.ndarray | None,
            validation: Any = None,
            terms: tuple[str, ...] = (),
            events: Any = None,
            preview_function: Callable[[Any], Any] | None = None,
        ) -> None:
            super().__init__()
            self.events = events  # a cae.events.EventLog, or None
            self.config = config
            self.validation = validation  # a tf.data pipeline, evaluated at each epoch end
            self.num_train = num_train
            self.has_validation = has_validation
            self.sink = sink
            self.should_stop = should_stop
            self.report_interval = report_interval
            self.started = started
            self.preview = preview
            self.preview_inputs = preview_inputs
            self.preview_reconstructions: np.ndarray | None = None
            # The preview goes through one traced function (1-2 ms of CPU an epoch) rather than
            # an eager model call (about 19 ms: 2% of an epoch of the bundled sample).
            self.preview_function = preview_function
            self.batch_size = config.batch_size
            self.batches_per_epoch = max(1, math.ceil(num_train / config.batch_size))
            self.terms = terms  # the loss's terms, logged as they are (VARIATIONAL_TERMS)
            self.history: dict[str, list[float]] = {"loss": []}
            if has_validation:
                self.history["val_loss"] = []
            for term in terms:
                self.history[term] = []
                if has_validation:
                    self.history[f"val_{term}"] = []
            self.completed = 0
            self.batch_done = 0
            self.loss: float | None = None
            self.val_loss: float | None = None
            self.weights: list[np.ndarray] | None = None  # the last completed epoch's
            self.best_weights: list[np.ndarray] | None = None
            self.best_val = math.inf
            self.best_epoch: int | None = None
            self.wait = 0
            self.early_stopped = False
            self.stop_requested = False
            self.failure: str | None = None
            self.last_report = -math.inf
            self.epoch_start = started
            self.mark: tuple[float, int] | None = None  # (time, batches) after the first batch
            self.images_per_second: float | None = None

        # -- reporting
        def _measure(self, now: float, *, epoch_end: bool = False) -> None:
            """Images per second in this epoch, from its first batch's end on: that batch holds
            the tracing (first epoch) or the input pipeline's start (measured here: a rate 40x
            too low for a moment at every epoch start), so until a second batch ends the last
            epoch's rate stands. An epoch of one batch is measured whole at its end."""
            if self.mark is not None and self.batch_done > self.mark[1] and now > self.mark[0]:
                done, seconds = self.batch_done - self.mark[1], now - self.mark[0]
                self.images_per_second = done * self.batch_size / seconds
            elif (
                epoch_end and self.completed > 0 and self.batch_done > 0 and now > self.epoch_start
            ):
                images = min(self.batch_done * self.batch_size, self.num_train)
                self.images_per_second = images / (now - self.epoch_start)

        def _eta(self) -> float | None:
            rate = self.images_per_second
            if not rate:
                return None
            left = (self.config.epochs - self.completed) * self.batches_per_epoch - self.batch_done
            return max(0, left) * self.batch_size / rate

        def report(
            self, state: str, message: str = "", now: float | None = None, *, live: bool = True
        ) -> None:
            now = time.perf_counter() if now is None else now
            self.last_report = now
            if self.sink is None:
                return
            if live:
                self._measure(now)
            rate = self.images_per_second
            eta = self._eta() if live else None  # after training: nothing left to wait for
            self.sink(
                Progress(
                    state=state,
                    epoch=self.completed,
                    epochs=self.config.epochs,
                    batch=self.batch_done,
                    batches_per_epoch=self.batches_per_epoch,
                    loss=self.loss,
                    val_loss=self.val_loss,
                    images_per_second=rate,
                    eta_seconds=eta,
                    elapsed_seconds=now - self.started,
                    history={key: list(values) for key, values in self.history.items()},
                    preview_originals=self.preview,
                    preview_reconstructions=self.preview_reconstructions,
                    preview_inputs=self.preview_inputs,
                    message=message,
                )
            )

        def _fail(self, what: str, value: float) -> None:
            self.failure = (
                f"Training diverged: the {what} became {value} in epoch {self.completed + 1} "
                f"(batch {self.batch_done}); kept the weights of epoch {self.completed}. "
                "Try a lower learning rate, another optimizer, or check the data is in [0, 1]."
            )
            self.model.stop_training = True
            self.model.stop_evaluating = True
            self.report("failed", self.failure)

        def _request_stop(self) -> None:
            self.stop_requested = True
            self.model.stop_training = True
            self.model.stop_evaluating = True
            self.report("stopping", "Stopping after the current batch.")

        # -- Keras hooks
        def on_train_begin(self, logs: Any = None) -> None:
            self.weights = self.model.get_weights()
            self.report("running", "Training started.")

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.batch_done = 0
            self.epoch_start = time.perf_counter()
            self.mark = None

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            now = time.perf_counter()
            self.batch_done = int(batch) + 1
            if self.mark is None:
                self.mark = (now, self.batch_done)
            loss = logs.get("loss") if logs else None
            if loss is not None:
                self.loss = loss = float(loss)
                if not math.isfinite(loss):
                    if self.failure is None:
                        self._fail("loss", loss)
                    return
            if self.should_stop is not None and not self.stop_requested and self.should_stop():
                self._request_stop()
                return
            if now - self.last_report >= self.report_interval:
                self.report("stopping" if self.stop_requested else "running", now=now)

        def watch_validation(self, batch: int, logs: Any = None) -> None:
            """After each validation batch: a stop request ends validation and training."""
            if self.should_stop is not None and not self.stop_requested and self.should_stop():
                self._request_stop()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if self.stop_requested or self.failure is not None:
                return  # a partial epoch: its weights are not kept
            logs = logs or {}
            loss = float(logs.get("loss", math.nan))
            if not math.isfinite(loss):
                self._fail("loss", loss)
                return
            self._measure(time.perf_counter(), epoch_end=True)  # training speed, before validation
            val = None
            if self.validation is not None:
                # Validation here, not in fit(): a stop before the epoch's end skips it entirely.
                watcher = keras.callbacks.LambdaCallback(on_test_batch_end=self.watch_validation)
                results = self.model.evaluate(
                    self.validation, verbose=0, return_dict=True, callbacks=[watcher]
                )
                if self.stop_requested:
                    return
                val = float(results.get("loss", math.nan))
                if not math.isfinite(val):
                    self._fail("validation loss", val)
                    return
            self.completed = epoch + 1
            self.batch_done = 0  # (completed, 0): between epochs
            self.loss = loss
            self.history["loss"].append(loss)
            if self.has_validation:
                self.val_loss = val
                self.history["val_loss"].append(val)
            for term in self.terms:
                self.history[term].append(float(logs.get(term, math.nan)))
                if self.has_validation:
                    self.history[f"val_{term}"].append(float(results.get(term, math.nan)))
            self.weights = self.model.get_weights()
            if self.events is not None:
                self.events.epoch(self.completed, self.history)
            if self.preview is not None:
                try:
                    recon = reconstruct(
                        self.model,
                        self.preview_inputs if self.preview_inputs is not None else self.preview,
                        infer=self.preview_function,
                    )
                    recon.setflags(write=False)
                    self.preview_reconstructions = recon
                except Exception:  # noqa: BLE001 - a preview must never end a training run
                    self.preview_reconstructions = None
            message = f"Epoch {self.completed}/{self.config.epochs} done."
            if self.config.patience is not None and val is not None:
                if val < self.best_val:
                    self.best_val, self.best_epoch, self.wait = val, self.completed, 0
                    self.best_weights = self.weights
                else:
                    self.wait += 1
                    if self.wait >= self.config.patience and self.completed < self.config.epochs:
                        self.early_stopped = True
                        self.model.stop_training = True
                        message = (
                            f"Early stopping after epoch {self.completed}: val_loss has not improved "
                            f"for {self.wait} epochs; keeping epoch {self.best_epoch}."
                        )
            self.report("running", message)

    return Monitor


# ------------------------------------------------------------------------------------ training


def train(
    spec: ArchitectureSpec,
    dataset: Dataset,
    config: TrainConfig | None = None,
    *,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    strategy: tf.distribute.Strategy | None = None,
    report_interval: float = REPORT_INTERVAL,
    tensorboard: bool = True,
) -> TrainResult:
    """Build the spec's model and train it on ``dataset.x_train`` (inputs and targets), reporting
    :class:`Progress` to ``progress`` and stopping within one batch once ``should_stop()`` is true.

    The batch size is the global batch under a ``strategy`` (nothing is scaled). With
    ``validation_split`` the last part of the training images is held out, as Keras does. With
    ``patience`` the weights of the best validation epoch are kept. After training, test metrics
    are computed on ``dataset.x_test`` (clean inputs; with a ``corruption`` also ``denoise_*`` and
    ``corrupted_*`` from corrupted ones, see :func:`evaluate_corrupted`)
    and latent statistics on up to 2,048 training images, by the chief alone in a multi-worker
    training (the others' ``test_metrics`` stay empty: they save nothing). With ``tensorboard``
    (and on the chief of a multi-worker training) a TensorBoard event file is written as it goes
    and returned as ``TrainResult.tensorboard`` (``cae.events``).
    """
    started = time.perf_counter()
    config = (config or TrainConfig()).validate()
    if not isinstance(spec, ArchitectureSpec):
        raise ValueError(f"spec must be an ArchitectureSpec. Received: type={type(spec).__name__}")
    if not isinstance(dataset, Dataset):
        raise ValueError(
            f"dataset must be a cae.data.Dataset. Received: type={type(dataset).__name__}"
        )
    if not _is_number(report_interval) or report_interval < 0:
        raise ValueError(
            f"report_interval must be a number of seconds >= 0. Received: report_interval={report_interval!r}"
        )
    check_input_shape(spec, dataset)
    x_train, x_val = _split(dataset.x_train, config.validation_split)

    def send(state: str, message: str, **values: Any) -> None:
        if progress is not None:
            progress(
                Progress(
                    state=state,
                    epochs=config.epochs,
                    batches_per_epoch=max(1, math.ceil(len(x_train) / config.batch_size)),
                    elapsed_seconds=time.perf_counter() - started,
                    message=message,
                    **values,
                )
            )

    send("starting", "Building the model.")
    import keras
    import tensorflow as tf

    strategy = strategy if strategy is not None else tf.distribute.get_strategy()
    replicas = int(strategy.num_replicas_in_sync)
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    chief = is_chief(strategy)  # writes the events and evaluates; the others write nothing
    if config.batch_size % replicas:
        raise ValueError(
            f"under a strategy with {replicas} replicas the (global) batch size must be a multiple "
            f"of {replicas}; nothing is scaled for you. Received: batch_size={config.batch_size}, "
            f"replicas={replicas}"
        )
    n_used = images_per_epoch(len(x_train), config.batch_size, replicas)
    if n_used == 0 or (
        x_val is not None and images_per_epoch(len(x_val), config.batch_size, replicas) == 0
    ):
        raise ValueError(
            f"too few images to give each of the {replicas} replicas one. "
            f"Received: num_train={len(x_train)}, num_validation={0 if x_val is None else len(x_val)}"
        )
    keras.utils.set_random_seed(config.seed)
    monitor = event_log = None
    try:
        with strategy.scope():
            built = build(spec, precision=config.precision)
            built.autoencoder.compile(
                optimizer=_make_optimizer(config.optimizer, config.learning_rate),
                loss=_make_loss(config.loss),
                metrics=_loss_terms(built, config.loss),
            )
        if multi_worker:
            _fix_keras_for_multi_worker(built.autoencoder, strategy)
        train_ds = make_pipeline(
            x_train,
            config.batch_size,
            seed=config.seed,
            corruption=config.input_corruption,
            replicas=replicas,
            copy_to_tensor=True if multi_worker else None,
        )
        val_ds = (
            None
            if x_val is None
            else make_pipeline(
                x_val,
                config.batch_size,
                seed=config.seed,
                corruption=config.input_corruption,
                shuffle=False,
                fixed_noise=True,
                replicas=replicas,
                copy_to_tensor=True if multi_worker else None,
            )
        )
        source = dataset.x_test if dataset.num_test else dataset.x_train
        preview = preview_inputs = None
        if config.preview_count and len(source):
            preview = np.array(as_float(source[: config.preview_count]), dtype=np.float32)
            preview.setflags(write=False)
            if config.input_corruption is not None:
                preview_inputs = config.input_corruption.apply(preview)
                preview_inputs.setflags(write=False)
        # One traced call of the model for the live preview and the events' sample at each epoch
        # end: about 2 + 9 ms of CPU an epoch, against 19 + 24 ms for eager calls (4% of an epoch
        # of the bundled sample). Multi-worker runs keep the eager calls they were tested with.
        infer = None if multi_worker else inference_function(built.autoencoder)
        if tensorboard and chief:
            from cae.events import EventLog

            event_log = EventLog(
                dataset.x_test,
                lambda images: reconstruct(built.autoencoder, images, infer=infer),
                epochs=config.epochs,
            )
        monitor = _monitor_class()(
            config=config,
            num_train=n_used,
            has_validation=val_ds is not None,
            validation=val_ds,
            sink=progress,
            should_stop=should_stop,
            report_interval=float(report_interval),
            started=started,
            preview=preview,
            preview_inputs=preview_inputs,
            terms=VARIATIONAL_TERMS if built.variational else (),
            events=event_log,
            preview_function=infer,
        )
        callbacks = [monitor]
        if built.variational:
            callbacks.insert(0, _kl_warmup_callback(built))
        built.autoencoder.fit(
            train_ds,
            epochs=config.epochs,
            callbacks=callbacks,
            shuffle=False,  # the pipeline shuffles, seeded
            verbose=0,
        )
    except Exception as error:
        if event_log is not None:
            event_log.finish()  # removes its temporary folder
        message = f"Training failed: {type(error).__name__}: {error}"
        if monitor is not None and progress is not None:
            monitor.report("failed", message, live=False)  # keeps the history so far
        else:
            send("failed", message)
        raise

    model = built.autoencoder
    best_epoch: int | None = None
    if monitor.stop_requested or monitor.failure is not None:
        if monitor.weights is not None:
            model.set_weights(monitor.weights)
    elif config.patience is not None and monitor.best_weights is not None:
        best_epoch = monitor.best_epoch
        if best_epoch != monitor.completed:
            model.set_weights(monitor.best_weights)
    completed = monitor.completed
    del train_ds, val_ds

    if monitor.failure is not None:
        state, message = "failed", monitor.failure
    elif monitor.stop_requested:
        state = "stopped"
        message = (
            f"Stopped during epoch {completed + 1}; kept the weights of epoch {completed}."
            if completed
            else "Stopped before the first epoch completed: there is nothing to save."
        )
    else:
        state = "finished"
        message = f"Finished {completed} epoch{'s' if completed != 1 else ''}."
        if monitor.early_stopped:
            message = (
                f"Early stopping after epoch {completed}; kept the best epoch {best_epoch} "
                f"(val_loss {monitor.best_val:.5f})."
            )
        elif best_epoch is not None and best_epoch != completed:
            message += f" Kept the best epoch {best_epoch} (val_loss {monitor.best_val:.5f})."

    test_metrics: dict[str, float] = {}
    latent_stats: dict[str, Any] | None = None
    if completed > 0 and chief:
        if progress is not None:
            monitor.report(
                "stopping" if state != "finished" else "running",
                "Computing test metrics.",
                live=False,
            )
        test_metrics = evaluate_run(built, dataset.x_test, corruption=config.input_corruption)
        latent_stats = _latent_stats(built, dataset.x_train)
        if monitor.preview is not None and (
            monitor.stop_requested or monitor.failure or best_epoch
        ):
            monitor.preview_reconstructions = reconstruct(
                model, preview_inputs if preview_inputs is not None else preview
            )
            monitor.preview_reconstructions.setflags(write=False)
    events = None
    if event_log is not None:
        event_log.kept(best_epoch or completed, test_metrics)
        events = event_log.finish()
    wall = time.perf_counter() - started
    if progress is not None:
        monitor.batch_done = 0 if state == "finished" else monitor.batch_done
        monitor.completed = completed
        monitor.report(state, message, live=False)
    return TrainResult(
        built=built,
        weights_digest=weights_digest(model) if completed > 0 else None,
        history={key: list(values) for key, values in monitor.history.items()},
        epochs_completed=completed,
        stopped=monitor.stop_requested,
        wall_seconds=wall,
        config=config,
        test_metrics=test_metrics,
        latent_stats=latent_stats,
        tensorboard=events,
        state=state,
        message=message,
        best_epoch=best_epoch,
        early_stopped=monitor.early_stopped,
        num_train=len(x_train),
        num_validation=0 if x_val is None else len(x_val),
    )


def _latent_stats(built: BuiltModel, x_train: np.ndarray) -> dict[str, Any] | None:
    """Latent statistics of (up to LATENT_STATS_LIMIT) encoded training images, or None."""
    from cae.latent import encode, latent_statistics

    if len(x_train) == 0:
        return None
    try:
        codes = encode(built.encoder, x_train[:LATENT_STATS_LIMIT], batch_size=PREDICT_BATCH)
        return latent_statistics(codes)
    except ValueError:  # non-finite codes: no statistics rather than a failed run
        return None


def evaluate_run(
    built: BuiltModel,
    images: np.ndarray,
    *,
    corruption: Corruption | None = None,
    seed: int = EVAL_SEED,
    chunk: int = EVAL_CHUNK,
) -> dict[str, float]:
    """Test-set metrics (every entry of ``cae.metrics.METRICS``) of the autoencoder's
    reconstructions of ``images`` (a run's test split (N, H, W, C), held as uint8 or float32); with
    a ``corruption`` also those of :func:`evaluate_corrupted`. Works through the images ``chunk``
    at a time (fewer when ``chunk`` of them would take more than ``EVAL_CHUNK_BYTES`` as float32),
    each chunk made float32 alone, so memory stays flat on big test sets."""
    plan = _evaluation_plan(built, images, chunk)
    if plan is None:
        return {}
    model, images, chunk, infer = plan
    metrics = _chunked_metrics(model, images, chunk, infer=infer)["output"]
    if corruption is not None:
        metrics.update(_corrupted_scores(model, images, corruption, seed, chunk, infer))
    return metrics


def evaluate_corrupted(
    built: BuiltModel,
    images: np.ndarray,
    corruption: Corruption,
    *,
    seed: int = EVAL_SEED,
    chunk: int = EVAL_CHUNK,
) -> dict[str, float]:
    """How the autoencoder does on corrupted inputs: ``denoise_<metric>`` scores its outputs
    from ``corruption.apply(images, seed=seed)`` against the clean ``images``, and
    ``corrupted_<metric>`` the corrupted inputs themselves (what doing nothing scores), for every
    metric of ``cae.metrics.METRICS``. Any run can be scored so, denoiser or not."""
    plan = _evaluation_plan(built, images, chunk)
    if plan is None:
        return {}
    model, images, chunk, infer = plan
    return _corrupted_scores(model, images, corruption, seed, chunk, infer)


def _corrupted_scores(
    model: keras.Model,
    images: np.ndarray,
    corruption: Corruption,
    seed: int,
    chunk: int,
    infer: Callable[[Any], Any] | None,
) -> dict[str, float]:
    """The ``denoise_*`` and ``corrupted_*`` metrics of :func:`evaluate_corrupted`."""
    scores = _chunked_metrics(model, images, chunk, corruption=corruption, seed=seed, infer=infer)
    return {
        **{f"denoise_{key}": value for key, value in scores["output"].items()},
        **{f"corrupted_{key}": value for key, value in scores["input"].items()},
    }


def _bounded_chunk(images: np.ndarray, chunk: int) -> int:
    """``chunk``, or fewer images when ``chunk`` of them would take more than
    ``EVAL_CHUNK_BYTES`` as float32 (at least one)."""
    return max(1, min(chunk, EVAL_CHUNK_BYTES // max(1, float_bytes(images[:1]))))


def _evaluation_plan(
    built: BuiltModel, images: np.ndarray, chunk: int
) -> tuple[keras.Model, np.ndarray, int, Callable[[Any], Any] | None] | None:
    """How to evaluate ``images``: the autoencoder, the images as an array, the chunk size
    (bounded in bytes) and, for big test sets, one traced function for all chunks (small ones
    call the model directly); None for no images. Raises ValueError when the images do not fit
    the model or ``chunk`` is not a positive integer."""
    model = _check_evaluation(built, images, chunk)
    images = np.asarray(images)
    if len(images) == 0:
        return None
    chunk = _bounded_chunk(images, chunk)
    return model, images, chunk, inference_function(model) if len(images) > chunk else None


def _check_evaluation(built: BuiltModel, images: np.ndarray, chunk: int) -> keras.Model:
    """The autoencoder, once the images fit it and ``chunk`` is a positive integer."""
    model = built.autoencoder
    expected = tuple(int(n) for n in model.input_shape[1:])
    got = tuple(int(n) for n in np.shape(images)[1:])
    if expected != got:
        raise ValueError(
            "The images do not fit the model; evaluate on the test split of the run's own data. "
            f"Received: images={list(got)}, input_shape={list(expected)}"
        )
    if not _is_int(chunk) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer. Received: chunk={chunk!r}")
    return model


def _chunked_metrics(
    model: keras.Model,
    x: np.ndarray,
    chunk: int,
    *,
    corruption: Corruption | None = None,
    seed: int = EVAL_SEED,
    infer: Callable[[Any], Any] | None = None,
) -> dict[str, dict[str, float]]:
    """``cae.metrics`` of the reconstructions (``"output"``) and, with a ``corruption``, of the
    corrupted inputs (``"input"``), against the clean ``x``, computed ``chunk`` images at a
    time."""
    from cae import metrics

    outputs, inputs = [], []
    for start in range(0, len(x), chunk):
        clean = as_float(x[start : start + chunk])
        given = clean
        if corruption is not None:
            given = corruption.apply(clean, seed=seed, indices=np.arange(start, start + len(clean)))
            inputs.append(metrics.per_image(clean, given))
        outputs.append(metrics.per_image(clean, reconstruct(model, given, infer=infer)))
    scores = {"output": metrics.aggregate(metrics.concatenate(outputs))}
    if inputs:
        scores["input"] = metrics.aggregate(metrics.concatenate(inputs))
    return scores
