"""The app's page list, in one place: app.py runs it, and `page_frame` sends it when a page's URL
was opened before any session had run app.py.

Why the second use: because a `pages/` folder exists, Streamlit 1.67 starts in its old multipage
mode (`PagesManager.uses_pages_directory`), which builds the navigation from the folder's file names
and runs the page's script directly, until some session calls `st.navigation`. So the first page
opened by its URL after the server starts (e.g. `/Train`) never ran app.py, and its sidebar showed
"app" instead of "Home". `adopt_app_navigation` then sends this list (which also switches the
server out of that mode for every later session), without running the page a second time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import streamlit as st

HOME_TITLE = "Home"
# The home page's URL path is fixed, so its page id (Streamlit hashes the URL path) is the same
# whichever function is passed for it: app.py's home, or the stand-in below.
HOME_URL_PATH = "home"

# (script, sidebar title) in sidebar order; every file in pages/ is here (a test enumerates them).
# No icons: a material icon on st.Page makes the browser fetch a font from a CDN (fails offline).
PAGE_FILES: tuple[tuple[str, str], ...] = (
    ("pages/1_Architecture.py", "Architecture"),
    ("pages/2_Train.py", "Train"),
    ("pages/3_Results.py", "Results"),
    ("pages/4_Latent_Editor.py", "Latent Editor"),
    ("pages/5_Inspect.py", "Inspect"),
    ("pages/6_Experiments.py", "Experiments"),
    ("pages/7_Admin.py", "Admin"),
)


def app_pages(home: Callable[[], None]) -> list[st.Page]:
    """The app's pages in sidebar order: Home (drawn by `home`, the default) and PAGE_FILES."""
    return [
        st.Page(home, title=HOME_TITLE, url_path=HOME_URL_PATH, default=True),
        *(st.Page(path, title=title) for path, title in PAGE_FILES),
    ]


def _home_stand_in() -> None:  # pragma: no cover - never run: only its page entry is sent
    """Stands for app.py's home page in a navigation sent from a page (never called)."""


def adopt_app_navigation() -> None:
    """Send the app's navigation if this run's is the `pages/` folder's; call first on a page.

    Only needed in a page script that Streamlit's old multipage mode ran directly (see the module
    docstring). `st.navigation` then resolves the same page that is already running (the URL paths
    are the file names in both lists), and the page is not run again. The page's widgets keep the
    ids they get on every later run: the active page hash, which `st.navigation` resets to the main
    script's, is restored around the call.
    """
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None:
        return
    manager = ctx.pages_manager
    if not (Path(manager.main_script_parent) / "pages").is_dir():
        return  # not this app's layout (e.g. a page script run on its own): nothing to adopt
    pages = app_pages(_home_stand_in)
    wanted = {(page._script_hash, page.title) for page in pages}
    registered = {
        (info.get("page_script_hash"), info.get("page_name"))
        for info in manager.get_pages().values()
    }
    if registered == wanted:
        return  # app.py's st.navigation ran in this run (or this was already done)
    with ctx.run_with_active_hash(manager.current_page_script_hash):
        st.navigation(pages)
