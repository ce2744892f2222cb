"""oneDNN's custom operations off for the processes that train a design oneDNN cannot train.

TensorFlow 2.21's oneDNN CPU kernels crash the process (SIGSEGV) training a (transposed)
convolution whose kernel is 1 tap wide along an axis strided by 2 or more, on some sizes
(uxlfoundation/oneDNN#6035; which designs: :func:`cae.shapes.needs_onednn_off`). The same
training runs with ``TF_ENABLE_ONEDNN_OPTS=0``, which TensorFlow reads once, when it is imported.
So such a job runs in a plain worker process started with it (``cae.jobs``; a worker forked from
the template would keep the template's oneDNN), and ``python -m cae train`` / ``sweep`` set it
before they import TensorFlow. Forward passes ran with oneDNN on at every size measured, so the
server, which only runs saved models forward, keeps it on.

The cost, measured on this 2-core machine under load (docs/benchmarks.md, issue 25): an epoch
with oneDNN off takes 1.4-1.9x as long (the classic design, and a strided 1x1 design at 64x64
against the same layers built as a slice and an unstrided convolution with oneDNN on), and a
plain worker starts ~2.5 s later than a forked one. Only these designs pay it; refusing them was
the alternative. Building them as slices instead keeps oneDNN's speed but puts custom layers in
saved models (a transposed 1x1 convolution is a zero insertion with the bias after it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from cae.spec import ArchitectureSpec

VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
OFF = "0"


def environment_for(spec: ArchitectureSpec) -> dict[str, str]:
    """The variables a process that trains ``spec`` must start with: oneDNN off where the design
    needs it, else none."""
    from cae.shapes import needs_onednn_off

    return {VARIABLE: OFF} if needs_onednn_off(spec) else {}


def is_off(environ: dict[str, str] | None = None) -> bool:
    """True when ``environ`` (this process's environment by default) turns oneDNN off."""
    return (os.environ if environ is None else environ).get(VARIABLE) == OFF


def turn_off_for(specs: Iterable[ArchitectureSpec]) -> bool:
    """Before this process imports TensorFlow: turn oneDNN off if any of ``specs`` needs it;
    True when it did. Raises RuntimeError when TensorFlow is already imported with it on (it
    would crash), naming what to set."""
    if not any(environment_for(spec) for spec in specs) or is_off():
        return False
    if "tensorflow" in sys.modules:
        raise RuntimeError(
            "this design has a kernel 1 tap wide along a strided axis, which oneDNN cannot "
            f"train, and TensorFlow is already imported with oneDNN on: set {VARIABLE}={OFF} "
            f"before it is imported. Received: {VARIABLE}={os.environ.get(VARIABLE)!r}"
        )
    os.environ[VARIABLE] = OFF
    return True
