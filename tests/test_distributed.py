"""Training on several workers with TensorFlow's MultiWorkerMirroredStrategy, for real, on this
machine (local processes on 127.0.0.1 ports), and on two logical CPU devices with --strategy
mirrored; faults (a killed worker, a bad TF_CONFIG, a port in use, a peer that never comes) each
end in one short line."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cae.store import list_runs, load_run, run_test_split

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "train_multiworker.sh"
SHORT = ["--preset", "classic", "--dataset", "mnist-sample", "--limit", "300", "--batch-size", "32"]

pytestmark = pytest.mark.slow


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for item in sockets:
        item.bind(("127.0.0.1", 0))
    ports = [item.getsockname()[1] for item in sockets]
    for item in sockets:
        item.close()
    return ports


def tf_config(ports: list[int], index: int) -> str:
    workers = [f"127.0.0.1:{port}" for port in ports]
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


def env(**values: str) -> dict[str, str]:
    base = {key: value for key, value in os.environ.items() if key != "CAE_DEBUG"}
    return {**base, "PYTHONPATH": str(REPO), **values}


def worker(ports: list[int], index: int, *args: str, **extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cae", "train", "--strategy", "multiworker", *args],
        cwd=REPO,
        env=env(TF_CONFIG=tf_config(ports, index), **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# The chief, its save slowed past the 10 s after which TensorFlow's coordination service declares
# a silent task crashed; once saved, it notes whether the other worker's server still answers.
SLOW_CHIEF = textwrap.dedent(
    """
    import json, os, socket, sys, time
    import cae.store

    saved = cae.store.save_trained

    def save_slowly(*args, **kwargs):
        time.sleep(15)
        run = saved(*args, **kwargs)
        host, port = json.loads(os.environ["TF_CONFIG"])["cluster"]["worker"][1].rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=10).close()
            state = "alive"
        except OSError:
            state = "gone"
        with open(os.environ["MARK"], "w") as mark:
            mark.write(state)
        return run

    cae.store.save_trained = save_slowly
    from cae.__main__ import main

    sys.exit(main(sys.argv[1:]))
    """
)


def test_two_workers_train_one_run_that_loads_like_any_other_and_leave_together(tmp_path):
    """scripts/train_multiworker.sh with two workers, the chief's save slowed (SLOW_CHIEF, through
    the script's PYTHON): the other worker waits for the chief's save instead of leaving, both end
    cleanly with nothing on stderr, only the chief evaluates and writes, and the run loads like
    any other (one test: it was two trainings of two workers each)."""
    root = tmp_path / "models"
    out = root / "together"
    mark = tmp_path / "other-worker-at-save"
    # `-m cae ...` runs SLOW_CHIEF, its output also copied to worker-<index>.log (the script
    # deletes its own logs on success); anything else is Python itself
    python = tmp_path / "python"
    python.write_text(
        "#!/usr/bin/env bash\n"
        'if [ "$1" = "-m" ] && [ "$2" = "cae" ]; then\n'
        "  shift 2\n"
        '  index=$(echo "$TF_CONFIG" | sed -E \'s/.*"index": ([0-9]+).*/\\1/\')\n'
        f'  {sys.executable} -c "$SLOW_CHIEF" "$@" | tee "$COPIES/worker-$index.log"\n'
        "  exit ${PIPESTATUS[0]}\n"
        "fi\n"
        f'exec {sys.executable} "$@"\n'
    )
    python.chmod(0o755)
    copies = tmp_path / "copies"
    copies.mkdir()
    result = subprocess.run(
        ["bash", str(SCRIPT), "2", *SHORT, "--epochs", "1", "--out", str(out)],
        cwd=REPO,
        env=env(PYTHON=str(python), SLOW_CHIEF=SLOW_CHIEF, MARK=str(mark), COPIES=str(copies)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Before the final barrier the chief's stderr ended with TensorFlow's "The tasks have
    # crashed ... CoordinationServiceError" once the other worker had left.
    assert result.stderr == ""
    assert mark.read_text() == "alive"  # the other worker waited for the chief's save
    assert result.stdout.strip().splitlines()[-1].startswith("run together: 1 epoch")
    last = (copies / "worker-1.log").read_text().strip().splitlines()[-1]
    assert last.endswith("(this worker saves nothing: the chief evaluates and writes the run)")
    assert "PSNR" not in last  # it did not evaluate: only the chief does
    assert [path.name for path in root.iterdir()] == ["together"]  # the chief's folder alone
    (info,) = list_runs(root)
    assert info.ok and info.epochs == 1
    record = load_run("together", root).train_config
    assert record["strategy"] == "multiworker" and record["workers"] == 2
    assert record["replicas"] == 2
    assert run_test_split("together", root).count == 300
    from cae.events import EVENTS_FILE
    from tests.test_events import read_events

    scalars, strips = read_events(out / EVENTS_FILE)  # the chief's, one record per epoch
    assert [step for step, _ in scalars["loss"]] == [1] and len(strips["reconstructions"]) == 1


def test_the_script_fails_when_a_worker_fails(tmp_path):
    result = subprocess.run(
        ["bash", str(SCRIPT), "2", *SHORT, "--epochs", "0"],
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "error: 2 of 2 workers failed" in result.stderr
    assert "epochs must be an integer from 1 to 10,000" in result.stdout + result.stderr


def test_a_killed_worker_ends_the_others_with_one_line(tmp_path):
    ports = free_ports(2)
    args = [*SHORT, "--epochs", "500", "--out", str(tmp_path / "never")]
    chief = worker(ports, 0, *args)
    # killed below: no exit handler of its runs, so AutoGraph's files go to this test's folder
    other = worker(ports, 1, *args, TMPDIR=str(tmp_path))  # it writes nothing else there
    try:
        first = chief.stdout.readline()
        assert first.startswith("epoch 1/500"), first + chief.stderr.read()[-2000:]
        other.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        stdout, stderr = chief.communicate(timeout=120)
        took = time.monotonic() - killed
    finally:
        for process in (chief, other):
            if process.poll() is None:
                process.kill()
    assert chief.returncode == 2
    (line,) = stderr.strip().splitlines()
    assert line.startswith("error: multi-worker training stopped: another worker failed")
    assert len(line) <= 300 and "array(" not in line
    assert took < 90  # measured: 2-8 s; the collective timeout bounds a peer that hangs instead
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("{not json", "TF_CONFIG is not valid JSON"),
        ('{"cluster": {"worker": ["127.0.0.1"]}, "task": {"type": "worker", "index": 0}}',
         "worker[0] must be 'host:port'"),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}',
         "task.index must name one of the 1 worker addresses"),
        ('{"cluster": {"ps": ["127.0.0.1:1"]}, "task": {"type": "ps", "index": 0}}',
         "'worker' and 'chief' lists only"),
    ],
)  # fmt: skip
def test_a_bad_tf_config_is_one_line(config, expected, monkeypatch, capsys):
    from cae.__main__ import main

    monkeypatch.setenv("TF_CONFIG", config)
    status = main(["train", "--strategy", "multiworker", *SHORT, "--epochs", "1"])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and line.startswith("error: ") and expected in line, line
    assert "Received: " in line and len(line) <= 300


def test_a_port_in_use_is_one_line(monkeypatch, capsys):
    from cae.__main__ import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("TF_CONFIG", tf_config([port, free_ports(1)[0]], 0))
        status = main(["train", "--strategy", "multiworker", *SHORT, "--epochs", "1"])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and line.startswith(f"error: port {port} of this task (worker 0")
    assert "is in use" in line


def test_a_peer_that_never_comes_is_one_line_within_the_timeout(tmp_path):
    ports = free_ports(2)
    started = time.monotonic()
    alone = worker(ports, 0, *SHORT, "--epochs", "1", CAE_PEER_TIMEOUT="5")
    try:
        stdout, stderr = alone.communicate(timeout=120)
    finally:
        if alone.poll() is None:
            alone.kill()
    assert alone.returncode == 2
    (line,) = stderr.strip().splitlines()
    assert line.startswith("error: the other workers did not all join within 5 s")
    assert f"no answer from 127.0.0.1:{ports[1]}" in line
    assert time.monotonic() - started < 60


MIRRORED = textwrap.dedent(
    """
    import json
    import sys
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
    from cae.datasets import load_dataset
    from cae.spec import preset
    from cae.training import TrainConfig, train

    # train() itself, on a MirroredStrategy over the two devices
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    data = load_dataset("mnist-sample", limit=128)
    try:
        train(preset("classic"), data, TrainConfig(epochs=1, batch_size=33), strategy=strategy)
    except ValueError as error:
        odd = str(error)
    # 115 training images (last batch 19: cut to 18), 13 validation images (cut to 12).
    result = train(preset("classic"), data, TrainConfig(epochs=1, batch_size=32, preview_count=3),
                   strategy=strategy)
    from cae.evaluation import inference_function, reconstruct

    model = result.built.autoencoder
    direct = reconstruct(model, data.x_test[:101], batch_size=30)
    traced = reconstruct(model, data.x_test[:101], batch_size=30, infer=inference_function(model))
    print("RESULT " + json.dumps({
        "odd": odd,
        "recon_shape": list(traced.shape),
        "recon_gap": float(abs(direct - traced).max()),
        "replicas": strategy.num_replicas_in_sync,
        "epochs": result.epochs_completed,
        "state": result.state,
        "loss": result.history["loss"],
        "val_loss": result.history["val_loss"],
        "mse": result.test_metrics["mse"],
        "model_strategy": type(result.built.autoencoder.distribute_strategy).__name__,
    }), flush=True)

    # then the command line, in the same process: --strategy mirrored
    from cae.__main__ import main

    sys.exit(main(sys.argv[1:]))
    """
)


def test_mirrored_trains_on_two_logical_cpu_devices(tmp_path):
    """train() on a MirroredStrategy over two logical CPUs (an odd batch refused, replicas,
    reconstructions traced and not, the model's strategy), then `cae train --strategy mirrored`
    in the same TensorFlow process (one start-up for both; they were two tests, here and in
    tests/test_training.py)."""
    out = tmp_path / "mirrored"
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED, "train", "--strategy", "mirrored", *SHORT,
         "--epochs", "1", "--out", str(out)],
        cwd=REPO, env=env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    line = [x for x in result.stdout.splitlines() if x.startswith("RESULT ")][-1]
    found = json.loads(line[len("RESULT ") :])
    assert found["replicas"] == 2 and found["model_strategy"] == "MirroredStrategy"
    assert found["odd"].endswith("Received: batch_size=33, replicas=2")
    assert found["recon_shape"] == [101, 28, 28, 1] and found["recon_gap"] < 1e-5
    assert found["epochs"] == 1 and found["state"] == "finished"
    assert math.isfinite(found["loss"][0]) and math.isfinite(found["val_loss"][0])
    assert 0 < found["mse"] < 1
    # the command line's run
    record = json.loads((out / "train.json").read_text())
    assert record["strategy"] == "mirrored" and record["replicas"] == 2
    assert load_run(out).info.ok
