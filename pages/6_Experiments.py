"""Experiments: vary up to three settings of the current design, train every combination as an
ordinary run, and compare them on one chart against PCA and the mean image."""

from __future__ import annotations

import dataclasses

import streamlit as st

from cae.corruption import CORRUPTIONS_BY_NAME
from cae.datasets import DATASETS, dataset_status
from cae.experiments import (
    DEFAULT_EPOCHS,
    MAX_QUEUED_HOURS,
    MAX_QUEUED_RUNS,
    parallel_runs,
)
from cae.preflight import estimate_sweep
from cae.recipe import UPLOAD, DataRecipe
from cae.shapes import compute_shapes
from cae.spec import ArchitectureSpec
from cae.studies import STUDIES
from cae.sweep import MAX_AXES, SweepError, Variant, expand, parse_values, rate_samples
from cae.text import fmt_seconds, plain_markdown
from cae.training import LIMITS, TrainConfig
from ui.experiments import (
    PICKED_KEY,
    SHOWN_KEY,
    STARTED_KEY,
    comparison,
    experiment_labels,
    progress_panel,
)
from ui.run_index import all_runs
from ui.state import (
    ActiveData,
    active_data,
    active_dataset,
    active_spec,
    owner_id,
    page_frame,
    runs_root,
)
from ui.studies import search_section

NONE = ""
FROM_TRAIN = "(train page)"  # the dataset choice "as on the Train page" (no dataset has this name)
SIZES = [100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 60_000]


def train_data_title(data: ActiveData) -> str:
    """The Train page's data as a choice (plain text): the file or dataset, and its split seed."""
    recipe = data.recipe
    if recipe.dataset == UPLOAD:
        array = f" [{recipe.upload_array}]" if recipe.upload_array else ""
        what = f"your images, {recipe.upload_name}{array}"
    else:
        what = DATASETS[recipe.dataset].title
    shape = "x".join(map(str, data.image_shape))
    return f"As on the Train page: {what} ({shape}, split seed {recipe.seed})"


def choose_data() -> tuple[DataRecipe | None, int, tuple[int, ...] | None]:
    """The data and how many training images each run uses: a built-in dataset, or the data the
    Train page uses now (an upload too). Returns (recipe, training images, image shape)."""
    shared = active_data()
    names = [name for name in DATASETS if dataset_status(name).available]
    options = ([FROM_TRAIN] if shared is not None else []) + names
    current = active_dataset()
    uploaded = shared is not None and shared.recipe.dataset == UPLOAD
    default = FROM_TRAIN if uploaded else current  # an upload is what the user means to use
    left, right = st.columns(2)
    name = left.selectbox(
        "Dataset",
        options,
        index=options.index(default) if default in options else 0,
        format_func=lambda key: (
            train_data_title(shared) if key == FROM_TRAIN else DATASETS[key].title
        ),
        key="experiments_dataset",
        help="A built-in dataset, or the data chosen on the Train page (your uploaded file "
        "too): every run of the experiment records it, as an ordinary run does.",
    )
    if name is None:
        st.warning("No dataset is available here.", icon=":material/cloud_off:")
        return None, 0, None
    if name == FROM_TRAIN:
        base, total, shape = shared.recipe, shared.num_train, shared.image_shape
    else:
        status = dataset_status(name)
        base, total = DataRecipe(dataset=name), int(status.num_train or 0)
        shape = base.image_shape()
    sizes = [size for size in SIZES if size < total] + [total]
    limit = right.select_slider(
        "Training images (and at most as many test images)",
        options=sizes,
        value=total,  # all of them: 1,000 images for 5 epochs left runs that learned nothing
        format_func=lambda n: f"{n:,}",
        key=f"experiments_limit_{name}",
        help="Each run trains on at most this many images, the last tenth of them held out as "
        "the validation split it is scored on, and is tested on at most this many test images; "
        "fewer train faster, but too few (or too few epochs) leave runs that learn nothing.",
    )
    if current == UPLOAD and not uploaded:
        st.caption(
            "To use your own images here, choose the file on the Train page first (or sweep it "
            "from the command line: `python -m cae sweep --data FILE ...`)."
        )
    recipe = base if limit == total else dataclasses.replace(base, limit=int(limit))
    return recipe, int(min(limit, total)), shape


def base_config() -> TrainConfig:
    """The settings every run shares unless an axis varies them."""
    row = st.columns(4)
    epochs = row[0].number_input(
        "Epochs",
        *map(int, LIMITS["epochs"]),
        DEFAULT_EPOCHS,
        key="experiments_epochs",
        help=f"{DEFAULT_EPOCHS} epochs on all the images let the classic design learn on the "
        "bundled sample; a run not above the mean image's PSNR is marked 'did not learn'.",
    )
    batch = row[1].select_slider("Batch size", [16, 32, 64, 128, 256], 64, key="experiments_batch")
    lr = row[2].number_input(
        "Learning rate",
        *LIMITS["learning_rate"],
        1e-3,
        format="%.4g",
        step=1e-4,
        key="experiments_lr",
    )
    gaussian = CORRUPTIONS_BY_NAME["gaussian"]
    noise = row[3].slider(
        "Input noise (Gaussian std)",
        0.0,
        gaussian.high,
        0.0,
        0.05,
        key="experiments_noise",
        help="0: clean inputs; above 0, every run is a denoiser (other corruptions: Train page).",
    )
    return TrainConfig(
        epochs=int(epochs),
        batch_size=int(batch),
        learning_rate=float(lr),
        corruption="gaussian" if noise else None,
        strength=float(noise),
        preview_count=0,
    )


def choose_axes(spec) -> tuple[list, list[str]]:
    """Up to three (field, values) rows; returns the axes and the problems of the rows."""
    from cae.sweep import Axis, varied_fields

    fields = dict(varied_fields(spec))
    options = [NONE, *fields]
    examples = {
        "kernel": "3, 5",
        "code": "1, 2, 4",
        "lr": "0.001, 0.003",
        "epochs": "5, 10",
        "beta": "0, 1",
        "corruption": "none, gaussian, erase",
        "strength": "0, 0.2, 0.4",
    }
    axes, problems = [], []
    for i in range(MAX_AXES):
        left, right = st.columns([3, 2])
        field = left.selectbox(
            f"Vary {i + 1}",
            options,
            index=0,
            format_func=lambda key: "—" if key == NONE else f"{key}: {fields[key]}",
            key=f"experiments_field_{i}",
        )
        text = right.text_input(
            f"Values {i + 1}",
            key=f"experiments_values_{i}",
            placeholder=examples.get(field, "8, 16, 32") if field else "choose what to vary",
            disabled=field == NONE,
        )
        if field == NONE:
            continue
        try:
            axes.append(Axis(field, parse_values(text, field)))
        except SweepError as error:
            problems.append(str(error))
    return axes, problems


def design_line(spec: ArchitectureSpec | None) -> bool:
    """The design every run starts from, in one line; False (said why) when it cannot train."""
    if spec is None:
        st.error("The design on the Architecture page is not valid yet.", icon=":material/block:")
        return False
    try:
        report = compute_shapes(spec, with_fixes=False)
    except ValueError as error:
        st.error(plain_markdown(str(error)), icon=":material/block:")
        return False
    objective = f" · {spec.variational.describe()}" if spec.variational is not None else ""
    st.markdown(
        f"Starts from the current design **{plain_markdown(spec.name)}** · code "
        f"{'x'.join(map(str, report.latent_shape))} · {report.total_params:,} parameters"
        f"{objective} (change it on the Architecture page)."
    )
    return True


def show_plan(variants: list[Variant], num_train: int, root: str) -> None:
    """The runs the experiment makes (each checked by the preflight, through ``expand``), how
    many at a time, and the estimated time with what it is based on."""
    valid = [variant for variant in variants if variant.ok]
    runs = [variant.workload for variant in variants]
    guess = estimate_sweep(runs, num_train, rate_samples(all_runs(root)))
    slots = parallel_runs()
    seconds = guess.seconds / slots
    at_once = f", {slots} at a time" if slots > 1 else ", one after another"
    st.markdown(
        f"**{len(valid)} run(s)**{at_once} · estimated **{fmt_seconds(seconds)}** "
        f"({len(variants) - len(valid)} combination(s) cannot train)"
        if len(valid) < len(variants)
        else f"**{len(valid)} run(s)**{at_once} · estimated **{fmt_seconds(seconds)}**"
    )
    st.caption(f"The estimate is based on {plain_markdown(guess.basis)}.")
    st.dataframe(
        [
            {
                "#": v.index + 1,
                "design": v.label,
                "parameters": v.params,
                "code": "x".join(map(str, v.latent_shape)) if v.latent_shape else None,
                "epochs": v.config.epochs if v.config else None,
                "can train": "yes" if v.ok else f"no: {v.problem}",
            }
            for v in variants
        ],
        hide_index=True,
        width="stretch",
        key="experiments_plan",
    )


def new_experiment(root: str) -> None:
    """The form: design, data, shared settings, what to vary; the runs it makes, checked, with
    their number and estimated time; Start."""
    spec = active_spec()
    st.subheader("New experiment")
    if not design_line(spec):
        return
    busy = [e for e in STUDIES.all(root) if e.active]
    if busy:
        st.caption(
            f"{len(busy)} experiment(s) are queued or training now: this one's runs wait in the "
            "server's queue, taking turns with theirs (at most "
            f"{MAX_QUEUED_RUNS} runs and {MAX_QUEUED_HOURS:g} estimated hours queued per student)."
        )
    recipe, images, image_shape = choose_data()
    config = base_config()
    axes, problems = choose_axes(spec)
    name = st.text_input(
        "Experiment name",
        spec.name,
        max_chars=40,
        key="experiments_name",
        help="Its study's name in your workspace (a name an earlier experiment has gets ' (2)'); "
        "each run is named after it and what it varies.",
    )
    for problem in problems:
        st.error(plain_markdown(problem), icon=":material/error:")
    if recipe is None or not axes or problems:
        if not axes and not problems:
            st.caption("Choose up to three settings to vary, each with a list of values.")
        st.button("Start", key="experiments_start", disabled=True, type="primary")
        return
    try:
        variants = expand(spec, config, axes, image_shape=image_shape)
    except SweepError as error:
        st.error(plain_markdown(str(error)), icon=":material/error:")
        st.button("Start", key="experiments_start", disabled=True, type="primary")
        return
    num_train = int(images * (1 - config.validation_split))
    show_plan(variants, num_train, root)
    if st.button(
        "Start",
        key="experiments_start",
        type="primary",
        disabled=not any(variant.ok for variant in variants),
        icon=":material/play_arrow:",
    ):
        try:
            experiment = STUDIES.submit_grid(
                owner_id(), name, spec, config, recipe, axes, num_train=num_train, root=root
            )
        except (SweepError, ValueError, OSError) as error:
            st.error(f"Could not start: {plain_markdown(str(error))}", icon=":material/error:")
        else:
            # the selection box of SHOWN_KEY is drawn above by now, and Streamlit refuses a
            # write to a drawn widget's key (StreamlitWidgetAlreadyInstantiatedError: the page
            # crashed at a second start); the next run reads this before drawing it
            st.session_state[STARTED_KEY] = experiment.id
            st.rerun()


def _picked() -> None:
    """The selection box's callback: keep the experiment the user picked (an id) in a plain key.
    Its value is the option's label, and a label that changed since it was drawn (its state:
    queued, running, finished) comes back as that old text, not an id: the pick stays then."""
    value = st.session_state.get(SHOWN_KEY)
    if isinstance(value, str) and STUDIES.get(value, runs_root()) is not None:
        st.session_state[PICKED_KEY] = value


def shown_experiment(root: str) -> str | None:
    """The experiment this tab shows: the one just started, else the one picked, else this
    session's newest, else the one training now, else the newest (so a reload or another tab
    finds it again)."""
    experiments = STUDIES.all(root, kind="grid")
    if not experiments:
        return None
    labels = experiment_labels([e.snapshot() for e in experiments])  # as drawn now
    chosen = st.session_state.pop(STARTED_KEY, None) or st.session_state.get(PICKED_KEY)
    if chosen not in labels:
        mine = [e for e in experiments if e.owner == owner_id()]
        active = [e for e in experiments if e.active]
        chosen = (mine or active or experiments)[0].id
    st.session_state[PICKED_KEY] = chosen
    st.session_state[SHOWN_KEY] = chosen  # before the box is drawn: a write after it is refused
    return st.selectbox(
        "Experiment",
        list(labels),
        format_func=labels.__getitem__,
        key=SHOWN_KEY,
        on_change=_picked,
    )


def main() -> None:
    """The page, top to bottom."""
    page_frame("Experiments")
    st.title("Experiments")
    st.caption(
        "Vary the filters, kernels, code size or training settings of your design over lists of "
        "values; every combination is a trial of an Optuna grid study, trained as an ordinary run "
        "(listed on Results) and scored on its validation split, and lands on one chart with its "
        "test scores, against PCA with as many components as the code has values."
    )
    root = runs_root()
    shown = shown_experiment(root)
    if shown is not None:
        experiment = STUDIES.get(shown, root)
        if experiment is not None:
            if experiment.active:
                st.fragment(run_every=1.0)(progress_panel)(shown, live=True)
            else:
                progress_panel(shown)
            comparison(experiment, root)
        st.divider()
    with st.container(border=True):
        new_experiment(root)
    st.divider()
    search_section(root)


main()
