"""Variational autoencoders: the KL divergence from the prior, and the Keras layer that samples.

A variational design's encoder gives two maps of the code's shape, a mean and a log-variance
(``cae.shapes.variational_head``). :func:`sampling_layer_class` is the Keras layer between them
and the decoder: in training it decodes a sample ``mean + exp(log_var / 2) * eps`` with
``eps ~ N(0, 1)`` (the reparameterisation trick: the randomness is an input, so gradients flow to
the mean and the log-variance); outside training it passes the mean on, so reconstructions,
metrics and previews are deterministic. In both it adds ``weight * kl_loss`` to the model's loss
(``add_loss``) and tracks ``kl_loss`` as a metric, so Keras's logs and the run's history.json hold
it beside ``loss``.

``kl_loss`` is the KL divergence of one image's code distribution from N(0, 1), in nats, divided
by the number of values in an input image: the compiled reconstruction losses (bce, mse, mae) are
means over the image's values, so on this scale ``beta = 1`` with ``bce`` is the evidence lower
bound itself (per value). The layer is registered with Keras (``cae>VariationalSampling``), so a
``.keras`` file holding it loads with ``safe_mode`` on; it has no weights (the warm-up's current
weight lives outside Keras's weights), so its parameter count is 0 as in the shape table.

Importing this module registers the layer, so that a plain ``keras.saving.load_model`` reads a
variational run's ``.keras`` file after ``import cae.variational`` (``cae.load_model`` needs no
import). That is why this module imports Keras when it is imported; nothing in ``cae`` imports it
at the top of a module, only inside the functions that build or load models.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

SAMPLING_LAYER = "sampling"  # the layer's name inside a variational autoencoder
REGISTERED_NAME = "cae>VariationalSampling"  # the layer class's name in a .keras file


def kl_divergence(mean: Any, log_var: Any) -> Any:
    """KL(N(mean, exp(log_var)) || N(0, 1)) of each item of a batch, summed over every code
    value: ``-0.5 * sum(1 + log_var - mean**2 - exp(log_var))``, shape (N,) (Keras ops, so it
    runs inside a model; numpy arrays in, a backend tensor out)."""
    from keras import ops

    terms = 1.0 + log_var - ops.square(mean) - ops.exp(log_var)
    flat = ops.reshape(terms, (ops.shape(terms)[0], -1))
    return -0.5 * ops.sum(flat, axis=1)


class KLWeight:
    """The current KL weight of a sampling layer, a float32 variable the layer's graph reads.

    Kept out of Keras's tracking on purpose (a plain holder): it is a training schedule, not a
    weight, so it is not saved, not counted as a parameter and not part of ``get_weights``."""

    def __init__(self, value: float) -> None:
        """A variable holding ``value``."""
        import tensorflow as tf

        self.variable = tf.Variable(float(value), trainable=False, dtype=tf.float32)

    def assign(self, value: float) -> None:
        """Set the weight (e.g. at an epoch's start, during the warm-up)."""
        self.variable.assign(float(value))

    @property
    def value(self) -> float:
        """The weight now."""
        return float(self.variable.numpy())


@cache
def sampling_layer_class() -> type:
    """The registered Keras layer class ``VariationalSampling`` (defined on first use, so that
    importing this module stays light; calling this before loading a ``.keras`` file registers
    it)."""
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="cae")
    class VariationalSampling(keras.layers.Layer):
        """[mean, log_var] -> a sample in training, the mean otherwise; adds ``weight *
        kl_loss`` to the loss and tracks ``kl_loss`` (see the module's docstring)."""

        def __init__(
            self, beta: float = 1.0, values: int = 1, seed: int | None = None, **kwargs: Any
        ) -> None:
            super().__init__(**kwargs)
            if not np.isfinite(beta) or beta <= 0:
                raise ValueError(f"beta must be a number above 0. Received: beta={beta!r}")
            if int(values) < 1:
                raise ValueError(f"values must be at least 1. Received: values={values!r}")
            self.beta = float(beta)
            self.values = int(values)
            self.seed = seed
            self.seed_generator = keras.random.SeedGenerator(seed)
            self.kl_tracker = keras.metrics.Mean(name="kl_loss")
            self.kl_weight = KLWeight(self.beta)

        def call(self, inputs: Any, training: bool | None = None) -> Any:
            mean, log_var = inputs
            per_image = kl_divergence(mean, log_var) / self.values
            kl = ops.mean(per_image)
            self.add_loss(ops.cast(self.kl_weight.variable, kl.dtype) * kl)
            # per image, as Keras averages the loss: a short last batch weighs what it holds
            self.kl_tracker.update_state(per_image)
            if not training:
                return mean
            noise = keras.random.normal(ops.shape(mean), dtype=mean.dtype, seed=self.seed_generator)
            return mean + ops.exp(0.5 * log_var) * noise

        def compute_output_shape(self, input_shape: Any) -> Any:
            return input_shape[0]

        def get_config(self) -> dict[str, Any]:
            return {
                **super().get_config(),
                "beta": self.beta,
                "values": self.values,
                "seed": self.seed,
            }

    return VariationalSampling


VariationalSampling = sampling_layer_class()  # registered now: see the module's docstring
