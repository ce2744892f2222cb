"""A run's random samples: a density fitted after training to the codes of its training images
(``cae.latent.fit_density``: a 10-component Gaussian mixture with full covariances, or one
Gaussian), for plain and variational runs alike, and the prior N(0, 1) of a variational run beside
it. ``cae sample``, the Latent Editor's "Random sample" and ``bench/vae_samples.py`` draw here.

The training images come from the run's recorded recipe (``cae.recipe.load_recipe``); at most
``MAX_FIT_CODES`` of them, a seeded subset, are encoded and fitted, so the fit is bounded. A run
whose training images cannot be had (an upload removed since) is fitted to its test images'
codes, and says so. TensorFlow is imported by the functions that encode.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from cae.latent import (
    MAX_FIT_CODES,
    CodeDensity,
    decode_samples,
    draw_codes,
    encode,
    fit_density,
)
from cae.recipe import UPLOAD, load_recipe

if TYPE_CHECKING:  # pragma: no cover
    from cae.store import LoadedRun


def training_codes(
    loaded: LoadedRun,
    *,
    test_images: np.ndarray | None = None,
    max_codes: int = MAX_FIT_CODES,
    seed: int = 0,
    read_uploads: bool = True,
) -> tuple[np.ndarray, str]:
    """The codes (a variational run's means) of up to ``max_codes`` of the run's training images
    (a subset drawn with ``seed`` beyond), and what they are in words ("training codes"); where
    the training images cannot be had, those of ``test_images``, said so. ValueError when there
    are neither. With ``read_uploads`` False (the server: no upload is ever held whole there,
    issue 26) a run trained on an uploaded file is fitted to its test codes, said so."""
    images, words, problem = None, "training codes", None
    recipe = loaded.info.recipe
    if recipe is None:
        problem = loaded.info.recipe_problem or "the run records no data recipe"
    elif not read_uploads and recipe.dataset == UPLOAD:
        problem = "an uploaded file's images are not read whole in the server"
    else:
        try:
            images = load_recipe(recipe).x_train
        except (ValueError, OSError) as error:  # RecipeError is a ValueError
            problem = str(error)
    if images is None or len(images) == 0:
        if test_images is None or len(test_images) == 0:
            raise ValueError(
                f"Run {loaded.run_id!r} has no images to fit its codes to: its training images "
                f"cannot be had ({problem or 'none'}) and no test images were given. "
                "Received: test_images=None"
            )
        images = test_images
        words = f"test codes (its training images cannot be had: {problem or 'none'})"
    if len(images) > max_codes:
        picked = np.sort(np.random.default_rng(seed).choice(len(images), max_codes, replace=False))
        images = images[picked]
    return encode(loaded.built.encoder, images), words


def fit_run_density(
    loaded: LoadedRun,
    kind: str = "gmm",
    *,
    test_images: np.ndarray | None = None,
    seed: int = 0,
    read_uploads: bool = True,
) -> CodeDensity:
    """The density ``kind`` ("gmm" or "gaussian") fitted to the run's training codes
    (:func:`training_codes`, ``read_uploads`` as there; the time it took, encoding included, in
    ``seconds``)."""
    import time

    started = time.perf_counter()
    codes, words = training_codes(
        loaded, test_images=test_images, seed=seed, read_uploads=read_uploads
    )
    density = fit_density(codes, kind, seed=seed, source=words)
    return dataclasses.replace(density, seconds=time.perf_counter() - started)  # with encoding


def sample_run(
    loaded: LoadedRun,
    count: int,
    sampler: str = "gmm",
    *,
    density: CodeDensity | None = None,
    test_images: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, str]:
    """``count`` decoded random codes of the run, float32 (count, H, W, C) in [0, 1], by
    ``sampler`` ("gmm", "gaussian" or "prior", ``cae.latent.SAMPLERS``), and where they came
    from in words. The density is fitted here unless given (``density``, of that kind)."""
    built = loaded.built
    latent_shape = tuple(int(n) for n in built.decoder.input_shape[1:])
    if sampler == "prior":
        source = "the prior N(0, 1)"
    else:
        if sampler in ("gmm", "gaussian") and density is None:
            density = fit_run_density(loaded, sampler, test_images=test_images)
        source = density.describe() if density is not None else ""
    codes = draw_codes(
        sampler,
        count,
        latent_shape,
        variational=built.variational,
        density=density,
        rng=rng,
    )
    return decode_samples(built.decoder, codes), source
