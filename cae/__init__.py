"""CAE Studio core: design, build, train and explore convolutional autoencoders.

This package never imports streamlit; TensorFlow is imported lazily inside the functions that need it
(``import cae`` imports neither TensorFlow nor Keras: tests/test_load_model.py checks it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

# TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notes) is noise for our users.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if TYPE_CHECKING:  # pragma: no cover
    import keras

__version__ = "0.1.0"

MODEL_FILE = "model.keras"  # a run folder's model (cae.store.MODEL_FILE; this package imports none
# of its modules but cae.variational, so that no import loop goes through it)


def load_model(path: str | os.PathLike[str]) -> keras.Model:
    """Any run's autoencoder, plain or variational, as a Keras model: ``path`` is a ``.keras``
    file or a run folder (its ``model.keras``). Loaded with Keras's ``safe_mode`` on, uncompiled;
    ``model.get_layer("decoder")`` is its decoder, ``get_layer("encoder")`` (plain) or
    ``get_layer("posterior")`` (variational: image -> [mean, log_var]) its encoder. TensorFlow is
    imported here, on the first call."""
    target = Path(path)
    if target.is_dir():
        target = target / MODEL_FILE
    if not target.is_file():
        raise FileNotFoundError(
            f"No model file there: give a run's .keras file or its folder. Received: "
            f"path={os.fspath(path)!r}"
        )
    if target.suffix != ".keras":
        raise ValueError(f"A run's model is a .keras file. Received: path={os.fspath(path)!r}")
    import keras

    import cae.variational  # noqa: F401 - registers the variational layer a file may hold

    return keras.saving.load_model(str(target), compile=False, safe_mode=True)
