"""python -m cae prints no TensorFlow start-up lines on stderr; errors stay one line, and a failing
TensorFlow import still shows what TensorFlow printed (cae/quiet.py)."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cae.builder import build
from cae.spec import ArchitectureSpec, preset

REPO = Path(__file__).resolve().parents[1]

# Stands in for TensorFlow: says something on fd 2 while imported, like the real one, and offers
# what cae.quiet calls. FAIL=1 makes its import fail the way a broken installation does.
FAKE_TENSORFLOW = textwrap.dedent(
    """
    import os
    from types import SimpleNamespace

    os.write(2, b"fake-tf: start-up line\\n")
    if os.environ.get("FAKE_TF_FAIL"):
        raise ImportError("libtensorflow_framework.so.2: cannot open shared object file")
    int32 = "int32"
    config = SimpleNamespace(list_physical_devices=lambda: [])

    def zeros(shape, dtype):
        return [0]

    def transpose(x):
        os.write(2, b"fake-tf: first-use line\\n")
        return x
    """
)


def run(
    *args: str, env: dict[str, str] | None = None, pythonpath: str = ""
) -> subprocess.CompletedProcess:
    full_env = {key: value for key, value in os.environ.items() if key != "CAE_DEBUG"}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, str(REPO)]))
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=REPO, env=full_env, timeout=300
    )


@pytest.mark.slow
def test_shapes_keras_prints_nothing_on_stderr_and_imports_keras_without_pandas():
    """`cae shapes --keras` prints nothing on stderr. Keras imports pandas only to accept
    DataFrames (0.4 CPU-s of its 2.8 here); the command line, which trains and scores arrays,
    leaves it out (cae.quiet.import_keras_without_pandas), and pandas stays importable.
    One process for both (they were two tests running the same command); `python -m cae` itself
    is run by the tests below and by tests/test_cli_train.py."""
    code = (
        "import sys; from cae.__main__ import main; "
        "status = main(['shapes', '--preset', 'classic', '--keras']); "
        "print(status, 'keras' in sys.modules, 'pandas' in sys.modules); "
        "import pandas; print(pandas.__name__)"
    )
    result = run("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "decoder" in result.stdout
    assert result.stdout.strip().splitlines()[-2:] == ["0 True False", "pandas"]


@pytest.mark.slow
def test_train_and_evaluate_print_nothing_on_stderr_and_errors_stay_one_line(tmp_path):
    """Training also prints TensorFlow's first-use lines (cuInit, a oneDNN note) unless warmed up."""
    out = tmp_path / "quiet-run"
    trained = run(
        "-m", "cae", "train", "--preset", "classic", "--dataset", "mnist-sample",
        "--epochs", "1", "--limit", "200", "--out", str(out),
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert trained.stderr == ""
    evaluated = run("-m", "cae", "evaluate", str(out))
    assert evaluated.returncode == 0, evaluated.stderr
    assert evaluated.stderr == ""
    assert "psnr" in evaluated.stdout

    # A failure inside Keras, after TensorFlow is imported (weights of another design, in a
    # well-formed archive): still the one error line.
    broken = tmp_path / "broken-run"
    shutil.copytree(out, broken)
    other = preset("classic").to_dict()
    other["encoder"][0]["filters"] = 8
    build(ArchitectureSpec.from_dict(other)).autoencoder.save(broken / "model.keras")
    failed = run("-m", "cae", "evaluate", str(broken))
    assert failed.returncode == 2
    lines = failed.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), failed.stderr
    assert "model.keras cannot be loaded" in lines[0] and len(lines[0]) <= 300


@pytest.mark.slow
def test_an_error_after_importing_tensorflow_stays_one_line(tmp_path):
    data = preset("classic").to_dict()
    data["encoder"][2]["kernel"] = [0, 3]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    result = run("-m", "cae", "shapes", "--spec", str(path), "--keras")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: encoder[2]: 'kernel' must be at least 1. Received: kernel=[0, 3]"
    ]


def fake_tensorflow(tmp_path: Path) -> str:
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text(FAKE_TENSORFLOW)
    (tmp_path / "keras").mkdir()
    (tmp_path / "keras" / "__init__.py").write_text("")
    return str(tmp_path)


def test_a_failing_import_shows_what_tensorflow_printed(tmp_path):
    result = run(
        "-m", "cae", "shapes", "--preset", "classic", "--keras",
        env={"FAKE_TF_FAIL": "1"}, pythonpath=fake_tensorflow(tmp_path),
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "fake-tf: start-up line",
        "error: ImportError: libtensorflow_framework.so.2: cannot open shared object file",
    ]


QUIET_IMPORT = (
    "from cae.quiet import import_tensorflow_quietly; import_tensorflow_quietly(); print('ok')"
)


def test_only_the_import_is_quiet_and_cae_debug_shows_everything(tmp_path):
    fake = fake_tensorflow(tmp_path)
    after = "import os; os.write(2, b'later line\\n')"
    quiet = run("-c", f"{QUIET_IMPORT}; {after}", pythonpath=fake)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == "ok\n"
    assert quiet.stderr == "later line\n"  # fd 2 is back once TensorFlow has started
    shown = run("-c", QUIET_IMPORT, env={"CAE_DEBUG": "1"}, pythonpath=fake)
    assert shown.returncode == 0, shown.stderr
    assert shown.stderr == "fake-tf: start-up line\nfake-tf: first-use line\n"


QUIET_UNTIL_EXIT = textwrap.dedent(
    """
    import atexit, os, sys, threading
    from cae.quiet import quiet_until_exit

    os.write(2, b"c++ before\\n")
    quiet_until_exit()
    quiet_until_exit()  # a second call changes nothing
    os.write(2, b"c++ after\\n")  # as TensorFlow's threads log, down to the exit
    atexit.register(lambda: os.write(2, b"c++ at exit\\n"))
    threading.Thread(target=lambda: os.write(2, b"c++ from a thread\\n")).start()
    print("python after", file=sys.stderr)
    raise SystemExit("python's own last line")
    """
)


def test_quiet_until_exit_hides_fd_2_to_the_end_and_keeps_python_stderr():
    result = run("-c", QUIET_UNTIL_EXIT)
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["c++ before", "python after", "python's own last line"]
    shown = run("-c", QUIET_UNTIL_EXIT, env={"CAE_DEBUG": "1"})  # hides nothing
    assert "c++ after" in shown.stderr and "c++ at exit" in shown.stderr
