"""The Experiments page's search: an Optuna study (``cae.studies``) over a JSON search space, its
trials trained as runs in the server's queue, shown live: the trials table, Optuna's history and
parameter-importance figures, parameters against validation PSNR with the Pareto front, the best
design against PCA with as many code values, and one click to take it to Architecture or Train."""

from __future__ import annotations

from typing import Any

import streamlit as st

from cae.datasets import DATASETS, dataset_status
from cae.recipe import DataRecipe
from cae.search import study_conflict
from cae.search_space import EXAMPLE_SPACE, SearchSpace
from cae.spec import ArchitectureSpec
from cae.studies import MAX_TRIALS, STUDIES, search_figures, search_view
from cae.text import plain_markdown
from cae.training import TrainConfig
from ui.state import SUGGESTED_KEY, owner_id, set_active_spec
from ui.steps import step_result

SHOWN_KEY = "experiments_search_shown"
PICK_KEY = "experiments_search_pick"  # plain data: the search the next run shows (set by Start)
SEARCHED_SETTINGS = ("epochs", "batch_size", "learning_rate")  # Train the best design takes
NAME_KEY = "experiments_search_name"
NAME_FROM_KEY = "experiments_search_name_from"  # plain data: the space name the field took


def _label(record: dict[str, Any]) -> str:
    """A search's name in the picker: what never changes (a label that changed between runs
    would come back from the browser as the old text and match no option)."""
    return f"{record['study']} · started {record['created'].replace('T', ' ')[:16]} · {record['id'][-6:]}"


def start_form(root: str) -> None:
    """Data, space (the shipped one to start), trials and a study name; Start."""
    names = [name for name in DATASETS if dataset_status(name).available]
    left, middle, right = st.columns([2, 1, 1])
    dataset = left.selectbox(
        "Dataset",
        names,
        format_func=lambda key: DATASETS[key].title,
        key="experiments_search_dataset",
    )
    total = int(dataset_status(dataset).num_train or 0) if dataset else 0
    limit = middle.number_input(
        "Training images (and at most as many test images)",
        min_value=min(100, max(total, 1)),
        max_value=max(total, 1),
        value=max(total, 1),
        step=100,
        key="experiments_search_limit",
        help="Each trial trains on at most this many images, the last tenth of them held out as "
        "the validation split it is scored on; the test split (at most as many images) stays "
        "for the best trial's report.",
    )
    trials = right.number_input(
        "Trials", 1, MAX_TRIALS, 10, key="experiments_search_trials", help="Trials to train."
    )
    text = st.text_area(
        "Search space (JSON)",
        EXAMPLE_SPACE.read_text(),
        height=260,
        key="experiments_search_space",
        help="Ranges or lists of the design's depth, filters, kernels and code channels and of "
        "the learning rate, batch size and epochs; constraints (max_code_values, max_params); "
        "sampler (tpe, random, grid) and pruner on the validation loss (median; halving or "
        "hyperband: most trials stop after a few epochs, the best train on; or none). "
        "README's Search section lists every key.",
    )
    try:
        space = SearchSpace.from_json(text)
    except ValueError as error:
        st.error(plain_markdown(str(error)), icon=":material/error:")
        st.button("Start search", key="experiments_search_start", disabled=True, type="primary")
        return
    # the name follows the space's own until the user types another: a name kept from the
    # shipped space named a study of a space edited since after the shipped one
    if st.session_state.get(NAME_KEY) in (None, st.session_state.get(NAME_FROM_KEY)):
        st.session_state[NAME_KEY] = space.name[:60]
    st.session_state[NAME_FROM_KEY] = space.name[:60]
    name = st.text_input(
        "Study name",
        max_chars=60,
        key=NAME_KEY,
        help="A study of this name in your workspace goes on from its finished trials.",
    )
    if dataset is None:
        st.warning("No dataset is available here.", icon=":material/cloud_off:")
        return
    recipe = DataRecipe(dataset=dataset, limit=None if int(limit) >= total else int(limit))
    config = TrainConfig(preview_count=0)
    attrs = {"kind": "search", "space": space.to_dict(), "data": recipe.to_dict()}
    attrs["config"] = config.to_dict()
    conflict = study_conflict(name.strip() or space.name, attrs, root=root)
    if conflict is not None:  # what Start would refuse, said before it
        st.error(plain_markdown(conflict), icon=":material/error:")
    if st.button(
        "Start search",
        key="experiments_search_start",
        type="primary",
        icon=":material/search:",
        disabled=conflict is not None,
    ):
        num_train = int(min(limit, total) * (1 - config.validation_split))
        try:
            search = STUDIES.submit(
                owner_id(),
                name.strip() or space.name,
                space,
                recipe,
                config,
                int(trials),
                num_train=num_train,
                root=root,
            )
        except (ValueError, OSError) as error:
            st.error(f"Could not start: {plain_markdown(str(error))}", icon=":material/error:")
        else:
            st.session_state[PICK_KEY] = search.id
            st.rerun()


def _pca_line(view: dict[str, Any], root: str) -> str:
    """The best trial against PCA with as many components as its code has values."""
    best = view["best"]
    request = {
        "recipe": view["data"],
        "components": int(best["code_values"]),
        "root": str(root),
    }
    try:
        found = step_result("baselines", request)
    except ValueError as error:
        return f" (PCA: {error})"
    if found is None:
        return ""
    pca = found["pca"]["psnr"]
    test = best.get("test_psnr")
    if test is None:
        return f"; PCA with {best['code_values']} components scores {pca:.2f} dB on the test split"
    return (
        f"; on the test split {test:.2f} dB, {test - pca:+.2f} dB against PCA with the same "
        f"{best['code_values']} numbers ({pca:.2f} dB)"
    )


def live_panel(search_id: str, root: str) -> None:
    """A search's state, trials table, figures and best design (redrawn every second while it
    runs)."""
    search = STUDIES.get(search_id, root)
    if search is None:
        return
    view = search_view(search)
    record = view["record"]
    st.markdown(
        f"**{plain_markdown(record['study'])}** · {record['state']} · {record['told']} of "
        f"{record['trials']} trials done"
        + (f" · {plain_markdown(record['message'])}" if record.get("message") else "")
    )
    for trial in record["in_flight"]:
        where = (
            f"queued, place {trial['place'][0]}, starts in about {trial['place'][1]:.0f} s"
            if trial["place"]
            else f"epoch {trial['epoch']} of {trial['epochs']}"
        )
        st.caption(f"Trial {trial['number']} ({plain_markdown(trial['label'])}): {where}")
    if search.active:
        st.button(
            "Stop search",
            key=f"experiments_search_stop_{search_id}",
            on_click=STUDIES.stop,
            args=(search_id,),
            icon=":material/stop:",
            help="Finished trials stay in the study; those in flight are stopped.",
        )
    if view["best"] is not None:
        best = view["best"]
        st.success(
            f"{'Best so far' if search.active else 'Best'}: trial {best['number']} ({plain_markdown(best['label'])}), "
            f"validation PSNR {best['value']:.2f} dB with {best['param_count']:,} parameters and "
            f"{best['code_values']} code values" + _pca_line(view, root) + ".",
            icon=":material/emoji_events:",
        )
        spec = ArchitectureSpec.from_dict(best["spec"])
        left, right = st.columns(2)
        if left.button(
            "Open the best design in Architecture",
            key=f"experiments_search_arch_{search_id}",
            icon=":material/architecture:",
        ):
            set_active_spec(spec)
            st.switch_page("pages/1_Architecture.py")
        if right.button(
            "Train the best design",
            key=f"experiments_search_train_{search_id}",
            icon=":material/model_training:",
        ):
            set_active_spec(spec)
            # the trial's training settings too: the search chose them with the design
            config = best.get("config") or {}
            st.session_state[SUGGESTED_KEY] = {
                key: config[key] for key in SEARCHED_SETTINGS if key in config
            }
            st.switch_page("pages/2_Train.py")
    if view["rows"]:
        st.dataframe(view["rows"], hide_index=True, width="stretch", key=f"search_{search_id}")
    for key, figure in search_figures(search).items():
        st.plotly_chart(figure, key=f"experiments_search_{key}_{search_id}")


def search_section(root: str) -> None:
    """The search part of the Experiments page: the shown search, live, then a new one."""
    st.subheader("Search (Optuna)")
    st.caption(
        "A search tries designs from a space you declare, learning from the trials so far (TPE); "
        "each trial trains as an ordinary run in the server's queue, scored on its validation "
        "split (the test split stays for the final report), and hopeless ones are stopped "
        "early (pruned) from their validation loss."
    )
    searches = STUDIES.all(root, kind="search")
    if searches:
        by_id = {s.id: s for s in searches}
        picked = st.session_state.pop(PICK_KEY, None)
        if picked in by_id:
            st.session_state[SHOWN_KEY] = picked
        elif st.session_state.get(SHOWN_KEY) not in by_id:
            mine = [s.id for s in searches if s.owner == owner_id()]
            st.session_state[SHOWN_KEY] = (mine or list(by_id))[0]
        shown = st.selectbox(
            "Search",
            list(by_id),
            format_func=lambda key: _label(by_id[key].snapshot()),
            key=SHOWN_KEY,
        )
        if by_id[shown].active:
            st.fragment(run_every=2.0)(live_panel)(shown, root)
        else:
            live_panel(shown, root)
    with st.expander("New search", expanded=not searches):
        start_form(root)
