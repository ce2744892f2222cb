"""Saves that fail keep the work: a trained model whose save fails stays staged (in the runs folder,
or a fallback when that cannot be written to), the page says why and offers the save again, and
kept runs survive a server restart in an "unsaved runs" list that any owner can save or discard."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cae.builder import build
from cae.jobs import JobManager
from cae.recipe import DataRecipe, TestSplit, load_recipe
from cae.request import TrainRequest
from cae.spec import preset
from cae.store import (
    discard_staged,
    fallback_staging_root,
    list_runs,
    list_staged,
    publish_run,
    save_run,
    staging_dir,
    workspace_root,
)
from cae.training import TrainConfig
from ui.state import OWNER_KEY

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 120
WORKSPACE = "5" * 32  # the browser the Train page opens in here


def train_page() -> AppTest:
    """The Train page in a tab of the browser whose workspace is WORKSPACE."""
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    app.session_state[OWNER_KEY] = WORKSPACE
    app.run()
    return app.switch_page("pages/2_Train.py").run()


@pytest.fixture
def staging(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "fallback"
    monkeypatch.setenv("CAE_STAGING_DIR", str(folder))
    return folder


def short_request(name: str, preview_count: int = 0) -> TrainRequest:
    """One epoch of the classic network on 64 mnist-sample images."""
    return TrainRequest(
        preset("classic"),
        DataRecipe("mnist-sample", limit=64),
        TrainConfig(epochs=1, batch_size=32, validation_split=0.0, preview_count=preview_count),
        name,
    )


def stage(root: Path, token: str, name: str, *, fallback: bool = False) -> Path:
    """A complete run saved into a staging folder, as the worker does for a stopped job."""
    recipe = DataRecipe("mnist-sample", limit=32)
    folder = staging_dir(token, root, fallback=fallback)
    run_id = save_run(
        build(preset("classic")).autoencoder,
        preset("classic"),
        name=name,
        train_config={"data": recipe.to_dict()},
        history={"loss": [0.3, 0.2]},
        metrics={"mse": 0.1},
        test_split=TestSplit.of(load_recipe(recipe), recipe),
        root=folder,
    )
    return folder / run_id


@pytest.mark.slow
def test_a_failed_save_keeps_the_model_and_the_save_can_be_retried(tmp_path, staging):
    root = tmp_path / "models"
    root.write_text("not a folder")  # the runs folder cannot be written to
    jobs = JobManager()
    request = short_request("kept anyway")
    job = jobs.start("amy", request, root=root)
    assert job.wait(TIMEOUT)
    assert job.run_id is None and job.save_error and job.kept
    assert job.staged_path.is_relative_to(fallback_staging_root(root))
    assert "the trained model is kept" in job.snapshot().message
    with pytest.raises(OSError):
        job.save()  # still not writable: the model stays kept
    assert job.kept
    root.unlink()
    root.mkdir()  # the folder is fixed
    run_id = job.save()
    assert [info.run_id for info in list_runs(root)] == [run_id]
    assert job.save_error is None and not job.kept
    assert not list(fallback_staging_root(root).glob(".tmp-staged-*"))


def test_unsaved_runs_are_listed_published_and_discarded(tmp_path, staging):
    root = tmp_path / "models"
    inside = stage(root, "abc123", "stopped one")
    outside = stage(root, "def456", "failed save", fallback=True)
    listed = {item.name: item for item in list_staged(root)}
    assert set(listed) == {"stopped one", "failed save"}
    assert listed["stopped one"].epochs == 2 and listed["failed save"].expires > 0
    assert list_runs(root) == []  # not runs until saved
    run_id = publish_run(outside, name="saved from the fallback", root=root)
    assert [info.run_id for info in list_runs(root)] == [run_id]
    with pytest.raises(ValueError, match="Received: staged="):
        discard_staged(root / run_id, root)  # a published run is not a staged one
    discard_staged(inside, root)
    assert list_staged(root) == [] and not inside.parent.exists()


def test_the_train_page_lists_unsaved_runs_to_save_or_discard(tmp_path, staging, monkeypatch):
    monkeypatch.setenv("CAE_MODELS_DIR", str(tmp_path / "models"))
    root = workspace_root(WORKSPACE)  # the workspace's kept runs, listed to its tabs only
    keep = stage(root, "k1", "to keep")
    stage(root, "d1", "to drop")
    stage(tmp_path / "models", "g1", "in the gallery")  # no workspace's: not offered here
    app = train_page()
    assert not app.exception, [item.value for item in app.exception]
    assert any(e.label == "2 unsaved run(s)" for e in app.expander)
    by_name = {item.name: item for item in list_staged(root)}
    from ui.unsaved import _key

    drop = _key(by_name["to drop"])
    assert app.button(key=f"unsaved_discard_{drop}").disabled
    app.checkbox(key=f"unsaved_sure_{drop}").check().run()
    app.button(key=f"unsaved_discard_{drop}").click().run()
    assert [item.name for item in list_staged(root)] == ["to keep"]
    app.text_input(key=f"unsaved_name_{_key(by_name['to keep'])}").set_value("rescued")
    app.button(key=f"unsaved_save_{_key(by_name['to keep'])}").click().run()
    assert not app.exception, [item.value for item in app.exception]
    assert [info.name for info in list_runs(root)] == ["rescued"]
    assert list_staged(root) == [] and not keep.exists()


@pytest.mark.slow
def test_a_kept_run_that_a_live_job_holds_is_not_offered_to_others(tmp_path, staging, monkeypatch):
    """Only orphaned kept runs are listed: one a live job holds belongs to that job's owner."""
    from cae.jobs import JOBS

    monkeypatch.setenv("CAE_MODELS_DIR", str(tmp_path / "models"))
    root = workspace_root(WORKSPACE)
    request = short_request("held")
    job = JOBS.start("someone-else", request, root=root, auto_save=False)
    try:
        assert job.wait(TIMEOUT) and job.kept
        assert [item.name for item in list_staged(root)] == ["held"]
        app = train_page()
        assert not app.exception, [item.value for item in app.exception]
        assert not [e for e in app.expander if "unsaved run" in e.label]
    finally:
        JOBS.forget("someone-else")
    assert list_staged(root) == []


@pytest.mark.slow
def test_finished_jobs_are_dropped_after_a_bound_and_their_kept_runs_stay_listed(
    tmp_path, staging, monkeypatch
):
    import cae.jobs

    root = tmp_path / "models"
    jobs = JobManager()
    request = short_request("old one", preview_count=2)
    job = jobs.start("old", request, root=root, auto_save=False)
    assert job.wait(TIMEOUT) and job.kept and jobs.get("old") is job
    monkeypatch.setattr(cae.jobs, "FINISHED_JOB_SECONDS", 0.0)
    time.sleep(0.01)
    with jobs._lock:
        jobs._prune_locked()
    assert jobs.get("old") is None  # dropped, with its previews
    assert [item.name for item in list_staged(root)] == ["old one"]  # the kept run is not lost
    assert str(job.staged_path) not in jobs.staged_paths()


def test_stale_job_folders_of_older_versions_are_removed_at_start(tmp_path, monkeypatch):
    import os
    import tempfile

    import cae.jobs

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    old = tmp_path / "cae-job-abc123"
    old.mkdir()
    (old / "x_train.npy").write_bytes(b"\0" * 1024)
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    fresh = tmp_path / "cae-job-def456"
    fresh.mkdir()
    JobManager()
    assert not old.exists() and fresh.exists()
    assert cae.jobs.remove_stale_job_folders(max_age_s=0) == ["cae-job-def456"]
