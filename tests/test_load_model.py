"""``cae.load_model``: any run's model, plain or variational, in one call; ``import cae`` stays
light; ``import cae.variational`` lets a plain ``keras.saving.load_model`` read a variational
run's file (issue 28, point 4)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import cae
from cae.builder import build, save_model
from cae.spec import Variational, preset

REPO = Path(__file__).resolve().parents[1]


def run_python(code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter from the repository root."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_import_cae_imports_neither_tensorflow_nor_keras():
    done = run_python(
        """
        import sys
        import cae
        assert callable(cae.load_model)
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")))
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, tuple[Path, object]]:
    """A plain and a variational classic network (untrained: their weights are random, which is
    all loading has to keep), each saved as a run folder's model.keras."""
    out = {}
    plain = preset("classic")
    for kind, spec in (
        ("plain", plain),
        ("variational", dataclasses.replace(plain, variational=Variational(1.0, 0))),
    ):
        folder = tmp_path_factory.mktemp(kind)
        built = build(spec)
        save_model(built.autoencoder, folder / "model.keras")
        out[kind] = (folder, built)
    return out


@pytest.mark.parametrize("kind", ["plain", "variational"])
def test_load_model_gives_the_saved_autoencoder_from_a_file_or_a_folder(saved, kind):
    folder, built = saved[kind]
    images = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    expected = np.asarray(built.autoencoder(images, training=False))
    for target in (folder / "model.keras", folder, str(folder)):
        model = cae.load_model(target)
        assert np.array_equal(np.asarray(model(images, training=False)), expected)
        parts = {layer.name for layer in model.layers}
        assert "decoder" in parts
        assert ("posterior" if kind == "variational" else "encoder") in parts


def test_load_model_loads_the_shipped_run():
    model = cae.load_model(REPO / "models" / "classic-mnist-sample-default")
    assert model.count_params() == 2690


def test_load_model_refuses_what_is_not_a_model(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No model file there.*Received: path=") as error:
        cae.load_model(tmp_path)  # a folder without model.keras
    assert str(tmp_path) in str(error.value)
    other = tmp_path / "model.h5"
    other.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"\.keras file\. Received: path=.*model\.h5"):
        cae.load_model(other)


def test_plain_keras_loads_a_variational_file_after_import_cae_variational(saved):
    folder, built = saved["variational"]
    images = np.random.default_rng(1).random((2, 28, 28, 1), dtype=np.float32)
    np.save(folder / "images.npy", images)
    np.save(folder / "expected.npy", np.asarray(built.autoencoder(images, training=False)))
    done = run_python(
        f"""
        import numpy as np
        import keras

        path = {str(folder / "model.keras")!r}
        try:
            keras.saving.load_model(path)
        except Exception as error:  # the layer is not registered yet
            print("without:", type(error).__name__)
        import cae.variational  # registers cae>VariationalSampling

        model = keras.saving.load_model(path)
        images = np.load({str(folder / "images.npy")!r})
        out = np.asarray(model(images, training=False))
        print("with:", bool(np.array_equal(out, np.load({str(folder / "expected.npy")!r}))))
        """
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("without: "), done.stdout  # what users met before (issue 28)
    assert lines[-1] == "with: True", done.stdout


def test_the_packages_model_file_name_is_the_stores():
    from cae.store import MODEL_FILE

    assert cae.MODEL_FILE == MODEL_FILE
