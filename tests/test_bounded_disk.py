"""Bounded disk (issue 26): an upload is kept while a job holds it and for a stated time after
its last use, within a quota per workspace (cae.upload_files through cae.store.save_upload); a
full quota says so and removes nothing; a staging folder goes once its model is saved or
discarded, in the runs folder and in its fallback."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cae.spec import preset
from cae.store import (
    discard_staged,
    list_runs,
    publish_run,
    save_run,
    save_upload,
    staging_dir,
    uploads_dir,
    workspace_root,
)
from cae.upload_files import (
    UploadQuotaError,
    clean_uploads,
    hold_upload,
    keep_seconds,
    owner_usage,
    read_record,
    record_path,
    release_upload,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RUN = REPO / "models" / "classic-mnist-sample-default"


def npy_bytes(count: int, seed: int = 0) -> bytes:
    """An .npy of ``count`` random 28x28 uint8 images, as an upload's bytes."""
    images = np.random.default_rng(seed).integers(0, 256, (count, 28, 28), dtype=np.uint8)
    buffer = io.BytesIO()
    np.save(buffer, images)
    return buffer.getvalue()


def record_names(*paths: Path) -> list[str]:
    return [record_path(path).name for path in paths]


def folder_names(folder: Path) -> list[str]:
    return sorted(entry.name for entry in folder.iterdir())


# ------------------------------------------------------------------------------ uploads


def test_an_upload_records_its_owners_and_counts_for_each(tmp_path):
    content = npy_bytes(4)
    path = save_upload(content, "digits.npy", tmp_path, owner="ws-a")
    record = read_record(path)
    assert record.size == len(content) and set(record.owners) == {"ws-a"}
    assert record_path(path).is_file() and record.holds == {}
    again = save_upload(content, "copy.npy", tmp_path, owner="ws-b")  # same bytes: one file
    assert again == path and set(read_record(path).owners) == {"ws-a", "ws-b"}
    folder = uploads_dir(tmp_path)
    for owner in ("ws-a", "ws-b"):
        assert owner_usage(folder, owner).used == len(content)
    assert owner_usage(folder, "ws-c").used == 0
    with pytest.raises(ValueError, match="Received: owner=''"):
        save_upload(content, "digits.npy", tmp_path, owner="")


def test_a_full_quota_names_the_quota_and_the_size_and_removes_nothing(tmp_path, monkeypatch):
    first, second = npy_bytes(3, seed=1), npy_bytes(3, seed=2)  # 2,480 bytes each
    monkeypatch.setenv("CAE_UPLOAD_QUOTA", str(len(first) + 1000))
    kept = save_upload(first, "a.npy", tmp_path, owner="ws")
    before = folder_names(uploads_dir(tmp_path))
    with pytest.raises(UploadQuotaError) as refused:
        save_upload(second, "b.npy", tmp_path, owner="ws")
    message = str(refused.value)
    assert (
        f"upload quota of {len(first) / 1024 + 1000 / 1024:.1f} KiB (CAE_UPLOAD_QUOTA)" in message
    )
    assert "keeps 1 upload(s)" in message and "nothing was removed" in message
    assert message.endswith(
        f"Received: size={len(second):,} bytes ({len(second) / 1024:.1f} KiB), "
        f"quota={len(first) + 1000:,} bytes, used={len(first):,} bytes"
    )
    assert folder_names(uploads_dir(tmp_path)) == before and kept.read_bytes() == first
    assert save_upload(first, "a again.npy", tmp_path, owner="ws") == kept  # costs nothing more
    save_upload(second, "b.npy", tmp_path, owner="another workspace")  # a quota of its own


def test_an_expired_upload_frees_the_quota_at_the_next_save(tmp_path, monkeypatch):
    first, second = npy_bytes(3, seed=1), npy_bytes(3, seed=2)
    monkeypatch.setenv("CAE_UPLOAD_QUOTA", str(len(first) + 1000))
    old = save_upload(first, "a.npy", tmp_path, owner="ws")
    data = json.loads(record_path(old).read_text())
    data["last_used"] = data["owners"]["ws"] = time.time() - keep_seconds() - 60  # a day ago
    record_path(old).write_text(json.dumps(data))
    new = save_upload(second, "b.npy", tmp_path, owner="ws")
    assert not old.exists() and not record_path(old).exists() and new.is_file()


def test_a_workspace_nobody_uses_again_loses_its_expired_uploads_and_stale_folders(tmp_path):
    """Another student's upload or save (or the server's restart) sweeps every workspace: an
    idle workspace's expired upload and its day-old staged folder go; what is kept stays."""
    from cae.store import TMP_PREFIX, sweep_expired

    idle, busy = workspace_root("a" * 32, tmp_path), workspace_root("b" * 32, tmp_path)
    old = save_upload(npy_bytes(3, seed=1), "a.npy", idle, owner="a" * 32)
    kept = save_upload(npy_bytes(3, seed=2), "b.npy", idle, owner="a" * 32)
    data = json.loads(record_path(old).read_text())
    data["last_used"] = data["owners"]["a" * 32] = time.time() - keep_seconds() - 60
    record_path(old).write_text(json.dumps(data))
    staged = idle / f"{TMP_PREFIX}staged-abc"
    staged.mkdir()
    day_old = time.time() - 2 * 86400
    os.utime(staged, (day_old, day_old))
    fresh = idle / f"{TMP_PREFIX}staged-new"
    fresh.mkdir()
    # the uploads above swept the server's folder already: within the interval, nothing more
    save_upload(npy_bytes(3, seed=3), "c.npy", busy, owner="b" * 32)
    assert old.is_file()
    assert set(sweep_expired(busy, force=True)) >= {old.name, staged.name}  # from a workspace
    assert not old.exists() and not staged.exists()
    assert kept.is_file() and fresh.is_dir()


def test_an_upload_is_kept_while_held_and_for_the_keep_time_after(tmp_path, monkeypatch):
    monkeypatch.setenv("CAE_UPLOAD_KEEP_HOURS", "2")
    assert keep_seconds() == 7200
    path = save_upload(npy_bytes(2), "a.npy", tmp_path, owner="ws")
    folder = uploads_dir(tmp_path)
    assert hold_upload(path, "job-1", "ws")
    assert clean_uploads(folder, now=time.time() + 10 * 7200) == [] and path.is_file()
    release_upload(path, "job-1")
    assert read_record(path).holds == {}
    assert clean_uploads(folder, now=time.time() + 3600) == [] and path.is_file()
    removed = clean_uploads(folder, now=time.time() + 7200 + 60)
    assert path.name in removed and not path.exists() and not record_path(path).exists()
    assert not hold_upload(path, "job-2") and not hold_upload(None, "job-2")


def test_a_hold_of_a_process_that_is_gone_does_not_keep_an_upload(tmp_path):
    path = save_upload(npy_bytes(2), "a.npy", tmp_path, owner="ws")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    data = json.loads(record_path(path).read_text())
    data["holds"] = {"job-of-a-killed-server": {"owner": "ws", "pid": int(gone.stdout), "since": 0}}
    record_path(path).write_text(json.dumps(data))
    assert read_record(path).live_holds() == {}
    assert path.name in clean_uploads(uploads_dir(tmp_path), now=time.time() + keep_seconds() + 60)


def test_files_saved_before_records_and_crash_leftovers_are_cleaned(tmp_path):
    folder = uploads_dir(tmp_path)
    folder.mkdir(parents=True)
    legacy, fresh = folder / ("a" * 64 + ".npy"), folder / ("b" * 64 + ".npy")
    partial, orphan = folder / ".tmp-0123.npy", folder / ("c" * 64 + ".npy.owners.json")
    for path in (legacy, fresh, partial, orphan):
        path.write_bytes(b"x")
    long_ago = time.time() - keep_seconds() - 3600
    os.utime(legacy, (long_ago, long_ago))
    os.utime(partial, (long_ago, long_ago))
    held = folder / ("d" * 64 + ".npy")  # saved before records, now trained on
    held.write_bytes(b"x")
    os.utime(held, (long_ago, long_ago))
    assert hold_upload(held, "job-1", "ws") and record_path(held).is_file()
    record_path(fresh).write_text('{"last_used": "soon", "owners": {"ws": null}, "holds": []}')
    assert read_record(fresh).owners == {} and read_record(fresh).holds == {}  # read, not raised
    removed = clean_uploads(folder)
    assert sorted(removed) == sorted([legacy.name, partial.name, orphan.name])
    assert folder_names(folder) == sorted([fresh.name, held.name, *record_names(fresh, held)])
    assert not hold_upload(tmp_path / "elsewhere.npy", "job-1")  # a --data file is not ours


@pytest.mark.slow
def test_a_job_holds_its_upload_from_its_start_to_its_end(tmp_path):
    """A real job on a real upload: held while queued or training, released at the end."""
    from cae.jobs import JobManager
    from cae.recipe import DataRecipe
    from cae.request import TrainRequest
    from cae.training import TrainConfig

    digits = np.load(REPO / "cae" / "_data" / "mnist_sample.npz")["x"][:40]
    buffer = io.BytesIO()
    np.save(buffer, digits)
    path = save_upload(buffer.getvalue(), "digits.npy", tmp_path, owner="ws")
    chosen = read_record(path).last_used
    recipe = DataRecipe.for_file(path, name="digits.npy")
    config = TrainConfig(epochs=1, batch_size=16, validation_split=0.0, preview_count=0)
    job = JobManager().start("ws", TrainRequest(preset("classic"), recipe, config, "held"),
                             root=tmp_path)  # fmt: skip
    assert job.job_id in read_record(path).holds
    assert clean_uploads(uploads_dir(tmp_path), now=time.time() + 2 * keep_seconds()) == []
    assert job.wait(120) and job.run_id, job.snapshot().message
    record = read_record(path)
    assert record.holds == {} and record.last_used > chosen  # the keep time starts at the end


# ------------------------------------------------------------------------ staged folders


def test_a_failed_save_into_a_staging_folder_leaves_no_folder(tmp_path):
    """A save that fails midway (a full disk; here a model that cannot be written) removes the
    staging folder it made, so the fallback's copy is the only one left."""
    staging = staging_dir("job1", tmp_path)
    with pytest.raises(Exception):  # noqa: B017 - whatever the failure, nothing may be left
        save_run(object(), preset("classic"), name="x", train_config={}, history={},
                 metrics={}, root=staging)  # fmt: skip
    assert not staging.exists() and folder_names(tmp_path) == []


@pytest.mark.parametrize("action", ["save", "discard"])
def test_saving_or_discarding_a_staged_run_removes_both_staging_folders(
    action, tmp_path, monkeypatch
):
    monkeypatch.setenv("CAE_STAGING_DIR", str(tmp_path / "fallback"))
    root = tmp_path / "runs"
    leftover = staging_dir("job1", root)  # an attempt in the runs folder that failed
    (leftover / ".tmp-0a1b2c").mkdir(parents=True)
    staged = staging_dir("job1", root, fallback=True) / "classic-run"
    shutil.copytree(DEFAULT_RUN, staged)
    other = staging_dir("job2", root) / "classic-run"  # another job's run is left alone
    shutil.copytree(DEFAULT_RUN, other)
    if action == "save":
        run_id = publish_run(staged, name="saved again", root=root)
        assert [run.run_id for run in list_runs(root)] == [run_id]
    else:
        discard_staged(staged, root)
        assert list_runs(root) == []
    assert not leftover.exists() and not staged.parent.exists()
    assert other.is_dir() and folder_names(root) == sorted([".tmp-staged-job2", *(
        [run_id] if action == "save" else [])])  # fmt: skip


def test_a_complete_run_in_the_other_staging_place_is_not_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("CAE_STAGING_DIR", str(tmp_path / "fallback"))
    root = tmp_path / "runs"
    first = staging_dir("job1", root) / "classic-run"
    second = staging_dir("job1", root, fallback=True) / "classic-run"
    for path in (first, second):
        shutil.copytree(DEFAULT_RUN, path)
    discard_staged(second, root)
    assert first.is_dir() and not second.parent.exists()


# ------------------------------------------------------------------------ the Train page


def test_the_train_page_keeps_an_upload_for_its_workspace_and_says_when_the_quota_is_full(
    models, monkeypatch
):
    """Chosen on the Train page, an upload is written with the session's owner beside it; past
    the quota the page says so when the file is chosen, and nothing is written."""
    from tests.test_page_train_results import TRAIN, open_page

    small, large = npy_bytes(100, seed=3), npy_bytes(200, seed=4)  # 78 KB and 157 KB
    monkeypatch.setenv("CAE_UPLOAD_QUOTA", str(len(small) + 1000))
    app = open_page(TRAIN, timeout=180)
    app.selectbox(key="train_dataset").set_value("upload").run()
    app.file_uploader(key="train_upload").upload("small.npy", small).run()
    assert not app.exception and not app.error
    owner = app.session_state["owner_id"]
    kept_in = uploads_dir(workspace_root(owner, models))  # the workspace's own folder
    (kept,) = [path for path in kept_in.iterdir() if path.suffix == ".npy"]
    assert set(read_record(kept).owners) == {owner}
    app.file_uploader(key="train_upload").upload("large.npy", large).run()
    assert not app.exception
    (error,) = [str(item.value) for item in app.error]
    assert error.startswith(
        "large.npy is not kept: the upload does not fit this workspace's upload"
    )
    assert f"Received: size={len(large):,} bytes" in error
    assert [path for path in kept_in.iterdir() if path.suffix == ".npy"] == [kept]
