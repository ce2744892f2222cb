"""The Train page's hyper-parameters: epochs, batch, optimizer, learning rate, loss, validation,
early stopping and the input corruption of a denoiser (with a preview of a few corrupted images),
each within ``cae.training.LIMITS``; the seed is asked beside the run's name."""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from cae.corruption import CORRUPTION_NAMES, CORRUPTIONS_BY_NAME, Corruption
from cae.naming import loss_title
from cae.plots import image_grid
from cae.training import LIMITS, LOSSES, OPTIMIZERS, TrainConfig

TARGET_IMAGES = 135_000  # images seen in a default run: ~30 epochs of the 4,500-digit sample
BATCH_SIZES = [8, 16, 32, 64, 128, 256, 512]


def limits(key: str) -> tuple[float, float]:
    """A training setting's (lowest, highest) value, from ``cae.training.LIMITS``."""
    return LIMITS[key]


def default_epochs(num_train: int) -> int:
    """Epochs that give a result worth looking at in about a minute on a small CPU."""
    return int(max(1, min(30, round(TARGET_IMAGES / max(num_train, 1)))))


def training_settings(
    last: TrainConfig, samples: np.ndarray | None, epochs_key: str, *, disabled: bool
) -> dict[str, Any]:
    """The Hyper-parameters section, starting from ``last``: the settings chosen as
    ``TrainConfig`` keywords (all but the seed). ``epochs_key`` follows the data, so that its
    default epochs follow it too."""
    st.subheader("Hyper-parameters")
    row = st.columns(4)
    epochs = row[0].number_input(
        "Epochs", *map(int, limits("epochs")), last.epochs, key=epochs_key, disabled=disabled
    )
    batch_size = row[1].select_slider(
        "Batch size",
        BATCH_SIZES,
        last.batch_size if last.batch_size in BATCH_SIZES else 64,
        key="train_batch",
        disabled=disabled,
    )
    optimizer = row[2].selectbox(
        "Optimizer",
        OPTIMIZERS,
        OPTIMIZERS.index(last.optimizer),
        key="train_optimizer",
        disabled=disabled,
    )
    learning_rate = row[3].number_input(
        "Learning rate",
        *limits("learning_rate"),
        float(last.learning_rate),
        format="%.4g",
        key="train_lr",
        disabled=disabled,
        step=1e-4,
    )
    row = st.columns(4)
    loss = row[0].selectbox(
        "Loss",
        LOSSES,
        LOSSES.index(last.loss),
        format_func=loss_title,
        key="train_loss",
        disabled=disabled,
    )
    validation_split = row[1].slider(
        "Validation split",
        *limits("validation_split"),
        float(last.validation_split),
        0.05,
        key="train_val",
        disabled=disabled,
    )
    patience = row[2].number_input(
        "Early stopping patience (0 = off)",
        *map(int, limits("patience")),
        int(last.patience or 0),
        key="train_patience",
        disabled=disabled or validation_split == 0,
        help="Stop when the validation loss has not improved for this many epochs, keeping the "
        "best epoch.",
    )
    corruption_options = ["none", *CORRUPTION_NAMES]
    corruption_kind = row[3].selectbox(
        "Input corruption (denoising)",
        corruption_options,
        corruption_options.index(last.corruption or "none"),
        format_func=lambda name: "none" if name == "none" else CORRUPTIONS_BY_NAME[name].title,
        key="train_corruption",
        disabled=disabled,
        help="Corrupt the inputs only: the network learns to output the clean image (a denoising "
        "autoencoder). Results then shows corrupted, denoised and clean images side by side.",
    )
    corruption = None
    if corruption_kind != "none":
        corruption = corruption_settings(corruption_kind, last, samples, disabled=disabled)
    return {
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "optimizer": optimizer,
        "learning_rate": float(learning_rate),
        "loss": loss,
        "validation_split": float(validation_split),
        "patience": int(patience) if patience and validation_split > 0 else None,
        **(corruption.to_dict() if corruption is not None else {}),
    }


def corruption_settings(
    kind: str, last: TrainConfig, samples: np.ndarray | None, *, disabled: bool
) -> Corruption:
    """The strength slider of one corruption kind (its range from ``cae.corruption``) and a
    preview of a few images corrupted so; the corruption chosen."""
    info = CORRUPTIONS_BY_NAME[kind]
    left, right = st.columns([1, 2])
    strength = left.slider(
        f"Strength: {info.strength_label}",
        info.low,
        info.high,
        float(last.strength) if last.corruption == kind else info.default,
        info.step,
        key=f"train_strength_{kind}",
        disabled=disabled,
        help=info.help,
    )
    corruption = Corruption(kind, float(strength))
    if samples is not None and len(samples):
        channel = None if samples.shape[-1] in (1, 3) else 0
        grid = image_grid(
            [samples, corruption.apply(samples)], ["clean", "corrupted"], channel=channel
        )
        with right:
            with st.container(key="train_corruption_preview"):
                st.html(grid)
            st.caption(
                f"What the network sees: {corruption.describe()} (new random corruption for "
                "every batch; the targets stay clean)."
            )
    return corruption


def seed_field(container: Any, last: TrainConfig, *, disabled: bool) -> int:
    """The seed, in ``container`` (beside the run's name)."""
    return int(
        container.number_input(
            "Seed",
            *map(int, limits("seed")),
            int(last.seed),
            key="train_seed",
            disabled=disabled,
            help="One seed for the train/test split, the initial weights, the shuffling and the "
            "input corruption during training.",
        )
    )
