"""The input pipeline of a training: images to shuffled ``(input, target)`` batches with ``tf.data``.

:func:`make_pipeline` is what ``model.fit`` reads (training) and ``model.evaluate`` reads at each
epoch end (validation): a seeded shuffle of indices, one gather per batch, uint8 images made
float32 in the graph a batch at a time, the input corruption of a denoiser, prefetch.
:func:`images_per_epoch` says how many images one epoch uses once the last batch is cut to split
evenly over a strategy's replicas. TensorFlow is imported inside the functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cae.corruption import Corruption
from cae.pixels import HELD_DTYPES, as_float

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

TENSOR_GATHER_BYTES = 64 * 2**20  # training images gathered in-graph up to this size (as held)


def make_pipeline(
    x: np.ndarray,
    batch_size: int,
    *,
    seed: int,
    corruption: Corruption | None = None,
    shuffle: bool = True,
    fixed_noise: bool = False,
    replicas: int = 1,
    copy_to_tensor: bool | None = None,
) -> tf.data.Dataset:
    """A ``tf.data`` pipeline of (input, target) batches: a seeded shuffle of indices (reshuffled
    each epoch), a gather per batch, uint8 images made float32 in [0, 1] (``cae.pixels``; in the
    graph, a batch at a time), the input ``corruption`` of ``cae.corruption`` (targets stay
    clean; new random corruption every batch and epoch unless ``fixed_noise``), prefetch.

    Where the batches are gathered from (``copy_to_tensor``; None chooses by size): a tensor copy
    of the images as held, gathered inside the graph, for arrays up to ``TENSOR_GATHER_BYTES`` (and always
    under multi-worker training, whose auto-sharding must serialise the pipeline); the numpy array
    itself for bigger ones, through one Python call per batch, since TensorFlow 2.21 holds two
    copies of an array it converts to a tensor (+376 MB for 60,000 MNIST images). With ``replicas`` > 1 the last batch is cut to a multiple of ``replicas`` (Keras 3
    under MirroredStrategy fails on a batch that does not split evenly): each epoch leaves out at
    most ``replicas - 1`` images, different ones each epoch when shuffling."""
    import tensorflow as tf

    x = np.asarray(x)
    if x.dtype not in HELD_DTYPES:
        x = as_float(x)
    held = tf.uint8 if x.dtype == np.uint8 else tf.float32
    n = int(x.shape[0])
    image_shape = tuple(int(d) for d in x.shape[1:])
    if copy_to_tensor is None:
        copy_to_tensor = x.nbytes <= TENSOR_GATHER_BYTES

    def to_float(batch: Any) -> Any:
        """uint8 k -> k / 255 as float32, the same values as ``cae.pixels.as_float``."""
        if held == tf.float32:
            return batch
        return tf.math.divide(tf.cast(batch, tf.float32), tf.constant(255.0, tf.float32))

    if copy_to_tensor:
        images = tf.convert_to_tensor(x, dtype=held)

        def gather(index: Any) -> Any:
            return to_float(tf.gather(images, index))

    else:
        source = np.ascontiguousarray(x)

        def take_rows(index: np.ndarray) -> np.ndarray:
            return source[index]

        def gather(index: Any) -> Any:
            batch = tf.numpy_function(take_rows, [index], held, stateful=False)
            return to_float(tf.ensure_shape(batch, (None, *image_shape)))

    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    used = images_per_epoch(n, batch_size, replicas)
    if used < n:
        ds = ds.take(used)
    ds = ds.batch(batch_size)
    if corruption is not None:
        # One random seed per batch from a seeded stream: new noise every epoch unless fixed.
        seeds = tf.data.Dataset.random(seed=seed + 1, rerandomize_each_iteration=not fixed_noise)
        ds = tf.data.Dataset.zip((ds, seeds))

        def noisy(index: Any, batch_seed: Any) -> Any:
            clean = gather(index)
            pair = tf.stack([batch_seed, tf.constant(seed, tf.int64)])
            return corruption.apply_tf(clean, pair), clean

        ds = ds.map(noisy, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:

        def same(index: Any) -> Any:
            clean = gather(index)
            return clean, clean

        ds = ds.map(same, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def images_per_epoch(n: int, batch_size: int, replicas: int = 1) -> int:
    """How many of ``n`` images one epoch uses: all, less the last batch's remainder that does not
    split evenly over ``replicas``."""
    return n - (n % batch_size) % max(1, replicas)
