"""One preflight: every check before a training, and the one home of its memory and time estimates.

:func:`preflight` takes a design, its training settings and what is known of the images (their
shape, how many) and returns a :class:`Preflight` of plain values: the problems, each with its
message (ending with the values received) and the checked fix of the design where there is one;
the memory estimate in bytes and what it counts; the time estimate in seconds and how it was
obtained. The Train page, the Experiments page (per variant, through ``cae.sweep.expand``), the
training request and the CLI all ask it, so they refuse the same things with the same words.

Memory: every layer's output is kept for the backward pass, and its gradient and TensorFlow's
working buffers add about half again: 1.5 float32 values per activation value and image of the
batch (fitted to measured peaks; an inference batch, bounded by ``cae.pixels.INFERENCE_BYTES``,
counts instead when larger). The weights take four copies (weights, gradients, Adam's two moments). It is an
estimate, not a measurement: a design of 62 convolutions of 19 filters on 448x448 (199,710
parameters, every limit of the spec met) took the whole 23 GB of this machine at batch 64 before
it died; the estimate says 91.5 GB and refuses it, and says batch 8 fits a 12.6 GB budget. The
process that trains takes ``PROCESS_BYTES`` before its first batch (TensorFlow loaded), counted
too, so the estimate is the worker's peak: calibrated by bench/memory_estimate.py against the
measured PSS of a worker training one epoch (presets at batch 1 to 256, within 25%; the classic
network at batch 64: 698 MB). The budget is ``cae.admission.memory_budget`` (half the machine's
memory, or ``CAE_MEMORY_BUDGET`` bytes), shared by every job of the server.

Time: a run's work (:func:`work_per_image` x training images x epochs) at the speed fitted to the
earlier runs on this machine (:func:`fit_speed`; ``cae.sweep.rate_samples`` reads them), plus
``START_SECONDS`` for its process. No TensorFlow here.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from cae.admission import memory_budget
from cae.pixels import PREDICT_BATCH, inference_batch
from cae.shapes import Fix, ShapeReport, compute_shapes, needs_onednn_off, work_per_image
from cae.spec import ArchitectureSpec

if TYPE_CHECKING:  # pragma: no cover
    from cae.data import Dataset

BYTES_PER_VALUE = 4  # float32
# the activation kept for the backward pass, and half again for its gradient and working buffers
# (TensorFlow frees each gradient as the backward pass moves on): fitted with PROCESS_BYTES to the
# peaks bench/memory_estimate.py measured, 3 before (the presets at batch 256 and the 448x448
# design at batch 1 then came out 1.13x and 1.85x their measured peaks)
ACTIVATION_FACTOR = 1.5
WEIGHT_COPIES = 4  # weights, gradients, two Adam moments
# a worker process before its batches: Python, TensorFlow and Keras imported, the model built and
# traced, the images held (bench/memory_estimate.py: 697-728 MB RSS over the presets at batch 1,
# an inference batch of 256 images included)
PROCESS_BYTES = 660 * 10**6

# a run's own start besides training: a worker forked with TensorFlow loaded, and the data
# (bench/worker_start.py: 0.28 s median to training, 2.76 s for a plain process)
START_SECONDS = 0.5
DEFAULT_RATE = 2.5e9  # multiply-adds per second of training when no run has been timed here
DEFAULT_OVERHEAD = 5.0  # seconds per run besides its work: build, first trace, test scoring

PROBLEM_KINDS = ("design", "mismatch", "shape", "memory", "images")
"""What a problem is about: a layer that cannot be applied (``design``), a decoder whose output
differs from the input (``mismatch``), images of another shape than the design's input
(``shape``), a training over the memory budget (``memory``), too few images (``images``)."""


class Settings(Protocol):
    """What the preflight reads of a training config (``cae.training.TrainConfig``)."""

    epochs: int
    batch_size: int
    validation_split: float


# ----------------------------------------------------------------------------- memory


@dataclass(frozen=True)
class MemoryEstimate:
    """The estimated training memory of a design at one batch size."""

    batch_size: int
    per_image: int  # bytes of activations, gradients and buffers for one image
    weights: int  # bytes of weights, gradients and optimizer state
    largest: str  # the layer with the largest output, e.g. "encoder[3] Conv 19 3x3: 448x448x19"
    budget: int
    process: int = PROCESS_BYTES  # the worker process itself, TensorFlow loaded
    inference: int = 0  # layer outputs of one inference batch (scoring, previews, codes)

    @property
    def total(self) -> int:
        """Estimated bytes at this batch size (the peak of the worker process that trains): the
        larger of the training batch's and an inference batch's, beside the weights and process."""
        return max(self.per_image * self.batch_size, self.inference) + self.weights + self.process

    @property
    def fits(self) -> bool:
        """True when the estimate is within the budget."""
        return self.total <= self.budget

    @property
    def batch_that_fits(self) -> int:
        """The largest batch size within the budget (0: not even one image)."""
        room = self.budget - self.weights - self.process
        if self.inference > room:
            return 0
        return max(0, int(room // self.per_image)) if self.per_image else self.batch_size

    @property
    def counts(self) -> str:
        """What the estimate counts, in words with its numbers."""
        return (
            f"{ACTIVATION_FACTOR} float32 values per activation value and image (the activation, "
            f"its gradient, working buffers: {size_text(self.per_image)} an image) x batch "
            f"{self.batch_size}, plus {WEIGHT_COPIES} copies of the weights (weights, gradients, "
            f"Adam's two moments: {size_text(self.weights)}), plus the training process itself "
            f"({size_text(self.process)}: TensorFlow loaded, the model, the images); an inference "
            f"batch's layer outputs ({size_text(self.inference)}) when larger than the batch's"
        )

    def describe(self) -> str:
        """One line for people: the estimate against the budget."""
        return (
            f"training memory at batch {self.batch_size}: about {size_text(self.total)} "
            f"(budget {size_text(self.budget)})"
        )


def size_text(count: int) -> str:
    """Bytes for people: ``28.1 MB``, ``181.7 GB``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if count >= scale:
            return f"{count / scale:,.1f} {unit}"
    return f"{count} bytes"


def estimate_memory(
    report: ShapeReport, batch_size: int, budget: int | None = None
) -> MemoryEstimate:
    """The training memory estimate of a shape report's design at ``batch_size``."""
    values = math.prod(report.input_shape) + sum(math.prod(row.output_shape) for row in report.rows)
    largest = max(report.rows, key=lambda row: math.prod(row.output_shape), default=None)
    where = (
        f"{largest.location} {largest.label}: {'x'.join(map(str, largest.output_shape))}"
        if largest is not None
        else "the input"
    )
    inference_images = inference_batch(values, PREDICT_BATCH)
    return MemoryEstimate(
        batch_size=int(batch_size),
        inference=inference_images * values * BYTES_PER_VALUE,
        per_image=int(values * BYTES_PER_VALUE * ACTIVATION_FACTOR),
        weights=report.total_params * BYTES_PER_VALUE * WEIGHT_COPIES,
        largest=where,
        budget=memory_budget() if budget is None else int(budget),
    )


def memory_message(estimate: MemoryEstimate) -> str:
    """Why a design over the budget is refused: the largest tensor and a batch size that fits."""
    fits = estimate.batch_that_fits
    advice = (
        f"use a batch size of at most {fits}"
        if fits >= 1
        else "not even one image fits: make the largest layers smaller"
    )
    return (
        f"This design would need about {size_text(estimate.total)} to train at batch "
        f"{estimate.batch_size}, over this machine's budget of {size_text(estimate.budget)}; the "
        f"largest tensor is {estimate.largest}: {advice}. Received: batch_size={estimate.batch_size}"
    )


# ----------------------------------------------------------------------------- images


def shape_mismatch_message(input_shape: Any, image_shape: Any) -> str:
    """Why images of ``image_shape`` do not fit a design taking ``input_shape``, with the fix."""
    expected = tuple(int(n) for n in input_shape)
    got = tuple(int(n) for n in image_shape)
    if expected[:2] == got[:2]:
        hint = (
            f"the channels differ: set the architecture's input channels to {got[2]}, or use "
            f"{'grayscale' if expected[2] == 1 else 'colour'} images"
        )
    else:
        hint = (
            f"set the architecture's input_shape to {list(got)} (and fit the decoder to it), "
            f"or use a dataset of {expected[0]}x{expected[1]} images"
        )
    return (
        f"The images are {'x'.join(map(str, got))} but the design expects "
        f"{'x'.join(map(str, expected))}: the dataset's images do not fit the architecture; "
        f"{hint}. Received: images={list(got)}, input_shape={list(expected)}"
    )


def check_input_shape(spec: ArchitectureSpec, dataset: Dataset) -> None:
    """Raise ValueError when the dataset's images do not fit the spec's input shape."""
    got = tuple(int(n) for n in dataset.x_train.shape[1:])
    if tuple(spec.input_shape) != got:
        raise ValueError(shape_mismatch_message(spec.input_shape, got))


def adapt_to_images(spec: ArchitectureSpec, image_shape: Sequence[int]) -> Fix | None:
    """The design changed to take images of ``image_shape``: the input shape alone when the
    decoder then still matches, else with the design's first checked fix (another channel count
    needs the decoder's last convolution to give it); None when no checked change fits."""
    label = "Use the images' shape as the design's input"
    adapted = dataclasses.replace(spec, input_shape=tuple(int(n) for n in image_shape))
    try:
        report = compute_shapes(adapted)
    except ValueError:
        return None
    if report.matches:
        return Fix(label, adapted)
    if report.fixes:
        return Fix(f"{label} and {report.fixes[0].description}", report.fixes[0].spec)
    return None


def validation_count(num_train: int, validation_split: float) -> int:
    """How many of ``num_train`` training images are held out for validation (at least one when
    the split is above 0, as Keras does)."""
    return 0 if validation_split <= 0 else max(1, int(round(num_train * validation_split)))


def check_enough_images(num_train: int, validation_split: float) -> None:
    """ValueError, with the smallest number that works, unless at least one image is left to
    train on once the validation images are held out (the Train page checks before the click)."""
    if num_train - validation_count(num_train, validation_split) >= 1:
        return
    needed = next(n for n in range(1, 10_000) if n - validation_count(n, validation_split) >= 1)
    if validation_split > 0:
        raise ValueError(
            f"too few training images: holding out a validation split of {validation_split:g} "
            f"leaves none to train on; use at least {needed} training images or a validation "
            f"split of 0. Received: num_train={num_train}, validation_split={validation_split}"
        )
    raise ValueError(f"there are no training images. Received: num_train={num_train}")


# ----------------------------------------------------------------------------- time


@dataclass(frozen=True)
class Speed:
    """This machine's training speed: a fixed cost per run (building the model, the first trace,
    scoring the test split) plus work at ``rate`` multiply-adds per second."""

    overhead: float  # seconds per run besides the work (process start not included)
    rate: float  # multiply-adds per second
    runs: int  # how many earlier runs it was measured from (0: the default guess)

    def seconds(self, work: float) -> float:
        """Seconds for ``work`` multiply-adds of training, with the run's own start."""
        return START_SECONDS + self.overhead + work / self.rate

    @property
    def basis(self) -> str:
        """How the speed was obtained, one line for people."""
        if self.runs == 0:
            basis = (
                "no run timed on this machine yet: a rough guess of "
                f"{DEFAULT_RATE / 1e9:.1f} G multiply-adds/s"
            )
        else:
            basis = (
                f"{self.runs} earlier run(s) on this machine: {self.overhead:.1f} s per run plus "
                f"{self.rate / 1e9:.2f} G multiply-adds/s"
            )
        return basis + f", and {START_SECONDS:g} s to start each run's process"


@dataclass(frozen=True)
class TimeEstimate:
    """How long a training (or a sweep of them) should take, and what the guess is based on."""

    seconds: float
    speed: Speed
    basis: str  # one line for people
    parts: tuple[float, ...] = ()  # a sweep's: each run's seconds, in order (0: it cannot train)


def fit_speed(samples: Iterable[tuple[float, float]]) -> Speed:
    """The speed that fits (work, wall seconds) of earlier runs: a least-squares line
    wall = overhead + work / rate where the runs differ enough in work to give one, else
    ``DEFAULT_OVERHEAD`` and the median rate of the rest; :data:`DEFAULT_RATE` without runs."""
    points = [(w, s) for w, s in samples if w > 0 and s > 0]
    if not points:
        return Speed(DEFAULT_OVERHEAD, DEFAULT_RATE, 0)
    if len(points) >= 3:
        mean_w = statistics.fmean(w for w, _ in points)
        mean_s = statistics.fmean(s for _, s in points)
        spread = sum((w - mean_w) ** 2 for w, _ in points)
        if spread > 0:
            slope = sum((w - mean_w) * (s - mean_s) for w, s in points) / spread
            overhead = mean_s - slope * mean_w
            plausible = slope > 0 and DEFAULT_RATE / 100 <= 1.0 / slope <= DEFAULT_RATE * 100
            if plausible and 0 <= overhead <= 4 * DEFAULT_OVERHEAD:
                return Speed(overhead, 1.0 / slope, len(points))
    # the rate from runs long enough for their work to show (at least DEFAULT_OVERHEAD of it)
    rates = [
        w / (s - DEFAULT_OVERHEAD)
        for w, s in points
        if s > 2 * DEFAULT_OVERHEAD and w >= DEFAULT_RATE * DEFAULT_OVERHEAD / 10
    ]
    if not rates:  # only short runs: their time is mostly the fixed part
        overhead = statistics.median(s for _, s in points)
        return Speed(overhead, DEFAULT_RATE, len(points))
    return Speed(DEFAULT_OVERHEAD, statistics.median(rates), len(points))


# A design that trains with oneDNN's custom operations off (cae.shapes.needs_onednn_off) takes this
# many times as long per image: 1.80 (classic) and 1.43 (a strided 1x1 design against its sliced
# equivalent) per epoch on a quiet machine, 1.9 under load (docs/benchmarks.md, issue 25).
ONEDNN_OFF_SLOWDOWN = 1.7


def training_work(report: ShapeReport) -> float:
    """A training step's cost per image as this machine pays it: :func:`work_per_image`, times
    ``ONEDNN_OFF_SLOWDOWN`` for a design that trains with oneDNN off."""
    slower = ONEDNN_OFF_SLOWDOWN if needs_onednn_off(report.spec) else 1.0
    return work_per_image(report) * slower


def training_seconds(work: float, num_train: int, epochs: float, speed: Speed) -> float:
    """One run's estimated seconds: ``work`` per image x ``num_train`` images x ``epochs`` (an
    average where a pruner cuts trials short)."""
    return speed.seconds(work * num_train * epochs)


def estimate_sweep(
    runs: Sequence[tuple[float, int] | None],
    num_train: int,
    samples: Iterable[tuple[float, float]],
) -> TimeEstimate:
    """A sweep's time, run after run: each run's (work per image, epochs) (None: it cannot train)
    over ``num_train`` images at the speed fitted to ``samples`` (:func:`fit_speed`)."""
    speed = fit_speed(samples)
    parts = tuple(
        0.0 if run is None else training_seconds(run[0], num_train, run[1], speed) for run in runs
    )
    return TimeEstimate(sum(parts), speed, speed.basis, parts)


# ----------------------------------------------------------------------------- the preflight


@dataclass(frozen=True)
class Problem:
    """One reason a training cannot start, with the checked fix of the design where one exists."""

    kind: str  # one of PROBLEM_KINDS
    message: str  # one line for people, ending with the values received
    fix: Fix | None = None  # the whole corrected design, ready to apply


@dataclass(frozen=True)
class Preflight:
    """What a training would meet: its problems (none: it can start) and its estimates."""

    problems: tuple[Problem, ...]
    memory: MemoryEstimate | None  # None when the design's shapes cannot be computed
    time: TimeEstimate | None  # None without the shapes or the number of images

    @property
    def ok(self) -> bool:
        """True when nothing stands in the training's way."""
        return not self.problems

    @property
    def memory_bytes(self) -> int | None:
        """The estimated training memory in bytes (what it counts: ``memory.counts``)."""
        return self.memory.total if self.memory is not None else None

    @property
    def seconds(self) -> float | None:
        """The estimated seconds of the training (how they were obtained: ``time.basis``)."""
        return self.time.seconds if self.time is not None else None

    def problem(self, *kinds: str) -> Problem | None:
        """The first problem of one of ``kinds`` (any kind when none is given), else None."""
        return next((p for p in self.problems if not kinds or p.kind in kinds), None)

    def raise_first(self, *kinds: str) -> None:
        """ValueError with the message of the first problem of ``kinds``, taken in that order
        (any kind when none is given); nothing when there is none."""
        for kind in kinds or PROBLEM_KINDS:
            found = self.problem(kind)
            if found is not None:
                raise ValueError(found.message)


def preflight(
    spec: ArchitectureSpec,
    config: Settings,
    *,
    image_shape: Sequence[int] | None = None,
    num_train: int | None = None,
    speed_samples: Iterable[tuple[float, float]] = (),
    with_fixes: bool = True,
    budget: int | None = None,
) -> Preflight:
    """Every check before training ``spec`` with ``config`` on images of ``image_shape``
    (``num_train`` of them, validation images included), and the memory and time estimates.
    Unknown image facts (None) are not checked. ``with_fixes`` looks for the checked changes of
    the design (a sweep's variants skip them); ``speed_samples`` are earlier runs' (work, wall
    seconds), from ``cae.sweep.rate_samples``."""
    problems: list[Problem] = []
    report: ShapeReport | None = None
    try:
        report = compute_shapes(spec, with_fixes=with_fixes)
    except ValueError as error:
        problems.append(Problem("design", str(error), _first(getattr(error, "fixes", ()))))
    else:
        if not report.matches:
            problems.append(Problem("mismatch", str(report.problem), _first(report.fixes)))
    if image_shape is not None and tuple(image_shape) != tuple(spec.input_shape):
        fix = adapt_to_images(spec, image_shape) if with_fixes else None
        problems.append(
            Problem("shape", shape_mismatch_message(spec.input_shape, image_shape), fix)
        )
    memory = None
    if report is not None:
        memory = estimate_memory(report, config.batch_size, budget)
        if not memory.fits:
            problems.append(Problem("memory", memory_message(memory)))
    if num_train is not None:
        try:
            check_enough_images(num_train, config.validation_split)
        except ValueError as error:
            problems.append(Problem("images", str(error)))
    time = None
    if report is not None and num_train is not None:
        speed = fit_speed(speed_samples)
        trained = max(0, num_train - validation_count(num_train, config.validation_split))
        seconds = training_seconds(training_work(report), trained, config.epochs, speed)
        basis = speed.basis
        if needs_onednn_off(spec):
            basis += (
                f"; x{ONEDNN_OFF_SLOWDOWN:g} for training with oneDNN off (a 1-tap strided kernel)"
            )
        time = TimeEstimate(seconds, speed, basis)
    return Preflight(tuple(problems), memory, time)


def _first(fixes: Sequence[Fix]) -> Fix | None:
    return fixes[0] if fixes else None
