"""Built-in datasets live in one table, cae.datasets.DATASETS: every record holds every concern.

A new dataset is one record (name and aliases, texts, image shape and split sizes, classes, where
it comes from and its licence, whether it is here, how it is read, its own split); a record that
lacks a concern fails here, naming the dataset and the concern, and the CLI lists it unasked.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cae import datasets
from cae.__main__ import make_parser
from cae.datasets import (
    DATASETS,
    BuiltinDataset,
    DatasetStatus,
    DatasetUnavailable,
    dataset_status,
    list_datasets,
    load_dataset,
)
from cae.recipe import SOURCES, UPLOAD

SPLIT_RULES = (datasets.SEEDED_SPLIT, datasets.OFFICIAL_SPLIT)


def _one_line(text: object, most: int) -> bool:
    return isinstance(text, str) and bool(text.strip()) and "\n" not in text and len(text) <= most


def _image_shape(shape: object) -> bool:
    return (
        isinstance(shape, tuple)
        and len(shape) == 3
        and all(isinstance(side, int) and side >= 1 for side in shape)
    )


def _class_names(names: object) -> bool:
    return (
        isinstance(names, tuple)
        and len(names) >= 2
        and len(set(names)) == len(names)
        and all(isinstance(name, str) and name for name in names)
    )


CONCERNS = {
    "canonical name (lower case, no spaces, the table's key)": lambda r: (
        r.name == r.name.strip().lower() and " " not in r.name and DATASETS[r.name] is r
    ),
    "aliases (lower case, none another dataset's name or alias)": lambda r: all(
        alias == alias.strip().lower()
        and alias != r.name
        and all(alias != o.name and alias not in o.aliases for o in DATASETS.values() if o is not r)
        for alias in r.aliases
    ),
    "title (one line)": lambda r: _one_line(r.title, 40),
    "summary (one line for the CLI's --dataset help)": lambda r: _one_line(r.summary, 100),
    "description": lambda r: _one_line(r.description, 400),
    "image shape (H, W, C)": lambda r: _image_shape(r.image_shape),
    "split sizes": lambda r: r.num_train >= 1 and r.num_test >= 1,
    "class names": lambda r: _class_names(r.class_names),
    "where it comes from": lambda r: _one_line(r.source, 200),
    "licence": lambda r: _one_line(r.license, 200),
    "availability probe": lambda r: callable(r.probe),
    "reader": lambda r: callable(r.read),
    "split rule (one of cae.datasets' rules)": lambda r: r.split in SPLIT_RULES,
}

CASES = [(name, concern) for name in DATASETS for concern in CONCERNS]


@pytest.fixture
def empty_home(tmp_path, monkeypatch):
    """A HOME without a Keras cache (and no KERAS_HOME), so only shipped/system files count."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("KERAS_HOME", raising=False)
    return home


def test_every_concern_is_a_field_of_the_record():
    fields = {field.name for field in dataclasses.fields(BuiltinDataset)}
    checked = {"name", "aliases", "title", "summary", "description", "image_shape", "num_train"}
    checked |= {"num_test", "class_names", "source", "license", "probe", "read", "split"}
    assert fields == checked, f"a concern without a check here: {sorted(fields ^ checked)}"


@pytest.mark.parametrize(("name", "concern"), CASES, ids=[f"{n}: {c}" for n, c in CASES])
def test_every_dataset_has_every_concern(name, concern):
    assert CONCERNS[concern](DATASETS[name]), f"{name} lacks {concern}"


def test_the_table_is_what_lists_recipes_and_aliases_read():
    assert list_datasets() == list(DATASETS.values())
    assert (*DATASETS, UPLOAD) == SOURCES
    for record in list_datasets():
        for spelling in (record.name.upper(), f" {record.name} ", *record.aliases):
            assert dataset_status(spelling) == dataset_status(record.name), spelling
    with pytest.raises(ValueError, match=r"choose one of mnist-sample, mnist, fashion-mnist"):
        dataset_status("fashion mnist")


@pytest.mark.parametrize("name", DATASETS)
def test_each_dataset_says_if_it_is_here_and_loads_or_says_what_to_install(name, empty_home):
    """The probe, the reader and the split agree: an available dataset loads with the shape,
    classes and counts its record and status give; an unavailable one refuses with the status's
    own message (what to install or upload)."""
    record = DATASETS[name]
    status = dataset_status(name)
    assert isinstance(status, DatasetStatus) and status.reason.strip(), name
    if not status.available:
        with pytest.raises(DatasetUnavailable) as refused:
            load_dataset(name, limit=2)
        assert str(refused.value) == status.reason, name
        return
    assert status.image_shape == record.image_shape, name
    small = load_dataset(name, limit=3, seed=1)
    assert (small.name, small.image_shape, small.class_names) == (
        name,
        record.image_shape,
        record.class_names,
    )
    assert (small.num_train, small.num_test) == (3, 3) and small.source, name
    files = record.read(False)
    x_train, y_train, x_test, y_test = record.split.apply(files, 0.1, 0)
    assert (len(x_train), len(x_test)) == (status.num_train, status.num_test), name
    assert len(y_train) == len(x_train) and len(y_test) == len(x_test), name


@pytest.mark.parametrize("name", DATASETS)
def test_each_split_rule_is_its_own(name, empty_home):
    """A seeded split follows the test fraction and the seed; the files' own split ignores both."""
    record = DATASETS[name]
    if not dataset_status(name).available:
        pytest.skip(f"{name} is not on this machine")
    files = record.read(False)
    a = record.split.apply(files, 0.1, 0)
    b = record.split.apply(files, 0.2, 1)
    if record.split.follows_test_fraction:
        assert len(b[2]) > len(a[2]) and len(a[0]) + len(a[2]) == len(b[0]) + len(b[2]), name
    else:
        assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True)), name


def _dataset_help(capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps at the terminal's width, and at hyphens
    with pytest.raises(SystemExit):
        make_parser().parse_args(["train", "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_the_cli_lists_every_dataset_from_the_table(capsys, monkeypatch):
    text = _dataset_help(capsys, monkeypatch)
    for record in list_datasets():
        assert f"{record.name}: {record.summary}" in text, record.name
    assert "(mnist-sample and files; mnist and fashion-mnist keep their own test set)" in text
    extra = dataclasses.replace(
        DATASETS["mnist-sample"], name="digits-demo", summary="a demo record, 100% here"
    )
    monkeypatch.setattr(datasets, "DATASETS", {**DATASETS, extra.name: extra})
    text = _dataset_help(capsys, monkeypatch)
    assert "digits-demo: a demo record, 100% here" in text
    assert "held out for testing (mnist-sample and digits-demo and files; mnist and" in text
