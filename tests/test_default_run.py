"""The pre-trained default run shipped in models/: present, loadable, and worth looking at."""

import numpy as np

from cae.data import load_dataset
from cae.metrics import summarize
from cae.store import list_runs, load_run, models_dir
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
    dataset = load_dataset("mnist-sample")
    outputs = reconstruct(run.built.autoencoder, dataset.x_test)
    measured = summarize(dataset.x_test, outputs)
    assert measured["psnr"] >= 17.5
    assert np.isclose(measured["psnr"], run.metrics["psnr"], atol=0.05)
    assert run.latent_stats is not None
