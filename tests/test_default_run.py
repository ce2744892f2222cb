"""The pre-trained default run shipped in models/: present, loadable, and worth looking at."""

import numpy as np

from cae.metrics import summarize
from cae.store import list_runs, load_run, models_dir, run_test_split
from cae.training import reconstruct

DEFAULT_RUN = "classic-mnist-sample-default"


def test_default_run_is_listed_and_recorded():
    runs = {run.run_id: run for run in list_runs(models_dir())}
    run = runs[DEFAULT_RUN]
    assert run.ok, run.broken
    assert run.dataset == "mnist-sample" and run.spec_name == "classic"
    assert run.params == 2690 and tuple(run.latent_shape) == (7, 7, 1)
    assert run.metrics["psnr"] >= 17.5
    assert run.metrics["mse"] > 0


def test_default_run_reconstructs_the_test_set_as_recorded():
    run = load_run(DEFAULT_RUN, root=models_dir())
    split = run_test_split(DEFAULT_RUN, root=models_dir())
    assert split.stored and split.count == 500  # self-contained: its test images ship with it
    outputs = reconstruct(run.built.autoencoder, split.images)
    measured = summarize(split.images, outputs)
    assert measured["psnr"] >= 17.5
    assert np.isclose(measured["psnr"], run.metrics["psnr"], atol=0.05)
    assert run.latent_stats is not None
