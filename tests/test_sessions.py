"""Links are not keys: the server issues the session ids in ``?session=``, a second tab with the
same link watches a training read-only until its user confirms taking it over, and a new training
asks before it discards kept epochs that are not saved."""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import ui.state
from cae.jobs import JOBS, UnsavedEpochs
from ui.state import OWNER_KEY, SPEC_KEY

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
TRAIN = "pages/2_Train.py"
TIMEOUT = 180


def tab(session: str | None = None, page: str | None = None) -> AppTest:
    """A browser tab: the app opened with ``?session=`` (if given), then ``page``."""
    app = AppTest.from_file(APP, default_timeout=120)
    if session is not None:
        app.query_params["session"] = session
    app.run()
    if page is not None:
        app.switch_page(page).run()
    assert not app.exception, [item.value for item in app.exception]
    return app


def owner(app: AppTest) -> str:
    return app.session_state[OWNER_KEY]


def test_an_id_the_server_did_not_issue_is_replaced():
    made_up = secrets.token_hex(16)  # well formed: 32 hex digits, but never issued here
    app = tab(made_up)
    assert owner(app) != made_up and re.fullmatch(r"[0-9a-f]{32}", owner(app))
    assert app.query_params["session"] == owner(app)
    again = tab(owner(app))  # the id it was given is adopted by a reload
    assert owner(again) == owner(app)


def test_an_expired_id_is_replaced_and_what_it_remembered_is_forgotten(monkeypatch):
    first = tab()
    first.session_state[SPEC_KEY] = {**first.session_state[SPEC_KEY], "name": "remembered"}
    first.run()  # page_frame keeps the design under the id, for a reload
    assert tab(owner(first)).session_state[SPEC_KEY]["name"] == "remembered"
    monkeypatch.setattr(ui.state, "OWNER_TTL_S", 0.0)
    time.sleep(0.01)
    late = tab(owner(first))
    assert owner(late) != owner(first)
    assert late.session_state[SPEC_KEY]["name"] == "classic"
    monkeypatch.undo()
    assert owner(tab(owner(first))) != owner(first)  # forgotten for good


def test_the_issued_ids_are_bounded(monkeypatch):
    monkeypatch.setattr(ui.state, "_ISSUED_LIMIT", 3)
    ids = [ui.state._issue_owner_id() for _ in range(5)]
    assert [ui.state._adoptable(owner) for owner in ids] == [False, False, True, True, True]
    assert not ui.state._adoptable("../" + ids[-1][3:])


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

        # the same link in another tab: the training is shown, read-only
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
