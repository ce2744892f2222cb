"""What a training reports while it runs: the plain :class:`Progress` snapshot, and the
:class:`TrainingMonitor` that ``train`` hands Keras to make those snapshots, obey the stop flag and
keep the right weights.

A display (the Train page, the job manager, the CLI) gets :class:`Progress` objects, never
TensorFlow ones, throttled to one every ``REPORT_INTERVAL`` seconds plus one at each epoch end: a
UI update costs about 6 ms here, so a report per batch would cost more than the batch. The
monitor is plain Python; Keras calls it through one ``LambdaCallback`` (:meth:`keras_callback`),
so importing this module imports neither TensorFlow nor Keras (the server reads ``Progress``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from cae.evaluation import reconstruct

if TYPE_CHECKING:  # pragma: no cover
    import keras

    from cae.events import EventLog

STATES = ("starting", "running", "stopping", "stopped", "finished", "failed")
REPORT_INTERVAL = 0.25  # seconds between two progress reports (plus one at each epoch end)


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


class TrainingMonitor:
    """Watches one ``model.fit``: reports throttled :class:`Progress` to ``sink``, checks
    ``should_stop()`` after every batch (a stop ends training within one batch), keeps the weights
    of the last completed epoch, fails on a NaN/inf loss, evaluates ``validation`` at each epoch
    end, stops early after ``patience`` epochs without a better val_loss (keeping the best
    epoch's weights), reconstructs the live ``preview`` and writes each epoch to ``events``.

    ``train`` reads the outcome back from its attributes: ``completed``, ``history``,
    ``weights``, ``best_weights``, ``best_epoch``, ``best_val``, ``stop_requested``, ``failure``,
    ``early_stopped``. Pass :meth:`keras_callback` to ``model.fit``."""

    def __init__(
        self,
        model: keras.Model,
        *,
        epochs: int,
        batch_size: int,
        num_train: int,
        sink: Callable[[Progress], None] | None,
        should_stop: Callable[[], bool] | None = None,
        report_interval: float = REPORT_INTERVAL,
        started: float | None = None,
        patience: int | None = None,
        validation: Any = None,
        preview: np.ndarray | None = None,
        preview_inputs: np.ndarray | None = None,
        preview_function: Callable[[Any], Any] | None = None,
        terms: tuple[str, ...] = (),
        events: EventLog | None = None,
    ) -> None:
        """A monitor of ``model`` training ``epochs`` epochs over ``num_train`` images (those one
        epoch uses) in batches of ``batch_size``; ``started`` is the run's ``perf_counter()``."""
        self.model = model
        self.epochs = epochs
        self.batch_size = batch_size
        self.num_train = num_train
        self.batches_per_epoch = max(1, math.ceil(num_train / batch_size))
        self.sink = sink
        self.should_stop = should_stop
        self.report_interval = report_interval
        self.started = time.perf_counter() if started is None else started
        self.patience = patience
        self.validation = validation  # a tf.data pipeline, evaluated at each epoch end
        self.preview = preview
        self.preview_inputs = preview_inputs  # the corrupted inputs when training a denoiser
        self.preview_reconstructions: np.ndarray | None = None
        # The preview goes through one traced function (1-2 ms of CPU an epoch) rather than
        # an eager model call (about 19 ms: 2% of an epoch of the bundled sample).
        self.preview_function = preview_function
        self.terms = terms  # the loss's terms, logged as they are (VARIATIONAL_TERMS)
        self.events = events
        has_validation = validation is not None
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
        self.epoch_start = self.started
        self.mark: tuple[float, int] | None = None  # (time, batches) after the first batch
        self.images_per_second: float | None = None

    def keras_callback(self) -> keras.callbacks.Callback:
        """The Keras callback that calls this monitor's hooks, for ``model.fit(callbacks=...)``."""
        import keras

        return keras.callbacks.LambdaCallback(
            on_train_begin=self.on_train_begin,
            on_epoch_begin=self.on_epoch_begin,
            on_train_batch_end=self.on_train_batch_end,
            on_epoch_end=self.on_epoch_end,
        )

    # -- reporting
    def report(
        self, state: str, message: str = "", now: float | None = None, *, live: bool = True
    ) -> None:
        """Send the sink a snapshot; ``live=False`` after training (no rate update, no ETA)."""
        now = time.perf_counter() if now is None else now
        self.last_report = now
        if self.sink is None:
            return
        if live:
            self._measure(now)
        eta = self._eta() if live else None  # after training: nothing left to wait for
        self.sink(
            Progress(
                state=state,
                epoch=self.completed,
                epochs=self.epochs,
                batch=self.batch_done,
                batches_per_epoch=self.batches_per_epoch,
                loss=self.loss,
                val_loss=self.val_loss,
                images_per_second=self.images_per_second,
                eta_seconds=eta,
                elapsed_seconds=now - self.started,
                history={key: list(values) for key, values in self.history.items()},
                preview_originals=self.preview,
                preview_reconstructions=self.preview_reconstructions,
                preview_inputs=self.preview_inputs,
                message=message,
            )
        )

    def _measure(self, now: float, *, epoch_end: bool = False) -> None:
        """Images per second in this epoch, from its first batch's end on: that batch holds
        the tracing (first epoch) or the input pipeline's start (measured here: a rate 40x
        too low for a moment at every epoch start), so until a second batch ends the last
        epoch's rate stands. An epoch of one batch is measured whole at its end."""
        if self.mark is not None and self.batch_done > self.mark[1] and now > self.mark[0]:
            done, seconds = self.batch_done - self.mark[1], now - self.mark[0]
            self.images_per_second = done * self.batch_size / seconds
        elif epoch_end and self.completed > 0 and self.batch_done > 0 and now > self.epoch_start:
            images = min(self.batch_done * self.batch_size, self.num_train)
            self.images_per_second = images / (now - self.epoch_start)

    def _eta(self) -> float | None:
        rate = self.images_per_second
        if not rate:
            return None
        left = (self.epochs - self.completed) * self.batches_per_epoch - self.batch_done
        return max(0, left) * self.batch_size / rate

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
        """Keep the initial weights (a stop in the first epoch keeps nothing better)."""
        self.weights = self.model.get_weights()
        self.report("running", "Training started.")

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        """Start the epoch's batch count and rate measurement."""
        self.batch_done = 0
        self.epoch_start = time.perf_counter()
        self.mark = None

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        """After each batch: NaN/inf check, stop flag, a throttled report."""
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
        """A completed epoch: validation, history, weights, events, preview, early stopping."""
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
            import keras

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
        if self.validation is not None:
            self.val_loss = val
            self.history["val_loss"].append(val)
        for term in self.terms:
            self.history[term].append(float(logs.get(term, math.nan)))
            if self.validation is not None:
                self.history[f"val_{term}"].append(float(results.get(term, math.nan)))
        self.weights = self.model.get_weights()
        if self.events is not None:
            self.events.epoch(self.completed, self.history)
        if self.preview is not None:
            self._reconstruct_preview()
        message = f"Epoch {self.completed}/{self.epochs} done."
        if self.patience is not None and val is not None:
            if val < self.best_val:
                self.best_val, self.best_epoch, self.wait = val, self.completed, 0
                self.best_weights = self.weights
            else:
                self.wait += 1
                if self.wait >= self.patience and self.completed < self.epochs:
                    self.early_stopped = True
                    self.model.stop_training = True
                    message = (
                        f"Early stopping after epoch {self.completed}: val_loss has not improved "
                        f"for {self.wait} epochs; keeping epoch {self.best_epoch}."
                    )
        self.report("running", message)

    def _reconstruct_preview(self) -> None:
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
