"""Training memory estimated and refused before TensorFlow allocates: in the request (so the
Train page, the job manager and the CLI), on the Architecture and Train pages."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cae.preflight import PROCESS_BYTES, estimate_memory
from cae.recipe import DataRecipe
from cae.request import TrainRequest
from cae.shapes import compute_shapes
from cae.spec import ArchitectureSpec, preset
from cae.training import TrainConfig

REPO = Path(__file__).resolve().parents[1]
# Every limit of the spec met (199,710 parameters, no layer over 4M values), yet it took the
# whole 23 GB machine at batch 64 before it died.
BOMB = {
    "name": "bomb",
    "input_shape": [28, 28, 1],
    "encoder": [{"type": "upsample", "size": 16}]
    + [{"type": "conv", "filters": 19, "kernel": 3}] * 62
    + [{"type": "pool", "size": 16}],
    "decoder": [{"type": "conv", "filters": 1, "kernel": 3, "activation": "sigmoid"}],
}


def test_the_estimate_counts_activations_gradients_and_weights(monkeypatch):
    monkeypatch.setenv("CAE_MEMORY_BUDGET", str(12 * 10**9))
    classic = estimate_memory(compute_shapes(preset("classic")), 64)
    assert classic.fits and 690e6 < classic.total < 710e6
    batch_or_inference = max(classic.per_image * 64, classic.inference)  # 256 images scored at once
    assert classic.total == batch_or_inference + classic.weights + PROCESS_BYTES  # the worker
    bomb = estimate_memory(compute_shapes(ArchitectureSpec.from_dict(BOMB)), 64)
    assert not bomb.fits and bomb.total > 90e9
    assert bomb.largest.startswith("encoder[1]") and bomb.largest.endswith("448x448x19")
    assert bomb.batch_that_fits == 7


def test_a_request_over_the_budget_is_refused_in_one_line(monkeypatch, capsys, tmp_path):
    from cae.__main__ import main

    monkeypatch.setenv("CAE_MEMORY_BUDGET", str(12 * 10**9))
    with pytest.raises(
        ValueError, match="largest tensor is encoder\\[1\\].*batch size of at most 7"
    ):
        TrainRequest(
            ArchitectureSpec.from_dict(BOMB), DataRecipe(), TrainConfig(batch_size=64), "bomb"
        )
    spec = tmp_path / "bomb.json"
    spec.write_text(ArchitectureSpec.from_dict(BOMB).to_json())
    status = main(["train", "--spec", str(spec), "--dataset", "mnist-sample", "--epochs", "1"])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and "would need about 91.5 GB to train at batch 64" in line
    assert line.endswith("Received: batch_size=64")


def test_the_pages_say_it_before_anything_is_built(monkeypatch):
    monkeypatch.setenv("CAE_MEMORY_BUDGET", str(12 * 10**9))
    for page in ("pages/1_Architecture.py", "pages/2_Train.py"):
        app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
        app.session_state["active_spec"] = BOMB
        app.run().switch_page(page).run()
        assert not app.exception, (page, [item.value for item in app.exception])
        errors = " ".join(item.value for item in app.error)
        assert "448x448x19" in errors and "7" in errors, (page, errors)
        if page.endswith("Train.py"):
            assert app.button(key="train_start").disabled


def test_an_inference_batch_is_bounded_by_its_layer_outputs():
    """Scoring 16 test images at once of the design above peaked at 17 GB in one worker: an
    inference call now takes as many images as their layer outputs allow (INFERENCE_BYTES)."""
    from cae.builder import build
    from cae.pixels import INFERENCE_BYTES, PREDICT_BATCH, activation_values, inference_batch

    bomb = ArchitectureSpec.from_dict(BOMB)
    report = compute_shapes(bomb)
    values = activation_values(build(bomb).autoencoder)
    expected = sum(math.prod(row.output_shape) for row in report.rows)
    assert abs(values - expected) < 1e-3 * expected  # the input layers of the parts add a little
    assert inference_batch(values, PREDICT_BATCH) == 1  # 944 MB an image
    classic = activation_values(build(preset("classic")).autoencoder)
    assert inference_batch(classic, PREDICT_BATCH) == PREDICT_BATCH
    assert inference_batch(INFERENCE_BYTES // 8, PREDICT_BATCH) == 2
    estimate = estimate_memory(report, 1)
    assert estimate.inference == (expected + 784) * 4  # one image's outputs, its input too
