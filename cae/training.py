"""Train an autoencoder: the config (``TrainConfig``, each setting's limits in ``LIMITS``), the
``train(...)`` orchestration, and what a training ends with (``TrainOutcome``, ``TrainResult``).

``train(spec, dataset, config, progress=..., should_stop=...)`` builds the model under a
``tf.distribute`` strategy (``cae.strategies``), compiles it, and runs ``model.fit`` over the
``tf.data`` pipeline of ``cae.pipeline`` (seeded index shuffle, batched gather, optional input
corruption, prefetch) with the ``cae.progress.TrainingMonitor``: plain :class:`Progress` snapshots
(no TensorFlow objects), throttled, a stop within one batch of ``should_stop()`` keeping the last
completed epoch's weights, a NaN/inf loss ending training as "failed" with the last good epoch's
weights. After training, the test split is scored by ``cae.evaluation``. TensorFlow and Keras are
imported inside the functions that need them; ``keras.backend.clear_session()`` is never called
(other threads may be training).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from cae.builder import PRECISIONS, BuiltModel, build, weights_digest
from cae.corruption import STRENGTH_RANGE, Corruption, corruption_of
from cae.data import Dataset
from cae.evaluation import evaluate_run, inference_function, reconstruct
from cae.pipeline import images_per_epoch, make_pipeline
from cae.pixels import PREDICT_BATCH, as_float
from cae.preflight import check_enough_images, check_input_shape, validation_count
from cae.progress import REPORT_INTERVAL, Progress, TrainingMonitor
from cae.spec import ArchitectureSpec
from cae.strategies import fix_keras_for_multi_worker, is_chief

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

OPTIMIZERS = ("adam", "sgd", "rmsprop")
LOSSES = ("bce", "mse", "mae")
LR_SCHEDULES = ("constant", "cosine")  # cosine: from learning_rate towards 0 at the end

MAX_PREVIEW = 64
LATENT_STATS_LIMIT = 2048  # training images encoded for the latent statistics (direct calls)

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
    lr_schedule: str = "constant"  # or "cosine": per-epoch cosine decay over the run's epochs

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
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}. "
                f"Received: lr_schedule={self.lr_schedule!r}"
            )
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
    # the kept model's scores on the validation split (the held-out end of the training images;
    # keys: cae.metrics.METRICS): what a search (cae.search) maximises, never the test split
    validation_metrics: dict[str, float] = field(default_factory=dict)

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
        for key in ("test_metrics", "validation_metrics"):
            values[key] = {
                str(name): float(value) for name, value in (values.get(key) or {}).items()
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


# ------------------------------------------------------------------------------------ data


def _split(x: np.ndarray, validation_split: float) -> tuple[np.ndarray, np.ndarray | None]:
    """The last ``validation_split`` of the training images is held out, as Keras does."""
    n = len(x)
    check_enough_images(n, validation_split)
    n_val = validation_count(n, validation_split)
    if n_val == 0:
        return x, None
    return x[: n - n_val], x[n - n_val :]


# ------------------------------------------------------------------------------------ model


def _make_optimizer(name: str, learning_rate: float) -> Any:
    import keras

    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate)
    return keras.optimizers.RMSprop(learning_rate=learning_rate)


def _make_loss(name: str) -> Any:
    import keras

    if name == "bce":
        return keras.losses.BinaryCrossentropy()
    if name == "mse":
        return keras.losses.MeanSquaredError()
    return keras.losses.MeanAbsoluteError()


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


def cosine_rate(learning_rate: float, epoch: int, epochs: int) -> float:
    """The cosine schedule's rate for epoch ``epoch`` (0-based) of ``epochs``: ``learning_rate``
    at the first epoch, falling along half a cosine towards 0 after the last."""
    return 0.5 * learning_rate * (1.0 + math.cos(math.pi * epoch / max(1, epochs)))


def _schedule_callback(config: TrainConfig) -> Any:
    """A callback setting the optimizer's rate at each epoch's start (``lr_schedule`` cosine)."""
    import keras

    return keras.callbacks.LearningRateScheduler(
        lambda epoch, rate: cosine_rate(config.learning_rate, epoch, config.epochs)
    )


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
    ``corrupted_*`` from corrupted ones, see ``cae.evaluation.evaluate_corrupted``)
    and the validation split's (``validation_metrics``: what ``cae.search`` maximises),
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
            fix_keras_for_multi_worker(built.autoencoder, strategy)
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
        monitor = TrainingMonitor(
            built.autoencoder,
            epochs=config.epochs,
            batch_size=config.batch_size,
            num_train=n_used,
            sink=progress,
            should_stop=should_stop,
            report_interval=float(report_interval),
            started=started,
            patience=config.patience,
            validation=val_ds,
            preview=preview,
            preview_inputs=preview_inputs,
            preview_function=infer,
            terms=VARIATIONAL_TERMS if built.variational else (),
            events=event_log,
        )
        callbacks = [monitor.keras_callback()]
        if built.variational:
            callbacks.insert(0, _kl_warmup_callback(built))
        if config.lr_schedule == "cosine":
            callbacks.insert(0, _schedule_callback(config))
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
    validation_metrics: dict[str, float] = {}
    latent_stats: dict[str, Any] | None = None
    if completed > 0 and chief:
        if progress is not None:
            monitor.report(
                "stopping" if state != "finished" else "running",
                "Computing test metrics.",
                live=False,
            )
        test_metrics = evaluate_run(built, dataset.x_test, corruption=config.input_corruption)
        if x_val is not None:  # the kept model on the held-out training images (cae.search)
            validation_metrics = evaluate_run(built, x_val, corruption=config.input_corruption)
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
        validation_metrics=validation_metrics,
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
