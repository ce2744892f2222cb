"""Where a training runs: ``tf.distribute`` strategies, the chief, the end barrier, Keras fixes.

``train`` runs under the strategy it is given (``make_strategy`` names them for the CLI): the
default one (this device), MirroredStrategy (every local GPU, else every logical CPU device) or
MultiWorkerMirroredStrategy (several processes or machines described by ``TF_CONFIG``). No
home-made distribution: the steps, the gradient all-reduce and the data sharding are TensorFlow's
and Keras's own; :func:`fix_keras_for_multi_worker` only lets Keras 3's ``fit``/``evaluate`` run
under the multi-worker strategy at all. TensorFlow is imported inside the functions.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import keras
    import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multiworker")
COLLECTIVE_TIMEOUT = 60.0  # seconds a multi-worker collective may wait for a peer before failing
FINISH_TIMEOUT = 600.0  # seconds multi-worker tasks wait at the end for one another


def make_strategy(name: str) -> tf.distribute.Strategy:
    """A ``tf.distribute`` strategy: "default" (this device), "mirrored" (every local GPU, else
    every logical CPU device) or "multiworker" (several machines described by the TF_CONFIG
    environment variable; each collective gives up after ``CAE_COLLECTIVE_TIMEOUT`` seconds)."""
    if name not in STRATEGIES:
        raise ValueError(
            f"strategy must be one of {', '.join(STRATEGIES)}. Received: strategy={name!r}"
        )
    if name == "multiworker":
        from cae.cluster import Cluster

        Cluster.from_env()  # one line naming what is wrong, before TensorFlow waits for peers
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        # every GPU; without one, every logical CPU device (one unless the process made more)
        gpus = tf.config.list_logical_devices("GPU")
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    timeout = float(os.environ.get("CAE_COLLECTIVE_TIMEOUT", COLLECTIVE_TIMEOUT))
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def is_chief(strategy: Any = None) -> bool:
    """True on the worker that should write results (always, outside multi-worker training)."""
    import tensorflow as tf

    if strategy is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    from cae.cluster import Cluster

    return Cluster.from_env().is_chief


def leave_together(strategy: Any = None, timeout: float = FINISH_TIMEOUT) -> None:
    """Under a multi-worker strategy, wait until every task of the cluster has called this too
    (the chief once it has saved the run), at most ``timeout`` seconds; nothing otherwise.

    Why: TensorFlow's coordination service runs inside the chief and expects a heartbeat from
    every task. A worker that exits while the chief still evaluates or saves stops sending them,
    and some 10 s later the service declares it crashed: a C++ log line on the chief, "The tasks
    have crashed ... CoordinationServiceError", after the chief's summary. At this barrier of the
    service all tasks leave together. It raises a ``tf.errors.OpError``: UnavailableError within
    seconds when the chief (the service) is gone, InternalError naming the task once a task that
    died has missed its heartbeats (10 to 20 s), DeadlineExceededError after ``timeout``."""
    import tensorflow as tf

    if strategy is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    from tensorflow.python.eager import context  # the service's barrier has no public alias

    context.context().wait_at_barrier("cae-train-end", int(timeout * 1000))


def fix_keras_for_multi_worker(model: keras.Model, strategy: tf.distribute.Strategy) -> None:
    """Two fixes that let Keras 3's own ``fit``/``evaluate`` run under
    MultiWorkerMirroredStrategy (measured with Keras 3.15.1 and TensorFlow 2.21, two local
    workers; upstream: tensorflow/tensorflow#72388). The steps, the gradient all-reduce and the
    data sharding stay TensorFlow's and Keras's own.

    1. Before its first step Keras reduces the first batch with ``strategy.reduce("MEAN", (x,
       y))``, which this strategy cannot do for a tuple ("Attempt to convert a value
       (PerReplica:{...})" and a dump of the batch). Only the batch's shapes matter to that
       build, so this model builds from its local values instead.
    2. After each step Keras reduces the scalar logs with ``strategy.reduce("MEAN", v, axis=0)``,
       which fails on a scalar ("Invalid reduction dimension 0 for input with 0 dimensions").
       The logs are reduced with ``axis=None`` instead: the mean over the workers' replicas."""
    import keras
    from keras.src.backend.tensorflow import trainer as tf_trainer

    def maybe_symbolic_build(iterator: Any = None, data_batch: Any = None) -> None:
        if iterator is not None:
            for _, _, batches in iterator:
                first = next(batches)
                data_batch = keras.tree.map_structure(
                    lambda value: strategy.experimental_local_results(value)[0], first
                )
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = maybe_symbolic_build
    original = tf_trainer.reduce_per_replica
    if getattr(original, "_cae_multi_worker_fix", False):
        return

    def reduce_per_replica(values: Any, strategy: Any, reduction: str = "auto") -> Any:
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(
            strategy
        ):
            return keras.tree.map_structure(
                lambda value: strategy.reduce("MEAN", value, axis=None), values
            )
        return original(values, strategy, reduction)

    reduce_per_replica._cae_multi_worker_fix = True  # type: ignore[attr-defined]
    tf_trainer.reduce_per_replica = reduce_per_replica
