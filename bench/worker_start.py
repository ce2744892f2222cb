"""A training job's start: a worker forked from the template (cae.zygote) against a plain
``python -m cae.worker`` process, in the same process, rounds alternating which goes first.

Each job trains the classic network for one epoch on ``--limit`` mnist-sample images through a
fresh ``cae.jobs.JobManager`` without a spare (what a Train click meets when no spare waits, and
what every run of an experiment after the first met before the template). Printed per job: the
seconds from ``start`` to "Training started." (the worker has the data and the model built), to
the job's end (saved), and the CPU seconds the machine spent meanwhile (all processes: this is
what a 2-core machine gives up). The first forked job of the process also starts the template
(a TensorFlow import); it is reported apart and left out of the medians. Then the medians and
their ratios (forked / plain). No asserts.

``--spare`` compares instead, both forked, a job that meets a spare (``JobManager.prewarm``: a
worker that ran ``cae.worker.warm_up`` while nobody waited) with one that does not: the seconds as
above, and the CPU seconds of the spare process until it was ready (its warm-up: what the spare
costs in the background, on top of the job).

    .venv/bin/python bench/worker_start.py [--rounds 5] [--limit 256] [--spare]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cae import zygote  # noqa: E402
from cae.jobs import JobManager  # noqa: E402
from cae.recipe import DataRecipe  # noqa: E402
from cae.request import TrainRequest  # noqa: E402
from cae.spec import preset  # noqa: E402
from cae.training import TrainConfig  # noqa: E402


def machine_cpu_seconds() -> float:
    """User + system seconds of every CPU since boot (/proc/stat)."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = stat.readline().split()[1:]
    ticks = sum(int(value) for value in fields[:3])  # user, nice, system
    return ticks / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int | None) -> float:
    """User + system seconds of one process so far (/proc/PID/stat), 0.0 when unreadable."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_job(root: Path, limit: int, *, fork: bool, spare: bool = False) -> dict[str, float]:
    """Start one job on a fresh manager (``spare``: once its spare is warm); its start and end
    times, the machine's CPU during the job and, with a spare, the spare process's own CPU until
    it was ready (its warm-up)."""
    os.environ[zygote.ENV_SWITCH] = "1" if fork else "0"
    request = TrainRequest(
        preset("classic"),
        DataRecipe("mnist-sample", limit=limit),
        TrainConfig(epochs=1, batch_size=64, preview_count=0),
        "worker start",
    )
    jobs = JobManager()
    warm_up_cpu = 0.0
    if spare:
        jobs.prewarm()
        waiting = jobs._spare
        while waiting is not None and waiting.alive() and not waiting.ready_now():
            time.sleep(0.005)
        warm_up_cpu = process_cpu_seconds(waiting.pid if waiting is not None else None)
    cpu = machine_cpu_seconds()
    started = time.perf_counter()
    job = jobs.start(f"bench-{time.monotonic_ns()}", request, root=root)
    training = None
    while not job.done:
        if training is None and job.snapshot().state == "running":
            training = time.perf_counter() - started
        time.sleep(0.005)
    ended = time.perf_counter() - started
    if job.error or not job.run_id:
        raise SystemExit(f"the job failed: {job.error or job.snapshot().message}")
    used = machine_cpu_seconds() - cpu
    jobs.close_spare()
    return {
        "to_training": training if training is not None else ended,
        "to_end": ended,
        "cpu": used,
        "warm_up_cpu": warm_up_cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--limit", type=int, default=256)
    parser.add_argument("--spare", action="store_true", help="spare against none, both forked")
    args = parser.parse_args()
    kinds = {"spare": {"fork": True, "spare": True}, "none": {"fork": True}}
    if not args.spare:
        kinds = {"forked": {"fork": True}, "plain": {"fork": False}}
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cae-bench-start-") as folder:
        root = Path(folder)
        first = one_job(root, args.limit, fork=True)
        print(
            f"first forked job (starts the template, a TensorFlow import): "
            f"{first['to_training']:.2f} s to training, {first['to_end']:.2f} s to the end, "
            f"{first['cpu']:.2f} CPU-s",
            flush=True,
        )
        rows: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
        for number in range(args.rounds):
            order = list(kinds) if number % 2 == 0 else list(kinds)[::-1]
            for kind in order:
                row = one_job(root, args.limit, **kinds[kind])
                rows[kind].append(row)
                print(
                    f"round {number + 1} {kind:<6} {row['to_training']:6.2f} s to training  "
                    f"{row['to_end']:6.2f} s to the end  {row['cpu']:6.2f} CPU-s"
                    + (f" (+ {row['warm_up_cpu']:.2f} warm-up)" if row["warm_up_cpu"] else ""),
                    flush=True,
                )
    medians = {
        kind: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        for kind, runs in rows.items()
    }
    print(f"\nmedians of {args.rounds} rounds, {args.limit} images, 1 epoch:")
    for kind, m in medians.items():
        print(
            f"  {kind:<6} {m['to_training']:6.2f} s to training  {m['to_end']:6.2f} s to the end  "
            f"{m['cpu']:6.2f} CPU-s"
            + (f" (+ {m['warm_up_cpu']:.2f} CPU-s of warm-up before)" if m["warm_up_cpu"] else "")
        )
    first, second = (medians[kind] for kind in kinds)
    print(
        f"  {' / '.join(kinds)}: to training {first['to_training'] / second['to_training']:.2f}, "
        f"to the end {first['to_end'] / second['to_end']:.2f}, CPU {first['cpu'] / second['cpu']:.2f}"
    )
    zygote.close_shared()


if __name__ == "__main__":
    main()
