"""Train and save small real runs for tests, the way the worker and the CLI do it."""

from __future__ import annotations

from pathlib import Path

from cae.recipe import DataRecipe, TestSplit, load_recipe
from cae.request import TrainRequest
from cae.spec import ArchitectureSpec, preset
from cae.store import save_trained
from cae.training import TrainConfig, train


def make_trained_run(
    root: Path,
    *,
    epochs: int = 2,
    limit: int = 512,
    learning_rate: float = 1e-2,
    seed: int = 0,
    name: str = "latent editor test",
    spec: ArchitectureSpec | None = None,
) -> str:
    """Train ``spec`` (the classic network) briefly on mnist-sample and save it into ``root``;
    its id."""
    request = TrainRequest(
        spec=spec or preset("classic"),
        data=DataRecipe("mnist-sample", limit=limit, seed=seed),
        config=TrainConfig(
            epochs=epochs, batch_size=64, learning_rate=learning_rate, preview_count=0, seed=seed
        ),
        name=name,
    )
    dataset = load_recipe(request.data)
    result = train(request.spec, dataset, request.config)
    return save_trained(result, request, TestSplit.of(dataset, request.data), root=root)


STRIDED_ONE_TAP_64 = {
    "name": "strided-1x1",
    "input_shape": [64, 64, 1],
    "encoder": [
        {"type": "conv", "filters": 8, "kernel": 3},
        {"type": "conv", "filters": 4, "kernel": 1, "strides": 2},
    ],
    "decoder": [
        {"type": "deconv", "filters": 8, "kernel": 1, "strides": 2},
        {"type": "conv", "filters": 1, "kernel": 3, "activation": "sigmoid"},
    ],
}
"""A 64x64 design with a 1x1 convolution and a 1x1 transposed convolution strided by 2: oneDNN's
CPU kernels crash training both (TensorFlow 2.21; measured, a SIGSEGV each), so it trains with
oneDNN off (cae.onednn)."""


STEP_NOTICES = (
    "waiting in the server's queue",
    "waiting for the server's queue",
    "running in a worker",
)


def step_notices(app) -> list[str]:
    """The notices of background steps (``ui.steps``) an AppTest page shows."""
    return [item.value for item in app.info if any(words in item.value for words in STEP_NOTICES)]


def settle(app, timeout: float = 180.0):
    """Rerun an AppTest page until no background step of it waits or runs (its fragment would
    redraw the page in a browser); the app."""
    import time

    deadline = time.monotonic() + timeout
    while step_notices(app):
        assert time.monotonic() < deadline, step_notices(app)
        time.sleep(0.5)
        app.run()
    return app


def quiet_queue(timeout: float = 180.0) -> None:
    """Wait until the server's queue (``cae.admission.SCHEDULER``) has nothing queued or running:
    a page of an earlier test in this process may have left a background step (Results'
    baselines or scoring, ``ui.steps``) that would take a place a test counts on."""
    import time

    from cae.admission import SCHEDULER

    deadline = time.monotonic() + timeout
    while SCHEDULER.active():
        assert time.monotonic() < deadline, SCHEDULER.entries()[:5]
        time.sleep(0.2)
