"""What heavy steps cost the process that asks for them (the server, the CLI), before and after
issue 26 moved them into capped worker processes (``cae.offload``). Prints, per case, the peak RSS
of the asking process and of the largest worker, and the wall time.

    PYTHONPATH=. .venv/bin/python bench/server_memory.py [--before 5a21400] [--cap-gb 6]

Cases (files made in a temporary folder, as bench/hostile_inputs.py makes them):
  baseline-bomb   PCA with 4 components and the mean image of the 1,000 black 512x512 RGB PNGs
                  zip (~180 KB; 786 MB as held): ``cae baseline`` of today (a worker) against
                  ``cae.baselines`` of ``--before`` run in the asking process (as the CLI did)
  baseline-npz    the same with 16 components on the 520 KB .npz of zeros (2,040x512x512): what
                  opening Results on a run of it cost the server
  uploads-4       four bomb zips summarised at once from four threads of one process (four
                  students' uploads on one server): in that process (before) or in workers (now)
  evaluate-bomb   ``cae evaluate`` of an (untrained) run of the bomb zip, 512x512x3 in, with its
                  stored test split and with one rebuilt from its recipe (not changed by issue 26:
                  its peak is measured to show it stays under 2 GB)

Every case runs in its own process under an address-space cap (``--cap-gb``), so a case that would
take the machine fails there with MemoryError, reported as such. No asserts: a bench.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys, threading, time
cap, case, mode, folder = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
from pathlib import Path
import psutil
folder = Path(folder)
me, peak, done = psutil.Process(), [0], threading.Event()
def watch():
    while not done.is_set():
        peak[0] = max(peak[0], me.memory_info().rss)
        time.sleep(0.02)
threading.Thread(target=watch, daemon=True).start()
started, status = time.perf_counter(), "ok"
try:
    if case.startswith("baseline"):
        from cae.recipe import DataRecipe
        path, k = (folder / "zip-1000.zip", 4) if case == "baseline-bomb" else (folder / "zeros.npz", 16)
        recipe = DataRecipe.for_file(path)
        if mode == "before":
            import importlib.util
            spec = importlib.util.spec_from_file_location("old_baselines", folder / "old_baselines.py")
            old = sys.modules["old_baselines"] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(old)
            old.pca_baseline(recipe, k, use_cache=False)
            old.mean_image_baseline(recipe, use_cache=False)
        else:
            from cae.offload import baselines_in_worker
            baselines_in_worker(recipe, k, folder / "models")
    else:
        data = (folder / "zip-1000.zip").read_bytes()
        if mode == "before":
            from cae.uploads import upload_summary as summarise
        else:
            from cae.offload import upload_summary_in_worker as summarise
        errors = []
        def one(index):
            try:
                summarise(data, f"upload-{index}.zip", samples=6)
            except Exception as error:
                errors.append(repr(error)[:120])
        threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for thread in threads: thread.start()
        for thread in threads: thread.join()
        if errors:
            status = "refused: " + errors[0]
except MemoryError:
    status = "MemoryError at the cap"
except Exception as error:
    status = f"{type(error).__name__}: {str(error)[:140]}"
seconds = time.perf_counter() - started
done.set()
workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"status": status, "peak": max(peak[0], me.memory_info().rss),
                  "workers": workers, "seconds": seconds}))
"""


def make_files(folder: Path, before: str) -> None:
    """The bomb zip, the .npz of zeros and the old ``cae/baselines.py`` of ``before``."""
    import numpy as np

    sys.path.insert(0, str(REPO))
    from bench.hostile_inputs import black_zip

    black_zip(folder / "zip-1000.zip", 1000, "RGB").close()
    np.savez_compressed(folder / "zeros.npz", x=np.zeros((2040, 512, 512), np.uint8))
    old = subprocess.run(
        ["git", "show", f"{before}:cae/baselines.py"],
        capture_output=True, text=True, cwd=REPO, check=True,
    ).stdout  # fmt: skip
    (folder / "old_baselines.py").write_text(old)


EVALUATE = """
import json, resource, subprocess, sys
cap = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
done = subprocess.run([sys.executable, "-m", "cae", *sys.argv[2:]], capture_output=True, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"code": done.returncode, "err": done.stderr.strip()[-200:], "peak": peak}))
"""


def evaluate_bomb(folder: Path, cap: int) -> None:
    """``cae evaluate`` of a run of the bomb zip, with a stored and a rebuilt test split."""
    sys.path.insert(0, str(REPO))
    from cae.builder import build
    from cae.recipe import DataRecipe, TestSplit, load_recipe
    from cae.spec import ArchitectureSpec
    from cae.store import save_run

    spec = ArchitectureSpec.from_dict(
        {
            "name": "big",
            "input_shape": [512, 512, 3],
            "encoder": [{"type": "pool", "size": 8}, {"type": "conv", "filters": 1, "kernel": 3}],
            "decoder": [
                {"type": "upsample", "size": 8},
                {"type": "conv", "filters": 3, "kernel": 3, "activation": "sigmoid"},
            ],
        }
    )
    recipe = DataRecipe.for_file(folder / "zip-1000.zip")
    root = folder / "models"
    record = {
        "name": "big",
        "train_config": {"data": recipe.to_dict(), "config": {"epochs": 1}},
        "history": {"loss": [0.3]},
        "metrics": {"mse": 0.1, "psnr": 10.0, "ssim": 0.1, "params": 10, "wall_seconds": 1.0},
        "root": root,
    }
    split = TestSplit.of(load_recipe(recipe), recipe)
    runs = {
        "stored": save_run(build(spec).autoencoder, spec, test_split=split, **record),
        "rebuilt": save_run(build(spec).autoencoder, spec, **record),
    }
    del split
    for name, run_id in runs.items():
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-c", EVALUATE, str(cap), "evaluate", run_id, "--root", str(root)],
            capture_output=True, text=True, cwd=REPO, timeout=1800,
        )  # fmt: skip
        report = json.loads(result.stdout.strip().splitlines()[-1])
        print(
            f"evaluate-bomb  {name:<7} cae evaluate peak {report['peak'] / 2**20:7,.0f} MiB, "
            f"exit {report['code']}, {time.perf_counter() - started:6.1f} s",
            flush=True,
        )


def main() -> None:
    """Make the files, run each case before and after in a capped process, print a line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="5a21400", help="the commit to measure before")
    parser.add_argument("--cap-gb", type=float, default=6.0, help="address-space cap per case")
    parser.add_argument(
        "--cases",
        default="baseline-bomb,baseline-npz,uploads-4,evaluate-bomb",
        help="comma-separated",
    )
    args = parser.parse_args()
    cap = int(args.cap_gb * 2**30)
    mib = 2**20
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        make_files(folder, args.before)
        sizes = {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file()}
        print(f"files: {sizes}; each case in its own process, address space capped at "
              f"{args.cap_gb:g} GB")  # fmt: skip
        for case in args.cases.split(","):
            if case == "evaluate-bomb":
                evaluate_bomb(folder, cap)
                continue
            for mode in ("before", "after"):
                result = subprocess.run(
                    [sys.executable, "-c", CHILD, str(cap), case, mode, temp],
                    capture_output=True, text=True, cwd=REPO, timeout=1800,
                    env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
                )  # fmt: skip
                try:
                    report = json.loads(result.stdout.strip().splitlines()[-1])
                except (ValueError, IndexError):
                    tail = (result.stderr.strip().splitlines() or ["?"])[-1]
                    print(f"{case:<14} {mode:<6} CRASHED (exit {result.returncode}): {tail[:150]}")
                    continue
                print(
                    f"{case:<14} {mode:<6} asking process peak {report['peak'] / mib:7,.0f} MiB, "
                    f"largest worker {report['workers'] / mib:7,.0f} MiB, "
                    f"{report['seconds']:6.1f} s  {report['status']}",
                    flush=True,
                )
                time.sleep(1)


if __name__ == "__main__":
    main()
