"""The multi-GB attacks of the security review, each in its own process under a memory cap: each
must end in a clear refusal (or a load that fits), never a MemoryError traceback or a machine
brought down. Prints, per case, the outcome, the first line of its message and the peak RSS.

    PYTHONPATH=. .venv/bin/python bench/hostile_inputs.py [--cap-gb 4]

Cases (files are made in a temporary folder, a few hundred KB each):
  zip-1000     a 1,000-member zip of black 512x512 RGB PNGs (~200 KB; 3.1 GB as float32)
  zip-5000     a 5,000-member zip of black 512x512 grayscale PNGs (5.2 GB as float32)
  npz-zeros    an .npz of zeros, 2,040x512x512 uint8 (~500 KB; 2.1 GB as float32)
  design-bomb  the 62-convolution design at batch 64 (estimated 182 GB to train)
No asserts: a bench, run by hand (tests cover each refusal on small inputs).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys
cap = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
kind, path = sys.argv[2], sys.argv[3]
try:
    if kind == "upload":
        from cae.data import load_array_file
        data = load_array_file(path)
        outcome = f"loaded {data.num_train + data.num_test} images"
    else:
        from cae.recipe import DataRecipe
        from cae.request import TrainRequest
        from cae.spec import ArchitectureSpec
        from cae.training import TrainConfig
        spec = ArchitectureSpec.from_json(open(path).read())
        TrainRequest(spec, DataRecipe(), TrainConfig(batch_size=64), "bomb")
        outcome = "accepted"
    status = "ok"
except ValueError as error:
    status, outcome = "refused", str(error)
except MemoryError:
    status, outcome = "MemoryError", "(a traceback in the app)"
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"status": status, "message": outcome, "peak": peak}))
"""


def png(mode: str) -> bytes:
    """A black 512x512 PNG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, (512, 512)).save(buffer, format="PNG")
    return buffer.getvalue()


def make_cases(folder: Path) -> dict[str, tuple[str, Path]]:
    """The attack files."""
    import numpy as np

    cases = {}
    for name, count, mode in (("zip-1000", 1000, "RGB"), ("zip-5000", 5000, "L")):
        path = folder / f"{name}.zip"
        image = png(mode)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for index in range(count):
                archive.writestr(f"black/{index}.png", image)
        cases[name] = ("upload", path)
    path = folder / "zeros.npz"
    np.savez_compressed(path, x=np.zeros((2040, 512, 512), np.uint8))
    cases["npz-zeros"] = ("upload", path)
    path = folder / "bomb.json"
    path.write_text(
        json.dumps(
            {
                "name": "bomb",
                "input_shape": [28, 28, 1],
                "encoder": [{"type": "upsample", "size": 16}]
                + [{"type": "conv", "filters": 19, "kernel": 3}] * 62
                + [{"type": "pool", "size": 16}],
                "decoder": [{"type": "conv", "filters": 1, "kernel": 3, "activation": "sigmoid"}],
            }
        )
    )
    cases["design-bomb"] = ("design", path)
    return cases


def main() -> None:
    """Make the files, run each case capped, print a line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap-gb", type=float, default=4.0, help="address-space cap per case")
    args = parser.parse_args()
    cap = int(args.cap_gb * 2**30)
    with tempfile.TemporaryDirectory() as temp:
        cases = make_cases(Path(temp))
        print(f"each case in its own process, address space capped at {args.cap_gb:g} GB")
        for name, (kind, path) in cases.items():
            size = path.stat().st_size
            result = subprocess.run(
                [sys.executable, "-c", CHILD, str(cap), kind, str(path)],
                capture_output=True, text=True, cwd=REPO, timeout=600,
                env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
            )  # fmt: skip
            try:
                report = json.loads(result.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                tail = (result.stderr.strip().splitlines() or ["?"])[-1]
                print(f"{name:<12} {size:>11,} B  CRASHED (exit {result.returncode}): {tail[:150]}")
                continue
            print(
                f"{name:<12} {size:>11,} B  {report['status']:<11} peak {report['peak'] / 2**20:7,.0f} MiB"
                f"  {report['message'][:150]}"
            )


if __name__ == "__main__":
    main()
