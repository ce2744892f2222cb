"""python -m cae shapes: table, JSON, Keras's own shapes, and one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

from cae.shapes import compute_shapes
from cae.spec import preset

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


def test_shapes_json_and_keras_json_agree(tmp_path):
    spec = preset("deep")
    path = tmp_path / "deep.json"
    path.write_text(spec.to_json())
    ours = run_cli("shapes", "--spec", str(path), "--json")
    keras = run_cli("shapes", "--spec", str(path), "--json", "--keras")
    assert ours.returncode == 0 and keras.returncode == 0, ours.stderr + keras.stderr
    rows = json.loads(ours.stdout)
    assert rows == json.loads(keras.stdout)
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


def test_impossible_layer_exits_2(tmp_path):
    data = preset("classic").to_dict()
    data["encoder"][4] = {"type": "conv", "filters": 1, "kernel": 9, "padding": "valid"}
    path = tmp_path / "big.json"
    path.write_text(json.dumps(data))
    result = run_cli("shapes", "--spec", str(path), "--keras")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: encoder[4] conv: kernel 9x9")
