"""Eight short trainings on the local backend (worker processes forked from the template) and on
a two-node Ray cluster started on this machine (``ray.cluster_utils.Cluster``, one CPU per node),
through the same ``cae.jobs.JobManager`` with two training slots, so both backends run two jobs at
once (issue 29).

Each job trains the classic network for ``--epochs`` on ``--limit`` mnist-sample images. Printed
for each backend: the wall time of the batch of jobs and the jobs per minute; per job the
seconds from admission (the queue launched it) to its end (saved), the training's own seconds
inside the worker (``result.wall_seconds``), and their difference, the per-job overhead
(starting a worker or placing a Ray actor and starting its worker, shipping the request, loading
the data, saving); then the ratios Ray / local. The cluster's start-up is printed apart and not
counted. No asserts.

    .venv/bin/python bench/cluster_jobs.py [--jobs 8] [--limit 128] [--epochs 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run_batch(count: int, limit: int, epochs: int, root: Path) -> dict[str, float]:
    """Start ``count`` jobs at once (two slots), follow them; wall time and per-job figures."""
    from cae.admission import Scheduler
    from cae.jobs import JobManager
    from cae.recipe import DataRecipe
    from cae.request import TrainRequest
    from cae.spec import preset
    from cae.training import TrainConfig

    manager = JobManager(Scheduler(slots=2))
    manager.prewarm()
    started = time.monotonic()
    jobs = []
    for index in range(count):
        request = TrainRequest(
            preset("classic"),
            DataRecipe("mnist-sample", limit=limit),
            TrainConfig(epochs=epochs, batch_size=32, preview_count=2),
            f"bench-{index}",
        )
        jobs.append(manager.start(f"student-{index}", request, root=root))
    launched: dict[int, float] = {}
    ended: dict[int, float] = {}
    while len(ended) < count:
        now = time.monotonic()
        for index, job in enumerate(jobs):
            if job.launched and index not in launched:
                launched[index] = now
            if job.done and index not in ended:
                ended[index] = now
        time.sleep(0.05)
    wall = time.monotonic() - started
    manager.close_spare()
    failed = [job.error for job in jobs if job.error is not None]
    if failed:
        raise SystemExit(f"a job failed: {failed[0]}")
    spans = [ended[index] - launched[index] for index in range(count)]
    trained = [float(job.result.wall_seconds) for job in jobs]
    overheads = [span - inside for span, inside in zip(spans, trained, strict=True)]
    return {
        "wall": wall,
        "per_minute": count / wall * 60,
        "span": statistics.median(spans),
        "trained": statistics.median(trained),
        "overhead": statistics.median(overheads),
    }


def show(label: str, figures: dict[str, float]) -> None:
    """One backend's line."""
    print(
        f"{label:6s} {figures['wall']:7.1f} s for the batch, {figures['per_minute']:5.1f} jobs/min; "
        f"per job (median): {figures['span']:5.1f} s admitted->saved, "
        f"{figures['trained']:5.1f} s training, {figures['overhead']:5.1f} s overhead",
        flush=True,
    )


def main() -> None:
    """Both backends, one after the other, in this process."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--limit", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    from ray.cluster_utils import Cluster

    print(
        f"{args.jobs} jobs, classic, {args.limit} mnist-sample images, {args.epochs} epoch(s), "
        f"two at a time; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="cae-bench-cluster-") as folder:
        os.environ.pop("CAE_CLUSTER", None)
        local = run_batch(args.jobs, args.limit, args.epochs, Path(folder) / "local")
        show("local", local)
        began = time.monotonic()
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        try:
            cluster.add_node(num_cpus=1)
            print(f"(two-node Ray cluster started in {time.monotonic() - began:.1f} s)", flush=True)
            os.environ["CAE_CLUSTER"] = cluster.address
            on_ray = run_batch(args.jobs, args.limit, args.epochs, Path(folder) / "ray")
        finally:
            os.environ.pop("CAE_CLUSTER", None)
            cluster.shutdown()
        show("ray", on_ray)
    print(
        f"ray / local: jobs per minute x{on_ray['per_minute'] / local['per_minute']:.2f}, "
        f"per-job overhead x{on_ray['overhead'] / max(local['overhead'], 1e-9):.2f} "
        f"(+{on_ray['overhead'] - local['overhead']:.1f} s)"
    )


if __name__ == "__main__":
    main()
