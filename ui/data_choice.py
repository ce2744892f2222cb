"""The Train page's data: a built-in dataset (its availability, a limit for large ones) or an
upload (a new file, or the one chosen earlier; the images' array of an .npz), as one plain
:class:`DataChoice`; its recipe, and the data shared with the Experiments page."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from cae.data import DatasetSummary
from cae.datasets import DATASETS, dataset_status, sample_images
from cae.offload import upload_summary_in_worker
from cae.plots import grid_png
from cae.recipe import UPLOAD, DataRecipe
from cae.store import save_upload
from cae.text import clean_name, plain_markdown
from cae.upload_files import UploadQuotaError
from cae.uploads import NpzArray, npz_arrays, npz_image_key, npz_sources
from ui.state import (
    DATASET_KEY,
    EarlierUpload,
    active_data,
    earlier_upload,
    owner_id,
    refresh_sidebar,
    remember,
    runs_root,
    set_active_data,
)
from ui.steps import queue_notice

PREVIEW_SAMPLES = 6  # images in the corruption preview (and an upload's thumbnails)
THUMBNAIL_PX = 56  # an upload's thumbnails are scaled up (whole pixels) to about this height
DEFAULT_TRAIN_LIMIT = 10_000  # large datasets train on this many images by default (~1 minute)
LIMIT_SIZES = [1_000, 2_000, 5_000, 10_000, 20_000, 30_000]  # the choices below a dataset's size


@dataclass(frozen=True)
class DataChoice:
    """The data chosen on the Train page: a dataset name (or ``upload``), and what is known of it."""

    choice: str  # a name of cae.datasets.DATASETS, or UPLOAD
    available: bool  # a built-in dataset that can be loaded here, or an upload that was read
    dataset: DatasetSummary | None = None  # an upload's summary, once it was read
    upload: Any = None  # the uploaded file (Streamlit's) or an EarlierUpload, when there is one
    digest: str | None = None  # the upload's SHA-256
    npz_array: str | None = None  # the images' array of an .npz of several, when there is a choice
    limit: int | None = None  # training images of a large built-in dataset

    @property
    def num_train(self) -> int | None:
        """How many training images a run gets (validation included); None when not known."""
        if self.dataset is not None:
            return self.dataset.num_train
        if self.choice == UPLOAD or not self.available:
            return None
        total = int(dataset_status(self.choice).num_train or 0)
        return min(self.limit or total, total)

    @property
    def image_shape(self) -> tuple[int, ...] | None:
        """The images' (height, width, channels), when known."""
        if self.dataset is not None:
            return tuple(self.dataset.image_shape)
        if self.choice != UPLOAD and self.available:
            return dataset_status(self.choice).image_shape
        return None

    @property
    def upload_name(self) -> str | None:
        """The uploaded file's name (as given), for an upload."""
        return self.upload.name if self.choice == UPLOAD and self.upload is not None else None


@st.cache_data(show_spinner="Reading your upload…", max_entries=2)
def cached_upload(
    _data: bytes, filename: str, digest: str, array: str | None = None, _owner: str | None = None
) -> DatasetSummary:
    """An uploaded dataset's summary, parsed once per file content (``digest``; the bytes are not
    hashed again) and array, to check it and show its size and a few images; the training process
    reads the file itself, from the recipe. The file is decoded in a worker process under a memory
    cap (``cae.offload``): the server holds only the summary, never the decoded images (four
    ~500 KB zips decoded here at once took the server to 8.9 GB)."""
    return upload_summary_in_worker(
        _data, filename, samples=PREVIEW_SAMPLES, array=array, owner=_owner
    )


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
    content: bytes, filename: str, digest: str, chosen: str | None, *, disabled: bool
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
        disabled=disabled,
        help="An .npz can hold several arrays; the run trains on the one chosen here (with its "
        "labels, y_<name> or y/labels, when they count the same images).",
    )


@st.cache_data(show_spinner=False, max_entries=4)
def builtin_samples(name: str) -> np.ndarray:
    """A few images of a built-in dataset, float32 in [0, 1], for the corruption preview."""
    return sample_images(name, PREVIEW_SAMPLES)


def preview_samples(data: DataChoice) -> np.ndarray | None:
    """A few images of the chosen data for the corruption preview, or None when there are none."""
    if data.dataset is not None:
        return sample_images(data.dataset, PREVIEW_SAMPLES)
    if data.choice == UPLOAD or not data.available:
        return None
    try:
        return builtin_samples(data.choice)
    except ValueError:
        return None


def dataset_label(name: str) -> str:
    """A dataset option with its availability."""
    if name == UPLOAD:
        return "Your own images (upload)"
    status = dataset_status(name)
    info = DATASETS[name]
    if status.available:
        return f"{info.title} — {status.num_train:,} train / {status.num_test:,} test"
    return f"{info.title} — not available here"


def choose_data(last_limit: int | None, *, disabled: bool) -> DataChoice:
    """The Data section: the dataset (remembered for the other pages) and, for an upload, the
    file and its array, or, for a large built-in dataset, how many images to train on."""
    st.subheader("Data")
    names = [*DATASETS, UPLOAD]
    current = st.session_state.get(DATASET_KEY, "mnist-sample")
    choice = st.selectbox(
        "Dataset",
        names,
        index=names.index(current) if current in names else 0,
        format_func=dataset_label,
        key="train_dataset",
        disabled=disabled,
    )
    remember(DATASET_KEY, choice)
    refresh_sidebar()  # drawn before this choice: it would name the previous dataset
    if choice == UPLOAD:
        return choose_upload(disabled=disabled)
    status = dataset_status(choice)
    st.caption(DATASETS[choice].description)
    if not status.available:
        st.warning(status.reason, icon=":material/cloud_off:")
        return DataChoice(choice, available=False)
    limit = None
    if status.num_train and status.num_train > DEFAULT_TRAIN_LIMIT:
        sizes = [*LIMIT_SIZES, status.num_train]
        limit = int(
            st.select_slider(
                "Training images",
                options=sizes,
                value=last_limit if last_limit in sizes else DEFAULT_TRAIN_LIMIT,
                format_func=lambda n: f"{n:,}",
                key="train_limit",
                disabled=disabled,
                help="Fewer images train faster; the test set is capped the same way.",
            )
        )
    return DataChoice(choice, available=True, limit=limit)


def choose_upload(*, disabled: bool) -> DataChoice:
    """An upload: the file picker (the file chosen before stays when it is empty), the images'
    array of an .npz of several, and the images' count and shape, or why they cannot be used."""
    upload = st.file_uploader(
        "Images as .npz / .npy (N,H,W) or (N,H,W,C) with up to 64 channels, or a .zip of "
        "PNG/JPEG files",
        type=["npz", "npy", "zip"],
        key="train_upload",
        disabled=disabled,
    )
    if upload is None:  # the picker empties on a page switch: the file chosen before stays
        upload = earlier_upload()
        if upload is not None:
            st.caption(
                f":material/history: Using **{plain_markdown(upload.name)}**, uploaded "
                "earlier. Choose a file above to use another."
            )
    if upload is None:
        return DataChoice(UPLOAD, available=False)
    content = upload.getvalue()
    if isinstance(upload, EarlierUpload):
        digest = upload.digest  # hashed when it was saved
    else:
        digest = hashlib.sha256(content).hexdigest()
    earlier_array = upload.array if isinstance(upload, EarlierUpload) else None
    array = npz_array_choice(content, upload.name, digest, earlier_array, disabled=disabled)
    try:
        with queue_notice("upload_summary"):  # its place, when the server's queue holds it
            dataset = cached_upload(content, upload.name, digest, array, owner_id())
    except ValueError as error:
        st.error(
            plain_markdown(f"{upload.name} cannot be used: {error}"),
            icon=":material/error:",
        )
        return DataChoice(UPLOAD, False, upload=upload, digest=digest, npz_array=array)
    st.caption(
        f"{plain_markdown(upload.name)}: {dataset.num_train:,} train / "
        f"{dataset.num_test:,} test images of "
        f"{'x'.join(map(str, dataset.image_shape))}"
        + npz_arrays_used(content, upload.name, digest, array, dataset)
    )
    upload_thumbnails(dataset)
    return DataChoice(UPLOAD, True, dataset, upload, digest, array)


def upload_thumbnails(dataset: DatasetSummary) -> None:
    """The first images read from an upload (its test split's first), small, in one row: what
    the file holds, before anything trains on it (issue 28)."""
    samples = dataset.samples
    if samples is None or not len(samples):
        return
    height = int(samples.shape[1])
    picture = grid_png([samples], scale=max(1, round(THUMBNAIL_PX / height)), gap=1)
    width = min(len(samples) * max(height, THUMBNAIL_PX) + 8 * len(samples), 480)
    with st.container(key="train_upload_thumbnails"):
        st.image(
            picture,
            width=width,
            caption=f"The first {len(samples)} images read from the file (its test split's)",
        )


def data_recipe(data: DataChoice, seed: int) -> DataRecipe:
    """The recipe of the chosen data: a built-in dataset, or the upload written once to disk."""
    if data.choice != UPLOAD:
        return DataRecipe(dataset=data.choice, limit=data.limit, seed=seed)
    upload = data.upload
    if isinstance(upload, EarlierUpload):  # already saved, by content
        shown = clean_name(upload.name) or Path(upload.path).name
        return DataRecipe.for_file(upload.path, name=shown, seed=seed, array=data.npz_array)
    content = upload.getvalue()
    path = save_upload(
        content, upload.name, root=runs_root(), owner=owner_id()
    )  # counts for its quota
    shown = clean_name(upload.name) or path.name  # the file's name as the runs list it
    return DataRecipe.for_file(path, name=shown, seed=seed, array=data.npz_array)


def share_data(data: DataChoice, seed: int) -> None:
    """Keep the data chosen here for the other pages (the Experiments page offers it): a built-in
    dataset's recipe, or an upload's, its file written to models/.uploads once. With no usable
    upload (none chosen yet, or the file picker emptied by a page switch) the last one stays."""
    if data.choice != UPLOAD:
        status = dataset_status(data.choice)
        if status.available and status.num_train and status.image_shape:
            recipe = DataRecipe(dataset=data.choice, limit=data.limit, seed=seed)
            set_active_data(
                recipe, min(data.limit or status.num_train, status.num_train), status.image_shape
            )
        return
    if data.dataset is None:
        return
    shared = active_data()
    if shared is not None and (
        shared.recipe.upload_sha256,
        shared.recipe.upload_array,
        shared.recipe.seed,
        shared.recipe.upload_name,
    ) == (data.digest, data.npz_array, seed, clean_name(data.upload.name) or None):
        return  # this upload is shared already (its file is not hashed again on every rerun)
    try:
        recipe = data_recipe(data, seed)
    except UploadQuotaError as error:  # said when chosen: nothing was written or removed
        st.error(
            plain_markdown(f"{data.upload.name} is not kept: {error}"), icon=":material/error:"
        )
        return
    except (ValueError, OSError):
        return  # not written (bad name, full disk): Train says why when it is clicked
    set_active_data(recipe, data.dataset.num_train, data.dataset.image_shape)
