"""Results: original-versus-reconstructed grids, error maps, metrics and loss curves across runs.

Every number here is on a run's own test split (``cae.store.run_test_split``): images it never
trained on. Runs compared side by side are shown on the test images of the first run chosen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from cae import metrics as image_metrics
from cae.colours import colormap
from cae.notebook import notebook_text
from cae.offload import StepError
from cae.plots import error_heatmap, grid_png, image_grid, loss_curves
from cae.recipe import TestSplit
from cae.store import RunError, RunInfo, delete_run
from cae.text import plain_code, plain_markdown
from ui.baselines import baselines_table, name_column
from ui.channels import channel_picker
from ui.denoising import corrupted_section
from ui.lesson import lesson_section
from ui.results_scores import (
    error_words,
    own_metrics,
    pca_gain,
    picked,
    run_labels,
    run_report,
    shown_error_maps,
)
from ui.run_index import all_runs
from ui.runs import (
    cached_run,
    cached_test_split,
    loads,
    test_split_caption,
    test_split_or_stop,
)
from ui.state import (
    COMPARE_KEY,
    MAX_LINKED_RUNS,
    RUN_KEY,
    default_run,
    follow_run_link,
    owns,
    page_frame,
    refresh_sidebar,
    remember,
    run_link,
    runs_root,
)
from ui.test_images import class_names

MAX_IMAGES = 24
FIRST_METRICS = ("psnr", "ssim")  # the metrics table's key columns, first after the name
GAIN_OVER_PCA = "vs PCA (dB)"  # short: at 1440 px only the run id may be cut
RESULTS_RUNS_KEY = "results_runs"  # the multiselect of runs to compare


def choose_runs(good: list[RunInfo]) -> list[RunInfo]:
    """The multiselect of runs to compare (the active run, else the starting run, preselected)."""
    by_id = {run.run_id: run for run in good}
    active = st.session_state.get(RUN_KEY)
    kept = [run_id for run_id in st.session_state.get(COMPARE_KEY) or [] if run_id in by_id]
    if kept and active in by_id and active not in kept:  # another page chose a run since
        kept = [active, *kept]
    start = default_run(good)  # a new session's: the shipped run, never another workspace's
    default = kept or ([active] if active in by_id else [start.run_id] if start else [])
    if RESULTS_RUNS_KEY in st.session_state:  # the widget's own value (or a followed link's)
        held = st.session_state[RESULTS_RUNS_KEY]
        if any(run_id not in by_id for run_id in held):  # a run deleted since
            st.session_state[RESULTS_RUNS_KEY] = [run_id for run_id in held if run_id in by_id]
        default = None  # Streamlit warns of a default beside a value set through Session State
    chosen = st.multiselect(
        "Runs to compare",
        list(by_id),
        default=default,
        format_func=lambda run_id: f"{by_id[run_id].name} · {run_id}",
        key=RESULTS_RUNS_KEY,
    )
    remember(COMPARE_KEY, list(chosen))  # kept when the user visits other pages and comes back
    if chosen:
        remember(RUN_KEY, chosen[0])
    return [by_id[run_id] for run_id in chosen]


def pick_indices(split: TestSplit) -> list[int]:
    """The test images to show: random with a seed, typed indices, or the first of one class."""
    controls = st.columns([1.2, 1, 1, 1.5])
    modes = (
        ["random", "by index", "by class"] if split.labels is not None else ["random", "by index"]
    )
    mode = controls[0].radio("Test images", modes, horizontal=True, key="results_mode")
    count = controls[1].slider(
        "How many", 2, MAX_IMAGES, 8, key="results_count", disabled=mode == "by index"
    )  # by index: the typed indices say how many
    seed = controls[2].number_input(
        "Seed", 0, 10_000, 0, key="results_seed", disabled=mode != "random"
    )
    if mode == "by index":
        typed = controls[3].text_input(
            f"Indices (0–{split.count - 1})", "0, 1, 2, 3, 4, 5, 6, 7", key="results_indices"
        )
        parts = (part.strip() for part in typed.replace(";", ",").split(","))
        indices = [int(part) for part in parts if part.isdigit() and int(part) < split.count]
        if not indices:
            st.warning(
                f"No test image matches. Received: indices={plain_markdown(repr(typed))}",
                icon=":material/warning:",
            )
        return indices[:MAX_IMAGES]
    if mode == "by class":
        names = class_names(split)
        label = controls[3].selectbox(
            "Class", list(range(len(names))), format_func=names.__getitem__, key="results_class"
        )
        return [int(i) for i in np.flatnonzero(split.labels == label)[:count]]
    rng = np.random.default_rng(int(seed))
    return sorted(
        int(i) for i in rng.choice(split.count, size=min(count, split.count), replace=False)
    )


def first_with_test_images(selected: list[RunInfo], root: str) -> tuple[RunInfo, TestSplit]:
    """The first chosen run whose test images can be had, and those images (the images the
    comparison below shows); when none has any, says so in one line and stops the page."""
    for run in selected[:-1]:
        try:
            return run, cached_test_split(run.run_id, root, run.created)
        except RunError:
            continue
    return selected[-1], test_split_or_stop(selected[-1], root)


def metrics_table(selected: list[RunInfo], root: str) -> None:
    """Each run's metrics on its own test split, one column per entry of ``METRICS``: the name,
    then the key columns (PSNR, its gain over PCA, SSIM), then the rest, so that a phone shows
    the key ones without scrolling sideways (issue 28; they sat past the sixth column)."""
    table = []
    metrics = sorted(image_metrics.METRICS, key=lambda metric: metric.key not in FIRST_METRICS)
    for run in selected:
        row: dict[str, object] = {"name": run.name}
        try:
            scores = own_metrics(run, root)
        except (RunError, StepError) as error:
            scores = {}
            st.caption(plain_markdown(f"{run.name}: {getattr(error, 'reason', None) or error}"))
        for metric in metrics:
            row[f"test {metric.label}"] = metric.format(scores.get(metric.key))
            if metric.key == "psnr":
                row[GAIN_OVER_PCA] = pca_gain(run, scores.get("psnr"), root)
        row["dataset"] = run.dataset
        row["parameters"] = f"{run.params:,}" if run.params is not None else "–"
        row["code"] = "x".join(map(str, run.latent_shape)) if run.latent_shape else "–"
        row["epochs"] = run.epochs
        row["time (s)"] = image_metrics.format_number(run.metrics.get("wall_seconds"), 1)
        row["run id"] = run.run_id
        table.append(row)
    st.subheader("Metrics on each run's test split")
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        key="results_table",
        column_config=name_column("name"),
    )
    st.caption(
        "Each run is scored on its own test images, which it never trained on; PSNR is that of "
        "the mean MSE, pixels in [0, 1]. vs PCA: the run's PSNR minus that of PCA with as many "
        "components as its code has values (the table below; above 0, the run beats it). Time: "
        "the training's seconds."
    )


def grid_section(
    usable: list[RunInfo],
    reference: RunInfo,
    split: TestSplit,
    indices: list[int],
    channel: int | None,
    root: str,
) -> None:
    """Originals over each run's reconstructions, a PNG download and per-image error maps."""
    originals = split.take(indices)
    rows, titles, errors = [originals], ["original"], []
    for run in usable:
        outputs = picked(run, reference, indices, root)
        rows.append(outputs)
        titles.append(run.name)  # whole: the grid wraps a long title
        errors.append(shown_error_maps(originals, outputs, channel))
    st.subheader("Originals and reconstructions")
    with st.container(key="results_grid"):
        st.html(image_grid(rows, titles, channel=channel))
    st.download_button(
        "Download this grid (PNG)",
        grid_png(rows, channel=channel),
        file_name="reconstructions.png",
        mime="image/png",
        key="results_grid_png",
        icon=":material/download:",
    )
    words = error_words(channel, int(originals.shape[-1]))
    label = f"Per-image error maps (squared error per pixel{', ' + words if words else ''})"
    with st.expander(label, expanded=False):
        top = max(float(error.max()) for error in errors) if errors else 0.0
        st.caption(f"One scale for every run: 0 (dark purple) to {top:.4f} (yellow).")
        for run, error in zip(usable, errors, strict=True):
            means = ", ".join(f"{value:.4f}" for value in error.mean(axis=(1, 2)))
            st.markdown(f"**{plain_markdown(run.name)}** · mean squared error per image: {means}")
            coloured = colormap(error, 0.0, max(top, 1e-8)) / 255.0  # from 0, as the heatmap
            with st.container(key=f"results_errors_{run.run_id}"):
                st.html(image_grid([coloured], ["error"]))


def curves_section(selected: list[RunInfo], root: str) -> None:
    """The loss curves of every chosen run."""
    histories = {}
    labels = run_labels(selected)
    for run in selected:
        try:
            histories[labels[run.run_id]] = cached_run(run.run_id, root, run.created).history
        except ValueError as error:
            st.warning(plain_markdown(f"{run.run_id}: {error}"), icon=":material/warning:")
    if histories:
        st.subheader("Loss curves")
        st.plotly_chart(loss_curves(histories), key="results_curves")


def best_and_worst(
    usable: list[RunInfo], reference: RunInfo, split: TestSplit, channel: int | None, root: str
) -> None:
    """The six best and worst reconstructed test images of one run (ranked on every channel), and
    where its error is."""
    if not usable:
        return
    st.subheader("Best and worst reconstructions")
    by_id = {run.run_id: run for run in usable}
    labels = run_labels(usable)  # the names, as the rest of the page says them
    focus = by_id[
        st.selectbox("Of run", list(by_id), format_func=labels.__getitem__, key="results_focus")
    ]
    try:
        report = run_report(focus, reference, root)
    except (RunError, StepError) as error:
        st.caption(plain_markdown(f"{focus.name}: {getattr(error, 'reason', None) or error}"))
        return
    if report is None:  # a worker scores it; its notice is shown
        return
    per_image = report.per_image_mse
    order = np.argsort(per_image, kind="stable")
    for title, chosen in (("best", order[:6]), ("worst", order[::-1][:6])):
        values = ", ".join(f"{per_image[i]:.4f}" for i in chosen)
        st.markdown(f"**{title.capitalize()}** (test MSE {values})")
        with st.container(key=f"results_{title}"):
            st.html(
                image_grid(
                    [split.take(chosen), picked(focus, reference, chosen, root)],
                    ["original", "output"],
                    channel=channel,
                )
            )
    mean_error = report.error_map(channel)
    words = error_words(channel, int(split.pixels.shape[-1]), test_set=True)
    title = f"Where the error is: squared error per pixel, {words}"
    st.plotly_chart(error_heatmap(mean_error, title), key="results_mean_error")


GALLERY_NOTE = "In the shared gallery: only the teacher deletes it."
MODEL_HELP = (
    "The whole autoencoder (encoder and decoder inside). Load it with `cae.load_model(path)`, "
    "plain or variational; with plain Keras, `import cae.variational` first, then "
    "`keras.saving.load_model(path)`."
)


NOTEBOOK_HELP = (
    "A runnable Jupyter notebook of this run: it loads the model, its test split, computes "
    "these metrics and draws the grid. `python -m cae notebook RUN --out FILE.ipynb` writes "
    "the same one."
)


@st.cache_data(show_spinner=False, max_entries=32)
def cached_notebook(folder: str, created: str | None) -> str:
    """The run in ``folder`` as a Jupyter notebook's text (``cae.notebook``, as `cae notebook`
    writes it; JSON files only, no model loaded)."""
    return notebook_text(Path(folder))  # a path: a string is a run id


def notebook_button(column: Any, run: RunInfo) -> None:
    """One click: the run as a runnable Jupyter notebook."""
    try:
        text = cached_notebook(str(run.path), run.created)
    except RunError as error:
        column.caption(plain_markdown(f"No notebook: {error.reason or error}"))
        return
    column.download_button(
        "Notebook (.ipynb)",
        text,
        file_name=f"{run.run_id}.ipynb",
        mime="application/x-ipynb+json",
        key=f"results_notebook_{run.run_id}",
        icon=":material/download:",
        help=NOTEBOOK_HELP,
        on_click="ignore",
    )


def housekeeping(selected: list[RunInfo], root: str) -> None:
    """Downloads of each run's model and spec, and delete with confirmation (this workspace's
    own runs only: a gallery run is the teacher's)."""
    st.subheader("Downloads and housekeeping")
    for run in selected:
        with st.container(border=True):
            st.markdown(f"**{plain_markdown(run.name)}** · {plain_code(run.run_id)}")
            columns = st.columns(3)
            model_path = run.path / "model.keras"
            if model_path.is_file():
                columns[0].download_button(
                    "Model (.keras)",
                    model_path.read_bytes(),
                    file_name=f"{run.run_id}.keras",
                    key=f"results_model_{run.run_id}",
                    icon=":material/download:",
                    help=MODEL_HELP,
                )
            spec_path = run.path / "spec.json"
            if spec_path.is_file():
                columns[1].download_button(
                    "Architecture (JSON)",
                    spec_path.read_text(),
                    file_name=f"{run.run_id}.json",
                    mime="application/json",
                    key=f"results_spec_{run.run_id}",
                    icon=":material/download:",
                )
            notebook_button(columns[1], run)
            if not owns(run):
                columns[2].caption(GALLERY_NOTE)
                continue
            confirm = columns[2].checkbox("Confirm delete", key=f"results_confirm_{run.run_id}")
            if columns[2].button(
                "Delete run",
                key=f"results_delete_{run.run_id}",
                disabled=not confirm,
                icon=":material/delete:",
            ):
                delete_run(run.run_id, root=root)
                cached_run.clear()
                if st.session_state.get(RUN_KEY) == run.run_id:
                    st.session_state.pop(RUN_KEY)
                st.rerun()


def broken_section(broken: list[RunInfo], root: str) -> None:
    """Broken run folders, each named by its id (its folder: names repeat) with its name and
    the reason, and a Delete button."""
    with st.expander(
        f"{len(broken)} broken run folder(s)", expanded=True, icon=":material/warning:"
    ):
        for run in broken:
            columns = st.columns([4, 1])
            named = "" if run.name == run.run_id else f" ({plain_markdown(run.name)})"
            columns[0].markdown(
                f"Run {plain_code(run.run_id)}{named} — {plain_markdown(run.broken or '')}"
            )
            if not owns(run):
                columns[1].caption(GALLERY_NOTE)
            elif columns[1].button("Delete", key=f"results_delete_broken_{run.run_id}"):
                delete_run(run.run_id, root=root)
                st.rerun()


def main() -> None:
    """The page, top to bottom."""
    page_frame("Results")
    st.title("Results")
    root = runs_root()
    runs = all_runs(root)
    good = [run for run in runs if run.ok]
    linked = follow_run_link(good)  # a link (from Experiments, the lesson) names the runs to show
    if linked:
        # set through Session State, which the browser's multiselect shows: dropping the key
        # instead left the widget already on the page showing the old choice, and the next
        # click sent that back (the lesson's link on Results lost the wide run)
        st.session_state[RESULTS_RUNS_KEY] = linked
    if not good:
        st.info("No trained runs yet. Train one on the Train page.", icon=":material/info:")
        st.page_link("pages/2_Train.py", label="Go to Train", icon=":material/model_training:")
    selected = choose_runs(good)
    refresh_sidebar()  # drawn before the choice (or a link) changed the active run
    selected = [run for run in selected if loads(run, root)]  # a broken model: one line, no crash
    if selected:
        # the link that opens this comparison (the page takes a followed link out of the URL);
        # a page link, not markdown: no text of the page is ever markup (tests/test_hostile_names)
        st.page_link(
            "pages/3_Results.py",
            label="Link to this comparison (copy it to share or bookmark)",
            icon=":material/link:",
            query_params=run_link([run.run_id for run in selected[:MAX_LINKED_RUNS]]),
        )
        metrics_table(selected, root)
        baselines_table(selected, root, lambda run: own_metrics(run, root))
        lesson_section(root, boxed=True)  # the classic and wide shipped runs against PCA
        reference, split = first_with_test_images(selected, root)
        reference_name = plain_markdown(reference.name)
        st.caption(f"The images below: {reference_name}'s {test_split_caption(split)}")
        usable = [run for run in selected if tuple(run.input_shape or ()) == split.image_shape]
        for run in selected:
            if run is reference:
                continue
            if run not in usable:
                st.warning(
                    f"{plain_markdown(run.name)} takes {run.input_shape} images, not "
                    f"{split.image_shape}: left out of the image comparison.",
                    icon=":material/warning:",
                )
            elif run.recipe != reference.recipe:
                st.caption(
                    f"{plain_markdown(run.name)} was trained on other data "
                    f"({plain_markdown(run.dataset or '–')}): it may have trained "
                    f"on some of the images below. Its metrics above are on its own test split."
                )
        indices = pick_indices(split)
        channel = channel_picker(st, split.image_shape[2], "results_channel", width=240)
        if indices:
            grid_section(usable, reference, split, indices, channel, root)
        corrupted_section(selected, usable, split, indices, channel, root)
        curves_section(selected, root)
        best_and_worst(usable, reference, split, channel, root)
        housekeeping(selected, root)
    broken = [run for run in all_runs(root) if not run.ok]  # with those that failed to load now
    if broken:
        broken_section(broken, root)


main()
