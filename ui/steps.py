"""Heavy steps a page waits on (baselines, scoring a large test split), run in the background
through the server's one queue (``cae.offload.background_step``): while one waits, the page shows
its place in the queue and estimated start, then that it runs, and redraws itself when it ends.

Why not a spinner: a step that does not fit the memory budget waits behind other students' work,
and a spinner says nothing of how long. The notice appears at once (the step is queued before the
page draws it) and updates every second from a fragment, so the rest of the page stays usable."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import streamlit as st

from cae.admission import SCHEDULER
from cae.offload import ADMISSION_KINDS, STEP_TITLES, StepError, background_step, step_memory_limit
from ui.state import owner_id

GRACE_S = 1.5  # a step that ends this soon is shown at once, without a notice flashing by


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value < 90 else f"{value / 60:.0f} min"


def step_notice_text(kind: str, state: str, place: tuple[int, float] | None, ran: float) -> str:
    """What a waiting step's notice says: its place and estimated start, or how long it runs."""
    title = STEP_TITLES[kind]
    title = title[0].upper() + title[1:]
    if state == "queued" and place is not None:
        number, starts_in = place
        return (
            f"{title}: waiting in the server's queue, place {number}, estimated start in about "
            f"{_seconds(starts_in)} (other students' work runs first; the page goes on meanwhile)."
        )
    if state == "queued":
        return f"{title}: waiting for the server's queue…"
    return f"{title}: running in a worker process ({_seconds(ran)} so far)…"


@st.fragment(run_every=1.0)
def _notice(kind: str, request: dict[str, Any], owner: str) -> None:
    step = background_step(kind, request, owner)
    if step.state in ("done", "failed"):
        st.rerun(scope="app")
    ran = time.monotonic() - step.started if step.started else 0.0
    st.info(step_notice_text(kind, step.state, step.place(), ran), icon=":material/schedule:")


def step_result(kind: str, request: dict[str, Any]) -> Any | None:
    """The result of the step ``kind`` (a key of ``cae.offload.STEPS``) on ``request``, run as
    this browser's workspace's step; None while it waits or runs (a notice says where it is).
    StepError (a ValueError) with the step's one-line reason when it failed: it is not run again
    on every rerun (a refusal would only be refused again)."""
    owner = owner_id()
    step = background_step(kind, request, owner)
    step.wait(GRACE_S)
    if step.state == "done":
        return step.result
    if step.state == "failed":
        raise StepError(step.error)
    _notice(kind, request, owner)
    return None


@contextmanager
def queue_notice(kind: str) -> Iterator[None]:
    """Around a step the page waits on in place (reading an upload, whose bytes are the page's):
    when the server's queue would hold it, a notice with its place and estimated start is shown
    while it waits and runs, and taken away after."""
    place = SCHEDULER.preview(owner_id(), ADMISSION_KINDS[kind], step_memory_limit())
    if place is None:
        yield
        return
    notice = st.empty()
    notice.info(step_notice_text(kind, "queued", place, 0.0), icon=":material/schedule:")
    try:
        yield
    finally:
        notice.empty()
