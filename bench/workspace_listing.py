"""What a session's run list costs in a class: a gallery (the shipped run) and ``--students``
workspaces of ``--runs`` runs each. One session lists the gallery and its own workspace
(``cae.store.listing_roots``), as the pages do since issue 26; before, every session listed one
folder that held every student's runs. Prints a listing (every run's JSON read; the model
archives' checks are cached per file after the first round, as in the server) and the check a
rerun pays (``runs_state``: one ``stat`` per entry), medians of ``--rounds``.

    .venv/bin/python bench/workspace_listing.py [--students 30] [--runs 5] [--rounds 15]

The runs are copies of the shipped run in a temporary folder, removed at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # as the other benches: no PYTHONPATH

from cae.store import (  # noqa: E402
    DEFAULT_RUN_ID,
    list_runs,
    listing_roots,
    new_workspace_id,
    runs_state,
    workspace_root,
)

SHIPPED = Path(__file__).resolve().parents[1] / "models" / DEFAULT_RUN_ID


def copy_run(target: Path, name: str) -> None:
    """A copy of the shipped run (only the JSON files the listing reads, and the model file)."""
    target.mkdir(parents=True)
    for path in SHIPPED.iterdir():
        if path.suffix in (".json", ".keras"):
            shutil.copy2(path, target / path.name)
    record = json.loads((target / "train.json").read_text())
    record["name"] = name
    (target / "train.json").write_text(json.dumps(record))


def median_ms(action, rounds: int) -> float:
    """The median wall time of ``action()`` over ``rounds`` calls, in milliseconds."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        flat = Path(tmp) / "flat"  # before: one folder with every student's runs
        gallery = Path(tmp) / "models"  # now: the gallery and one folder per workspace
        copy_run(flat / DEFAULT_RUN_ID, "shipped")
        copy_run(gallery / DEFAULT_RUN_ID, "shipped")
        workspaces = []
        for student in range(args.students):
            workspace = new_workspace_id()
            workspaces.append(workspace)
            for run in range(args.runs):
                copy_run(flat / f"s{student}-r{run}", f"s{student}-r{run}")
                copy_run(workspace_root(workspace, gallery) / f"r{run}", f"r{run}")
        mine = workspace_root(workspaces[0], gallery)
        roots = listing_roots(mine)

        def session_listing() -> int:
            return sum(len(list_runs(root)) for root in roots)

        def session_state() -> None:
            for root in roots:
                runs_state(root)

        seen_before, seen_now = len(list_runs(flat)), session_listing()
        cold_before = median_ms(lambda: list_runs(flat), args.rounds)
        cold_now = median_ms(session_listing, args.rounds)
        warm_before = median_ms(lambda: runs_state(flat), args.rounds)
        warm_now = median_ms(session_state, args.rounds)
    print(f"{args.students} students x {args.runs} runs + the shipped run, {args.rounds} rounds")
    print(f"runs a session lists: {seen_now} (before: {seen_before})")
    print(f"a listing: {cold_now:.1f} ms vs {cold_before:.1f} ms before")
    print(f"a rerun's change check: {warm_now:.2f} ms vs {warm_before:.2f} ms before")


if __name__ == "__main__":
    main()
