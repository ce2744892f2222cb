"""Fuzzing the architecture file: random and mutated JSON is either a valid spec or one ValueError.

Every case fed to ``ArchitectureSpec.from_dict`` + ``compute_shapes`` (and ``from_json`` on raw
text) must end as a valid spec or a ``ValueError`` whose message is one line containing "Received";
never another exception. A few mutated files go through ``python -m cae shapes --spec F`` (exit 0,
or exit 2 with one stderr line, never a traceback), and absurd but valid sizes are refused with the
limit named before TensorFlow is imported.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cae.shapes import compute_shapes
from cae.spec import PRESETS, ArchitectureSpec, preset

REPO = Path(__file__).resolve().parents[1]
PRESET_DICTS = [preset(name).to_dict() for name in sorted(PRESETS)]
LAYER_KEYS = [
    "type", "filters", "kernel", "strides", "padding", "activation", "output_padding", "dilation",
    "mode", "size", "interpolation", "amount", "rate",
]  # fmt: skip
TOP_KEYS = ["name", "input_shape", "encoder", "decoder"]
FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)

# Values that go where ints, strings and lists are expected: wrong types, huge and negative
# numbers, floats/bools/None/strings, unicode, nested containers.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.sampled_from([0, -1, 1, 2, 3, 1023, 1024, 1025, 4096, 2**31, 2**63, 10**30, 10**4000]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.5, 1.0, 2.0, -0.0, 1e308]),
    st.text(max_size=20),
    st.sampled_from(["same", "valid", "relu", "sigmoid", "max", "avg", "conv", "deconv", "pool",
                     "upsample", "crop", "pad", "batchnorm", "dropout", "Ωμέγα", "名前", "\n", ""]),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def check_outcome(run) -> str:
    """Run ``run()``; it must return or raise a one-line ValueError naming what it received."""
    try:
        run()
    except ValueError as error:
        message = str(error)
        assert "\n" not in message and "\r" not in message, message
        assert "Received" in message, message
        return "error"
    return "ok"


def load_and_check(data) -> str:
    return check_outcome(lambda: compute_shapes(ArchitectureSpec.from_dict(data)))


@st.composite
def mutated_specs(draw):
    """A preset dict with a few random mutations applied."""
    data = copy.deepcopy(draw(st.sampled_from(PRESET_DICTS)))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(
            st.sampled_from(
                ["set_top", "del_top", "extra_top", "set_layer", "del_layer_key", "extra_layer_key",
                 "new_layer", "huge_list", "deep", "drop_layer", "unicode_name", "replace_all"]
            )
        )  # fmt: skip
        parts = [p for p in ("encoder", "decoder") if isinstance(data.get(p), list) and data[p]]
        if action == "set_top":
            data[draw(st.sampled_from(TOP_KEYS))] = draw(values)
        elif action == "del_top":
            data.pop(draw(st.sampled_from(TOP_KEYS)), None)
        elif action == "extra_top":
            data[draw(st.text(max_size=8))] = draw(values)
        elif action in ("set_layer", "del_layer_key", "extra_layer_key", "drop_layer") and parts:
            layers = data[draw(st.sampled_from(parts))]
            index = draw(st.integers(0, len(layers) - 1))
            layer = layers[index]
            if action == "drop_layer":
                del layers[index]
            elif not isinstance(layer, dict):
                layers[index] = draw(values)
            elif action == "set_layer":
                layer[draw(st.sampled_from(LAYER_KEYS))] = draw(values)
            elif action == "del_layer_key":
                layer.pop(draw(st.sampled_from(LAYER_KEYS)), None)
            else:
                layer[draw(st.text(max_size=8))] = draw(values)
        elif action == "new_layer" and parts:
            layer = {"type": draw(st.sampled_from(["conv", "deconv", "pool", "upsample", "crop",
                                                   "pad", "batchnorm", "dropout", "dense"]))}  # fmt: skip
            for key in draw(st.lists(st.sampled_from(LAYER_KEYS[1:]), max_size=3)):
                layer[key] = draw(values)
            data[draw(st.sampled_from(parts))].insert(0, layer)
        elif action == "huge_list" and parts:
            part = draw(st.sampled_from(parts))
            # capped: repeated draws multiplied the list by 1000 each time (10^9 layers took the
            # whole machine's memory in one CI run, in this generator, before any code of ours ran)
            data[part] = (data[part] * draw(st.sampled_from([10, 100, 1000])))[:5000]
        elif action == "deep":
            nested: object = draw(values)
            for _ in range(draw(st.sampled_from([10, 200, 900]))):
                nested = [nested] if draw(st.booleans()) else {"type": nested}
            data[draw(st.sampled_from(TOP_KEYS))] = nested
        elif action == "unicode_name":
            data["name"] = draw(st.text(min_size=0, max_size=200))
        elif action == "replace_all":
            return draw(values)
    return data


@FUZZ
@given(mutated_specs())
def test_mutated_presets_are_valid_or_one_line_value_errors(data):
    load_and_check(data)


@FUZZ
@given(values)
def test_random_json_values_are_valid_or_one_line_value_errors(data):
    load_and_check(data)


@FUZZ
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200), mutated_specs().map(json.dumps)))
def test_random_text_through_from_json(text):
    check_outcome(lambda: compute_shapes(ArchitectureSpec.from_json(text)))


def test_found_cases_stay_fixed():
    """Cases the fuzzer found (cae/spec.py raised TypeError / OverflowError / a ValueError with no
    "Received", or RecursionError, before it was fixed)."""
    base = preset("classic").to_dict()
    deep: object = []
    for _ in range(100_000):
        deep = [deep]
    cases = [
        {**base, "encoder": [{"type": [1]}]},  # unhashable layer type
        {**base, "encoder": [{"type": {}}]},
        {**base, "encoder": [{"type": "dropout", "rate": 10**400}]},  # int too large for a float
        {**base, "input_shape": [10**5000, 28, 1]},  # repr over Python's int digit limit
        {**base, "encoder": [{"type": "conv", "filters": 10**5000}]},
        {**base, "encoder": deep},  # repr deeper than the recursion limit
    ]
    for data in cases:
        assert load_and_check(data) == "error"
    text = json.dumps({**base, "encoder": [{"type": "dropout", "rate": int("9" * 4000)}]})
    assert check_outcome(lambda: ArchitectureSpec.from_json(text)) == "error"


# ------------------------------------------------------------------------------ the CLI


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cae", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )


CLI_CASES = {
    "ok": preset("deep").to_dict(),
    "type-list": {**PRESET_DICTS[0], "encoder": [{"type": [1]}]},
    "huge-rate": {**PRESET_DICTS[0], "encoder": [{"type": "dropout", "rate": int("9" * 4000)}]},
    "float-filters": {**PRESET_DICTS[0], "encoder": [{"type": "conv", "filters": 16.0}]},
    "bool-kernel": {**PRESET_DICTS[0], "encoder": [{"type": "conv", "filters": 8, "kernel": True}]},
    "missing-encoder": {"name": "x", "input_shape": [28, 28, 1], "decoder": []},
    "unicode-extra": {**PRESET_DICTS[1], "ключ": "值"},
    "negative-shape": {**PRESET_DICTS[2], "input_shape": [-28, 28, 1]},
    "strides-and-dilation": {
        **PRESET_DICTS[0],
        "encoder": [{"type": "conv", "filters": 8, "strides": 2, "dilation": 2}],
    },
    "even-kernel-output-padding-0": {
        **PRESET_DICTS[0],
        "decoder": [{"type": "deconv", "filters": 1, "kernel": 4, "output_padding": 0}],
    },
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_shapes_on_mutated_files_exits_0_or_2_with_one_line(case, tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(CLI_CASES[case]), encoding="utf-8")
    result = run_cli("shapes", "--spec", str(path), cwd=tmp_path)
    assert "Traceback" not in result.stderr + result.stdout
    if case == "ok":
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Received" in lines[0], lines


ABSURD = {
    "4096 filters": (
        {"encoder": [{"type": "conv", "filters": 4096}]},
        "'filters' must be at most 1024 (limit)",
    ),
    "1,000 layers": (
        {"encoder": [{"type": "conv", "filters": 8}] * 1000},
        "'encoder' may have at most 64 layers (limit)",
    ),
    "1024x1024 input, many filters": (
        {"input_shape": [1024, 1024, 1], "encoder": [{"type": "conv", "filters": 1024}]},
        "4,000,000 values per image (limit)",
    ),
    "too many parameters": (
        {"encoder": [{"type": "conv", "filters": 1024, "kernel": 64}] * 2},
        "more than the limit of 50,000,000",
    ),
}

ABSURD_SCRIPT = """
import json, sys
from cae.shapes import compute_shapes
from cae.spec import ArchitectureSpec
out = []
for name, (patch, expected) in json.loads(sys.argv[1]).items():
    data = {"name": "absurd", "input_shape": [28, 28, 1], "decoder": [], **patch}
    try:
        compute_shapes(ArchitectureSpec.from_dict(data))
        out.append([name, "accepted", expected])
    except ValueError as error:
        out.append([name, str(error), expected])
out.append(["tensorflow imported", str("tensorflow" in sys.modules or "keras" in sys.modules), ""])
print(json.dumps(out))
"""


def test_absurd_sizes_are_refused_with_the_limit_before_tensorflow_is_imported():
    result = subprocess.run(
        [sys.executable, "-c", ABSURD_SCRIPT, json.dumps(ABSURD)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert rows[-1] == ["tensorflow imported", "False", ""]
    for name, message, expected in rows[:-1]:
        assert expected in message and "Received" in message, (name, message)


def test_cli_refuses_an_absurd_file_without_importing_tensorflow(tmp_path):
    """`python -m cae shapes` on 4096 filters: exit 2 naming the limit, fast (no TensorFlow)."""
    path = tmp_path / "absurd.json"
    data = {
        "name": "absurd",
        "input_shape": [28, 28, 1],
        "encoder": [{"type": "conv", "filters": 4096}],
    }
    path.write_text(json.dumps({**data, "decoder": []}))
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['cae', 'shapes', '--spec', sys.argv[1]]\n"
        "try:\n    runpy.run_module('cae', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    print('tensorflow' in sys.modules, e.code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.split() == ["False", "2"], (result.stdout, result.stderr)
    assert "'filters' must be at most 1024 (limit)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
