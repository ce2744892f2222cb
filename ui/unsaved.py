"""Unsaved runs: trained models kept but not saved (a stopped training, or a save that failed)
that no live job holds any more (the server restarted, or the job was forgotten), listed for the
workspace's tabs with Save and Discard. A kept run that a live job still holds is its owner's: only the tab
that controls that job can save or discard it, on its own Train page."""

from __future__ import annotations

import hashlib
from datetime import datetime

import streamlit as st

from cae.store import StagedRun, discard_staged, list_staged, publish_run
from cae.text import plain_markdown


def _key(staged: StagedRun) -> str:
    return hashlib.sha256(str(staged.path).encode()).hexdigest()[:12]


def unsaved_runs(root: str, exclude: set[str] | None = None) -> None:
    """An expander listing every kept, unsaved run of the runs folder ``root`` (the workspace's)
    but those in ``exclude`` (held by live jobs), each with a name, Save, and Discard after a
    confirmation; says when each is cleaned away."""
    staged = [s for s in list_staged(root) if str(s.path) not in (exclude or set())]
    if not staged:
        return
    with st.expander(f"{len(staged)} unsaved run(s)", icon=":material/inventory_2:"):
        st.caption(
            "Trained models that were stopped, or whose save failed, are kept here until saved "
            "or discarded, also across server restarts; after a day they are removed."
        )
        for item in staged:
            key = _key(item)
            until = datetime.fromtimestamp(item.expires).strftime("%Y-%m-%d %H:%M")
            st.markdown(
                f"**{plain_markdown(item.name)}** · {item.epochs} epoch(s) · removed after {until}"
            )
            columns = st.columns([3, 1, 1])
            name = columns[0].text_input(
                "Save as", item.name, key=f"unsaved_name_{key}", max_chars=80,
                label_visibility="collapsed",
            )  # fmt: skip
            if columns[1].button("Save", key=f"unsaved_save_{key}", icon=":material/save:"):
                try:
                    run_id = publish_run(item.path, name=name.strip() or item.name, root=root)
                except (ValueError, OSError) as error:
                    st.error(
                        f"Could not save: {plain_markdown(str(error))}", icon=":material/error:"
                    )
                else:
                    st.success(f"Saved as {run_id}.")
                    st.rerun()
            sure = columns[2].checkbox("Sure", key=f"unsaved_sure_{key}")
            if columns[2].button(
                "Discard", key=f"unsaved_discard_{key}", disabled=not sure,
                icon=":material/delete:",
            ):  # fmt: skip
                discard_staged(item.path, root)
                st.rerun()
