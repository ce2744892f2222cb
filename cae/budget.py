"""What a training of a design will ask of this machine's memory, before TensorFlow allocates.

Every layer's output is kept for the backward pass and gets a gradient of its own size, and
TensorFlow needs working buffers besides: about three float32 values per activation value and
image of the batch. The weights take four copies (weights, gradients, Adam's two moments). It is an
estimate, not a measurement: a design of 62 convolutions of 19 filters on 448x448 (199,710
parameters, every limit of the spec met) took the whole 23 GB of this machine at batch 64 before
it died; the estimate says 182 GB and refuses it, and says batch 4 fits a 12.6 GB budget. The
classic network at batch 64 is estimated at 28 MB. The budget is half the machine's memory, or
``CAE_MEMORY_BUDGET`` bytes. No
TensorFlow here.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from cae.shapes import ShapeReport

BYTES_PER_VALUE = 4  # float32
ACTIVATION_FACTOR = 3  # the activation, its gradient, and working buffers
WEIGHT_COPIES = 4  # weights, gradients, two Adam moments


def memory_budget() -> int:
    """Bytes a training may take: ``$CAE_MEMORY_BUDGET`` if set, else half the physical memory."""
    raw = os.environ.get("CAE_MEMORY_BUDGET", "").strip()
    if raw:
        try:
            return max(1, int(float(raw)))
        except ValueError:
            pass
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        physical = 8 * 2**30
    return int(physical // 2)


@dataclass(frozen=True)
class MemoryEstimate:
    """The estimated training memory of a design at one batch size."""

    batch_size: int
    per_image: int  # bytes of activations, gradients and buffers for one image
    weights: int  # bytes of weights, gradients and optimizer state
    largest: str  # the layer with the largest output, e.g. "encoder[3] Conv 19 3x3: 448x448x19"
    budget: int

    @property
    def total(self) -> int:
        """Estimated bytes at this batch size."""
        return self.per_image * self.batch_size + self.weights

    @property
    def fits(self) -> bool:
        """True when the estimate is within the budget."""
        return self.total <= self.budget

    @property
    def batch_that_fits(self) -> int:
        """The largest batch size within the budget (0: not even one image)."""
        room = self.budget - self.weights
        return max(0, int(room // self.per_image)) if self.per_image else self.batch_size

    def describe(self) -> str:
        """One line for people: the estimate against the budget."""
        return (
            f"training memory at batch {self.batch_size}: about {_size(self.total)} "
            f"(budget {_size(self.budget)})"
        )


def _size(count: int) -> str:
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
    return MemoryEstimate(
        batch_size=int(batch_size),
        per_image=values * BYTES_PER_VALUE * ACTIVATION_FACTOR,
        weights=report.total_params * BYTES_PER_VALUE * WEIGHT_COPIES,
        largest=where,
        budget=memory_budget() if budget is None else int(budget),
    )


def check_memory(report: ShapeReport, batch_size: int) -> MemoryEstimate:
    """The estimate; ValueError (one line: the largest tensor and a batch size that fits) when
    it is over the budget."""
    estimate = estimate_memory(report, batch_size)
    if not estimate.fits:
        fits = estimate.batch_that_fits
        advice = (
            f"use a batch size of at most {fits}"
            if fits >= 1
            else "not even one image fits: make the largest layers smaller"
        )
        raise ValueError(
            f"This design would need about {_size(estimate.total)} to train at batch "
            f"{batch_size}, over this machine's budget of {_size(estimate.budget)}; the largest "
            f"tensor is {estimate.largest}: {advice}. Received: batch_size={batch_size}"
        )
    return estimate
