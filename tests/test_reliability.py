"""Reliability and safe defaults (issue 6): the server config, no unsafe loading in the source, and a
job that outlives its browser tab. See docs/reliability.md for the whole table."""

from __future__ import annotations

import io
import re
import tokenize
import tomllib
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cae.jobs import JOBS
from cae.spec import preset
from cae.store import list_runs, workspace_root
from cae.uploads import MAX_UPLOAD_BYTES
from ui.state import DATASET_KEY, SPEC_KEY

REPO = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())


def test_server_listens_on_localhost_and_sends_no_usage_stats():
    assert CONFIG["server"]["address"] == "localhost"
    assert CONFIG["browser"]["gatherUsageStats"] is False
    # Streamlit refuses uploads over maxUploadSize (MB); cae.uploads enforces its own byte limit too
    assert CONFIG["server"]["maxUploadSize"] * 2**20 >= MAX_UPLOAD_BYTES
    readme = (REPO / "README.md").read_text()
    assert "0.0.0.0" in readme and "address" in readme  # how to listen on other addresses


UNSAFE = re.compile(
    r"\beval \(|\bexec \(|\bpickle\b|allow_pickle = True|safe_mode = False|shell = True|os \. system"
)


def code_tokens(path: Path) -> str:
    """The file's code without comments and string literals (messages may say "pickle")."""
    skip = (tokenize.COMMENT, tokenize.STRING, tokenize.NL, tokenize.NEWLINE)
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    return " ".join(token.string for token in tokens if token.type not in skip)


def test_no_eval_exec_pickle_or_unsafe_loading_in_the_source():
    files = [REPO / "app.py", *sorted((REPO / "cae").glob("*.py")),
             *sorted((REPO / "pages").glob("*.py")), *sorted((REPO / "ui").glob("*.py"))]  # fmt: skip
    assert len(files) > 10
    hits = [
        f"{path.relative_to(REPO)}: {match.group(0)}"
        for path in files
        for match in UNSAFE.finditer(code_tokens(path))
    ]
    assert hits == []


@pytest.mark.slow
def test_a_closed_tab_does_not_stop_its_job_and_a_new_session_does_not_see_it(
    tmp_path, monkeypatch
):
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("CAE_MODELS_DIR", str(models))
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    app.switch_page("pages/2_Train.py").run()
    next(n for n in app.number_input if n.key.startswith("train_epochs")).set_value(1)
    app.text_input(key="train_name").set_value("closed tab")
    app.button(key="train_start").click().run()
    assert not app.exception
    owner = app.session_state["owner_id"]
    job = JOBS.get(owner)
    assert job is not None and not job.done
    del app  # the tab is closed: its session is gone, the job lives on in the server process

    other = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    other.switch_page("pages/2_Train.py").run()
    assert not other.exception
    assert other.session_state["owner_id"] != owner
    assert JOBS.get(other.session_state["owner_id"]) is None
    assert other.button(key="train_start").disabled is False  # not blocked by the other job
    assert not other.get("progress") and not other.success  # no view of the other job

    assert job.wait(120), "the job did not finish"
    assert job.run_id is not None, job.snapshot().message
    assert [run.name for run in list_runs(workspace_root(owner))] == ["closed tab"]


def test_the_workspace_id_is_never_in_the_url_and_a_tab_of_the_browser_gets_its_state_back(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("CAE_MODELS_DIR", str(tmp_path))
    first = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    owner = first.session_state["owner_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", owner)
    assert not first.query_params  # the id is in the browser's cookie, not in the address bar
    first.switch_page("pages/3_Results.py").run()
    assert not first.query_params

    deep = preset("deep").to_dict()
    first.session_state[SPEC_KEY] = deep  # as the Architecture page does (and remembers)
    first.switch_page("pages/2_Train.py").run()
    first.selectbox(key="train_dataset").set_value("fashion-mnist").run()

    reloaded = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    reloaded.session_state["owner_id"] = owner  # a reload: the cookie names the workspace
    reloaded.run()
    assert reloaded.session_state["owner_id"] == owner and not reloaded.exception
    # the design and the dataset chosen before the reload come back; another browser gets neither
    assert reloaded.session_state[SPEC_KEY] == deep
    assert reloaded.session_state[DATASET_KEY] == "fashion-mnist"
    stranger = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    assert stranger.session_state[SPEC_KEY] != deep
    assert stranger.session_state[DATASET_KEY] == "mnist-sample"

    # an old link with ?session=: the id is neither adopted nor kept in the address bar
    for bad in (owner, "../../x", "f" * 32):
        old_link = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
        old_link.query_params["session"] = bad
        old_link.run()
        fresh = old_link.session_state["owner_id"]
        assert fresh != bad and re.fullmatch(r"[0-9a-f]{32}", fresh)
        assert "session" not in old_link.query_params
        assert old_link.session_state[SPEC_KEY] != deep
