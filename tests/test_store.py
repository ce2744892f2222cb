"""cae.store: atomic saves, listing without TensorFlow, broken folders, safe ids, crash safety."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cae import store
from cae.store import (
    MARKER_FILE,
    RunError,
    check_run_id,
    delete_run,
    get_run_info,
    list_runs,
    load_history,
    load_run,
    read_run_json,
    resolve_run_path,
    safe_run_id,
    save_run,
)

REPO = Path(__file__).resolve().parent.parent
HISTORY = {"loss": [0.3, 0.2, 0.1], "val_loss": [0.35, 0.25, 0.15]}
METRICS = {"mse": 0.01, "psnr": 20.0, "ssim": 0.9, "params": 2690, "wall_time_s": 1.5}


def _child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


@pytest.fixture(scope="module")
def built():
    import keras

    from cae.builder import build
    from cae.spec import preset

    model = build(preset("classic"))
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)  # weights away from the initial ones, so a reload shows
    for layer in model.autoencoder.layers:
        layer.set_weights([w + rng.normal(0, 0.05, w.shape) for w in layer.get_weights()])
    return model


def _save(built, root, name="classic", **kwargs):
    options = {
        "train_config": {"dataset": "mnist-sample", "epochs": 3, "batch_size": 64, "seed": 0},
        "history": HISTORY,
        "metrics": METRICS,
    }
    options.update(kwargs)
    return save_run(built.autoencoder, built.spec, name=name, root=root, **options)


@pytest.fixture(scope="module")
def saved(built, tmp_path_factory):
    """One good run in a module-wide root, copied into tests that break it."""
    root = tmp_path_factory.mktemp("runs")
    stats = {"shape": [7, 7, 1], "min": 0.0, "max": 1.0}
    run_id = _save(built, root, name="Classic run", latent_stats=stats)
    return root, run_id


def _copy_run(saved, root, new_id):
    source_root, run_id = saved
    shutil.copytree(source_root / run_id, root / new_id)
    return root / new_id


def test_round_trip(built, saved):
    root, run_id = saved
    assert run_id.startswith("classic-run-") and check_run_id(run_id) == run_id
    folder = root / run_id
    expected = {"spec.json", "train.json", "history.json", "metrics.json", "latent.json"}
    assert {p.name for p in folder.iterdir()} == expected | {"model.keras", "run.json"}
    assert not [p for p in root.iterdir() if p.name.startswith(".tmp-")]

    (info,) = list_runs(root)
    assert info.ok and info.broken is None
    assert (info.run_id, info.path, info.name) == (run_id, folder, "Classic run")
    assert (info.dataset, info.epochs, info.spec_name) == ("mnist-sample", 3, "classic")
    assert info.params == 2690 and info.latent_shape == (7, 7, 1)
    assert info.input_shape == (28, 28, 1) and info.metrics == METRICS
    assert info.created and json.dumps(info.as_dict())

    loaded = load_run(run_id, root)
    assert loaded.run_id == run_id and loaded.info == info
    assert loaded.spec == built.spec and loaded.history == HISTORY and loaded.metrics == METRICS
    assert loaded.train_config["seed"] == 0 and loaded.train_config["name"] == "Classic run"
    assert loaded.latent_stats == {"shape": [7, 7, 1], "min": 0.0, "max": 1.0}
    images = np.random.default_rng(0).random((3, 28, 28, 1)).astype(np.float32)
    np.testing.assert_array_equal(loaded.built.autoencoder(images), built.autoencoder(images))
    np.testing.assert_array_equal(loaded.built.encoder(images), built.encoder(images))
    codes = built.encoder(images)
    np.testing.assert_array_equal(loaded.built.decoder(codes), built.decoder(codes))

    assert load_run(folder).run_id == run_id  # a path to the folder works too
    assert load_history(run_id, root) == HISTORY
    assert read_run_json(run_id, "metrics", root) == METRICS
    assert get_run_info(run_id, root) == info


def test_list_runs_does_not_import_tensorflow(saved):
    root, run_id = saved
    code = (
        "import json, sys\n"
        "from cae.store import list_runs\n"
        f"runs = list_runs({str(root)!r})\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print(json.dumps({'ids': [r.run_id for r in runs], 'ok': [r.ok for r in runs], "
        "'heavy': heavy}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=_child_env(),
        timeout=60,
        check=True,
    )
    out = json.loads(result.stdout)
    assert out == {"ids": [run_id], "ok": [True], "heavy": []}


def test_broken_folders_are_listed_with_a_reason(saved, tmp_path):
    good = _copy_run(saved, tmp_path, "good-run")
    _copy_run(saved, tmp_path, "corrupt-model")
    (tmp_path / "corrupt-model" / "model.keras").write_bytes(b"not a zip" * 100)
    _copy_run(saved, tmp_path, "no-spec")
    (tmp_path / "no-spec" / "spec.json").unlink()
    _copy_run(saved, tmp_path, "bad-json")
    (tmp_path / "bad-json" / "history.json").write_text('{"loss": [0.1,', encoding="utf-8")
    _copy_run(saved, tmp_path, "no-marker")
    (tmp_path / "no-marker" / "run.json").unlink()
    _copy_run(saved, tmp_path, "no-model")
    (tmp_path / "no-model" / "model.keras").unlink()
    stale = _copy_run(saved, tmp_path, "stale-spec")
    spec = json.loads((stale / "spec.json").read_text())
    spec["decoder"] = spec["decoder"][:-2]  # output no longer matches the input
    (stale / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "empty").mkdir()
    (tmp_path / ".tmp-0123abcd").mkdir()  # an interrupted save: ignored
    (tmp_path / "notes.txt").write_text("a plain file: ignored")

    runs = {info.run_id: info for info in list_runs(tmp_path)}
    assert set(runs) == {
        "good-run",
        "corrupt-model",
        "no-spec",
        "bad-json",
        "no-marker",
        "no-model",
        "stale-spec",
        "empty",
    }
    assert runs["good-run"].ok
    reasons = {run_id: info.broken for run_id, info in runs.items() if run_id != "good-run"}
    assert "model.keras is not a valid Keras archive" in reasons["corrupt-model"]
    assert "spec.json is missing" in reasons["no-spec"]
    assert "history.json is not valid JSON" in reasons["bad-json"]
    assert reasons["no-marker"].startswith("incomplete write: the run.json marker is missing")
    assert "model.keras is missing" in reasons["no-model"]
    assert "spec.json no longer validates" in reasons["stale-spec"]
    assert "incomplete write" in reasons["empty"]
    assert runs["no-spec"].name == "Classic run"  # what could be read is still shown

    for run_id, reason in reasons.items():
        assert not runs[run_id].ok
        with pytest.raises(RunError, match=f"Run '{run_id}' cannot be loaded") as caught:
            load_run(run_id, tmp_path)
        assert caught.value.run_id == run_id and caught.value.reason == reason
    assert load_run("good-run", tmp_path).info.ok
    assert load_run(good).run_id == "good-run"


def test_archive_that_lists_ok_but_fails_to_load_raises_run_error(saved, built, tmp_path):
    """Weights of another design, in a well-formed archive: listing cannot tell, loading (which
    builds the run's own spec and loads only weights) refuses, and the run lists broken after."""
    from cae.builder import build
    from cae.spec import ArchitectureSpec

    folder = _copy_run(saved, tmp_path, "bad-weights")
    other = built.spec.to_dict()
    other["encoder"][0]["filters"] = 8
    build(ArchitectureSpec.from_dict(other)).autoencoder.save(folder / "model.keras")
    assert get_run_info("bad-weights", tmp_path).ok
    with pytest.raises(RunError, match="model.keras cannot be loaded") as caught:
        load_run("bad-weights", tmp_path)
    assert caught.value.run_id == "bad-weights"
    info = get_run_info("bad-weights", tmp_path)
    assert not info.ok and "model.keras cannot be loaded" in info.broken


def test_a_crafted_config_cannot_choose_the_architecture(saved, built, tmp_path):
    """The config inside model.keras asks for something else: the spec decides what is built."""
    folder = _copy_run(saved, tmp_path, "crafted")
    with zipfile.ZipFile(folder / "model.keras") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    config["class_name"] = "NotAModel"
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(folder / "model.keras", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    run = load_run("crafted", tmp_path)
    assert run.built.autoencoder.count_params() == 2690
    for a, b in zip(run.built.autoencoder.get_weights(), built.autoencoder.get_weights()):
        assert np.allclose(a, b)


def test_corrupt_or_oversized_archives_and_odd_files_list_as_broken(saved, tmp_path):
    corrupt = _copy_run(saved, tmp_path, "corrupt")
    data = bytearray((corrupt / "model.keras").read_bytes())
    at = data.find(b"model.weights.h5")
    at = data.find(b"HDF", at) if data.find(b"HDF", at) > 0 else len(data) // 2
    data[at + 200 : at + 210] = b"0123456789"  # inside the stored weights: the CRC fails
    (corrupt / "model.keras").write_bytes(bytes(data))
    assert "fails its checksum" in get_run_info("corrupt", tmp_path).broken
    fifo = _copy_run(saved, tmp_path, "fifo")
    (fifo / "spec.json").unlink()
    os.mkfifo(fifo / "spec.json")  # reading it would hang the listing
    assert "spec.json is not a regular file" in get_run_info("fifo", tmp_path).broken
    zero = _copy_run(saved, tmp_path, "zero")
    (zero / "history.json").unlink()
    (zero / "history.json").symlink_to("/dev/zero")  # reading it would fill the memory
    assert "history.json is not a regular file" in get_run_info("zero", tmp_path).broken


def test_delete_runs_broken_ones_too(saved, tmp_path):
    _copy_run(saved, tmp_path, "keep")
    broken = _copy_run(saved, tmp_path, "broken")
    (broken / "spec.json").write_text("{", encoding="utf-8")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me")
    (tmp_path / "link").symlink_to(outside, target_is_directory=True)

    delete_run("broken", tmp_path)
    assert not broken.exists()
    delete_run("link", tmp_path)  # removes the link only
    assert (outside / "precious.txt").read_text() == "keep me"
    assert [info.run_id for info in list_runs(tmp_path)] == ["keep"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    with pytest.raises(RunError, match="Received: run_id='broken'"):
        delete_run("broken", tmp_path)
    odd = _copy_run(saved, tmp_path, "classic run (copy)")  # not a valid id: still deletable
    (odd / "spec.json").write_text("{", encoding="utf-8")
    delete_run("classic run (copy)", tmp_path)
    assert not odd.exists()
    for bad in ("../keep", "..", "", ".tmp-x", "a/b", "a\\b", "/etc"):
        with pytest.raises(ValueError, match="Received: run_id="):
            delete_run(bad, tmp_path)
    with pytest.raises(TypeError):
        delete_run(tmp_path / "keep", tmp_path)
    assert (tmp_path / "keep").is_dir()


def test_resolve_run_path_refuses_traversal(tmp_path):
    assert resolve_run_path("abc-1", tmp_path) == tmp_path / "abc-1"
    assert resolve_run_path(tmp_path / "x" / "y", tmp_path) == tmp_path / "x" / "y"
    for bad in ("../x", "../../etc/passwd", "..", ".", "x/../y", "/abs", "C:\\x", "a b", "~"):
        with pytest.raises(ValueError, match=r"Received: run_id="):
            resolve_run_path(bad, tmp_path)
    with pytest.raises(ValueError, match=r"Received: run_id='\.\./x'"):
        load_run("../x", tmp_path)
    with pytest.raises(RunError, match="No run folder"):
        load_run("missing-run", tmp_path)


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("../../x", "x"),
        ("CON", "con-run"),
        ("nul", "nul-run"),
        ("com1", "com1-run"),
        ("", "run"),
        ("   ", "run"),
        ("..", "run"),
        ("Ünïcödé Net / v2", "unicode-net-v2"),
        ("a" * 300, "a" * 48),
        ("x" * 47 + "-yz", "x" * 47),
    ],
)
def test_safe_run_id(name, slug):
    assert safe_run_id(name) == slug
    assert check_run_id(store.new_run_id(name)).startswith(slug + "-")


def test_unsafe_names_save_inside_the_root(built, tmp_path):
    root = tmp_path / "root"
    ids = [_save(built, root, name=name) for name in ("../../x", "CON", "", "n" * 300)]
    assert [i.rsplit("-", 3)[0] for i in ids] == ["x", "con-run", "run", "n" * 48]
    assert sorted(p.name for p in root.iterdir()) == sorted(ids)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]
    assert all(len(i) <= 48 + 23 for i in ids)
    names = {info.run_id: info.name for info in list_runs(root)}
    assert names == dict(zip(ids, ["../../x", "CON", ids[2], "n" * 300]))  # "" shows the id


def test_same_name_from_two_threads(built, tmp_path):
    barrier = threading.Barrier(2)
    ids, errors = [], []

    def worker():
        try:
            barrier.wait()
            ids.append(_save(built, tmp_path, name="same"))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and len(set(ids)) == 2
    runs = list_runs(tmp_path)
    assert sorted(info.run_id for info in runs) == sorted(ids) and all(r.ok for r in runs)
    for run_id in ids:
        load_run(run_id, tmp_path)


def test_bad_inputs_leave_nothing_behind(built, tmp_path):
    with pytest.raises(ValueError, match="metrics cannot be written as JSON"):
        _save(built, tmp_path, metrics={"bad": object()})
    with pytest.raises(ValueError, match=r"history\['loss'\]"):
        _save(built, tmp_path, history={"loss": ["x"]})
    with pytest.raises(TypeError, match="name"):
        _save(built, tmp_path, name=None)
    assert not tmp_path.exists() or not list(tmp_path.iterdir())
    run_id = _save(built, tmp_path, metrics={"mse": np.float32(0.5), "params": np.int64(3)})
    assert read_run_json(run_id, "metrics.json", tmp_path) == {"mse": 0.5, "params": 3}


def test_models_dir_and_newest_first(built, tmp_path, monkeypatch):
    monkeypatch.setenv("CAE_MODELS_DIR", str(tmp_path))
    assert store.models_dir() == tmp_path
    first = _save(built, None, name="first")
    second = _save(built, None, name="second")
    assert [info.run_id for info in list_runs()] == [second, first]
    monkeypatch.delenv("CAE_MODELS_DIR")
    assert store.models_dir() == REPO / "models"
    assert list_runs(tmp_path / "missing") == []


CHILD = """
import itertools, sys, time
import cae.builder
from cae.spec import preset
from cae.store import save_run

root, archive = sys.argv[1], sys.argv[2]
if archive == "keras":  # real Keras saves
    model = cae.builder.build(preset("classic"))
    autoencoder = model.autoencoder
else:  # no TensorFlow: write a real model.keras slowly, so kills land inside the write
    data = open(archive, "rb").read()
    autoencoder = None

    def slow_save(_, path):
        with open(path, "wb") as handle:
            for start in range(0, len(data), 2048):
                handle.write(data[start : start + 2048])
                handle.flush()
                time.sleep(0.001)

    cae.builder.save_model = slow_save
print("ready", flush=True)
for i in itertools.count():
    save_run(autoencoder, preset("classic"), name="crash", train_config={"dataset": "x"},
             history={"loss": [0.5] * 3}, metrics={"mse": 0.1}, latent_stats={"i": i}, root=root)
"""


@pytest.mark.slow
def test_sigkill_during_saves_never_leaves_an_ok_run_that_fails_to_load(saved, tmp_path):
    """Children save in a loop and are SIGKILLed at random moments: one with real Keras saves,
    six (no TensorFlow, fast to start) writing a real model.keras slowly, so kills land mid-save."""
    source_root, run_id = saved
    archive = str(source_root / run_id / "model.keras")
    rng = random.Random(1234)
    children = []

    def start(kind):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path), kind],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=_child_env(),
        )
        children.append(child)
        return child

    def kill_while_saving(child):
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.4))
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        assert child.returncode == -signal.SIGKILL

    try:
        keras_child = start("keras")  # imports TensorFlow meanwhile
        for _ in range(6):
            kill_while_saving(start(archive))
        kill_while_saving(keras_child)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait(10)
            child.stdout.close()
    runs = list_runs(tmp_path)
    assert runs, "no save finished before the kills"
    assert all(info.ok for info in runs), [info.broken for info in runs]
    for info in runs:
        loaded = load_run(info.run_id, tmp_path)
        assert loaded.latent_stats is not None and loaded.history["loss"] == [0.5] * 3
    # What the kills interrupted is at most a hidden temporary folder, ignored by the listing.
    # (a kill between the marker and the rename leaves a complete .tmp- folder: hidden too)
    listed = {info.run_id for info in runs}
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name not in listed)
    assert leftovers and all(name.startswith(".tmp-") for name in leftovers)
    assert sorted(store.clean_stale_tmp(tmp_path, max_age_s=-1)) == leftovers
    assert len(list(tmp_path.iterdir())) == len(runs)


def test_publish_run_moves_a_staged_run_into_the_root_under_its_new_name(built, tmp_path):
    staging = store.staging_dir("job42", tmp_path)
    assert staging.parent == tmp_path and staging.name == ".tmp-staged-job42"
    staged_id = _save(built, staging, name="first name")
    assert list_runs(tmp_path) == []  # a staged run is not a run yet
    run_id = store.publish_run(staging / staged_id, name="the name typed at Save", root=tmp_path)
    assert run_id.startswith("the-name-typed-at-save-")
    assert not staging.exists()
    (info,) = list_runs(tmp_path)
    assert info.ok and info.run_id == run_id and info.name == "the name typed at Save"
    loaded = load_run(run_id, tmp_path)
    assert loaded.train_config["dataset"] == "mnist-sample"  # the rest of train.json is kept
    assert not list(Path(loaded.info.path).glob("*.new"))


def test_publish_run_refuses_what_is_not_a_complete_staged_run(saved, built, tmp_path):
    root, run_id = saved
    with pytest.raises(ValueError, match="Received: staged="):
        store.publish_run(root / run_id, name="x", root=root)  # a published run, not staged
    elsewhere = tmp_path / "elsewhere" / ".tmp-staged-abc"
    elsewhere.mkdir(parents=True)
    with pytest.raises(ValueError, match="staging folder of the runs folder"):
        store.publish_run(elsewhere / run_id, name="x", root=tmp_path)
    runs = tmp_path / "runs"
    staging = store.staging_dir("half", runs)
    staged_id = _save(built, staging, name="half")
    (staging / staged_id / MARKER_FILE).unlink()  # a partial write
    with pytest.raises(RunError, match="cannot be published: incomplete write"):
        store.publish_run(staging / staged_id, name="x", root=runs)
    assert list_runs(runs) == []
    for token in ("", "../x", "a" * 65, 7):
        with pytest.raises(ValueError, match="Received: token="):
            store.staging_dir(token, runs)
