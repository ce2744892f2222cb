"""Home's first paint in a real browser: navigation to the Home content on screen, for a new browser
session, against a bare Streamlit script served and opened the same way, measured in the same run.

Each tree's shipped runs (``models/`` in git: the default run a user sees on a fresh machine) are
copied into a temporary ``CAE_MODELS_DIR``; the app is served with ``tests.browser.serve_app`` and
opened in Debian's Chromium (Playwright), each time in a new browser context (empty cache, no
cookies: a new Streamlit session). The time is taken in the browser: ``performance.now()`` (0 at
navigation start) at the first animation frame after the page shows both the title "CAE Studio"
and the active-run line ("Active run: ..."), i.e. after the script has listed the runs. The bare
page (a script written to a temporary file: that title and a line of text) is timed the same way.

Each round starts a fresh server per target, in turn (the order rotates between rounds): the first
session on it is "cold" (the server imports the app's modules in that script run), the next
``--sessions`` are "warm" (what every later visitor gets). ``--compare REF`` also serves the app of
a git ref (checked out with ``git worktree add`` into a temporary folder) in the same rounds.

Figures only (no target): the app's Home was about 1.3 s when issue 13 was filed.

Run: ``.venv/bin/python bench/first_paint.py [--rounds 5] [--sessions 3] [--compare a8043e8]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

TITLE = "CAE Studio"
MARKER = "Active run:"  # Home's run line (a run exists: the shipped default one)

BARE_APP = textwrap.dedent(
    f"""
    import streamlit as st; st.title({TITLE!r}); st.markdown({MARKER + " bare"!r})
    """
)

# Installed in every new document: records performance.now() at the first animation frame after
# the one in which the title and the run line are both in the page (so they have been painted).
PAINT_JS = f"""
(() => {{
  window.__paint = null;
  const ready = () => {{
    const h1 = document.querySelector('[data-testid="stMain"] h1');
    if (!h1 || !h1.textContent.includes({TITLE!r})) return false;
    return [...document.querySelectorAll('[data-testid="stMarkdownContainer"]')]
      .some((el) => el.textContent.includes({MARKER!r}));
  }};
  const tick = () => {{
    if (ready()) {{
      requestAnimationFrame(() => {{ window.__paint = performance.now(); }});
      return;
    }}
    requestAnimationFrame(tick);
  }};
  requestAnimationFrame(tick);
}})();
"""


def load_text() -> str:
    """The 1, 5 and 15 minute load averages, and the CPU count."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} CPUs"


@contextlib.contextmanager
def checkout(ref: str) -> Iterator[Path]:
    """A detached worktree of ``ref`` in a temporary folder, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="first-paint-ref-"))
    tree = folder / "tree"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(tree), ref],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    try:
        yield tree
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, capture_output=True
        )
        shutil.rmtree(folder, ignore_errors=True)


def shipped_runs(tree: Path, into: Path) -> Path:
    """A copy of ``tree``'s runs folder as shipped (its git-tracked files), for CAE_MODELS_DIR."""
    names = subprocess.run(
        ["git", "ls-files", "models"], cwd=tree, check=True, capture_output=True, text=True
    ).stdout.split()
    into.mkdir(parents=True)
    for name in names:
        target = into / Path(name).relative_to("models")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(tree / name, target)
    return into


def open_once(browser, url: str) -> float:
    """Seconds from navigation start to the content painted, in a new context (a new session)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        context.add_init_script(PAINT_JS)
        page = context.new_page()
        page.goto(url, timeout=120_000)
        page.wait_for_function("() => window.__paint !== null", timeout=120_000, polling=50)
        return page.evaluate("() => window.__paint") / 1000
    finally:
        context.close()


def measure(browser, script: str, cwd: Path, models: Path, sessions: int) -> tuple[float, list]:
    """Serve ``script`` fresh; the cold first session's time and the warm sessions' times."""
    from tests.browser import serve_app

    env = {"CAE_MODELS_DIR": str(models)}
    with serve_app(script, cwd=cwd, env=env, timeout_s=120) as url:
        cold = open_once(browser, url)
        warm = [open_once(browser, url) for _ in range(sessions)]
    return cold, warm


def ratio(times: list[float], base: list[float]) -> float:
    """The ratio of the medians."""
    return statistics.median(times) / statistics.median(base)


def paired(times: list[float], base: list[float], per_round: int) -> float:
    """The median over rounds of each round's ratio of medians (the load drifts between rounds)."""
    rounds = range(0, len(times), per_round)
    return statistics.median(
        ratio(times[i : i + per_round], base[i : i + per_round]) for i in rounds
    )


def main(argv: list[str] | None = None) -> int:
    """Serve, open, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    parser.add_argument(
        "--sessions", type=int, default=3, help="warm sessions per server (default 3)"
    )
    parser.add_argument("--compare", metavar="REF", help="also measure this git ref's app")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.sessions < 1:
        parser.error(
            f"--rounds and --sessions must be at least 1. "
            f"Received: rounds={args.rounds}, sessions={args.sessions}"
        )

    from playwright.sync_api import sync_playwright

    from tests.browser import launch_chromium

    print(f"load average at start: {load_text()}")
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="first-paint-")))
        bare = tmp / "bare_app.py"
        bare.write_text(BARE_APP)
        targets = {"bare": (str(bare), REPO, shipped_runs(REPO, tmp / "models-bare"))}
        targets["home"] = ("app.py", REPO, shipped_runs(REPO, tmp / "models-home"))
        if args.compare:
            tree = stack.enter_context(checkout(args.compare))
            targets[f"home@{args.compare}"] = (
                "app.py",
                tree,
                shipped_runs(tree, tmp / "models-ref"),
            )
        cold: dict[str, list[float]] = {name: [] for name in targets}
        warm: dict[str, list[float]] = {name: [] for name in targets}

        with sync_playwright() as playwright, launch_chromium(playwright) as browser:
            names = list(targets)
            for name in names:  # not counted: warms the browser up, compiles each tree's .pyc
                measure(browser, *targets[name], sessions=0)
            for number in range(args.rounds):
                order = names[number % len(names) :] + names[: number % len(names)]
                for name in order:
                    first, rest = measure(browser, *targets[name], sessions=args.sessions)
                    cold[name].append(first)
                    warm[name].extend(rest)
                    print(
                        f"round {number + 1} {name:>16}: cold {first:.2f} s, warm "
                        + ", ".join(f"{t:.2f}" for t in rest)
                    )

    print(f"load average at end: {load_text()}")
    print(
        f"{args.rounds} rounds, a fresh server per target per round, {args.sessions} warm sessions"
    )
    for name in targets:
        print(
            f"{name:>16}: warm median {statistics.median(warm[name]):.2f} s, "
            f"cold median {statistics.median(cold[name]):.2f} s"
        )
    ratios = [(name, "bare") for name in list(targets)[1:]]
    if args.compare:
        ratios.append(("home", f"home@{args.compare}"))
    for name, base in ratios:
        print(
            f"ratio {name}/{base}: warm {ratio(warm[name], warm[base]):.2f}x, "
            f"cold {ratio(cold[name], cold[base]):.2f}x; median of the per-round ratios: warm "
            f"{paired(warm[name], warm[base], args.sessions):.2f}x, "
            f"cold {paired(cold[name], cold[base], 1):.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
