"""The JSON-lines protocol between the job manager and a worker process (never pickle).

Numpy arrays travel as ``{"__ndarray__": base64, "dtype", "shape"}`` (numeric dtypes only);
progress reports as every field of :class:`cae.progress.Progress`, with preview arrays that did
not change since the last report sent as ``{"__same__": true}``. Both sides import this module and
nothing of each other. No TensorFlow here.
"""

from __future__ import annotations

import base64
from dataclasses import fields
from typing import Any

import numpy as np

from cae.progress import Progress

PROTOCOL_VERSION = 1
_ARRAY_KEY = "__ndarray__"


# ------------------------------------------------------------------------- encoding


def encode_value(value: Any) -> Any:
    """A JSON-ready form of a value; numpy arrays become ``{"__ndarray__": base64, ...}``."""
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        return {
            _ARRAY_KEY: base64.b64encode(array.tobytes()).decode("ascii"),
            "dtype": array.dtype.str,
            "shape": list(array.shape),
        }
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(key): encode_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_value(item) for item in value]
    return value


def decode_value(value: Any) -> Any:
    """The inverse of ``encode_value``: arrays come back read-only; only numeric dtypes."""
    if isinstance(value, dict):
        if _ARRAY_KEY in value:
            dtype = np.dtype(str(value["dtype"]))
            if dtype.kind not in "biuf":
                raise ValueError(f"only numeric arrays cross the pipe. Received: dtype={dtype}")
            shape = tuple(int(n) for n in value["shape"])
            array = np.frombuffer(base64.b64decode(value[_ARRAY_KEY]), dtype=dtype).reshape(shape)
            return array
        return {key: decode_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [decode_value(item) for item in value]
    return value


PREVIEW_FIELDS = ("preview_originals", "preview_reconstructions", "preview_inputs")
_SAME = {"__same__": True}


def progress_to_message(progress: Progress, previous: Progress | None = None) -> dict[str, Any]:
    """A ``progress`` protocol message holding every field of ``progress``; a preview array that
    is the very object sent with ``previous`` goes as ``{"__same__": true}`` (the previews change
    once an epoch, the reports come every quarter second)."""
    message: dict[str, Any] = {"kind": "progress"}
    for item in fields(Progress):
        value = getattr(progress, item.name)
        if (
            item.name in PREVIEW_FIELDS
            and value is not None
            and previous is not None
            and value is getattr(previous, item.name)
        ):
            message[item.name] = _SAME
        else:
            message[item.name] = encode_value(value)
    return message


def progress_from_message(message: dict[str, Any], previous: Progress | None = None) -> Progress:
    """The Progress of a ``progress`` message (unknown keys are ignored); previews marked as
    unchanged are taken from ``previous``."""
    names = {item.name for item in fields(Progress)}
    values: dict[str, Any] = {}
    for key, value in message.items():
        if key not in names:
            continue
        if key in PREVIEW_FIELDS and value == _SAME:
            values[key] = getattr(previous, key) if previous is not None else None
        else:
            values[key] = decode_value(value)
    history = values.get("history") or {}
    values["history"] = {str(key): [float(v) for v in series] for key, series in history.items()}
    return Progress(**values)
