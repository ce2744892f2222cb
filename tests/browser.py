"""Real-browser test helpers: serve a Streamlit script, drive it with Debian's Chromium.

Usage (see tests/test_browser_harness.py)::

    from tests.browser import draw_stroke, expect_rerun, open_app, screenshot, serve_app

    def test_home(page):                      # `page` comes from tests/conftest.py
        with serve_app("app.py") as url:
            open_app(page, url)  # goto + first run done + idle
            with expect_rerun(page):  # waits for the rerun the click causes
                page.locator(".st-key-go button").click()  # st.button(..., key="go")
            with expect_rerun(page):  # a canvas sends its drawing 200 ms after mouse-up
                draw_stroke(page, [(60, 70), (60, 210)])
            screenshot(page, "home")  # -> test-artifacts/home.png

Never run `playwright install`: we use /usr/bin/chromium through `executable_path`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page, Playwright

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts"  # git-ignored
CHROMIUM_PATH = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
)

# The root element carries the frontend's own script-run and connection state
# (`data-test-script-state`: initial|running|rerunRequested|stopRequested|notRunning|
# compilationError; `data-test-connection-state`: CONNECTED when the websocket is up).
# Streamlit's own end-to-end tests wait on these attributes.
APP_SELECTOR = '[data-testid="stApp"]'
CANVAS_SELECTOR = "canvas.upper-canvas"  # streamlit-drawable-canvas 0.13: shadow DOM, no iframe


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, limit: int = 6000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<could not read server output: {exc}>"
    return text[-limit:] if len(text) > limit else text


def _stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (it leads its own session), then SIGKILL."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextlib.contextmanager
def serve_app(
    app_path: str | os.PathLike[str] = "app.py",
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] = REPO_ROOT,
    timeout_s: float = 60.0,
) -> Iterator[str]:
    """Run `streamlit run app_path` on a free localhost port; yield its base URL.

    `env` entries are added to (and override) a copy of os.environ. The server runs with the
    current interpreter, in its own process group, which is terminated on exit. If the health
    check does not answer "ok" within `timeout_s`, RuntimeError carries the server's output; if
    the body of the `with` raises, the server's output is printed to stderr (pytest shows it).
    """
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(app_path),
        "--server.headless", "true",
        "--server.port", str(port),
        "--server.address", "127.0.0.1",
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
    ]  # fmt: skip
    full_env = dict(os.environ)
    full_env["PYTHONUNBUFFERED"] = "1"
    if env:
        full_env.update(env)

    log_fd, log_name = tempfile.mkstemp(prefix=f"streamlit-{port}-", suffix=".log")
    log_path = Path(log_name)
    with os.fdopen(log_fd, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=str(cwd),
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: killpg reaches its children too
        )
    try:
        _wait_healthy(proc, base_url, log_path, timeout_s)
        try:
            yield base_url
        except BaseException:
            print(
                f"--- streamlit server output ({cmd[4]} on {base_url}) ---\n{_tail(log_path)}",
                file=sys.stderr,
            )
            raise
    finally:
        _stop_process_group(proc)
        with contextlib.suppress(OSError):
            log_path.unlink()


def _wait_healthy(proc: subprocess.Popen, base_url: str, log_path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"streamlit exited with code {proc.returncode} before answering "
                f"{base_url}/_stcore/health. Output:\n{_tail(log_path)}"
            )
        try:
            with urllib.request.urlopen(f"{base_url}/_stcore/health", timeout=2) as resp:
                body = resp.read().decode(errors="replace").strip()
                if resp.status == 200 and body == "ok":
                    return
                last_error = f"HTTP {resp.status}: {body[:200]!r}"
        except (urllib.error.URLError, OSError) as exc:
            last_error = repr(exc)
        time.sleep(0.2)
    _stop_process_group(proc)
    raise RuntimeError(
        f"streamlit did not answer {base_url}/_stcore/health within {timeout_s:.0f} s "
        f"(last: {last_error}). Output:\n{_tail(log_path)}"
    )


def launch_chromium(playwright: Playwright, *, headless: bool = True, **kwargs) -> Browser:
    """Launch Debian's Chromium. The returned Browser is also a context manager (closes it)."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM_PATH,
        headless=headless,
        args=list(CHROMIUM_ARGS),
        **kwargs,
    )


# --- waiting for Streamlit -------------------------------------------------------------------

_IDLE_JS = """
([quietMs]) => {
  const el = document.querySelector('[data-testid="stApp"]');
  const idle = !!el
    && el.getAttribute("data-test-connection-state") === "CONNECTED"
    && el.getAttribute("data-test-script-state") === "notRunning";
  const now = performance.now();
  if (!idle) { window.__stIdleSince = null; return false; }
  if (window.__stIdleSince == null) window.__stIdleSince = now;
  return now - window.__stIdleSince >= quietMs;
}
"""

_TWO_FRAMES_JS = "() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(() => done(true))))"


def wait_for_app_idle(page: Page, timeout_ms: float = 30_000, *, quiet_ms: float = 250) -> None:
    """Wait until the app is connected and no script is running, for `quiet_ms` in a row.

    The signal is the root element's `data-test-script-state == "notRunning"` with
    `data-test-connection-state == "CONNECTED"` (what Streamlit's own e2e tests wait on): it is
    "initial" before the first run, "running"/"rerunRequested" while a run (fragment runs
    included) is in flight. Good after `page.goto`. After an action it is not enough on its own:
    the rerun request may still be on its way (a drawable canvas sends its drawing 200 ms after
    mouse-up), and a run of a few ms may never show "running" in the DOM at all (measured: React
    batches it away). Use `expect_rerun` for actions, or wait for the expected content.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    page.evaluate("window.__stIdleSince = null")
    try:
        page.wait_for_function(_IDLE_JS, arg=[quiet_ms], timeout=timeout_ms, polling=50)
    except PlaywrightTimeoutError as exc:
        raise TimeoutError(f"app not idle within {timeout_ms:.0f} ms: {_app_state(page)}") from exc


def _app_state(page: Page) -> str:
    """One line on what the frontend shows, for timeout messages."""
    try:
        state = page.evaluate(
            """() => {
              const el = document.querySelector('[data-testid="stApp"]');
              return el ? {script: el.getAttribute("data-test-script-state"),
                           connection: el.getAttribute("data-test-connection-state")}
                        : {stApp: "missing", title: document.title};
            }"""
        )
    except Exception as exc:  # the page itself may be gone
        state = f"<unreadable: {exc}>"
    watcher = _watchers.get(page)
    runs = (
        f"; runs finished {watcher.finished}, statuses {watcher.statuses[-5:]}"
        f", websockets {watcher.sockets}, problems {watcher.problems[-8:]}"
        if watcher is not None
        else ""
    )
    return f"url {page.url}, {state}{runs}"


def open_app(page: Page, url: str, timeout_ms: float = 60_000) -> None:
    """`page.goto(url)`, then wait until the first script run is done and the app is idle.

    Twice in about 100 loads on this busy 2-CPU machine, Chromium fired `load` but Streamlit's
    frontend never rendered: a blank page, no `stApp`, no websocket, for a full minute. When
    `stApp` has not appeared within 20 s, this reloads once (saying so on stderr) before
    waiting out the rest of `timeout_ms`.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    deadline = time.monotonic() + timeout_ms / 1000
    page.goto(url, timeout=timeout_ms)
    try:
        page.wait_for_selector(APP_SELECTOR, state="attached", timeout=min(20_000, timeout_ms))
    except PlaywrightTimeoutError:
        print(
            f"open_app: no stApp after 20 s, reloading once ({_app_state(page)})", file=sys.stderr
        )
        page.reload(timeout=max(1_000, (deadline - time.monotonic()) * 1000))
    wait_for_app_idle(page, max(1_000, (deadline - time.monotonic()) * 1000))


class RunWatcher:
    """Counts the script runs the server reports to one page, from its websocket.

    Every run (full or fragment) ends with a `ForwardMsg.script_finished`; we decode the frames
    the browser receives on `/_stcore/stream` with Streamlit's own protobuf classes. Runs
    interrupted by a newer rerun (FINISHED_EARLY_FOR_RERUN) are recorded but not counted.
    Attach before `page.goto` (the `page` fixture does): `watch_runs(page)`.
    """

    def __init__(self, page: Page) -> None:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        self._forward_msg = ForwardMsg
        self._early = ForwardMsg.FINISHED_EARLY_FOR_RERUN
        self.page = page
        self.sockets = 0
        self.finished = 0  # completed runs (successful, fragment, compile error)
        self.statuses: list[str] = []  # every script_finished status name, in order
        self.problems: list[str] = []  # page errors, console errors, failed requests
        page.on("websocket", self._on_websocket)
        page.on("pageerror", lambda err: self.problems.append(f"pageerror: {err}"))
        page.on(
            "console",
            lambda msg: msg.type == "error" and self.problems.append(f"console: {msg.text[:300]}"),
        )
        page.on(
            "requestfailed",
            lambda req: self.problems.append(f"requestfailed: {req.url} {req.failure}"),
        )
        page.on(
            "response",
            lambda resp: (
                resp.status >= 400 and self.problems.append(f"HTTP {resp.status}: {resp.url}")
            ),
        )

    def _on_websocket(self, ws) -> None:
        if "/_stcore/stream" in ws.url:
            self.sockets += 1
            ws.on("framereceived", self._on_frame)

    def _on_frame(self, payload: bytes | str) -> None:
        if isinstance(payload, str):
            return
        try:
            msg = self._forward_msg.FromString(payload)
        except Exception:  # not a ForwardMsg: ignore
            return
        if msg.WhichOneof("type") != "script_finished":
            return
        status = msg.script_finished
        self.statuses.append(self._forward_msg.ScriptFinishedStatus.Name(status))
        if status != self._early:
            self.finished += 1

    def wait_for(self, count: int, timeout_ms: float = 30_000) -> None:
        """Block (letting Playwright deliver events) until `finished >= count`."""
        deadline = time.monotonic() + timeout_ms / 1000
        while self.finished < count:
            if time.monotonic() > deadline:
                hint = "" if self.sockets else " (no websocket seen: watch_runs before page.goto)"
                raise TimeoutError(
                    f"expected {count} finished script runs within {timeout_ms:.0f} ms, "
                    f"saw {self.finished}{hint}; {_app_state(self.page)}"
                )
            self.page.wait_for_timeout(15)


_watchers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def watch_runs(page: Page) -> RunWatcher:
    """The page's RunWatcher, attached on first call (do it before `page.goto`)."""
    watcher = _watchers.get(page)
    if watcher is None:
        watcher = _watchers[page] = RunWatcher(page)
    return watcher


@contextlib.contextmanager
def expect_rerun(page: Page, timeout_ms: float = 30_000, *, runs: int = 1) -> Iterator[RunWatcher]:
    """After the body, wait until `runs` more script runs have finished and been rendered.

    For actions that must trigger a rerun (a click, a canvas stroke); times out if none comes.
    """
    watcher = watch_runs(page)
    before = watcher.finished
    yield watcher
    watcher.wait_for(before + runs, timeout_ms)
    page.evaluate(_TWO_FRAMES_JS)  # let React paint what the run sent
    wait_for_app_idle(page, timeout_ms, quiet_ms=0)


# --- artifacts and canvas ---------------------------------------------------------------------


def boxes_at_once(page: Page, *locators: Locator) -> list[dict[str, float]]:
    """The viewport box (top, bottom, height) of each locator's first element, all read in one
    task: no scroll or layout can come between them, as it can between two ``bounding_box``
    calls. Element handles reach into a shadow DOM (a drawable canvas) where CSS does not.
    An element that a rerun replaced between finding it and measuring it (a detached node
    measures 0x0 at the top left) is found again and all are measured again, up to 5 s."""
    for _ in range(25):
        measured = page.evaluate(
            """(elements) => elements.map((el) => {
                const box = el.getBoundingClientRect();
                return {top: box.top, bottom: box.bottom, height: box.height,
                        connected: el.isConnected};
            })""",
            [locator.first.element_handle() for locator in locators],
        )
        if all(box.pop("connected") for box in measured):
            break
        page.wait_for_timeout(200)
    return measured


def saved_runs(models: Path) -> list:
    """Every run saved in a workspace of ``models``: a browser's runs live in its own workspace
    (``models/workspaces/<id>/``), not beside the gallery's."""
    from cae.store import list_runs

    return [run for folder in sorted(models.glob("workspaces/*")) for run in list_runs(folder)]


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page PNG as test-artifacts/<name>.png and return its path."""
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS_DIR / (name if name.endswith(".png") else f"{name}.png")
    page.screenshot(path=str(path), full_page=True)
    return path


def canvas_locator(page: Page, key: str | None = None, index: int = 0) -> Locator:
    """The Fabric.js upper canvas of a drawable canvas: the one with `key=`, else the index-th.

    streamlit-drawable-canvas 0.13 renders in an open shadow root (no iframe); Playwright's CSS
    engine pierces it. A keyed element sits in `.st-key-<key>`.
    """
    if key is not None:
        return page.locator(f".st-key-{key} {CANVAS_SELECTOR}")
    return page.locator(CANVAS_SELECTOR).nth(index)


def draw_stroke(
    page: Page,
    points: list[tuple[float, float]],
    *,
    key: str | None = None,
    index: int = 0,
    steps: int = 8,
) -> None:
    """Drag the mouse through `points` (canvas pixels, from its top-left) on a drawable canvas.

    The canvas is drawn at 1:1 scale, so these are `image_data` pixel coordinates too. The app
    gets the drawing ~200 ms after mouse-up (wrap the call in `expect_rerun`).
    """
    canvas = canvas_locator(page, key, index)
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    if box is None:
        raise RuntimeError("drawable canvas is not visible")
    x0, y0 = points[0]
    page.mouse.move(box["x"] + x0, box["y"] + y0)
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x, box["y"] + y, steps=steps)
    page.mouse.up()


# --- navigation -------------------------------------------------------------------------------

SIDEBAR_NAV_LINKS = '[data-testid="stSidebarNav"] [data-testid="stSidebarNavLink"]'


def sidebar_nav_labels(page: Page, timeout_ms: float = 30_000) -> list[str]:
    """The labels of the sidebar's page links, in order (waits until at least one is shown)."""
    links = page.locator(SIDEBAR_NAV_LINKS)
    links.first.wait_for(state="visible", timeout=timeout_ms)
    return [text.strip() for text in links.all_inner_texts()]


# --- network ------------------------------------------------------------------------------------

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def record_requests(page: Page) -> list[str]:
    """Every URL requested from now on by the page's browser context (every frame, popups and
    workers included) and every websocket it opens, in order; attach before `page.goto`."""
    urls: list[str] = []
    page.context.on("request", lambda request: urls.append(request.url))
    page.on("websocket", lambda socket: urls.append(socket.url))
    return urls


def foreign_requests(urls: list[str]) -> list[str]:
    """The URLs among `urls` that leave this machine: any host but localhost (``data:``,
    ``blob:`` and ``about:`` URLs have no host and stay)."""
    from urllib.parse import urlparse

    return [url for url in urls if urlparse(url).hostname not in (None, *LOCAL_HOSTS)]
