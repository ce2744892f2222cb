"""The pre-trained default run shipped in models/: present, loadable, and worth looking at."""

import json
import shutil

import numpy as np

from cae.evaluation import reconstruct
from cae.metrics import summarize
from cae.recipe import DataRecipe
from cae.store import list_runs, load_run, models_dir, run_test_split

DEFAULT_RUN = "classic-mnist-sample-default"


def test_default_run_is_listed_and_recorded():
    runs = {run.run_id: run for run in list_runs(models_dir())}
    run = runs[DEFAULT_RUN]
    assert run.ok, run.broken
    assert run.dataset == "mnist-sample" and run.spec_name == "classic"
    assert run.params == 2690 and tuple(run.latent_shape) == (7, 7, 1)
    assert run.metrics["psnr"] >= 17.5
    assert run.metrics["mse"] > 0
    # the record README describes (it shipped in the flat one of 2026-11-28 until 2026-11-30)
    train = json.loads((run.path / "train.json").read_text())
    assert {"data", "config", "strategy", "outcome"} <= set(train)
    assert run.recipe == DataRecipe("mnist-sample", seed=0)
    assert (run.path / "events.out.tfevents.cae.v2").stat().st_size > 0


def test_default_run_reconstructs_the_test_set_as_recorded():
    run = load_run(DEFAULT_RUN, root=models_dir())
    split = run_test_split(DEFAULT_RUN, root=models_dir())
    assert split.stored and split.count == 500  # self-contained: its test images ship with it
    outputs = reconstruct(run.built.autoencoder, split.images)
    measured = summarize(split.images, outputs)
    assert measured["psnr"] >= 17.5
    assert np.isclose(measured["psnr"], run.metrics["psnr"], atol=0.05)
    assert run.latent_stats is not None


# The default run's train.json as written on 2026-11-28, before runs recorded a data recipe
FLAT_RECORD = {
    "epochs": 100, "batch_size": 64, "optimizer": "adam", "learning_rate": 0.001, "loss": "bce",
    "validation_split": 0.1, "patience": None, "seed": 0, "noise": 0.0, "preview_count": 0,
    "limit": None, "data_seed": 0, "strategy": "default", "dataset": "mnist-sample",
    "epochs_completed": 100, "wall_seconds": 97.607, "stopped": False, "state": "finished",
    "best_epoch": None, "early_stopped": False, "num_train": 4050, "num_validation": 450,
    "name": "classic (default)", "created": "2026-11-28T11:16:58.871499+00:00",
}  # fmt: skip


def test_a_run_saved_before_recipes_and_test_images_still_loads_on_its_own_split(tmp_path):
    """The flat record and no test_images.npz: the split comes back from its dataset, limit and
    data_seed, the very images the run holds out (the same 500 the rebuilt run stores)."""
    old = tmp_path / "old-default"
    shutil.copytree(models_dir() / DEFAULT_RUN, old)
    (old / "train.json").write_text(json.dumps(FLAT_RECORD))
    (old / "test_images.npz").unlink()
    (old / "events.out.tfevents.cae.v2").unlink()
    marker = json.loads((old / "run.json").read_text())
    marker["files"] = [name for name in marker["files"] if (old / name).exists()]
    (old / "run.json").write_text(json.dumps(marker))
    (info,) = list_runs(tmp_path)
    assert info.ok, info.broken
    assert info.recipe == DataRecipe("mnist-sample", seed=0) and info.recipe_problem is None
    rebuilt = run_test_split("old-default", root=tmp_path)
    stored = run_test_split(DEFAULT_RUN, root=models_dir())
    assert not rebuilt.stored and stored.stored
    np.testing.assert_array_equal(rebuilt.pixels, stored.pixels)
