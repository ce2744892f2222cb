"""The Experiments page's parts: the live progress of a grid experiment, and the comparison of
its runs (sortable table, size-against-PSNR chart with the Pareto front and the baselines, open on
Results, CSV). The sweep logic is ``cae.sweep``; the grid study ``cae.experiments``; the queue
that trains it ``cae.studies``."""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

from cae.experiments import comparison_rows
from cae.metrics import METRICS
from cae.plots import SWEEP_AXES, sweep_scatter
from cae.store import RunInfo
from cae.studies import STUDIES, grid_view
from cae.sweep import (
    DID_NOT_LEARN,
    best_row,
    chart_baselines,
    mark_learning,
    pca_gain,
    rows_csv,
    winner_sentence,
)
from cae.text import fmt_seconds, plain_markdown
from ui.baselines import cached_baselines
from ui.run_index import all_runs
from ui.state import owner_id, run_link

SHOWN_KEY = "experiments_shown"  # str: the experiment this tab shows
STARTED_KEY = "experiments_started"  # str: the experiment just started, shown at the next run
PICKED_KEY = "experiments_picked"  # str: the experiment picked in the box (its value is a label)
OPENED_KEY = "experiments_opened"  # the chart selection already sent to Results
ROW_OPENED_KEY = "experiments_row_opened"  # the table cell already sent to Results
SEEN_KEY = "experiments_seen_state"  # (id, state, runs done) at the last draw of the progress


def experiment_label(record: dict[str, Any]) -> str:
    """``study · created · runs · state`` of a grid experiment, for a select box (plain text)."""
    created = str(record.get("created") or "")[:16].replace("T", " ")
    return f"{record['study']} · {created} · {record['trials']} runs · {record['state']}"


def experiment_labels(records: list[dict[str, Any]]) -> dict[str, str]:
    """Each experiment's :func:`experiment_label` by id, in order; labels that would be the same
    (one name, one minute) end with their id's tail, since the select box tells options apart by
    label."""
    labels = {record["id"]: experiment_label(record) for record in records}
    seen: dict[str, int] = {}
    for label in labels.values():
        seen[label] = seen.get(label, 0) + 1
    return {
        key: f"{label} · {key[-6:]}" if seen[label] > 1 else label for key, label in labels.items()
    }


def progress_panel(study_id: str, live: bool = False) -> None:
    """A grid experiment's overall progress (k of N, ETA), each running run's progress, the
    queue it waits in, and Stop for the session that started it. ``live`` (in a fragment that
    redraws it): the whole page is redrawn when a run or the experiment ends, so the comparison
    follows."""
    found = STUDIES.get(study_id)
    if found is None:
        st.warning("This experiment is no longer here.")
        return
    view = grid_view(found)
    record, rows = view["record"], view["rows"]
    done, total, state = record["told"], record["trials"], record["state"]
    finished = sum(row["state"] == "finished" for row in rows)
    where = STUDIES.place(study_id) if state in ("queued", "running") else None
    if where is not None:
        place, seconds = where
        start = "as soon as a training ends" if seconds < 1 else f"in about {fmt_seconds(seconds)}"
        st.info(
            f"{'Waiting' if state == 'queued' else 'Its next run waits'} in the server's queue: "
            f"place {place}, estimated start {start}. Train clicks go first, and students' "
            "experiment runs take turns.",
            icon=":material/hourglass_top:",
        )
    eta = view["eta_seconds"]
    text = f"{done} of {total} runs done"
    if state in ("running", "stopping"):
        text += f" · about {fmt_seconds(eta)} left" if eta is not None else ""
        if view["at_once"] > 1:
            text += f" · {view['at_once']} at once"
    elif state != "queued":
        text += f" · {state}"
    st.progress(min(1.0, done / total) if total else 0.0, text=text)
    for trial in record["in_flight"]:
        progress = trial["progress"]
        if not trial["training"]:
            continue
        if progress.state == "starting":
            bar, words = 0.0, progress.message or "Starting…"
        else:
            bar = progress.fraction
            words = (
                f"epoch {min(progress.epoch + 1, progress.epochs)}/{progress.epochs} · "
                f"batch {progress.batch}/{progress.batches_per_epoch or '?'}"
            )
            if progress.images_per_second:
                words += f" · {progress.images_per_second:,.0f} images/s"
        label = plain_markdown(trial["label"])
        st.progress(min(1.0, bar), text=f"Run {trial['index'] + 1}: {label} — {words}")
    if record.get("message"):
        st.caption(plain_markdown(record["message"]))
    for row in rows:
        if row["state"] != "failed":
            continue
        what = f"Run {row['index'] + 1} ({row['label']})"
        if str(row.get("reason") or "").startswith("the server stopped"):
            st.caption(plain_markdown(f"{what}: {row['reason']}"))  # interrupted, not an error
        else:
            st.error(plain_markdown(f"{what} failed: {row['reason']}"), icon=":material/error:")
    if found.active:
        if record.get("owner") == owner_id():
            st.button(
                "Stop the experiment",
                key="experiments_stop",
                on_click=STUDIES.stop,
                args=(study_id,),
                disabled=state == "stopping",
                icon=":material/stop_circle:",
                help=f"Keeps the {finished} run(s) already finished; the one in progress is "
                "dropped and the rest are not run.",
            )
        else:
            st.caption("Started from another session: only that session can stop it.")
    seen = st.session_state.get(SEEN_KEY)
    st.session_state[SEEN_KEY] = (study_id, state, done)
    if live and seen is not None and seen != (study_id, state, done):
        st.rerun()  # a run ended or the experiment did: the comparison below follows


def result_rows(rows: list[dict[str, Any]], root: str) -> list[dict[str, Any]]:
    """One comparison row per finished run of the experiment that is still saved."""
    runs: dict[str, RunInfo] = {run.run_id: run for run in all_runs(root) if run.ok}
    return comparison_rows(rows, runs)


def baselines(
    record: dict[str, Any], rows: list[dict[str, Any]], root: str
) -> tuple[dict[int, float], float | None]:
    """PCA's test PSNR at each code size of the runs, and the mean image's, on the experiment's
    data recipe; none (and a caption why) when they cannot be computed."""
    pca: dict[int, float] = {}
    mean: float | None = None
    try:
        recipe_json = json.dumps(record["data"], sort_keys=True)
        for k in sorted({row["code_size"] for row in rows if row.get("code_size")}):
            scores = cached_baselines(recipe_json, k, root, owner_id())
            if isinstance(scores["pca"].get("psnr"), (int, float)):
                pca[k] = float(scores["pca"]["psnr"])
            mean = scores["mean_image"].get("psnr")
    except (ValueError, OSError, KeyError) as error:
        st.caption(plain_markdown(f"No baselines for this data: {error}"))
        return {}, None
    return pca, mean


def open_on_results(run_ids: list[str]) -> None:
    """Show these runs on Results, side by side (its compare selection), the first active: a
    switch to Results with a link naming them (``ui.state.follow_run_link`` takes it there)."""
    st.switch_page("pages/3_Results.py", query_params=run_link(run_ids))


def winner_line(rows: list[dict[str, Any]], pca: dict[int, float], mean: float | None) -> None:
    """The sentence that names the best run and why (``cae.sweep.winner_sentence``); a warning
    when no run learned."""
    sentence = winner_sentence(rows, pca, mean)
    best = best_row(rows)
    if sentence is None or best is None:
        return
    if best["did_not_learn"]:
        st.warning(plain_markdown(sentence), icon=":material/warning:")
    else:
        st.markdown(f":material/trophy: **{plain_markdown(sentence)}**")


def comparison(found: Any, root: str) -> None:
    """A grid experiment's (a ``cae.studies.ServerStudy``) finished runs: sortable table, chart,
    open on Results, CSV."""
    record = found.snapshot()
    rows = result_rows(grid_view(found)["rows"], root)
    st.subheader("Comparison")
    if not rows:
        st.caption("The runs appear here as they finish.")
        return
    x_key = st.radio(
        "Horizontal axis",
        list(SWEEP_AXES),
        format_func=SWEEP_AXES.__getitem__,
        horizontal=True,
        key="experiments_x",
    )
    pca, mean = baselines(record, rows, root)
    rows = mark_learning(rows, mean)
    winner_line(rows, pca, mean)
    figure = sweep_scatter(rows, x_key, chart_baselines(pca, mean, x_key))
    event = st.plotly_chart(
        figure,
        key=f"experiments_chart_{record['id']}_{x_key}",
        on_select="rerun",
        selection_mode=("points", "box", "lasso"),
    )
    st.caption(
        "Each point is a run; the Pareto front joins the runs no other run beats with fewer "
        f"{SWEEP_AXES[x_key]} and a higher PSNR. A run not above the mean image (every input "
        "answered with the average training image) did not learn, and is left off the front "
        "when another run learned. Click a point to open that run on Results; draw a box or "
        "lasso around several to compare them side by side."
    )
    picked = [p.get("customdata") for p in (event.selection.points if event else []) or []]
    picked = [run_id for run_id in picked if isinstance(run_id, str)]
    if not picked:
        st.session_state.pop(OPENED_KEY, None)
    elif st.session_state.get(OPENED_KEY) != picked:
        st.session_state[OPENED_KEY] = picked
        open_on_results(picked)
    table = [
        {
            "#": row["index"] + 1,
            "design": row["design"],
            "learned": None if mean is None else (DID_NOT_LEARN if row["did_not_learn"] else "yes"),
            "parameters": row["params"],
            "code": row["code"],
            "code size": row["code_size"],
            "compression": row["compression"],
            "train time (s)": row["train_seconds"],
            **{f"test {metric.label}": row.get(metric.key) for metric in METRICS},
            "PSNR vs PCA (dB)": pca_gain(row, pca),
            "run": row["run_id"],
        }
        for row in rows
    ]
    formats = {f"test {metric.label}": f"%.{metric.digits}f" for metric in METRICS}
    selection = st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        key=f"experiments_table_{record['id']}",
        on_select="rerun",
        selection_mode=["multi-row", "single-cell"],  # a click on a cell opens its row's run
        column_config={
            "parameters": st.column_config.NumberColumn(format="localized"),
            "compression": st.column_config.NumberColumn(format="%.1fx"),
            "train time (s)": st.column_config.NumberColumn(format="%.1f"),
            **{key: st.column_config.NumberColumn(format=value) for key, value in formats.items()},
            "PSNR vs PCA (dB)": st.column_config.NumberColumn(
                format="%+.2f",
                help="The run's test PSNR less PCA's with as many components as "
                "its code has values, on the same data",
            ),
        },
    )
    st.caption(
        "Click a row to open that run on Results; tick the boxes of several rows to open them "
        "side by side. Sort by a column header."
    )
    cells = [tuple(cell) for cell in (selection.selection.cells if selection else [])]
    cells = [cell for cell in cells if 0 <= cell[0] < len(table)]
    if not cells:
        st.session_state.pop(ROW_OPENED_KEY, None)
    elif st.session_state.get(ROW_OPENED_KEY) != cells[0]:
        st.session_state[ROW_OPENED_KEY] = cells[0]
        open_on_results([table[cells[0][0]]["run"]])
    chosen = [table[i]["run"] for i in (selection.selection.rows if selection else [])]
    columns = st.columns([2, 2, 3])
    label = "Open on Results" if len(chosen) <= 1 else f"Open these {len(chosen)} side by side"
    if columns[0].button(
        label,
        key="experiments_open",
        disabled=not chosen,
        icon=":material/insights:",
        help="Tick rows in the table, then open them on Results.",
    ):
        open_on_results(chosen)
    columns[1].download_button(
        "Download the table (CSV)",
        rows_csv(rows),
        file_name=f"experiment-{record['id']}.csv",
        mime="text/csv",
        key="experiments_csv",
        icon=":material/download:",
    )
