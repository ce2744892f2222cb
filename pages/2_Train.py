"""Train: dataset and hyper-parameters, background training with live progress, stop and save."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from cae.budget import check_memory
from cae.corruption import CORRUPTION_NAMES, CORRUPTIONS_BY_NAME, Corruption
from cae.data import DatasetSummary
from cae.datasets import DATASETS, dataset_status, sample_images
from cae.jobs import JOBS, JobBusy, TrainingJob, UnsavedEpochs
from cae.plots import image_grid, loss_curves
from cae.recipe import DataRecipe
from cae.request import MAX_RUN_NAME, TrainRequest
from cae.shapes import compute_shapes
from cae.spec import PRESETS, ArchitectureSpec, preset
from cae.store import save_upload
from cae.text import clean_name, fmt_seconds, plain_markdown
from cae.training import LIMITS, LOSSES, OPTIMIZERS, TrainConfig, check_enough_images
from cae.uploads import NpzArray, npz_arrays, npz_image_key, npz_sources, upload_summary
from ui.channels import channel_picker
from ui.run_index import all_runs
from ui.state import (
    DATASET_KEY,
    RUN_KEY,
    UPLOAD_NAME_KEY,
    EarlierUpload,
    active_data,
    active_spec,
    controls_job,
    earlier_upload,
    owner_id,
    page_frame,
    refresh_sidebar,
    remember,
    set_active_data,
    set_active_spec,
    take_control,
)
from ui.unsaved import unsaved_runs

page_frame("Train")
JOBS.prewarm()  # a training process with TensorFlow loaded waits for the Train click

UPLOAD = "upload"
NAME_DEFAULTS_KEY = "train_name_defaults"  # list[str]: the default run names this tab suggested


def default_run_name(
    spec: ArchitectureSpec | None,
    dataset: str,
    upload_file: Any,
    taken: set[str],
    array: str | None = None,
) -> str:
    """``<design>-<data>-<n>``: the design's name (``-edited`` once it differs from the preset
    of that name), the dataset or the uploaded file's name without its extension (and the
    chosen array of an .npz), and the first counter that no run has taken, e.g.
    ``classic-edited-fashion-mnist-2``."""
    design = spec.name if spec is not None else "run"
    if spec is not None and spec.name in PRESETS and spec != preset(spec.name):
        design = f"{design}-edited"
    data = dataset
    if dataset == UPLOAD:
        data = Path(clean_name(upload_file.name)).stem if upload_file is not None else "upload"
        data = f"{data}-{array}" if array is not None else data
    base = clean_name(f"{design}-{data}")[: MAX_RUN_NAME - 6] or "run"
    n = 1
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


TAKEOVER_ASK = "train_takeover_ask"  # the job id whose take-over this tab is asked to confirm
DISCARD_ASK = "train_discard_ask"  # the job id whose unsaved epochs a new training would discard
SEEN_CONTROL = "train_seen_control"  # (job id, in control) at the last full run of the page
FIGURES_DRAWN = "train_figures_drawn"  # (job id, epoch, monotonic time) of the figures shown
# The live view's fragment redraws the bar every half second; the curves and the preview sit
# outside it, redrawn by a run of the page when an epoch has ended, at most this often: a browser
# redraws a chart it is sent again even when nothing in it changed, and with both charts in the
# fragment Chromium used 0.63 of a core while a job ran, 0.33 now (bench/live_view.py).
FIGURES_EVERY_S = 2.0
TARGET_IMAGES = 135_000  # images seen in a default run: ~30 epochs of the 4,500-digit sample
DEFAULT_TRAIN_LIMIT = 10_000  # large datasets train on this many images by default (~1 minute)
LOSS_TITLES = {
    "bce": "binary cross-entropy",
    "mse": "mean squared error",
    "mae": "mean absolute error",
}


@st.cache_data(show_spinner="Reading your upload…", max_entries=2)
def cached_upload(
    _data: bytes, filename: str, digest: str, array: str | None = None
) -> DatasetSummary:
    """An uploaded dataset's summary, parsed once per file content (``digest``; the bytes are not
    hashed again) and array, to check it and show its size and a few images; the training process
    reads the file itself, from the recipe. Only the summary is kept: the images and their memory
    are let go at once."""
    return upload_summary(_data, filename, samples=PREVIEW_SAMPLES, array=array)


@st.cache_data(max_entries=4)
def cached_npz_arrays(data: bytes, filename: str, digest: str) -> tuple[NpzArray, ...]:
    """The arrays of an uploaded .npz, from their headers only."""
    return npz_arrays(data, filename)


def npz_arrays_used(
    content: bytes, filename: str, digest: str, chosen: str | None, dataset: DatasetSummary
) -> str:
    """For an .npz of several arrays, ``; images from 'x' (...), labels from 'y'``; else nothing."""
    if not filename.lower().endswith(".npz"):
        return ""
    arrays = cached_npz_arrays(content, filename, digest)
    used = npz_sources(arrays, chosen, dataset.labelled)
    return f"; {plain_markdown(used)}" if used else ""


def npz_array_choice(
    content: bytes, filename: str, digest: str, chosen: str | None = None
) -> str | None:
    """For an .npz holding several arrays that could be images: a choice of which (``chosen``,
    else the default rule's pick, first), said on the page; None for any other file (nothing to
    choose)."""
    if not filename.lower().endswith(".npz"):
        return None
    try:
        arrays = cached_npz_arrays(content, filename, digest)
    except ValueError:
        return None  # the upload's own error is shown below, once
    images = {a.key: a for a in arrays if a.is_images}
    if len(images) < 2:
        return None
    default = npz_image_key([a.key for a in arrays])
    first = chosen if chosen in images else default
    keys = sorted(images, key=lambda key: key != first)  # the default (or earlier choice) first
    return st.selectbox(
        f"Images array ({len(arrays)} arrays in the file)",
        keys,
        format_func=lambda key: images[key].describe(),
        key=f"train_npz_array_{digest[:12]}",
        disabled=running,
        help="An .npz can hold several arrays; the run trains on the one chosen here (with its "
        "labels, y_<name> or y/labels, when they count the same images).",
    )


def limits(key: str) -> tuple[float, float]:
    """A training setting's (lowest, highest) value, from ``cae.training.LIMITS``."""
    return LIMITS[key]


PREVIEW_SAMPLES = 6  # images in the corruption preview
PREVIEW_HEIGHT = 230  # pixels: a small strip, two rows of images


@st.cache_data(show_spinner=False, max_entries=4)
def builtin_samples(name: str) -> np.ndarray:
    """A few images of a built-in dataset, float32 in [0, 1], for the corruption preview."""
    return sample_images(name, PREVIEW_SAMPLES)


def preview_samples(choice: str, dataset: DatasetSummary | None) -> np.ndarray | None:
    """A few images of the chosen data for the corruption preview, or None when there are none."""
    if dataset is not None:
        return sample_images(dataset, PREVIEW_SAMPLES)
    if choice == UPLOAD or not dataset_status(choice).available:
        return None
    try:
        return builtin_samples(choice)
    except ValueError:
        return None


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
        figure = image_grid(
            [samples, corruption.apply(samples)], ["clean", "corrupted"], channel=channel
        )
        figure.update_layout(height=PREVIEW_HEIGHT)
        with right:
            st.plotly_chart(figure, key="train_corruption_preview")
            st.caption(
                f"What the network sees: {corruption.describe()} (new random corruption for "
                "every batch; the targets stay clean)."
            )
    return corruption


def default_epochs(num_train: int) -> int:
    """Epochs that give a result worth looking at in about a minute on a small CPU."""
    return int(max(1, min(30, round(TARGET_IMAGES / max(num_train, 1)))))


def dataset_label(name: str) -> str:
    """A dataset option with its availability."""
    if name == UPLOAD:
        return "Your own images (upload)"
    status = dataset_status(name)
    info = DATASETS[name]
    if status.available:
        return f"{info.title} — {status.num_train:,} train / {status.num_test:,} test"
    return f"{info.title} — not available here"


def stop_job(job: TrainingJob) -> None:
    """The Stop button: stops the job only if this tab still controls it."""
    if controls_job(owner_id(), job.job_id):
        job.stop()


def take_over(job: TrainingJob) -> None:
    """For a tab that watches a job another tab controls: a button, then a confirmation that says
    what taking over does, then this tab controls the job (stop, save, discard)."""
    asked = st.session_state.get(TAKEOVER_ASK) == job.job_id
    if not asked and st.button(
        "Take over this training", key="train_takeover", icon=":material/swap_horiz:"
    ):
        st.session_state[TAKEOVER_ASK] = job.job_id
        asked = True
    if not asked:
        return
    st.warning(
        "Take over this training? This tab gets its controls (stop, save, discard) and the "
        "other tab can then only watch it. The training itself goes on as it is.",
        icon=":material/swap_horiz:",
    )
    yes, no = st.columns(2)
    if yes.button("Yes, take it over", key="train_takeover_confirm", type="primary"):
        take_control(owner_id(), job.job_id)
        st.session_state.pop(TAKEOVER_ASK, None)
        st.rerun()  # the whole page: the form below follows the new control
    if no.button("Cancel", key="train_takeover_cancel"):
        st.session_state.pop(TAKEOVER_ASK, None)
        st.rerun()


def show_progress(job: TrainingJob) -> None:
    """The live view of one job: bar, numbers, stop/save (its figures: show_figures). A tab that
    does not control the job (another tab with the same link does) sees it read-only, with a
    take-over button."""
    progress = job.snapshot()
    state = progress.state
    kept = job.kept  # staged and waiting for a save: never "kept" otherwise
    mine = controls_job(owner_id(), job.job_id)
    if not mine:
        st.info(
            "You are watching this training: another tab or browser with this link controls "
            "it, and only that tab can stop, save or discard it.",
            icon=":material/visibility:",
        )
        take_over(job)
    if state == "starting":
        st.progress(0.0, text="Starting…")
    elif state == "stopping":
        st.progress(progress.fraction, text="Stopping after this batch…")
    elif state == "running" and progress.epoch >= progress.epochs:
        st.progress(
            1.0, text=f"All {progress.epochs} epochs done · {progress.message or 'finishing'}"
        )
    elif state == "running":
        st.progress(
            progress.fraction,
            text=(
                f"Epoch {min(progress.epoch + 1, progress.epochs)}/{progress.epochs} · "
                f"batch {progress.batch}/{progress.batches_per_epoch or '?'}"
            ),
        )
    elif state == "finished":
        st.progress(1.0, text=f"Finished {progress.epoch} epoch(s)")
    else:  # stopped or failed: the bar shows the completed epochs, the ones that are kept
        done = progress.epoch / progress.epochs if progress.epochs else 0.0
        st.progress(min(1.0, done), text=f"{state.capitalize()} after {progress.epoch} epoch(s)")

    numbers = st.columns(4)
    numbers[0].metric("loss", "–" if progress.loss is None else f"{progress.loss:.4f}")
    numbers[1].metric(
        "validation loss", "–" if progress.val_loss is None else f"{progress.val_loss:.4f}"
    )
    numbers[2].metric(
        "images/s",
        "–" if progress.images_per_second is None else f"{progress.images_per_second:,.0f}",
    )
    numbers[3].metric(
        "ETA" if progress.active else "time",
        fmt_seconds(progress.eta_seconds if progress.active else progress.elapsed_seconds),
    )
    # an ended job without a kept model says why in an alert below; the caption would repeat it
    if progress.message and (progress.active or state == "finished" or kept or job.run_id):
        st.caption(plain_markdown(progress.message))

    if progress.active:
        if mine:
            st.button(
                "Stop training",
                key="train_stop",
                on_click=stop_job,
                args=(job,),
                type="secondary",
                disabled=job.stop_requested,
                icon=":material/stop_circle:",
            )
        return
    if job.run_id:  # saved at the end, or by the user from a stopped job
        if st.session_state.get("train_activated_run") != job.run_id:  # once: the user may pick
            st.session_state["train_activated_run"] = job.run_id  # another run on Results later
            remember(RUN_KEY, job.run_id)
        active = "; it is the active run" if st.session_state.get(RUN_KEY) == job.run_id else ""
        st.success(f"Saved as **{job.run_id}**{active}.", icon=":material/check_circle:")
        st.page_link("pages/3_Results.py", label="See the results", icon=":material/insights:")
    elif kept and not mine:
        st.info(
            f"Training {state} with {job.result.epochs_completed} completed epoch(s) kept; the "
            "tab that controls it can save them.",
            icon=":material/info:",
        )
    elif kept:
        st.info(
            f"Training {state} with {job.result.epochs_completed} completed epoch(s) kept. "
            "Save them as a run, or start again (you will be asked before they are discarded).",
            icon=":material/info:",
        )
        name = st.text_input(
            "Save the kept epochs as", job.name, key="train_save_name", max_chars=80
        )
        if st.button("Save this run", key="train_save", icon=":material/save:"):
            try:
                if not controls_job(owner_id(), job.job_id):
                    raise RuntimeError("another tab has taken this training over")
                run_id = job.save(clean_name(name))
            except (ValueError, RuntimeError, OSError) as error:
                st.error(f"Could not save: {plain_markdown(str(error))}", icon=":material/error:")
            else:
                remember(RUN_KEY, run_id)
                st.rerun()
    elif job.error or state == "failed":
        st.error(
            plain_markdown(progress.message or f"Training failed: {job.error}"),
            icon=":material/error:",
        )
    else:
        st.warning(
            plain_markdown(progress.message)
            if progress.message
            else "Training stopped before the first epoch ended: there is nothing to save.",
            icon=":material/info:",
        )
    if job.save_error:
        st.error(f"Saving failed: {plain_markdown(job.save_error)}", icon=":material/error:")


def show_figures(job: TrainingJob) -> None:
    """The job's loss curves and reconstruction preview, drawn by a run of the whole page."""
    progress = job.snapshot()
    st.session_state[FIGURES_DRAWN] = (job.job_id, progress.epoch, time.monotonic())
    left, right = st.columns([3, 2])
    with left:
        if progress.history.get("loss"):
            st.plotly_chart(
                loss_curves({job.name: progress.history}), key=f"train_curves_{job.job_id}"
            )
            variational = job.request.spec.variational
            if variational is not None and "kl_loss" in progress.history:
                warmup = variational.warmup_epochs
                st.caption(
                    f"loss = reconstruction + weight x KL, the weight beta = {variational.beta:g}"
                    + (
                        f", rising from 0 over the first {warmup} epoch{'s' if warmup != 1 else ''}"
                        " (KL warm-up)"
                        if warmup
                        else ""
                    )
                    + "; the KL curve is the term before its weight."
                )
        elif progress.active:
            st.caption("Loss curves appear after the first epoch.")
    with right:
        if progress.preview_originals is not None and progress.preview_reconstructions is not None:
            rows = [progress.preview_originals, progress.preview_reconstructions]
            titles = ["original", "output"]
            if progress.preview_inputs is not None:
                rows.insert(1, progress.preview_inputs)
                titles.insert(1, "corrupted input")
            channels = int(progress.preview_originals.shape[-1])
            channel = channel_picker(st, channels, "train_channel", width=200)
            st.plotly_chart(
                image_grid(rows, titles, channel=channel), key=f"train_preview_{job.job_id}"
            )
            st.caption(f"Test images after epoch {progress.epoch}.")


def figures_behind(job: TrainingJob) -> bool:
    """Whether an epoch has ended since the figures were drawn, FIGURES_EVERY_S or longer ago."""
    drawn = st.session_state.get(FIGURES_DRAWN)
    if drawn is None or drawn[0] != job.job_id:
        return True
    return job.snapshot().epoch != drawn[1] and time.monotonic() - drawn[2] >= FIGURES_EVERY_S


def live_progress(*, in_fragment: bool = False) -> None:
    """The job's view; while it runs, a fragment redraws it every half second on its own and
    has the page run again for new figures (show_figures)."""
    job = JOBS.get(owner_id())
    if job is None:
        return
    show_progress(job)
    if in_fragment and figures_behind(job):
        st.rerun()
    if job.done and st.session_state.get("train_seen_done") != job.job_id:
        st.session_state["train_seen_done"] = job.job_id
        st.rerun()  # once, so the form below comes back
    control = (job.job_id, controls_job(owner_id(), job.job_id))
    if st.session_state.get(SEEN_CONTROL) != control:
        st.rerun()  # another tab took over (or left): the form below follows


# ---------------------------------------------------------------- page

st.title("Train")
job = JOBS.get(owner_id())
running = job is not None and not job.done
in_control = job is None or controls_job(owner_id(), job.job_id)
st.session_state[SEEN_CONTROL] = (job.job_id, in_control) if job is not None else None
unsaved = job.unsaved_epochs if job is not None else 0

spec = active_spec()
report = None
problem = None
if spec is None:
    problem = "The design on the Architecture page is not valid yet."
else:
    try:
        report = compute_shapes(spec)
    except ValueError as error:
        problem = str(error)
    else:
        if not report.matches:
            problem = report.problem

design, data_column = st.columns(2, gap="large")
with design:
    st.subheader("Design")
    if report is not None:
        st.markdown(
            f"**{plain_markdown(spec.name)}** · input {'x'.join(map(str, report.input_shape))} · "
            "code "
            f"{'x'.join(map(str, report.latent_shape))} · {report.total_params:,} parameters"
            + (f" · {spec.variational.describe()}" if spec.variational is not None else "")
        )
    if problem:
        st.error(problem, icon=":material/block:")
        st.page_link(
            "pages/1_Architecture.py",
            label="Fix it on the Architecture page",
            icon=":material/build:",
        )

with data_column:
    st.subheader("Data")
    names = [*DATASETS, UPLOAD]
    current = st.session_state.get(DATASET_KEY, "mnist-sample")
    choice = st.selectbox(
        "Dataset",
        names,
        index=names.index(current) if current in names else 0,
        format_func=dataset_label,
        key="train_dataset",
        disabled=running,
    )
    remember(DATASET_KEY, choice)
    refresh_sidebar()  # drawn before this choice: it would name the previous dataset
    dataset: DatasetSummary | None = None
    limit = None
    npz_array: str | None = None  # the images' array of an uploaded .npz, when there is a choice
    if choice == UPLOAD:
        upload = st.file_uploader(
            "Images as .npz / .npy (N,H,W) or (N,H,W,C) with up to 64 channels, or a .zip of "
            "PNG/JPEG files",
            type=["npz", "npy", "zip"],
            key="train_upload",
            disabled=running,
        )
        if upload is None:  # the picker empties on a page switch: the file chosen before stays
            upload = earlier_upload()
            if upload is not None:
                st.caption(
                    f":material/history: Using **{plain_markdown(upload.name)}**, uploaded "
                    "earlier. Choose a file above to use another."
                )
        if upload is not None:
            content = upload.getvalue()
            if isinstance(upload, EarlierUpload):
                digest = upload.digest  # hashed when it was saved
            else:
                digest = hashlib.sha256(content).hexdigest()
            earlier_array = upload.array if isinstance(upload, EarlierUpload) else None
            npz_array = npz_array_choice(content, upload.name, digest, earlier_array)
            try:
                dataset = cached_upload(content, upload.name, digest, npz_array)
            except ValueError as error:
                st.error(
                    plain_markdown(f"{upload.name} cannot be used: {error}"),
                    icon=":material/error:",
                )
            else:
                st.caption(
                    f"{plain_markdown(upload.name)}: {dataset.num_train:,} train / "
                    f"{dataset.num_test:,} test images of "
                    f"{'x'.join(map(str, dataset.image_shape))}"
                    + npz_arrays_used(content, upload.name, digest, npz_array, dataset)
                )
    else:
        status = dataset_status(choice)
        st.caption(DATASETS[choice].description)
        if not status.available:
            st.warning(status.reason, icon=":material/cloud_off:")
        else:
            if status.num_train and status.num_train > DEFAULT_TRAIN_LIMIT:
                sizes = [1_000, 2_000, 5_000, 10_000, 20_000, 30_000, status.num_train]
                last_limit = job.request.data.limit if job is not None else None
                limit = int(
                    st.select_slider(
                        "Training images",
                        options=sizes,
                        value=last_limit if last_limit in sizes else DEFAULT_TRAIN_LIMIT,
                        format_func=lambda n: f"{n:,}",
                        key="train_limit",
                        disabled=running,
                        help="Fewer images train faster; the test set is capped the same way.",
                    )
                )

num_train_estimate = (
    dataset.num_train
    if dataset is not None
    else (limit or (dataset_status(choice).num_train if choice != UPLOAD else 0) or 0)
)

st.subheader("Hyper-parameters")
# The form starts from this tab's last job, if any: after a reload (a new session) it shows the
# settings of the job it finds, not the defaults.
last = job.config if job is not None else TrainConfig(epochs=default_epochs(num_train_estimate))
batch_sizes = [8, 16, 32, 64, 128, 256, 512]
row = st.columns(4)
epochs = row[0].number_input(
    "Epochs",
    *map(int, limits("epochs")),
    last.epochs,
    key=f"train_epochs_{choice}_{limit}",
    disabled=running,
)
batch_size = row[1].select_slider(
    "Batch size",
    batch_sizes,
    last.batch_size if last.batch_size in batch_sizes else 64,
    key="train_batch",
    disabled=running,
)
optimizer = row[2].selectbox(
    "Optimizer",
    OPTIMIZERS,
    OPTIMIZERS.index(last.optimizer),
    key="train_optimizer",
    disabled=running,
)
learning_rate = row[3].number_input(
    "Learning rate",
    *limits("learning_rate"),
    float(last.learning_rate),
    format="%.4g",
    key="train_lr",
    disabled=running,
    step=1e-4,
)
row = st.columns(4)
loss = row[0].selectbox(
    "Loss",
    LOSSES,
    LOSSES.index(last.loss),
    format_func=lambda name: LOSS_TITLES[name],
    key="train_loss",
    disabled=running,
)
validation_split = row[1].slider(
    "Validation split",
    *limits("validation_split"),
    float(last.validation_split),
    0.05,
    key="train_val",
    disabled=running,
)
patience = row[2].number_input(
    "Early stopping patience (0 = off)",
    *map(int, limits("patience")),
    int(last.patience or 0),
    key="train_patience",
    disabled=running or validation_split == 0,
    help="Stop when the validation loss has not improved for this many epochs, keeping the best "
    "epoch.",
)
corruption_options = ["none", *CORRUPTION_NAMES]
corruption_kind = row[3].selectbox(
    "Input corruption (denoising)",
    corruption_options,
    corruption_options.index(last.corruption or "none"),
    format_func=lambda name: "none" if name == "none" else CORRUPTIONS_BY_NAME[name].title,
    key="train_corruption",
    disabled=running,
    help="Corrupt the inputs only: the network learns to output the clean image (a denoising "
    "autoencoder). Results then shows corrupted, denoised and clean images side by side.",
)
corruption = None
if corruption_kind != "none":
    corruption = corruption_settings(
        corruption_kind, last, preview_samples(choice, dataset), disabled=running
    )
row = st.columns([2, 1, 1])
upload_file = upload if choice == UPLOAD else None
if upload_file is not None:
    st.session_state[UPLOAD_NAME_KEY] = clean_name(upload_file.name)  # Home names the file
taken_names = {run.name for run in all_runs()} | ({job.name} if job is not None else set())
default_name = default_run_name(
    spec, choice, upload_file, taken_names, npz_array if upload_file is not None else None
)
# The field follows the default (design, data, counter) until the user types a name of their
# own: a keyed text_input ignores a new default value, so it kept "tiny-upload" after the data
# changed, and the same name for every click of Train (issue 13). Any name this tab suggested
# counts, not only the last: a run cut short by the next one (a new upload reruns the page
# twice) left the field one default behind, and a run was saved under the file before.
shown_name = st.session_state.get("train_name")
suggested = list(st.session_state.get(NAME_DEFAULTS_KEY, []))
if running and job is not None:
    st.session_state["train_name"] = job.name
elif shown_name is None or shown_name in (*suggested, job.name if job is not None else None):
    st.session_state["train_name"] = default_name
kept = [name for name in suggested if name != default_name][-49:]
st.session_state[NAME_DEFAULTS_KEY] = [*kept, default_name]
run_name = row[0].text_input(
    "Run name",
    max_chars=MAX_RUN_NAME,
    key="train_name",
    disabled=running,
)
if not running and (clean_name(run_name) or default_name) in taken_names:
    row[0].warning(
        f"A run named **{plain_markdown(clean_name(run_name) or default_name)}** already "
        "exists: this one would be a second run of that name. Pick another name.",
        icon=":material/content_copy:",
    )
seed = row[1].number_input(
    "Seed",
    *map(int, limits("seed")),
    int(last.seed),
    key="train_seed",
    disabled=running,
    help="One seed for the train/test split, the initial weights, the shuffling and the input "
    "corruption during training.",
)

config = TrainConfig(
    epochs=int(epochs),
    batch_size=int(batch_size),
    optimizer=optimizer,
    learning_rate=float(learning_rate),
    loss=loss,
    validation_split=float(validation_split),
    patience=int(patience) if patience and validation_split > 0 else None,
    seed=int(seed),
    **(corruption.to_dict() if corruption is not None else {}),
)

shape_problem = None
if dataset is None and choice != UPLOAD and dataset_status(choice).available:
    image_shape = dataset_status(choice).image_shape
else:
    image_shape = dataset.image_shape if dataset is not None else None
if spec is not None and image_shape is not None and tuple(image_shape) != tuple(spec.input_shape):
    shape_problem = (
        f"The images are {'x'.join(map(str, image_shape))} but the design expects "
        f"{'x'.join(map(str, spec.input_shape))}."
    )
    st.warning(shape_problem, icon=":material/aspect_ratio:")
    adapted = dataclasses.replace(spec, input_shape=tuple(image_shape))
    try:
        adapted_report = compute_shapes(adapted)
    except ValueError:
        adapted_report = None
    label = "Use the images' shape as the design's input"
    fits = adapted_report is not None and adapted_report.matches
    if adapted_report is not None and not fits and adapted_report.fixes:
        # another channel count: the design's first checked fix comes with it (an RGB upload
        # on a grey design got only a link, and the fix had to be found by hand)
        fix = adapted_report.fixes[0]
        adapted, label, fits = fix.spec, f"{label} and {fix.description}", True
    if fits and st.button(label, key="train_adapt_input"):
        set_active_spec(adapted)
        st.rerun()
    elif not fits:
        st.page_link(
            "pages/1_Architecture.py",
            label="Adapt the design on the Architecture page",
            icon=":material/build:",
        )

memory_problem = None
if report is not None and report.matches:
    try:
        check_memory(report, config.batch_size)
    except ValueError as error:
        memory_problem = str(error)
        st.error(plain_markdown(memory_problem), icon=":material/memory:")

size_problem = None
if dataset is not None:  # an upload: too few images is said before the click, with the minimum
    try:
        check_enough_images(dataset.num_train, config.validation_split)
    except ValueError as error:
        size_problem = str(error)
        st.error(plain_markdown(size_problem), icon=":material/photo_library:")

ready = (
    problem is None
    and shape_problem is None
    and memory_problem is None
    and size_problem is None
    and not running
)
ready = ready and (in_control or not unsaved)  # another tab's unsaved epochs are not ours to drop
if choice == UPLOAD:
    ready = ready and dataset is not None
else:
    ready = ready and dataset_status(choice).available
start = row[2].button(
    "Train",
    key="train_start",
    type="primary",
    disabled=not ready,
    icon=":material/play_arrow:",
    width="stretch",
)


def data_recipe() -> DataRecipe:
    """The recipe of the chosen data: a built-in dataset, or the upload written once to disk."""
    if choice != UPLOAD:
        return DataRecipe(dataset=choice, limit=limit, seed=int(seed))
    if isinstance(upload, EarlierUpload):  # already saved, by content
        shown = clean_name(upload.name) or Path(upload.path).name
        return DataRecipe.for_file(upload.path, name=shown, seed=int(seed), array=npz_array)
    content = upload.getvalue()
    path = save_upload(content, upload.name)
    shown = clean_name(upload.name) or path.name  # the file's name as the runs list it
    return DataRecipe.for_file(path, name=shown, seed=int(seed), array=npz_array)


def share_data() -> None:
    """Keep the data chosen here for the other pages (the Experiments page offers it): a built-in
    dataset's recipe, or an upload's, its file written to models/.uploads once. With no usable
    upload (none chosen yet, or the file picker emptied by a page switch) the last one stays."""
    if choice != UPLOAD:
        status = dataset_status(choice)
        if status.available and status.num_train and status.image_shape:
            recipe = DataRecipe(dataset=choice, limit=limit, seed=int(seed))
            set_active_data(
                recipe, min(limit or status.num_train, status.num_train), status.image_shape
            )
        return
    if dataset is None:
        return
    shared = active_data()
    if shared is not None and (
        shared.recipe.upload_sha256,
        shared.recipe.upload_array,
        shared.recipe.seed,
        shared.recipe.upload_name,
    ) == (digest, npz_array, int(seed), clean_name(upload.name) or None):
        return  # this upload is shared already (its file is not hashed again on every rerun)
    try:
        recipe = data_recipe()
    except (ValueError, OSError):
        return  # not written (bad name, full disk): Train says why when it is clicked
    set_active_data(recipe, dataset.num_train, dataset.image_shape)


share_data()


def start_training(discard_unsaved: bool) -> None:
    """Start the training the form describes; this tab controls it. The last job's unsaved
    epochs are discarded only with ``discard_unsaved`` (the user said so); otherwise the page
    asks first."""
    try:
        request = TrainRequest(
            spec=spec,
            data=data_recipe(),
            config=config,
            name=clean_name(run_name) or default_name,
        )
        new_job = JOBS.start(owner_id(), request, discard_unsaved=discard_unsaved)
    except UnsavedEpochs:  # kept epochs appeared since this page was drawn: ask
        st.session_state[DISCARD_ASK] = job.job_id if job is not None else None
        st.rerun()
    except JobBusy as error:
        st.warning(plain_markdown(str(error)), icon=":material/warning:")
    except (ValueError, OSError) as error:
        st.error(f"Training could not start: {plain_markdown(str(error))}", icon=":material/error:")
    else:
        take_control(owner_id(), new_job.job_id)
        st.session_state.pop("train_seen_done", None)
        st.session_state.pop(DISCARD_ASK, None)
        st.rerun()


def confirm_discard() -> None:
    """Before a new training discards the last one's kept, unsaved epochs: say so, and start
    only on "Discard them and train"."""
    assert job is not None
    st.warning(
        f"Training again discards the {unsaved} kept epoch(s) of "
        f"**{plain_markdown(job.name)}**, which are not saved. Save them first (below), or "
        "discard them and train.",
        icon=":material/warning:",
    )
    go, keep = st.columns(2)
    if go.button("Discard them and train", key="train_discard_confirm", type="primary"):
        start_training(discard_unsaved=True)
    if keep.button("Keep them", key="train_discard_cancel"):
        st.session_state.pop(DISCARD_ASK, None)
        st.rerun()


if start and spec is not None:
    if unsaved and job is not None:
        st.session_state[DISCARD_ASK] = job.job_id  # ask first (below)
    else:
        start_training(discard_unsaved=False)
if (
    spec is not None
    and job is not None
    and unsaved
    and in_control
    and st.session_state.get(DISCARD_ASK) == job.job_id
):
    confirm_discard()
elif job is not None and unsaved and not in_control:
    st.caption(
        f"{unsaved} kept epoch(s) of this link's last training are not saved, and another tab "
        "controls them: take the training over (below) to save or discard them before "
        "training again."
    )

st.divider()
live_view, figures_view = st.container(), st.container()
if (shown := JOBS.get(owner_id())) is not None:
    with figures_view:  # first, so that the fragment below sees these figures drawn
        show_figures(shown)
with live_view:
    if shown is None:
        st.caption(
            f"Images are seen {config.epochs} times in batches of {config.batch_size}; training runs in the "
            "background, so you can visit other pages meanwhile and come back."
        )
    elif running:
        st.fragment(run_every=0.5)(live_progress)(in_fragment=True)
    elif not in_control:  # watching another tab's job: notice when that tab leaves or takes over
        st.fragment(run_every=2.0)(live_progress)(in_fragment=True)
    else:
        live_progress()
unsaved_runs(exclude=JOBS.staged_paths())  # only runs no live job holds: a tab controls those
