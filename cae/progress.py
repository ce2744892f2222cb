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
from collections import deque
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
# images/s and the ETA are measured over this many of the last completed epochs (and the one
# under way): one epoch's own rate jumped 2x from epoch to epoch on this shared machine (issue 28).
SMOOTHING_EPOCHS = 5
# No ETA ("estimating…") until an epoch has ended and this many batches of the next after its
# first are timed (issue 28: the first epoch's end traces validation and the preview, seconds no
# rate foresees, and one batch's rate on a loaded machine is off 2x; estimates made before then
# jumped 1.5x to 4x). A run of one epoch has one after this many batches and a quarter of it.
ETA_WARMUP_BATCHES = 5
TRACING_TEXT = "tracing the first batch (TensorFlow compiles the training step)"


class EpochWindow:
    """Amounts and seconds of the last ``size`` completed epochs, summed: their rate is the
    total amount over the total time, so one slow or fast epoch moves it by a share of its
    time, not 2x as its own rate would."""

    def __init__(self, size: int = SMOOTHING_EPOCHS) -> None:
        """A window over the last ``size`` epochs (at least 1)."""
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive integer. Received: size={size!r}")
        self.epochs: deque[tuple[float, float]] = deque(maxlen=size)

    def add(self, amount: float, seconds: float) -> None:
        """Record one completed epoch's ``amount`` (images, or 1 epoch) done in ``seconds``."""
        if seconds > 0 and amount >= 0:
            self.epochs.append((float(amount), float(seconds)))

    def clear(self) -> None:
        """Forget every epoch."""
        self.epochs.clear()

    def rate(self, amount: float = 0.0, seconds: float = 0.0) -> float | None:
        """Amount per second over the window plus the epoch under way (``amount`` done so far in
        ``seconds``); None before anything was measured."""
        total_amount = sum(a for a, _ in self.epochs) + max(0.0, amount)
        total_seconds = sum(s for _, s in self.epochs) + max(0.0, seconds)
        if total_seconds <= 0 or total_amount <= 0:
            return None
        return total_amount / total_seconds

    def seconds_per(self) -> float | None:
        """Mean seconds per unit of amount over the window alone (an epoch's wall time when each
        amount is 1); None when empty."""
        rate = self.rate()
        return None if rate is None else 1.0 / rate


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

    @property
    def tracing(self) -> bool:
        """True while the first batch runs: TensorFlow traces and compiles the training step."""
        return self.state == "running" and self.epoch == 0 and self.batch == 0

    def status(self) -> str:
        """What the run is doing, in words, for a progress bar: the start's steps ("Building the
        model…", "Epoch 1/5 · tracing the first batch…") before the batch counts."""
        epochs = self.epochs
        if self.state == "starting":
            return (self.message.rstrip(". ") or "Starting") + "…"
        if self.state == "stopping":
            return "Stopping after this batch…"
        if self.state == "running" and epochs and self.epoch >= epochs:
            return f"All {epochs} epochs done · {self.message or 'finishing'}"
        if self.tracing:
            return f"Epoch 1/{epochs} · {TRACING_TEXT}…"
        if self.state == "running":
            return (
                f"Epoch {min(self.epoch + 1, epochs)}/{epochs} · "
                f"batch {self.batch}/{self.batches_per_epoch or '?'}"
            )
        if self.state == "finished":
            return f"Finished {self.epoch} epoch(s)"
        return f"{self.state.capitalize()} after {self.epoch} epoch(s)"

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
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """A monitor of ``model`` training ``epochs`` epochs over ``num_train`` images (those one
        epoch uses) in batches of ``batch_size``; ``started`` is the run's ``clock()`` (by default
        ``perf_counter()``)."""
        self.model = model
        self.epochs = epochs
        self.batch_size = batch_size
        self.num_train = num_train
        self.batches_per_epoch = max(1, math.ceil(num_train / batch_size))
        self.sink = sink
        self.should_stop = should_stop
        self.report_interval = report_interval
        self.clock = clock
        self.started = clock() if started is None else started
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
        self.images_per_second: float | None = None  # over the window and the epoch under way
        self.rates = EpochWindow()  # (images, seconds) of training, from each first batch's end
        # each epoch's seconds beside its training at its own rate (its first batch's start,
        # validation, preview, events), of the last SMOOTHING_EPOCHS epochs
        self.overheads: deque[float] = deque(maxlen=SMOOTHING_EPOCHS)
        self.eta_ready = False  # once an ETA was given, it is given on every report after
        self.validation_marks: list[float] = []  # the clock at each validation batch's end

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
        now = self.clock() if now is None else now
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
        """Images per second over the last ``SMOOTHING_EPOCHS`` epochs and this one, each measured
        from its first batch's end on: that batch holds the tracing (first epoch) or the input
        pipeline's start (a rate 40x too low for a moment at every epoch start). An epoch of one
        batch is measured whole at its end."""
        images, seconds = self._epoch_so_far(now, epoch_end=epoch_end)
        rate = self.rates.rate(images, seconds)
        if rate is not None:
            self.images_per_second = rate

    def _epoch_so_far(self, now: float, *, epoch_end: bool = False) -> tuple[float, float]:
        """(images, seconds) of the epoch under way, from its first batch's end."""
        if self.mark is not None and self.batch_done > self.mark[1] and now > self.mark[0]:
            return (self.batch_done - self.mark[1]) * self.batch_size, now - self.mark[0]
        if epoch_end and self.batch_done > 0 and now > self.epoch_start:
            return min(self.batch_done * self.batch_size, self.num_train), now - self.epoch_start
        return 0.0, 0.0

    def _end_epoch_timing(
        self, images: float, seconds: float, trained: float, validated: float, now: float
    ) -> None:
        """Record the epoch that ended: its training rate (``images`` in ``seconds``, up to the
        end of its last batch at ``trained``) and its overhead for the ETA, the time beside its
        training at that rate (its first batch's start, validation up to ``validated``, preview,
        events, up to ``now``). The first epoch's overhead is its validation alone, timed from
        the end of its first batch on and scaled to all of them: that batch traced validation,
        and the preview traced too (measured here under load, 7 s of the first epoch against
        the next epochs' 0.8 s). Once a second epoch has ended, the first leaves both windows."""
        if self.completed == 2:
            self.rates.clear()
            self.overheads.clear()
        self.rates.add(images, seconds)
        if not images or not seconds:
            return
        if self.completed == 1:
            marks = self.validation_marks
            if len(marks) > 1:
                overhead = (marks[-1] - marks[0]) * len(marks) / (len(marks) - 1)
            else:  # one validation batch (or none): its whole time
                overhead = validated - trained
        else:
            overhead = now - self.epoch_start - self.num_train * seconds / images
        self.overheads.append(max(0.0, overhead))

    def _eta_ready(self) -> bool:
        """Whether enough is timed for an honest ETA (``ETA_WARMUP_BATCHES``); once it was, it
        stays so."""
        if not self.eta_ready:
            timed = max(0, self.batch_done - self.mark[1]) if self.mark is not None else 0
            if self.completed == 0:
                wanted = max(ETA_WARMUP_BATCHES, math.ceil(self.batches_per_epoch / 4))
                if self.epochs > 1:
                    return False
            else:
                wanted = min(ETA_WARMUP_BATCHES, self.batches_per_epoch - 1)
            self.eta_ready = self.completed >= 2 or (
                self.images_per_second is not None and timed >= wanted
            )
        return self.eta_ready

    def _eta(self) -> float | None:
        """Seconds left, None while ``_eta_ready`` says it is too early: the training left (the
        rest of this epoch and the epochs after it, their images at the rate measured over the
        window and this epoch) plus each epoch's mean overhead over the window (its validation,
        preview and the like; none known in the first epoch)."""
        if self.completed >= self.epochs:
            return 0.0
        rate = self.images_per_second
        if not self._eta_ready() or not rate:
            return None
        within = self.batch_done / self.batches_per_epoch if self.batches_per_epoch else 0.0
        epochs_left = max(0.0, self.epochs - self.completed - min(within, 1.0))
        overhead = sum(self.overheads) / len(self.overheads) if self.overheads else 0.0
        return epochs_left * self.num_train / rate + (self.epochs - self.completed) * overhead

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
        self.epoch_start = self.clock()
        self.mark = None

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        """After each batch: NaN/inf check, stop flag, a throttled report."""
        now = self.clock()
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
        """After each validation batch: its end timed; a stop request ends validation and
        training."""
        self.validation_marks.append(self.clock())
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
        # the training speed, measured before validation
        trained_at = self.clock()
        trained = self._epoch_so_far(trained_at, epoch_end=True)
        self.validation_marks = []
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
        validated_at = self.clock()
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
        self._end_epoch_timing(*trained, trained_at, validated_at, self.clock())
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
