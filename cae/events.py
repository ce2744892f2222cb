"""TensorBoard event files of a training: per-epoch scalars and the reconstruction strip.

Every run folder holds one event file (:data:`EVENTS_FILE`), written with ``tf.summary`` (it ships
with TensorFlow; no other dependency), so ``tensorboard --logdir models`` shows every run (``pip install tensorboard``
first). What it holds, by tag, with the epoch as the step:

- every series of the run's history: ``loss``, ``val_loss`` (and a variational design's terms);
- ``sample/<metric>``: each metric of ``cae.metrics.METRICS`` on the first
  :data:`SAMPLE_IMAGES` test images after each epoch (a cheap running view of the test score);
- ``test/<metric>``: the run's test metrics on its whole test split, at the epoch it kept;
- ``reconstructions``: the first :data:`STRIP_IMAGES` test images over their reconstructions, at
  each epoch (at most about :data:`MAX_STRIPS` of them on long runs) and at the epoch kept.

They are written with ``tf.summary.write`` and the metadata of TensorBoard's scalar and image
plugins (``tf.summary.scalar`` and ``tf.summary.image`` need the tensorboard package itself), so
TensorBoard reads them as its own scalars and images. A training writes them into a private temporary folder while it runs (with real wall times) and
hands the file over as bytes; ``cae.store.save_run`` writes it into the run folder with the other
files, so staged and published runs carry it. Only the chief writes in a multi-worker training.
Writing is best effort: a problem here never ends a training.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cae import metrics as image_metrics
from cae.pixels import as_float

EVENTS_FILE = "events.out.tfevents.cae.v2"  # TensorBoard reads any file name holding "tfevents"
SAMPLE_IMAGES = 64  # test images scored after each epoch: one traced model call, ~12 ms here
STRIP_IMAGES = 6  # test images in the reconstruction strip
SAMPLE_BYTES = 16 * 2**20  # fewer sample images when 64 take more as float32 (512x512 RGB: 6)
MAX_STRIPS = 100  # strips kept on a long run (TensorBoard shows one step at a time anyway)
STRIP_TAG = "reconstructions"


# tf.summary.scalar and tf.summary.image live in the tensorboard package, which TensorFlow does
# not install; tf.summary.write (in TensorFlow) with the plugins' metadata writes the same records.
SCALARS = "scalars"  # TensorBoard's scalar plugin: a float32 scalar per step
IMAGES = "images"  # its image plugin: [width, height, png, ...] as strings


def _metadata(plugin: str) -> bytes:
    """The SummaryMetadata TensorBoard's plugin writes (version 0 plugin data is empty)."""
    from tensorflow.core.framework import summary_pb2

    data_class = (
        summary_pb2.DATA_CLASS_SCALAR if plugin == SCALARS else summary_pb2.DATA_CLASS_BLOB_SEQUENCE
    )
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin),
        data_class=data_class,
    ).SerializeToString()


def _image_tensor(image: np.ndarray) -> Any:
    """One (H, W, C) image in [0, 1] as the image plugin's string tensor: width, height, PNG."""
    import tensorflow as tf

    pixels = np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    png = tf.io.encode_png(pixels)
    height, width = pixels.shape[:2]
    return tf.stack([tf.constant(str(width)), tf.constant(str(height)), png])


def strip_image(originals: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    """One (2H, N*W, C) image: the originals in a row over their reconstructions, clipped to
    [0, 1]; images of other than 1, 3 or 4 channels show their first channel."""
    top = np.concatenate(list(originals), axis=1)
    bottom = np.concatenate(list(np.clip(reconstructions, 0.0, 1.0)), axis=1)
    strip = np.concatenate([top, bottom], axis=0).astype(np.float32)
    return strip if strip.shape[-1] in (1, 3, 4) else strip[..., :1]


def strip_epochs(epochs: int) -> int:
    """Write a strip every this many epochs (1 up to :data:`MAX_STRIPS` epochs)."""
    return max(1, math.ceil(epochs / MAX_STRIPS))


class EventLog:
    """The event file of one training, written as it goes; :meth:`finish` returns its bytes."""

    def __init__(
        self,
        images: np.ndarray,
        reconstruct: Callable[[np.ndarray], np.ndarray],
        *,
        epochs: int,
    ) -> None:
        """``images``: the test images to score and show each epoch, as held (uint8 or float32;
        the first :data:`SAMPLE_IMAGES` are used, fewer past :data:`SAMPLE_BYTES`);
        ``reconstruct``: images -> the model's outputs."""
        import tensorflow as tf

        per_image = 4 * int(np.prod(np.shape(images)[1:], dtype=np.int64))  # as float32
        count = max(STRIP_IMAGES, min(SAMPLE_IMAGES, SAMPLE_BYTES // max(1, per_image)))
        self.images = np.array(as_float(images[:count]), dtype=np.float32)
        self.reconstruct = reconstruct
        self.every = strip_epochs(epochs)
        self.folder = Path(tempfile.mkdtemp(prefix="cae-events-"))
        self.strips: set[int] = set()
        self.broken = False
        try:
            self.writer = tf.summary.create_file_writer(str(self.folder))
        except Exception:  # noqa: BLE001 - events are best effort
            self.broken = True

    def _write(self, step: int, scalars: dict[str, float], strip: np.ndarray | None) -> None:
        import tensorflow as tf

        with self.writer.as_default(step=step):
            for tag, value in scalars.items():
                if value is not None and math.isfinite(value):
                    tensor = tf.constant(value, tf.float32)
                    tf.summary.write(tag, tensor, metadata=_metadata(SCALARS))
            if strip is not None and step not in self.strips:
                tf.summary.write(STRIP_TAG, _image_tensor(strip), metadata=_metadata(IMAGES))
                self.strips.add(step)

    def _sample(
        self, step: int, prefix: str | None, strip: bool
    ) -> tuple[dict[str, float], np.ndarray | None]:
        """The sample's metrics as ``<prefix>/<key>`` (none without a prefix) and its strip (when
        ``strip`` and not written yet at this step), from one model call."""
        strip = strip and step not in self.strips
        if not len(self.images) or (prefix is None and not strip):
            return {}, None
        recon = np.clip(self.reconstruct(self.images), 0.0, 1.0)
        scalars: dict[str, float] = {}
        if prefix is not None:
            scores = image_metrics.summarize(self.images, recon)
            scalars = {f"{prefix}/{key}": value for key, value in scores.items()}
        shown = self.images[:STRIP_IMAGES]
        return scalars, strip_image(shown, recon[:STRIP_IMAGES]) if strip else None

    def epoch(self, step: int, history: dict[str, list[float]]) -> None:
        """After epoch ``step`` (1-based): the last value of each history series, the sample's
        metrics and, every :func:`strip_epochs` epochs, the strip (one model call in all)."""
        if self.broken:
            return
        try:
            scalars = {key: values[-1] for key, values in history.items() if values}
            sample, strip = self._sample(step, "sample", step == 1 or step % self.every == 0)
            self._write(step, {**scalars, **sample}, strip)
        except Exception:  # noqa: BLE001 - events must never end a training
            self.broken = True

    def kept(self, step: int, test_metrics: dict[str, float]) -> None:
        """The run's test metrics (and the strip) at the epoch whose weights it kept."""
        if self.broken or step < 1:
            return
        try:
            scalars = {
                f"test/{key}": value
                for key, value in test_metrics.items()
                if key in image_metrics.METRICS_BY_KEY
            }
            self._write(step, scalars, self._sample(step, None, True)[1])
        except Exception:  # noqa: BLE001
            self.broken = True

    def finish(self) -> bytes | None:
        """Close the file and return its bytes (None when nothing could be written); the
        temporary folder is removed."""
        try:
            if not self.broken:
                self.writer.close()
                found = sorted(self.folder.glob("*tfevents*"))
                if len(found) == 1:
                    return found[0].read_bytes()
            return None
        except Exception:  # noqa: BLE001
            return None
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
