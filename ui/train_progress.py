"""The Train page's live view of a training: the bar and numbers (redrawn every half second by a
fragment), stop, save and take-over, and the loss curves and reconstruction preview (redrawn by a
run of the page when an epoch has ended)."""

from __future__ import annotations

import time

import streamlit as st

from cae.jobs import JOBS, TrainingJob
from cae.plots import image_grid, loss_curves
from cae.progress import SMOOTHING_EPOCHS, Progress
from cae.text import clean_name, fmt_seconds, plain_markdown
from ui.channels import channel_picker
from ui.state import RUN_KEY, controls_job, owner_id, remember, take_control

TAKEOVER_ASK = "train_takeover_ask"  # the job id whose take-over this tab is asked to confirm
SEEN_CONTROL = "train_seen_control"  # (job id, in control) at the last full run of the page
FIGURES_DRAWN = "train_figures_drawn"  # (job id, epoch, monotonic time) of the figures shown
# The live view's fragment redraws the bar every half second; the curves and the preview sit
# outside it, redrawn by a run of the page when an epoch has ended, at most this often: a browser
# redraws a chart it is sent again even when nothing in it changed, and with both charts in the
# fragment Chromium used 0.63 of a core while a job ran, 0.33 now (bench/live_view.py).
FIGURES_EVERY_S = 2.0
ESTIMATE_KEY = "train_estimate"  # (job id, the preflight's seconds): the ETA until it is measured
SCROLL_KEY = "train_scroll"  # the job id just started: its live view is scrolled into view once
FIGURE_HEIGHT = 300  # px: bar, numbers, curves and reconstructions fit a 1440x900 screen
# Scrolls the page to its top, where the live view is: a Train click low on a long form (an
# upload's preview, a denoiser's) would otherwise leave the view it starts above the screen.
_SCROLL_TO_LIVE = """<script>
const main = window.parent.document.querySelector('[data-testid="stMain"]')
  || document.querySelector('[data-testid="stMain"]');
if (main) main.scrollTo({top: 0});
</script>"""


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


def bar_fraction(progress: Progress) -> float:
    """How full the bar is: the run's fraction, or the completed epochs once it has ended."""
    state = progress.state
    if state == "starting":
        return 0.0
    if state == "running" and progress.epochs and progress.epoch >= progress.epochs:
        return 1.0
    if state in ("running", "stopping", "finished"):
        return progress.fraction
    done = progress.epoch / progress.epochs if progress.epochs else 0.0
    return min(1.0, done)  # stopped or failed: the completed epochs, the ones that are kept


def eta_text(job: TrainingJob, progress: Progress) -> tuple[str, str | None]:
    """The ETA metric's value and help: measured once the run knows its speed (an epoch and a few
    batches in, ``cae.progress.ETA_WARMUP_BATCHES``); before that, the estimate the page made
    before the start (this machine's earlier runs), marked as such, else "estimating…"; the
    time taken once it has ended."""
    if not progress.active:
        return fmt_seconds(progress.elapsed_seconds), None
    if progress.eta_seconds is not None:
        return fmt_seconds(progress.eta_seconds), (
            f"The images left at the speed of the last {SMOOTHING_EPOCHS} epochs and this one, "
            "plus each epoch's validation and preview as timed. Measured from the first epoch's "
            "end and a few batches of the next on (the first epoch also compiles the steps)."
        )
    estimate = st.session_state.get(ESTIMATE_KEY)
    if estimate is not None and estimate[0] == job.job_id and estimate[1] is not None:
        left = estimate[1] - (time.time() - job.created)
        if left < 1:  # slower than estimated (a loaded machine): no "≈ 0:00" for long
            return "estimating…", None
        return f"≈ {fmt_seconds(left)}", (
            "Estimated before the start from this machine's earlier runs; measured once the "
            "first epoch and a few batches of the next are done."
        )
    return "estimating…", None


def kept_epoch(job: TrainingJob, progress: Progress) -> int:
    """The epoch whose weights an ended job keeps (its best one where it kept that, else its
    last completed one; 0: none), as its curves count them."""
    done = len(progress.history.get("loss") or [])
    best = getattr(job.result, "best_epoch", None) if not progress.active else None
    return int(best) if isinstance(best, int) and 1 <= best <= done else done


def shown_losses(job: TrainingJob, progress: Progress) -> tuple[float | None, float | None, str]:
    """The loss and validation loss the numbers show, and the words after their labels: while it
    runs, the epoch under way's running mean and the last epoch's validation loss; once it has
    ended, those of the epoch it keeps, as its curves show them (issue 28: a stopped run showed
    the stopped epoch's partial loss beside the curves of the whole ones)."""
    if progress.active:
        return progress.loss, progress.val_loss, ""
    kept = kept_epoch(job, progress)
    if not kept:
        return None, None, ""
    history = progress.history
    losses, val_losses = history.get("loss") or [], history.get("val_loss") or []
    val = val_losses[kept - 1] if len(val_losses) >= kept else None
    return losses[kept - 1], val, f" · epoch {kept}"


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
    where = None if job.done else job.place()
    if where is not None:
        place, seconds = where
        start = "when a training ends" if seconds < 1 else f"in about {fmt_seconds(seconds)}"
        st.progress(0.0, text=f"Queued · place {place} · estimated start {start}")
    else:
        st.progress(bar_fraction(progress), text=progress.status())

    numbers = st.columns(4)
    loss, val_loss, kept_words = shown_losses(job, progress)
    numbers[0].metric(
        f"loss{kept_words}",
        "–" if loss is None else f"{loss:.4f}",
        help="The running mean of the epoch under way." if progress.active else None,
    )
    numbers[1].metric(
        "validation loss" + kept_words, "–" if val_loss is None else f"{val_loss:.4f}"
    )
    measuring = (
        "starting…" if state == "starting" else "tracing…" if progress.tracing else "measuring…"
    )
    numbers[2].metric(
        "images/s",
        (measuring if progress.active else "–")
        if progress.images_per_second is None
        else f"{progress.images_per_second:,.0f}",
        help=f"Over the last {SMOOTHING_EPOCHS} epochs and this one, from each epoch's second "
        "batch on (its first holds the tracing or the input pipeline's start).",
    )
    eta, eta_help = eta_text(job, progress)
    numbers[3].metric("ETA" if progress.active else "time", eta, help=eta_help)
    # an ended job without a kept model says why in an alert below; the caption would repeat it
    if (
        progress.message
        and (state != "starting" or where is not None)  # the bar says how it starts
        and (progress.active or state == "finished" or kept or job.run_id)
    ):
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
            kept = kept_epoch(job, progress)
            ended = not progress.active and kept and progress.state != "finished"
            curves = loss_curves(
                {job.name: progress.history},
                kept=kept if ended or kept != len(progress.history["loss"]) else None,
            )
            curves.update_layout(height=FIGURE_HEIGHT, margin={"t": 30, "b": 30})
            st.plotly_chart(curves, key=f"train_curves_{job.job_id}")
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
            if ended:
                st.caption(
                    f"{progress.state.capitalize()} during epoch {progress.epoch + 1}: the curves "
                    f"and numbers are the {progress.epoch} completed epoch(s); epoch {kept}'s "
                    "weights are kept (the epoch under way is dropped)."
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
            with st.container(key=f"train_preview_{job.job_id}"):
                st.html(image_grid(rows, titles, channel=channel))
            shown = progress.epoch if progress.active else kept_epoch(job, progress)
            st.caption(f"Test images after epoch {shown}" + ("" if progress.active else ", kept."))


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


def live_view(*, running: bool, in_control: bool) -> None:
    """The job of this tab, if any: its live progress (a fragment while it runs, or while
    another tab controls it), then its figures; nothing without a job."""
    shown = JOBS.get(owner_id())
    if shown is None:
        return
    live, figures = st.container(), st.container()
    with figures:  # first, so that the fragment below sees these figures drawn
        show_figures(shown)
    with live:
        if running:
            st.fragment(run_every=0.5)(live_progress)(in_fragment=True)
        elif (
            not in_control
        ):  # watching another tab's job: notice when that tab leaves or takes over
            st.fragment(run_every=2.0)(live_progress)(in_fragment=True)
        else:
            live_progress()
    if st.session_state.get(SCROLL_KEY) == shown.job_id:
        st.session_state.pop(SCROLL_KEY, None)
        st.html(_SCROLL_TO_LIVE, unsafe_allow_javascript=True)
    st.divider()
