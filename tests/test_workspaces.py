"""A workspace per browser (issue 26): the id check, the folders, and what a session sees. A
session sees the gallery (``models/<run-id>``) and its own workspace's runs
(``models/workspaces/<id>/``), never another workspace's; it starts on the shipped default run;
only the owner deletes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import ui.state
from cae.store import (
    DEFAULT_RUN_ID,
    WORKSPACES_DIR,
    check_workspace_id,
    find_run_folder,
    gallery_root,
    is_owner,
    list_runs,
    listing_roots,
    new_workspace_id,
    workspace_issued,
    workspace_root,
)
from ui.state import OWNER_KEY, RUN_KEY, known_workspace, workspace_from_cookies

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
SHIPPED = REPO / "models" / DEFAULT_RUN_ID
WORKSPACE_A = "a" * 32
WORKSPACE_B = "b" * 32


def copy_run(source: Path, folder: Path, run_id: str, name: str, created: str) -> Path:
    """A copy of a real run under a new id, name and creation time (what the listing reads)."""
    target = folder / run_id
    shutil.copytree(source, target)
    record = json.loads((target / "train.json").read_text())
    record.update(name=name, created=created)
    (target / "train.json").write_text(json.dumps(record))
    return target


@pytest.fixture
def classroom(models: Path) -> Path:
    """A runs root with the shipped run, a newer gallery run, and two workspaces each with a run
    newer than both (a classmate's sweep must never become another student's run)."""
    shutil.copytree(SHIPPED, models / DEFAULT_RUN_ID)
    copy_run(SHIPPED, models, "published-1", "published", "2026-12-01T10:00:00+00:00")
    for workspace, when in ((WORKSPACE_A, "02"), (WORKSPACE_B, "03")):
        folder = models / WORKSPACES_DIR / workspace
        folder.mkdir(parents=True)
        letter = workspace[0]
        copy_run(
            SHIPPED, folder, f"run-{letter}", f"mine {letter}", f"2026-12-{when}T10:00:00+00:00"
        )
    return models


def test_a_workspace_id_is_32_lowercase_hex_digits_and_never_a_path(models):
    good = new_workspace_id()
    assert check_workspace_id(good) == good and good != new_workspace_id()
    for bad in ("../" + good[3:], good.upper(), good[:-1], good + "0", "", None, 7, f"{good}/x"):
        with pytest.raises(ValueError, match="Received: workspace_id="):
            check_workspace_id(bad)
        with pytest.raises(ValueError):
            workspace_root(bad)
        assert not workspace_issued(bad) and not known_workspace(bad)
    assert workspace_root(good) == models / WORKSPACES_DIR / good
    assert not workspace_issued(good)  # well formed, but no folder: not issued here
    workspace_root(good).mkdir(parents=True)
    assert workspace_issued(good)


def test_a_cookie_names_a_workspace_only_when_this_server_issued_it(models):
    made_up = new_workspace_id()  # well formed, never issued: a fixation attempt gets nothing
    assert workspace_from_cookies({"cae_workspace": made_up}) is None
    assert workspace_from_cookies({"cae_workspace": "../../etc"}) is None
    assert workspace_from_cookies({}) is None and workspace_from_cookies(None) is None
    issued = ui.state._issue_workspace()  # issued by this process, no folder yet
    assert workspace_from_cookies({"cae_workspace": issued}) == issued
    saved_before = new_workspace_id()  # a workspace that saved before a server restart
    workspace_root(saved_before).mkdir(parents=True)
    assert workspace_from_cookies({"cae_workspace": saved_before}) == saved_before


def test_the_listing_roots_ownership_and_lookup(classroom):
    a_root = workspace_root(WORKSPACE_A)
    assert gallery_root(a_root) == classroom and gallery_root(classroom) is None
    assert listing_roots(a_root) == [a_root, classroom] and listing_roots(classroom) == [classroom]
    gallery = {run.run_id for run in list_runs(classroom)}
    assert gallery == {DEFAULT_RUN_ID, "published-1"}  # the workspaces folder is not a run
    (mine,) = list_runs(a_root)
    assert is_owner(mine, WORKSPACE_A) and not is_owner(mine, WORKSPACE_B)
    assert not is_owner(mine, "../" + WORKSPACE_A[3:]) and not is_owner(mine, None)
    shipped = next(run for run in list_runs(classroom) if run.run_id == DEFAULT_RUN_ID)
    assert not is_owner(shipped, WORKSPACE_A)  # gallery runs are the teacher's
    assert find_run_folder("run-a", a_root) == mine.path
    assert find_run_folder(DEFAULT_RUN_ID, a_root) == classroom / DEFAULT_RUN_ID
    assert find_run_folder("run-b", a_root) == a_root / "run-b"  # another's: not found there
    with pytest.raises(ValueError):
        find_run_folder("../" + WORKSPACE_B, a_root)


def session(workspace: str | None = None, page: str | None = None) -> AppTest:
    """A tab: a new browser (no workspace yet), or one of ``workspace``'s tabs."""
    app = AppTest.from_file(APP, default_timeout=120)
    if workspace is not None:
        app.session_state[OWNER_KEY] = workspace
    app.run()
    if page is not None:
        app.switch_page(page).run()
    assert not app.exception, [item.value for item in app.exception]
    return app


def results_runs(app: AppTest) -> list[str]:
    return list(app.multiselect(key="results_runs").options)


@pytest.mark.slow
def test_a_new_session_starts_on_the_shipped_run_and_sees_the_gallery_only(classroom):
    app = session()
    fresh = app.session_state[OWNER_KEY]
    assert fresh not in (WORKSPACE_A, WORKSPACE_B) and check_workspace_id(fresh) == fresh
    assert any("classic (default)" in item.value for item in app.markdown)  # not "mine b"
    assert not any("mine" in item.value for item in app.markdown)
    assert not app.query_params  # no id in the address bar
    app.switch_page("pages/3_Results.py").run()
    assert not app.exception, [item.value for item in app.exception]
    options = " ".join(results_runs(app))
    assert "classic (default)" in options and "published" in options
    assert "mine" not in options
    app.switch_page("pages/4_Latent_Editor.py").run()
    assert app.selectbox(key="le_run").value == DEFAULT_RUN_ID
    # a visitor who saved nothing leaves no folder (the baselines' cache is the gallery's)
    assert not (classroom / WORKSPACES_DIR / fresh).exists()


@pytest.mark.slow
def test_a_workspace_sees_its_own_runs_not_another_s_and_deletes_only_its_own(classroom):
    app = session(WORKSPACE_A, "pages/3_Results.py")
    assert app.session_state[OWNER_KEY] == WORKSPACE_A
    options = " ".join(results_runs(app))
    assert "mine a" in options and "classic (default)" in options and "mine b" not in options
    app.multiselect(key="results_runs").set_value(["run-a", DEFAULT_RUN_ID]).run()
    buttons = {button.key for button in app.button}
    assert "results_delete_run-a" in buttons
    assert f"results_delete_{DEFAULT_RUN_ID}" not in buttons  # the gallery's: refused
    assert any("only the teacher deletes it" in item.value for item in app.caption)
    app.checkbox(key="results_confirm_run-a").check().run()
    app.button(key="results_delete_run-a").click().run()
    assert not app.exception, [item.value for item in app.exception]
    assert not (classroom / WORKSPACES_DIR / WORKSPACE_A / "run-a").exists()
    assert (classroom / DEFAULT_RUN_ID).is_dir() and (classroom / "published-1").is_dir()
    assert (classroom / WORKSPACES_DIR / WORKSPACE_B / "run-b").is_dir()


def test_a_link_to_another_workspace_s_run_shows_nothing_of_it(classroom):
    app = AppTest.from_file(APP, default_timeout=120)
    app.run()
    app.switch_page("pages/3_Results.py")
    app.query_params["run"] = ["run-b", "published-1"]
    app.run()
    assert not app.exception, [item.value for item in app.exception]
    assert any("names no saved run" in item.value for item in app.warning)
    assert app.session_state[RUN_KEY] == "published-1"  # a gallery run can be linked to
    assert "run-b" not in results_runs(app)


def test_new_workspace_gives_an_empty_one_and_forgets_the_chosen_run(classroom):
    app = session(WORKSPACE_A, "pages/3_Results.py")
    app.multiselect(key="results_runs").set_value(["run-a"]).run()
    assert app.session_state[RUN_KEY] == "run-a"
    app.button(key="sidebar_new_workspace").click().run()
    assert not app.exception, [item.value for item in app.exception]
    fresh = app.session_state[OWNER_KEY]
    assert fresh not in (WORKSPACE_A, WORKSPACE_B) and known_workspace(fresh)
    assert "run-a" not in results_runs(app)
    assert RUN_KEY not in app.session_state or app.session_state[RUN_KEY] != "run-a"
