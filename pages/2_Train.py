"""Train: dataset and hyper-parameters, the checks before training (``cae.preflight``), background
training with live progress, stop and save."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import streamlit as st

from cae.jobs import JOBS, JobBusy, TrainingJob, UnsavedEpochs
from cae.naming import default_run_name
from cae.preflight import Preflight, preflight, size_text
from cae.request import MAX_RUN_NAME, TrainRequest
from cae.shapes import compute_shapes
from cae.spec import ArchitectureSpec
from cae.sweep import rate_samples
from cae.text import clean_name, fmt_seconds, plain_markdown
from cae.training import TrainConfig
from ui.data_choice import DataChoice, choose_data, data_recipe, preview_samples, share_data
from ui.run_index import all_runs
from ui.state import (
    SUGGESTED_KEY,
    UPLOAD_NAME_KEY,
    active_spec,
    controls_job,
    owner_id,
    page_frame,
    runs_root,
    set_active_spec,
    take_control,
)
from ui.train_progress import ESTIMATE_KEY, SCROLL_KEY, SEEN_CONTROL, live_view
from ui.train_settings import default_epochs, seed_field, training_settings
from ui.unsaved import unsaved_runs

NAME_DEFAULTS_KEY = "train_name_defaults"  # list[str]: the default run names this tab suggested
DISCARD_ASK = "train_discard_ask"  # the job id whose unsaved epochs a new training would discard
NOT_VALID = "The design on the Architecture page is not valid yet."


@dataclass(frozen=True)
class JobState:
    """This tab's training, if any, and what the form may do about it."""

    job: TrainingJob | None
    running: bool  # it has not ended: the form is disabled
    in_control: bool  # this tab controls it (or there is none)
    unsaved: int  # its kept epochs that are not saved


def job_state() -> JobState:
    """This tab's job and whether it runs, is this tab's to control, and has unsaved epochs."""
    job = JOBS.get(owner_id())
    in_control = job is None or controls_job(owner_id(), job.job_id)
    st.session_state[SEEN_CONTROL] = (job.job_id, in_control) if job is not None else None
    return JobState(
        job,
        running=job is not None and not job.done,
        in_control=in_control,
        unsaved=job.unsaved_epochs if job is not None else 0,
    )


def design_summary(spec: ArchitectureSpec | None) -> None:
    """The Design section: the design's name, input, code and size (its problems are said by
    show_design_problem, once the preflight has run)."""
    st.subheader("Design")
    if spec is None:
        return
    try:
        report = compute_shapes(spec, with_fixes=False)
    except ValueError:
        return
    st.markdown(
        f"**{plain_markdown(spec.name)}** · input {'x'.join(map(str, report.input_shape))} · "
        f"code {'x'.join(map(str, report.latent_shape))} · {report.total_params:,} parameters"
        + (f" · {spec.variational.describe()}" if spec.variational is not None else "")
    )


def show_design_problem(check: Preflight | None) -> None:
    """Why the design cannot train (no valid design, a layer, the decoder's output), with a link."""
    found = check.problem("design", "mismatch") if check is not None else None
    if check is None or found is not None:
        st.error(NOT_VALID if found is None else found.message, icon=":material/block:")
        st.page_link(
            "pages/1_Architecture.py",
            label="Fix it on the Architecture page",
            icon=":material/build:",
        )


def run_name_field(
    container: Any, spec: ArchitectureSpec | None, data: DataChoice, state: JobState
) -> tuple[str, str]:
    """The run's name (``cae.naming.default_run_name`` until the user types one of their own)
    and a warning when a run already has it; returns (the name typed, the default)."""
    job = state.job
    if data.upload_name is not None:
        st.session_state[UPLOAD_NAME_KEY] = clean_name(data.upload_name)  # Home names the file
    taken_names = {run.name for run in all_runs(runs_root())} | (
        {job.name} if job is not None else set()
    )
    default_name = default_run_name(
        spec,
        data.choice,
        data.upload_name,
        taken_names,
        data.npz_array if data.upload_name is not None else None,
    )
    # The field follows the default (design, data, counter) until the user types a name of their
    # own: a keyed text_input ignores a new default value, so it kept "tiny-upload" after the
    # data changed, and the same name for every click of Train (issue 13). Any name this tab
    # suggested counts, not only the last: a run cut short by the next one (a new upload reruns
    # the page twice) left the field one default behind, and a run was saved under the file.
    shown_name = st.session_state.get("train_name")
    suggested = list(st.session_state.get(NAME_DEFAULTS_KEY, []))
    if state.running and job is not None:
        st.session_state["train_name"] = job.name
    elif shown_name is None or shown_name in (*suggested, job.name if job is not None else None):
        st.session_state["train_name"] = default_name
    kept = [name for name in suggested if name != default_name][-49:]
    st.session_state[NAME_DEFAULTS_KEY] = [*kept, default_name]
    run_name = container.text_input(
        "Run name", max_chars=MAX_RUN_NAME, key="train_name", disabled=state.running
    )
    if not state.running and (clean_name(run_name) or default_name) in taken_names:
        container.warning(
            f"A run named **{plain_markdown(clean_name(run_name) or default_name)}** already "
            "exists: this one would be a second run of that name. Pick another name.",
            icon=":material/content_copy:",
        )
    return run_name, default_name


@st.cache_data(max_entries=4, show_spinner=False)
def speed_samples(run_ids: tuple[str, ...]) -> list[tuple[float, float]]:
    """(work, wall seconds) of the earlier runs, read once per list of runs."""
    return rate_samples(all_runs(runs_root()))


def check_training(
    spec: ArchitectureSpec | None, config: TrainConfig, data: DataChoice
) -> Preflight | None:
    """The preflight of this training (None without a valid design), its problems said: the
    images' shape (with the one-click fix that adapts the design, where one is checked), the
    memory, too few images."""
    if spec is None:
        return None
    samples = speed_samples(tuple(run.run_id for run in all_runs(runs_root())))
    check = preflight(
        spec, config, image_shape=data.image_shape, num_train=data.num_train, speed_samples=samples
    )
    if (shape := check.problem("shape")) is not None:
        st.warning(plain_markdown(shape.message), icon=":material/aspect_ratio:")
        if shape.fix is not None and st.button(shape.fix.description, key="train_adapt_input"):
            set_active_spec(shape.fix.spec)
            st.rerun()
        elif shape.fix is None:
            st.page_link(
                "pages/1_Architecture.py",
                label="Adapt the design on the Architecture page",
                icon=":material/build:",
            )
    if (memory := check.problem("memory")) is not None:
        st.error(plain_markdown(memory.message), icon=":material/memory:")
    if data.dataset is not None and (few := check.problem("images")) is not None:
        st.error(plain_markdown(few.message), icon=":material/photo_library:")
    return check


def show_estimates(check: Preflight | None, config: TrainConfig) -> None:
    """What the training will take, beside the Train button: the preflight's time (fitted to
    this machine's earlier runs, saying so) and memory, when the checks pass."""
    where = (
        f"Images are seen {config.epochs} times in batches of {config.batch_size}; training runs "
        "in the background, so you can visit other pages meanwhile and come back."
    )
    if check is None or not check.ok or check.time is None or check.memory is None:
        st.caption(where)
        return
    st.markdown(
        f":material/schedule: Estimated time **{fmt_seconds(check.seconds)}** and memory "
        f"about **{size_text(check.memory.total)}**.",
        help=f"The memory counts {check.memory.counts}; {check.memory.describe()}.",
    )
    st.caption(f"The time is based on {check.time.basis}. {where}")


def start_training(
    request: Callable[[], TrainRequest],
    state: JobState,
    *,
    discard_unsaved: bool,
    estimate: float | None = None,
) -> None:
    """Start the training ``request()`` makes; this tab controls it. The last job's unsaved
    epochs are discarded only with ``discard_unsaved`` (the user said so); otherwise the page
    asks first. ``estimate`` (seconds) stands for the ETA until the run has measured its speed."""
    try:
        new_job = JOBS.start(
            owner_id(), request(), root=runs_root(), discard_unsaved=discard_unsaved
        )
    except UnsavedEpochs:  # kept epochs appeared since this page was drawn: ask
        st.session_state[DISCARD_ASK] = state.job.job_id if state.job is not None else None
        st.rerun()
    except JobBusy as error:
        st.warning(plain_markdown(str(error)), icon=":material/warning:")
    except (ValueError, OSError) as error:
        st.error(f"Training could not start: {plain_markdown(str(error))}", icon=":material/error:")
    else:
        take_control(owner_id(), new_job.job_id)
        st.session_state[ESTIMATE_KEY] = (new_job.job_id, estimate)
        st.session_state[SCROLL_KEY] = new_job.job_id
        st.session_state.pop("train_seen_done", None)
        st.session_state.pop(DISCARD_ASK, None)
        st.rerun()


def start_or_ask(
    start: bool,
    request: Callable[[], TrainRequest] | None,
    state: JobState,
    estimate: float | None = None,
) -> None:
    """A click of Train starts the training, or first asks before the last job's kept, unsaved
    epochs are discarded (``Discard them and train``); a tab that does not control them is told.
    Without a ``request`` (no valid design) nothing starts."""
    job = state.job
    if start and request is not None:
        if state.unsaved and job is not None:
            st.session_state[DISCARD_ASK] = job.job_id  # ask first (below)
        else:
            start_training(request, state, discard_unsaved=False, estimate=estimate)
    if request is not None and job is not None and state.unsaved and state.in_control:
        if st.session_state.get(DISCARD_ASK) == job.job_id:
            st.warning(
                f"Training again discards the {state.unsaved} kept epoch(s) of "
                f"**{plain_markdown(job.name)}**, which are not saved. Save them first (below), "
                "or discard them and train.",
                icon=":material/warning:",
            )
            go, keep = st.columns(2)
            if go.button("Discard them and train", key="train_discard_confirm", type="primary"):
                start_training(request, state, discard_unsaved=True, estimate=estimate)
            if keep.button("Keep them", key="train_discard_cancel"):
                st.session_state.pop(DISCARD_ASK, None)
                st.rerun()
    elif job is not None and state.unsaved and not state.in_control:
        st.caption(
            f"{state.unsaved} kept epoch(s) of this link's last training are not saved, and "
            "another tab controls them: take the training over (below) to save or discard them "
            "before training again."
        )


def main() -> None:
    """The page, top to bottom."""
    page_frame("Train")
    JOBS.prewarm()  # a training process with TensorFlow loaded waits for the Train click
    st.title("Train")
    state = job_state()
    job = state.job
    # This tab's training, on top: after a click of Train its bar, numbers, curves and
    # reconstructions are in view without scrolling (issue 28); the form follows.
    live = st.container(key="train_live")
    spec = active_spec()
    design_column, data_column = st.columns(2, gap="large")
    with design_column:
        design_summary(spec)
    with data_column:
        last_limit = job.request.data.limit if job is not None else None
        data = choose_data(last_limit, disabled=state.running)
    # The form starts from this tab's last job, if any: after a reload (a new session) it shows
    # the settings of the job it finds, not the defaults.
    last = (
        job.config if job is not None else TrainConfig(epochs=default_epochs(data.num_train or 0))
    )
    suggested = st.session_state.pop(SUGGESTED_KEY, None)  # once: the form keeps them after
    if suggested and not state.running:
        last = TrainConfig.from_dict({**last.to_dict(), **suggested})
        shown = ", ".join(f"{key.replace('_', ' ')} {value:g}" for key, value in suggested.items())
        st.info(f"The search's best trial trained with {shown}: the form starts from them.")
    settings = training_settings(
        last,
        preview_samples(data),
        f"train_epochs_{data.choice}_{data.limit}",
        disabled=state.running,
    )
    name_column, seed_column, button_column = st.columns([2, 1, 1])
    run_name, default_name = run_name_field(name_column, spec, data, state)
    seed = seed_field(seed_column, last, disabled=state.running)
    config = TrainConfig(**settings, seed=seed)
    check = check_training(spec, config, data)
    with design_column:
        show_design_problem(check)
    ready = check is not None and check.ok and data.available and not state.running
    ready = ready and (state.in_control or not state.unsaved)  # another tab's epochs stay
    start = button_column.button(
        "Train",
        key="train_start",
        type="primary",
        disabled=not ready,
        icon=":material/play_arrow:",
        width="stretch",
    )
    if not state.running:
        show_estimates(check, config)
    share_data(data, seed)

    def request() -> TrainRequest:
        return TrainRequest(
            spec=spec,
            data=data_recipe(data, seed),
            config=config,
            name=clean_name(run_name) or default_name,
        )

    estimate = check.seconds if check is not None else None
    start_or_ask(start, request if spec is not None else None, state, estimate)
    with live:
        live_view(running=state.running, in_control=state.in_control)
    unsaved_runs(
        runs_root(), exclude=JOBS.staged_paths()
    )  # only runs no live job holds: a tab controls those


main()
