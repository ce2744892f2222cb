"""Admin: the server's whole queue (every student's trainings and experiment runs, baselines and
uploads waiting or running, their place and estimated memory) and a Stop for any of them. Opens on
the server's own machine, or with the admin token (ui/admin.py)."""

from __future__ import annotations

import streamlit as st

from ui.admin import budget_line, gate, label, queue_rows, stop_entry
from ui.state import page_frame


@st.fragment(run_every=2)
def queue_table() -> list[dict]:
    """The queue, redrawn every 2 s; its rows."""
    st.caption(budget_line())
    rows = queue_rows()
    if not rows:
        st.info("The queue is empty: nothing waits or runs.", icon=":material/inbox:")
        return rows
    st.dataframe(rows, hide_index=True, key="admin_queue", width="stretch")
    return rows


def stop_one(rows: list[dict]) -> None:
    """Pick an active entry and stop it."""
    active = {row["id"]: row for row in rows if row["state"] in ("queued", "running")}
    if not active:
        return
    picked = st.selectbox(
        "Stop", list(active), format_func=lambda key: label(active[key]), key="admin_stop_pick"
    )
    if st.button("Stop it", key="admin_stop", type="primary"):
        stop_entry(picked)
        st.toast("Asked to stop: a queued one leaves the queue, a running one saves and ends.")


def main() -> None:
    """Admin: the way in, the queue, a stop."""
    page_frame("Admin")
    st.title("Admin")
    if not gate():
        return
    rows = queue_table()
    stop_one(rows)


main()
