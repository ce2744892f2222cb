"""Smoke test: app.py and every page run through the app's navigation without an exception (Home's
first run: tests/test_app_home.py)."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from ui.nav import PAGE_FILES

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted(path.relative_to(REPO).as_posix() for path in (REPO / "pages").glob("*.py"))


def test_every_page_file_is_in_the_navigation():
    assert PAGES, "no pages found"
    assert [path for path, _ in PAGE_FILES] == PAGES, "ui/nav.py PAGE_FILES and pages/ differ"
    assert "app_pages(home)" in (REPO / "app.py").read_text(), (
        "app.py does not run ui/nav.py's list"
    )


def test_a_page_run_before_app_py_gets_the_app_navigation():
    """A page opened first, before app.py ran (old multipage mode): its run sends app.py's pages.

    The real-browser version is tests/test_browser_deep_link.py."""
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    app.switch_page("pages/1_Architecture.py").run()  # before any run: the folder's navigation
    assert not app.exception, [item.value for item in app.exception]
    assert app.title[0].value == "Architecture"
    names = [info["page_name"] for info in app._registered_pages.values()]  # what the sidebar lists
    assert names == ["Home", *(title for _, title in PAGE_FILES)]


@pytest.mark.parametrize("page", PAGES)
def test_page_runs_without_exception(page):
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    app.switch_page(page).run()
    assert not app.exception, [item.value for item in app.exception]
    assert app.title, f"{page} shows no title"
