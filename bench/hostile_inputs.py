"""The multi-GB attacks of the security review, each in its own process under a memory cap: each
must end in a clear refusal (or a load that fits), never a MemoryError traceback or a machine
brought down. Prints, per case, the outcome, the first line of its message and the peak RSS.
Images are held as uint8 (``cae.pixels``) and the upload budget (2 GiB, ``CAE_UPLOAD_BUDGET``)
counts them so: the first three cases now load (786 MB, 1.3 GB, 535 MB held) where they were
refused or took 3 GB as float32.

    PYTHONPATH=. .venv/bin/python bench/hostile_inputs.py [--cap-gb 4] [--server]

Cases (files are made in a temporary folder, a few hundred KB each):
  zip-1000     a 1,000-member zip of black 512x512 RGB PNGs (~200 KB; 786 MB as uint8)
  zip-5000     a 5,000-member zip of black 512x512 grayscale PNGs (1.3 GB as uint8)
  npz-zeros    an .npz of zeros, 2,040x512x512 uint8 (~500 KB; 535 MB as uint8)
  zip-3000     a 3,000-member zip of black 512x512 RGB PNGs (2.4 GB as uint8: over the budget)
  zip-odd      zip-1000 plus a last image of another size: refused after decoding 786 MB
  design-bomb  the 62-convolution design at batch 64 (estimated 182 GB to train)

``--server`` also runs a live ``streamlit run app.py`` and uploads each file on the Train page
through Chromium (Playwright), printing the server's RSS before, its peak while the upload is read
and after the page shows the outcome (issue 15: back within 100 MB of before after a refusal).
No asserts: a bench, run by hand (tests cover each refusal on small inputs).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
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
        from cae.uploads import load_array_file
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


def black_zip(path: Path, count: int, mode: str, name: str = "{}") -> zipfile.ZipFile:
    """A zip archive at ``path`` holding ``count`` copies of a black 512x512 PNG as
    ``black/<name>.png``, left open for more members."""
    archive = zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED)
    image = png(mode)
    for index in range(count):
        archive.writestr(f"black/{name.format(index)}.png", image)
    return archive


def make_cases(folder: Path) -> dict[str, tuple[str, Path]]:
    """The attack files."""
    import numpy as np
    from PIL import Image

    cases = {}
    for name, count, mode in (("zip-1000", 1000, "RGB"), ("zip-5000", 5000, "L")):
        path = folder / f"{name}.zip"
        black_zip(path, count, mode).close()
        cases[name] = ("upload", path)
    path = folder / "zeros.npz"
    np.savez_compressed(path, x=np.zeros((2040, 512, 512), np.uint8))
    cases["npz-zeros"] = ("upload", path)
    path = folder / "zip-3000.zip"
    black_zip(path, 3000, "RGB").close()
    cases["zip-3000"] = ("upload", path)
    path = folder / "zip-odd.zip"
    with black_zip(path, 1000, "RGB", "{:04d}") as archive:
        odd = io.BytesIO()
        Image.new("RGB", (511, 512)).save(odd, format="PNG")
        archive.writestr("black/9999.png", odd.getvalue())  # sorted last: found after decoding
    cases["zip-odd"] = ("upload", path)
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


def server_rss(cases: dict[str, tuple[str, Path]], folder: Path) -> None:
    """Upload each file on the Train page of a live server; print the server's RSS around it."""
    import threading

    import psutil
    from playwright.sync_api import expect, sync_playwright

    sys.path.insert(0, str(REPO))
    from tests.browser import launch_chromium, open_app, serve_app, wait_for_app_idle

    mib = 2**20
    models = folder / "models"
    models.mkdir(exist_ok=True)
    with serve_app("app.py", env={"CAE_MODELS_DIR": str(models)}) as url:
        port = url.rsplit(":", 1)[1]
        server = next(
            child
            for child in psutil.Process().children(recursive=True)
            if "streamlit" in " ".join(child.cmdline()) and port in child.cmdline()
        )
        with sync_playwright() as playwright, launch_chromium(playwright) as browser:
            page = browser.new_page()
            open_app(page, url)
            page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Train").click()
            wait_for_app_idle(page, 120_000)
            page.locator('.st-key-train_dataset [role="combobox"]').click()
            page.get_by_role("option", name="Your own images (upload)").click()
            uploader = page.locator('.st-key-train_upload input[type="file"]')
            uploader.wait_for(state="attached", timeout=60_000)
            wait_for_app_idle(page, 60_000)
            time.sleep(3)
            print(f"live server (pid {server.pid}), RSS {server.memory_info().rss / mib:,.0f} MiB")
            for name, (kind, path) in cases.items():
                if kind != "upload":
                    continue
                before = server.memory_info().rss
                peak, done = [before], threading.Event()

                def watch(peak: list[int] = peak, done: threading.Event = done) -> None:
                    while not done.is_set():
                        peak[0] = max(peak[0], server.memory_info().rss)
                        time.sleep(0.02)

                watcher = threading.Thread(target=watch, daemon=True)
                watcher.start()
                started = time.perf_counter()
                uploader.set_input_files(str(path))
                outcome = page.locator(
                    '[data-testid="stAlert"], [data-testid="stCaptionContainer"]'
                )
                shown = outcome.filter(has_text=path.name)
                expect(shown.first).to_be_visible(timeout=300_000)
                wait_for_app_idle(page, 300_000)
                seconds = time.perf_counter() - started
                time.sleep(2)
                done.set()
                watcher.join()
                after = server.memory_info().rss
                text = shown.first.inner_text().replace("\n", " ")
                status = "refused" if "cannot be used" in text else "accepted"
                print(
                    f"{name:<12} {status:<9} RSS before {before / mib:7,.0f} MiB, peak "
                    f"{peak[0] / mib:7,.0f}, after {after / mib:7,.0f} "
                    f"({(after - before) / mib:+,.0f} MiB) in {seconds:4.1f} s  {text[:110]}"
                )


def main() -> None:
    """Make the files, run each case capped, print a line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap-gb", type=float, default=4.0, help="address-space cap per case")
    parser.add_argument("--server", action="store_true", help="also upload to a live server")
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
        if args.server:
            server_rss(cases, Path(temp))


if __name__ == "__main__":
    main()
