"""One memory budget and one fair queue for every heavy step of the server.

The machine's budget is half its physical memory, or ``CAE_MEMORY_BUDGET`` bytes: what the
server's jobs may take together (a training estimated over it is refused outright by
``cae.preflight``). Every heavy step is an :class:`Entry` of the one :class:`Scheduler`, with its
owner (a student), its kind (:data:`KINDS`), its estimated bytes (``cae.preflight.estimate_memory``
for a training) and seconds. The policy (:func:`queue_order`, :func:`admissible`), pure functions
over plain entries:

- one running step per owner among the short ones (a baseline, an evaluation, an upload);
- interactive kinds (a Train click, a baseline, an evaluation, an upload) go first, in the order
  they came; experiment runs after them, round-robin between owners (the owner whose last run
  started longest ago goes next), each owner's in the order they came;
- trainings (``train`` and ``experiment``) take one of :func:`training_slots` (one per 2 cores),
  fairly and without leaving a slot idle: a free slot goes to the first training in that order
  among the students who hold the fewest running trainings. So every student's first training
  starts before anyone's second, and a student's second (third, ...) one starts only when no
  other student's training waits for the slot (a search's trials, a sweep's runs, on a server or
  cluster with idle slots). Nothing is preempted: a newcomer takes the next slot that frees;
- an entry starts only when its bytes fit what the running ones leave of the budget (alone, it
  always starts: the preflight refused anything over the whole budget); the first one in order
  that does not fit waits, and those behind it wait with it, so a big one is never starved.

A queued entry's place and estimated start (:meth:`Scheduler.where`) are known at once. A step
outside the job manager asks with :func:`admit` (``with admit(owner, "baseline", bytes,
label): ...``), which blocks until it is its turn. The queue is written to a JSON file (atomically)
at every change, so a restart finds it: :meth:`Scheduler.restore` marks the entries that were
running as ``interrupted`` and returns the queued ones for their owners to requeue. No Streamlit,
no TensorFlow here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("train", "experiment", "baseline", "evaluate", "upload")
INTERACTIVE_KINDS = ("train", "baseline", "evaluate", "upload")  # a person waits on these
TRAINING_KINDS = ("train", "experiment")  # these take a training slot
CORES_PER_SLOT = 2  # measured: one training keeps ~1 to 1.2 cores busy, its pipeline the rest
MAX_SLOTS = 8
BUDGET_SHARE = 0.5  # of the physical memory: the server's jobs together
ACTIVE = ("queued", "running")
FINISHED_KEPT = 200  # ended entries kept for the admin page (and the file), newest first


def memory_budget() -> int:
    """Bytes the server's jobs may take together: ``$CAE_MEMORY_BUDGET`` if set, else
    ``BUDGET_SHARE`` of the physical memory."""
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
    return int(physical * BUDGET_SHARE)


def available_cpus() -> int:
    """The CPUs this process may run on (``sched_getaffinity``, else ``os.cpu_count``)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def training_slots(cpus: int | None = None) -> int:
    """How many trainings run at once: one per ``CORES_PER_SLOT`` cores, 1 to ``MAX_SLOTS``;
    ``$CAE_TRAINING_SLOTS`` (a whole number from 1) overrides it for this machine, as a server
    whose trainings run on a Ray cluster (``CAE_CLUSTER``) sets it to what the cluster holds."""
    if cpus is None:
        raw = os.environ.get("CAE_TRAINING_SLOTS", "").strip()
        if raw.isdigit() and int(raw) > 0:
            return int(raw)
    cpus = available_cpus() if cpus is None else cpus
    return max(1, min(MAX_SLOTS, cpus // CORES_PER_SLOT))


class AdmissionError(RuntimeError):
    """A step was not admitted: its wait ran out, or it was stopped while it waited."""


@dataclass
class Entry:
    """One heavy step in the queue (plain data; ``payload`` is what a restart needs to requeue)."""

    entry_id: str
    owner: str
    kind: str
    label: str
    bytes: int = 0
    seconds: float = 0.0  # the estimated duration
    queued_at: float = 0.0
    state: str = "queued"  # queued, running, done, stopped, interrupted
    started_at: float | None = None
    ended_at: float | None = None
    group: str | None = None  # the experiment an experiment run belongs to
    message: str = ""
    payload: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"kind must be one of {', '.join(KINDS)}. Received: kind={self.kind!r}"
            )
        if not isinstance(self.owner, str) or not self.owner:
            raise ValueError(f"owner must be a non-empty string. Received: owner={self.owner!r}")
        if not isinstance(self.bytes, int) or self.bytes < 0:
            raise ValueError(f"bytes must be an integer >= 0. Received: bytes={self.bytes!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Entry:
        """An entry from :meth:`to_dict` output (unknown keys ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})


def queue_order(queued: Iterable[Entry], last_turn: dict[str, float] | None = None) -> list[Entry]:
    """The queued entries in priority order: interactive kinds first (first come, first served),
    then experiment runs round-robin between owners, the owner whose last run started longest
    ago (``last_turn``: owner -> time) first. :func:`admissible` offers the slots in this order
    (students holding fewer trainings first); :func:`estimated_starts` gives the order they start
    in."""
    last_turn = last_turn or {}
    entries = sorted(queued, key=lambda e: (e.queued_at, e.entry_id))
    first = [e for e in entries if e.kind in INTERACTIVE_KINDS]
    per_owner: dict[str, list[Entry]] = {}
    for entry in entries:
        if entry.kind not in INTERACTIVE_KINDS:
            per_owner.setdefault(entry.owner, []).append(entry)
    owners = sorted(per_owner, key=lambda o: (last_turn.get(o, 0.0), per_owner[o][0].queued_at))
    rounds: list[Entry] = []
    while any(per_owner.values()):
        for owner in owners:
            if per_owner[owner]:
                rounds.append(per_owner[owner].pop(0))
    return first + rounds


def admissible(
    ordered: Sequence[Entry], running: Sequence[Entry], *, slots: int, budget: int
) -> list[Entry]:
    """The entries of ``ordered`` (from :func:`queue_order`) that start now, beside ``running``:
    one short step (baseline, evaluation, upload) per owner; trainings within ``slots``, taken in
    rounds: first those of students who hold no training, then one more each for those who hold
    one, and so on, each round in ``ordered`` order (a student's second training only takes a
    slot no one else's waits for); bytes within ``budget`` (an entry alone always starts), the
    first one that does not fit holding the ones behind it. A student's own training does not
    hold their baseline, evaluation or upload: those are short, and the page they look at waits
    on them."""
    holds = Counter(e.owner for e in running if e.kind in TRAINING_KINDS)
    stepping = {e.owner for e in running if e.kind not in TRAINING_KINDS}
    trainings = sum(holds.values())
    used = sum(e.bytes for e in running)
    started: list[Entry] = []
    waiting, level = list(ordered), 0  # this round: owners holding at most `level` trainings
    while waiting:
        later: list[Entry] = []
        for entry in waiting:
            if entry.kind in TRAINING_KINDS:
                if trainings >= slots or holds[entry.owner] > level:
                    later.append(entry)
                    continue
            elif level or entry.owner in stepping:
                continue  # short steps: one per owner, in the first round only
            if used + entry.bytes > budget and (running or started):
                return started
            started.append(entry)
            if entry.kind in TRAINING_KINDS:
                holds[entry.owner] += 1
                trainings += 1
            else:
                stepping.add(entry.owner)
            used += entry.bytes
        if trainings >= slots:
            break
        waiting, level = later, level + 1
    return started


def estimated_starts(
    ordered: Sequence[Entry], running: Sequence[Entry], *, slots: int, now: float
) -> dict[str, float]:
    """Seconds until each queued entry starts (at least 0), in the order they would start: the
    short steps at once (they wait for the budget only), then the trainings as the slots free up
    (running ones end at their estimates), each free slot going to the first of ``ordered``
    among the owners who then hold the fewest trainings, as :func:`admissible` does."""
    starts = {e.entry_id: 0.0 for e in ordered if e.kind not in TRAINING_KINDS}
    busy = [
        (max(now, (e.started_at or now) + e.seconds), e.owner)
        for e in running
        if e.kind in TRAINING_KINDS
    ]
    waiting = [e for e in ordered if e.kind in TRAINING_KINDS]
    clock, slots = now, max(1, slots)
    while waiting:
        busy = [(end, owner) for end, owner in busy if end > clock]
        if len(busy) >= slots:
            clock = min(end for end, _ in busy)  # the next slot to free
            continue
        holds = Counter(owner for _, owner in busy)
        entry = min(waiting, key=lambda e: holds[e.owner])  # the first of the fewest
        waiting.remove(entry)
        starts[entry.entry_id] = clock - now
        busy.append((clock + entry.seconds, entry.owner))
    return starts


class Scheduler:
    """The one queue of the server: entries in, admitted by :func:`admissible`; thread-safe."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        slots: int | None = None,
        budget: int | None = None,
    ) -> None:
        """A queue kept in the JSON file ``path`` (None: in memory only)."""
        self.path = Path(path) if path is not None else None
        self._slots = slots
        self._budget = budget
        self._lock = threading.RLock()
        self._entries: dict[str, Entry] = {}
        self._on_admit: dict[str, Callable[[Entry], None]] = {}
        self._on_stop: dict[str, Callable[[Entry], None]] = {}
        self._last_turn: dict[str, float] = {}

    @property
    def slots(self) -> int:
        """Training slots (given, else :func:`training_slots`)."""
        return self._slots if self._slots is not None else training_slots()

    @property
    def budget(self) -> int:
        """The memory budget in bytes (given, else :func:`memory_budget`)."""
        return self._budget if self._budget is not None else memory_budget()

    # -- in and out
    def submit(
        self,
        owner: str,
        kind: str,
        nbytes: int,
        label: str,
        *,
        seconds: float = 0.0,
        group: str | None = None,
        payload: dict[str, Any] | None = None,
        on_admit: Callable[[Entry], None] | None = None,
        on_stop: Callable[[Entry], None] | None = None,
    ) -> Entry:
        """Queue a step; ``on_admit(entry)`` is called (outside the lock) when it may start,
        ``on_stop(entry)`` when the admin page stops it while it runs."""
        entry = Entry(
            entry_id=secrets.token_hex(6),
            owner=owner,
            kind=kind,
            label=str(label),
            bytes=int(nbytes),
            seconds=float(seconds),
            queued_at=time.time(),
            group=group,
            payload=dict(payload or {}),
        )
        with self._lock:
            self._entries[entry.entry_id] = entry
            if on_admit is not None:
                self._on_admit[entry.entry_id] = on_admit
            if on_stop is not None:
                self._on_stop[entry.entry_id] = on_stop
        self.pump()
        return entry

    def release(self, entry_id: str, state: str = "done", message: str = "") -> None:
        """End an entry (running or queued) and let the next ones start."""
        with self._lock:
            entry = self._entries.get(entry_id)
            if entry is None or entry.state not in ACTIVE:
                return
            entry.state, entry.ended_at = state, time.time()
            entry.message = message or entry.message
            self._on_admit.pop(entry_id, None)
            self._on_stop.pop(entry_id, None)
            self._prune_locked()
        self.pump()

    def stop(self, entry_id: str) -> bool:
        """Stop an entry: a queued one leaves the queue, a running one is asked to stop (its
        owner releases it when it has). False when it was not active."""
        with self._lock:
            entry = self._entries.get(entry_id)
            if entry is None or entry.state not in ACTIVE:
                return False
            on_stop = self._on_stop.get(entry_id)
            queued = entry.state == "queued"
        if on_stop is not None:
            on_stop(entry)  # the owner's code decides how (a job stops and saves)
        elif queued:
            self.release(entry_id, "stopped", "Stopped before it started.")
        return True

    def pump(self) -> list[Entry]:
        """Start what the policy admits now; the entries started."""
        with self._lock:
            running = [e for e in self._entries.values() if e.state == "running"]
            queued = [e for e in self._entries.values() if e.state == "queued"]
            ordered = queue_order(queued, self._last_turn)
            started = admissible(ordered, running, slots=self.slots, budget=self.budget)
            now = time.time()
            callbacks = []
            for entry in started:
                entry.state, entry.started_at = "running", now
                if entry.kind not in INTERACTIVE_KINDS:
                    self._last_turn[entry.owner] = now
                callbacks.append((entry, self._on_admit.pop(entry.entry_id, None)))
            self._save_locked()
        for entry, callback in callbacks:
            if callback is not None:
                try:
                    callback(entry)
                except Exception as error:  # noqa: BLE001 - the entry ends, the queue goes on
                    self.release(entry.entry_id, "failed", f"{type(error).__name__}: {error}")
        return started

    # -- what people see
    def where(self, entry_id: str) -> tuple[int, float] | None:
        """A queued entry's place (1: next) and its estimated start in seconds; None when it is
        not queued."""
        with self._lock:
            running = [e for e in self._entries.values() if e.state == "running"]
            ordered = queue_order(
                (e for e in self._entries.values() if e.state == "queued"), self._last_turn
            )
            starts = estimated_starts(ordered, running, slots=self.slots, now=time.time())
        if entry_id not in starts:
            return None
        return list(starts).index(entry_id) + 1, starts[entry_id]

    def preview(self, owner: str, kind: str, nbytes: int) -> tuple[int, float] | None:
        """Where a step of ``owner`` taking ``nbytes`` would wait if it were queued now: its
        place and estimated start in seconds; None when it would start at once."""
        probe = Entry(
            entry_id="preview",
            owner=owner,
            kind=kind,
            label="preview",
            bytes=int(nbytes),
            queued_at=time.time(),
        )
        with self._lock:
            running = [e for e in self._entries.values() if e.state == "running"]
            queued = [e for e in self._entries.values() if e.state == "queued"]
            ordered = queue_order([*queued, probe], self._last_turn)
            if probe in admissible(ordered, running, slots=self.slots, budget=self.budget):
                return None
            starts = estimated_starts(ordered, running, slots=self.slots, now=time.time())
        return list(starts).index(probe.entry_id) + 1, starts[probe.entry_id]

    def entries(self) -> list[dict[str, Any]]:
        """Every entry as plain data, running first, then queued in the order they would start
        (with ``place`` and ``starts_in``), then the ended ones, newest first."""
        with self._lock:
            running = [e for e in self._entries.values() if e.state == "running"]
            ordered = queue_order(
                (e for e in self._entries.values() if e.state == "queued"), self._last_turn
            )
            starts = estimated_starts(ordered, running, slots=self.slots, now=time.time())
            ended = sorted(
                (e for e in self._entries.values() if e.state not in ACTIVE),
                key=lambda e: e.ended_at or 0.0,
                reverse=True,
            )
            rows = [e.to_dict() | {"place": None, "starts_in": 0.0} for e in running]
            queued = {e.entry_id: e for e in ordered}
            rows += [
                queued[entry_id].to_dict() | {"place": n, "starts_in": seconds}
                for n, (entry_id, seconds) in enumerate(starts.items(), 1)
            ]
            rows += [e.to_dict() | {"place": None, "starts_in": None} for e in ended]
        return rows

    def get(self, entry_id: str) -> Entry | None:
        """A copy of one entry, or None."""
        with self._lock:
            entry = self._entries.get(entry_id)
            return dataclasses.replace(entry) if entry is not None else None

    def active(self, owner: str | None = None, kind: str | None = None) -> list[Entry]:
        """Copies of the queued and running entries (of ``owner``, of ``kind``)."""
        with self._lock:
            return [
                dataclasses.replace(e)
                for e in self._entries.values()
                if e.state in ACTIVE
                and (owner is None or e.owner == owner)
                and (kind is None or e.kind == kind)
            ]

    # -- on disk
    def _prune_locked(self) -> None:
        ended = sorted(
            (e for e in self._entries.values() if e.state not in ACTIVE),
            key=lambda e: e.ended_at or 0.0,
            reverse=True,
        )
        for entry in ended[FINISHED_KEPT:]:
            del self._entries[entry.entry_id]

    def _save_locked(self) -> None:
        if self.path is None:
            return
        data = {"version": 1, "entries": [e.to_dict() for e in self._entries.values()]}
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}")
            tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
            os.replace(tmp, self.path)

    def restore(self) -> list[Entry]:
        """Read the queue file after a restart: the entries that were running become
        ``interrupted``; the queued ones are returned (removed here) for their owners to submit
        again. Unreadable files count as an empty queue."""
        if self.path is None:
            return []
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            rows = data["entries"] if isinstance(data, dict) else []
        except (OSError, ValueError, KeyError):
            return []
        requeue: list[Entry] = []
        with self._lock:
            for row in rows:
                try:
                    entry = Entry.from_dict(row)
                except (TypeError, ValueError):
                    continue
                if entry.entry_id in self._entries:
                    continue  # submitted by this process already
                if entry.state == "queued":
                    requeue.append(entry)
                    continue
                if entry.state == "running":
                    entry.state, entry.ended_at = "interrupted", time.time()
                    entry.message = "The server stopped while this ran."
                self._entries.setdefault(entry.entry_id, entry)
            self._save_locked()
        return sorted(requeue, key=lambda e: e.queued_at)


class Ticket:
    """An admitted step: ``release()`` (or leaving its ``with`` block) frees its place."""

    def __init__(self, scheduler: Scheduler, entry: Entry) -> None:
        """Wrap an admitted ``entry`` of ``scheduler``."""
        self.scheduler = scheduler
        self.entry = entry

    def release(self, state: str = "done") -> None:
        """Give the budget and the slot back."""
        self.scheduler.release(self.entry.entry_id, state)

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        self.release("failed" if error is not None else "done")


SCHEDULER = Scheduler()  # the server's queue; cae.jobs gives it its file under the runs folder


class PendingStep:
    """A step in the queue that may not have started: its entry (for its place) and a wait."""

    def __init__(self, scheduler: Scheduler, owner: str, kind: str, nbytes: int, label: str):
        """Queue the step at once, so its place is known before anyone waits on it."""
        self.scheduler = scheduler
        self.label = label
        self._admitted = threading.Event()
        self._stopped = threading.Event()
        self.entry = scheduler.submit(
            owner,
            kind,
            nbytes,
            label,
            on_admit=lambda _: self._admitted.set(),
            on_stop=self._stop,
        )

    def _stop(self, entry: Entry) -> None:
        self._stopped.set()
        self.scheduler.release(entry.entry_id, "stopped")

    def place(self) -> tuple[int, float] | None:
        """Its place (1: next) and estimated start in seconds while queued; None once started."""
        return self.scheduler.where(self.entry.entry_id)

    def wait(self, timeout: float | None = None) -> Ticket:
        """Wait for the admission; a :class:`Ticket`. AdmissionError when ``timeout`` seconds
        pass first or the step is stopped while it waits."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._admitted.wait(0.05):
            if self._stopped.is_set() or (deadline is not None and time.monotonic() >= deadline):
                self.scheduler.release(self.entry.entry_id, "stopped")
                entry = self.entry
                raise AdmissionError(
                    f"{self.label} was not admitted: "
                    + ("stopped while it waited" if self._stopped.is_set() else "its wait ran out")
                    + f". Received: owner={entry.owner!r}, kind={entry.kind!r}, "
                    f"bytes={entry.bytes}, timeout={timeout}"
                )
        return Ticket(self.scheduler, self.entry)


def admit(
    owner: str,
    kind: str,
    nbytes: int,
    label: str,
    *,
    timeout: float | None = None,
    scheduler: Scheduler | None = None,
) -> Ticket:
    """Wait for the queue to admit one heavy step of ``owner`` taking about ``nbytes``; a
    :class:`Ticket` to use as ``with admit(...):``. AdmissionError when ``timeout`` seconds pass
    first or the step is stopped while it waits."""
    return PendingStep(scheduler or SCHEDULER, owner, kind, nbytes, label).wait(timeout)
