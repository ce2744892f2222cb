"""python -m cae train --corruption/--strength and evaluate on corrupted inputs (1 epoch, few images)."""

from __future__ import annotations

import json

import pytest

from cae.corruption import Corruption
from cae.metrics import METRIC_KEYS
from cae.store import load_run
from cae.training import recorded_config
from tests.test_cli_train import cli

TRAIN = ["train", "--preset", "classic", "--dataset", "mnist-sample", "--limit", "128"]
TRAIN += ["--epochs", "1", "--batch-size", "32"]


@pytest.mark.slow
def test_train_a_denoiser_and_evaluate_it_on_corrupted_inputs(tmp_path, monkeypatch, capsys):
    models = tmp_path / "models"
    monkeypatch.setenv("CAE_MODELS_DIR", str(models))
    status, stdout, stderr = cli(
        capsys,
        *TRAIN,
        "--corruption",
        "salt-pepper",
        "--strength",
        "0.2",
        "--out",
        str(models / "sp"),
    )
    assert status == 0, stderr
    config = json.loads((models / "sp" / "train.json").read_text())["config"]
    assert (config["corruption"], config["strength"]) == ("salt-pepper", 0.2)
    loaded = load_run("sp")  # safe_mode, like every page
    assert recorded_config(loaded.train_config).input_corruption == Corruption("salt-pepper", 0.2)
    stored = json.loads((models / "sp" / "metrics.json").read_text())
    keys = {f"{prefix}{key}" for prefix in ("denoise_", "corrupted_") for key in METRIC_KEYS}
    assert keys <= set(stored)

    # its own corruption: the stored scores again, with the corruption named
    status, stdout, stderr = cli(capsys, "evaluate", "sp")
    assert status == 0, stderr
    lines = stdout.splitlines()
    assert lines[1].startswith("corrupted inputs: Salt and pepper, fraction of pixels 0.2 (seed 0")
    rows = {line.split()[0]: line.split()[1:] for line in lines[3:]}
    assert set(rows) == set(METRIC_KEYS) | keys
    for name, (was, now) in rows.items():
        assert float(was) == pytest.approx(float(now), rel=1e-4, abs=1e-5), name

    # another corruption: fresh scores only (the stored ones are of salt and pepper)
    status, stdout, stderr = cli(
        capsys, "evaluate", "sp", "--corruption", "erase", "--strength", "0.3", "--json"
    )
    assert status == 0, stderr
    both = json.loads(stdout)
    assert set(both["fresh"]) == set(METRIC_KEYS) | keys
    assert set(both["stored"]) == set(METRIC_KEYS)
    assert both["fresh"]["denoise_mse"] != pytest.approx(stored["denoise_mse"])
    # an erased quarter costs the inputs more than the network's output: the output is not the input
    assert both["fresh"]["corrupted_psnr"] != pytest.approx(both["fresh"]["denoise_psnr"])


@pytest.mark.slow
def test_a_plain_run_scored_on_corrupted_inputs_and_the_old_noise_flag(
    tmp_path, monkeypatch, capsys
):
    models = tmp_path / "models"
    monkeypatch.setenv("CAE_MODELS_DIR", str(models))
    status, _, stderr = cli(capsys, *TRAIN, "--out", str(models / "plain"))
    assert status == 0, stderr
    assert json.loads((models / "plain" / "train.json").read_text())["config"]["corruption"] is None
    status, stdout, stderr = cli(capsys, "evaluate", "plain", "--corruption", "gaussian")
    assert status == 0, stderr
    assert "Gaussian noise, noise std 0.3 (seed 0; trained with clean inputs)" in stdout
    assert "denoise_psnr" in stdout and "corrupted_ssim" in stdout
    status, stdout, stderr = cli(capsys, "evaluate", "plain", "--strength", "0.3")
    assert status == 2 and "Received: strength=0.3" in stderr

    status, _, stderr = cli(capsys, *TRAIN, "--noise", "0.25", "--out", str(models / "old-flag"))
    assert status == 0, stderr
    config = json.loads((models / "old-flag" / "train.json").read_text())["config"]
    assert (config["corruption"], config["strength"]) == ("gaussian", 0.25)

    # a run saved before the corruption kinds recorded "noise": std; it reads as Gaussian noise
    record_path = models / "plain" / "train.json"
    record = json.loads(record_path.read_text())
    record["config"] = {
        **{k: v for k, v in record["config"].items() if k not in ("corruption", "strength")},
        "noise": 0.25,
    }
    record_path.write_text(json.dumps(record))
    status, stdout, stderr = cli(capsys, "evaluate", "plain")
    assert status == 0, stderr
    assert (
        "corrupted inputs: Gaussian noise, noise std 0.25 (seed 0; trained with its own)" in stdout
    )


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            ["--strength", "0.3"],
            "needs --corruption gaussian|salt-pepper|erase. Received: strength=0.3",
        ),
        (
            ["--corruption", "erase", "--strength", "0.95"],
            "from 0.01 to 0.9. Received: corruption='erase', strength=0.95",
        ),
        (
            ["--corruption", "gaussian", "--strength", "0"],
            "Received: corruption='gaussian', strength=0.0",
        ),
        (["--noise", "0.2", "--corruption", "erase"], "Received: noise=0.2, corruption='erase'"),
        (["--corruption", "blur"], "invalid choice: 'blur'"),
    ],
)
def test_bad_corruption_arguments_exit_2_with_one_line(
    extra, expected, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("CAE_MODELS_DIR", str(tmp_path / "models"))
    status, stdout, stderr = cli(capsys, *TRAIN, *extra)
    assert status == 2, (stdout, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert not (tmp_path / "models").exists()
