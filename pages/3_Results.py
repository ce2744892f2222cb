"""Results: original-versus-reconstructed grids, error maps, metrics and loss curves across runs."""

from __future__ import annotations

import numpy as np
import streamlit as st

from cae import metrics as image_metrics
from cae.data import DATASETS, Dataset, dataset_status
from cae.plots import grid_png, heatmap, image_grid, loss_curves
from cae.store import delete_run, list_runs, models_dir
from cae.training import reconstruct
from ui.runs import cached_run, cached_test_set
from ui.state import RUN_KEY, page_frame, remember

page_frame("Results")

MAX_IMAGES = 24


@st.cache_data(show_spinner="Reconstructing…", max_entries=32)
def cached_reconstructions(
    run_id: str, created: str | None, dataset_name: str, root: str
) -> np.ndarray:
    """The run's reconstructions of its whole test set."""
    run = cached_run(run_id, root, created)
    return reconstruct(run.built.autoencoder, cached_test_set(dataset_name).x_test)


def pick_indices(
    dataset: Dataset, mode: str, count: int, seed: int, typed: str, label: int | None
) -> list[int]:
    """The test images to show: random with a seed, typed indices, or the first of one class."""
    total = dataset.num_test
    if mode == "by index":
        indices: list[int] = []
        for part in typed.replace(";", ",").split(","):
            part = part.strip()
            if part.isdigit() and int(part) < total:
                indices.append(int(part))
        return indices[:MAX_IMAGES]
    if mode == "by class" and dataset.y_test is not None and label is not None:
        return [int(i) for i in np.flatnonzero(dataset.y_test == label)[:count]]
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(total, size=min(count, total), replace=False))


def fmt_metric(value: object, digits: int = 4) -> str:
    """A number for the metrics table, or a dash."""
    if isinstance(value, (int, float)) and np.isfinite(value):
        return f"{value:.{digits}f}"
    return "–"


st.title("Results")
root = str(models_dir())
runs = list_runs(root)
good = [run for run in runs if run.ok]
broken = [run for run in runs if not run.ok]

if not good:
    st.info("No trained runs yet. Train one on the Train page.", icon=":material/info:")
    st.page_link("pages/2_Train.py", label="Go to Train", icon=":material/model_training:")
by_id = {run.run_id: run for run in good}
active = st.session_state.get(RUN_KEY)
default = [active] if active in by_id else [good[0].run_id] if good else []
chosen = st.multiselect(
    "Runs to compare",
    list(by_id),
    default=default,
    format_func=lambda run_id: f"{by_id[run_id].name} · {run_id}",
    key="results_runs",
)

if chosen:
    selected = [by_id[run_id] for run_id in chosen]
    remember(RUN_KEY, chosen[0])
    datasets = {run.dataset for run in selected}
    first_dataset = selected[0].dataset or "mnist-sample"
    dataset_name = first_dataset if first_dataset in DATASETS else "mnist-sample"
    if len(datasets) > 1 or first_dataset not in DATASETS:
        options = [name for name in DATASETS if dataset_status(name).available]
        dataset_name = st.selectbox(
            "Compare on the test set of",
            options,
            index=options.index(dataset_name) if dataset_name in options else 0,
            key="results_dataset",
            help="The runs were trained on different data; pick one test set for all of them.",
        )
    status = dataset_status(dataset_name)
    if not status.available:
        st.error(f"The test images of {dataset_name} are not available here: {status.reason}")
        st.stop()
    dataset = cached_test_set(dataset_name)
    usable = [run for run in selected if tuple(run.input_shape or ()) == dataset.image_shape]
    for run in selected:
        if run not in usable:
            st.warning(
                f"{run.run_id} takes {run.input_shape} images, not {dataset.image_shape}: left out of the "
                "image comparison."
            )

    controls = st.columns([1.2, 1, 1, 1.5])
    mode = controls[0].radio(
        "Test images", ["random", "by index", "by class"], horizontal=True, key="results_mode"
    )
    count = controls[1].slider("How many", 2, MAX_IMAGES, 8, key="results_count")
    seed = controls[2].number_input(
        "Seed", 0, 10_000, 0, key="results_seed", disabled=mode != "random"
    )
    typed = ""
    label = None
    if mode == "by index":
        typed = controls[3].text_input(
            f"Indices (0–{dataset.num_test - 1})", "0, 1, 2, 3, 4, 5, 6, 7", key="results_indices"
        )
    elif mode == "by class" and dataset.class_names:
        label = controls[3].selectbox(
            "Class", list(range(len(dataset.class_names))), format_func=lambda i: dataset.class_names[i],
            key="results_class",
        )  # fmt: skip
    indices = pick_indices(dataset, mode, count, int(seed), typed, label)
    if not indices:
        st.warning(f"No test image matches. Received: indices={typed!r}")
        st.stop()
    originals = dataset.x_test[indices]

    recon_by_run = {
        run.run_id: cached_reconstructions(run.run_id, run.created, dataset_name, root)
        for run in usable
    }

    table = []
    for run in selected:
        stored = run.metrics
        row = {
            "run": run.run_id,
            "name": run.name,
            "dataset": run.dataset,
            "parameters": f"{run.params:,}" if run.params is not None else "–",
            "latent": "x".join(map(str, run.latent_shape)) if run.latent_shape else "–",
            "epochs": run.epochs,
            "train time (s)": fmt_metric(stored.get("wall_seconds"), 1),
        }
        if run.run_id in recon_by_run:
            summary = image_metrics.summarize(dataset.x_test, recon_by_run[run.run_id])
            row |= {
                "test MSE": fmt_metric(summary["mse"], 5),
                "test PSNR (dB)": fmt_metric(summary["psnr"], 2),
                "test SSIM": fmt_metric(summary["ssim"], 4),
            }
        table.append(row)
    st.subheader("Metrics on the test set")
    st.dataframe(table, hide_index=True, width="stretch", key="results_table")
    st.caption(
        f"{dataset.num_test:,} test images of {dataset_name}; PSNR of the mean MSE, pixels in [0, 1]."
    )

    st.subheader("Originals and reconstructions")
    rows = [originals]
    titles = ["original"]
    errors = []
    for run in usable:
        recon = recon_by_run[run.run_id][indices]
        rows.append(recon)
        titles.append(run.name[:18])
        errors.append(image_metrics.error_maps(originals, recon))
    st.plotly_chart(image_grid(rows, titles), key="results_grid")
    png = grid_png(rows)
    st.download_button("Download this grid (PNG)", png, file_name="reconstructions.png", mime="image/png",
                       key="results_grid_png", icon=":material/download:")  # fmt: skip

    with st.expander("Per-image error maps (squared error per pixel)", expanded=False):
        for run, error in zip(usable, errors, strict=True):
            st.markdown(f"**{run.name}** · mean squared error per image: "
                        + ", ".join(f"{value:.4f}" for value in error.mean(axis=(1, 2))))  # fmt: skip
            st.plotly_chart(image_grid([error / max(float(error.max()), 1e-8)], ["error"]),
                            key=f"results_errors_{run.run_id}")  # fmt: skip

    histories = {}
    for run in selected:
        try:
            histories[run.name] = cached_run(run.run_id, root, run.created).history
        except ValueError as error:
            st.warning(f"{run.run_id}: {error}")
    if histories:
        st.subheader("Loss curves")
        st.plotly_chart(loss_curves(histories), key="results_curves")

    if usable:
        st.subheader("Best and worst reconstructions")
        focus = st.selectbox("Of run", [run.run_id for run in usable], key="results_focus")
        per_image = image_metrics.mse(dataset.x_test, recon_by_run[focus])
        order = np.argsort(per_image)
        best, worst = order[:6], order[::-1][:6]
        for title, picked in (("best", best), ("worst", worst)):
            st.markdown(
                f"**{title.capitalize()}** (test MSE "
                + ", ".join(f"{per_image[i]:.4f}" for i in picked)
                + ")"
            )
            st.plotly_chart(
                image_grid(
                    [dataset.x_test[picked], recon_by_run[focus][picked]], ["original", "output"]
                ),
                key=f"results_{title}",
            )
        st.plotly_chart(heatmap(image_metrics.error_maps(dataset.x_test, recon_by_run[focus]).mean(axis=0),
                                title="Where the error is, averaged over the test set", colorscale="Magma"),
                        key="results_mean_error")  # fmt: skip

    st.subheader("Downloads and housekeeping")
    for run in selected:
        with st.container(border=True):
            st.markdown(f"**{run.name}** · `{run.run_id}`")
            columns = st.columns(3)
            model_path = run.path / "model.keras"
            if model_path.is_file():
                columns[0].download_button("Model (.keras)", model_path.read_bytes(), file_name=f"{run.run_id}.keras",
                                           key=f"results_model_{run.run_id}", icon=":material/download:")  # fmt: skip
            spec_path = run.path / "spec.json"
            if spec_path.is_file():
                columns[1].download_button("Architecture (JSON)", spec_path.read_text(), file_name=f"{run.run_id}.json",
                                           mime="application/json", key=f"results_spec_{run.run_id}",
                                           icon=":material/download:")  # fmt: skip
            confirm = columns[2].checkbox("Confirm delete", key=f"results_confirm_{run.run_id}")
            if columns[2].button("Delete run", key=f"results_delete_{run.run_id}", disabled=not confirm,
                                 icon=":material/delete:"):  # fmt: skip
                delete_run(run.run_id, root=root)
                cached_run.clear()
                if st.session_state.get(RUN_KEY) == run.run_id:
                    st.session_state.pop(RUN_KEY)
                st.rerun()

if broken:
    with st.expander(
        f"{len(broken)} broken run folder(s)", expanded=True, icon=":material/warning:"
    ):
        for run in broken:
            columns = st.columns([4, 1])
            columns[0].markdown(f"`{run.run_id}` — {run.broken}")
            if columns[1].button("Delete", key=f"results_delete_broken_{run.run_id}"):
                delete_run(run.run_id, root=root)
                st.rerun()
