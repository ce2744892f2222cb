"""Heavy steps out of the server (issue 26): baselines and the decoding of uploads run in a worker
process under a memory cap (``cae.offload``); the caller (the server, the CLI) keeps only the
answer, and a pixel bomb ends its worker with a clear message, never the caller."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from cae import baselines, offload
from cae.recipe import DataRecipe, load_recipe
from cae.uploads import upload_summary
from tests.runs import settle, step_notices
from tests.uploads import black_png_zip

REPO = Path(__file__).resolve().parents[1]
MIB = 2**20


class PeakRss:
    """This process's resident memory, sampled every 20 ms while the block runs: ``before``,
    ``peak`` and ``rise`` (peak - before), in bytes."""

    def __enter__(self) -> PeakRss:
        self._process = psutil.Process()
        self.before = self.peak = self._process.memory_info().rss
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def rise(self) -> int:
        return self.peak - self.before


@pytest.fixture
def digits_upload(tmp_path: Path) -> Path:
    images = load_recipe(DataRecipe("mnist-sample", limit=300)).x_train
    path = tmp_path / "digits.npy"
    np.save(path, images)
    return path


@pytest.mark.slow
def test_a_baseline_in_a_worker_is_the_one_computed_here_and_is_cached(digits_upload, tmp_path):
    recipe = DataRecipe.for_file(digits_upload, seed=2)
    root = tmp_path / "models"
    found = offload.baselines_in_worker(recipe, 7, root)
    assert set(found) == {"pca", "mean_image"}
    assert found["pca"] == baselines.pca_baseline(recipe, 7, root=root, use_cache=False)
    assert found["mean_image"] == baselines.mean_image_baseline(recipe, use_cache=False)
    # the worker wrote the cache the page and the CLI read back
    assert baselines.cache_path(recipe, "pca-7", root).is_file()


def test_a_refusal_comes_back_as_the_steps_own_line(digits_upload, tmp_path):
    recipe = DataRecipe.for_file(digits_upload)
    digits_upload.unlink()
    with pytest.raises(offload.StepError, match="no longer here; upload it again"):
        offload.baselines_in_worker(recipe, 3, tmp_path)
    with pytest.raises(offload.StepError, match="Received: kind='nope'"):
        offload.run_in_worker("nope", {})


def test_an_upload_is_decoded_in_a_worker_and_only_its_summary_comes_back(digits_upload):
    content = digits_upload.read_bytes()
    there = offload.upload_summary_in_worker(content, "digits.npy", samples=3)
    here = upload_summary(content, "digits.npy", samples=3)
    for field in ("name", "num_train", "num_test", "image_shape", "dtype", "held_bytes"):
        assert getattr(there, field) == getattr(here, field), field
    assert there.samples.shape == (3, 28, 28, 1) and np.array_equal(there.samples, here.samples)
    with pytest.raises(offload.StepError, match="Received: first bytes"):
        offload.upload_summary_in_worker(b"not an array", "digits.npy")


@pytest.mark.slow
def test_a_pixel_bomb_past_the_cap_ends_its_worker_with_a_clear_message_not_the_caller():
    bomb = black_png_zip(300)  # 236 MB as held, from a ~55 KB zip
    assert len(bomb) < 100_000
    with PeakRss() as rss, pytest.raises(offload.StepError) as refused:
        offload.upload_summary_in_worker(bomb, "bomb.zip", memory_limit=300 * MIB)
    message = str(refused.value)
    assert "does not fit in this step's memory cap of 0.29 GiB (CAE_STEP_MEMORY)" in message
    assert message.endswith("Received: MemoryError")
    assert rss.rise < 40 * MIB, rss.rise  # decoded elsewhere: here, only the zip's bytes
    # the same bomb under the default cap is decoded there, and only its summary comes here
    with PeakRss() as rss:
        summary = offload.upload_summary_in_worker(bomb, "bomb.zip")
    assert (summary.num_train, summary.num_test, summary.image_shape) == (270, 30, (512, 512, 3))
    # the 4 preview images (12.6 MB as float32) cross as JSON: a few passing copies of them,
    # against the 236 MB the decoding holds (and ~480 MB at its peak) in the worker
    assert rss.rise < 100 * MIB, rss.rise


WRAPPER = """
import json, resource, subprocess, sys
cap = 4 * 2**30  # the whole command, worker included, can never take the machine
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
done = subprocess.run([sys.executable, "-m", "cae", *sys.argv[1:]], capture_output=True, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"code": done.returncode, "out": done.stdout, "err": done.stderr, "peak": peak}))
"""


@pytest.mark.slow
def test_cli_baseline_on_a_pixel_bomb_stays_under_2_gb(tmp_path):
    # 200 black 512x512 RGB PNGs (a 37 KB zip, 157 MB as held): PCA's blocks of 2,048 rows as
    # float64 made it ~3 GB; the 1,000-image bomb of the issue (181 KB) took 11.9 GB
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(black_png_zip(200))
    args = ["baseline", "--data", str(bomb), "--components", "4", "--json"]
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, *args, "--root", str(tmp_path / "models")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        check=True,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["code"] == 0, report["err"]
    scores = json.loads(report["out"])
    assert scores["mse"] == 0 and scores["mean_image"]["mse"] == 0  # black images, exactly
    assert report["peak"] < 2 * 10**9, report["peak"] / MIB  # the largest process of the command


# ------------------------------------------------------------------------------------ the app

WIDE = {  # 128x128 images, a code of 4x4x1: PCA with 16 components on 16,384 values per image
    "name": "wide",
    "input_shape": [128, 128, 1],
    "encoder": [
        {"type": "pool", "size": 4},
        {"type": "pool", "size": 4},
        {"type": "pool", "size": 2},
    ],
    "decoder": [
        {"type": "upsample", "size": 2},
        {"type": "upsample", "size": 4},
        {"type": "upsample", "size": 4},
        {"type": "conv", "filters": 1, "kernel": 3, "activation": "sigmoid"},
    ],
}


def _saved_wide_run(root: Path, upload: Path, count: int) -> tuple[str, DataRecipe]:
    """An untrained :data:`WIDE` network saved as a run of ``count`` noisy 128x128 images."""
    from cae.builder import build
    from cae.recipe import TestSplit
    from cae.spec import ArchitectureSpec
    from cae.store import save_run

    rng = np.random.default_rng(count)
    np.save(upload, rng.integers(0, 256, (count, 128, 128), dtype=np.uint8))
    recipe = DataRecipe.for_file(upload)
    spec = ArchitectureSpec.from_dict(WIDE)
    run_id = save_run(
        build(spec).autoencoder,
        spec,
        name=upload.stem,
        train_config={"data": recipe.to_dict(), "config": {"epochs": 1}},
        history={"loss": [0.3]},
        metrics={"mse": 0.1, "psnr": 10.0, "ssim": 0.1, "params": 10, "wall_seconds": 1.0},
        test_split=TestSplit.of(load_recipe(recipe), recipe),
        root=root,
    )
    return run_id, recipe


@pytest.mark.slow
def test_results_server_memory_stays_flat_while_a_large_baseline_runs(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    root = tmp_path / "models"
    small_id, _ = _saved_wide_run(root, tmp_path / "small.npy", 100)
    large_id, recipe = _saved_wide_run(root, tmp_path / "large.npy", 1200)  # 20 MB as uint8
    monkeypatch.setenv("CAE_MODELS_DIR", str(root))
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=240)
    app.run().switch_page("pages/3_Results.py").run()
    settle(app.multiselect(key="results_runs").set_value([small_id]).run())  # warmed up
    assert not app.exception, [item.value for item in app.exception]
    # in the server, this PCA held blocks of all 1,080 training rows of 16,384 values as float32
    # and float64 and their centred copy: ~350 MB more than here (~650 MB for 2,200 images)
    with PeakRss() as rss:
        settle(app.multiselect(key="results_runs").set_value([large_id]).run())
    assert not app.exception, [item.value for item in app.exception]
    table = next(frame.value for frame in app.dataframe if "baseline" in frame.value.columns)
    assert list(table["baseline"]) == ["PCA, 16 components", "mean image"]
    assert list(table["run id"]) == [large_id, large_id]
    assert baselines.cache_path(recipe, "pca-16", root).is_file()  # written by the worker
    assert rss.rise < 150 * MIB, rss.rise / MIB


@pytest.mark.slow
def test_a_pixel_bomb_upload_ends_in_a_clear_message_with_the_server_alive(models, monkeypatch):
    from tests.test_page_train_results import TRAIN, open_page

    monkeypatch.setenv(offload.ENV_LIMIT, str(300 * MIB))
    app = open_page(TRAIN, timeout=180)
    app.selectbox(key="train_dataset").set_value("upload").run()
    with PeakRss() as rss:
        app.file_uploader(key="train_upload").upload("bomb.zip", black_png_zip(300)).run()
    assert not app.exception, [item.value for item in app.exception]
    (error,) = [item.value for item in app.error]
    assert error.startswith(
        "bomb.zip cannot be used: the upload 'bomb.zip' does not fit in this step's memory cap "
        "of 0.29 GiB (CAE_STEP_MEMORY); use fewer or smaller images"
    ), error
    assert error.endswith("Received: MemoryError")
    assert rss.rise < 60 * MIB, rss.rise / MIB  # the server held the zip's 55 KB, no image
    assert app.button(key="train_start").disabled
    # the same server, the next upload: read and summarised as before
    digits = io.BytesIO()
    np.save(digits, load_recipe(DataRecipe("mnist-sample", limit=100)).x_train)
    app.file_uploader(key="train_upload").upload("digits.npy", digits.getvalue()).run()
    assert not app.exception and not app.error
    assert any("90 train / 10 test images of 28x28x1" in item.value for item in app.caption)


def test_a_step_of_the_server_waits_its_turn_in_the_one_queue(digits_upload):
    """With an owner (the server's callers) a step asks the server's queue first: while the same
    student already has a step running, the upload waits (queued, with a place), and it runs once
    that one is released; its entry then leaves the running ones."""
    from cae.admission import SCHEDULER

    owner = f"student-{time.time_ns()}"
    holder = SCHEDULER.submit(owner, "baseline", 1, "an earlier step of the same student")
    assert holder.state == "running"
    content, found = digits_upload.read_bytes(), []
    thread = threading.Thread(
        target=lambda: found.append(
            offload.upload_summary_in_worker(content, "digits.npy", samples=1, owner=owner)
        )
    )
    thread.start()
    time.sleep(1.0)
    mine = [e for e in SCHEDULER.entries() if e["owner"] == owner and e["kind"] == "upload"]
    assert [e["state"] for e in mine] == ["queued"] and not found
    SCHEDULER.release(holder.entry_id)
    thread.join(60)
    assert found and found[0].num_train + found[0].num_test == 300
    mine = [e for e in SCHEDULER.entries() if e["owner"] == owner and e["kind"] == "upload"]
    assert [e["state"] for e in mine] == ["done"]


@pytest.mark.slow
def test_results_scores_a_large_test_split_in_a_worker_after_its_place_in_the_queue(
    tmp_path, monkeypatch
):
    """Past the size the server scores itself (here 0 bytes), Results scores a run in a worker
    process through the server's one queue: while the student's earlier step holds their turn
    the page says its place at once, then shows the numbers the server would have computed."""
    import shutil

    from streamlit.testing.v1 import AppTest

    from cae.admission import SCHEDULER
    from cae.evaluation import split_report
    from cae.metrics import METRICS
    from cae.store import load_run, run_test_split
    from ui.state import OWNER_KEY

    run_id = "classic-mnist-sample-default"
    root = tmp_path / "models"
    shutil.copytree(REPO / "models" / run_id, root / run_id)
    monkeypatch.setenv("CAE_MODELS_DIR", str(root))
    monkeypatch.setenv(offload.IN_SERVER_ENV, "0")
    owner = f"{time.time_ns():032x}"[-32:]
    holder = SCHEDULER.submit(owner, "evaluate", 1, "an earlier step of the same student")
    try:
        app = AppTest.from_file(str(REPO / "app.py"), default_timeout=180)
        app.session_state[OWNER_KEY] = owner
        app.run().switch_page("pages/3_Results.py")
        started = time.monotonic()
        app.run()
        assert not app.exception, [item.value for item in app.exception]
        notices = step_notices(app)
        assert any("place 1" in text for text in notices), notices
        assert time.monotonic() - started < 60  # drawn as soon as the page is (2 s when idle)
    finally:
        SCHEDULER.release(holder.entry_id)
    settle(app)
    assert not app.exception, [item.value for item in app.exception]
    run = load_run(run_id, root=root)
    expected = split_report(run.built, run_test_split(run_id, root=root).pixels).metrics
    table = next(frame.value for frame in app.dataframe if "epochs" in frame.value.columns)
    for metric in METRICS:
        assert table[f"test {metric.label}"][0] == metric.format(expected[metric.key])
    mine = [e for e in SCHEDULER.entries() if e["owner"] == owner and e["kind"] == "evaluate"]
    assert {e["state"] for e in mine} == {"done"}, mine
