"""Random samples from a density fitted after training to a run's training codes (issue 28,
point 6): ``cae.latent.fit_density`` / ``draw_codes`` and ``cae.sampling`` on a real run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cae.latent import CodeDensity, draw_codes, fit_density, mixture_fits

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
RUN = "classic-mnist-sample-default"


def clusters(count: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Codes (count, 1, 1, 4) in 10 tight, far-apart clusters (as a digit's codes gather by class),
    and the cluster centres."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.0, 20.0, (10, 4))
    labels = rng.integers(0, 10, count)
    codes = centres[labels] + 0.2 * rng.standard_normal((count, 4))
    return codes.reshape(count, 1, 1, 4), centres


def nearest_centre(samples: np.ndarray, centres: np.ndarray) -> np.ndarray:
    flat = samples.reshape(len(samples), -1)
    return np.sqrt(((flat[:, None, :] - centres[None]) ** 2).sum(-1)).min(1)


def test_the_mixture_samples_where_the_codes_are_and_one_gaussian_does_not():
    codes, centres = clusters()
    gmm = fit_density(codes, "gmm")
    gaussian = fit_density(codes, "gaussian")
    assert (gmm.kind, gmm.components, gmm.count) == ("gmm", 10, 3000)
    assert (gaussian.kind, gaussian.components) == ("gaussian", 1)
    rng = np.random.default_rng(1)
    near_gmm = nearest_centre(gmm.sample(2000, rng), centres)
    near_gaussian = nearest_centre(gaussian.sample(2000, rng), centres)
    # a mixture's samples fall in the clusters (sd 0.2), one Gaussian's between them
    assert np.median(near_gmm) < 0.5 < np.median(near_gaussian)


def test_samples_are_seeded_shaped_and_within_each_channels_range():
    codes, _ = clusters()
    density = fit_density(codes)
    a = draw_codes("gmm", 50, (1, 1, 4), variational=False, density=density,
                   rng=np.random.default_rng(3))  # fmt: skip
    b = density.sample(50, np.random.default_rng(3))
    assert a.shape == (50, 1, 1, 4) and a.dtype == np.float32 and np.array_equal(a, b)
    drawn = density.sample(5000, np.random.default_rng(4)).reshape(-1, 4)
    channels = codes.reshape(-1, 4).astype(np.float32)  # samples are float32
    assert (drawn >= channels.min(0)).all() and (drawn <= channels.max(0)).all()
    assert density.sample(0).shape == (0, 1, 1, 4)


def test_the_fit_is_bounded_and_falls_back_to_one_gaussian_where_codes_are_too_few():
    codes, _ = clusters(3000)
    capped = fit_density(codes, max_codes=1000)
    assert capped.count == 1000 and capped.kind == "gmm"
    few = fit_density(codes[:40])  # 10 components of 4 values need 50
    assert few.kind == "gaussian" and "too few" in few.note and "one Gaussian" in few.describe()
    assert "256" in mixture_fits(10_000, 300)  # too big a code for full covariances
    assert mixture_fits(10_000, 49) == ""


def test_the_brush_follows_the_fitted_spread_per_cell():
    rng = np.random.default_rng(0)
    # channel 0 spread wide in cell (0, 0), narrow in (0, 1); channel 1 dead (always 2.0)
    codes = np.zeros((2000, 1, 2, 2))
    codes[:, 0, 0, 0] = rng.normal(5.0, 1.0, 2000)
    codes[:, 0, 1, 0] = rng.normal(5.0, 0.1, 2000)
    codes[:, :, :, 1] = 2.0
    density = fit_density(codes, "gaussian")
    # each cell's range: the 1st to 99th percentile of its codes (about +-2.33 sigma here)
    for col, sigma in ((0, 1.0), (1, 0.1)):
        cell = codes[:, 0, col, 0]
        low, high = density.cell_low[0, col, 0], density.cell_high[0, col, 0]
        assert (low, high) == pytest.approx(tuple(np.percentile(cell, [1, 99])))
        assert high - low == pytest.approx(4.65 * sigma, rel=0.1)
    lows, highs = density.brush_ranges()  # the slider spans every cell's range
    assert lows[0] == pytest.approx(density.cell_low[..., 0].min())
    assert highs[0] == pytest.approx(density.cell_high[..., 0].max())
    assert (lows[1], highs[1]) == (2.0, 3.0)  # a dead channel: a span of 1
    assert (density.cell_low[..., 1] == 2.0).all() and (density.cell_high[..., 1] == 3.0).all()
    # a dead cell in a live channel takes its channel's range: nothing to go by
    codes[:, 0, 1, 0] = 0.0
    dead = fit_density(codes, "gaussian")
    assert dead.cell_low[0, 1, 0] == 0.0
    assert dead.cell_high[0, 1, 0] == pytest.approx(codes[..., 0].max())


def test_the_samplers_refuse_what_they_cannot_draw():
    codes, _ = clusters(200)
    with pytest.raises(ValueError, match=r"plain run has no prior.*Received: sampler='prior'"):
        draw_codes("prior", 1, (1, 1, 4), variational=False)
    with pytest.raises(ValueError, match=r"one of gmm, gaussian, prior\. Received: sampler='x'"):
        draw_codes("x", 1, (1, 1, 4), variational=True)
    with pytest.raises(ValueError, match=r"Received: density=None"):
        draw_codes("gmm", 1, (1, 1, 4), variational=True)
    with pytest.raises(ValueError, match=r"another shape\. Received: density \[1, 1, 4\]"):
        draw_codes("gmm", 1, (2, 2, 1), variational=False, density=fit_density(codes))
    with pytest.raises(ValueError, match=r"finite numbers\. Received: 1 NaN"):
        fit_density(np.where(np.arange(8) == 3, np.nan, 1.0).reshape(2, 1, 1, 4))
    with pytest.raises(ValueError, match=r"kind must be 'gmm' or 'gaussian'\. Received"):
        fit_density(codes, "prior")
    prior = draw_codes("prior", 4000, (1, 1, 4), variational=True, rng=np.random.default_rng(0))
    assert abs(float(prior.std()) - 1.0) < 0.05


def test_a_runs_density_is_fitted_to_its_training_codes():
    from cae.latent import CELL_PERCENTILES
    from cae.latent_edit import LatentEdit
    from cae.sampling import fit_run_density, sample_run, training_codes
    from cae.store import load_run

    loaded = load_run(RUN, MODELS)
    density = fit_run_density(loaded)
    assert isinstance(density, CodeDensity)
    # the shipped run's 4,500 training digits, 49 values each: a 10-component mixture
    assert (density.kind, density.count, density.latent_shape) == ("gmm", 4500, (7, 7, 1))
    assert "fitted to 4,500 training codes" in density.describe()
    images, words = sample_run(loaded, 6, density=density, rng=np.random.default_rng(0))
    assert images.shape == (6, 28, 28, 1) and images.min() >= 0.0 and images.max() <= 1.0
    assert words == density.describe()

    # each cell's brush range is its own spread in those codes (issue 28): the top-left corner,
    # always bright in a digit's code, spans about 3.6-4.2; the middle, 0-5.2
    codes, _ = training_codes(loaded)
    corner, middle = (0, 0, 0), (3, 3, 0)
    for cell in (corner, middle):
        spread = np.percentile(codes[(slice(None), *cell)], CELL_PERCENTILES)
        assert (density.cell_low[cell], density.cell_high[cell]) == pytest.approx(tuple(spread))
    assert density.cell_low[corner] > density.cell_low[middle] + 2.0
    assert density.cell_high[corner] < density.cell_high[middle] - 0.5
    # a stroke over both cells with the channel's low end: each held to its own range
    lows, highs = density.brush_ranges()
    ranges = (density.cell_low, density.cell_high)
    edit = LatentEdit.start(codes[0], "run|t|test:0")
    cells = np.zeros((7, 7), bool)
    cells[0, 0] = cells[3, 3] = True
    low_end = edit.paint(cells, "set", lows[0], ranges)
    assert low_end.code[corner] == pytest.approx(density.cell_low[corner])
    assert low_end.code[middle] == pytest.approx(density.cell_low[middle])
    assert low_end.last == "set 2 cell(s) (0; 2 held to their cell's range)"
    high_end = edit.paint(cells, "set", highs[0], ranges)
    assert high_end.code[corner] == pytest.approx(density.cell_high[corner])
    assert high_end.code[middle] == pytest.approx(min(highs[0], density.cell_high[middle]))
    unheld = edit.paint(cells, "set", lows[0])  # no ranges: the value as it is
    assert unheld.code[corner] == unheld.code[middle] == pytest.approx(lows[0])


def test_the_server_fits_a_run_of_an_upload_to_its_test_codes_without_reading_the_file(tmp_path):
    """No upload is held whole in the server (issue 26): with read_uploads=False a run trained on
    an uploaded file is fitted to its stored test images' codes, and says so."""
    from cae.sampling import training_codes
    from cae.store import load_run, run_test_split
    from tests.test_offload import _saved_wide_run

    root = tmp_path / "models"
    run_id, _ = _saved_wide_run(root, tmp_path / "upload.npy", 60)
    loaded = load_run(run_id, root=root)
    test = run_test_split(run_id, root=root).pixels
    codes, words = training_codes(loaded, test_images=test, read_uploads=False)
    assert len(codes) == len(test)
    assert words.startswith("test codes (its training images cannot be had: an uploaded file")
    codes, words = training_codes(loaded, test_images=test)  # the CLI reads the file
    assert words == "training codes" and len(codes) > len(test)
