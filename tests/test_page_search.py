"""The Experiments page's search (ui/studies.py): a small study started from the page trains its
trials in the server's queue and is shown live (table, best design, Optuna's figures); a reload
finds it; the best design goes to Architecture in one click; a bad space is one line."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cae.store import new_workspace_id, workspace_root
from cae.studies import STUDIES
from tests.runs import settle
from tests.test_search import TINY
from ui.state import OWNER_KEY, SPEC_KEY

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGE = "pages/6_Experiments.py"


@pytest.fixture
def workspace(models):
    owner = new_workspace_id()
    workspace_root(owner).mkdir(parents=True)
    yield owner
    STUDIES.close(wait=120)


def open_page(owner: str) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=180)
    app.session_state[OWNER_KEY] = owner
    return app.run().switch_page(PAGE).run()


def test_a_space_with_a_mistake_is_one_line_and_nothing_starts(workspace):
    app = open_page(workspace)
    assert not app.exception, [e.value for e in app.exception]
    broken = {**TINY, "parameters": {**TINY["parameters"], "filters": {"low": 8, "high": 2000}}}
    app.text_area(key="experiments_search_space").set_value(json.dumps(broken)).run()
    (error,) = [e.value for e in app.error]
    assert "parameters.filters" in error and "Received" in error
    assert app.button(key="experiments_search_start").disabled


@pytest.mark.slow
def test_a_search_from_the_page_trains_its_trials_and_shows_the_best(workspace):
    app = open_page(workspace)
    app.selectbox(key="experiments_search_dataset").set_value("mnist-sample").run()
    app.number_input(key="experiments_search_limit").set_value(128).run()
    app.number_input(key="experiments_search_trials").set_value(2).run()
    app.text_area(key="experiments_search_space").set_value(json.dumps(TINY)).run()
    app.text_input(key="experiments_search_name").set_value("page study").run()
    app.button(key="experiments_search_start").click().run()
    assert not app.exception, [e.value for e in app.exception]
    (search,) = STUDIES.all(workspace_root(workspace))
    assert STUDIES.wait(search.id, 600)
    app.run()
    settle(app)  # the baselines of the best line run in the background
    assert not app.exception, [e.value for e in app.exception]
    (best,) = [s.value for s in app.success]
    assert best.startswith("Best: trial ") and "against PCA with the same" in best  # finished
    assert "2 of 2 trials done" in " ".join(m.value for m in app.markdown)
    table = next(f.value for f in app.dataframe if "validation PSNR (dB)" in f.value.columns)
    states = list(table["state"])  # candidates past the 49-value constraint are skipped, untrained
    assert [state for state in states if state != "skipped"] == ["finished", "finished"]
    assert all(why for state, why in zip(states, table["why"]) if state == "skipped")
    assert len(app.get("plotly_chart")) >= 2  # Optuna's history, the Pareto front (importance)
    # a reload (a new session of the same browser) finds the search
    again = open_page(workspace)
    assert again.selectbox(key="experiments_search_shown").value == search.id
    # one click takes the best design to Architecture
    started = time.monotonic()
    again.button(key=f"experiments_search_arch_{search.id}").click().run()
    assert not again.exception, [e.value for e in again.exception]
    assert again.session_state[SPEC_KEY]["name"].startswith("tiny-t")
    assert time.monotonic() - started < 180
    # and one to Train, whose form starts from the settings the trial trained with
    again = open_page(workspace)
    again.button(key=f"experiments_search_train_{search.id}").click().run()
    assert not again.exception, [e.value for e in again.exception]
    assert again.title[0].value == "Train"
    assert again.select_slider(key="train_batch").value == TINY["parameters"]["batch_size"]
    assert again.number_input(key="train_lr").value == TINY["parameters"]["learning_rate"]
    (epochs,) = [n for n in again.number_input if n.key.startswith("train_epochs_")]
    assert epochs.value == TINY["parameters"]["epochs"]
    assert any("best trial trained with" in note.value for note in again.info)


def test_the_study_name_follows_the_spaces_name_until_the_user_types_one(workspace):
    app = open_page(workspace)
    field = app.text_input(key="experiments_search_name")
    shipped = field.value
    assert shipped  # the shipped space's name
    app.text_area(key="experiments_search_space").set_value(json.dumps(TINY)).run()
    assert not app.exception, [e.value for e in app.exception]
    assert app.text_input(key="experiments_search_name").value == TINY["name"] != shipped
    app.text_input(key="experiments_search_name").set_value("my study").run()
    renamed = {**TINY, "name": "other"}
    app.text_area(key="experiments_search_space").set_value(json.dumps(renamed)).run()
    assert app.text_input(key="experiments_search_name").value == "my study"
    assert not app.warning, [w.value for w in app.warning]


def test_a_study_name_taken_by_another_space_is_refused_before_start(workspace):
    """A user trial: reusing the name of a study started with another space gave no word before
    Start; the form now says what Start would refuse, and Start waits for another name. The
    image field says what it counts."""
    from cae.recipe import DataRecipe
    from cae.search import open_study
    from cae.search_space import SearchSpace
    from cae.training import TrainConfig

    other = {**TINY, "parameters": {**TINY["parameters"], "filters": [8, 16]}}
    open_study(
        "tiny",
        SearchSpace.from_dict(other),
        root=workspace_root(workspace),
        recipe=DataRecipe("mnist-sample"),
        base_config=TrainConfig(preview_count=0),
    )
    app = open_page(workspace)
    limit = app.number_input(key="experiments_search_limit")
    assert limit.label == "Training images (and at most as many test images)"
    assert "validation split" in limit.help
    app.text_area(key="experiments_search_space").set_value(json.dumps(TINY)).run()
    assert not app.exception, [e.value for e in app.exception]
    (error,) = [e.value for e in app.error]
    assert "the study 'tiny' was started with another space" in error and "Received:" in error
    assert app.button(key="experiments_search_start").disabled
    app.text_input(key="experiments_search_name").set_value("tiny 2").run()
    assert not app.error and not app.button(key="experiments_search_start").disabled
