"""A class on one server (issue 26's load target): 30 students press Train at once while 4 upload
~500 KB pixel-bomb zips and 2 submit the heavy design, under one memory budget (16 GB here).

This process plays the server: it holds the job manager and the queue the Streamlit server holds
(``cae.jobs.JobManager`` over a ``cae.admission.Scheduler`` kept in a file), starts the trainings
through it as the Train page does (each student's own owner id, forked workers), and reads the
uploads through ``cae.offload.upload_summary_in_worker`` with the student as owner, as the Train
page does. Streamlit itself is left out: it adds its own ~200 MB, measured by
bench/server_memory.py and tests/test_offload.py. Every second it samples the proportional set
size (PSS: a page shared by N processes counts 1/N in each) of this process and of every process
below it, and prints:

- the server's (this process's) peak PSS and RSS: the target is under 2 GB;
- the machine's part, the peak of the sum of PSS over this process and its children: the target
  is under the budget;
- the trainings: finished, stopped, failed; the first and last first-progress times;
- the heavy ones: when each was admitted (or how long it waited) and its memory estimate;
- the uploads: refused or read, with the worker's peak;
- processes that ended by a signal (a kill): the target is none.

    PYTHONPATH=. .venv/bin/python bench/classroom.py [--students 30] [--uploads 4] [--heavy 2]
        [--budget-gb 16] [--epochs 1] [--limit 0] [--heavy-stop 60]

No asserts: a bench. It takes minutes: the 30 trainings share this machine's training slots
(one per 2 cores) and the heavy ones hold theirs for ``--heavy-stop`` seconds each.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GB = 10**9


class Sampler:
    """Peaks of this process's PSS and RSS and of the PSS summed over it and its children."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.server_pss = self.server_rss = self.tree_pss = 0
        self.most_processes = 0
        self.signalled: list[str] = []
        self._me = psutil.Process()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._done.wait(self.interval):
            try:
                mine = self._me.memory_full_info()
            except psutil.Error:
                continue
            self.server_pss = max(self.server_pss, mine.pss)
            self.server_rss = max(self.server_rss, mine.rss)
            total, count = mine.pss, 1
            for child in self._me.children(recursive=True):
                try:
                    total += child.memory_full_info().pss
                    count += 1
                except psutil.Error:
                    continue  # it ended between the listing and the reading
            self.tree_pss = max(self.tree_pss, total)
            self.most_processes = max(self.most_processes, count)


def main() -> None:
    """Run the class and print what it cost."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--uploads", type=int, default=4)
    parser.add_argument("--heavy", type=int, default=2)
    parser.add_argument("--budget-gb", type=float, default=16.0)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--limit", type=int, default=0, help="images per training (0: all)")
    parser.add_argument("--bomb-images", type=int, default=2500)
    parser.add_argument("--heavy-stop", type=float, default=60.0, help="seconds a heavy one runs")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="cae-classroom-"))
    os.environ["CAE_MODELS_DIR"] = str(folder / "models")
    os.environ["CAE_MEMORY_BUDGET"] = str(int(args.budget_gb * GB))
    (folder / "models").mkdir()

    from bench.memory_estimate import HEAVY
    from cae.admission import Scheduler
    from cae.jobs import JobManager
    from cae.offload import StepError, upload_summary_in_worker
    from cae.preflight import estimate_memory
    from cae.recipe import DataRecipe
    from cae.request import TrainRequest
    from cae.shapes import compute_shapes
    from cae.spec import ArchitectureSpec, preset
    from cae.store import new_workspace_id, workspace_root
    from cae.training import TrainConfig
    from tests.uploads import black_png_zip

    scheduler = Scheduler(folder / "models" / ".queue.json")
    manager = JobManager(scheduler)
    import cae.admission

    cae.admission.SCHEDULER = scheduler  # the uploads' admit() asks this server's queue

    limit = args.limit or None
    small = TrainRequest(
        preset("classic"),
        DataRecipe("mnist-sample", limit=limit),
        TrainConfig(epochs=args.epochs, batch_size=64),
        "classroom",
    )
    heavy_spec = ArchitectureSpec.from_dict(HEAVY)
    heavy = TrainRequest(
        heavy_spec,
        DataRecipe("mnist-sample", limit=64),
        TrainConfig(epochs=1, batch_size=1),
        "heavy",
    )
    heavy_bytes = estimate_memory(compute_shapes(heavy_spec), 1).total
    content = black_png_zip(args.bomb_images)
    print(
        f"budget {args.budget_gb:.0f} GB, {scheduler.slots} training slot(s); "
        f"{args.students} x classic ({args.epochs} epoch(s), limit {limit}), "
        f"{args.heavy} x heavy (estimate {heavy_bytes / GB:.1f} GB, stopped after "
        f"{args.heavy_stop:.0f} s), {args.uploads} x {len(content) / 1e3:.0f} KB bomb zip"
    )

    owners = [new_workspace_id() for _ in range(args.students + args.heavy + args.uploads)]
    students, heavies = owners[: args.students], owners[args.students : args.students + args.heavy]
    uploaders = owners[args.students + args.heavy :]
    uploads: dict[str, str] = {}

    def upload(owner: str) -> None:
        started = time.monotonic()
        try:
            summary = upload_summary_in_worker(content, "bomb.zip", samples=1, owner=owner)
            uploads[owner] = (
                f"read in {time.monotonic() - started:.0f} s: {summary.num_train:,} train / "
                f"{summary.num_test:,} test images"
            )
        except StepError as error:
            uploads[owner] = f"refused after {time.monotonic() - started:.0f} s: {error}"

    started = time.monotonic()
    jobs = {}
    with Sampler() as sampler:
        threads = [threading.Thread(target=upload, args=(owner,)) for owner in uploaders]
        for thread in threads:
            thread.start()
        order = list(students)
        for index, owner in enumerate(heavies):  # spread among the class's clicks
            order.insert((index + 1) * len(students) // (len(heavies) + 1), owner)
        for owner in order:
            request = heavy if owner in heavies else small
            folder_of = workspace_root(owner, folder / "models")
            folder_of.mkdir(parents=True, exist_ok=True)
            jobs[owner] = manager.start(owner, request, root=folder_of)
        submitted = time.monotonic() - started
        heavy_seen: dict[str, float] = {}
        first_progress: dict[str, float] = {}
        while not all(job.done for job in jobs.values()):
            now = time.monotonic() - started
            for owner, job in jobs.items():
                if job.done:
                    continue
                if owner not in first_progress and job.snapshot().state == "running":
                    first_progress[owner] = now
                if owner in heavies and job.running and not job.queued:
                    began = heavy_seen.setdefault(owner, now)
                    if now - began > args.heavy_stop and not job.stop_requested:
                        job.stop()
            time.sleep(0.5)
        for thread in threads:
            thread.join()
        wall = time.monotonic() - started

    def outcome(job) -> str:
        return job.snapshot().state

    small_states = [outcome(jobs[owner]) for owner in students]
    print(f"submitted {len(jobs)} trainings in {submitted:.2f} s; all ended after {wall:.0f} s")
    print(
        f"server (this process): peak PSS {sampler.server_pss / GB:.2f} GB, "
        f"RSS {sampler.server_rss / GB:.2f} GB (target < 2 GB)"
    )
    print(
        f"server and its workers: peak PSS {sampler.tree_pss / GB:.2f} GB of the "
        f"{args.budget_gb:.0f} GB budget; at most {sampler.most_processes} processes at once"
    )
    counts = {state: small_states.count(state) for state in sorted(set(small_states))}
    print(f"the {args.students} small trainings: {counts}")
    if first_progress:
        firsts = sorted(first_progress[o] for o in students if o in first_progress)
        if firsts:
            print(f"first progress: first after {firsts[0]:.0f} s, last after {firsts[-1]:.0f} s")
    for owner in heavies:
        job = jobs[owner]
        began = heavy_seen.get(owner)
        when = "never admitted" if began is None else f"admitted after {began:.0f} s"
        print(f"heavy {owner[:6]}: {when}, ended {outcome(job)}")
    for owner in uploaders:
        print(f"upload {owner[:6]}: {uploads.get(owner)}")
    failed = [owner for owner, job in jobs.items() if outcome(job) == "failed"]
    for owner in failed:
        print(f"failed {owner[:6]}: {jobs[owner].snapshot().message}")
    entries = [e for e in scheduler.entries() if e.get("state") not in ("done", "stopped")]
    print(f"queue entries left not done: {len(entries)}")
    manager.stop_all(wait=30)


if __name__ == "__main__":
    main()
