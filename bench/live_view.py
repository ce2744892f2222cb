"""What the Train page's live view costs a training: the CPU a running job gets while a browser
shows its live view (bar, numbers, loss curves, preview), against the same job while that browser
shows Home (nobody watching), in this one process.

Per round and per app (this tree; with ``--compare REF`` also a git ref's app, in the same rounds):
a fresh server (``tests.browser.serve_app``) and a fresh Chromium context; the Train page starts
the classic network on the bundled sample for 200 epochs; once the first epoch has ended, the
CPU of each kind of process (the job's worker, Chromium, the Streamlit server) is read from
``/proc`` over ``--window`` seconds with Train shown, then over as long with Home shown. Printed:
cores used per kind (medians over the rounds) and the ratio of the worker's cores watched over
unwatched (1.0: the live view costs the training nothing). No asserts.

    .venv/bin/python bench/live_view.py [--rounds 3] [--window 12] [--compare e2aa6e3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from first_paint import checkout, load_text  # noqa: E402

KINDS = ("worker", "chromium", "server")


def process_kind(name: str, cmdline: str) -> str | None:
    """The kind of a process this bench counts, from its name and command line."""
    if "chrom" in name or "chrom" in cmdline:
        return "chromium"
    if name.startswith("cae-worker"):  # forked from the template (cae/zygote.py)
        return "worker"
    if "streamlit" in cmdline:
        return "server"
    return None


def cpu_by_process() -> dict[tuple[int, float], tuple[str, float]]:
    """(pid, start time) -> (kind, CPU seconds so far) of every counted process."""
    import psutil

    seen = {}
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            kind = process_kind(proc.info["name"] or "", " ".join(proc.info["cmdline"] or []))
            if kind is not None:
                times = proc.cpu_times()
                seen[(proc.pid, proc.create_time())] = (kind, times.user + times.system)
        except psutil.Error:
            continue
    return seen


def cpu_used_since(before: dict[tuple[int, float], tuple[str, float]]) -> dict[str, float]:
    """CPU seconds used by each kind of process since ``before`` (a :func:`cpu_by_process`),
    processes started since then included."""
    used = dict.fromkeys(KINDS, 0.0)
    for key, (kind, cpu) in cpu_by_process().items():
        used[kind] += cpu - before.get(key, (kind, 0.0))[1]
    return used


def cores_over(seconds: float) -> dict[str, float]:
    """Cores used by each kind of process over the next ``seconds`` (CPU seconds per second)."""
    before, start = cpu_by_process(), time.monotonic()
    time.sleep(seconds)
    used, elapsed = cpu_used_since(before), time.monotonic() - start
    return {kind: value / elapsed for kind, value in used.items()}


def go_to(page, link: str, heading: str) -> None:
    from playwright.sync_api import expect

    from tests.browser import wait_for_app_idle

    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=link).click()
    expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible(timeout=60_000)
    wait_for_app_idle(page, 60_000)


def one_round(browser, tree: Path, window: float) -> dict[str, dict[str, float]]:
    """Serve ``tree``'s app, start a long training from Train, measure it watched and not."""
    from playwright.sync_api import expect

    from tests.browser import open_app, serve_app, wait_for_app_idle

    with contextlib.ExitStack() as stack:
        models = stack.enter_context(tempfile.TemporaryDirectory(prefix="live-view-"))
        url = stack.enter_context(
            serve_app("app.py", cwd=tree, env={"CAE_MODELS_DIR": models}, timeout_s=120)
        )
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        stack.callback(context.close)
        page = context.new_page()
        open_app(page, url)
        go_to(page, "Train", "Train")
        epochs = page.get_by_label("Epochs")
        epochs.fill("200")
        epochs.press("Enter")
        wait_for_app_idle(page, 30_000)
        page.locator(".st-key-train_start button").click()
        waiting = page.get_by_text("Loss curves appear after the first epoch.")
        expect(waiting).to_be_visible(timeout=60_000)
        expect(waiting).to_be_hidden(timeout=120_000)
        watched = cores_over(window)
        go_to(page, "Home", "CAE Studio")
        unwatched = cores_over(window)
    return {"watched": watched, "unwatched": unwatched}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=float, default=12.0, help="seconds per measurement")
    parser.add_argument("--compare", metavar="REF", help="also measure this git ref's app")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from tests.browser import launch_chromium

    results: dict[str, list[dict[str, dict[str, float]]]] = {}
    with contextlib.ExitStack() as stack:
        trees = {"this tree": REPO}
        if args.compare:
            trees[args.compare] = stack.enter_context(checkout(args.compare))
        playwright = stack.enter_context(sync_playwright())
        browser = stack.enter_context(launch_chromium(playwright))
        print(f"load {load_text()}")
        for number in range(1, args.rounds + 1):
            for label, tree in trees.items():
                got = one_round(browser, tree, args.window)
                results.setdefault(label, []).append(got)
                print(
                    f"round {number} {label}: "
                    + "; ".join(
                        f"{view} " + ", ".join(f"{kind} {got[view][kind]:.2f}" for kind in KINDS)
                        for view in ("watched", "unwatched")
                    ),
                    flush=True,
                )
    print(f"\nmedians of {args.rounds} rounds, cores used ({args.window:g} s windows):")
    for label, rounds in results.items():
        median = {
            view: {kind: statistics.median(r[view][kind] for r in rounds) for kind in KINDS}
            for view in ("watched", "unwatched")
        }
        ratios = [r["watched"]["worker"] / r["unwatched"]["worker"] for r in rounds]
        print(
            f"{label}: Train shown: worker {median['watched']['worker']:.2f}, Chromium "
            f"{median['watched']['chromium']:.2f}, server {median['watched']['server']:.2f}; "
            f"Home shown: worker {median['unwatched']['worker']:.2f}, Chromium "
            f"{median['unwatched']['chromium']:.2f}; the training keeps "
            f"{statistics.median(ratios):.2f}x of its CPU while watched "
            f"(rounds {', '.join(f'{r:.2f}' for r in ratios)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
