"""python -m cae train | list | evaluate: a real run end to end, Ctrl-C, one-line errors."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, models: Path | None = None, timeout: float = 180):
    env = dict(os.environ)
    if models is not None:
        env["CAE_MODELS_DIR"] = str(models)
    return subprocess.run(
        [sys.executable, "-m", "cae", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
        env=env,
    )


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``python -m cae`` in this process (TensorFlow is loaded once): status, stdout, stderr."""
    from cae.__main__ import main

    try:
        status = main(list(args))
    except SystemExit as exit_:  # argparse errors
        status = exit_.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.slow
def test_train_list_evaluate(tmp_path, monkeypatch, capsys):
    """Train, list and evaluate by the CLI's own main in this process (TensorFlow loaded once);
    the same commands as processes of their own: tests/test_cli_quiet.py and the tests below."""
    models = tmp_path / "models"
    out = models / "t1"
    monkeypatch.setenv("CAE_MODELS_DIR", str(models))
    recipe = ["--preset", "classic", "--dataset", "mnist-sample", "--limit", "256"]
    settings = ["--epochs", "1", "--batch-size", "32", "--out", str(out)]
    status, stdout, stderr = cli(capsys, "train", *recipe, *settings)
    assert status == 0, stderr[-2000:]
    lines = stdout.strip().splitlines()
    assert lines[0].startswith("epoch 1/1  loss") and "img/s" in lines[0], lines
    summary = lines[-1]
    assert (
        summary.startswith("run t1: 1 epoch, test MSE ") and "PSNR" in summary and "MAE" in summary
    )
    assert "SSIM" in summary and str(out) in summary
    assert (out / "run.json").is_file() and (out / "model.keras").is_file()
    train_json = json.loads((out / "train.json").read_text())
    assert train_json["data"]["dataset"] == "mnist-sample" and train_json["data"]["limit"] == 256
    assert train_json["config"]["epochs"] == 1 and train_json["config"]["batch_size"] == 32
    assert train_json["outcome"]["state"] == "finished"
    assert (out / "test_images.npz").is_file()
    assert [p.name for p in models.iterdir()] == ["t1"]  # renamed, nothing left behind

    (models / "junk").mkdir()
    status, stdout, _ = cli(capsys, "list")
    assert status == 0
    rows = stdout.splitlines()
    assert rows[0].split()[:4] == ["ID", "NAME", "DATASET", "EPOCHS"]
    assert "test PSNR (dB)" in rows[0] and "test SSIM" in rows[0] and "test MAE" in rows[0]
    t1 = next(row for row in rows if row.startswith("t1 "))
    assert "classic-mnist-sample" in t1 and "mnist-sample" in t1
    junk = next(row for row in rows if row.startswith("junk "))
    assert "BROKEN: " in junk

    for target in ("t1", str(out)):
        status, stdout, stderr = cli(capsys, "evaluate", target)
        assert status == 0, stderr
        text = stdout.splitlines()
        assert text[0].startswith("run t1 (classic-mnist-sample): 256 test images of mnist-sample")
        assert "(stored with the run)" in text[0]
        rows = {line.split()[0]: line.split()[1:] for line in text[2:]}
        assert set(rows) == {"mse", "mae", "psnr", "ssim"}
        for stored, now in rows.values():
            assert float(stored) == pytest.approx(float(now), rel=1e-4, abs=1e-5)
    status, stdout, stderr = cli(capsys, "evaluate", "t1", "--json")
    assert status == 0, stderr
    both = json.loads(stdout)
    assert set(both) == {"stored", "fresh"} and set(both["fresh"]) == {"mse", "mae", "psnr", "ssim"}
    assert both["fresh"] == pytest.approx(both["stored"], rel=1e-4)


@pytest.mark.slow
def test_ctrl_c_stops_and_keeps_the_last_completed_epoch(tmp_path):
    models = tmp_path / "models"
    env = dict(os.environ, CAE_MODELS_DIR=str(models))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cae",
            "train",
            "--preset",
            "classic",
            "--dataset",
            "mnist-sample",
            "--limit",
            "256",
            "--epochs",
            "500",
            "--batch-size",
            "32",
            "--validation-split",
            "0",
            "--name",
            "interrupted",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = process.stdout.readline()
        assert first.startswith("epoch 1/500"), first
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr[-2000:]
    assert "stopping after the current batch" in stdout
    summary = stdout.strip().splitlines()[-1]
    assert summary.startswith("run interrupted-") and "(stopped)" in summary
    (run,) = [p for p in models.iterdir()]
    history = json.loads((run / "history.json").read_text())
    train = json.loads((run / "train.json").read_text())
    outcome = train["outcome"]
    assert outcome["stopped"] is True and 1 <= outcome["epochs_completed"] < 500
    assert len(history["loss"]) == outcome["epochs_completed"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["train", "--preset", "classic", "--dataset", "mnist-sample", "--epochs", "0"],
            "error: epochs must be an integer from 1 to 10,000. Received: epochs=0",
        ),
        (
            ["train", "--preset", "classic", "--dataset", "mnist-sample"],
            "error: the following arguments are required: --epochs",
        ),
        (
            ["train", "--preset", "nope", "--dataset", "mnist-sample", "--epochs", "1"],
            "error: argument --preset: invalid choice: 'nope'",
        ),
        (
            ["train", "--preset", "classic", "--dataset", "mnist-sample", "--epochs", "x"],
            "error: argument --epochs: invalid int value: 'x'",
        ),
        (
            [
                "train",
                "--preset",
                "classic",
                "--dataset",
                "mnist-sample",
                "--epochs",
                "1",
                "--learning-rate",
                "-1",
            ],
            "Received: learning_rate=-1.0",
        ),
        (
            [
                "train",
                "--preset",
                "classic",
                "--dataset",
                "mnist-sample",
                "--epochs",
                "1",
                "--limit",
                "0",
            ],
            "Received: limit=0",
        ),
        (
            ["train", "--preset", "classic", "--dataset", "nope", "--epochs", "1"],
            "Received: dataset='nope'",
        ),
        (
            ["train", "--preset", "classic", "--data", "/no/such.npz", "--epochs", "1"],
            "Received: data='/no/such.npz'",
        ),
        (
            [
                "train",
                "--preset",
                "classic",
                "--dataset",
                "mnist-sample",
                "--epochs",
                "1",
                "--strategy",
                "multiworker",
            ],
            "Received: TF_CONFIG=None",
        ),
        (
            [
                "train",
                "--preset",
                "classic",
                "--dataset",
                "mnist-sample",
                "--epochs",
                "1",
                "--out",
                "models/bad name",
            ],
            "Received: run_id='bad name'",
        ),
        (["evaluate", "no-such-run"], "Received: run='no-such-run'"),
        (
            [
                "train",
                "--preset",
                "classic",
                "--dataset",
                "mnist-sample",
                "--epochs",
                "1",
                "--seed",
                "-1",
            ],
            "error: argument --seed: the seed must be an integer from 0 to 2,147,483,647. "
            "Received: --seed=-1",
        ),
        (
            ["sample", "x", "--n", "1", "--out", "x.npy", "--seed", "2147483648"],
            "Received: --seed=2147483648",
        ),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CAE_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.delenv("TF_CONFIG", raising=False)
    status, stdout, stderr = cli(capsys, *args)
    assert status == 2, (stdout, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert not (tmp_path / "models").exists()


@pytest.mark.slow
def test_a_real_process_prints_one_line_and_no_traceback(tmp_path):
    result = run_cli(
        "train",
        "--preset",
        "classic",
        "--dataset",
        "mnist-sample",
        "--epochs",
        "-2",
        models=tmp_path / "models",
        timeout=60,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: epochs must be an integer from 1 to 10,000. Received: epochs=-2"
    ]


def test_out_folder_that_exists_is_refused(tmp_path, capsys):
    (tmp_path / "models" / "taken").mkdir(parents=True)
    status, _, stderr = cli(
        capsys,
        "train",
        "--preset",
        "classic",
        "--dataset",
        "mnist-sample",
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "models" / "taken"),
    )
    assert status == 2 and "already exists" in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_list_on_an_empty_root(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CAE_MODELS_DIR", str(tmp_path / "none"))
    status, stdout, _ = cli(capsys, "list")
    assert status == 0 and stdout.startswith("no runs in ")


def test_wrong_shaped_data_file_exits_2_before_training(tmp_path, capsys):
    path = tmp_path / "big.npy"
    np.save(path, np.zeros((10, 32, 32), np.uint8))
    status, _, stderr = cli(
        capsys, "train", "--preset", "classic", "--data", str(path), "--epochs", "1"
    )
    assert status == 2
    (line,) = stderr.strip().splitlines()
    assert line.endswith("Received: images=[32, 32, 1], input_shape=[28, 28, 1]")


def test_evaluate_refuses_a_folder_that_is_not_a_run_in_one_line(tmp_path, capsys):
    """A folder with none of a run's files (a runs folder, a data folder) is refused in one
    short line, before TensorFlow is imported; a broken run still says what it lacks."""
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.png").write_bytes(b"not a run")
    result = run_cli("evaluate", str(folder), models=tmp_path / "models", timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: 'photos' is not a run folder (no run.json, spec.json or model.keras in it): "
        f"give a run id that 'cae list' shows, or a run's folder. Received: run={str(folder)!r}"
    ]
    (folder / "spec.json").write_text("{}")  # part of a run: loading names what is missing
    status, _, stderr = cli(capsys, "evaluate", str(folder))
    (line,) = stderr.strip().splitlines()
    assert (
        status == 2
        and line.startswith("error: Run 'photos' cannot be loaded: ")
        and "run.json" in line
    )


def test_a_mismatched_upload_is_refused_from_its_headers_before_decoding(tmp_path):
    """Files whose headers say 32x32 but whose pixels cannot be decoded: the design's 28x28 is
    refused from the headers (decoding would have failed on the pixels), and at once."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (32, 32), 7).save(buffer, "PNG")
    truncated = buffer.getvalue()[:-30]  # the header is whole, the pixels are not
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for index in range(4):
            zf.writestr(f"img{index}.png", truncated)
    array = tmp_path / "images.npy"
    header = io.BytesIO()
    np.save(header, np.zeros((10, 32, 32), np.uint8))
    array.write_bytes(header.getvalue()[:200])  # the .npy header, then no data
    expected = "Received: images=[32, 32, 1], input_shape=[28, 28, 1]"
    for path in (archive, array):
        started = time.monotonic()
        result = run_cli("train", "--preset", "classic", "--data", str(path), "--epochs", "1",
                         models=tmp_path / "models", timeout=60)  # fmt: skip
        assert result.returncode == 2, result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("error: The images are 32x32x1 but the design expects 28x28x1")
        assert line.endswith(expected)
        assert time.monotonic() - started < 30  # no TensorFlow import (3-5 s), no decoding


@pytest.mark.slow
def test_train_on_an_uploaded_array_file_into_a_root(tmp_path, capsys):
    digits = np.load(REPO / "cae" / "_data" / "mnist_sample.npz")["x"][:200]
    path = tmp_path / "digits.npz"
    np.savez(path, x=digits)
    root = tmp_path / "runs"
    status, stdout, stderr = cli(
        capsys, "train", "--preset", "classic", "--data", str(path), "--limit", "12",
        "--epochs", "1", "--batch-size", "32", "--validation-split", "0", "--name", "upload",
        "--root", str(root),
    )  # fmt: skip
    assert status == 0, stderr
    (run,) = root.iterdir()
    assert stdout.strip().splitlines()[-1].startswith(f"run {run.name}: 1 epoch")
    train_json = json.loads((run / "train.json").read_text())
    assert train_json["data"]["dataset"] == "upload"
    assert train_json["data"]["upload_name"] == "digits.npz"
    assert train_json["data"]["upload_path"] == str(path.resolve())
    path.unlink()  # the run keeps its test images: it is evaluated without the file
    status, stdout, stderr = cli(capsys, "evaluate", run.name, "--root", str(root))
    assert status == 0, stderr
    lines = stdout.splitlines()
    assert "12 test images of upload:digits.npz" in lines[0]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    for stored, now in rows.values():
        assert float(stored) == pytest.approx(float(now), rel=1e-4, abs=1e-5)


@pytest.mark.slow
def test_a_strided_one_tap_design_trains_from_the_cli_with_onednn_off(tmp_path):
    """A 1x1 (transposed) convolution strided by 2 at 64x64 crashes oneDNN's training (measured,
    a SIGSEGV): ``cae train`` turns oneDNN off before it imports TensorFlow, and one step trains.
    So does ``cae sweep`` when one of its designs needs it."""
    from tests.runs import STRIDED_ONE_TAP_64

    spec = tmp_path / "strided.json"
    spec.write_text(json.dumps(STRIDED_ONE_TAP_64))
    data = tmp_path / "noise64.npy"
    np.save(data, np.random.default_rng(0).integers(0, 256, (18, 64, 64), dtype=np.uint8))
    common = ["--data", str(data), "--limit", "8", "--epochs", "1", "--batch-size", "8",
              "--validation-split", "0"]  # fmt: skip
    root = tmp_path / "runs"
    done = run_cli("train", "--spec", str(spec), *common, "--root", str(root))
    assert done.returncode == 0, done.stderr
    (run,) = root.iterdir()
    assert json.loads((run / "metrics.json").read_text())["latent_shape"] == [32, 32, 4]
    vary = ["--vary", "encoder.1.strides=1,2", "--vary", "decoder.0.strides=1,2"]
    scored = [*common[:-1], "0.25"]  # a grid study scores its runs on a validation split
    done = run_cli("sweep", "--spec", str(spec), *scored, *vary, "--out-dir", str(tmp_path / "sw"))
    assert done.returncode == 0, done.stderr
    assert len(json.loads((tmp_path / "sw" / "sweep.json").read_text())["runs"]) == 2


CLI_TELLS_TENSORFLOW = (
    "import sys; from cae.__main__ import main; status = main(sys.argv[1:]); "
    "print('tensorflow imported here:', 'tensorflow' in sys.modules); sys.exit(status)"
)
"""``python -m cae`` whose last line says whether this process imported TensorFlow."""


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["train", "--preset", "classic", "--epochs", "0"], "Received: epochs=0"),
        (["train", "--preset", "classic", "--epochs", "1", "--batch-size", "0"], "batch_size=0"),
        (["train", "--spec", "/no/such/spec.json", "--epochs", "1"], "cannot read the spec"),
        (["train", "--preset", "classic", "--epochs", "1", "--beta", "2"], "add --variational"),
        (["sweep", "--preset", "classic", "--vary", "code=1,2", "--epochs", "0",
          "--out-dir", "OUT"], "Received: epochs=0"),
    ],
)  # fmt: skip
def test_bad_training_settings_are_refused_before_tensorflow_is_imported(args, words, tmp_path):
    """A wrong setting of ``train`` or ``sweep`` is one line at once, not after TensorFlow's
    seconds-long import (two multi-worker processes each imported it to refuse ``--epochs 0``)."""
    args = [str(tmp_path / "out") if arg == "OUT" else arg for arg in args]
    result = subprocess.run(
        [sys.executable, "-c", CLI_TELLS_TENSORFLOW, *args, "--dataset", "mnist-sample"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and words in line, line
    assert result.returncode == 2
    assert result.stdout.splitlines() == ["tensorflow imported here: False"], result.stdout
    assert not (tmp_path / "out").exists()
