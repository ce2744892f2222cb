"""Tabs of one browser share its workspace (the id the server issued, kept in a cookie): a second
tab watches a training read-only until its user confirms taking it over, and a new training asks
before it discards kept epochs that are not saved. The id of the address bar's old ``?session=``
is never adopted (tests/test_reliability.py, tests/test_workspaces.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import ui.state
from cae.jobs import JOBS, UnsavedEpochs
from cae.store import workspace_root
from ui.state import OWNER_KEY, SPEC_KEY

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
TRAIN = "pages/2_Train.py"
TIMEOUT = 180


def tab(workspace: str | None = None, page: str | None = None) -> AppTest:
    """A browser tab: a new browser, or one whose cookie names ``workspace``; then ``page``."""
    app = AppTest.from_file(APP, default_timeout=120)
    if workspace is not None:
        app.session_state[OWNER_KEY] = workspace  # what the cookie gives a new session
    app.run()
    if page is not None:
        app.switch_page(page).run()
    assert not app.exception, [item.value for item in app.exception]
    return app


def owner(app: AppTest) -> str:
    return app.session_state[OWNER_KEY]


def test_a_tab_of_the_browser_gets_its_workspace_s_remembered_state_back(models):
    first = tab()
    first.session_state[SPEC_KEY] = {**first.session_state[SPEC_KEY], "name": "remembered"}
    first.run()  # page_frame keeps the design under the workspace, for a reload or a new tab
    again = tab(owner(first))
    assert owner(again) == owner(first)
    assert again.session_state[SPEC_KEY]["name"] == "remembered"
    assert tab().session_state[SPEC_KEY]["name"] == "classic"  # another browser: its own


def test_the_issued_ids_are_bounded(monkeypatch, models):
    monkeypatch.setattr(ui.state, "_ISSUED_LIMIT", 3)
    ids = [ui.state._issue_workspace() for _ in range(5)]
    assert [ui.state.known_workspace(owner) for owner in ids] == [False, False, True, True, True]
    assert not ui.state.known_workspace("../" + ids[-1][3:])
    workspace_root(ids[0]).mkdir(parents=True)  # a workspace that saved stays known
    assert ui.state.known_workspace(ids[0])


def epochs_input(app: AppTest):
    return next(n for n in app.number_input if n.key.startswith("train_epochs"))


def wait_for(condition, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def keys(app: AppTest) -> set[str]:
    return {button.key for button in app.button}


@pytest.mark.slow
def test_a_second_tab_watches_read_only_takes_over_after_a_confirmation_and_is_asked_before_a_new_training_discards_kept_epochs(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("CAE_MODELS_DIR", str(tmp_path))
    first = tab(page=TRAIN)
    epochs_input(first).set_value(500)
    first.text_input(key="train_name").set_value("shared")
    first.button(key="train_start").click().run()
    job = JOBS.get(owner(first))
    try:
        assert job is not None and not job.done
        assert "train_stop" in keys(first) and "train_takeover" not in keys(first)

        # another tab of the same browser: the training is shown, read-only
        second = tab(owner(first), TRAIN)
        assert owner(second) == owner(first) and JOBS.get(owner(second)) is job
        assert "train_stop" not in keys(second) and "train_save" not in keys(second)
        assert any("You are watching this training" in item.value for item in second.info)
        # taking over asks first, and Cancel leaves things as they were
        second.button(key="train_takeover").click().run()
        assert any("other tab can then only watch" in item.value for item in second.warning)
        second.button(key="train_takeover_cancel").click().run()
        assert "train_stop" not in keys(second) and "train_takeover" in keys(second)
        second.button(key="train_takeover").click().run()
        second.button(key="train_takeover_confirm").click().run()
        assert not second.exception, [item.value for item in second.exception]
        assert "train_stop" in keys(second) and "train_takeover" not in keys(second)
        first.run()  # the first tab now watches
        assert "train_stop" not in keys(first) and "train_takeover" in keys(first)
        assert not job.stop_requested and not job.done  # taking over does not touch the job

        wait_for(lambda: job.snapshot().epoch >= 1, "a completed epoch")
        second.button(key="train_stop").click().run()
        assert job.wait(TIMEOUT) and job.unsaved_epochs >= 1, job.snapshot().message
        second.run()
        first.run()
        assert "train_save" in keys(second) and "train_save" not in keys(first)
        # the watching tab cannot start a training that would discard them
        assert first.button(key="train_start").disabled
        with pytest.raises(UnsavedEpochs, match="Received: job_id="):
            JOBS.start(owner(first), job.request, discard_unsaved=False)

        # the tab in control is asked before a new training discards them
        second.button(key="train_start").click().run()
        assert JOBS.get(owner(second)) is job
        assert any("discards the" in item.value for item in second.warning)
        second.button(key="train_discard_cancel").click().run()
        assert JOBS.get(owner(second)) is job and job.unsaved_epochs >= 1
        assert not any("discards the" in item.value for item in second.warning)
        epochs_input(second).set_value(1)
        second.button(key="train_start").click().run()
        second.button(key="train_discard_confirm").click().run()
        assert not second.exception, [item.value for item in second.exception]
        replaced = JOBS.get(owner(second))
        assert replaced is not job and job.unsaved_epochs == 0
        assert replaced.wait(TIMEOUT) and replaced.run_id, replaced.snapshot().message
    finally:
        current = JOBS.get(owner(first))
        for each in {job, current} - {None}:
            each.stop()
            each.wait(TIMEOUT)
