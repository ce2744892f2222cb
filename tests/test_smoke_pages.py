"""Smoke test: app.py and every page run through the app's navigation without an exception."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted(path.relative_to(REPO).as_posix() for path in (REPO / "pages").glob("*.py"))


def test_every_page_file_is_in_the_navigation():
    app_source = (REPO / "app.py").read_text()
    assert PAGES, "no pages found"
    for page in PAGES:
        assert f'"{page}"' in app_source, f"{page} is not registered in app.py"


def test_home_runs_without_exception():
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    assert not app.exception


@pytest.mark.parametrize("page", PAGES)
def test_page_runs_without_exception(page):
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    app.switch_page(page).run()
    assert not app.exception, [item.value for item in app.exception]
    assert app.title, f"{page} shows no title"
