"""AppTests of the ``?run=ID`` link that opens runs on Results (the Experiments page's table and
chart send one): a listed run is shown and becomes the compare selection; an unknown id or a
hostile string is ignored with one line and builds no path; the link is followed once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.runs import make_trained_run
from ui.state import COMPARE_KEY, RUN_KEY

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
RESULTS = "pages/3_Results.py"
NOTICE = "The link names no saved run, so it was ignored"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    first = make_trained_run(root, epochs=1, limit=120, name="first run")
    second = make_trained_run(root, epochs=1, limit=120, name="second run")
    return root, first, second


@pytest.fixture
def models(two_runs, monkeypatch):
    root, first, second = two_runs
    monkeypatch.setenv("CAE_MODELS_DIR", str(root))
    return root, first, second


def open_results(*linked: str) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=180)
    app.run()
    app.query_params["run"] = list(linked)  # what a link to /Results?run=...&run=... brings
    return app.switch_page(RESULTS).run()


def warnings(app) -> list[str]:
    return [str(w.value) for w in app.warning]


@pytest.mark.slow
def test_a_link_shows_that_run_and_makes_it_the_compare_selection(models):
    root, first, second = models
    app = open_results(first)  # not the newest run: the link decides, not the default
    assert not app.exception
    assert app.multiselect(key="results_runs").value == [first]
    assert app.session_state[COMPARE_KEY] == [first]
    assert app.session_state[RUN_KEY] == first
    assert "run" not in app.query_params  # followed once: it leaves the URL
    assert not any(NOTICE in text for text in warnings(app))
    # a later choice on the page stands: the link is not applied a second time
    app.multiselect(key="results_runs").set_value([second]).run()
    assert app.multiselect(key="results_runs").value == [second]
    assert app.session_state[COMPARE_KEY] == [second]


def test_a_link_with_several_runs_shows_them_side_by_side(models):
    root, first, second = models
    app = open_results(second, first, second)  # a repeated id counts once
    assert not app.exception
    assert app.multiselect(key="results_runs").value == [second, first]
    assert app.session_state[COMPARE_KEY] == [second, first]
    assert app.session_state[RUN_KEY] == second
    # the page takes the link out of the URL, and offers it again to copy (a page link)
    (link,) = [item.proto for item in app.get("page_link") if "this comparison" in item.proto.label]
    assert link.query_string == f"run={second}&run={first}"


@pytest.mark.parametrize(
    "hostile",
    [
        "no-such-run",
        "../../../etc/passwd",
        "/etc/passwd",
        "first run/../..",
        "<img src=x onerror=alert(1)>",
        "**bold** :red[red] [x](http://e.example) $x$",
        "\u202egnp.exe",
        "x" * 5_000,
        "",
    ],
)
def test_an_unknown_or_hostile_run_id_is_ignored_with_one_line(models, hostile):
    root, first, second = models
    # the PCA baselines' cache folder is the page's own (made by whichever test shows Results
    # first in this process: with xdist, sometimes this one)
    before = sorted(p.name for p in root.iterdir() if p.name != ".baselines")
    app = open_results(hostile)
    assert not app.exception
    notices = [text for text in warnings(app) if NOTICE in text]
    assert len(notices) == 1, warnings(app)
    notice = notices[0]
    assert "\n" not in notice and len(notice) < 200  # one line, the value cut short
    shown = notice.split("Received: run=", 1)[1]
    assert not re.search(r"(?<!\\)[<>*\[\]`$]", shown), shown  # markdown and HTML as text
    assert "\u202e" not in shown  # a bidi override is shown escaped, not obeyed
    assert "run" not in app.query_params
    # the page carries on as without a link: the newest run, nothing chosen from the URL
    assert app.multiselect(key="results_runs").value == [second]
    assert app.session_state[COMPARE_KEY] == [second]
    after = sorted(p.name for p in root.iterdir() if p.name != ".baselines")
    assert after == before  # no folder made or removed


def test_a_link_mixing_a_run_and_junk_keeps_the_run_and_names_the_junk(models):
    root, first, second = models
    app = open_results("nope", first, "../x")
    assert not app.exception
    assert app.multiselect(key="results_runs").value == [first]
    notice = next(text for text in warnings(app) if NOTICE in text)
    assert "'nope'" in notice and "(and 1 more)" in notice


def test_a_link_replaces_the_compare_selection_kept_from_before(models):
    root, first, second = models
    app = AppTest.from_file(APP, default_timeout=180)
    app.run()
    app.switch_page(RESULTS).run()
    app.multiselect(key="results_runs").set_value([second, first]).run()
    app.switch_page("pages/1_Architecture.py").run()  # the selection is kept across pages
    app.query_params["run"] = [first]
    app.switch_page(RESULTS).run()
    assert not app.exception
    assert app.multiselect(key="results_runs").value == [first]
    assert app.session_state[COMPARE_KEY] == [first]
    # and without a link, the kept selection comes back as before (issue 13 item 8)
    app.multiselect(key="results_runs").set_value([first, second]).run()
    app.switch_page("pages/1_Architecture.py").run()
    app.switch_page(RESULTS).run()
    assert app.multiselect(key="results_runs").value == [first, second]
