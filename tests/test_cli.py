"""python -m cae shapes: table, JSON, Keras's own shapes, and one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

from cae.shapes import compute_shapes
from cae.spec import preset
from tests.test_cli_train import cli  # this process: TensorFlow is imported once

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cae", *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )


def test_shapes_table_for_the_classic_preset():
    result = run_cli("shapes", "--preset", "classic")
    assert result.returncode == 0, result.stderr
    assert "code 7x7x1" in result.stdout
    assert "2,690" in result.stdout
    assert "Conv 1 1x3 same sigmoid" in result.stdout


def test_shapes_json_and_keras_json_agree(tmp_path, capsys):
    spec = preset("deep")
    path = tmp_path / "deep.json"
    path.write_text(spec.to_json())
    ours = run_cli("shapes", "--spec", str(path), "--json")
    status, keras, errors = cli(capsys, "shapes", "--spec", str(path), "--json", "--keras")
    assert ours.returncode == 0 and status == 0, ours.stderr + errors
    rows = json.loads(ours.stdout)
    assert rows == json.loads(keras)
    assert rows == [row.as_dict() for row in compute_shapes(spec).rows]
    assert set(rows[0]) == {"part", "index", "type", "output_shape", "params"}


def test_invalid_spec_exits_2_with_one_line(tmp_path):
    data = preset("classic").to_dict()
    data["encoder"][2]["kernel"] = [0, 3]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    result = run_cli("shapes", "--spec", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0] == "error: encoder[2]: 'kernel' must be at least 1. Received: kernel=[0, 3]"
    assert "Traceback" not in result.stderr


def test_missing_file_and_bad_json_exit_2(tmp_path):
    missing = run_cli("shapes", "--spec", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "nope.json" in missing.stderr
    broken = tmp_path / "broken.json"
    broken.write_text('{"encoder": [')
    result = run_cli("shapes", "--spec", str(broken))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "not valid JSON" in result.stderr


def test_impossible_layer_exits_2(tmp_path, capsys):
    data = preset("classic").to_dict()
    data["encoder"][4] = {"type": "conv", "filters": 1, "kernel": 9, "padding": "valid"}
    path = tmp_path / "big.json"
    path.write_text(json.dumps(data))
    status, _, errors = cli(capsys, "shapes", "--spec", str(path), "--keras")
    assert status == 2
    assert errors.strip().splitlines()[-1].startswith("error: encoder[4] conv: kernel 9x9")


def test_shapes_shows_the_dilated_kernel_span(tmp_path):
    data = preset("classic").to_dict()
    data["encoder"][0]["dilation"] = 2
    path = tmp_path / "dilated.json"
    path.write_text(json.dumps(data))
    result = run_cli("shapes", "--spec", str(path))
    assert result.returncode == 0, result.stderr
    assert "Conv 16 3x3 dilation 2x2 same relu" in result.stdout
    assert "kernel span 3 + (3 - 1)*(2 - 1) = 5; same: ceil(28 / 1) = 28" in result.stdout


def test_a_layer_tensorflow_cannot_run_exits_2_with_one_line_and_a_fix(tmp_path):
    """The issue's layer: padding 'same', kernel 4, output_padding 0 on a 7x7 code. Keras gives
    it 12x12, TensorFlow aborts on a real batch; `cae shapes` refuses it, naming a checked fix."""
    data = preset("classic").to_dict()
    data["decoder"] = [
        {"type": "deconv", "filters": 8, "kernel": 4, "strides": 2, "output_padding": 0},
        {"type": "deconv", "filters": 1, "kernel": 3, "strides": 2, "activation": "sigmoid"},
    ]
    path = tmp_path / "even.json"
    path.write_text(json.dumps(data))
    result = run_cli("shapes", "--spec", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0] == (
        "error: decoder[0] deconv: padding 'same', an even kernel 4 and output_padding 0 give "
        "Keras's height (7 - 1) * 2 = 12, which TensorFlow cannot run on a real batch; fix: set "
        "output_padding to 1x1. Received: kernel=(4, 4), strides=(2, 2), output_padding=(0, 0)"
    )
