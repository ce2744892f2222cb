"""Run names and loss titles for people (cae.naming): the Train page's suggestions, without it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cae.naming import LOSS_TITLES, default_run_name, loss_title
from cae.request import MAX_RUN_NAME
from cae.spec import preset
from cae.training import LOSSES


def test_every_loss_has_one_title():
    assert set(LOSS_TITLES) == set(LOSSES)
    assert loss_title("mse") == "mean squared error"
    with pytest.raises(ValueError, match="Received: loss='huber'"):
        loss_title("huber")


def test_the_name_is_design_data_and_the_first_free_counter():
    classic = preset("classic")
    assert default_run_name(classic, "mnist-sample", None, set()) == "classic-mnist-sample-1"
    taken = {"classic-mnist-sample-1", "classic-mnist-sample-2"}
    assert default_run_name(classic, "mnist-sample", None, taken) == "classic-mnist-sample-3"
    edited = replace(classic, input_shape=(28, 28, 3))
    assert default_run_name(edited, "fashion-mnist", None, []) == "classic-edited-fashion-mnist-1"
    assert default_run_name(None, "mnist", None, []) == "run-mnist-1"


def test_an_upload_is_named_by_its_file_and_array():
    classic = preset("classic")
    assert default_run_name(classic, "upload", "circles.npy", []) == "classic-circles-1"
    assert default_run_name(classic, "upload", "pairs.npz", [], "noisy") == "classic-pairs-noisy-1"
    assert default_run_name(classic, "upload", None, []) == "classic-upload-1"
    # control characters go, and a long name leaves room for its counter
    assert default_run_name(classic, "upload", "a\u202eb.npy", []) == "classic-ab-1"
    long = default_run_name(classic, "upload", "x" * 200 + ".npy", [])
    assert len(long) <= MAX_RUN_NAME and long.endswith("-1")
