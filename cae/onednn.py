"""oneDNN's custom operations off for the processes that train a design oneDNN cannot train.

TensorFlow 2.21's oneDNN CPU kernels crash the process (SIGSEGV) training a (transposed)
convolution whose kernel is 1 tap wide along an axis strided by 2 or more, on some sizes
(uxlfoundation/oneDNN#6035; which designs: :func:`cae.shapes.needs_onednn_off`). The same
training runs with ``TF_ENABLE_ONEDNN_OPTS=0``, which TensorFlow reads once, when it is imported.
So such a job runs in a plain worker process started with it (``cae.jobs``; a worker forked from
the template would keep the template's oneDNN), and ``python -m cae train`` / ``sweep`` set it
before they import TensorFlow. Forward passes ran with oneDNN on at every size measured, so the
server, which only runs saved models forward, keeps it on.

Measured on this 2-core machine (docs/benchmarks.md, issue 25): training with oneDNN off took
about the same time per epoch as with it on, for the classic design and for a strided 1x1 design
at 64x64; a plain worker takes ~2.5 s longer to start than a forked one.
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
